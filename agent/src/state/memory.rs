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

impl Default for Memory {
    fn default() -> Self {
        Self {
            version: VERSION,
            history: History::default(),
            state: PoolState::default(),
            failures: 0,
            retry_at: None,
            last_target: None,
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
        let tmp = path.with_extension("json.tmp");
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(())
    }
}
