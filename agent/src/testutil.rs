//! Helpers shared by the agent's unit tests.

use capstan_collectors::{HostMetrics, LoadAverage, MemoryStats, NodeReport, SwapStats};
use chrono::{DateTime, Utc};

/// A report from `node` in `pool` at `at` whose only notable reading is `cpu` percent.
pub(crate) fn cpu_report(node: &str, pool: &str, cpu: f64, at: DateTime<Utc>) -> NodeReport {
    let mut r = NodeReport::new(node, Some(pool.to_owned()), at);
    r.host = Some(HostMetrics {
        cpu_percent: cpu,
        cpu_per_core_percent: vec![cpu],
        cores: 1,
        load: LoadAverage {
            one: 0.0,
            five: 0.0,
            fifteen: 0.0,
        },
        memory: MemoryStats {
            total_bytes: 1,
            used_bytes: 0,
            available_bytes: 1,
        },
        swap: SwapStats {
            total_bytes: 0,
            used_bytes: 0,
        },
        disks: vec![],
        network: vec![],
    });
    r
}

/// A clock that moves only when told.
#[derive(Debug)]
pub(crate) struct ManualClock(std::sync::Mutex<DateTime<Utc>>);

impl ManualClock {
    /// Stopped at `at` (RFC 3339).
    pub(crate) fn at(at: &str) -> Self {
        Self(std::sync::Mutex::new(at.parse().expect("an RFC 3339 time")))
    }

    /// Moves on by `d`.
    pub(crate) fn advance(&self, d: std::time::Duration) {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *t += chrono::Duration::from_std(d).unwrap_or_default();
    }
}

impl crate::clock::Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
