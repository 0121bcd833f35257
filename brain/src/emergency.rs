//! Emergency capacity: a pool saturated beyond `emergency.threshold` (the ratio of a
//! metric to its target) for `emergency.intervals` passes in a row may grow above
//! `max`, up to `emergency_max`. The emergency ends after as many passes in a row in
//! which the pool's own recommendation fits under `max` again; capacity above `max`
//! then drains at the pool's normal scale-down rate.
//!
//! Pure: time comes in as an argument.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use capstan_config::Emergency;

use super::planner::{MetricSample, TargetSpec};
use super::reason::Reason;

/// What the planner remembers about a pool's emergency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EmergencyState {
    /// Saturated passes in a row (outside an emergency).
    pub saturated: u32,
    /// Passes in a row that needed no emergency capacity (during one).
    pub calm: u32,
    /// When the emergency in force started.
    pub since: Option<DateTime<Utc>>,
}

/// The highest ratio of reading to target over the targets that have readings.
pub fn saturation(targets: &[TargetSpec], samples: &[Option<MetricSample>]) -> Option<f64> {
    targets
        .iter()
        .zip(samples)
        .filter_map(|(t, s)| {
            let s = (*s)?;
            (s.ready > 0 && t.value > 0.0 && s.sum.is_finite())
                .then(|| s.sum / f64::from(s.ready) / t.value)
        })
        .reduce(f64::max)
}

impl EmergencyState {
    /// Whether an emergency is in force.
    pub const fn active(&self) -> bool {
        self.since.is_some()
    }

    /// Starts an emergency now (a surge anomaly, with `anomaly_triggers_emergency`).
    pub fn start(&mut self, now: DateTime<Utc>) {
        *self = Self {
            since: Some(now),
            ..Self::default()
        };
    }

    /// Before planning: counts saturated passes and starts an emergency.
    pub fn before_plan(
        &mut self,
        cfg: Option<&Emergency>,
        saturation: Option<f64>,
        emergency_max: u32,
        now: DateTime<Utc>,
    ) -> Option<Reason> {
        let Some(cfg) = cfg else {
            *self = Self::default();
            return None;
        };
        if let Some(since) = self.since {
            return Some(Reason::EmergencyActive {
                since,
                emergency_max,
            });
        }
        match saturation {
            Some(s) if s >= cfg.threshold => self.saturated = self.saturated.saturating_add(1),
            // No readings: neither evidence of saturation nor of calm.
            None => {}
            Some(_) => self.saturated = 0,
        }
        if self.saturated < cfg.intervals {
            return None;
        }
        self.saturated = 0;
        self.calm = 0;
        self.since = Some(now);
        Some(Reason::EmergencyStarted {
            saturation: saturation.unwrap_or(cfg.threshold),
            threshold: cfg.threshold,
            intervals: cfg.intervals,
            emergency_max,
        })
    }

    /// After planning: ends the emergency once the pool's raw recommendation has fitted
    /// under `max` for `intervals` passes in a row.
    pub fn after_plan(
        &mut self,
        cfg: Option<&Emergency>,
        recommendation: Option<u32>,
        max: u32,
    ) -> Option<Reason> {
        let cfg = cfg?;
        self.since?;
        match recommendation {
            Some(r) if r <= max => self.calm = self.calm.saturating_add(1),
            None => {}
            Some(_) => self.calm = 0,
        }
        if self.calm < cfg.intervals {
            return None;
        }
        *self = Self::default();
        Some(Reason::EmergencyEnded {
            intervals: cfg.intervals,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample(avg: f64) -> Option<MetricSample> {
        Some(MetricSample {
            sum: avg * 4.0,
            ready: 4,
            reporting: 4,
            ..MetricSample::default()
        })
    }

    #[test]
    fn saturation_is_the_worst_target() {
        let t = |v: f64| TargetSpec {
            metric: "m".into(),
            value: v,
            missing_fallback: v,
        };
        assert_eq!(
            saturation(&[t(50.0), t(10.0)], &[sample(75.0), sample(30.0)]),
            Some(3.0)
        );
        assert_eq!(saturation(&[t(50.0)], &[None]), None);
    }

    #[test]
    fn starts_after_n_saturated_passes_and_ends_after_n_calm_ones() {
        let cfg = Emergency {
            threshold: 1.5,
            intervals: 3,
        };
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut st = EmergencyState::default();
        assert_eq!(st.before_plan(Some(&cfg), Some(2.0), 500, now), None);
        assert_eq!(
            st.before_plan(Some(&cfg), Some(1.2), 500, now),
            None,
            "reset"
        );
        assert_eq!(st.before_plan(Some(&cfg), Some(2.0), 500, now), None);
        assert_eq!(st.before_plan(Some(&cfg), None, 500, now), None, "no data");
        assert_eq!(st.before_plan(Some(&cfg), Some(1.6), 500, now), None);
        let r = st.before_plan(Some(&cfg), Some(1.5), 500, now).unwrap();
        assert!(matches!(r, Reason::EmergencyStarted { .. }), "{r:?}");
        assert!(st.active());
        for _ in 0..2 {
            assert_eq!(st.after_plan(Some(&cfg), Some(90), 100), None);
        }
        assert_eq!(st.after_plan(Some(&cfg), Some(150), 100), None, "reset");
        for _ in 0..2 {
            assert_eq!(st.after_plan(Some(&cfg), Some(90), 100), None);
        }
        assert_eq!(
            st.after_plan(Some(&cfg), Some(90), 100),
            Some(Reason::EmergencyEnded { intervals: 3 })
        );
        assert!(!st.active());
    }

    #[test]
    fn pools_without_an_emergency_table_never_have_one() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut st = EmergencyState::default();
        for _ in 0..10 {
            assert_eq!(st.before_plan(None, Some(100.0), 500, now), None);
        }
        assert!(!st.active());
    }
}
