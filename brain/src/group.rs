//! Cross-cloud pool groups: one workload on several pools (an AWS ASG, an Azure scale
//! set, a GKE node pool), sized together and allocated to its members.
//!
//! The group is planned like a pool, by the HPA planner on the telemetry of all its
//! members together, within the sum of the members' bounds. Its size is then allocated
//! here, by strategy, to the members, each within its own range this pass:
//! - `lo`: its `min`, and no lower than its scale-down rate allows from its current
//!   size (so capacity leaves a member at that member's rate, e.g. when it returns to
//!   a member that recovered);
//! - `hi`: its `max` while it may grow; its current size while it cannot (not
//!   described, backing off after failures, its circuit open, a refusal this pass, or
//!   frozen after flapping).
//!
//! Strategies: `cheapest` fills the lowest price per node first (at the member's spot
//! split, a fallback included); `priority` fills in the listed order; `spread` keeps
//! the members' sizes within `max_skew` nodes of each other, moving as few nodes as it
//! can. When a member's cloud refuses the capacity it was given, [`spill`] gives the
//! shortfall to the others in the same pass, within the budget.
//!
//! Pure: no I/O, no clock.

use serde::{Deserialize, Serialize};

use capstan_config::GroupStrategy;

use super::budget::{self, Prices};
use super::spot::Split;

pub use super::reason::Limit;

/// Slack for sums of money in floating point.
const EPSILON: f64 = 1e-9;

/// One member as the allocation sees it this pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Slot {
    /// Nodes it holds (its last known size when it could not be described).
    pub current: u32,
    /// Its bounds this pass, after schedules.
    pub min: u32,
    /// Most nodes this pass.
    pub max: u32,
    /// The lowest size its scale-down rate allows this pass (at least `min`).
    pub floor: u32,
    /// Whether it may grow this pass.
    pub available: bool,
    /// Money per node-hour at its split this pass (`None`: no prices configured).
    pub price: Option<f64>,
}

impl Slot {
    /// The least it may be given.
    pub fn lo(&self) -> u32 {
        self.floor.max(self.min)
    }

    /// The most it may be given.
    pub fn hi(&self) -> u32 {
        let cap = if self.available {
            self.max
        } else {
            self.current.min(self.max)
        };
        cap.max(self.lo())
    }

    /// What holds its share where it is, if anything does.
    fn limit(&self, share: u32) -> Option<Limit> {
        if !self.available {
            Some(Limit::Unavailable)
        } else if share >= self.max {
            Some(Limit::Max)
        } else if share == self.lo() && share > self.min {
            Some(Limit::ScaleDownRate)
        } else if share == self.min && self.min > 0 {
            Some(Limit::Min)
        } else {
            None
        }
    }
}

/// The order in which `cheapest` and `priority` fill the members: indices into
/// `slots`. Members without prices come after those with, in the listed order.
pub fn preference(strategy: GroupStrategy, slots: &[Slot]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..slots.len()).collect();
    if strategy == GroupStrategy::Cheapest {
        order.sort_by(|&a, &b| {
            let key = |i: usize| slots[i].price.filter(|p| p.is_finite()).unwrap_or(f64::MAX);
            key(a).total_cmp(&key(b)).then(a.cmp(&b))
        });
    }
    order
}

/// Allocates `desired` nodes to the members, each within `[lo, hi]`. The shares sum
/// to `desired` whenever `Σ lo <= desired <= Σ hi`; otherwise to the nearer end.
pub fn allocate(strategy: GroupStrategy, max_skew: u32, desired: u32, slots: &[Slot]) -> Vec<u32> {
    match strategy {
        GroupStrategy::Cheapest | GroupStrategy::Priority => {
            fill(&preference(strategy, slots), desired, slots)
        }
        GroupStrategy::Spread => spread(max_skew.max(1), desired, slots),
    }
}

/// Everyone at `lo`, then the rest to the members in `order`, each up to its `hi`.
fn fill(order: &[usize], desired: u32, slots: &[Slot]) -> Vec<u32> {
    let mut shares: Vec<u32> = slots.iter().map(Slot::lo).collect();
    let mut rest = desired.saturating_sub(shares.iter().sum());
    for &i in order {
        let add = (slots[i].hi() - shares[i]).min(rest);
        shares[i] += add;
        rest -= add;
    }
    shares
}

/// From each member's current size (within its range), adds to the smallest or takes
/// from the largest until the sum is `desired`, then moves single nodes from the
/// largest to the smallest while they differ by more than `max_skew`.
fn spread(max_skew: u32, desired: u32, slots: &[Slot]) -> Vec<u32> {
    let mut shares: Vec<u32> = slots
        .iter()
        .map(|s| s.current.clamp(s.lo(), s.hi()))
        .collect();
    // The smallest member that may take one more; ties go to the first listed.
    let taker = |shares: &[u32]| {
        (0..slots.len())
            .filter(|&i| shares[i] < slots[i].hi())
            .min_by_key(|&i| (shares[i], i))
    };
    // The largest member that may give one; ties go to the last listed.
    let giver = |shares: &[u32]| {
        (0..slots.len())
            .filter(|&i| shares[i] > slots[i].lo())
            .max_by_key(|&i| (shares[i], i))
    };
    let mut sum: u32 = shares.iter().sum();
    while sum < desired {
        let Some(i) = taker(&shares) else { break };
        shares[i] += 1;
        sum += 1;
    }
    while sum > desired {
        let Some(i) = giver(&shares) else { break };
        shares[i] -= 1;
        sum -= 1;
    }
    // Each move narrows the gap between a giver and a taker, so this ends; the bound
    // is a guard.
    let mut guard = u64::from(sum) + slots.len() as u64;
    while guard > 0 {
        guard -= 1;
        let (Some(g), Some(t)) = (giver(&shares), taker(&shares)) else {
            break;
        };
        if shares[g] <= shares[t].saturating_add(max_skew) || g == t {
            break;
        }
        shares[g] -= 1;
        shares[t] += 1;
    }
    shares
}

/// What holds each share where it is.
pub fn limits(slots: &[Slot], shares: &[u32]) -> Vec<Option<Limit>> {
    slots.iter().zip(shares).map(|(s, &n)| s.limit(n)).collect()
}

/// One member's money this pass, for [`spill`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Money {
    /// Its prices, if known.
    pub prices: Option<Prices>,
    /// The split it is planned with.
    pub split: Split,
    /// Its own ceiling per hour.
    pub max_hourly_cost: Option<f64>,
}

impl Money {
    /// Cost per hour of `nodes` nodes at its split.
    pub fn cost_of(&self, nodes: u32) -> f64 {
        budget::hourly_cost(nodes, &self.split, self.prices.as_ref())
    }
}

/// The shortfall of members whose cloud refused their grant this pass goes to the
/// others, in the same pass.
///
/// `slots` are the pass's slots with the refusing members already marked unavailable;
/// `granted` are the grants that were being applied (refused members' entries are
/// their sizes now). Members gain only: a member's new grant is at least its old one.
/// The extra nodes follow the strategy, and each is granted only while the fleet stays
/// within `room` (money per hour still free under the budget ceiling, `None` without
/// one) and the member within its own ceiling.
pub fn spill(
    strategy: GroupStrategy,
    max_skew: u32,
    desired: u32,
    slots: &[Slot],
    granted: &[u32],
    money: &[Money],
    mut room: Option<f64>,
) -> Vec<u32> {
    // Every member keeps at least its grant (a refusing member exactly its grant, its
    // size now), so the allocation only places the shortfall.
    let pinned: Vec<Slot> = slots
        .iter()
        .zip(granted)
        .map(|(s, &g)| Slot {
            current: g,
            min: s.min.min(g),
            max: if s.available { s.max.max(g) } else { g },
            floor: g,
            available: s.available,
            price: s.price,
        })
        .collect();
    let ideal = allocate(strategy, max_skew, desired, &pinned);
    let mut out = granted.to_vec();
    let order: Vec<usize> = match strategy {
        GroupStrategy::Spread => {
            let mut o: Vec<usize> = (0..slots.len()).collect();
            o.sort_by_key(|&i| (granted[i], i));
            o
        }
        _ => preference(strategy, &pinned),
    };
    for i in order {
        if ideal[i] <= out[i] || !slots[i].available {
            continue;
        }
        let m = &money[i];
        let base = m.cost_of(out[i]);
        let mut best = out[i];
        // The most nodes up to the ideal whose added cost fits the room and the
        // member's own ceiling (costs grow with nodes, so the search is monotone).
        let (mut lo, mut hi) = (out[i], ideal[i]);
        let fits = |n: u32| {
            let c = m.cost_of(n);
            room.is_none_or(|r| c - base <= r + EPSILON)
                && m.max_hourly_cost.is_none_or(|cap| c <= cap + EPSILON)
        };
        if fits(hi) {
            best = hi;
        } else {
            while lo + 1 < hi {
                let mid = lo + (hi - lo) / 2;
                if fits(mid) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            if lo > best && fits(lo) {
                best = lo;
            }
        }
        if let Some(r) = room.as_mut() {
            *r -= m.cost_of(best) - base;
        }
        out[i] = best;
    }
    out
}
