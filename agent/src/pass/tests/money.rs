//! The pass and money: spot refused and replanned, pools that cannot be described
//! still counted, plans fitted to a pool's steps, and pools that cannot split.

use super::*;

#[tokio::test]
async fn refused_spot_is_replanned_as_on_demand_and_retried_later() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let f = fake(2);
    let config = pool_from(
        r#"
        [[pool]]
        name = "web"
        provider = { type = "dry-run", initial = 2 }
        min = 1
        max = 10
        behavior = "aggressive"
        spot = { on_demand_base = 1, on_demand_percent_above_base = 0, retry_after = "15m" }
        targets = [{ metric = "cpu.utilization", value = 50 }]
        "#,
    );
    let mut pool = PoolRuntime::new(config, f.clone());
    let r = report(100.0, now);
    f.fail_next_apply(ProviderError::InsufficientCapacity {
        message: "no spot capacity in us-east-1a".into(),
    });
    let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
        .await
        .unwrap();
    assert_eq!(out.action, Action::Failed);
    assert_eq!(
        out.reasons.last().unwrap().to_string(),
        "spot refused: no spot capacity in us-east-1a: 3 nodes to on-demand for 15 min"
    );
    assert!(out.spot_fallback_until.is_some());
    // After the backoff: the same 4 nodes, the missing spot ones as on-demand.
    let later = now + chrono::Duration::seconds(3);
    let r = report(100.0, later);
    let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, later, SECOND)
        .await
        .unwrap();
    assert_eq!(out.action, Action::Scaled);
    assert_eq!(
        f.apply_calls(),
        vec![
            CapacityTarget {
                capacity: 4,
                on_demand: 1,
                emergency: false
            },
            CapacityTarget {
                capacity: 4,
                on_demand: 4,
                emergency: false
            },
        ]
    );
    // After retry_after the normal split comes back, with no change of size.
    let retry = now + chrono::Duration::minutes(16);
    let r = report(50.0, retry);
    let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, retry, SECOND)
        .await
        .unwrap();
    assert_eq!(
        (out.desired, out.on_demand, out.action),
        (4, 1, Action::Scaled)
    );
    assert!(out.spot_fallback_until.is_none());
}

#[tokio::test]
async fn a_pool_that_cannot_be_described_still_counts_against_the_budget() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let text = r#"
        [budget]
        max_hourly_cost = 10.0

        [[pool]]
        name = "web"
        provider = { type = "dry-run", initial = 2 }
        min = 1
        max = 10
        behavior = "aggressive"
        price = { on_demand = 1.0 }
        targets = [{ metric = "cpu.utilization", value = 50 }]

        [[pool]]
        name = "flaky"
        provider = { type = "dry-run", initial = 2 }
        min = 1
        max = 6
        price = { on_demand = 1.0 }
        targets = [{ metric = "cpu.utilization", value = 50 }]
    "#;
    let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
    let web = fake(2);
    let flaky = fake(3);
    let mut pools = vec![
        PoolRuntime::new(cfg.pools[0].clone(), web.clone()),
        PoolRuntime::new(cfg.pools[1].clone(), flaky.clone()),
    ];
    async fn run(pools: &mut [PoolRuntime], budget: &Budget, now: DateTime<Utc>) -> FleetOutcome {
        let r = crate::testutil::cpu_report("host", "web", 100.0, now);
        fleet_pass(
            pools,
            &mut [],
            &[&r],
            budget,
            Turn::new(&leader(), Mode::Act, now, SECOND),
        )
        .await
    }
    // Never seen: flaky counts at its max (6/h), so web may grow by 2 only.
    flaky.fail_next_describe(ProviderError::Transient {
        message: "timeout".into(),
    });
    let out = run(&mut pools, &cfg.budget, now).await;
    assert!(out.pools[1].is_err());
    assert_eq!(out.pools[0].as_ref().unwrap().desired, 4);
    assert!((out.fleet_hourly_cost - 10.0).abs() < 1e-9);
    // Seen at 3, then failing again: it counts at 3.
    let later = now + chrono::Duration::seconds(10);
    let out = run(&mut pools, &cfg.budget, later).await;
    assert!(out.pools[1].is_ok());
    flaky.fail_next_describe(ProviderError::Transient {
        message: "timeout".into(),
    });
    let much_later = now + chrono::Duration::seconds(20);
    let out = run(&mut pools, &cfg.budget, much_later).await;
    assert!(out.pools[1].is_err());
    assert!(
        (out.fleet_hourly_cost - 10.0).abs() < 1e-9,
        "{}",
        out.fleet_hourly_cost
    );
    assert_eq!(out.pools[0].as_ref().unwrap().desired, 7);
}

fn stepped_fake(desired: u32, steps: capstan_providers::Steps) -> Arc<FakeProvider> {
    Arc::new(FakeProvider::new(PoolDescription {
        steps,
        min: 0,
        max: 100,
        desired,
        instances: vec![],
    }))
}

/// A GKE node pool across 3 zones holds multiples of 3: the plan is fitted to one,
/// up within max and the budget, else down, so the cloud never rounds above either.
#[tokio::test]
async fn a_pool_in_steps_of_3_is_planned_in_multiples_of_3_within_max_and_budget() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let three = capstan_providers::Steps {
        step: 3,
        ..Default::default()
    };
    let config = |max: u32, ceiling: &str| {
        capstan_config::from_str(
            "t.toml".as_ref(),
            &format!(
                r#"
                {ceiling}
                [[pool]]
                name = "web"
                provider = {{ type = "dry-run", initial = 3 }}
                min = 3
                max = {max}
                behavior = "aggressive"
                price = {{ on_demand = 1.0 }}
                targets = [{{ metric = "cpu.utilization", value = 50 }}]
                "#
            ),
            std::iter::empty(),
        )
        .unwrap()
    };
    // 3 nodes at 70 % against 50: HPA asks for 5; the pool holds 6.
    for (max, ceiling, want) in [
        (10, "", 6),
        // 6 is above max: down to the multiple below.
        (5, "", 3),
        // 6 costs more than the ceiling leaves: down.
        (10, "[budget]\nmax_hourly_cost = 5.5", 3),
    ] {
        let cfg = config(max, ceiling);
        let f = stepped_fake(3, three.clone());
        let mut pool = PoolRuntime::new(cfg.pools[0].clone(), f.clone());
        let r = report(70.0, now);
        let mut out = fleet_pass(
            std::slice::from_mut(&mut pool),
            &mut [],
            &[&r],
            &cfg.budget,
            Turn::new(&leader(), Mode::Act, now, SECOND),
        )
        .await;
        let out = out.pools.remove(0).unwrap();
        assert_eq!(
            out.desired, want,
            "max {max} {ceiling:?}: {:?}",
            out.reasons
        );
        assert!(
            f.apply_calls()
                .iter()
                .all(|t| t.capacity % 3 == 0 && t.capacity <= max),
            "{:?}",
            f.apply_calls()
        );
        if want != 3 {
            assert!(
                out.reasons
                    .iter()
                    .any(|r| r.to_string() == "fitted to the pool's steps of 3 nodes: 5 → 6"),
                "{:?}",
                out.reasons
            );
        }
    }
}

/// A Uniform scale set has one priority for all its VMs: a pool with spot settings on
/// it is planned and billed all on-demand, and says why.
#[tokio::test]
async fn a_pool_that_cannot_split_is_planned_and_billed_on_demand() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let f = stepped_fake(
        2,
        capstan_providers::Steps {
            no_split: Some("a Uniform scale set has one priority for all its VMs".into()),
            ..Default::default()
        },
    );
    let config = pool_from(
        r#"
        [[pool]]
        name = "web"
        provider = { type = "dry-run", initial = 2 }
        min = 1
        max = 10
        behavior = "aggressive"
        price = { on_demand = 3.0, spot = 1.0 }
        spot = { on_demand_base = 1, on_demand_percent_above_base = 0 }
        targets = [{ metric = "cpu.utilization", value = 50 }]
        "#,
    );
    let mut pool = PoolRuntime::new(config, f.clone());
    let r = report(100.0, now);
    let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
        .await
        .unwrap();
    assert_eq!((out.desired, out.on_demand, out.spot), (4, 4, 0));
    assert!((out.hourly_cost - 12.0).abs() < 1e-9, "{}", out.hourly_cost);
    assert!(
        out.reasons.iter().any(|r| r.to_string()
            == "spot split not applied (a Uniform scale set has one priority for all its VMs): planned and billed on-demand"),
        "{:?}",
        out.reasons
    );
    assert_eq!(f.apply_calls(), [CapacityTarget::on_demand(4)]);
}

/// A GKE pool over an on-demand node pool in 3 zones and a spot one in 2: each part is
/// planned in its own node pool's steps, within max and the budget, so what is sent is
/// what was planned and billed.
#[tokio::test]
async fn a_pool_split_over_two_stepped_node_pools_is_planned_in_each_ones_steps() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let config = |ceiling: &str| {
        capstan_config::from_str(
            "t.toml".as_ref(),
            &format!(
                r#"
                {ceiling}
                [[pool]]
                name = "web"
                provider = {{ type = "dry-run", initial = 3 }}
                min = 1
                max = 10
                behavior = "aggressive"
                price = {{ on_demand = 3.0, spot = 1.0 }}
                spot = {{ on_demand_base = 1, on_demand_percent_above_base = 0 }}
                targets = [{{ metric = "cpu.utilization", value = 50 }}]
                "#
            ),
            std::iter::empty(),
        )
        .unwrap()
    };
    // 3 nodes at 70 % against 50: HPA asks for 5, the spot policy 1 on-demand + 4 spot;
    // the on-demand node pool holds 0 or 3, so 3 + 2 (11 an hour) keeps the on-demand
    // floor and the size. At 100 %, 6: 1 + 5; 3 + 4 holds it (9 + 4 = 13 an hour), 0 + 6
    // too (6 an hour) but without the on-demand floor.
    for (cpu, ceiling, want, cost) in [
        (70.0, "", (3, 2), 11.0),
        (100.0, "", (3, 4), 13.0),
        // 13 an hour is over the ceiling: the spot node pool holds the size.
        (100.0, "[budget]\nmax_hourly_cost = 10.0", (0, 6), 6.0),
    ] {
        let cfg = config(ceiling);
        let f = stepped_fake(
            3,
            capstan_providers::Steps {
                parts: Some((3, 2)),
                ..Default::default()
            },
        );
        let mut pool = PoolRuntime::new(cfg.pools[0].clone(), f.clone());
        let r = report(cpu, now);
        let mut out = fleet_pass(
            std::slice::from_mut(&mut pool),
            &mut [],
            &[&r],
            &cfg.budget,
            Turn::new(&leader(), Mode::Act, now, SECOND),
        )
        .await;
        let out = out.pools.remove(0).unwrap();
        assert_eq!(
            (out.on_demand, out.spot),
            want,
            "{cpu} % {ceiling:?}: {:?}",
            out.reasons
        );
        assert!(
            (out.hourly_cost - cost).abs() < 1e-9,
            "{cpu} % {ceiling:?}: {} an hour",
            out.hourly_cost
        );
        assert!(
            f.apply_calls()
                .iter()
                .all(|t| t.on_demand % 3 == 0 && t.spot() % 2 == 0 && t.capacity <= 10),
            "{:?}",
            f.apply_calls()
        );
    }
}
