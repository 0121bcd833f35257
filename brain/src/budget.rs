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

struct Fleet<'a> {
    demands: &'a [Demand<'a>],
    /// One per demand: the grant as it is worked out.
    slots: Vec<Grant>,
    /// One per demand: its place in name order (ties between pools go by name).
    rank: Vec<usize>,
}

impl<'a> Fleet<'a> {
    fn cost_at(&self, i: usize, nodes: u32) -> f64 {
        hourly_cost(nodes, &self.slots[i].split, self.demands[i].prices.as_ref())
    }

    fn cost(&self, i: usize) -> f64 {
        self.cost_at(i, self.slots[i].nodes)
    }

    fn total(&self) -> f64 {
        (0..self.slots.len()).map(|i| self.cost(i)).sum()
    }

    /// Pools of `tier`, in name order (`order` from [`name_order`]).
    fn tier<'o>(&self, order: &'o [usize], tier: Tier) -> impl Iterator<Item = usize> + 'o
    where
        'a: 'o,
    {
        let demands = self.demands;
        order
            .iter()
            .copied()
            .filter(move |&i| demands[i].tier == tier)
    }

    /// The most nodes in `[from, to]` whose cost stays within `money`; `from` if none.
    fn most_within(&self, i: usize, from: u32, to: u32, money: f64) -> u32 {
        let (mut lo, mut hi) = (from, to);
        if self.cost_at(i, hi) <= money + EPSILON {
            return hi;
        }
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if self.cost_at(i, mid) <= money + EPSILON {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Moves each pool of `members` from its size towards `targets[k]` by the same
    /// fraction, the largest that keeps the added cost within `spare`, then hands out
    /// what is left one node at a time by largest remainder (ties by name). Returns
    /// whether any pool got less than its target.
    ///
    /// The fraction's search ([`fraction`]) works on a compact copy of the members, not
    /// the fleet's slots and demands: with thousands of pools those no longer fit in the
    /// cache, and each walk would miss on every pool.
    fn grow(&mut self, members: &[(usize, u32)], spare: f64) -> bool {
        let growers: Vec<Grower> = members
            .iter()
            .map(|&(i, to)| Grower {
                from: self.slots[i].nodes,
                to,
                split: self.slots[i].split,
                prices: self.demands[i].prices,
            })
            .collect();
        let before: f64 = growers.iter().map(|g| g.cost(g.from)).sum();
        // Everyone's target fits (always so without a ceiling): no fractions needed.
        let full: f64 = growers.iter().map(|g| g.cost(g.to)).sum();
        if full - before <= spare + EPSILON {
            for &(i, to) in members {
                self.slots[i].nodes = to;
            }
            return false;
        }
        let added =
            |frac: f64| -> f64 { growers.iter().map(|g| g.cost(g.at(frac))).sum::<f64>() - before };
        let lo = fraction(&growers, before, spare);
        let mut sizes: Vec<u32> = growers.iter().map(|g| g.at(lo)).collect();
        let mut left = spare - added(lo);
        let mut order: Vec<(f64, usize, usize)> = growers
            .iter()
            .zip(members)
            .enumerate()
            .map(|(k, (g, &(i, _)))| {
                let want = lo * f64::from(g.to - g.from);
                (want - want.floor(), self.rank[i], k)
            })
            .collect();
        order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for (_, _, k) in order {
            let g = &growers[k];
            if sizes[k] < g.to {
                let step = g.cost(sizes[k] + 1) - g.cost(sizes[k]);
                if step <= left + EPSILON {
                    sizes[k] += 1;
                    left -= step;
                }
            }
        }
        let mut short = false;
        for (&(i, to), size) in members.iter().zip(sizes) {
            short |= size < to;
            self.slots[i].nodes = size;
        }
        short
    }
}

/// The largest fraction of the way (to 60 halvings of [0, 1]) at which `growers`' sizes
/// add at most `spare` to `before`.
///
/// The same search as pricing every grower at every halving, exactly: the same costs
/// summed in the same order. But a grower whose size is the same at both ends of the
/// interval keeps the cost it had (a size only moves at its breakpoints, which soon lie
/// outside the shrinking interval), and each halving sums one compact array. The fleet
/// pass over 1,000 pools took a fifth less time for it (docs/performance.md).
///
/// A grower whose breakpoint is the very fraction the search closes in on stays at one
/// of two sizes for all 60 halvings; when the money runs out just short of every target
/// (the fraction tends to 1), that is every grower. So each grower's cost at the two
/// ends is kept too, and a halving prices a grower only at a size strictly between them
/// (the same cost: pricing is a pure function of the size).
fn fraction(growers: &[Grower], before: f64, spare: f64) -> f64 {
    let mut costs: Vec<f64> = growers.iter().map(|g| g.cost(g.at(0.0))).collect();
    // Each grower's size and its cost at the interval's two ends; it can still move
    // while the sizes differ.
    let mut ends: Vec<[(u32, f64); 2]> = growers
        .iter()
        .zip(&costs)
        .map(|(g, &cost)| {
            let (from, to) = (g.at(0.0), g.at(1.0));
            let at_to = if to == from { cost } else { g.cost(to) };
            [(from, cost), (to, at_to)]
        })
        .collect();
    let mut moving: Vec<usize> = (0..growers.len())
        .filter(|&k| ends[k][0].0 != ends[k][1].0)
        .collect();
    let mut sizes: Vec<(u32, f64)> = Vec::with_capacity(moving.len());
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    for _ in 0..60 {
        let mid = f64::midpoint(lo, hi);
        sizes.clear();
        for &k in &moving {
            let n = growers[k].at(mid);
            let [low, high] = ends[k];
            let cost = if n == low.0 {
                low.1
            } else if n == high.0 {
                high.1
            } else {
                growers[k].cost(n)
            };
            costs[k] = cost;
            sizes.push((n, cost));
        }
        let fits = costs.iter().sum::<f64>() - before <= spare + EPSILON;
        if fits {
            lo = mid;
        } else {
            hi = mid;
        }
        let end = usize::from(!fits);
        for (&k, &size) in moving.iter().zip(&sizes) {
            ends[k][end] = size;
        }
        moving.retain(|&k| ends[k][0].0 != ends[k][1].0);
    }
    lo
}

/// One pool of a [`Fleet::grow`]: where it starts, where it is headed, and what its
/// nodes cost.
#[derive(Debug, Clone, Copy)]
struct Grower {
    from: u32,
    to: u32,
    split: Split,
    prices: Option<Prices>,
}

impl Grower {
    fn cost(&self, nodes: u32) -> f64 {
        hourly_cost(nodes, &self.split, self.prices.as_ref())
    }

    /// Its size when it has moved `frac` (in [0, 1]) of the way, rounded down.
    fn at(&self, frac: f64) -> u32 {
        let want = f64::from(self.to - self.from);
        // `frac` is in [0, 1], so the product is in [0, want], and the conversion (which
        // truncates) rounds it down: `floor` without its call into libm, which the
        // search makes for every moving grower at every halving.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let add = (frac * want) as u32;
        self.from + add.min(self.to - self.from)
    }
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
    let order = name_order(demands);
    let mut rank = vec![0; demands.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    let mut fleet = Fleet {
        demands,
        rank,
        slots: demands
            .iter()
            .map(|d| Grant {
                nodes: start(d),
                on_demand: 0,
                hourly_cost: 0.0,
                split: d.split,
                reasons: Vec::new(),
            })
            .collect(),
    };
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
fn fallbacks_within_ceilings(fleet: &mut Fleet<'_>, order: &[usize], policy: &BudgetPolicy) {
    let demands = fleet.demands;
    for tier in TRIM_ORDER {
        for i in fleet.tier(order, tier) {
            let d = &demands[i];
            if fleet.slots[i].split == d.normal_split {
                continue;
            }
            let over_pool = d
                .max_hourly_cost
                .is_some_and(|c| fleet.cost(i) > c + EPSILON);
            let over_fleet = policy.ceiling.is_some_and(|c| fleet.total() > c + EPSILON);
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

/// Brings the fleet under `ceiling`: basic pools to spot first, then scale-downs from
/// the lowest tier up, each no lower than its `floor`.
fn trim_fleet(fleet: &mut Fleet<'_>, order: &[usize], ceiling: f64) {
    let demands = fleet.demands;
    for tier in TRIM_ORDER {
        if fleet.total() <= ceiling + EPSILON {
            return;
        }
        if tier == Tier::Basic {
            let mut movable: Vec<(usize, f64)> = fleet
                .tier(order, tier)
                .filter(|&i| {
                    let d = &demands[i];
                    d.spot_allowed && fleet.slots[i].split == d.normal_split
                })
                .map(|i| {
                    let n = fleet.slots[i].nodes;
                    let spot = fleet.slots[i].split.all_spot_above_base();
                    let saving = fleet.cost(i) - hourly_cost(n, &spot, demands[i].prices.as_ref());
                    (i, saving)
                })
                .filter(|&(_, saving)| saving > EPSILON)
                .collect();
            movable.sort_by(|a, b| {
                b.1.total_cmp(&a.1)
                    .then_with(|| demands[a.0].name.cmp(&demands[b.0].name))
            });
            for (i, _) in movable {
                if fleet.total() <= ceiling + EPSILON {
                    return;
                }
                let n = fleet.slots[i].nodes;
                let before = fleet.slots[i].split.on_demand(n);
                let split = fleet.slots[i].split.all_spot_above_base();
                fleet.slots[i].split = split;
                fleet.slots[i].reasons.push(Reason::MovedToSpot {
                    on_demand_from: before,
                    on_demand_to: split.on_demand(n),
                });
            }
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

    /// The search as it was: every grower priced at every halving, its size rounded
    /// down with `floor`.
    fn fraction_by_walks(growers: &[Grower], before: f64, spare: f64) -> f64 {
        let at = |g: &Grower, frac: f64| -> u32 {
            let want = f64::from(g.to - g.from);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let add = (frac * want).floor() as u32;
            g.from + add.min(g.to - g.from)
        };
        let added =
            |frac: f64| -> f64 { growers.iter().map(|g| g.cost(at(g, frac))).sum::<f64>() - before };
        let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
        for _ in 0..60 {
            let mid = f64::midpoint(lo, hi);
            if added(mid) <= spare + EPSILON {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn grower() -> impl Strategy<Value = Grower> {
        (
            0_u32..60,
            0_u32..250,
            (0_u32..8, 0_u32..=100, prop::option::of(0_u32..40)),
            prop::option::of((0.01_f64..8.0, 0.0_f64..1.0)),
        )
            .prop_map(|(from, more, (base, percent, cap), prices)| Grower {
                from,
                to: from + more,
                split: Split {
                    base,
                    percent_above_base: percent,
                    spot_cap: cap,
                },
                prices: prices.map(|(od, f)| Prices {
                    on_demand: od,
                    spot: od * f,
                }),
            })
    }

    proptest! {
        /// The search that keeps the costs of growers that can no longer move, and each
        /// moving grower's costs at the interval's ends, finds the very fraction (bit
        /// for bit) that pricing every grower at every halving does, whatever the
        /// sizes, splits, prices and money.
        #[test]
        fn the_fraction_is_the_one_the_full_walks_find(
            growers in prop::collection::vec(grower(), 0..60),
            share in prop_oneof![0.0_f64..1.2, 0.99_f64..=1.0],
            short in prop_oneof![Just(0.0_f64), 1e-12_f64..2.0],
        ) {
            let before: f64 = growers.iter().map(|g| g.cost(g.from)).sum();
            let full: f64 = growers.iter().map(|g| g.cost(g.to)).sum();
            // Shares near 1, less a little, are the money running out just short of
            // every target: the fraction tends to 1.
            let spare = ((full - before) * share - short).max(0.0);
            let fast = fraction(&growers, before, spare);
            let walks = fraction_by_walks(&growers, before, spare);
            prop_assert_eq!(fast.to_bits(), walks.to_bits(), "{} against {}", fast, walks);
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
