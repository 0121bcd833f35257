//! The budget allocator as it was before `Fleet::grow` walked a compact copy of its
//! members: kept only to show, on random fleets, that the faster one decides exactly
//! the same (`budget_tests::the_compact_grow_decides_as_before`). Deleted once that has
//! run.

use capstan_config::{BudgetEnforcement, Tier};

use super::budget::{Allocation, BudgetPolicy, Demand, Grant, hourly_cost};
use super::reason::Reason;

const EPSILON: f64 = 1e-9;

struct Fleet<'a> {
    demands: &'a [Demand<'a>],
    /// One per demand: the grant as it is worked out.
    slots: Vec<Grant>,
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
    /// what is left one node at a time by largest remainder. Returns whether any pool
    /// got less than its target.
    fn grow(&mut self, members: &[(usize, u32)], spare: f64) -> bool {
        let before: f64 = members.iter().map(|&(i, _)| self.cost(i)).sum();
        // Everyone's target fits (always so without a ceiling): no fractions needed.
        let full: f64 = members.iter().map(|&(i, to)| self.cost_at(i, to)).sum();
        if full - before <= spare + EPSILON {
            for &(i, to) in members {
                self.slots[i].nodes = to;
            }
            return false;
        }
        let from: Vec<u32> = members.iter().map(|&(i, _)| self.slots[i].nodes).collect();
        let at = |frac: f64| -> Vec<u32> {
            members
                .iter()
                .zip(&from)
                .map(|(&(_, to), &start)| {
                    let want = f64::from(to - start);
                    // `frac` is in [0, 1], so the product is in [0, want].
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    let add = (frac * want).floor() as u32;
                    start + add.min(to - start)
                })
                .collect()
        };
        let cost_of = |f: &Self, sizes: &[u32]| -> f64 {
            members
                .iter()
                .zip(sizes)
                .map(|(&(i, _), &n)| f.cost_at(i, n))
                .sum::<f64>()
                - before
        };
        let mut sizes = {
            let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
            for _ in 0..60 {
                let mid = f64::midpoint(lo, hi);
                if cost_of(self, &at(mid)) <= spare + EPSILON {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let mut sizes = at(lo);
            let mut left = spare - cost_of(self, &sizes);
            let mut order: Vec<usize> = (0..members.len()).collect();
            let remainder = |k: usize| {
                let want = f64::from(members[k].1 - from[k]);
                lo * want - (lo * want).floor()
            };
            order.sort_by(|&a, &b| {
                remainder(b).total_cmp(&remainder(a)).then_with(|| {
                    self.demands[members[a].0]
                        .name
                        .cmp(&self.demands[members[b].0].name)
                })
            });
            for k in order {
                let (i, to) = members[k];
                if sizes[k] < to {
                    let step = self.cost_at(i, sizes[k] + 1) - self.cost_at(i, sizes[k]);
                    if step <= left + EPSILON {
                        sizes[k] += 1;
                        left -= step;
                    }
                }
            }
            sizes
        };
        let mut short = false;
        for (k, &(i, to)) in members.iter().enumerate() {
            short |= sizes[k] < to;
            self.slots[i].nodes = std::mem::take(&mut sizes[k]);
        }
        short
    }
}

/// Where a pool starts in the allocation: its planned scale-downs are taken, its
/// scale-ups are yet to be granted. A pool below this was trimmed for money, and asks
/// for no scale-up this pass.
fn start(d: &Demand<'_>) -> u32 {
    d.desired.min(d.current).max(d.min)
}

/// Pool indices in name order: ties between pools go by name.
fn name_order(demands: &[Demand<'_>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..demands.len()).collect();
    order.sort_by(|&a, &b| demands[a].name.cmp(&demands[b].name));
    order
}

const GRANT_ORDER: [Tier; 3] = [Tier::Enterprise, Tier::Premium, Tier::Basic];
const TRIM_ORDER: [Tier; 3] = [Tier::Basic, Tier::Premium, Tier::Enterprise];

/// Allocates the budget over `demands` (see the module documentation for the rules).
pub fn allocate(demands: &[Demand<'_>], policy: &BudgetPolicy) -> Allocation {
    let order = name_order(demands);
    let mut fleet = Fleet {
        demands,
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

    // 2. A fallback to on-demand is a cost increase: only within the ceilings.
    for tier in TRIM_ORDER {
        for i in fleet.tier(&order, tier) {
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

    // 3a. Pools above their own ceiling.
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

    // 3b. A fleet above its ceiling.
    let mut over = false;
    if let Some(ceiling) = policy.ceiling {
        let minimums: f64 = demands
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
            trim_fleet(&mut fleet, &order, ceiling);
        }
        let total = fleet.total();
        if total > ceiling + EPSILON {
            over = true;
            notes.push(Reason::OverBudget {
                cost: total,
                ceiling,
                enforce: if trim { "trim" } else { "report" }.to_owned(),
            });
        }
    }

    // 4 and 5. Scale-ups, by tier: normal capacity first, then emergency capacity.
    let pool_cap = |f: &Fleet<'_>, i: usize, to: u32, extra: f64| -> u32 {
        let d = &demands[i];
        let n = f.slots[i].nodes;
        match d.max_hourly_cost {
            Some(cap) if to > n => f.most_within(i, n, to, cap + extra),
            _ => to,
        }
    };
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
            for i in fleet.tier(&order, tier) {
                let d = &demands[i];
                let n = fleet.slots[i].nodes;
                if fleet.slots[i].nodes < start(d) {
                    continue;
                }
                let want = match (emergency, d.desired > d.max) {
                    (false, _) => d.desired.min(d.max.max(n)),
                    (true, true) => d.desired,
                    (true, false) => continue,
                };
                if want <= n {
                    continue;
                }
                let to = pool_cap(&fleet, i, want, extra);
                if to < want {
                    fleet.slots[i].reasons.push(Reason::CappedByPoolBudget {
                        from: want,
                        to,
                        ceiling: d.max_hourly_cost.unwrap_or_default(),
                    });
                }
                if to > n {
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
