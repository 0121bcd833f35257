//! Flap protection: a pool whose applied changes reverse direction more than
//! `flap.max_reversals` times within `flap.window` is frozen for `flap.cool_off`.
//! While frozen it keeps its size (a floor raised by a schedule still applies).
//!
//! Pure: time comes in as an argument.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use capstan_config::Flap;

use super::reason::{Direction, Reason};

/// What the planner remembers about a pool's changes of direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlapState {
    /// Applied changes within the window, oldest first.
    pub changes: Vec<(DateTime<Utc>, Direction)>,
    /// Frozen until then.
    pub frozen_until: Option<DateTime<Utc>>,
}

impl FlapState {
    /// The end of the freeze in force at `now`, if any.
    pub fn frozen(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.frozen_until.filter(|until| now < *until)
    }

    /// Reversals of direction among the remembered changes.
    pub fn reversals(&self) -> u32 {
        let n = self.changes.windows(2).filter(|w| w[0].1 != w[1].1).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Records an applied change; freezes the pool when it flaps.
    pub fn record(
        &mut self,
        cfg: &Flap,
        direction: Direction,
        now: DateTime<Utc>,
    ) -> Option<Reason> {
        if cfg.max_reversals == 0 {
            self.changes.clear();
            return None;
        }
        let window = chrono::Duration::from_std(cfg.window).unwrap_or(chrono::Duration::MAX);
        self.changes.retain(|(at, _)| now - *at < window);
        self.changes.push((now, direction));
        let reversals = self.reversals();
        if reversals <= cfg.max_reversals {
            return None;
        }
        let until = now + chrono::Duration::from_std(cfg.cool_off).unwrap_or(chrono::Duration::MAX);
        self.frozen_until = Some(until);
        self.changes.clear();
        Some(Reason::Flapping {
            reversals,
            window_seconds: cfg.window.as_secs(),
            until,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    const CFG: Flap = Flap {
        max_reversals: 3,
        window: Duration::from_secs(1800),
        cool_off: Duration::from_secs(600),
    };

    #[test]
    fn more_reversals_than_allowed_freeze_the_pool() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut st = FlapState::default();
        let dirs = [
            Direction::Up,
            Direction::Up,
            Direction::Down,
            Direction::Up,
            Direction::Down,
        ];
        for (i, d) in dirs.into_iter().enumerate() {
            let at = t0 + chrono::Duration::minutes(i64::try_from(i).unwrap());
            assert_eq!(st.record(&CFG, d, at), None, "step {i}");
        }
        assert_eq!(st.reversals(), 3);
        let at = t0 + chrono::Duration::minutes(5);
        let r = st.record(&CFG, Direction::Up, at).unwrap();
        assert_eq!(
            r.to_string(),
            format!(
                "flapping: 4 reversals within 1800s; frozen until {}",
                at + chrono::Duration::minutes(10)
            )
        );
        assert_eq!(st.frozen(at), Some(at + chrono::Duration::minutes(10)));
        assert_eq!(st.frozen(at + chrono::Duration::minutes(10)), None);
    }

    #[test]
    fn reversals_outside_the_window_are_forgotten() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut st = FlapState::default();
        for i in 0..20 {
            let d = if i % 2 == 0 {
                Direction::Up
            } else {
                Direction::Down
            };
            let at = t0 + chrono::Duration::minutes(20 * i);
            assert_eq!(
                st.record(&CFG, d, at),
                None,
                "one change per 20 min is not flapping"
            );
        }
    }

    #[test]
    fn zero_turns_it_off() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut st = FlapState::default();
        for i in 0..20 {
            let d = if i % 2 == 0 {
                Direction::Up
            } else {
                Direction::Down
            };
            assert_eq!(
                st.record(&Flap::OFF, d, t0 + chrono::Duration::seconds(i)),
                None
            );
        }
    }
}
