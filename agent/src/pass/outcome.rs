//! What a pass says it did: per pool, per group, for the fleet.

use super::*;

/// One member's part of a group's pass.
#[derive(Debug, Clone, Serialize)]
pub struct MemberOutcome {
    /// The pool.
    pub pool: String,
    /// Nodes it held.
    pub current: u32,
    /// Its share of the group's size.
    pub share: u32,
    /// What the budget (and any spill-over) gave it.
    pub granted: u32,
    /// What holds its share, if anything.
    pub limit: Option<Limit>,
    /// Money per node-hour there, when priced.
    pub price: Option<f64>,
    /// Nodes its cloud refused this pass.
    pub refused: u32,
    /// Nodes it took over from refusing members this pass.
    pub spilled_in: u32,
}

/// What one pass did to one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupOutcome {
    /// When.
    pub at: DateTime<Utc>,
    /// The group.
    pub group: String,
    /// Its strategy.
    pub strategy: &'static str,
    /// Nodes its members held.
    pub current: u32,
    /// The size its targets ask for.
    pub desired: u32,
    /// What its members were given in the end (after the budget and spill-overs).
    pub granted: u32,
    /// One sample per target, over all members.
    pub samples: Vec<Option<MetricSample>>,
    /// One per member, in the order listed.
    pub members: Vec<MemberOutcome>,
    /// Why the group's size is what it is.
    pub reasons: Vec<Reason>,
}

/// What a pass did with a pool (the journal's, the JSON's and the metrics' `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do: the cloud already has the planned target.
    None,
    /// Planned only (`capstan plan`, or a follower).
    Plan,
    /// Not acted on (backing off, circuit open, frozen, not leader...).
    Skipped,
    /// The new target was applied.
    Scaled,
    /// The cloud call failed.
    Failed,
    /// The new target was sent and the cloud accepted it; it carries it out as an
    /// operation that later passes follow.
    Submitted,
    /// An operation is in flight for the pool: no new target until it ends.
    InFlight,
    /// Targeted scale-in: the nodes chosen to leave are draining; they are removed
    /// once drained (nothing is sent to the cloud this pass).
    Draining,
}

impl Action {
    /// As written in the journal and in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Plan => "plan",
            Self::Skipped => "skipped",
            Self::Scaled => "scaled",
            Self::Failed => "failed",
            Self::Submitted => "submitted",
            Self::InFlight => "in_flight",
            Self::Draining => "draining",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one pass did to one pool.
#[derive(Debug, Clone, Serialize)]
pub struct PassOutcome {
    /// When.
    pub at: DateTime<Utc>,
    /// Nodes the provider reported.
    pub current: u32,
    /// Nodes decided.
    pub desired: u32,
    /// On-demand share of `desired`.
    pub on_demand: u32,
    /// Spot share of `desired`.
    pub spot: u32,
    /// Cost per hour of `desired` under its split.
    pub hourly_cost: f64,
    /// Bounds this pass, after schedules (`max` before any emergency lift).
    pub bounds: Bounds,
    /// Names of the schedule windows in force.
    pub schedules: Vec<String>,
    /// An emergency is in force.
    pub emergency: bool,
    /// The pool is frozen after flapping until then.
    pub frozen_until: Option<DateTime<Utc>>,
    /// Spot is planned as on-demand until then.
    pub spot_fallback_until: Option<DateTime<Utc>>,
    /// What the pass did with the pool.
    pub action: Action,
    /// Why not scaled, or the error.
    pub detail: Option<String>,
    /// The provider error's kind when the action failed.
    pub error_kind: Option<&'static str>,
    /// When an operation ended this pass: how long it took from its submission.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation_seconds: Option<f64>,
    /// When the cloud carried out a target this pass (`scaled`): the size it was sent
    /// from. A call that ends in a later pass than the one that sent it is journaled
    /// by that pass, whose `current` is already what the cloud holds after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<u32>,
    /// The decision's reasons.
    pub reasons: Vec<Reason>,
    /// One sample per target.
    pub samples: Vec<Option<MetricSample>>,
    /// Per target: the demand forecast `predictive.horizon` ahead.
    pub forecasts: Vec<Option<f64>>,
    /// Per target: the forecast's trailing-day MASE.
    pub mase: Vec<Option<f64>>,
    /// Predictive scaling is in force.
    pub predictive_active: bool,
    /// The group the pool is a member of.
    pub group: Option<String>,
}

/// What one pass did to the fleet.
#[derive(Debug, Clone)]
pub struct FleetOutcome {
    /// When.
    pub at: DateTime<Utc>,
    /// One per pool, in config order.
    pub pools: Vec<Result<PassOutcome, PassError>>,
    /// One per group, in config order.
    pub groups: Vec<GroupOutcome>,
    /// Cost per hour of the fleet as planned (pools not described count at their
    /// last known size).
    pub fleet_hourly_cost: f64,
    /// The fleet ceiling, if any.
    pub budget_ceiling: Option<f64>,
    /// Still over the ceiling after this pass.
    pub over_budget: bool,
    /// Fleet-level notes (over budget, minimums above the ceiling).
    pub reasons: Vec<Reason>,
}

/// Why a pass produced no decision.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PassError {
    /// Earlier calls failed; the pool is left alone until `until`.
    #[error("backing off after {failures} failed provider call(s) until {until}; the last: {last}")]
    BackingOff {
        /// Consecutive failures.
        failures: u32,
        /// When calls resume.
        until: DateTime<Utc>,
        /// The last failure.
        last: String,
    },
    /// Describing the pool failed.
    #[error("describe failed: {0}")]
    Describe(#[from] ProviderError),
    /// The pass made no decision for the pool (it was seen, but neither planned on its
    /// own nor as a group member). Not a provider error: nothing failed at the cloud.
    #[error("no decision was made for this pool this pass")]
    NotPlanned,
}

/// Whether to call the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plan and apply (the daemon).
    Act,
    /// Plan only (`capstan plan`).
    PlanOnly,
}
