//! The actuator's circuit breaker: after a failed provider call a pool backs off
//! exponentially, and after `circuit.failures` failures in a row its circuit is open
//! until the back-off ends; then one call is tried (half-open), and a success closes it.

use super::*;

/// The actuator's circuit breaker for one pool's cloud calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through (after a short backoff following a failure).
    Closed,
    /// `circuit.failures` calls in a row failed: no calls until the backoff ends.
    Open,
    /// The backoff ended: the next pass tries once; success closes the circuit, a
    /// failure opens it again for longer.
    HalfOpen,
}

impl CircuitState {
    /// As written in status and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Exponential back-off between failed calls: the pass interval doubled for each
/// failure in a row, never longer than `max`, and never shorter than the cloud's own
/// `Retry-After` (itself at most `max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: std::time::Duration,
    max: std::time::Duration,
}

impl Backoff {
    /// Doubling from `base` (the pass interval) up to `max` (`circuit.max_backoff`).
    pub fn new(base: std::time::Duration, max: std::time::Duration) -> Self {
        Self { base, max }
    }

    /// How long to wait after `failures` failed calls in a row, the last one with the
    /// cloud's `hint`.
    pub fn after(&self, failures: u32, hint: Option<std::time::Duration>) -> std::time::Duration {
        let factor = 2_u32.saturating_pow(failures.min(16)).min(1 << 16);
        let backoff = self.base.saturating_mul(factor);
        hint.map_or(backoff, |h| h.max(backoff)).min(self.max)
    }
}

impl PoolRuntime {
    /// The circuit breaker's state at `now`.
    pub fn circuit(&self, now: DateTime<Utc>) -> CircuitState {
        if self.memory.failures < self.config.circuit.failures {
            CircuitState::Closed
        } else if self.memory.retry_at.is_some_and(|at| at > now) {
            CircuitState::Open
        } else {
            CircuitState::HalfOpen
        }
    }

    /// A call succeeded: the circuit closes.
    pub(super) fn succeeded(&mut self) {
        if self.memory.failures >= self.config.circuit.failures {
            tracing::info!(pool = %self.config.name, "circuit closed: the provider answers again");
        }
        self.memory.failures = 0;
        self.memory.retry_at = None;
        self.last_failure = None;
    }
}

/// A provider call of `pool` failed: count it, and back off (the circuit opens at
/// `circuit.failures` in a row).
pub(super) fn provider_failure(
    pool: &mut PoolRuntime,
    err: &ProviderError,
    now: DateTime<Utc>,
    interval: std::time::Duration,
) {
    pool.memory.failures = pool.memory.failures.saturating_add(1);
    pool.last_failure = Some(err.to_string());
    let hint = match err {
        ProviderError::Throttled {
            retry_after: Some(hint),
            ..
        } => Some(*hint),
        _ => None,
    };
    let wait =
        Backoff::new(interval, pool.config.circuit.max_backoff).after(pool.memory.failures, hint);
    let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::minutes(5));
    pool.memory.retry_at = Some(now + wait);
    if pool.memory.failures == pool.config.circuit.failures {
        tracing::warn!(
            pool = %pool.config.name,
            failures = pool.memory.failures,
            error = %err,
            until = %pool.memory.retry_at.unwrap_or(now),
            "circuit open: no calls to this pool's provider until then, then one try"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::Backoff;

    #[test]
    fn doubles_from_the_interval_up_to_the_most() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(300));
        let waits: Vec<u64> = (1..=7).map(|n| b.after(n, None).as_secs()).collect();
        assert_eq!(waits, [20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.after(1, Some(Duration::from_secs(90))).as_secs(), 90);
        assert_eq!(b.after(1, Some(Duration::from_secs(3600))).as_secs(), 300);
    }

    proptest! {
        /// Never longer than the most, never shorter than the cloud's hint (within the
        /// most), and never shorter after one more failure.
        #[test]
        fn bounded_respectful_and_growing(
            base_ms in 1_u64..120_000,
            max_s in 1_u64..86_400,
            failures in 0_u32..64,
            hint_ms in prop::option::of(0_u64..200_000_000),
        ) {
            let (base, max) = (Duration::from_millis(base_ms), Duration::from_secs(max_s));
            let hint = hint_ms.map(Duration::from_millis);
            let b = Backoff::new(base, max);
            let wait = b.after(failures, hint);
            prop_assert!(wait <= max);
            if let Some(h) = hint {
                prop_assert!(wait >= h.min(max));
            }
            prop_assert!(b.after(failures + 1, hint) >= wait);
            prop_assert!(wait >= base.min(max));
        }
    }
}
