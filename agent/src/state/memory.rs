//! Continuity across restarts and failovers: each pool's decision state (the
//! stabilization and rate-limit history, emergency, flap and spot state, the circuit's
//! failure count and back-off, the last applied target) is saved after every pass the
//! leader makes (and the provisioning delay learned from its scale-ups), where the next
//! leader reads it before its first pass: under
//! `state_dir` for a standalone agent, in etcd under the configured prefix for the etcd
//! coordinator. A new leader so respects the windows and cooldowns its predecessor
//! started, and does not repeat a scale-up it just made.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use capstan_providers::{CapacityTarget, OperationHandle};

use crate::brain::fleet::PoolState;
use crate::brain::planner::History;

/// Version of [`Memory`]'s encoding; a reader ignores other versions.
const VERSION: u32 = 1;

/// What a pool's next leader needs to carry on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Encoding version.
    pub version: u32,
    /// Recommendations and scale events within the windows.
    pub history: History,
    /// Emergency, flap and spot state.
    pub state: PoolState,
    /// Consecutive failed provider calls (the circuit).
    pub failures: u32,
    /// No provider call before then.
    pub retry_at: Option<DateTime<Utc>>,
    /// The last target applied.
    pub last_target: Option<CapacityTarget>,
    /// The cloud operation in flight for this pool, if any: a new leader goes on
    /// polling it rather than submitting another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
    /// How long this pool's new nodes take to serve, learned from its scale-ups.
    #[serde(default, skip_serializing_if = "Provisioning::is_empty")]
    pub provisioning: Provisioning,
    /// The nodes chosen for scale-in and not yet gone: a new leader carries on the
    /// same drains, chooses no others for the same shrink, and removes each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drains: Vec<Drain>,
}

/// A node chosen for scale-in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// The node (its instance id).
    pub node: String,
    /// When it was chosen.
    pub chosen_at: DateTime<Utc>,
    /// When the leader stops waiting for it (`scale_in.drain_timeout` after the choice).
    pub deadline: DateTime<Utc>,
    /// Where it stands.
    pub phase: DrainPhase,
    /// Its reports have said it drains (so `drain_started` is journaled once).
    #[serde(default)]
    pub started: bool,
}

/// Where a chosen node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrainPhase {
    /// Asked to drain; waiting for its reports to say it drained.
    Draining,
    /// To be removed: drained, or past its deadline (or failed) with
    /// `on_timeout = "remove"`, or chosen with no agent reporting from it.
    Remove,
    /// Returned to service (`on_timeout = "keep"`, or the pool stopped shrinking): asked
    /// to undo its drain until its reports carry none.
    Keep,
}

impl DrainPhase {
    /// The name as status and the journal write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Draining => "draining",
            Self::Remove => "remove",
            Self::Keep => "keep",
        }
    }
}

/// A pool's provisioning delay, learned from the cloud: the time from a scale-up's
/// submission to the instances it asked for being in service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provisioning {
    /// The scale-up being timed: when it was submitted, and the in-service count it
    /// waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<(DateTime<Utc>, u32)>,
    /// The delays seen, exponentially weighted (each new one weighs
    /// [`Provisioning::WEIGHT`]), in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// Scale-ups timed.
    #[serde(default)]
    pub samples: u32,
}

impl Provisioning {
    /// The weight of each new delay in the learned one.
    pub const WEIGHT: f64 = 0.3;
    /// A scale-up not in service by then is not timed (capacity the cloud did not
    /// have, a launch that failed): its delay says nothing about the usual one.
    pub const GIVE_UP: chrono::TimeDelta = chrono::TimeDelta::hours(1);

    fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// A target from `from` to `to` nodes was submitted at `at`: a scale-up is timed,
    /// unless one is already.
    pub fn submitted(&mut self, at: DateTime<Utc>, from: u32, to: u32) {
        if to > from && self.waiting.is_none() {
            self.waiting = Some((at, to));
        }
    }

    /// The pool seen at `now` with `in_service` instances and `desired` capacity:
    /// returns the delay when the timed scale-up's instances are all in service. A
    /// scale-up that was lowered before it served, or that took longer than
    /// [`Provisioning::GIVE_UP`], is dropped untimed.
    pub fn observe(
        &mut self,
        now: DateTime<Utc>,
        in_service: u32,
        desired: u32,
    ) -> Option<std::time::Duration> {
        let (at, want) = self.waiting?;
        let took = now - at;
        if desired < want || took > Self::GIVE_UP {
            self.waiting = None;
            return None;
        }
        if in_service < want {
            return None;
        }
        self.waiting = None;
        let took = took.to_std().unwrap_or_default();
        let seconds = took.as_secs_f64();
        self.seconds = Some(self.seconds.map_or(seconds, |s| {
            (1.0 - Self::WEIGHT) * s + Self::WEIGHT * seconds
        }));
        self.samples = self.samples.saturating_add(1);
        Some(took)
    }

    /// The learned delay, once a scale-up was timed.
    pub fn learned(&self) -> Option<std::time::Duration> {
        self.seconds
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(std::time::Duration::from_secs_f64)
    }
}

/// A target submitted to the cloud whose end has not been seen yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The cloud's handle, once the submission returned one (Azure, GKE); `None` while
    /// the submitting call itself is under way, or for a cloud with nothing to follow.
    pub handle: Option<OperationHandle>,
    /// When it was submitted.
    pub started_at: DateTime<Utc>,
    /// What was submitted.
    pub target: CapacityTarget,
    /// The pool's size when it was submitted.
    pub from: u32,
    /// For a removal: the instances named (`target` is then the size after it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl Operation {
    /// What `/v1/status` and the journal call it: the cloud's handle, or `"call"`
    /// while the submitting call has not returned.
    pub fn id(&self) -> &str {
        self.handle.as_ref().map_or("call", |h| h.id.as_str())
    }
}

impl Default for Memory {
    fn default() -> Self {
        Self {
            version: VERSION,
            history: History::default(),
            state: PoolState::default(),
            failures: 0,
            retry_at: None,
            last_target: None,
            operation: None,
            provisioning: Provisioning::default(),
            drains: Vec::new(),
        }
    }
}

impl Memory {
    /// Compact JSON.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses, refusing other versions.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let m: Self = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if m.version != VERSION {
            return Err(format!(
                "version {} (this agent reads {VERSION})",
                m.version
            ));
        }
        Ok(m)
    }
}

/// Where decision state is kept.
#[async_trait::async_trait]
pub trait DecisionStore: Send + Sync + std::fmt::Debug {
    /// The stored bytes for `pool`, if any.
    async fn load(&self, pool: &str) -> anyhow::Result<Option<Vec<u8>>>;
    /// Replaces them.
    async fn save(&self, pool: &str, bytes: &[u8]) -> anyhow::Result<()>;
}

/// One JSON file per pool under a directory (`<state_dir>/decisions/`).
#[derive(Debug)]
pub struct FileDecisions {
    dir: PathBuf,
}

impl FileDecisions {
    /// A store under `dir`, created if missing.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    fn path(&self, pool: &str) -> PathBuf {
        // Pool names are validated to a safe charset; keep the file name plain anyway.
        let safe: String = pool
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir.join(format!("{safe}.json"))
    }
}

#[async_trait::async_trait]
impl DecisionStore for FileDecisions {
    async fn load(&self, pool: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match tokio::fs::read(self.path(pool)).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow::anyhow!("{}: {e}", self.path(pool).display())),
        }
    }

    async fn save(&self, pool: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let path = self.path(pool);
        let bytes = bytes.to_vec();
        tokio::task::spawn_blocking(move || replace_durably(&path, &bytes))
            .await?
            .map_err(|(path, e)| anyhow::anyhow!("{}: {e}", path.display()))
    }
}

/// Replaces `path` with `bytes` so that a crash or power loss leaves either the old
/// file or the new one, never a torn one or none: write a temporary file beside it,
/// fsync it, rename it over `path`, fsync the directory. The error names the file.
pub fn replace_durably(path: &Path, bytes: &[u8]) -> Result<(), (PathBuf, std::io::Error)> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let mut file = std::fs::File::create(&tmp).map_err(at(&tmp))?;
    file.write_all(bytes).map_err(at(&tmp))?;
    file.sync_all().map_err(at(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(at(path))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(at(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_save_replaces_the_file_whole_and_a_failed_one_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileDecisions::open(dir.path().join("decisions")).unwrap();
        store.save("web", b"{\"v\":1}").await.unwrap();
        store.save("web", b"{\"v\":2}").await.unwrap();
        assert_eq!(
            store.load("web").await.unwrap().as_deref(),
            Some(&b"{\"v\":2}"[..])
        );
        let left: Vec<_> = std::fs::read_dir(dir.path().join("decisions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["web.json"], "a temporary file was left behind");

        // The directory is gone: the save fails, and says where.
        std::fs::remove_dir_all(dir.path().join("decisions")).unwrap();
        let e = store.save("web", b"{}").await.unwrap_err().to_string();
        assert!(e.contains("decisions/web.tmp"), "{e}");
    }

    #[test]
    fn scale_ups_are_timed_until_their_instances_serve_and_the_delay_is_kept() {
        use chrono::TimeZone;
        let t0 = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap();
        let at = |s: i64| t0 + chrono::TimeDelta::seconds(s);
        let mut p = Provisioning::default();
        assert_eq!(p.learned(), None);
        // A scale-down is not timed.
        p.submitted(at(0), 5, 3);
        assert_eq!(p.waiting, None);
        // 3 → 6: served once 6 are in service, 120 s later.
        p.submitted(at(0), 3, 6);
        p.submitted(at(30), 6, 8); // one at a time: the first is timed
        assert_eq!(p.observe(at(60), 5, 6), None);
        assert_eq!(
            p.observe(at(120), 6, 6),
            Some(std::time::Duration::from_secs(120))
        );
        assert_eq!(p.learned(), Some(std::time::Duration::from_secs(120)));
        // A second, 300 s: weighted 0.3.
        p.submitted(at(1000), 6, 9);
        assert_eq!(p.observe(at(1300), 9, 9).map(|d| d.as_secs()), Some(300));
        assert_eq!(p.learned().map(|d| d.as_secs()), Some(174));
        assert_eq!(p.samples, 2);
        // Lowered before it served, or never served within the hour: not timed.
        p.submitted(at(2000), 9, 12);
        assert_eq!(p.observe(at(2100), 10, 10), None);
        assert_eq!(p.waiting, None);
        p.submitted(at(3000), 10, 12);
        assert_eq!(p.observe(at(3000 + 3601), 12, 12), None);
        assert_eq!(
            (p.samples, p.learned().map(|d| d.as_secs())),
            (2, Some(174))
        );
        // Kept with the rest of the decision state, and absent from it when empty.
        let m = Memory {
            provisioning: p.clone(),
            ..Memory::default()
        };
        assert_eq!(Memory::decode(&m.encode()).unwrap().provisioning, p);
        let empty = String::from_utf8(Memory::default().encode()).unwrap();
        assert!(!empty.contains("provisioning"), "{empty}");
    }
}
