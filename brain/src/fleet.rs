//! One planning pass over the whole fleet, in this order:
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

use capstan_config::{Group, GroupStrategy, Pool, PriceConfig};

use super::budget::{self, Allocation, BudgetPolicy, Demand, Prices};
use super::emergency::{self, EmergencyState};
use super::flap::FlapState;
use super::group::{self, Limit, Money, Slot};
use super::planner::{self, History, MetricSample, Observed, Policy};
use super::predictive::Outlook;
use super::reason::{GroupShare, Reason, ScheduleBound};
use super::schedule::{self, ActiveWindow, Bounds, Firings};
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
    /// Replacements asked for leaving nodes (interruption notices, faulty GPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacing: Option<Replacing>,
}

/// Replacement nodes asked for nodes about to leave: `nodes` of them, in a pool asked
/// to hold `size`. Once the pool holds that size, the replacements are in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Replacing {
    /// The pool's size asked for with them.
    pub size: u32,
    /// Replacement nodes among it.
    pub nodes: u32,
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

/// One group's inputs.
#[derive(Debug)]
pub struct GroupInput<'a> {
    /// Its configuration.
    pub config: &'a Group,
    /// The planner policy of its targets and behavior; its bounds are replaced each
    /// pass by the sums of the members' bounds.
    pub policy: &'a Policy,
    /// The group's HPA history.
    pub history: &'a History,
    /// One sample per target, over all members' nodes.
    pub metrics: &'a [Option<MetricSample>],
    /// Its members: indices into the pool inputs, in the order listed.
    pub members: &'a [usize],
}

/// One member's part of a group's plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberPlan {
    /// The pool.
    pub pool: String,
    /// Its index among the pool inputs.
    #[serde(skip)]
    pub index: usize,
    /// Its range and price this pass.
    pub slot: Slot,
    /// Its share of the group's size.
    pub share: u32,
    /// What the budget granted it.
    pub granted: u32,
    /// What holds the share where it is.
    pub limit: Option<Limit>,
    /// Its prices, split and own ceiling, for a spill-over in the same pass.
    pub money: Money,
}

/// The outcome for one group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupPlan {
    /// The group.
    pub name: String,
    /// Its strategy.
    pub strategy: GroupStrategy,
    /// Nodes its members hold now.
    pub current: u32,
    /// The size the group's targets ask for, within the members' bounds.
    pub desired: u32,
    /// What the members were granted after the budget.
    pub granted: u32,
    /// The group's HPA raw recommendation to remember.
    pub recommendation: Option<u32>,
    /// One per member, in the order listed.
    pub members: Vec<MemberPlan>,
    /// Why the group's size is what it is.
    pub reasons: Vec<Reason>,
}

/// The outcome for the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetPlan {
    /// One per input, in order.
    pub pools: Vec<PoolPlan>,
    /// One per group input, in order.
    pub groups: Vec<GroupPlan>,
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
        reasons.push(Reason::Schedule(Box::new(ScheduleBound {
            name: w.name.clone(),
            bound: "min".into(),
            from: base.min,
            to: bounds.min,
            until: w.until,
        })));
    }
    if bounds.max != base.max
        && let Some(w) = by(|w| w.max, bounds.max).or_else(|| by(|w| w.min, bounds.max))
    {
        reasons.push(Reason::Schedule(Box::new(ScheduleBound {
            name: w.name.clone(),
            bound: "max".into(),
            from: base.max,
            to: bounds.max,
            until: w.until,
        })));
    }
    reasons
}

/// Plans one pool up to the budget: the plan carries the planner's outcome in
/// `desired` until the allocation's grant replaces it.
///
/// A group member comes with its `share` of the group's size (and the reason), which
/// takes the place of the HPA planner's outcome.
fn plan_pool<'a>(
    input: &mut PoolInput<'a>,
    share: Option<(u32, Reason)>,
    calendar: &mut Firings<'a>,
    now: DateTime<Utc>,
) -> (PoolPlan, Demand<'a>) {
    let config = input.config;
    let base = Bounds {
        min: input.policy.min,
        max: input.policy.max,
    };
    let windows = calendar.active(&config.schedules);
    let bounds = schedule::bounds(base, &windows);
    // Most pools say 4 to 6 things a pass; a larger buffer is memory every pass touches.
    let mut reasons = Vec::with_capacity(6);
    reasons.extend(schedule_reasons(base, bounds, &windows));
    let normal_split = Split::from_config(config.spot.as_ref());

    let Some(view) = input.view else {
        return unviewed(input, bounds, windows, reasons, now);
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
    let policy = input.policy;
    let within = (bounds.min, ceiling);
    let observed = Observed {
        current: view.current,
        metrics: view.metrics,
        history: view.history,
        predicted: view.outlook.and_then(|o| o.nodes),
        held: view.outlook.and_then(|o| o.hold),
    };
    let mut decision = match share {
        Some((nodes, why)) => {
            reasons.push(why);
            planner::Decision {
                current: view.current,
                desired: nodes,
                recommendation: None,
                reasons: std::mem::take(&mut reasons),
            }
        }
        None => planner::plan_within(&observed, policy, within, now, std::mem::take(&mut reasons)),
    };
    reasons = std::mem::take(&mut decision.reasons);
    reasons.extend(state.emergency.after_plan(
        config.emergency.as_ref(),
        decision.recommendation,
        bounds.max,
    ));
    decision.desired = with_replacements(
        config,
        &view,
        (decision.desired, ceiling),
        &mut state.replacing,
        &mut reasons,
    );
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
            planner::lowest_allowed(&observed, policy, bounds.min, now)
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

/// A pool the pass could not describe: held where it was last seen, and only counted
/// for cost.
fn unviewed<'a>(
    input: &PoolInput<'a>,
    bounds: Bounds,
    windows: Vec<ActiveWindow>,
    reasons: Vec<Reason>,
    now: DateTime<Utc>,
) -> (PoolPlan, Demand<'a>) {
    let config = input.config;
    let n = input.last_known;
    let demand = Demand {
        name: Cow::Borrowed(&config.name),
        tier: config.tier,
        current: n,
        min: n,
        max: n,
        desired: n,
        floor: n,
        prices: input.prices,
        split: input.state.spot.split(config.spot.as_ref()),
        normal_split: Split::from_config(config.spot.as_ref()),
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
    (planned, demand)
}

/// What the pool should hold with the replacements of its leaving nodes.
///
/// Nodes under an interruption notice are about to go: their replacements start now,
/// within the pool's ceiling (the budget still applies). Nodes with a faulty GPU are
/// replaced likewise where the pool says so. A notice that lasts several passes asks
/// for its replacement once: where the planner sized the pool from its readings, the
/// replacements go on top of that figure (the readings count the load, not the nodes
/// leaving); where it held the pool where it is, that size already holds the
/// replacements asked for earlier (`replacing`, once the pool reached the size asked),
/// and only the nodes not yet replaced are added. When the leaving nodes are gone, the
/// planner's own figure is all that remains (no overshoot).
fn with_replacements(
    config: &Pool,
    view: &View<'_>,
    (planned, ceiling): (u32, u32),
    replacing: &mut Option<Replacing>,
    reasons: &mut Vec<Reason>,
) -> u32 {
    let faulty = if config.replace_faulty_gpu_nodes {
        view.faulty_gpus
    } else {
        0
    };
    let leaving = view.interrupted.saturating_add(faulty);
    if leaving == 0 {
        *replacing = None;
        return planned;
    }
    // Replacements the pool holds already, for nodes still leaving.
    let held = replacing
        .filter(|r| view.current >= r.size)
        .map_or(0, |r| r.nodes.min(leaving));
    let base = if planned == view.current {
        planned.saturating_sub(held)
    } else {
        planned
    };
    let mut desired = planned;
    let mut replaced = 0_u32;
    for (nodes, interrupted) in [(view.interrupted, true), (faulty, false)] {
        if nodes == 0 {
            continue;
        }
        replaced = replaced.saturating_add(nodes);
        let want = base.saturating_add(replaced).min(ceiling).max(desired);
        if want > desired {
            let (from, to) = (desired, want);
            reasons.push(if interrupted {
                Reason::ReplacingInterrupted { nodes, from, to }
            } else {
                Reason::ReplacingFaultyGpu { nodes, from, to }
            });
            desired = want;
        }
    }
    *replacing = Some(Replacing {
        size: desired,
        nodes: desired.saturating_sub(base).min(leaving),
    });
    desired
}

/// Plans every pool and allocates the budget over them.
pub fn plan_fleet(
    inputs: &mut [PoolInput<'_>],
    budget: &BudgetPolicy,
    now: DateTime<Utc>,
) -> FleetPlan {
    plan_fleet_with_groups(inputs, &[], budget, now)
}

/// One member's slot this pass: its range (schedules, scale-down rate), whether it
/// may grow, and its price per node.
fn slot<'a>(
    input: &PoolInput<'a>,
    calendar: &mut Firings<'a>,
    now: DateTime<Utc>,
) -> (Slot, Money) {
    let config = input.config;
    let split = input.state.spot.split(config.spot.as_ref());
    let money = Money {
        prices: input.prices,
        split,
        max_hourly_cost: config.max_hourly_cost,
    };
    let price_at = |n: u32| {
        input.prices.map(|_| {
            budget::hourly_cost(n.max(1), &split, input.prices.as_ref()) / f64::from(n.max(1))
        })
    };
    let Some(view) = input.view else {
        // Not described (or backing off): held where it was last seen.
        let n = input.last_known;
        let slot = Slot {
            current: n,
            min: n,
            max: n,
            floor: n,
            available: false,
            price: price_at(n),
        };
        return (slot, money);
    };
    let base = Bounds {
        min: input.policy.min,
        max: input.policy.max,
    };
    let bounds = schedule::bounds(base, &calendar.active(&config.schedules));
    let observed = Observed {
        current: view.current,
        metrics: view.metrics,
        history: view.history,
        predicted: None,
        held: None,
    };
    let frozen = input.state.flap.frozen(now).is_some();
    let floor = if frozen {
        view.current.max(bounds.min)
    } else {
        planner::lowest_allowed(&observed, input.policy, bounds.min, now)
    };
    let slot = Slot {
        current: view.current,
        min: bounds.min,
        max: bounds.max,
        floor,
        available: !frozen,
        price: price_at(bounds.max),
    };
    (slot, money)
}

/// Sizes one group on its targets within its members' bounds and allocates the size
/// to the members by its strategy.
fn plan_group<'a>(
    group: &GroupInput<'_>,
    inputs: &[PoolInput<'a>],
    calendar: &mut Firings<'a>,
    now: DateTime<Utc>,
) -> GroupPlan {
    let (slots, money): (Vec<Slot>, Vec<Money>) = group
        .members
        .iter()
        .map(|&i| slot(&inputs[i], calendar, now))
        .unzip();
    let sum = |f: fn(&Slot) -> u32| slots.iter().map(f).fold(0_u32, u32::saturating_add);
    let current = sum(|s| s.current);
    let policy = Policy {
        min: sum(|s| s.min),
        max: sum(|s| s.max),
        tolerance: group.policy.tolerance,
        targets: group.policy.targets.clone(),
        behavior: group.policy.behavior.clone(),
    };
    let observed = Observed {
        current,
        metrics: group.metrics,
        history: group.history,
        predicted: None,
        held: None,
    };
    let decision = planner::plan(&observed, &policy, now);
    let config = group.config;
    let shares = group::allocate(config.strategy, config.max_skew, decision.desired, &slots);
    let limits = group::limits(&slots, &shares);
    let members = group
        .members
        .iter()
        .enumerate()
        .map(|(k, &index)| MemberPlan {
            pool: inputs[index].config.name.clone(),
            index,
            slot: slots[k],
            share: shares[k],
            granted: shares[k],
            limit: limits[k],
            money: money[k],
        })
        .collect();
    GroupPlan {
        name: config.name.clone(),
        strategy: config.strategy,
        current,
        desired: decision.desired,
        granted: shares.iter().sum(),
        recommendation: decision.recommendation,
        members,
        reasons: decision.reasons,
    }
}

/// Plans every group and pool and allocates the budget over the pools: a group is
/// sized on its targets and its size split among its members ([`super::group`]),
/// whose shares then go through the budget like any pool's plan.
pub fn plan_fleet_with_groups<'a>(
    inputs: &mut [PoolInput<'a>],
    groups: &[GroupInput<'_>],
    budget: &BudgetPolicy,
    now: DateTime<Utc>,
) -> FleetPlan {
    let mut calendar = Firings::new(now);
    let mut group_plans: Vec<GroupPlan> = groups
        .iter()
        .map(|g| plan_group(g, inputs, &mut calendar, now))
        .collect();
    // A member's share of its group's size, by pool index (none without groups).
    let mut shares: Vec<Option<(u32, Reason)>> = if group_plans.is_empty() {
        Vec::new()
    } else {
        vec![None; inputs.len()]
    };
    for g in &group_plans {
        for m in &g.members {
            if let Some(slot) = shares.get_mut(m.index) {
                *slot = Some((
                    m.share,
                    Reason::GroupShare(Box::new(GroupShare {
                        group: g.name.clone(),
                        strategy: g.strategy.as_str().to_owned(),
                        group_desired: g.desired,
                        share: m.share,
                        price: m.slot.price,
                        limit: m.limit,
                    })),
                ));
            }
        }
    }
    let (mut pools, demands): (Vec<PoolPlan>, Vec<Demand<'_>>) = inputs
        .iter_mut()
        .enumerate()
        .map(|(k, i)| {
            let share = shares.get_mut(k).and_then(Option::take);
            plan_pool(i, share, &mut calendar, now)
        })
        .unzip();
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
    for g in &mut group_plans {
        for m in &mut g.members {
            m.granted = pools[m.index].desired;
            m.money.split = demands[m.index].split;
        }
        g.granted = g.members.iter().map(|m| m.granted).sum();
    }
    FleetPlan {
        pools,
        groups: group_plans,
        fleet_hourly_cost,
        budget_ceiling: ceiling,
        over_budget,
        reasons,
    }
}
