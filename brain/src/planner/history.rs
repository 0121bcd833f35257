//! What the planner remembers of a pool between passes ([`History`]): its raw
//! recommendations for the stabilization windows and its applied changes for the rate
//! policies, each list kept in time order, and where a window or period starts
//! ([`since`]).

use chrono::{DateTime, Timelike, Utc};
use serde::{Deserialize, Serialize};

use capstan_config::{ScalingBehavior, ScalingRules};

use super::Decision;

/// A past recommendation, for the stabilization windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recommendation {
    /// When it was made.
    pub at: DateTime<Utc>,
    /// Nodes recommended.
    pub nodes: u32,
}

/// A past change of capacity, for the rate policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleEvent {
    /// When it was applied.
    pub at: DateTime<Utc>,
    /// Nodes added (in the scale-up list) or removed (in the scale-down list).
    pub change: u32,
}

/// What the planner remembers between passes. The caller keeps it and records into
/// it what [`plan`](super::plan) returns and what the actuator applied, through the `record_*`
/// methods, which keep every list in time order (a clock stepping back included): the
/// planner reads only each list's tail inside its windows and periods. A history read
/// back (a leader's handover, a state file) is put in time order as it is read, so a
/// list written out of order cannot hide a recent recommendation from the windows.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct History {
    /// Raw recommendations, oldest first.
    #[serde(deserialize_with = "in_time_order")]
    pub recommendations: Vec<Recommendation>,
    /// Scale-ups applied.
    #[serde(deserialize_with = "in_time_order")]
    pub scale_up_events: Vec<ScaleEvent>,
    /// Scale-downs applied.
    #[serde(deserialize_with = "in_time_order")]
    pub scale_down_events: Vec<ScaleEvent>,
}

/// A record of the history, by when it happened.
pub(crate) trait Timed {
    fn at(&self) -> DateTime<Utc>;
}

/// The records of `list` (in time order) made after `cutoff`: its tail, found by
/// bisection, so a pass reads only the records its window or period can see.
pub(crate) fn after<T: Timed>(list: &[T], cutoff: DateTime<Utc>) -> &[T] {
    &list[list.partition_point(|r| r.at() <= cutoff)..]
}

impl Timed for Recommendation {
    fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

impl Timed for ScaleEvent {
    fn at(&self) -> DateTime<Utc> {
        self.at
    }
}

/// A list of records, oldest first; records of the same moment keep their order.
fn in_time_order<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Timed,
{
    let mut list = Vec::<T>::deserialize(deserializer)?;
    if !list.is_sorted_by_key(Timed::at) {
        list.sort_by_key(Timed::at);
    }
    Ok(list)
}

impl History {
    /// Records a pass: its raw recommendation, if it made one.
    pub fn record_decision(&mut self, decision: &Decision, now: DateTime<Utc>) {
        if let Some(nodes) = decision.recommendation {
            self.record_recommendation(nodes, now);
        }
    }

    /// Records a raw recommendation of `nodes` made at `now`, keeping time order.
    pub fn record_recommendation(&mut self, nodes: u32, now: DateTime<Utc>) {
        let at = self.recommendations.partition_point(|r| r.at <= now);
        self.recommendations
            .insert(at, Recommendation { at: now, nodes });
    }

    /// Records an applied change from `from` to `to` nodes.
    pub fn record_scale(&mut self, from: u32, to: u32, now: DateTime<Utc>) {
        let (events, change) = if to > from {
            (&mut self.scale_up_events, to - from)
        } else if from > to {
            (&mut self.scale_down_events, from - to)
        } else {
            return;
        };
        let at = events.partition_point(|e| e.at <= now);
        events.insert(at, ScaleEvent { at: now, change });
    }

    /// Drops what no window or period of `behavior` can see any more.
    pub fn prune(&mut self, behavior: &ScalingBehavior, now: DateTime<Utc>) {
        let window = behavior
            .scale_up
            .stabilization_window
            .max(behavior.scale_down.stabilization_window);
        let cutoff = since(now, window);
        self.recommendations.retain(|r| r.at > cutoff);
        let longest = |r: &ScalingRules| {
            r.policies
                .iter()
                .map(|p| p.period)
                .max()
                .unwrap_or_default()
        };
        // Either direction's limit reads both lists (a period's start is the size now,
        // less what was added in it, plus what was removed), so both are kept for the
        // longest period of either direction.
        let events = since(
            now,
            longest(&behavior.scale_up).max(longest(&behavior.scale_down)),
        );
        self.scale_up_events.retain(|e| e.at > events);
        self.scale_down_events.retain(|e| e.at > events);
    }
}

/// `now` less `d`: where a window or period starts.
///
/// A pass asks this several times a pool, almost always for a moment earlier the same
/// day, where only the time of day moves; that case is computed here directly, as
/// chrono computes it (outside a leap second), and any other is left to chrono.
pub(crate) fn since(now: DateTime<Utc>, d: std::time::Duration) -> DateTime<Utc> {
    // UTC's own fields, read without going through the (zero) offset.
    let naive = now.naive_utc();
    let time = naive.time();
    let (secs, frac) = (time.num_seconds_from_midnight(), time.nanosecond());
    if frac < 1_000_000_000 {
        let (borrow, frac) = match frac.checked_sub(d.subsec_nanos()) {
            Some(f) => (0, f),
            None => (1, frac + 1_000_000_000 - d.subsec_nanos()),
        };
        if let Some(secs) = d
            .as_secs()
            .checked_add(borrow)
            .and_then(|back| u64::from(secs).checked_sub(back))
            && let Ok(secs) = u32::try_from(secs)
            && let Some(at) = chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, frac)
        {
            return naive.date().and_time(at).and_utc();
        }
    }
    now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}
