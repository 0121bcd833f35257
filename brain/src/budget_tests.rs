//! Table tests for each budget rule, and property tests of the allocator's invariants.

use capstan_config::{BudgetEnforcement, Tier};
use proptest::prelude::*;

use super::budget::*;
use super::reason::Reason;
use super::spot::Split;

fn demand(name: &str, tier: Tier, current: u32, desired: u32) -> Demand<'static> {
    Demand {
        name: name.to_owned().into(),
        tier,
        current,
        min: 1,
        max: 100,
        desired,
        floor: 1,
        prices: Some(Prices {
            on_demand: 1.0,
            spot: 0.3,
        }),
        split: Split::ON_DEMAND,
        normal_split: Split::ON_DEMAND,
        spot_allowed: false,
        max_hourly_cost: None,
    }
}

fn ceiling(c: f64) -> BudgetPolicy {
    BudgetPolicy {
        ceiling: Some(c),
        emergency_allowance: 0.0,
        enforce: BudgetEnforcement::Report,
    }
}

fn nodes(a: &Allocation) -> Vec<u32> {
    a.grants.iter().map(|g| g.nodes).collect()
}

fn said(g: &Grant) -> Vec<String> {
    g.reasons.iter().map(ToString::to_string).collect()
}

#[test]
fn without_a_ceiling_everyone_gets_what_the_planner_decided() {
    let d = [
        demand("a", Tier::Basic, 2, 50),
        demand("b", Tier::Premium, 9, 3),
    ];
    let a = allocate(
        &d,
        &BudgetPolicy {
            ceiling: None,
            ..ceiling(0.0)
        },
    );
    assert_eq!(nodes(&a), [50, 3]);
    assert!((a.fleet_hourly_cost - 53.0).abs() < 1e-9);
    assert!(!a.over_budget);
}

#[test]
fn a_binding_ceiling_grants_enterprise_then_premium_then_basic() {
    let d = [
        demand("batch", Tier::Basic, 4, 6),
        demand("api", Tier::Premium, 4, 10),
        demand("checkout", Tier::Enterprise, 4, 8),
    ];
    let a = allocate(&d, &ceiling(20.0));
    assert_eq!(nodes(&a), [4, 8, 8]);
    assert_eq!(
        said(&a.grants[1]),
        ["capped by budget: 10 → 8 (premium tier, ceiling 20.00/h)"]
    );
    assert_eq!(
        said(&a.grants[0]),
        ["capped by budget: 6 → 4 (basic tier, ceiling 20.00/h)"]
    );
    assert!(a.grants[2].reasons.is_empty());
    assert!(a.fleet_hourly_cost <= 20.0 + 1e-9);
}

#[test]
fn within_a_tier_capacity_goes_in_proportion_to_need() {
    let d = [
        demand("a", Tier::Premium, 10, 20),
        demand("b", Tier::Premium, 10, 12),
    ];
    // 6 of the 12 nodes asked for fit: each pool gets half its need.
    let a = allocate(&d, &ceiling(26.0));
    assert_eq!(nodes(&a), [15, 11]);
    // 7 fit: at the largest common fraction (0.6 to 0.7) a gets 6 and b 1.
    let a = allocate(&d, &ceiling(27.0));
    assert_eq!(nodes(&a), [16, 11]);
}

#[test]
fn scale_downs_are_never_held_back_and_free_room_for_others() {
    let d = [
        demand("shrinking", Tier::Enterprise, 10, 4),
        demand("growing", Tier::Basic, 4, 10),
    ];
    let a = allocate(&d, &ceiling(14.0));
    assert_eq!(nodes(&a), [4, 10]);
}

#[test]
fn minimums_above_the_ceiling_are_kept_and_said_loudly() {
    let mut d = [
        demand("a", Tier::Basic, 5, 5),
        demand("b", Tier::Enterprise, 5, 9),
    ];
    d[0].min = 5;
    d[1].min = 5;
    let a = allocate(&d, &ceiling(6.0));
    assert_eq!(nodes(&a), [5, 5]);
    assert!(a.over_budget);
    let notes: Vec<String> = a.reasons.iter().map(ToString::to_string).collect();
    assert_eq!(
        notes,
        [
            "pool minimums alone cost 10.00/h, above the budget ceiling 6.00/h; keeping the minimums",
            "fleet over budget: 10.00/h against 6.00/h (enforce = report); scale-ups blocked",
        ]
    );
}

#[test]
fn pools_below_min_are_raised_whatever_the_budget() {
    let mut d = [demand("a", Tier::Basic, 1, 3)];
    d[0].min = 3;
    let a = allocate(&d, &ceiling(1.0));
    assert_eq!(nodes(&a), [3]);
}

#[test]
fn report_mode_blocks_scale_ups_but_trims_nothing() {
    let d = [
        demand("a", Tier::Basic, 10, 10),
        demand("b", Tier::Enterprise, 10, 12),
    ];
    let a = allocate(&d, &ceiling(15.0));
    assert_eq!(nodes(&a), [10, 10]);
    assert!(a.over_budget);
    assert_eq!(
        said(&a.grants[1]),
        ["capped by budget: 12 → 10 (enterprise tier, ceiling 15.00/h)"]
    );
}

#[test]
fn trim_moves_basic_pools_to_spot_before_scaling_them_down() {
    let mut d = [
        demand("batch", Tier::Basic, 10, 10),
        demand("api", Tier::Premium, 10, 10),
    ];
    d[0].split = Split::from_config(None);
    d[0].split = Split {
        base: 2,
        percent_above_base: 100,
        spot_cap: None,
    };
    d[0].normal_split = d[0].split;
    d[0].spot_allowed = true;
    let policy = BudgetPolicy {
        enforce: BudgetEnforcement::Trim,
        ..ceiling(15.0)
    };
    // All on-demand: 20/h. Batch moved to spot above its base: 2 + 8 × 0.3 = 4.4; 14.4/h.
    let a = allocate(&d, &policy);
    assert_eq!(nodes(&a), [10, 10]);
    assert_eq!(a.grants[0].on_demand, 2);
    assert_eq!(
        said(&a.grants[0]),
        ["moved to spot for budget: on-demand 10 → 2"]
    );
    assert!(!a.over_budget);
}

#[test]
fn trim_scales_down_from_the_lowest_tier_at_the_pools_rate() {
    let mut d = [
        demand("batch", Tier::Basic, 10, 10),
        demand("api", Tier::Premium, 10, 10),
        demand("checkout", Tier::Enterprise, 10, 10),
    ];
    // Scale-down rates allow batch to lose 5 and api 5 this pass.
    d[0].floor = 5;
    d[1].floor = 5;
    d[2].floor = 5;
    let policy = BudgetPolicy {
        enforce: BudgetEnforcement::Trim,
        ..ceiling(22.0)
    };
    let a = allocate(&d, &policy);
    assert_eq!(nodes(&a), [5, 7, 10], "basic first, then premium");
    assert_eq!(
        said(&a.grants[0]),
        ["trimmed by budget: 10 → 5 (basic tier)"]
    );
    assert_eq!(
        said(&a.grants[1]),
        ["trimmed by budget: 10 → 7 (premium tier)"]
    );
    assert!(!a.over_budget);
    // A rate too slow to get under in one pass leaves the fleet over, and says so.
    d[0].floor = 9;
    d[1].floor = 9;
    d[2].floor = 9;
    let a = allocate(&d, &policy);
    assert_eq!(nodes(&a), [9, 9, 9]);
    assert!(a.over_budget);
}

#[test]
fn a_pools_own_ceiling_caps_it_first() {
    let mut d = [demand("a", Tier::Enterprise, 2, 10)];
    d[0].max_hourly_cost = Some(6.5);
    let a = allocate(
        &d,
        &BudgetPolicy {
            ceiling: None,
            ..ceiling(0.0)
        },
    );
    assert_eq!(nodes(&a), [6]);
    assert_eq!(
        said(&a.grants[0]),
        ["capped by pool budget: 10 → 6 (ceiling 6.50/h)"]
    );
}

#[test]
fn emergency_capacity_above_max_spends_the_allowance_only() {
    let mut d = [
        demand("gpu", Tier::Enterprise, 10, 30),
        demand("batch", Tier::Basic, 5, 5),
    ];
    d[0].max = 10;
    let policy = BudgetPolicy {
        emergency_allowance: 8.0,
        ..ceiling(20.0)
    };
    let a = allocate(&d, &policy);
    // 15/h now; the ceiling leaves 5, the allowance 8 more: 13 emergency nodes.
    assert_eq!(nodes(&a), [23, 5]);
    assert_eq!(
        said(&a.grants[0]),
        ["capped by emergency allowance: 30 → 23 (allowance 8.00/h)"]
    );
    assert!((a.fleet_hourly_cost - 28.0).abs() < 1e-9);
}

#[test]
fn a_spot_fallback_that_does_not_fit_is_dropped_lowest_tier_first() {
    let spot = Split {
        base: 0,
        percent_above_base: 0,
        spot_cap: None,
    };
    let fallback = Split {
        spot_cap: Some(0),
        ..spot
    };
    let mut d = [
        demand("batch", Tier::Basic, 10, 10),
        demand("api", Tier::Enterprise, 10, 10),
    ];
    for x in &mut d {
        x.split = fallback;
        x.normal_split = spot;
        x.spot_allowed = true;
    }
    // Both on-demand: 20/h; one on spot: 13/h.
    let a = allocate(&d, &ceiling(14.0));
    assert_eq!(a.grants[0].on_demand, 0, "basic gives its fallback up");
    assert_eq!(a.grants[1].on_demand, 10, "enterprise keeps it");
    assert_eq!(
        said(&a.grants[0]),
        ["10 missing spot nodes not replaced by on-demand: the budget does not allow it"]
    );
}

// --- properties --------------------------------------------------------------------

fn arb_tier() -> impl Strategy<Value = Tier> {
    prop_oneof![
        Just(Tier::Enterprise),
        Just(Tier::Premium),
        Just(Tier::Basic)
    ]
}

prop_compose! {
    fn arb_demand(i: usize, spot_max: f64)(
        tier in arb_tier(),
        min in 0u32..5,
        span in 1u32..40,
        em in 0u32..40,
        current_off in 0u32..60,
        desired_off in 0u32..80,
        give in 0u32..10,
        od in 0.05f64..5.0,
        spot_ratio in 0.1f64..spot_max,
        base in 0u32..5,
        pct in 0u32..=100,
        spot in any::<bool>(),
        fallback in prop::option::of(0u32..5),
        pool_cap in prop::option::of(1.0f64..100.0),
    ) -> Demand<'static> {
        let max = min + span;
        let emergency_max = max + em;
        let current = current_off.min(emergency_max);
        let desired = (min + desired_off).min(emergency_max);
        let floor = current.saturating_sub(give).max(min).min(desired.max(min));
        let normal = if spot {
            Split { base, percent_above_base: pct, spot_cap: None }
        } else {
            Split::ON_DEMAND
        };
        Demand {
            name: format!("pool-{i}").into(),
            tier,
            current,
            min,
            max,
            desired,
            floor,
            prices: Some(Prices { on_demand: od, spot: od * spot_ratio }),
            split: Split { spot_cap: fallback.filter(|_| spot), ..normal },
            normal_split: normal,
            spot_allowed: spot,
            max_hourly_cost: pool_cap,
        }
    }
}

fn arb_fleet() -> impl Strategy<Value = Vec<Demand<'static>>> {
    arb_fleet_of(1..8, 1.0)
}

/// Fleets of `pools` pools whose spot price is up to `spot_max` times on-demand.
pub(crate) fn arb_fleet_of(
    pools: std::ops::Range<usize>,
    spot_max: f64,
) -> impl Strategy<Value = Vec<Demand<'static>>> {
    pools.prop_flat_map(move |n| (0..n).map(|i| arb_demand(i, spot_max)).collect::<Vec<_>>())
}

fn arb_policy() -> impl Strategy<Value = BudgetPolicy> {
    (prop::option::of(1.0f64..300.0), 0.0f64..50.0, any::<bool>()).prop_map(
        |(ceiling, allowance, trim)| BudgetPolicy {
            ceiling,
            emergency_allowance: allowance,
            enforce: if trim {
                BudgetEnforcement::Trim
            } else {
                BudgetEnforcement::Report
            },
        },
    )
}

fn baseline(d: &Demand<'_>) -> u32 {
    d.desired.min(d.current).max(d.min)
}

fn tier_rank(t: Tier) -> u8 {
    match t {
        Tier::Enterprise => 0,
        Tier::Premium => 1,
        Tier::Basic => 2,
    }
}

proptest! {
    #[test]
    fn a_scale_up_never_takes_the_fleet_above_the_ceiling(
        fleet in arb_fleet(), policy in arb_policy(),
    ) {
        let a = allocate(&fleet, &policy);
        let Some(ceiling) = policy.ceiling else { return Ok(()) };
        // A pool whose plan goes above max is in an emergency: all its growth may use
        // the allowance.
        let grew = |emergency: bool| fleet.iter().zip(&a.grants).any(|(d, g)| {
            g.nodes > baseline(d) && (d.desired > d.max) == emergency
        });
        if grew(true) {
            prop_assert!(
                a.fleet_hourly_cost <= ceiling + policy.emergency_allowance + 1e-6,
                "emergency growth to {} above {} + {}", a.fleet_hourly_cost, ceiling, policy.emergency_allowance
            );
        } else if grew(false) {
            prop_assert!(
                a.fleet_hourly_cost <= ceiling + 1e-6,
                "growth to {} above {}", a.fleet_hourly_cost, ceiling
            );
        }
    }

    #[test]
    fn grants_stay_between_the_floors_and_the_plan(fleet in arb_fleet(), policy in arb_policy()) {
        let a = allocate(&fleet, &policy);
        for (d, g) in fleet.iter().zip(&a.grants) {
            prop_assert!(g.nodes >= d.min, "{} below min {}", g.nodes, d.min);
            prop_assert!(g.nodes >= d.floor.min(baseline(d)), "{} trimmed past the rate", g.nodes);
            prop_assert!(g.nodes <= d.desired.max(baseline(d)), "{} above the plan {}", g.nodes, d.desired);
            prop_assert!(g.on_demand <= g.nodes);
        }
    }

    #[test]
    fn the_tier_order_is_respected_when_the_budget_binds(
        fleet in arb_fleet(), policy in arb_policy(),
    ) {
        let a = allocate(&fleet, &policy);
        let capped: Vec<u8> = fleet.iter().zip(&a.grants)
            .filter(|(_, g)| g.reasons.iter().any(|r| matches!(r, Reason::CappedByBudget { .. })))
            .map(|(d, _)| tier_rank(d.tier))
            .collect();
        let Some(&highest_capped) = capped.iter().min() else { return Ok(()) };
        // Emergency growth spends the allowance, which is not shared with normal growth.
        for (d, g) in fleet.iter().zip(&a.grants).filter(|(d, _)| d.desired <= d.max) {
            let normal_growth = g.nodes > baseline(d);
            if tier_rank(d.tier) > highest_capped {
                prop_assert!(
                    !normal_growth,
                    "{} ({:?}) grew to {} while a higher tier was capped", d.name, d.tier, g.nodes
                );
            }
        }
    }

    #[test]
    fn the_allocation_is_deterministic_and_ignores_input_order(
        fleet in arb_fleet(), policy in arb_policy(),
    ) {
        let a = allocate(&fleet, &policy);
        prop_assert_eq!(&a, &allocate(&fleet, &policy));
        let mut reversed = fleet.clone();
        reversed.reverse();
        let b = allocate(&reversed, &policy);
        let mut by_name_b: Vec<(&str, u32, u32)> = reversed.iter().zip(&b.grants)
            .map(|(d, g)| (d.name.as_ref(), g.nodes, g.on_demand)).collect();
        let mut by_name_a: Vec<(&str, u32, u32)> = fleet.iter().zip(&a.grants)
            .map(|(d, g)| (d.name.as_ref(), g.nodes, g.on_demand)).collect();
        by_name_a.sort_unstable();
        by_name_b.sort_unstable();
        prop_assert_eq!(by_name_a, by_name_b);
    }
}
