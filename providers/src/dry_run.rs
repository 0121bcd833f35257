//! The `dry-run` provider: a pool that exists only in memory, or in a file that agents
//! on one machine share (`state_file`), which is how cluster mode is tried out and
//! tested: several agents, one pool, every provider call on record.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use async_trait::async_trait;

use crate::{
    CapacityTarget, Health, Instance, Lifecycle, Market, NodePoolProvider, PoolDescription,
    ProviderError,
};

/// Starts at a configured size, applies targets in memory at once, and records each.
#[derive(Debug)]
pub struct DryRunProvider {
    pool: String,
    min: u32,
    max: u32,
    state: Mutex<State>,
    file: Option<PathBuf>,
    instance_type: Option<String>,
}

/// The pool's size as the state file keeps it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    capacity: u32,
    on_demand: u32,
    /// The numbers of the instances removed by name: never used again, as a cloud
    /// never gives a new instance an old one's id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    removed: Vec<u32>,
}

/// One line of the state file's log: an applied target, by whom, and the size before.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogLine {
    /// Process id of the agent that applied it.
    pub pid: u32,
    /// Capacity before.
    pub from: u32,
    /// Capacity applied.
    pub capacity: u32,
    /// On-demand share applied.
    pub on_demand: u32,
}

/// The log of a state file: `<state_file>.log`.
pub fn log_path(state_file: &Path) -> PathBuf {
    let mut p = state_file.as_os_str().to_owned();
    p.push(".log");
    PathBuf::from(p)
}

fn io_error(path: &Path, e: &dyn std::fmt::Display) -> ProviderError {
    ProviderError::Transient {
        message: format!("dry-run state file {}: {e}", path.display()),
    }
}

#[derive(Debug)]
struct State {
    target: CapacityTarget,
    removed: Vec<u32>,
    applied: Vec<CapacityTarget>,
    removals: Vec<Vec<String>>,
}

impl DryRunProvider {
    /// A pool called `pool` with `initial` on-demand nodes and the given bounds.
    pub fn new(pool: impl Into<String>, initial: u32, min: u32, max: u32) -> Self {
        Self {
            pool: pool.into(),
            min,
            max,
            state: Mutex::new(State {
                target: CapacityTarget::on_demand(initial),
                removed: Vec::new(),
                applied: Vec::new(),
                removals: Vec::new(),
            }),
            file: None,
            instance_type: None,
        }
    }

    /// Its nodes run `instance_type`.
    #[must_use]
    pub fn with_instance_type(mut self, instance_type: Option<String>) -> Self {
        self.instance_type = instance_type;
        self
    }

    /// Keeps the pool's size in `path` (created at the initial size when missing) and
    /// logs every applied target to [`log_path`].
    #[must_use]
    pub fn with_state_file(mut self, path: PathBuf) -> Self {
        self.file = Some(path);
        self
    }

    /// The target in force and the numbers removed: the state file's, when there is
    /// one.
    fn current(&self) -> Result<(CapacityTarget, Vec<u32>), ProviderError> {
        let here = || {
            let state = self.lock();
            (state.target, state.removed.clone())
        };
        let Some(path) = &self.file else {
            return Ok(here());
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let s: Stored = serde_json::from_slice(&bytes).map_err(|e| io_error(path, &e))?;
                let target = CapacityTarget {
                    capacity: s.capacity,
                    on_demand: s.on_demand.min(s.capacity),
                    emergency: false,
                };
                Ok((target, s.removed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(here()),
            Err(e) => Err(io_error(path, &e)),
        }
    }

    /// The pool's instances: numbered from 0, skipping removed numbers, the first
    /// `on_demand` of them on-demand.
    fn instances(&self, target: &CapacityTarget, removed: &[u32]) -> Vec<Instance> {
        (0u32..)
            .filter(|i| !removed.contains(i))
            .take(target.capacity as usize)
            .enumerate()
            .map(|(k, i)| Instance {
                id: self.id(i),
                lifecycle: Lifecycle::InService,
                health: Health::Healthy,
                instance_type: self.instance_type.clone(),
                zone: None,
                market: if (k as u32) < target.on_demand {
                    Market::OnDemand
                } else {
                    Market::Spot
                },
            })
            .collect()
    }

    fn id(&self, number: u32) -> String {
        format!("dry-run-{}-{number}", self.pool)
    }

    /// Writes `target` to the state file (whole, by rename) and appends it to the log.
    fn store(
        path: &Path,
        from: u32,
        target: &CapacityTarget,
        removed: &[u32],
    ) -> Result<(), ProviderError> {
        let stored = Stored {
            capacity: target.capacity,
            on_demand: target.on_demand,
            removed: removed.to_vec(),
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".{}.tmp", std::process::id()));
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, serde_json::to_vec(&stored).unwrap_or_default())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| io_error(path, &e))?;
        let line = LogLine {
            pid: std::process::id(),
            from,
            capacity: target.capacity,
            on_demand: target.on_demand,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path(path))
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| io_error(path, &e))
    }

    /// Every target applied so far, oldest first.
    pub fn applied(&self) -> Vec<CapacityTarget> {
        self.lock().applied.clone()
    }

    /// Every removal asked for so far (the ids named), oldest first.
    pub fn removals(&self) -> Vec<Vec<String>> {
        self.lock().removals.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl NodePoolProvider for DryRunProvider {
    fn kind(&self) -> &'static str {
        "dry-run"
    }

    async fn describe(&self) -> Result<PoolDescription, ProviderError> {
        let (t, removed) = self.current()?;
        let instances = self.instances(&t, &removed);
        Ok(PoolDescription {
            steps: Default::default(),
            min: self.min,
            max: self.max.max(t.capacity),
            desired: t.capacity,
            instances,
        })
    }

    async fn apply(&self, target: &CapacityTarget) -> Result<(), ProviderError> {
        if target.on_demand > target.capacity {
            return Err(ProviderError::Validation {
                message: format!(
                    "on_demand {} exceeds capacity {}",
                    target.on_demand, target.capacity
                ),
            });
        }
        let (from, removed) = self.current()?;
        if let Some(path) = &self.file {
            Self::store(path, from.capacity, target, &removed)?;
        }
        let mut state = self.lock();
        state.target = *target;
        state.removed = removed;
        state.applied.push(*target);
        Ok(())
    }

    async fn remove(&self, ids: &[String]) -> Result<(), ProviderError> {
        let (from, mut removed) = self.current()?;
        let instances = self.instances(&from, &removed);
        let mut target = from;
        for inst in instances.iter().filter(|i| ids.contains(&i.id)) {
            let number = inst
                .id
                .rsplit('-')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(u32::MAX);
            removed.push(number);
            target.capacity -= 1;
            if inst.market == Market::OnDemand {
                target.on_demand -= 1;
            }
        }
        removed.sort_unstable();
        if let Some(path) = &self.file {
            Self::store(path, from.capacity, &target, &removed)?;
        }
        let mut state = self.lock();
        state.target = target;
        state.removed = removed;
        state.removals.push(ids.to_vec());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn applies_absolute_targets_and_records_them() {
        let p = DryRunProvider::new("web", 2, 1, 10);
        let d = p.describe().await.unwrap();
        assert_eq!((d.desired, d.instances.len()), (2, 2));
        let t = CapacityTarget {
            capacity: 5,
            on_demand: 3,
            emergency: false,
        };
        p.apply(&t).await.unwrap();
        p.apply(&t).await.unwrap();
        let d = p.describe().await.unwrap();
        assert_eq!(d.desired, 5);
        assert_eq!(
            d.instances
                .iter()
                .filter(|i| i.market == Market::Spot)
                .count(),
            2
        );
        assert_eq!(p.applied(), vec![t, t]);
        let bad = CapacityTarget {
            capacity: 1,
            on_demand: 2,
            emergency: false,
        };
        assert!(matches!(
            p.apply(&bad).await,
            Err(ProviderError::Validation { .. })
        ));
    }

    #[tokio::test]
    async fn removes_exactly_the_named_instances_and_never_reuses_their_ids() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.json");
        let a = DryRunProvider::new("web", 4, 0, 10).with_state_file(path.clone());
        a.apply(&CapacityTarget {
            capacity: 4,
            on_demand: 2,
            emergency: false,
        })
        .await
        .unwrap();
        let ids =
            |d: &PoolDescription| d.instances.iter().map(|i| i.id.clone()).collect::<Vec<_>>();
        // One on-demand, one spot, and one the pool never had.
        let asked = vec![
            "dry-run-web-1".to_owned(),
            "dry-run-web-3".to_owned(),
            "i-elsewhere".to_owned(),
        ];
        a.remove(&asked).await.unwrap();
        let b = DryRunProvider::new("web", 4, 0, 10).with_state_file(path.clone());
        let d = b.describe().await.unwrap();
        assert_eq!(d.desired, 2);
        assert_eq!(ids(&d), ["dry-run-web-0", "dry-run-web-2"]);
        assert_eq!(
            d.instances.iter().map(|i| i.market).collect::<Vec<_>>(),
            [Market::OnDemand, Market::Spot]
        );
        // Again: those are gone already, nothing more goes.
        b.remove(&asked).await.unwrap();
        assert_eq!(a.describe().await.unwrap().desired, 2);
        // Growing again gives new ids, never the removed ones.
        a.apply(&CapacityTarget::on_demand(4)).await.unwrap();
        assert_eq!(
            ids(&b.describe().await.unwrap()),
            [
                "dry-run-web-0",
                "dry-run-web-2",
                "dry-run-web-4",
                "dry-run-web-5"
            ]
        );
        assert_eq!(a.removals(), vec![asked]);
    }

    #[tokio::test]
    async fn a_state_file_is_shared_and_every_apply_logged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.json");
        let a = DryRunProvider::new("web", 2, 1, 10).with_state_file(path.clone());
        let b = DryRunProvider::new("web", 2, 1, 10).with_state_file(path.clone());
        assert_eq!(a.describe().await.unwrap().desired, 2);
        a.apply(&CapacityTarget::on_demand(4)).await.unwrap();
        // Another agent sees the size the first one applied.
        assert_eq!(b.describe().await.unwrap().desired, 4);
        b.apply(&CapacityTarget::on_demand(3)).await.unwrap();
        assert_eq!(a.describe().await.unwrap().desired, 3);
        let log = std::fs::read_to_string(log_path(&path)).unwrap();
        let lines: Vec<LogLine> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines
                .iter()
                .map(|l| (l.from, l.capacity))
                .collect::<Vec<_>>(),
            vec![(2, 4), (4, 3)]
        );
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(
            a.describe().await,
            Err(ProviderError::Transient { .. })
        ));
    }
}
