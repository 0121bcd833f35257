//! Continuity across restarts and failovers: each pool's decision state (the
//! stabilization and rate-limit history, emergency, flap and spot state, the circuit's
//! failure count and back-off, the last applied target) is saved after every pass the
//! leader makes, where the next leader reads it before its first pass: under
//! `state_dir` for a standalone agent, in etcd under the configured prefix for the etcd
//! coordinator. A new leader so respects the windows and cooldowns its predecessor
//! started, and does not repeat a scale-up it just made.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use capstan_providers::CapacityTarget;

use crate::brain::fleet::PoolState;
use crate::brain::planner::History;
use crate::engine::PoolRuntime;

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
}

impl Memory {
    /// A pool's memory now.
    pub fn of(pool: &PoolRuntime) -> Self {
        Self {
            version: VERSION,
            history: pool.history.clone(),
            state: pool.state.clone(),
            failures: pool.failures,
            retry_at: pool.retry_at,
            last_target: pool.last_target,
        }
    }

    /// Puts it back into `pool`.
    pub fn restore(self, pool: &mut PoolRuntime) {
        pool.history = self.history;
        pool.state = self.state;
        pool.failures = self.failures;
        pool.retry_at = self.retry_at;
        pool.last_target = self.last_target;
    }

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
        let tmp = path.with_extension("json.tmp");
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(())
    }
}

/// Loads every pool's memory from `store` into `pools`; a pool without stored state,
/// or with unreadable state (said in the log), keeps what it has.
pub async fn restore_all(store: &dyn DecisionStore, pools: &mut [PoolRuntime]) -> usize {
    let mut restored = 0;
    for pool in pools.iter_mut() {
        match store.load(&pool.config.name).await {
            Ok(Some(bytes)) => match Memory::decode(&bytes) {
                Ok(m) => {
                    m.restore(pool);
                    restored += 1;
                }
                Err(e) => {
                    tracing::warn!(pool = %pool.config.name, error = %e, "stored decision state ignored")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(pool = %pool.config.name, error = %e, "cannot read stored decision state")
            }
        }
    }
    restored
}

/// Saves every pool whose memory changed since `saved` (pool → bytes last saved).
/// Returns the pools that could not be saved, with why.
pub async fn save_changed(
    store: &dyn DecisionStore,
    pools: &[PoolRuntime],
    saved: &mut std::collections::HashMap<String, Vec<u8>>,
) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for pool in pools {
        let bytes = Memory::of(pool).encode();
        if saved.get(&pool.config.name) == Some(&bytes) {
            continue;
        }
        match store.save(&pool.config.name, &bytes).await {
            Ok(()) => {
                saved.insert(pool.config.name.clone(), bytes);
            }
            Err(e) => failed.push((pool.config.name.clone(), e.to_string())),
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test]
    async fn memory_survives_the_file_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileDecisions::open(dir.path().join("decisions")).unwrap();
        let cfg = capstan_config::from_str(
            "t.toml".as_ref(),
            r#"
            [[pool]]
            name = "web"
            provider = { type = "dry-run", initial = 2 }
            min = 1
            max = 10
            targets = [{ metric = "cpu.utilization", value = 60 }]
            "#,
            std::iter::empty(),
        )
        .unwrap();
        let provider = crate::engine::build_provider(&cfg.pools[0]).unwrap();
        let mut pool = PoolRuntime::new(cfg.pools[0].clone(), provider.clone());
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap();
        pool.history.record_recommendation(5, now);
        pool.history.record_scale(2, 5, now);
        pool.failures = 2;
        pool.last_target = Some(CapacityTarget::on_demand(5));
        let mut saved = std::collections::HashMap::new();
        assert!(
            save_changed(&store, std::slice::from_ref(&pool), &mut saved)
                .await
                .is_empty()
        );
        assert_eq!(saved.len(), 1);

        let mut next = [PoolRuntime::new(cfg.pools[0].clone(), provider)];
        assert_eq!(restore_all(&store, &mut next).await, 1);
        assert_eq!(Memory::of(&next[0]), Memory::of(&pool));
        assert_eq!(next[0].history.scale_up_events.len(), 1);

        // Unreadable state is ignored, not fatal.
        std::fs::write(dir.path().join("decisions/web.json"), "{").unwrap();
        let mut fresh = [PoolRuntime::new(
            cfg.pools[0].clone(),
            crate::engine::build_provider(&cfg.pools[0]).unwrap(),
        )];
        assert_eq!(restore_all(&store, &mut fresh).await, 0);
        assert!(fresh[0].history.scale_up_events.is_empty());
    }
}
