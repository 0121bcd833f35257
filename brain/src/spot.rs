//! The on-demand/spot split and spot fallback.
//!
//! A pool's split is the clouds' own: the first `on_demand_base` nodes are on-demand,
//! then `on_demand_percent_above_base` % of the rest, rounded up; the remainder is
//! spot. When spot capacity is refused (the provider says so, or spot nodes do not
//! arrive within `spot.fallback_after`), the pool falls back: the spot nodes it has
//! stay, the missing ones are planned as on-demand, and after `spot.retry_after` the
//! normal split is tried again.
//!
//! Pure: time comes in as an argument.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use capstan_config::Spot;

use super::reason::Reason;

/// How a pool's capacity divides into on-demand and spot nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Nodes that are always on-demand.
    pub base: u32,
    /// On-demand percent above the base.
    pub percent_above_base: u32,
    /// At most this many spot nodes (a fallback keeps the spot nodes it has and no more).
    pub spot_cap: Option<u32>,
}

impl Split {
    /// Every node on-demand.
    pub const ON_DEMAND: Self = Self {
        base: u32::MAX,
        percent_above_base: 100,
        spot_cap: None,
    };

    /// The split a pool's `spot` table asks for; all on-demand without one.
    pub fn from_config(spot: Option<&Spot>) -> Self {
        spot.map_or(Self::ON_DEMAND, |s| Self {
            base: s.on_demand_base,
            percent_above_base: s.on_demand_percent_above_base.min(100),
            spot_cap: None,
        })
    }

    /// The same split with as much spot as the pool's base allows.
    pub const fn all_spot_above_base(self) -> Self {
        Self {
            percent_above_base: 0,
            ..self
        }
    }

    /// On-demand nodes out of `capacity`.
    pub fn on_demand(&self, capacity: u32) -> u32 {
        let base = self.base.min(capacity);
        let above = u64::from(capacity - base);
        let share = (above * u64::from(self.percent_above_base.min(100))).div_ceil(100);
        // `share <= above <= u32::MAX`.
        let share = u32::try_from(share).unwrap_or(u32::MAX);
        let od = base + share;
        match self.spot_cap {
            Some(cap) => od.max(capacity.saturating_sub(cap)),
            None => od,
        }
    }

    /// Spot nodes out of `capacity`.
    pub fn spot(&self, capacity: u32) -> u32 {
        capacity - self.on_demand(capacity)
    }
}

/// An ongoing fallback to on-demand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    /// When spot is tried again.
    pub until: DateTime<Utc>,
    /// Spot nodes the pool had when spot was refused; it keeps those.
    pub keep_spot: u32,
    /// What refused it, for the journal.
    pub cause: String,
}

/// What the planner remembers about a pool's spot capacity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpotState {
    /// Since when fewer spot nodes run than were asked for.
    pub short_since: Option<DateTime<Utc>>,
    /// The fallback in force, if any.
    pub fallback: Option<Fallback>,
}

impl SpotState {
    /// The split to plan with now.
    pub fn split(&self, spot: Option<&Spot>) -> Split {
        let split = Split::from_config(spot);
        match &self.fallback {
            Some(f) if spot.is_some() => Split {
                spot_cap: Some(f.keep_spot),
                ..split
            },
            _ => split,
        }
    }

    /// Updates the state from what the pool runs: `asked_spot` spot nodes were asked
    /// for by the last change, `running_spot` exist (pending or in service).
    pub fn observe(
        &mut self,
        spot: Option<&Spot>,
        asked_spot: Option<u32>,
        running_spot: u32,
        now: DateTime<Utc>,
    ) -> Option<Reason> {
        let spot = spot?;
        if let Some(f) = &self.fallback {
            if now < f.until {
                return None;
            }
            self.fallback = None;
            self.short_since = None;
            return Some(Reason::SpotRetry);
        }
        let Some(asked) = asked_spot.filter(|a| running_spot < *a) else {
            self.short_since = None;
            return None;
        };
        let since = *self.short_since.get_or_insert(now);
        let waited = (now - since).to_std().unwrap_or_default();
        if waited < spot.fallback_after {
            return None;
        }
        let cause = format!(
            "{} of {asked} spot nodes did not arrive within {}",
            asked - running_spot,
            humantime::format_duration(spot.fallback_after)
        );
        Some(self.fall_back(spot, asked - running_spot, running_spot, cause, now))
    }

    /// Spot capacity was refused outright (an insufficient-capacity error).
    pub fn refused(
        &mut self,
        spot: Option<&Spot>,
        missing: u32,
        running_spot: u32,
        message: &str,
        now: DateTime<Utc>,
    ) -> Option<Reason> {
        let spot = spot?;
        if self.fallback.is_some() {
            return None;
        }
        Some(self.fall_back(
            spot,
            missing,
            running_spot,
            format!("spot refused: {message}"),
            now,
        ))
    }

    fn fall_back(
        &mut self,
        spot: &Spot,
        missing: u32,
        keep_spot: u32,
        cause: String,
        now: DateTime<Utc>,
    ) -> Reason {
        let retry = chrono::Duration::from_std(spot.retry_after).unwrap_or(chrono::Duration::MAX);
        self.fallback = Some(Fallback {
            until: now + retry,
            keep_spot,
            cause: cause.clone(),
        });
        self.short_since = None;
        Reason::SpotFallback {
            nodes: missing,
            minutes: spot.retry_after.as_secs().div_ceil(60),
            cause,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use std::time::Duration;

    fn spot(base: u32, pct: u32) -> Spot {
        Spot {
            on_demand_base: base,
            on_demand_percent_above_base: pct,
            instance_types: vec![],
            fallback_after: Duration::from_secs(300),
            retry_after: Duration::from_secs(900),
        }
    }

    #[test]
    fn split_follows_the_clouds_definition() {
        let s = Split::from_config(Some(&spot(2, 20)));
        assert_eq!(s.on_demand(10), 4, "2 + ceil(20 % of 8)");
        assert_eq!(s.spot(10), 6);
        assert_eq!(s.on_demand(1), 1);
        assert_eq!(Split::ON_DEMAND.on_demand(7), 7);
        assert_eq!(s.all_spot_above_base().on_demand(10), 2);
        let capped = Split {
            spot_cap: Some(3),
            ..s
        };
        assert_eq!(capped.on_demand(10), 7, "only 3 spot nodes");
        assert_eq!(
            capped.on_demand(4),
            3,
            "the cap only limits spot: 2 + ceil(20 % of 2)"
        );
    }

    #[test]
    fn missing_spot_nodes_fall_back_after_the_wait_and_retry_later() {
        let cfg = spot(0, 0);
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut st = SpotState::default();
        assert_eq!(st.observe(Some(&cfg), Some(5), 2, t0), None);
        assert_eq!(
            st.observe(Some(&cfg), Some(5), 2, t0 + chrono::Duration::seconds(299)),
            None
        );
        let r = st
            .observe(Some(&cfg), Some(5), 2, t0 + chrono::Duration::seconds(300))
            .unwrap();
        assert_eq!(
            r.to_string(),
            "3 of 5 spot nodes did not arrive within 5m: 3 nodes to on-demand for 15 min"
        );
        let split = st.split(Some(&cfg));
        assert_eq!(split.on_demand(5), 3, "2 spot kept, 3 on-demand");
        // Arrivals during the fallback change nothing; after retry_after spot is tried again.
        assert_eq!(
            st.observe(Some(&cfg), Some(5), 5, t0 + chrono::Duration::seconds(600)),
            None
        );
        assert_eq!(
            st.observe(Some(&cfg), Some(2), 2, t0 + chrono::Duration::seconds(1200)),
            Some(Reason::SpotRetry)
        );
        assert_eq!(st.split(Some(&cfg)).on_demand(5), 0);
    }

    #[test]
    fn arriving_spot_nodes_reset_the_wait() {
        let cfg = spot(0, 0);
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut st = SpotState::default();
        st.observe(Some(&cfg), Some(5), 2, t0);
        st.observe(Some(&cfg), Some(5), 5, t0 + chrono::Duration::seconds(200));
        assert_eq!(
            st.observe(Some(&cfg), Some(6), 5, t0 + chrono::Duration::seconds(400)),
            None
        );
        assert!(st.fallback.is_none());
    }

    #[test]
    fn a_refusal_falls_back_at_once_and_pools_without_spot_ignore_it() {
        let cfg = spot(1, 0);
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut st = SpotState::default();
        assert_eq!(st.refused(None, 3, 0, "x", t0), None);
        let r = st
            .refused(Some(&cfg), 3, 1, "no spot in us-east-1a", t0)
            .unwrap();
        assert_eq!(
            r.to_string(),
            "spot refused: no spot in us-east-1a: 3 nodes to on-demand for 15 min"
        );
        assert_eq!(st.split(Some(&cfg)).on_demand(5), 4);
    }
}
