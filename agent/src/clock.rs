//! Injected time. Production reads the system clock here and nowhere else; the pure
//! code takes `now` as an argument, and intervals use tokio time, which tests can pause.

use chrono::{DateTime, Utc};

/// A source of wall-clock time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        // The one place that reads the wall clock; everything else is handed a Clock.
        #[allow(clippy::disallowed_methods)]
        Utc::now()
    }
}
