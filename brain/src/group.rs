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

    /// A grant of `nodes` nodes as this member's money has it: split into on-demand
    /// and spot, and costed (a spill-over's second call in a pass).
    pub fn grant(&self, nodes: u32) -> MemberGrant {
        let on_demand = self.split.on_demand(nodes);
        MemberGrant {
            nodes,
            on_demand,
            spot: nodes - on_demand,
            hourly_cost: self.cost_of(nodes),
        }
    }
}

/// A member's grant, split and costed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MemberGrant {
    /// Nodes.
    pub nodes: u32,
    /// Of which on-demand.
    pub on_demand: u32,
    /// Of which spot.
    pub spot: u32,
    /// Cost per hour.
    pub hourly_cost: f64,
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

/// What a member's cloud call came to, as the spill-over rounds need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallResult {
    /// It now holds this many nodes.
    Scaled(u32),
    /// Its cloud refused this many nodes beyond what it holds.
    Refused(u32),
}

/// One call a round asks for: give `member` its grant of `nodes`; `extra` of them are
/// spilled over from members that refused (0 in the first round).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The member, an index into the group's members.
    pub member: usize,
    /// Its grant.
    pub nodes: u32,
    /// What it gains over what it holds (later rounds only).
    pub extra: u32,
}

/// The rounds of one group's pass. The first round gives every member its grant; when
/// clouds refuse, the refused nodes are [`spill`]ed to the members that may still grow,
/// within the budget's room, and the next round calls those members for the extra. A
/// member refused once gets nothing more, so with `k` members there are at most
/// `k + 1` rounds.
///
/// The caller makes the calls (`calls`, then `record` for each), and `end_round`
/// decides the next round: the decisions stay here, pure, where they are tested
/// (`group_tests::spill_over_rounds_keep_the_budget_and_every_members_range`).
#[derive(Debug, Clone)]
pub struct Spillover {
    strategy: GroupStrategy,
    max_skew: u32,
    desired: u32,
    slots: Vec<Slot>,
    money: Vec<Money>,
    granted: Vec<u32>,
    holds: Vec<u32>,
    refused: Vec<u32>,
    spilled_in: Vec<u32>,
    order: Vec<usize>,
    pending: Vec<usize>,
    newly_refused: Vec<usize>,
    round: usize,
    room: Option<f64>,
}

impl Spillover {
    /// The rounds for a group sized `desired`, whose members have `slots`, `money` and
    /// the budget's `granted`; `room` is the money per hour still free under the
    /// ceiling (`None` without one).
    pub fn new(
        strategy: GroupStrategy,
        max_skew: u32,
        desired: u32,
        slots: Vec<Slot>,
        money: Vec<Money>,
        granted: Vec<u32>,
        room: Option<f64>,
    ) -> Self {
        let k = slots.len();
        let order = match strategy {
            GroupStrategy::Spread => (0..k).collect(),
            s => preference(s, &slots),
        };
        Self {
            strategy,
            max_skew,
            desired,
            holds: slots.iter().map(|s| s.current).collect(),
            refused: vec![0; k],
            spilled_in: vec![0; k],
            pending: order.clone(),
            order,
            newly_refused: Vec::new(),
            round: 0,
            slots,
            money,
            granted,
            room,
        }
    }

    /// Whether this is the first round (each member's own plan is applied).
    pub const fn first_round(&self) -> bool {
        self.round == 0
    }

    /// This round's calls, in the strategy's order. In later rounds, only members
    /// with something to gain.
    pub fn calls(&self) -> Vec<Call> {
        self.pending
            .iter()
            .map(|&j| Call {
                member: j,
                nodes: self.granted[j],
                extra: if self.round == 0 {
                    0
                } else {
                    self.granted[j].saturating_sub(self.holds[j])
                },
            })
            .filter(|c| self.round == 0 || c.extra > 0)
            .collect()
    }

    /// Records what member `j`'s call came to.
    pub fn record(&mut self, j: usize, result: CallResult) {
        match result {
            CallResult::Scaled(nodes) => {
                if self.round > 0 {
                    self.spilled_in[j] += nodes.saturating_sub(self.holds[j]);
                }
                self.holds[j] = nodes;
            }
            CallResult::Refused(nodes) => {
                self.refused[j] += nodes;
                self.newly_refused.push(j);
            }
        }
    }

    /// Ends the round: the members refused in it are held where they are and marked
    /// unavailable, the money they free goes back to the room, and their shortfall is
    /// spilled to the others. Returns the members refused in this round.
    pub fn end_round(&mut self) -> Vec<usize> {
        let newly = std::mem::take(&mut self.newly_refused);
        if newly.is_empty() {
            self.pending.clear();
            return newly;
        }
        let mut freed = 0.0;
        for &j in &newly {
            self.slots[j].available = false;
            freed += self.money[j].cost_of(self.granted[j]) - self.money[j].cost_of(self.holds[j]);
            self.granted[j] = self.holds[j];
        }
        if let Some(r) = self.room.as_mut() {
            *r += freed;
        }
        let before = std::mem::take(&mut self.granted);
        self.granted = spill(
            self.strategy,
            self.max_skew,
            self.desired,
            &self.slots,
            &before,
            &self.money,
            self.room,
        );
        if let Some(r) = self.room.as_mut() {
            let spent: f64 = self
                .money
                .iter()
                .zip(self.granted.iter().zip(&before))
                .map(|(m, (&after, &was))| m.cost_of(after) - m.cost_of(was))
                .sum();
            *r = (*r - spent).max(0.0);
        }
        self.pending = self
            .order
            .iter()
            .copied()
            .filter(|&j| self.granted[j] > before[j])
            .collect();
        self.round += 1;
        if self.round > self.slots.len() {
            self.pending.clear();
        }
        newly
    }

    /// Whether no round is left.
    pub fn done(&self) -> bool {
        self.pending.is_empty()
    }

    /// Each member's grant as it stands.
    pub fn granted(&self) -> &[u32] {
        &self.granted
    }

    /// What each member holds after the calls so far (its size now until a call
    /// succeeds).
    pub fn holds(&self) -> &[u32] {
        &self.holds
    }

    /// Nodes each member's cloud refused this pass.
    pub fn refused(&self) -> &[u32] {
        &self.refused
    }

    /// Nodes each member took over from members that refused.
    pub fn spilled_in(&self) -> &[u32] {
        &self.spilled_in
    }

    /// The money per hour still free under the ceiling.
    pub const fn room(&self) -> Option<f64> {
        self.room
    }
}
