//! Node telemetry for Capstan.
//!
//! A [`Collector`] adds its part to a [`NodeReport`], the versioned, serde-encoded
//! record one agent sends about its node every interval. The [`host::HostCollector`]
//! reads CPU, load, memory, swap, disks and network through `sysinfo`; [`scrape`] turns
//! a workload's Prometheus text exposition into `workload.<name>` values.
//!
//! **Invariant:** collectors never call providers; they only observe this node.

pub mod gpu;
pub mod host;
pub mod interruption;
#[cfg(feature = "nvml")]
mod nvml;
mod report;
pub mod scrape;

use chrono::{DateTime, Utc};

pub use report::*;

/// Why a collector produced nothing this time.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The data source is not there on this node (no driver, no such file); the agent
    /// carries on without this collector and says so once.
    #[error("{collector} unavailable: {reason}")]
    Unavailable {
        /// Collector name.
        collector: &'static str,
        /// Why.
        reason: String,
    },
    /// Reading failed this time; the next interval tries again.
    #[error("{collector} failed: {reason}")]
    Failed {
        /// Collector name.
        collector: &'static str,
        /// Why.
        reason: String,
    },
}

/// A source of node telemetry.
///
/// Collection is synchronous and may block briefly (it reads `/proc`); the agent runs
/// it off the async runtime. The collection time is passed in, so rates are computed
/// against injected time and tests need no clock.
pub trait Collector: Send {
    /// Short name for logs and metrics, e.g. `host`.
    fn name(&self) -> &'static str;

    /// Adds this collector's readings, taken at `at`, to `report`.
    fn collect(&mut self, at: DateTime<Utc>, report: &mut NodeReport) -> Result<(), CollectError>;
}
