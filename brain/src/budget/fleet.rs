//! The allocation as it is worked out: each pool's grant so far, and the searches
//! over it: the most nodes a pool's own ceiling allows, the fraction of the way a
//! tier's pools grow within the money left, and the fewest changes (fallbacks dropped,
//! pools moved to spot) that bring the fleet within its ceiling.

use capstan_config::Tier;

use super::{Demand, EPSILON, Grant, Prices, hourly_cost, name_order, start};
use crate::spot::Split;

#[cfg_attr(test, derive(Clone))]
pub(super) struct Fleet<'a> {
    pub(super) demands: &'a [Demand<'a>],
    /// One per demand: the grant as it is worked out.
    pub(super) slots: Vec<Grant>,
    /// One per demand: its place in name order (ties between pools go by name).
    rank: Vec<usize>,
}

impl<'a> Fleet<'a> {
    /// Every pool at its [`start`], and the pools' name order.
    pub(super) fn new(demands: &'a [Demand<'a>]) -> (Self, Vec<usize>) {
        let order = name_order(demands);
        let mut rank = vec![0; demands.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i] = r;
        }
        let slots = demands
            .iter()
            .map(|d| Grant {
                nodes: start(d),
                on_demand: 0,
                hourly_cost: 0.0,
                split: d.split,
                reasons: Vec::new(),
            })
            .collect();
        let fleet = Fleet {
            demands,
            slots,
            rank,
        };
        (fleet, order)
    }

    pub(super) fn cost_at(&self, i: usize, nodes: u32) -> f64 {
        hourly_cost(nodes, &self.slots[i].split, self.demands[i].prices.as_ref())
    }

    pub(super) fn cost(&self, i: usize) -> f64 {
        self.cost_at(i, self.slots[i].nodes)
    }

    pub(super) fn total(&self) -> f64 {
        (0..self.slots.len()).map(|i| self.cost(i)).sum()
    }

    /// The fewest of `changes` (a pool and its cost after the change), made in order,
    /// after which the fleet's [`total`](Self::total) is within `limit`; `None` when it
    /// is above even after all of them.
    ///
    /// Each change must lower its pool's cost or keep it. The total then never rises
    /// from one change to the next (a rounded sum does not rise when one of its terms
    /// falls), so the count is found by bisection: log n sums of the fleet instead of
    /// one sum per change, which made a trim of thousands of pools quadratic. Each sum
    /// is the one `total` makes after those changes (every pool in index order), so
    /// the count is the one that summing after each change finds.
    pub(super) fn fewest_within(&self, changes: &[(usize, f64)], limit: f64) -> Option<usize> {
        let costs: Vec<f64> = (0..self.slots.len()).map(|i| self.cost(i)).collect();
        debug_assert!(changes.iter().all(|&(i, after)| after <= costs[i]));
        // Each pool's place among the changes (`usize::MAX`: none).
        let mut place = vec![usize::MAX; costs.len()];
        for (k, &(i, _)) in changes.iter().enumerate() {
            place[i] = k;
        }
        let total_after = |made: usize| -> f64 {
            costs
                .iter()
                .zip(&place)
                .map(|(&now, &k)| if k < made { changes[k].1 } else { now })
                .sum()
        };
        let (mut lo, mut hi) = (0, changes.len());
        if total_after(hi) > limit {
            return None;
        }
        // The answer is in [lo, hi]: `hi` fits, and every count below `lo` does not.
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if total_after(mid) <= limit {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Some(lo)
    }

    /// Pools of `tier`, in name order (`order` from [`name_order`]).
    pub(super) fn tier<'o>(
        &self,
        order: &'o [usize],
        tier: Tier,
    ) -> impl Iterator<Item = usize> + 'o
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
    pub(super) fn most_within(&self, i: usize, from: u32, to: u32, money: f64) -> u32 {
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
    pub(super) fn grow(&mut self, members: &[(usize, u32)], spare: f64) -> bool {
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
/// ends is kept too (pricing is a pure function of the size), and a grower left with
/// two sizes a node apart is kept as its breakpoint, the least fraction at which it
/// takes the larger: a halving compares the midpoint with it instead of sizing and
/// pricing the grower. Where no cost changed, a halving reuses the last sum.
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
    // Growers that can still take several sizes, and those left with two.
    let (mut moving, mut pairs) = (Vec::new(), Vec::new());
    for (k, end) in ends.iter().enumerate() {
        match end[1].0 - end[0].0 {
            0 => {}
            1 => pairs.push(Pair::new(&growers[k], k, end, false)),
            _ => moving.push(k),
        }
    }
    let mut sizes: Vec<(u32, f64)> = Vec::with_capacity(moving.len());
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    // The sum of `costs`, made again only when one of them changed: the same costs in
    // the same order give the same sum.
    let mut sum: f64 = costs.iter().sum();
    for _ in 0..60 {
        let mid = f64::midpoint(lo, hi);
        sizes.clear();
        let mut changed = false;
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
            changed |= cost.to_bits() != costs[k].to_bits();
            costs[k] = cost;
            sizes.push((n, cost));
        }
        for pair in &mut pairs {
            let larger = mid >= pair.breakpoint;
            if larger != pair.larger {
                pair.larger = larger;
                costs[pair.k] = ends[pair.k][usize::from(larger)].1;
                changed = true;
            }
        }
        if changed {
            sum = costs.iter().sum();
        }
        let fits = sum - before <= spare + EPSILON;
        if fits {
            lo = mid;
        } else {
            hi = mid;
        }
        // A pair whose size at the midpoint is now both ends' size stops moving.
        pairs.retain(|pair| pair.larger != fits);
        let end = usize::from(!fits);
        for (&k, &size) in moving.iter().zip(&sizes) {
            ends[k][end] = size;
        }
        // A grower left with two sizes becomes a pair; at the midpoint it took the
        // end just set, the larger one where the money did not fit.
        moving.retain(|&k| match ends[k][1].0 - ends[k][0].0 {
            0 => false,
            1 => {
                pairs.push(Pair::new(&growers[k], k, &ends[k], !fits));
                false
            }
            _ => true,
        });
    }
    lo
}

/// A grower of [`fraction`] left with two sizes a node apart.
struct Pair {
    /// The least fraction at which it takes the larger size.
    breakpoint: f64,
    /// The grower.
    k: usize,
    /// Whether its cost in the sum is the larger size's.
    larger: bool,
}

impl Pair {
    fn new(grower: &Grower, k: usize, ends: &[(u32, f64); 2], larger: bool) -> Self {
        let target = ends[1].0;
        // `at` does not fall as the fraction rises (a rounded product does not), so the
        // least fraction that reaches `target` is near target's share of the way, a
        // few steps of one unit in the last place either side.
        let mut x = f64::from(target - grower.from) / f64::from(grower.to - grower.from);
        while x > 0.0 && grower.at(x.next_down()) >= target {
            x = x.next_down();
        }
        while grower.at(x) < target {
            x = x.next_up();
        }
        Pair {
            breakpoint: x,
            k,
            larger,
        }
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// The search as it was: every grower priced at every halving, its size rounded
    /// down with `floor`.
    fn fraction_by_walks(growers: &[Grower], before: f64, spare: f64) -> f64 {
        let at = |g: &Grower, frac: f64| -> u32 {
            let want = f64::from(g.to - g.from);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let add = (frac * want).floor() as u32;
            g.from + add.min(g.to - g.from)
        };
        let added = |frac: f64| -> f64 {
            growers.iter().map(|g| g.cost(at(g, frac))).sum::<f64>() - before
        };
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
        /// The search that keeps the costs of growers that can no longer move, each
        /// moving grower's costs at the interval's ends, and a grower left with two
        /// sizes as its breakpoint, finds the very fraction (bit for bit) that pricing
        /// every grower at every halving does, whatever the sizes, splits, prices and
        /// money.
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
    }
}
