//! Why a decision came out as it did: the vocabulary every part of the brain (the
//! planner, budgets, spot, schedules, emergencies, groups, predictive scaling) uses
//! to explain itself, and its one-line rendering for people.
//!
//! It is a module of its own so that the modules that produce reasons depend on it,
//! not on each other.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use capstan_config::Tier;

/// A metric's name in reasons and targets: shared, so reasons cost no allocation.
pub type Metric = std::sync::Arc<str>;

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
    Schedule {
        /// The window.
        name: String,
        /// `min` or `max`.
        bound: String,
        /// The pool's own value.
        from: u32,
        /// The value while the window is active.
        to: u32,
        /// When the window ends.
        until: DateTime<Utc>,
    },
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
    GroupShare {
        /// The group.
        group: String,
        /// Its strategy.
        strategy: String,
        /// The group's size this pass.
        group_desired: u32,
        /// This member's share of it.
        share: u32,
        /// Money per node-hour here, when priced.
        price: Option<f64>,
        /// What holds the share where it is (`max`, `min`, `scale_down_rate`,
        /// `unavailable`), if anything.
        limit: Option<Limit>,
    },
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
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // One sentence per reason, written by subject below.
        match self {
            Reason::Target { .. }
            | Reason::DrivenBy { .. }
            | Reason::MetricUnavailable { .. }
            | Reason::QueryFailed { .. }
            | Reason::ScaleDownBlockedByMissingMetrics { .. }
            | Reason::NoMetrics
            | Reason::Stabilized { .. }
            | Reason::RateLimited { .. }
            | Reason::ScalingDisabled { .. }
            | Reason::ClampedToMin { .. }
            | Reason::ClampedToMax { .. } => self.fmt_planner(f),
            Reason::Schedule { .. }
            | Reason::EmergencyStarted { .. }
            | Reason::EmergencyActive { .. }
            | Reason::EmergencyEnded { .. }
            | Reason::Flapping { .. }
            | Reason::Frozen { .. }
            | Reason::ReplacingFaultyGpu { .. }
            | Reason::ReplacingInterrupted { .. }
            | Reason::AnomalyEmergency { .. } => self.fmt_bounds(f),
            Reason::GroupShare { .. }
            | Reason::GroupSpillover { .. }
            | Reason::GroupRefused { .. } => self.fmt_group(f),
            Reason::CappedByBudget { .. }
            | Reason::CappedByEmergencyAllowance { .. }
            | Reason::CappedByPoolBudget { .. }
            | Reason::PoolOverBudget { .. }
            | Reason::OverBudget { .. }
            | Reason::MinimumsExceedBudget { .. }
            | Reason::TrimmedByBudget { .. }
            | Reason::MovedToSpot { .. }
            | Reason::SpotFallback { .. }
            | Reason::SpotFallbackOverBudget { .. }
            | Reason::SpotRetry => self.fmt_money(f),
            Reason::PredictiveWarmingUp { .. }
            | Reason::PredictiveFallback { .. }
            | Reason::Predicted { .. }
            | Reason::PredictiveRaised { .. }
            | Reason::Anomaly { .. } => self.fmt_forecast(f),
        }
    }
}

impl Reason {
    /// The HPA planner's steps.
    fn fmt_planner(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Target {
                metric,
                value,
                target,
                ratio,
                proposed,
                ready,
                missing,
                unready,
                no_change,
            } => {
                write!(
                    f,
                    "target {metric}: {value:.2} per node vs {target} (ratio {ratio:.2}, {ready} ready"
                )?;
                if *missing > 0 {
                    write!(f, ", {missing} missing")?;
                }
                if *unready > 0 {
                    write!(f, ", {unready} unready")?;
                }
                if *no_change {
                    write!(f, ") → no change ({proposed})")
                } else {
                    write!(f, ") → {proposed}")
                }
            }
            Reason::DrivenBy { metric, proposed } => write!(f, "driven by {metric}: {proposed}"),
            Reason::MetricUnavailable { metric } => write!(f, "no readings for {metric}"),
            Reason::QueryFailed { query, error } => write!(f, "promql {query:?}: {error}"),
            Reason::ScaleDownBlockedByMissingMetrics { proposed } => {
                write!(
                    f,
                    "scale-down to {proposed} skipped: some targets have no readings"
                )
            }
            Reason::NoMetrics => write!(f, "no target has readings; keeping the current size"),
            Reason::Stabilized {
                direction,
                window_seconds,
                from,
                to,
            } => {
                let d = direction.as_str();
                write!(
                    f,
                    "scale-{d} stabilization window {window_seconds}s: {from} → {to}"
                )
            }
            Reason::RateLimited {
                direction,
                policy,
                from,
                to,
            } => {
                let d = direction.as_str();
                write!(f, "scale-{d} rate {policy}: {from} → {to}")
            }
            Reason::ScalingDisabled { direction } => {
                let d = direction.as_str();
                write!(f, "scale-{d} disabled")
            }
            Reason::ClampedToMin { from, min } => write!(f, "raised to min: {from} → {min}"),
            Reason::ClampedToMax { from, max } => write!(f, "capped at max: {from} → {max}"),
            other => write!(f, "{other:?}"),
        }
    }

    /// Bounds this pass: schedules, emergencies, flapping, replacements of leaving nodes.
    fn fmt_bounds(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Schedule {
                name,
                bound,
                from,
                to,
                until,
            } => {
                let verb = if to >= from { "raised" } else { "lowered" };
                write!(
                    f,
                    "schedule {name} {verb} {bound} to {to} (from {from}) until {}",
                    until.format("%Y-%m-%d %H:%M UTC")
                )
            }
            Reason::EmergencyStarted {
                saturation,
                threshold,
                intervals,
                emergency_max,
            } => write!(
                f,
                "emergency: saturation {saturation:.2} ≥ {threshold} for {intervals} intervals; max lifted to {emergency_max}"
            ),
            Reason::EmergencyActive {
                since,
                emergency_max,
            } => write!(
                f,
                "emergency since {}: max lifted to {emergency_max}",
                since.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Reason::EmergencyEnded { intervals } => write!(
                f,
                "emergency over: {intervals} intervals without need above max"
            ),
            Reason::Flapping {
                reversals,
                window_seconds,
                until,
            } => write!(
                f,
                "flapping: {reversals} reversals within {window_seconds}s; frozen until {until}"
            ),
            Reason::Frozen { until } => write!(f, "frozen after flapping until {until}"),
            Reason::ReplacingFaultyGpu { nodes, from, to } => write!(
                f,
                "{nodes} node(s) with a faulty GPU (uncorrected ECC errors or a fatal XID): replacing them, {from} → {to}"
            ),
            Reason::ReplacingInterrupted { nodes, from, to } => write!(
                f,
                "{nodes} node(s) under an interruption notice: replacing them early, {from} → {to}"
            ),
            Reason::AnomalyEmergency { metric } => {
                write!(f, "surge anomaly in {metric} starts emergency capacity")
            }

            other => write!(f, "{other:?}"),
        }
    }

    /// Pool groups.
    fn fmt_group(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::GroupShare {
                group,
                strategy,
                group_desired,
                share,
                price,
                limit,
            } => {
                write!(
                    f,
                    "group {group} ({strategy}): {share} of its {group_desired} node(s) here"
                )?;
                if let Some(p) = price {
                    write!(f, ", {p:.4}/node-h")?;
                }
                if let Some(l) = limit {
                    write!(f, ", held by {}", l.as_str())?;
                }
                Ok(())
            }
            Reason::GroupSpillover { group, from, nodes } => write!(
                f,
                "group {group}: {nodes} node(s) spilled over from {from}, whose cloud could not take them"
            ),
            Reason::GroupRefused {
                group,
                nodes,
                cause,
            } => write!(
                f,
                "group {group}: the cloud refused {nodes} node(s) ({cause}); the other members take them"
            ),
            other => write!(f, "{other:?}"),
        }
    }

    /// The budget and the spot split.
    fn fmt_money(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::CappedByBudget {
                from,
                to,
                tier,
                ceiling,
            } => write!(
                f,
                "capped by budget: {from} → {to} ({} tier, ceiling {ceiling:.2}/h)",
                tier.as_str()
            ),
            Reason::CappedByEmergencyAllowance {
                from,
                to,
                allowance,
            } => write!(
                f,
                "capped by emergency allowance: {from} → {to} (allowance {allowance:.2}/h)"
            ),
            Reason::CappedByPoolBudget { from, to, ceiling } => write!(
                f,
                "capped by pool budget: {from} → {to} (ceiling {ceiling:.2}/h)"
            ),
            Reason::PoolOverBudget { cost, ceiling } => write!(
                f,
                "pool over its budget: {cost:.2}/h against {ceiling:.2}/h"
            ),
            Reason::OverBudget {
                cost,
                ceiling,
                enforce,
            } => write!(
                f,
                "fleet over budget: {cost:.2}/h against {ceiling:.2}/h (enforce = {enforce}); scale-ups blocked"
            ),
            Reason::MinimumsExceedBudget { cost, ceiling } => write!(
                f,
                "pool minimums alone cost {cost:.2}/h, above the budget ceiling {ceiling:.2}/h; keeping the minimums"
            ),
            Reason::TrimmedByBudget { from, to, tier } => write!(
                f,
                "trimmed by budget: {from} → {to} ({} tier)",
                tier.as_str()
            ),
            Reason::MovedToSpot {
                on_demand_from,
                on_demand_to,
            } => write!(
                f,
                "moved to spot for budget: on-demand {on_demand_from} → {on_demand_to}"
            ),
            Reason::SpotFallback {
                nodes,
                minutes,
                cause,
            } => write!(f, "{cause}: {nodes} nodes to on-demand for {minutes} min"),
            Reason::SpotFallbackOverBudget { nodes } => write!(
                f,
                "{nodes} missing spot nodes not replaced by on-demand: the budget does not allow it"
            ),
            Reason::SpotRetry => write!(f, "spot fallback over; trying spot again"),
            other => write!(f, "{other:?}"),
        }
    }

    /// Forecasts and anomalies.
    fn fmt_forecast(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::PredictiveWarmingUp { metric } => {
                write!(f, "forecast for {metric} warming up; reactive only")
            }
            Reason::PredictiveFallback { metric, mase } => write!(
                f,
                "forecast for {metric} worse than naive over the last day (MASE {mase:.2} > 1); reactive only"
            ),
            Reason::Predicted {
                metric,
                demand,
                lead_minutes,
                nodes,
            } => write!(
                f,
                "forecast {metric}: demand {demand:.1} in {lead_minutes} min needs {nodes} nodes"
            ),
            Reason::PredictiveRaised { from, to } => {
                write!(f, "predictive scaling: {from} → {to}")
            }
            Reason::Anomaly {
                metric,
                value,
                expected,
                z,
            } => write!(
                f,
                "anomaly in {metric}: demand {value:.1} against {expected:.1} expected (z {z:.1})"
            ),
            other => write!(f, "{other:?}"),
        }
    }
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
