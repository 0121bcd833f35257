//! The budget allocator: turns each pool's planned size into what the money allows.
//!
//! Rules, in the order they apply:
//! 1. Each pool starts from its *baseline*: its planned size when that is a
//!    scale-down, else its current size, and never below `min`. Minimums are floors the
//!    budget cannot break; when they alone exceed the ceiling that is reported loudly.
//! 2. A spot fallback (missing spot nodes planned as on-demand) is kept only while the
//!    fleet stays under the ceiling; otherwise it is dropped, lowest tier first.
//! 3. A pool above its own `max_hourly_cost`, or a fleet above `budget.max_hourly_cost`
//!    (prices rose), is reported; with `enforce = "trim"` it is brought back under:
//!    basic pools are first moved to spot (above their on-demand base), then pools are
//!    scaled down from the lowest tier up, within a tier in proportion to what each can
//!    give, never faster than the pool's scale-down rate and never below `min`.
//! 4. Scale-ups are granted only while the fleet stays under its ceiling: enterprise
//!    first, then premium, then basic. Within a tier every pool gets the same fraction
//!    of the nodes it asked for (in proportion to need), and what is left goes one node
//!    at a time to the pools with the largest remainders. Once a tier cannot get all it
//!    asked for, lower tiers get nothing more that pass. A pool's own ceiling caps it
//!    first.
//! 5. Emergency capacity (above `max`) is granted last, in the same order, against the
//!    ceiling plus `budget.emergency_allowance`.
//!
//! Pure: no I/O, no clock; the same demands give the same allocation.

use std::borrow::Cow;

use capstan_config::{BudgetEnforcement, Tier};
use serde::{Deserialize, Serialize};

use super::reason::Reason;
use super::spot::Split;

mod fleet;
use fleet::Fleet;

/// Slack for sums of money in floating point.
const EPSILON: f64 = 1e-9;

/// Money per node-hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prices {
    /// On-demand.
    pub on_demand: f64,
    /// Spot (the on-demand price where spot has none).
    pub spot: f64,
}

/// The hourly cost of `nodes` nodes under `split`; 0 without prices.
pub fn hourly_cost(nodes: u32, split: &Split, prices: Option<&Prices>) -> f64 {
    prices.map_or(0.0, |p| {
        let od = split.on_demand(nodes);
        f64::from(od) * p.on_demand + f64::from(nodes - od) * p.spot
    })
}

/// What one pool asks of the budget this pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand<'a> {
    /// Pool name (orders ties); borrowed from the pool's config in a pass.
    pub name: Cow<'a, str>,
    /// Tier.
    pub tier: Tier,
    /// Nodes now.
    pub current: u32,
    /// Floor this pass (after schedules).
    pub min: u32,
    /// Ceiling outside an emergency this pass (after schedules).
    pub max: u32,
    /// What the planner decided.
    pub desired: u32,
    /// The lowest size the pool's scale-down rate allows this pass (at least `min`).
    pub floor: u32,
    /// Prices, if known.
    pub prices: Option<Prices>,
    /// The split it plans with (a spot fallback included).
    pub split: Split,
    /// The split without a fallback.
    pub normal_split: Split,
    /// Whether the pool has a `spot` table, so a trim may move it to spot.
    pub spot_allowed: bool,
    /// Its own ceiling.
    pub max_hourly_cost: Option<f64>,
}

/// The fleet's budget settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetPolicy {
    /// Fleet ceiling per hour.
    pub ceiling: Option<f64>,
    /// Extra per hour emergency capacity may spend.
    pub emergency_allowance: f64,
    /// Report or trim.
    pub enforce: BudgetEnforcement,
}

impl From<&capstan_config::Budget> for BudgetPolicy {
    fn from(b: &capstan_config::Budget) -> Self {
        Self {
            ceiling: b.max_hourly_cost,
            emergency_allowance: b.emergency_allowance,
            enforce: b.enforce,
        }
    }
}

/// What one pool is granted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// Nodes.
    pub nodes: u32,
    /// Of which on-demand.
    pub on_demand: u32,
    /// Cost per hour.
    pub hourly_cost: f64,
    /// The split used.
    pub split: Split,
    /// What the budget did to the pool.
    pub reasons: Vec<Reason>,
}

/// The allocation for the fleet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    /// One per demand, in order.
    pub grants: Vec<Grant>,
    /// Cost per hour of the fleet as granted.
    pub fleet_hourly_cost: f64,
    /// The ceiling, if any.
    pub ceiling: Option<f64>,
    /// The fleet is over its ceiling after allocation.
    pub over_budget: bool,
    /// Fleet-level notes.
    pub reasons: Vec<Reason>,
}

/// Where a pool starts in the allocation: its planned scale-downs are taken, its
/// scale-ups are yet to be granted. A pool below this was trimmed for money, and asks
/// for no scale-up this pass.
fn start(d: &Demand<'_>) -> u32 {
    d.desired.min(d.current).max(d.min)
}

/// Pool indices in name order: ties between pools go by name.
///
/// Sorted on each name's first 16 bytes, read once (big-endian, so the keys compare as
/// the names do), reaching the names themselves only where those are equal: a large
/// fleet's names lie scattered in memory, and a sort that reads them n log n times
/// waits on the cache.
fn name_order(demands: &[Demand<'_>]) -> Vec<usize> {
    let key = |name: &str| -> u128 {
        let mut bytes = [0_u8; 16];
        let n = name.len().min(16);
        bytes[..n].copy_from_slice(&name.as_bytes()[..n]);
        u128::from_be_bytes(bytes)
    };
    let mut order: Vec<(u128, usize)> = demands
        .iter()
        .enumerate()
        .map(|(i, d)| (key(&d.name), i))
        .collect();
    order.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| demands[a.1].name.cmp(&demands[b.1].name))
    });
    order.into_iter().map(|(_, i)| i).collect()
}

const GRANT_ORDER: [Tier; 3] = [Tier::Enterprise, Tier::Premium, Tier::Basic];
const TRIM_ORDER: [Tier; 3] = [Tier::Basic, Tier::Premium, Tier::Enterprise];

/// Allocates the budget over `demands` (see the module documentation for the rules).
pub fn allocate(demands: &[Demand<'_>], policy: &BudgetPolicy) -> Allocation {
    let (mut fleet, order) = Fleet::new(demands);
    let mut notes = Vec::new();
    let trim = policy.enforce == BudgetEnforcement::Trim;
    fallbacks_within_ceilings(&mut fleet, &order, policy);
    cap_pools(&mut fleet, trim);
    let over = cap_fleet(&mut fleet, &order, policy, trim, &mut notes);
    scale_up(&mut fleet, &order, policy, over);

    let mut grants = fleet.slots;
    for (g, d) in grants.iter_mut().zip(demands) {
        g.on_demand = g.split.on_demand(g.nodes);
        g.hourly_cost = hourly_cost(g.nodes, &g.split, d.prices.as_ref());
    }
    Allocation {
        fleet_hourly_cost: grants.iter().map(|g| g.hourly_cost).sum(),
        grants,
        ceiling: policy.ceiling,
        over_budget: over,
        reasons: notes,
    }
}

/// 2. A fallback to on-demand is a cost increase: only within the ceilings.
///
/// The fallbacks are looked at lowest tier first, by name; one is dropped while the
/// fleet is above its ceiling, or while its own pool is above its own.
fn fallbacks_within_ceilings(fleet: &mut Fleet<'_>, order: &[usize], policy: &BudgetPolicy) {
    let fallbacks = fallbacks(fleet, order);
    // While the fleet is above its ceiling, each fallback met is dropped; once it is
    // within, only those of pools above their own. Dropping one lowers the fleet's
    // cost where spot costs no more than on-demand, and then the fleet, once within,
    // stays within: the fallbacks dropped for the fleet are the first `forced`.
    let lowers = fallbacks.iter().all(|&(i, cost)| cost <= fleet.cost(i));
    let forced = match policy.ceiling {
        None => 0,
        Some(c) if lowers => fleet
            .fewest_within(&fallbacks, c + EPSILON)
            .unwrap_or(fallbacks.len()),
        // A spot price above on-demand: the fleet's cost may rise again; look again
        // before each one.
        Some(c) => return drop_fallbacks_one_by_one(fleet, &fallbacks, c),
    };
    for (k, &(i, _)) in fallbacks.iter().enumerate() {
        drop_fallback_if(fleet, i, k < forced);
    }
}

/// The pools planning with a spot fallback, lowest tier first, by name, each with its
/// cost without the fallback.
fn fallbacks(fleet: &Fleet<'_>, order: &[usize]) -> Vec<(usize, f64)> {
    let demands = fleet.demands;
    TRIM_ORDER
        .into_iter()
        .flat_map(|tier| fleet.tier(order, tier))
        .filter(|&i| fleet.slots[i].split != demands[i].normal_split)
        .map(|i| {
            let d = &demands[i];
            let cost = hourly_cost(fleet.slots[i].nodes, &d.normal_split, d.prices.as_ref());
            (i, cost)
        })
        .collect()
}

/// Drops each of `fallbacks` in turn while the fleet is above `ceiling` (summed again
/// before each), and those of pools above their own ceiling.
fn drop_fallbacks_one_by_one(fleet: &mut Fleet<'_>, fallbacks: &[(usize, f64)], ceiling: f64) {
    for &(i, _) in fallbacks {
        let over_fleet = fleet.total() > ceiling + EPSILON;
        drop_fallback_if(fleet, i, over_fleet);
    }
}

/// Drops pool `i`'s fallback when `over_fleet`, or when its pool is above its own
/// ceiling.
fn drop_fallback_if(fleet: &mut Fleet<'_>, i: usize, over_fleet: bool) {
    let d = &fleet.demands[i];
    let over_pool = d
        .max_hourly_cost
        .is_some_and(|c| fleet.cost(i) > c + EPSILON);
    if over_pool || over_fleet {
        let n = fleet.slots[i].nodes;
        let extra = fleet.slots[i]
            .split
            .on_demand(n)
            .saturating_sub(d.normal_split.on_demand(n));
        fleet.slots[i].split = d.normal_split;
        fleet.slots[i]
            .reasons
            .push(Reason::SpotFallbackOverBudget { nodes: extra });
    }
}

/// 3a. Pools above their own ceiling: trimmed (when the budget trims) no lower than
/// their floor, and said.
fn cap_pools(fleet: &mut Fleet<'_>, trim: bool) {
    let demands = fleet.demands;
    for (i, d) in demands.iter().enumerate() {
        let Some(cap) = d.max_hourly_cost else {
            continue;
        };
        let cost = fleet.cost(i);
        if cost <= cap + EPSILON {
            continue;
        }
        let n = fleet.slots[i].nodes;
        if trim && d.floor < n {
            let to = fleet.most_within(i, d.floor, n, cap);
            if to < n {
                fleet.slots[i].nodes = to;
                fleet.slots[i].reasons.push(Reason::CappedByPoolBudget {
                    from: n,
                    to,
                    ceiling: cap,
                });
            }
        }
        let cost = fleet.cost(i);
        if cost > cap + EPSILON {
            fleet.slots[i]
                .reasons
                .push(Reason::PoolOverBudget { cost, ceiling: cap });
        }
    }
}

/// 3b. A fleet above its ceiling: trimmed when the budget trims; whether it is still
/// over.
fn cap_fleet(
    fleet: &mut Fleet<'_>,
    order: &[usize],
    policy: &BudgetPolicy,
    trim: bool,
    notes: &mut Vec<Reason>,
) -> bool {
    let Some(ceiling) = policy.ceiling else {
        return false;
    };
    let minimums: f64 = fleet
        .demands
        .iter()
        .map(|d| hourly_cost(d.min, &d.normal_split, d.prices.as_ref()))
        .sum();
    if minimums > ceiling + EPSILON {
        notes.push(Reason::MinimumsExceedBudget {
            cost: minimums,
            ceiling,
        });
    }
    if trim && fleet.total() > ceiling + EPSILON {
        trim_fleet(fleet, order, ceiling);
    }
    let total = fleet.total();
    if total <= ceiling + EPSILON {
        return false;
    }
    notes.push(Reason::OverBudget {
        cost: total,
        ceiling,
        enforce: if trim { "trim" } else { "report" }.to_owned(),
    });
    true
}

/// 4 and 5. Scale-ups, by tier: normal capacity first, then emergency capacity.
fn scale_up(fleet: &mut Fleet<'_>, order: &[usize], policy: &BudgetPolicy, over: bool) {
    let mut members = Vec::new();
    for emergency in [false, true] {
        let extra = if emergency {
            policy.emergency_allowance
        } else {
            0.0
        };
        let headroom = policy.ceiling.map(|c| c + extra);
        // Over the ceiling, normal scale-ups are blocked; emergencies may still use
        // the allowance above it.
        let mut blocked = over && !emergency;
        for tier in GRANT_ORDER {
            members.clear();
            for i in fleet.tier(order, tier) {
                if let Some(to) = asks(fleet, i, emergency, extra) {
                    members.push((i, to));
                }
            }
            if members.is_empty() {
                continue;
            }
            let Some(limit) = headroom else {
                fleet.grow(&members, f64::INFINITY);
                continue;
            };
            let spare = if blocked {
                0.0
            } else {
                (limit - fleet.total()).max(0.0)
            };
            let short = fleet.grow(&members, spare);
            for &(i, to) in &members {
                let got = fleet.slots[i].nodes;
                if got < to {
                    let reason = if emergency {
                        Reason::CappedByEmergencyAllowance {
                            from: to,
                            to: got,
                            allowance: policy.emergency_allowance,
                        }
                    } else {
                        Reason::CappedByBudget {
                            from: to,
                            to: got,
                            tier,
                            ceiling: limit,
                        }
                    };
                    fleet.slots[i].reasons.push(reason);
                }
            }
            blocked |= short;
        }
    }
}

/// The size pool `i` asks to grow to in this round (normal or emergency capacity),
/// within its own ceiling (plus `extra`), if it asks to grow at all.
fn asks(fleet: &mut Fleet<'_>, i: usize, emergency: bool, extra: f64) -> Option<u32> {
    let demands = fleet.demands;
    let d = &demands[i];
    let n = fleet.slots[i].nodes;
    if n < start(d) {
        return None;
    }
    let want = match (emergency, d.desired > d.max) {
        (false, _) => d.desired.min(d.max.max(n)),
        (true, true) => d.desired,
        (true, false) => return None,
    };
    if want <= n {
        return None;
    }
    let to = match d.max_hourly_cost {
        Some(cap) => fleet.most_within(i, n, want, cap + extra),
        None => want,
    };
    if to < want {
        fleet.slots[i].reasons.push(Reason::CappedByPoolBudget {
            from: want,
            to,
            ceiling: d.max_hourly_cost.unwrap_or_default(),
        });
    }
    (to > n).then_some(to)
}

/// The basic pools a trim may move to spot above their on-demand base, the largest
/// saving first (ties by name), each with its cost on spot.
fn spot_moves(fleet: &Fleet<'_>, order: &[usize]) -> Vec<(usize, f64)> {
    let demands = fleet.demands;
    let mut movable: Vec<(usize, f64, f64)> = fleet
        .tier(order, Tier::Basic)
        .filter(|&i| {
            let d = &demands[i];
            d.spot_allowed && fleet.slots[i].split == d.normal_split
        })
        .map(|i| {
            let n = fleet.slots[i].nodes;
            let spot = fleet.slots[i].split.all_spot_above_base();
            let on_spot = hourly_cost(n, &spot, demands[i].prices.as_ref());
            (i, fleet.cost(i) - on_spot, on_spot)
        })
        .filter(|&(_, saving, _)| saving > EPSILON)
        .collect();
    movable.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then_with(|| demands[a.0].name.cmp(&demands[b.0].name))
    });
    movable
        .into_iter()
        .map(|(i, _, on_spot)| (i, on_spot))
        .collect()
}

/// Moves basic pools to spot, the largest saving first, one at a time until the fleet
/// is within `ceiling`; whether it is. Each move saves money, so the number of moves
/// is found by bisection ([`Fleet::fewest_within`]).
fn trim_to_spot(fleet: &mut Fleet<'_>, order: &[usize], ceiling: f64) -> bool {
    let moves = spot_moves(fleet, order);
    let within = fleet.fewest_within(&moves, ceiling + EPSILON);
    for &(i, _) in &moves[..within.unwrap_or(moves.len())] {
        move_to_spot(fleet, i);
    }
    within.is_some()
}

/// Moves pool `i` to spot above its on-demand base, and says so.
fn move_to_spot(fleet: &mut Fleet<'_>, i: usize) {
    let slot = &mut fleet.slots[i];
    let n = slot.nodes;
    let before = slot.split.on_demand(n);
    slot.split = slot.split.all_spot_above_base();
    slot.reasons.push(Reason::MovedToSpot {
        on_demand_from: before,
        on_demand_to: slot.split.on_demand(n),
    });
}

/// Brings the fleet under `ceiling`: basic pools to spot first, then scale-downs from
/// the lowest tier up, each no lower than its `floor`.
fn trim_fleet(fleet: &mut Fleet<'_>, order: &[usize], ceiling: f64) {
    let demands = fleet.demands;
    for tier in TRIM_ORDER {
        if fleet.total() <= ceiling + EPSILON {
            return;
        }
        if tier == Tier::Basic && trim_to_spot(fleet, order, ceiling) {
            return;
        }
        if fleet.total() <= ceiling + EPSILON {
            return;
        }
        let members: Vec<(usize, u32, u32)> = fleet
            .tier(order, tier)
            .map(|i| {
                (
                    i,
                    fleet.slots[i].nodes,
                    demands[i].floor.min(fleet.slots[i].nodes),
                )
            })
            .filter(|&(_, n, floor)| n > floor)
            .collect();
        if members.is_empty() {
            continue;
        }
        let sizes = |frac: f64| -> Vec<u32> {
            members
                .iter()
                .map(|&(_, n, floor)| {
                    let give = f64::from(n - floor);
                    // `frac` is in [0, 1], so the product is in [0, give].
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let cut = (frac * give).ceil() as u32;
                    n - cut.min(n - floor)
                })
                .collect()
        };
        let others: f64 = fleet.total() - members.iter().map(|&(i, ..)| fleet.cost(i)).sum::<f64>();
        let total_at = |f: &Fleet<'_>, s: &[u32]| -> f64 {
            others
                + members
                    .iter()
                    .zip(s)
                    .map(|(&(i, ..), &n)| f.cost_at(i, n))
                    .sum::<f64>()
        };
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        if total_at(fleet, &sizes(1.0)) > ceiling + EPSILON {
            lo = 1.0;
        } else {
            for _ in 0..60 {
                let mid = f64::midpoint(lo, hi);
                if total_at(fleet, &sizes(mid)) <= ceiling + EPSILON {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            lo = hi;
        }
        for (&(i, n, _), to) in members.iter().zip(sizes(lo)) {
            if to < n {
                fleet.slots[i].nodes = to;
                fleet.slots[i].reasons.push(Reason::TrimmedByBudget {
                    from: n,
                    to,
                    tier: demands[i].tier,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn named(name: String) -> Demand<'static> {
        Demand {
            name: name.into(),
            tier: Tier::Basic,
            current: 1,
            min: 1,
            max: 1,
            desired: 1,
            floor: 1,
            prices: None,
            split: Split::ON_DEMAND,
            normal_split: Split::ON_DEMAND,
            spot_allowed: false,
            max_hourly_cost: None,
        }
    }

    proptest! {
        /// Fallbacks dropped and basic pools moved to spot, each count found by
        /// bisection, are the very ones the loops that summed the fleet after every
        /// change chose: random fleets (spot at times dearer than on-demand), any
        /// ceiling from none of the fleet's cost to more than all of it.
        #[test]
        fn bisected_fallbacks_and_moves_to_spot_are_those_summed_one_by_one(
            demands in crate::budget_tests::arb_fleet_of(1..80, 1.5),
            share in 0.0_f64..1.1,
        ) {
            let (fleet, order) = Fleet::new(&demands);
            let ceiling = fleet.total() * share;
            let policy = BudgetPolicy {
                ceiling: Some(ceiling),
                emergency_allowance: 0.0,
                enforce: BudgetEnforcement::Trim,
            };
            let (mut fast, mut slow) = (fleet.clone(), fleet);
            fallbacks_within_ceilings(&mut fast, &order, &policy);
            let slow_fallbacks = fallbacks(&slow, &order);
            drop_fallbacks_one_by_one(&mut slow, &slow_fallbacks, ceiling);
            prop_assert_eq!(&fast.slots, &slow.slots);

            let fast_within = trim_to_spot(&mut fast, &order, ceiling);
            let mut slow_within = false;
            for (i, _) in spot_moves(&slow, &order) {
                if slow.total() <= ceiling + EPSILON {
                    slow_within = true;
                    break;
                }
                move_to_spot(&mut slow, i);
            }
            slow_within |= slow.total() <= ceiling + EPSILON;
            prop_assert_eq!(fast_within, slow_within);
            prop_assert_eq!(&fast.slots, &slow.slots);
        }

        /// The keyed sort orders pools exactly as sorting on their names does: names
        /// that differ in their first 16 bytes, names that share them (long common
        /// prefixes), prefixes of each other, and duplicates (kept in input order).
        #[test]
        fn name_order_is_the_order_of_the_names(
            prefix in prop::sample::select(vec!["", "web", "pool-eu-west-1-gpu-a100-"]),
            tails in prop::collection::vec("[a-z0-9._-]{0,20}", 0..40),
        ) {
            let demands: Vec<Demand<'static>> =
                tails.iter().map(|t| named(format!("{prefix}{t}"))).collect();
            let mut expected: Vec<usize> = (0..demands.len()).collect();
            expected.sort_by(|&a, &b| demands[a].name.cmp(&demands[b].name));
            prop_assert_eq!(name_order(&demands), expected);
        }
    }
}
