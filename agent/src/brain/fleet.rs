//! One planning pass over the whole fleet, as DESIGN §2 orders it:
//! schedule ∨ emergency → clamp → behavior → budget & tiers → spot.
//!
//! For each pool: the active schedule windows set its bounds, an emergency may lift
//! its `max` to `emergency_max`, the HPA planner sizes it within those bounds at its
//! behavior's rates, a flapping pool is held, and its spot state says which split to
//! plan with. Then the budget allocator grants the fleet what the money allows, by
//! tier, and each pool's grant is split into on-demand and spot nodes.
//!
//! Pure: no I/O, no clock. The state each pool carries between passes comes in
//! `&mut` and is updated deterministically from the inputs.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use capstan_config::{Pool, PriceConfig};

use super::budget::{self, Allocation, BudgetPolicy, Demand, Prices};
use super::emergency::{self, EmergencyState};
use super::flap::FlapState;
use super::planner::{self, History, MetricSample, Observed, Policy, Reason};
use super::predictive::Outlook;
use super::schedule::{self, ActiveWindow, Bounds};
use super::spot::{Split, SpotState};

/// What the brain remembers about a pool between passes, beyond the HPA history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolState {
    /// Emergency counters.
    pub emergency: EmergencyState,
    /// Direction changes and any freeze.
    pub flap: FlapState,
    /// Spot fallback.
    pub spot: SpotState,
}

/// What was observed of a pool this pass.
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// Nodes the pool holds now.
    pub current: u32,
    /// One sample per target.
    pub metrics: &'a [Option<MetricSample>],
    /// The HPA history.
    pub history: &'a History,
    /// Spot instances that exist (pending or in service).
    pub running_spot: u32,
    /// Spot nodes the last applied change asked for.
    pub asked_spot: Option<u32>,
    /// Predictive scaling's outlook, when the pool forecasts.
    pub outlook: Option<&'a Outlook>,
    /// The metric of a surge anomaly that started this pass, if any.
    pub surge: Option<&'a str>,
    /// Nodes of the pool with an interruption notice: replaced before they go.
    pub interrupted: u32,
    /// Nodes with a faulty GPU: replaced when the pool says so.
    pub faulty_gpus: u32,
}

/// One pool's inputs.
#[derive(Debug)]
pub struct PoolInput<'a> {
    /// Its configuration.
    pub config: &'a Pool,
    /// The planner policy built from it.
    pub policy: &'a Policy,
    /// Its prices this pass.
    pub prices: Option<Prices>,
    /// Its state, updated by the pass.
    pub state: &'a mut PoolState,
    /// What was observed; `None` when the pool could not be described, in which case it
    /// is held at `last_known` and only counted for cost.
    pub view: Option<View<'a>>,
    /// Nodes last seen, for a pool without a view.
    pub last_known: u32,
}

/// The outcome for one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolPlan {
    /// Nodes now.
    pub current: u32,
    /// Nodes to hold, after the budget.
    pub desired: u32,
    /// Of which on-demand.
    pub on_demand: u32,
    /// Of which spot.
    pub spot: u32,
    /// Cost per hour of `desired` under its split.
    pub hourly_cost: f64,
    /// The HPA raw recommendation to remember.
    pub recommendation: Option<u32>,
    /// The bounds this pass (after schedules; `max` not lifted by an emergency).
    pub bounds: Bounds,
    /// Schedule windows in force.
    pub schedules: Vec<ActiveWindow>,
    /// An emergency is in force.
    pub emergency: bool,
    /// `desired` is above the pool's configured `max` (an emergency, a schedule that
    /// raised max, or the drain after one), so the provider may lift the group's own max.
    pub above_max: bool,
    /// End of a flap freeze in force.
    pub frozen_until: Option<DateTime<Utc>>,
    /// Why, step by step.
    pub reasons: Vec<Reason>,
}

/// The outcome for the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetPlan {
    /// One per input, in order.
    pub pools: Vec<PoolPlan>,
    /// Cost per hour of the fleet as planned.
    pub fleet_hourly_cost: f64,
    /// The fleet ceiling, if any.
    pub budget_ceiling: Option<f64>,
    /// Still above the ceiling after this pass.
    pub over_budget: bool,
    /// Fleet-level notes.
    pub reasons: Vec<Reason>,
}

/// A pool's prices: on-demand from config (by instance type, weighted by the instances
/// it runs, where it mixes types); spot from the cloud's live price when given, else
/// from config, else the on-demand price.
pub fn prices<'t>(
    config: Option<&PriceConfig>,
    instance_types: impl IntoIterator<Item = Option<&'t str>>,
    live_spot: Option<f64>,
) -> Option<Prices> {
    let config = config?;
    let (mut od, mut spot, mut n) = (0.0, 0.0, 0_u32);
    for ty in instance_types {
        if let Some(p) = ty.and_then(|t| config.by_type.get(t)) {
            od += p.on_demand;
            spot += p.spot.or(config.spot).unwrap_or(p.on_demand);
            n += 1;
        }
    }
    let (on_demand, typed_spot) = if n == 0 {
        (config.on_demand, config.spot.unwrap_or(config.on_demand))
    } else {
        (od / f64::from(n), spot / f64::from(n))
    };
    Some(Prices {
        on_demand,
        spot: live_spot
            .filter(|p| p.is_finite() && *p >= 0.0)
            .unwrap_or(typed_spot),
    })
}

fn schedule_reasons(base: Bounds, bounds: Bounds, windows: &[ActiveWindow]) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let by = |key: fn(&ActiveWindow) -> Option<u32>, value: u32| {
        windows.iter().find(|w| key(w) == Some(value))
    };
    if bounds.min != base.min
        && let Some(w) = by(|w| w.min, bounds.min)
    {
        reasons.push(Reason::Schedule {
            name: w.name.clone(),
            bound: "min".into(),
            from: base.min,
            to: bounds.min,
            until: w.until,
        });
    }
    if bounds.max != base.max
        && let Some(w) = by(|w| w.max, bounds.max).or_else(|| by(|w| w.min, bounds.max))
    {
        reasons.push(Reason::Schedule {
            name: w.name.clone(),
            bound: "max".into(),
            from: base.max,
            to: bounds.max,
            until: w.until,
        });
    }
    reasons
}

/// Plans one pool up to the budget: the plan carries the planner's outcome in
/// `desired` until the allocation's grant replaces it.
fn plan_pool<'a>(input: &mut PoolInput<'a>, now: DateTime<Utc>) -> (PoolPlan, Demand<'a>) {
    let config = input.config;
    let base = Bounds {
        min: input.policy.min,
        max: input.policy.max,
    };
    let windows = schedule::active(&config.schedules, now);
    let bounds = schedule::bounds(base, &windows);
    let mut reasons = Vec::with_capacity(12);
    reasons.extend(schedule_reasons(base, bounds, &windows));
    let normal_split = Split::from_config(config.spot.as_ref());

    let Some(view) = input.view else {
        let n = input.last_known;
        let split = input.state.spot.split(config.spot.as_ref());
        let demand = Demand {
            name: Cow::Borrowed(&config.name),
            tier: config.tier,
            current: n,
            min: n,
            max: n,
            desired: n,
            floor: n,
            prices: input.prices,
            split,
            normal_split,
            spot_allowed: false,
            max_hourly_cost: config.max_hourly_cost,
        };
        let planned = PoolPlan {
            current: n,
            desired: n,
            on_demand: 0,
            spot: 0,
            hourly_cost: 0.0,
            recommendation: None,
            bounds,
            schedules: windows,
            emergency: false,
            above_max: false,
            frozen_until: input.state.flap.frozen(now),
            reasons,
        };
        return (planned, demand);
    };

    let state = &mut *input.state;
    let saturation = emergency::saturation(&input.policy.targets, view.metrics);
    if let Some(metric) = view.surge
        && config.predictive.anomaly_triggers_emergency
        && config.emergency.is_some()
        && !state.emergency.active()
    {
        state.emergency.start(now);
        reasons.push(Reason::AnomalyEmergency {
            metric: metric.into(),
        });
    }
    if let Some(outlook) = view.outlook {
        reasons.extend(outlook.reasons.iter().cloned());
    }
    reasons.extend(state.emergency.before_plan(
        config.emergency.as_ref(),
        saturation,
        config.emergency_max,
        now,
    ));
    let ceiling = if state.emergency.active() {
        config.emergency_max.max(bounds.max)
    } else {
        bounds.max
    };
    // The pool's own policy when its bounds are its configured ones (the common case),
    // else a copy with this pass's bounds.
    let adjusted;
    let policy: &Policy = if bounds.min == input.policy.min && ceiling == input.policy.max {
        input.policy
    } else {
        adjusted = Policy {
            min: bounds.min,
            max: ceiling,
            tolerance: input.policy.tolerance,
            targets: input.policy.targets.clone(),
            behavior: input.policy.behavior.clone(),
        };
        &adjusted
    };
    let observed = Observed {
        current: view.current,
        metrics: view.metrics,
        history: view.history,
        predicted: view.outlook.and_then(|o| o.nodes),
    };
    let mut decision = planner::plan_with(&observed, policy, now, std::mem::take(&mut reasons));
    reasons = std::mem::take(&mut decision.reasons);
    reasons.extend(state.emergency.after_plan(
        config.emergency.as_ref(),
        decision.recommendation,
        bounds.max,
    ));
    // Nodes under an interruption notice are about to go: their replacements start
    // now, within the pool's ceiling (the budget still applies). They are added to
    // what the planner wants, not to the current size: the pool already holds the
    // replacements asked for in earlier passes, so a notice that lasts several passes
    // asks for its replacement once, and when the node is gone the planner's own
    // figure is all that remains (no overshoot).
    let planned = decision.desired;
    let faulty = if config.replace_faulty_gpu_nodes {
        view.faulty_gpus
    } else {
        0
    };
    let mut replacing = 0_u32;
    for (nodes, interrupted) in [(view.interrupted, true), (faulty, false)] {
        if nodes == 0 {
            continue;
        }
        replacing = replacing.saturating_add(nodes);
        let want = planned
            .saturating_add(replacing)
            .min(ceiling)
            .max(decision.desired);
        if want > decision.desired {
            let (from, to) = (decision.desired, want);
            reasons.push(if interrupted {
                Reason::ReplacingInterrupted { nodes, from, to }
            } else {
                Reason::ReplacingFaultyGpu { nodes, from, to }
            });
            decision.desired = want;
        }
    }
    let frozen_until = state.flap.frozen(now);
    if let Some(until) = frozen_until {
        let held = view.current.max(bounds.min);
        if held != decision.desired {
            decision.desired = held;
            reasons.push(Reason::Frozen { until });
        }
    }
    reasons.extend(state.spot.observe(
        config.spot.as_ref(),
        view.asked_spot,
        view.running_spot,
        now,
    ));
    let demand = Demand {
        name: Cow::Borrowed(&config.name),
        tier: config.tier,
        current: view.current,
        min: bounds.min,
        max: bounds.max,
        desired: decision.desired,
        floor: if frozen_until.is_some() {
            decision.desired
        } else {
            planner::lowest_allowed(&observed, policy, now)
        },
        prices: input.prices,
        split: state.spot.split(config.spot.as_ref()),
        normal_split,
        spot_allowed: config.spot.is_some(),
        max_hourly_cost: config.max_hourly_cost,
    };
    let planned = PoolPlan {
        current: view.current,
        desired: decision.desired,
        on_demand: 0,
        spot: 0,
        hourly_cost: 0.0,
        recommendation: decision.recommendation,
        bounds,
        schedules: windows,
        emergency: state.emergency.active(),
        above_max: false,
        frozen_until,
        reasons,
    };
    (planned, demand)
}

/// Plans every pool and allocates the budget over them.
pub fn plan_fleet(
    inputs: &mut [PoolInput<'_>],
    budget: &BudgetPolicy,
    now: DateTime<Utc>,
) -> FleetPlan {
    let (mut pools, demands): (Vec<PoolPlan>, Vec<Demand<'_>>) =
        inputs.iter_mut().map(|i| plan_pool(i, now)).unzip();
    let Allocation {
        grants,
        fleet_hourly_cost,
        ceiling,
        over_budget,
        reasons,
    } = budget::allocate(&demands, budget);
    for ((plan, grant), input) in pools.iter_mut().zip(grants).zip(inputs.iter()) {
        plan.desired = grant.nodes;
        plan.on_demand = grant.on_demand;
        plan.spot = grant.nodes - grant.on_demand;
        plan.hourly_cost = grant.hourly_cost;
        plan.above_max = grant.nodes > input.config.max;
        plan.reasons.extend(grant.reasons);
    }
    FleetPlan {
        pools,
        fleet_hourly_cost,
        budget_ceiling: ceiling,
        over_budget,
        reasons,
    }
}
