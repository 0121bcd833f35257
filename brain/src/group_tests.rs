//! Tests of group allocation: table tests of each strategy and property tests of the
//! invariants (the members' sum is the group's size when their ranges allow it, every
//! member stays within its range, the budget holds, the same inputs give the same
//! plan).

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use capstan_config::{GroupStrategy, ValidatedConfig};

use super::budget::BudgetPolicy;
use super::fleet::*;
use super::group::{self, Limit, Money, Slot};
use super::planner::{History, MetricSample, Policy};
use super::spot::Split;

fn slot(current: u32, min: u32, max: u32) -> Slot {
    Slot {
        current,
        min,
        max,
        floor: min,
        available: true,
        price: None,
    }
}

fn priced(mut s: Slot, price: f64) -> Slot {
    s.price = Some(price);
    s
}

#[test]
fn cheapest_fills_the_lowest_price_first_spot_included() {
    // Prices per node at each member's split: the spot-heavy member is cheapest.
    let slots = [
        priced(slot(2, 1, 10), 0.10),
        priced(slot(2, 1, 4), 0.04),
        priced(slot(2, 0, 10), 0.12),
    ];
    let shares = group::allocate(GroupStrategy::Cheapest, 1, 12, &slots);
    assert_eq!(shares, vec![8, 4, 0]);
    assert_eq!(
        group::limits(&slots, &shares),
        vec![None, Some(Limit::Max), None]
    );
    // Unpriced members come last, in the order listed.
    let slots = [slot(0, 0, 5), priced(slot(0, 0, 5), 0.3), slot(0, 0, 5)];
    assert_eq!(
        group::allocate(GroupStrategy::Cheapest, 1, 7, &slots),
        vec![2, 5, 0]
    );
}

#[test]
fn priority_fills_in_the_listed_order_whatever_the_price() {
    let slots = [
        priced(slot(0, 0, 3), 0.5),
        priced(slot(0, 1, 10), 0.1),
        priced(slot(0, 0, 10), 0.01),
    ];
    assert_eq!(
        group::allocate(GroupStrategy::Priority, 1, 9, &slots),
        vec![3, 6, 0]
    );
}

#[test]
fn spread_keeps_sizes_within_the_skew_and_moves_few_nodes() {
    let slots = [slot(4, 0, 10), slot(4, 0, 10), slot(4, 0, 10)];
    assert_eq!(
        group::allocate(GroupStrategy::Spread, 1, 14, &slots),
        vec![5, 5, 4]
    );
    // Within the skew nothing moves; beyond it one node at a time.
    let slots = [slot(6, 0, 10), slot(4, 0, 10), slot(2, 0, 10)];
    assert_eq!(
        group::allocate(GroupStrategy::Spread, 4, 12, &slots),
        vec![6, 4, 2]
    );
    assert_eq!(
        group::allocate(GroupStrategy::Spread, 1, 12, &slots),
        vec![4, 4, 4]
    );
    // A member that may not grow keeps its size; the others take the rest.
    let mut down = slot(1, 0, 10);
    down.available = false;
    assert_eq!(
        group::allocate(
            GroupStrategy::Spread,
            1,
            9,
            &[slot(2, 0, 10), down, slot(2, 0, 10)]
        ),
        vec![4, 1, 4]
    );
}

#[test]
fn capacity_leaves_a_member_no_faster_than_its_scale_down_rate() {
    // The spill-over member (second) may drop one node this pass.
    let mut spill = priced(slot(6, 1, 10), 0.12);
    spill.floor = 5;
    let back = priced(slot(2, 1, 6), 0.10);
    let shares = group::allocate(GroupStrategy::Cheapest, 1, 8, &[back, spill]);
    assert_eq!(shares, vec![3, 5]);
    assert_eq!(
        group::limits(&[back, spill], &shares),
        vec![None, Some(Limit::ScaleDownRate)]
    );
}

#[test]
fn a_spill_over_stays_within_the_budget_room_and_only_adds() {
    let money = |price: f64| Money {
        prices: Some(super::budget::Prices {
            on_demand: price,
            spot: price,
        }),
        split: Split::ON_DEMAND,
        max_hourly_cost: None,
    };
    let mut refused = priced(slot(2, 1, 10), 0.1);
    refused.available = false;
    let slots = [
        refused,
        priced(slot(2, 1, 10), 0.2),
        priced(slot(2, 1, 10), 0.3),
    ];
    let granted = [2, 2, 2];
    let m = [money(0.1), money(0.2), money(0.3)];
    // The group wants 12 and holds 6. Unlimited: the next cheapest takes all 6.
    assert_eq!(
        group::spill(GroupStrategy::Cheapest, 1, 12, &slots, &granted, &m, None),
        vec![2, 8, 2]
    );
    // Money for 0.9/h: 4 nodes at 0.2 (0.8), the rest does not fit.
    assert_eq!(
        group::spill(
            GroupStrategy::Cheapest,
            1,
            12,
            &slots,
            &granted,
            &m,
            Some(0.9)
        ),
        vec![2, 6, 2]
    );
    // Beyond the next member's max, the one after takes the rest.
    let mut small = slots;
    small[1].max = 5;
    assert_eq!(
        group::spill(GroupStrategy::Cheapest, 1, 12, &small, &granted, &m, None),
        vec![2, 5, 5]
    );
    // Nothing to spare: nothing moves.
    assert_eq!(
        group::spill(
            GroupStrategy::Cheapest,
            1,
            12,
            &slots,
            &granted,
            &m,
            Some(0.0)
        ),
        vec![2, 2, 2]
    );
}

fn t(s: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap() + chrono::Duration::seconds(s)
}

/// A member's spec in a random fleet.
#[derive(Debug, Clone)]
struct MemberSpec {
    min: u32,
    max: u32,
    current: u32,
    price: f64,
    spot: bool,
    described: bool,
}

fn arb_member() -> impl Strategy<Value = MemberSpec> {
    (
        0_u32..4,
        1_u32..12,
        0_u32..14,
        1_u32..40,
        any::<bool>(),
        prop::bool::weighted(0.85),
    )
        .prop_map(|(min, extra, current, cents, spot, described)| MemberSpec {
            min,
            max: min + extra,
            current,
            price: f64::from(cents) / 100.0,
            spot,
            described,
        })
}

fn fleet_toml(strategy: &str, members: &[MemberSpec], ceiling: Option<f64>) -> String {
    let mut s = String::new();
    if let Some(c) = ceiling {
        s.push_str(&format!(
            "[budget]\nmax_hourly_cost = {c}\nenforce = \"trim\"\n\n"
        ));
    }
    for (i, m) in members.iter().enumerate() {
        s.push_str(&format!(
            "[[pool]]\nname = \"m{i}\"\nprovider = {{ type = \"dry-run\" }}\nmin = {}\nmax = {}\nprice = {{ on_demand = {}, spot = {} }}\n",
            m.min,
            m.max,
            m.price,
            m.price / 3.0
        ));
        if m.spot {
            s.push_str("spot = { on_demand_base = 1, on_demand_percent_above_base = 0 }\n");
        }
        s.push('\n');
    }
    // A pool outside the group shares the budget.
    s.push_str("[[pool]]\nname = \"solo\"\nprovider = { type = \"dry-run\" }\nmin = 1\nmax = 8\nprice = { on_demand = 0.2 }\ntargets = [{ metric = \"cpu.utilization\", value = 50 }]\n\n");
    let names: Vec<String> = (0..members.len()).map(|i| format!("\"m{i}\"")).collect();
    s.push_str(&format!(
        "[[group]]\nname = \"g\"\nstrategy = \"{strategy}\"\nmembers = [{}]\nbehavior = \"aggressive\"\ntargets = [{{ metric = \"cpu.utilization\", value = 50 }}]\n",
        names.join(", ")
    ));
    s
}

fn config(text: &str) -> ValidatedConfig {
    capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty())
        .unwrap_or_else(|e| panic!("{}\n{text}", e.lines().join("\n")))
}

fn sample(avg: f64, nodes: u32) -> Option<MetricSample> {
    (nodes > 0).then_some(MetricSample {
        sum: avg * f64::from(nodes),
        ready: nodes,
        missing: 0,
        unready: 0,
        reporting: nodes,
    })
}

/// One pass over the random fleet; returns the plan.
fn pass(
    cfg: &ValidatedConfig,
    specs: &[MemberSpec],
    load: f64,
    solo_load: f64,
    now: DateTime<Utc>,
) -> FleetPlan {
    let policies: Vec<Policy> = cfg.pools.iter().map(Policy::from).collect();
    let mut states = vec![PoolState::default(); cfg.pools.len()];
    let history = History::default();
    let current: Vec<u32> = specs.iter().map(|m| m.current).chain([3]).collect();
    let solo = [sample(solo_load, 3)];
    let none: [Option<MetricSample>; 0] = [];
    let mut inputs: Vec<PoolInput<'_>> = cfg
        .pools
        .iter()
        .zip(&policies)
        .zip(states.iter_mut())
        .enumerate()
        .map(|(i, ((config, policy), state))| {
            let described = specs.get(i).is_none_or(|m| m.described);
            PoolInput {
                config,
                policy,
                prices: prices(config.price.as_ref(), [], None),
                state,
                view: described.then_some(View {
                    current: current[i],
                    metrics: if i < specs.len() { &none } else { &solo },
                    history: &history,
                    running_spot: 0,
                    asked_spot: None,
                    outlook: None,
                    surge: None,
                    interrupted: 0,
                    faulty_gpus: 0,
                }),
                last_known: current[i],
            }
        })
        .collect();
    let group_policy = Policy::from(&cfg.groups[0]);
    let described: u32 = specs
        .iter()
        .filter(|m| m.described)
        .map(|m| m.current)
        .sum();
    let metrics = [sample(load, described)];
    let members: Vec<usize> = (0..specs.len()).collect();
    let groups = [GroupInput {
        config: &cfg.groups[0],
        policy: &group_policy,
        history: &history,
        metrics: &metrics,
        members: &members,
    }];
    plan_fleet_with_groups(&mut inputs, &groups, &BudgetPolicy::from(&cfg.budget), now)
}

/// A member's slot from the proptests' random parts: `extra` above `min`, able to
/// shrink by `down` this pass, `cents` per node-hour.
fn random_slot(
    min: u32,
    extra: u32,
    current: u32,
    down: u32,
    available: bool,
    cents: Option<u32>,
) -> Slot {
    Slot {
        current,
        min,
        max: min + extra,
        floor: current.saturating_sub(down).max(min),
        available,
        price: cents.map(|c| f64::from(c) / 100.0),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn allocations_sum_to_the_group_size_within_every_members_range(
        strategy in prop::sample::select(vec![GroupStrategy::Cheapest, GroupStrategy::Spread, GroupStrategy::Priority]),
        skew in 1_u32..4,
        desired in 0_u32..80,
        raw in prop::collection::vec((0_u32..5, 0_u32..12, 0_u32..20, 0_u32..6, any::<bool>(), prop::option::of(1_u32..50)), 1..6),
    ) {
        let slots: Vec<Slot> = raw.iter().map(|&(min, extra, current, down, available, cents)| random_slot(min, extra, current, down, available, cents)).collect();
        let shares = group::allocate(strategy, skew, desired, &slots);
        let lo: u32 = slots.iter().map(Slot::lo).sum();
        let hi: u32 = slots.iter().map(Slot::hi).sum();
        for (s, &n) in slots.iter().zip(&shares) {
            prop_assert!(n >= s.lo() && n <= s.hi(), "{n} outside [{}, {}] of {s:?}", s.lo(), s.hi());
            if !s.available {
                prop_assert!(n <= s.current.max(s.lo()), "an unavailable member grew: {s:?} → {n}");
            }
        }
        prop_assert_eq!(shares.iter().sum::<u32>(), desired.clamp(lo, hi));
        // Determinism.
        prop_assert_eq!(&group::allocate(strategy, skew, desired, &slots), &shares);
        match strategy {
            GroupStrategy::Spread => {
                // No member that could give one is more than the skew above one that
                // could take one.
                for (a, sa) in slots.iter().enumerate() {
                    for (b, sb) in slots.iter().enumerate() {
                        if shares[a] > sa.lo() && shares[b] < sb.hi() {
                            prop_assert!(shares[a] <= shares[b] + skew, "{shares:?} {slots:?}");
                        }
                    }
                }
            }
            _ => {
                // Fill order: a later member holds more than its least only when every
                // earlier one is full.
                let order = group::preference(strategy, &slots);
                for (k, &later) in order.iter().enumerate() {
                    if shares[later] > slots[later].lo() {
                        for &earlier in &order[..k] {
                            prop_assert_eq!(shares[earlier], slots[earlier].hi());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn groups_keep_bounds_the_budget_and_their_size_pass_after_pass(
        strategy in prop::sample::select(vec!["cheapest", "spread", "priority"]),
        specs in prop::collection::vec(arb_member(), 1..5),
        ceiling in prop::option::of(1_u32..40),
        loads in prop::collection::vec((1_u32..200, 1_u32..200), 1..4),
    ) {
        let ceiling = ceiling.map(|c| f64::from(c) / 4.0);
        let cfg = config(&fleet_toml(strategy, &specs, ceiling));
        for (k, &(load, solo)) in loads.iter().enumerate() {
            let now = t(15 * i64::try_from(k).unwrap());
            let plan = pass(&cfg, &specs, f64::from(load), f64::from(solo), now);
            prop_assert_eq!(&pass(&cfg, &specs, f64::from(load), f64::from(solo), now), &plan);
            let g = &plan.groups[0];
            let mut grew = false;
            for (m, spec) in g.members.iter().zip(&specs) {
                let p = &plan.pools[m.index];
                prop_assert_eq!(p.desired, m.granted);
                if spec.described {
                    prop_assert!(p.desired >= spec.min && p.desired <= spec.max.max(spec.current.min(spec.max)),
                        "{} outside [{}, {}]", p.desired, spec.min, spec.max);
                    prop_assert!(m.share >= m.slot.lo() && m.share <= m.slot.hi());
                } else {
                    prop_assert_eq!(p.desired, spec.current, "a member not described is held");
                }
                grew |= p.desired > spec.current.max(spec.min);
            }
            let solo_plan = plan.pools.last().unwrap();
            grew |= solo_plan.desired > 3;
            let lo: u32 = g.members.iter().map(|m| m.slot.lo()).sum();
            let hi: u32 = g.members.iter().map(|m| m.slot.hi()).sum();
            let placed: u32 = g.members.iter().map(|m| m.share).sum();
            prop_assert_eq!(placed, g.desired.clamp(lo, hi));
            match ceiling {
                None => prop_assert_eq!(g.granted, placed, "without a ceiling the budget takes nothing"),
                Some(c) => {
                    if grew {
                        prop_assert!(plan.fleet_hourly_cost <= c + 1e-6,
                            "a scale-up took the fleet to {} above {c}", plan.fleet_hourly_cost);
                    }
                }
            }
        }
    }
}

proptest! {
    /// A spill-over's second call is planned from the member's money: its split and
    /// its cost, the same as the budget would give that many nodes.
    #[test]
    fn a_members_regrant_is_split_and_costed_as_its_money_says(
        nodes in 0_u32..500,
        base in 0_u32..10,
        percent in 0_u32..=100,
        cents in prop::option::of(1_u32..500),
    ) {
        let money = Money {
            prices: cents.map(|c| super::budget::Prices { on_demand: f64::from(c) / 100.0, spot: f64::from(c) / 300.0 }),
            split: Split { base, percent_above_base: percent, spot_cap: None },
            max_hourly_cost: None,
        };
        let grant = money.grant(nodes);
        prop_assert_eq!(grant.nodes, nodes);
        prop_assert_eq!(grant.on_demand + grant.spot, nodes);
        prop_assert_eq!(grant.on_demand, money.split.on_demand(nodes));
        prop_assert_eq!(grant.hourly_cost, money.cost_of(nodes));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn spill_over_rounds_keep_the_budget_and_every_members_range(
        strategy in prop::sample::select(vec![GroupStrategy::Cheapest, GroupStrategy::Spread, GroupStrategy::Priority]),
        skew in 1_u32..4,
        desired in 0_u32..80,
        raw in prop::collection::vec(
            (0_u32..5, 0_u32..12, 0_u32..20, 0_u32..6, any::<bool>(), prop::option::of(1_u32..50), prop::option::of(1_u32..100), 0_u32..4),
            1..6,
        ),
        room in prop::option::of(0_u32..200),
        refusals in prop::collection::vec(any::<bool>(), 64),
    ) {
        let slots: Vec<Slot> = raw.iter().map(|&(min, extra, current, down, available, cents, ..)| random_slot(min, extra, current, down, available, cents)).collect();
        let money: Vec<Money> = raw.iter().map(|&(.., cents, cap, base)| Money {
            prices: cents.map(|c| super::budget::Prices { on_demand: f64::from(c) / 100.0, spot: f64::from(c) / 300.0 }),
            split: Split { base, percent_above_base: 50, spot_cap: None },
            max_hourly_cost: cap.map(|c| f64::from(c) / 10.0),
        }).collect();
        // The budget's grants: the group's shares, some cut back towards what the
        // members hold, as a binding ceiling would.
        let shares = group::allocate(strategy, skew, desired, &slots);
        let granted: Vec<u32> = shares.iter().zip(&slots).zip(&refusals)
            .map(|((&n, s), &cut)| if cut { n.min(s.current.max(s.lo())) } else { n })
            .collect();
        let room = room.map(|r| f64::from(r) / 10.0);
        let mut rounds = group::Spillover::new(strategy, skew, desired, slots.clone(), money.clone(), granted.clone(), room);
        let mut script = refusals.iter().cycle();
        let mut ever_refused = vec![false; slots.len()];
        let mut count = 0;
        while !rounds.done() {
            count += 1;
            prop_assert!(count <= slots.len() + 1, "more than k + 1 rounds");
            let first = rounds.first_round();
            for call in rounds.calls() {
                let j = call.member;
                prop_assert!(!ever_refused[j], "a member refused once was called again");
                let holds = rounds.holds()[j];
                let refuse = *script.next().unwrap() && call.nodes > holds;
                if refuse {
                    rounds.record(j, group::CallResult::Refused(if first { call.nodes - holds } else { call.extra }));
                    ever_refused[j] = true;
                } else {
                    rounds.record(j, group::CallResult::Scaled(call.nodes));
                }
            }
            rounds.end_round();
        }
        let after = rounds.granted();
        let cost = |g: &[u32]| g.iter().zip(&money).map(|(&n, m)| m.cost_of(n)).sum::<f64>();
        if let Some(r) = room {
            prop_assert!(cost(after) <= cost(&granted) + r + 1e-6,
                "spent {} over a room of {r}", cost(after) - cost(&granted));
            prop_assert!(rounds.room().unwrap() >= 0.0);
        }
        for j in 0..slots.len() {
            let s = &slots[j];
            if ever_refused[j] {
                prop_assert_eq!(after[j], rounds.holds()[j], "a refusing member is held where it is");
            } else {
                prop_assert!(after[j] >= granted[j], "a member lost nodes to a spill-over");
                prop_assert_eq!(rounds.holds()[j], after[j], "a member that never refused holds its grant");
            }
            if after[j] > granted[j] {
                prop_assert!(s.available, "an unavailable member took a spill-over");
                prop_assert!(after[j] <= s.max, "{} above max {}", after[j], s.max);
                if let Some(cap) = money[j].max_hourly_cost {
                    prop_assert!(money[j].cost_of(after[j]) <= cap + 1e-6, "above its own ceiling");
                }
            }
            prop_assert!(rounds.spilled_in()[j] <= after[j].saturating_sub(granted[j]), "spilled in more than it gained");
        }
        prop_assert!(rounds.calls().is_empty());
    }
}
