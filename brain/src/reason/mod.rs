//! Why a decision came out as it did: the vocabulary every part of the brain (the
//! planner, budgets, spot, schedules, emergencies, groups, predictive scaling) uses
//! to explain itself, and its one-line rendering for people.
//!
//! It is a module of its own so that the modules that produce reasons depend on it,
//! not on each other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use capstan_config::Tier;

mod display;

/// A metric's name in reasons and targets: shared, so reasons cost no allocation.
pub type Metric = std::sync::Arc<str>;

/// The most bytes a [`Reason`] takes (checked when the crate compiles).
pub const REASON_SIZE: usize = 72;
const _: () = assert!(std::mem::size_of::<Reason>() <= REASON_SIZE);

/// Scaling direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Adding nodes.
    Up,
    /// Removing nodes.
    Down,
}

impl Direction {
    /// `up` or `down`, as in "scale-up".
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// Why a decision came out as it did. Machine-readable; `kind` tags each.
///
/// The rare variants with several strings hold them boxed, so that a reason stays
/// within [`REASON_SIZE`] bytes: every pool's plan holds a few each pass, and the
/// fleet pass over 10,000 pools is bound by the memory it touches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// One target's proposal.
    Target {
        /// Metric.
        metric: Metric,
        /// Average per ready node that reported.
        value: f64,
        /// Target per node.
        target: f64,
        /// value / target.
        ratio: f64,
        /// Nodes this target asks for.
        proposed: u32,
        /// Ready nodes that reported.
        ready: u32,
        /// Ready nodes that did not report.
        missing: u32,
        /// Nodes not ready.
        unready: u32,
        /// The ratio was within tolerance, or the missing-metric correction cancelled
        /// the change, so this target asks for no change.
        no_change: bool,
    },
    /// The target that set the recommendation (the largest proposal).
    DrivenBy {
        /// Metric.
        metric: Metric,
        /// Its proposal.
        proposed: u32,
    },
    /// A target had no readings at all.
    MetricUnavailable {
        /// Metric.
        metric: Metric,
    },
    /// A PromQL target's query gave no usable value.
    QueryFailed {
        /// The query.
        query: String,
        /// Why, e.g. "the query returned no data".
        error: String,
    },
    /// Some targets were unavailable and the rest proposed a scale-down, which HPA skips.
    ScaleDownBlockedByMissingMetrics {
        /// What the available targets proposed.
        proposed: u32,
    },
    /// No target had readings; the pool keeps its size.
    NoMetrics,
    /// A stabilization window held the recommendation back.
    Stabilized {
        /// Window direction.
        direction: Direction,
        /// Window length in seconds.
        window_seconds: u64,
        /// Raw recommendation.
        from: u32,
        /// After the window.
        to: u32,
    },
    /// A rate policy limited the change.
    RateLimited {
        /// Direction.
        direction: Direction,
        /// The policies and how they were combined, e.g. `max(percent 100/15s, nodes 4/15s)`.
        policy: String,
        /// Wanted.
        from: u32,
        /// Allowed.
        to: u32,
    },
    /// Scaling in this direction is disabled.
    ScalingDisabled {
        /// Direction.
        direction: Direction,
    },
    /// Raised to `min`.
    ClampedToMin {
        /// Wanted.
        from: u32,
        /// The floor.
        min: u32,
    },
    /// Lowered to `max`.
    ClampedToMax {
        /// Wanted.
        from: u32,
        /// The ceiling.
        max: u32,
    },
    /// An active schedule window set a bound.
    Schedule(Box<ScheduleBound>),
    /// Saturation lasted long enough: the pool may grow to `emergency_max`.
    EmergencyStarted {
        /// The worst ratio of reading to target.
        saturation: f64,
        /// The configured threshold.
        threshold: f64,
        /// Saturated passes in a row.
        intervals: u32,
        /// The ceiling during the emergency.
        emergency_max: u32,
    },
    /// An emergency is in force.
    EmergencyActive {
        /// When it started.
        since: DateTime<Utc>,
        /// The ceiling during the emergency.
        emergency_max: u32,
    },
    /// The emergency ended; capacity above `max` drains at the scale-down rate.
    EmergencyEnded {
        /// Passes in a row that needed no emergency capacity.
        intervals: u32,
    },
    /// The pool reversed direction too often and is frozen.
    Flapping {
        /// Reversals counted.
        reversals: u32,
        /// The window they were counted in, in seconds.
        window_seconds: u64,
        /// End of the freeze.
        until: DateTime<Utc>,
    },
    /// The pool is frozen after flapping and keeps its size.
    Frozen {
        /// End of the freeze.
        until: DateTime<Utc>,
    },
    /// Nodes with a faulty GPU (uncorrected ECC errors, a fatal XID) are replaced.
    ReplacingFaultyGpu {
        /// Nodes with a faulty GPU.
        nodes: u32,
        /// Desired before.
        from: u32,
        /// Desired with their replacements.
        to: u32,
    },
    /// Nodes under an interruption notice are replaced before they go.
    ReplacingInterrupted {
        /// Nodes with a notice.
        nodes: u32,
        /// Desired before.
        from: u32,
        /// Desired with their replacements.
        to: u32,
    },
    /// The fleet's budget ceiling limited a scale-up.
    CappedByBudget {
        /// Wanted.
        from: u32,
        /// Granted.
        to: u32,
        /// The pool's tier.
        tier: Tier,
        /// The fleet ceiling per hour.
        ceiling: f64,
    },
    /// Emergency capacity was limited by the budget's emergency allowance.
    CappedByEmergencyAllowance {
        /// Wanted.
        from: u32,
        /// Granted.
        to: u32,
        /// The allowance per hour above the ceiling.
        allowance: f64,
    },
    /// The pool's own ceiling limited it.
    CappedByPoolBudget {
        /// Wanted.
        from: u32,
        /// Granted.
        to: u32,
        /// The pool's ceiling per hour.
        ceiling: f64,
    },
    /// The pool costs more than its own ceiling (prices rose) and is not trimmed.
    PoolOverBudget {
        /// Its cost per hour.
        cost: f64,
        /// Its ceiling per hour.
        ceiling: f64,
    },
    /// The fleet costs more than its ceiling; scale-ups are blocked.
    OverBudget {
        /// Fleet cost per hour.
        cost: f64,
        /// The ceiling per hour.
        ceiling: f64,
        /// `report` or `trim`.
        enforce: String,
    },
    /// Every pool's `min` alone costs more than the ceiling; the minimums are kept.
    MinimumsExceedBudget {
        /// Cost per hour of the minimums.
        cost: f64,
        /// The ceiling per hour.
        ceiling: f64,
    },
    /// Scaled down to bring the fleet back under its ceiling.
    TrimmedByBudget {
        /// Before.
        from: u32,
        /// After.
        to: u32,
        /// The pool's tier.
        tier: Tier,
    },
    /// Moved to spot to bring the fleet back under its ceiling.
    MovedToSpot {
        /// On-demand nodes before.
        on_demand_from: u32,
        /// On-demand nodes after.
        on_demand_to: u32,
    },
    /// Spot capacity is missing: the missing spot nodes are planned as on-demand.
    SpotFallback {
        /// Nodes moved to on-demand.
        nodes: u32,
        /// Minutes until spot is tried again.
        minutes: u64,
        /// What refused it.
        cause: String,
    },
    /// The on-demand replacement of missing spot nodes does not fit the budget.
    SpotFallbackOverBudget {
        /// On-demand nodes not added.
        nodes: u32,
    },
    /// The fallback ended; spot is tried again.
    SpotRetry,
    /// The forecast for a target is not trusted yet (warming up).
    PredictiveWarmingUp {
        /// Metric.
        metric: Metric,
    },
    /// The forecast did worse than "no change" over the last day: reactive only.
    PredictiveFallback {
        /// Metric.
        metric: Metric,
        /// Trailing-day MASE.
        mase: f64,
    },
    /// `predictive.mode = "auto"` backtested the pool's recent demand: whether it now
    /// scales on the forecast, and why.
    PredictiveAuto {
        /// It scales on the forecast until the next backtest.
        scale: bool,
        /// Days of demand scored.
        days: f64,
        /// Saturated minutes of forecast-and-scale at the pool's target (its SLO).
        saturated_minutes: u64,
        /// Node-hours of forecast-and-scale.
        forecast_node_hours: f64,
        /// The cheapest reactive-only policy with no more saturated minutes: its
        /// target value and node-hours (`None`: none stays within them).
        reactive: Option<(f64, f64)>,
    },
    /// `predictive.mode = "auto"` could not backtest (too little history, or none
    /// readable): reactive only until it can.
    PredictiveAutoPending {
        /// Why.
        detail: String,
    },
    /// Predictive scaling's ask for one target.
    Predicted {
        /// Metric.
        metric: Metric,
        /// Forecast demand when capacity asked for now is ready.
        demand: f64,
        /// The provisioning lead time, in minutes.
        lead_minutes: u64,
        /// Nodes that demand needs.
        nodes: u32,
    },
    /// Predictive scaling raised the recommendation above the reactive one.
    PredictiveRaised {
        /// The reactive recommendation.
        from: u32,
        /// The predictive one.
        to: u32,
    },
    /// A scale-down held by the forecast instead of the stabilization window: the
    /// forecast needs the nodes again before a replacement asked for now could be ready.
    PredictiveHeld {
        /// The recommendation.
        from: u32,
        /// The nodes kept.
        to: u32,
    },
    /// An anomaly in a target's demand.
    Anomaly {
        /// Metric.
        metric: Metric,
        /// The demand seen.
        value: f64,
        /// The demand forecast for it.
        expected: f64,
        /// Robust z-score of the residual.
        z: f64,
    },
    /// A surge anomaly started emergency capacity (`anomaly_triggers_emergency`).
    AnomalyEmergency {
        /// Metric.
        metric: Metric,
    },
    /// This pool's share of its group's size.
    GroupShare(Box<GroupShare>),
    /// Another member of the group could not take its share this pass; this pool takes
    /// part of it.
    GroupSpillover {
        /// The group.
        group: String,
        /// The member that could not take it.
        from: String,
        /// Nodes taken over here.
        nodes: u32,
    },
    /// This pool's cloud refused its share; the group gives it to the other members.
    GroupRefused {
        /// The group.
        group: String,
        /// Nodes it could not take.
        nodes: u32,
        /// What refused it.
        cause: String,
    },
    /// The pool holds only multiples of `step` nodes (a GKE node pool across zones):
    /// the plan was fitted to one, up within max and the budget, else down.
    Stepped {
        /// The plan before.
        from: u32,
        /// The multiple of `step` planned.
        to: u32,
        /// The pool's step.
        step: u32,
    },
    /// The pool's on-demand and spot parts are sized apart, each in multiples of its
    /// own step (a GKE pool over two node pools across zones): each part was fitted to
    /// one, within max and the budget.
    SteppedParts {
        /// (on-demand, spot) before.
        from: (u32, u32),
        /// (on-demand, spot) planned.
        to: (u32, u32),
        /// (on-demand, spot) steps.
        steps: (u32, u32),
    },
    /// The pool cannot hold an on-demand/spot split: planned and billed all on-demand.
    SplitNotApplied {
        /// Why not (e.g. a Uniform scale set has one priority for all its VMs).
        why: String,
    },
    /// A node chosen to leave the pool (targeted scale-in), with the facts behind it.
    ChosenForScaleIn(Box<ScaleInChoice>),
    /// A chosen node's agent says it is draining.
    DrainStarted {
        /// The node.
        node: String,
    },
    /// A chosen node's agent says it drained: it is removed next.
    Drained {
        /// The node.
        node: String,
        /// Seconds from its choice.
        seconds: f64,
    },
    /// A chosen node did not drain by its deadline.
    DrainTimedOut {
        /// The node.
        node: String,
        /// What follows: `remove` or `keep` (`scale_in.on_timeout`).
        then: String,
    },
    /// A chosen node's drain failed.
    DrainFailed(Box<DrainFailure>),
    /// A chosen node goes back to service: the pool no longer shrinks that far.
    DrainCancelled {
        /// The node.
        node: String,
    },
    /// Instances removed by name, the desired capacity lowered by as many.
    Removed {
        /// Their ids.
        nodes: Vec<String>,
    },
    /// A node that reports `protected` was passed over for scale-in.
    ProtectedNodeSkipped {
        /// The node.
        node: String,
    },
    /// No node is chosen for scale-in: too many of the pool's nodes are unready or
    /// not reporting.
    ScaleInHaltedUnready {
        /// Unready or silent nodes.
        unready: u32,
        /// Nodes of the pool (not terminating).
        nodes: u32,
        /// `scale_in.halt_when_unready`, percent.
        threshold_percent: f64,
    },
    /// Nodes not heard from since this agent began to lead are not chosen for scale-in
    /// until a report of theirs is overdue: silence that short says nothing of the
    /// node (its agent may not have found the new leader yet).
    ScaleInAwaitingReports {
        /// Nodes not chosen for that.
        nodes: u32,
    },
    /// The pool shrinks by its desired capacity and the cloud chooses which nodes go:
    /// its nodes' reports match none of its instances.
    ScaleInByCapacity {
        /// Why it is not targeted.
        why: String,
    },
}

/// What set a member's share at its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// The member is at its `max`.
    Max,
    /// The member is at its `min`.
    Min,
    /// The member's scale-down rate holds it (capacity leaves it at that rate).
    ScaleDownRate,
    /// The member may not grow this pass (not described, backing off, circuit open,
    /// capacity refused, or frozen).
    Unavailable,
}

impl Limit {
    /// As written in reasons.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Max => "max",
            Self::Min => "min",
            Self::ScaleDownRate => "scale-down rate",
            Self::Unavailable => "unavailable",
        }
    }
}

/// [`Reason::Schedule`]: the window, the bound and its values.
///
/// Boxed: inline it would make every [`Reason`] larger, and each pool's plan
/// carries a few reasons every pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleBound {
    /// The window.
    pub name: String,
    /// `min` or `max`.
    pub bound: String,
    /// The pool's own value.
    pub from: u32,
    /// The value while the window is active.
    pub to: u32,
    /// When the window ends.
    pub until: DateTime<Utc>,
}

/// [`Reason::GroupShare`]: a member's share of its group's size.
///
/// Boxed: inline it would make every [`Reason`] larger, and each pool's plan
/// carries a few reasons every pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupShare {
    /// The group.
    pub group: String,
    /// Its strategy.
    pub strategy: String,
    /// The group's size this pass.
    pub group_desired: u32,
    /// This member's share of it.
    pub share: u32,
    /// Money per node-hour here, when priced.
    pub price: Option<f64>,
    /// What holds the share where it is (`max`, `min`, `scale_down_rate`,
    /// `unavailable`), if anything.
    pub limit: Option<Limit>,
}

/// [`Reason::ChosenForScaleIn`]: the node and the facts behind its choice.
///
/// Boxed: inline it would make every [`Reason`] larger, and each pool's plan
/// carries a few reasons every pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScaleInChoice {
    /// The node (instance id).
    pub node: String,
    /// The rule that chose it: `unhealthy`, `interrupted`, `silent`,
    /// `market_over_share`, `selected` or `leader_last`.
    pub rule: String,
    /// How the pool's healthy nodes are ranked (`least-busy`, `newest`, `oldest`).
    pub select: String,
    /// Its zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// Nodes in its zone when it was chosen.
    pub zone_nodes: u32,
    /// Spot, not on-demand.
    pub spot: bool,
    /// Its own reading of the pool's first target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub busy: Option<f64>,
    /// When the leader stops waiting for its drain (`None`: no agent reports from
    /// it, so it is removed without one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<DateTime<Utc>>,
}

/// [`Reason::DrainFailed`]: the node, what its agent said, what follows.
///
/// Boxed: inline it would make every [`Reason`] larger, and each pool's plan
/// carries a few reasons every pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrainFailure {
    /// The node.
    pub node: String,
    /// What its agent said.
    pub detail: String,
    /// What follows: `remove` or `keep` (`scale_in.on_timeout`).
    pub then: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The boxed variants read and write as the struct variants they were: their
    /// fields beside `kind`, so journals written before still load.
    #[test]
    fn boxed_reasons_keep_their_flat_json() {
        let until = Utc.with_ymd_and_hms(2026, 1, 5, 18, 0, 0).unwrap();
        let cases = [
            (
                Reason::Schedule(Box::new(ScheduleBound {
                    name: "business-hours".into(),
                    bound: "min".into(),
                    from: 2,
                    to: 6,
                    until,
                })),
                serde_json::json!({"kind": "schedule", "name": "business-hours", "bound": "min",
                    "from": 2, "to": 6, "until": "2026-01-05T18:00:00Z"}),
            ),
            (
                Reason::GroupShare(Box::new(GroupShare {
                    group: "web".into(),
                    strategy: "cheapest-first".into(),
                    group_desired: 9,
                    share: 4,
                    price: Some(0.5),
                    limit: None,
                })),
                serde_json::json!({"kind": "group_share", "group": "web",
                    "strategy": "cheapest-first", "group_desired": 9, "share": 4,
                    "price": 0.5, "limit": null}),
            ),
            (
                Reason::ChosenForScaleIn(Box::new(ScaleInChoice {
                    node: "i-1".into(),
                    rule: "selected".into(),
                    select: "least-busy".into(),
                    zone: None,
                    zone_nodes: 3,
                    spot: false,
                    busy: Some(12.5),
                    deadline: Some(until),
                })),
                serde_json::json!({"kind": "chosen_for_scale_in", "node": "i-1",
                    "rule": "selected", "select": "least-busy", "zone_nodes": 3,
                    "spot": false, "busy": 12.5, "deadline": "2026-01-05T18:00:00Z"}),
            ),
            (
                Reason::DrainFailed(Box::new(DrainFailure {
                    node: "i-2".into(),
                    detail: "exit 1".into(),
                    then: "keep".into(),
                })),
                serde_json::json!({"kind": "drain_failed", "node": "i-2", "detail": "exit 1",
                    "then": "keep"}),
            ),
        ];
        for (reason, json) in cases {
            assert_eq!(serde_json::to_value(&reason).unwrap(), json);
            let back: Reason = serde_json::from_value(json).unwrap();
            assert_eq!(back, reason);
        }
    }
}
