//! Tests of the pass: planning and acting against fake providers.

use super::*;
use capstan_providers::fake::FakeProvider;
use chrono::TimeZone;

pub(super) fn config() -> ValidatedConfig {
    let text = r#"
        [[pool]]
        name = "web"
        provider = { type = "dry-run", initial = 2 }
        min = 1
        max = 10
        targets = [{ metric = "cpu.utilization", value = 50 }]
    "#;
    capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap()
}

pub(super) fn report(cpu: f64, at: DateTime<Utc>) -> NodeReport {
    crate::testutil::cpu_report("host", "web", cpu, at)
}

pub(super) fn fake(desired: u32) -> Arc<FakeProvider> {
    Arc::new(FakeProvider::new(PoolDescription {
        steps: Default::default(),
        min: 1,
        max: 10,
        desired,
        instances: vec![],
    }))
}

pub(super) fn leader() -> tokio::sync::watch::Receiver<Claim> {
    tokio::sync::watch::channel(Claim {
        is_leader: true,
        ..Claim::default()
    })
    .1
}

pub(super) const SECOND: std::time::Duration = std::time::Duration::from_secs(1);

pub(super) fn no_budget() -> Budget {
    Budget {
        max_hourly_cost: None,
        emergency_allowance: 0.0,
        enforce: capstan_config::BudgetEnforcement::Report,
    }
}

/// One pass over a fleet of one pool.
pub(super) async fn pass1(
    pool: &mut PoolRuntime,
    reports: &[&NodeReport],
    claim: &tokio::sync::watch::Receiver<Claim>,
    mode: Mode,
    now: DateTime<Utc>,
    interval: std::time::Duration,
) -> Result<PassOutcome, PassError> {
    let budget = no_budget();
    let mut out = fleet_pass(
        std::slice::from_mut(pool),
        &mut [],
        reports,
        &budget,
        Turn::new(claim, mode, now, interval),
    )
    .await;
    out.pools.remove(0)
}

#[test]
fn actions_are_written_as_the_journal_and_metrics_always_wrote_them() {
    for (a, s) in [
        (Action::None, "none"),
        (Action::Plan, "plan"),
        (Action::Skipped, "skipped"),
        (Action::Scaled, "scaled"),
        (Action::Failed, "failed"),
        (Action::Submitted, "submitted"),
        (Action::InFlight, "in_flight"),
    ] {
        assert_eq!(a.as_str(), s);
        assert_eq!(a.to_string(), s);
        assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{s}\""));
    }
}

#[tokio::test]
async fn applies_absolute_targets_only_when_they_differ() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let f = fake(2);
    let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
    let r = report(100.0, now);
    let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
        .await
        .unwrap();
    assert_eq!(
        (out.current, out.desired, out.action),
        (2, 4, Action::Scaled)
    );
    assert_eq!(f.apply_calls(), vec![CapacityTarget::on_demand(4)]);
    let r = report(50.0, now);
    let out = pass1(
        &mut pool,
        &[&r],
        &leader(),
        Mode::Act,
        now + chrono::Duration::seconds(1),
        SECOND,
    )
    .await
    .unwrap();
    assert_eq!((out.desired, out.action), (4, Action::None));
    assert_eq!(f.apply_calls().len(), 1, "no call when nothing changes");
}

#[tokio::test]
async fn a_fresh_agent_waits_out_the_scale_down_window_before_shrinking() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let f = fake(4);
    let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone()); // balanced: 300 s
    let idle = report(5.0, now);
    let out = pass1(&mut pool, &[&idle], &leader(), Mode::Act, now, SECOND)
        .await
        .unwrap();
    assert_eq!((out.desired, out.action), (4, Action::None));
    let later = now + chrono::Duration::seconds(301);
    let idle = report(5.0, later);
    let out = pass1(&mut pool, &[&idle], &leader(), Mode::Act, later, SECOND)
        .await
        .unwrap();
    assert_eq!((out.desired, out.action), (1, Action::Scaled));
}

#[tokio::test]
async fn plan_only_and_followers_never_call_the_provider() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let f = fake(2);
    let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
    let r = report(100.0, now);
    let out = pass1(&mut pool, &[&r], &leader(), Mode::PlanOnly, now, SECOND)
        .await
        .unwrap();
    assert_eq!((out.desired, out.action), (4, Action::Plan));
    let follower = tokio::sync::watch::channel(Claim {
        is_leader: false,
        leader_id: Some("other".into()),
        ..Claim::default()
    })
    .1;
    let out = pass1(&mut pool, &[&r], &follower, Mode::Act, now, SECOND)
        .await
        .unwrap();
    assert_eq!(out.action, Action::Skipped);
    assert_eq!(out.detail.as_deref(), Some("not the leader (other leads)"));
    // A leader whose lease is not confirmed beyond the margin does not act either.
    let lapsed = tokio::sync::watch::channel(Claim {
        is_leader: true,
        valid_until: Some(tokio::time::Instant::now()),
        ..Claim::default()
    })
    .1;
    let out = pass1(&mut pool, &[&r], &lapsed, Mode::Act, now, SECOND)
        .await
        .unwrap();
    assert_eq!(out.action, Action::Skipped);
    assert!(out.detail.unwrap().contains("safety margin"));
    assert!(f.apply_calls().is_empty());
}

#[tokio::test]
async fn failures_back_off_and_never_grow_the_target() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let f = fake(2);
    let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
    let r = report(100.0, now);
    f.fail_next_apply(ProviderError::Throttled {
        message: "Rate exceeded".into(),
        retry_after: None,
    });
    let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
        .await
        .unwrap();
    assert_eq!(
        (out.action, out.error_kind),
        (Action::Failed, Some("throttled"))
    );
    // Within the backoff the pool is left alone.
    assert!(
        pass1(
            &mut pool,
            &[&r],
            &leader(),
            Mode::Act,
            now + chrono::Duration::seconds(1),
            SECOND
        )
        .await
        .is_err()
    );
    assert_eq!(f.apply_calls().len(), 1);
    // After it, the same absolute target is tried again, not a bigger one.
    let later = now + chrono::Duration::seconds(3);
    let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, later, SECOND)
        .await
        .unwrap();
    assert_eq!(out.action, Action::Scaled);
    assert_eq!(
        f.apply_calls(),
        vec![CapacityTarget::on_demand(4), CapacityTarget::on_demand(4)]
    );
}

fn pool_from(text: &str) -> Pool {
    capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty())
        .unwrap()
        .pools
        .remove(0)
}

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
async fn a_pool_that_keeps_reversing_is_frozen() {
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let f = fake(4);
    let config = pool_from(
        r#"
        [[pool]]
        name = "web"
        provider = { type = "dry-run", initial = 4 }
        min = 1
        max = 10
        behavior = { preset = "aggressive", scale_down = { stabilization_window = "0s" } }
        flap = { max_reversals = 2, window = "10m", cool_off = "30m" }
        targets = [{ metric = "cpu.utilization", value = 50 }]
        "#,
    );
    let mut pool = PoolRuntime::new(config, f.clone());
    let mut actions = Vec::new();
    let mut frozen = None;
    for k in 0..6 {
        // Alternating surges and lulls, one a minute.
        let now = t0 + chrono::Duration::minutes(k);
        let cpu = if k % 2 == 0 { 100.0 } else { 10.0 };
        let r = report(cpu, now);
        let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
            .await
            .unwrap();
        actions.push(out.action.as_str());
        if out.frozen_until.is_some() && frozen.is_none() {
            frozen = Some(k);
            assert!(
                out.reasons.iter().any(|r| r
                    .to_string()
                    .starts_with("flapping: 3 reversals within 600s")),
                "{:?}",
                out.reasons
            );
        }
    }
    assert_eq!(
        frozen,
        Some(3),
        "up, down, up, down: the third reversal freezes it"
    );
    assert_eq!(
        actions,
        ["scaled", "scaled", "scaled", "scaled", "none", "none"]
    );
    assert_eq!(f.apply_calls().len(), 4);
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

#[tokio::test]
async fn demand_history_is_written_and_warms_a_restarted_pool() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn HistoryStore> =
        Arc::new(crate::state::demand::FileHistory::open(dir.path()).unwrap());
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    // Three days of a daily wave, a pass a minute, through the engine.
    let mut pool = PoolRuntime::new(config().pools.remove(0), fake(4));
    attach_history(std::slice::from_mut(&mut pool), &store, t0);
    for m in 0..3 * 1440 {
        let now = t0 + chrono::Duration::minutes(m);
        let day = (m % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
        let r = report(50.0 + 30.0 * day.sin(), now);
        pass1(&mut pool, &[&r], &leader(), Mode::PlanOnly, now, SECOND)
            .await
            .unwrap();
    }
    let written = store.load("web", 0).unwrap();
    assert_eq!(written.len(), 3 * 1440 - 1, "one point per closed minute");
    let warm = pool.predictor.latest_forecast(0);
    assert!(warm.is_some());

    // A new agent: fresh state, the same history.
    let mut again = PoolRuntime::new(config().pools.remove(0), fake(4));
    let later = t0 + chrono::Duration::minutes(3 * 1440);
    attach_history(std::slice::from_mut(&mut again), &store, later);
    assert_eq!(
        again.predictor.latest_forecast(0),
        warm,
        "replayed to the same forecast"
    );
}

#[tokio::test]
async fn usage_is_written_once_a_minute_as_the_means_of_its_passes() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn HistoryStore> =
        Arc::new(crate::state::demand::FileHistory::open(dir.path()).unwrap());
    let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let mut pool = PoolRuntime::new(config().pools.remove(0), fake(4));
    attach_usage(std::slice::from_mut(&mut pool), &store, t0);
    // Passes every 20 s for two minutes, CPU 10, 20, 30 then 40, 50, 60; a pass
    // in the third minute closes the second.
    for (k, cpu) in [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
        .into_iter()
        .enumerate()
    {
        let now = t0 + chrono::Duration::seconds(20 * k as i64);
        let r = report(cpu, now);
        pass1(&mut pool, &[&r], &leader(), Mode::PlanOnly, now, SECOND)
            .await
            .unwrap();
    }
    let written = store.load("web", 0).unwrap();
    let minute = t0.timestamp() / 60;
    assert_eq!(
        written,
        vec![
            (minute, vec![Some(4.0), Some(20.0), Some(0.0), None, None]),
            (
                minute + 1,
                vec![Some(4.0), Some(50.0), Some(0.0), None, None]
            ),
        ]
    );
    // What rightsizing reads back, without compacting.
    assert_eq!(
        crate::state::demand::read_only(dir.path(), "web").unwrap(),
        written
    );
}

#[test]
fn reload_keeps_state_of_unchanged_pools() {
    let cfg = config();
    let mut pools = build_pools(&cfg, &mut HashMap::new()).unwrap();
    pools[0]
        .memory
        .history
        .record_scale(1, 2, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let mut old: HashMap<_, _> = pools
        .into_iter()
        .map(|p| (p.config.name.clone(), p))
        .collect();
    let again = build_pools(&cfg, &mut old).unwrap();
    assert_eq!(again[0].memory.history.scale_up_events.len(), 1);
}

#[cfg(all(feature = "azure", feature = "gke"))]
#[test]
fn azure_and_gke_pools_are_built_when_their_features_are_on() {
    let text = r#"
        [[pool]]
        name = "gpu"
        provider = { type = "azure", subscription_id = "s", resource_group = "rg", scale_set = "ml" }
        min = 1
        max = 10
        targets = [{ metric = "cpu.utilization", value = 50 }]

        [[pool]]
        name = "web"
        provider = { type = "gke", project = "p", location = "l", cluster = "c", node_pool = "np" }
        min = 1
        max = 10
        targets = [{ metric = "cpu.utilization", value = 50 }]
    "#;
    let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
    let pools = build_pools(&cfg, &mut HashMap::new()).unwrap();
    let kinds: Vec<&str> = pools.iter().map(|p| p.provider.kind()).collect();
    assert_eq!(kinds, ["azure", "gke"]);
    assert!(BUILT_IN_PROVIDERS.contains(&"azure") && BUILT_IN_PROVIDERS.contains(&"gke"));
}

#[cfg(not(feature = "azure"))]
#[test]
fn clouds_not_in_this_build_are_a_clear_error() {
    let text = r#"
        [[pool]]
        name = "gpu"
        provider = { type = "azure", subscription_id = "s", resource_group = "rg", scale_set = "ml" }
        min = 1
        max = 10
        targets = [{ metric = "cpu.utilization", value = 50 }]
    "#;
    let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
    let mut old: HashMap<_, _> = build_pools(&config(), &mut HashMap::new())
        .unwrap()
        .into_iter()
        .map(|p| (p.config.name.clone(), p))
        .collect();
    let err = build_pools(&cfg, &mut old).unwrap_err();
    assert!(err.contains("\"azure\" is not available"), "{err}");
    assert!(err.contains("built with: dry-run"), "{err}");
    assert!(
        old.contains_key("web"),
        "a failed build leaves the old pools in place"
    );
}

/// A group of two members on fakes: `web-aws` (cheaper, at most 6) and `web-azure`,
/// which gives capacity back at one node a minute.
fn group_fleet() -> (ValidatedConfig, Arc<FakeProvider>, Arc<FakeProvider>) {
    let text = r#"
        [[pool]]
        name = "web-aws"
        provider = { type = "dry-run" }
        min = 1
        max = 6
        price = { on_demand = 0.10 }

        [[pool]]
        name = "web-azure"
        provider = { type = "dry-run" }
        min = 1
        max = 10
        price = { on_demand = 0.12 }
        behavior = { scale_down = { stabilization_window = "0s", policies = [{ type = "nodes", value = 1, period = "60s" }] } }

        [[group]]
        name = "web"
        strategy = "cheapest"
        members = ["web-aws", "web-azure"]
        behavior = "aggressive"
        targets = [{ metric = "cpu.utilization", value = 50 }]
    "#;
    let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
    (cfg, fake(2), fake(2))
}

async fn group_pass(
    pools: &mut [PoolRuntime],
    groups: &mut [GroupRuntime],
    cpu: f64,
    now: DateTime<Utc>,
) -> FleetOutcome {
    let a = crate::testutil::cpu_report("a", "web-aws", cpu, now);
    let b = crate::testutil::cpu_report("b", "web-azure", cpu, now);
    fleet_pass(
        pools,
        groups,
        &[&a, &b],
        &no_budget(),
        Turn::new(&leader(), Mode::Act, now, SECOND),
    )
    .await
}

#[tokio::test]
async fn a_refused_member_spills_over_in_the_same_pass_and_gets_it_back_at_the_scale_down_rate() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let (cfg, aws, azure) = group_fleet();
    let mut pools = vec![
        PoolRuntime::new(cfg.pools[0].clone(), aws.clone()),
        PoolRuntime::new(cfg.pools[1].clone(), azure.clone()),
    ];
    let mut groups = build_groups(&cfg, &mut HashMap::new());
    aws.fail_next_apply(ProviderError::InsufficientCapacity {
        message: "InsufficientInstanceCapacity in us-east-1a".into(),
    });
    // 4 nodes at twice the target: the group wants 8; the cheaper member is
    // given all it may hold (6), and refuses the 4 new ones.
    let out = group_pass(&mut pools, &mut groups, 100.0, now).await;
    let g = &out.groups[0];
    assert_eq!((g.current, g.desired, g.granted), (4, 8, 8), "{g:?}");
    assert_eq!(aws.apply_calls(), vec![CapacityTarget::on_demand(6)]);
    assert_eq!(azure.apply_calls(), vec![CapacityTarget::on_demand(6)]);
    let (aws_out, azure_out) = match &out.pools[..] {
        [Ok(a), Ok(b)] => (a, b),
        other => panic!("{other:?}"),
    };
    assert_eq!(aws_out.action, Action::Failed);
    assert!(
        aws_out
            .reasons
            .iter()
            .any(|r| matches!(r, Reason::GroupRefused { nodes: 4, .. })),
        "{:?}",
        aws_out.reasons
    );
    assert_eq!((azure_out.current, azure_out.desired), (2, 6));
    assert!(
        azure_out.reasons.iter().any(|r| r.to_string()
            == "group web: 4 node(s) spilled over from web-aws, whose cloud could not take them"),
        "{:?}",
        azure_out.reasons
    );
    assert_eq!(g.members[0].refused, 4);
    assert_eq!(g.members[1].spilled_in, 4);

    // The cloud has capacity again: each minute one node leaves web-azure (its
    // scale-down rate) and web-aws takes it, the group staying at 8.
    let mut sizes = Vec::new();
    for minute in 1..=6 {
        let at = now + chrono::Duration::seconds(61 * minute);
        let out = group_pass(&mut pools, &mut groups, 50.0, at).await;
        let g = &out.groups[0];
        assert_eq!(g.granted, 8, "{g:?}");
        sizes.push((
            aws.describe().await.unwrap().desired,
            azure.describe().await.unwrap().desired,
        ));
    }
    assert_eq!(sizes, vec![(3, 5), (4, 4), (5, 3), (6, 2), (6, 2), (6, 2)]);
}

#[tokio::test]
async fn members_outside_the_group_are_acted_on_as_before_and_group_lines_explain_the_split() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let (cfg, aws, azure) = group_fleet();
    let mut pools = vec![
        PoolRuntime::new(cfg.pools[0].clone(), aws.clone()),
        PoolRuntime::new(cfg.pools[1].clone(), azure.clone()),
    ];
    let mut groups = build_groups(&cfg, &mut HashMap::new());
    let out = group_pass(&mut pools, &mut groups, 100.0, now).await;
    let g = &out.groups[0];
    assert_eq!(aws.apply_calls(), vec![CapacityTarget::on_demand(6)]);
    assert!(azure.apply_calls().is_empty());
    assert_eq!(g.members[0].limit, Some(Limit::Max));
    let Ok(o) = &out.pools[0] else { panic!() };
    assert_eq!(o.group.as_deref(), Some("web"));
    assert_eq!(
        o.reasons[0].to_string(),
        "group web (cheapest): 6 of its 8 node(s) here, 0.1000/node-h, held by max"
    );
}

#[test]
fn minute_means_close_a_minute_when_the_next_begins() {
    let mut m = MinuteMeans::default();
    assert_eq!(m.add(10, [Some(1.0), None].into_iter()), None);
    assert_eq!(m.add(10, [Some(3.0), None].into_iter()), None);
    assert_eq!(
        m.add(11, [Some(5.0), Some(2.0)].into_iter()),
        Some((10, vec![Some(2.0), None]))
    );
    // The clock went back: the open minute is dropped and the earlier one starts over.
    assert_eq!(m.add(9, [Some(7.0), Some(1.0)].into_iter()), None);
    assert_eq!(
        m.add(12, [None, None].into_iter()),
        Some((9, vec![Some(7.0), Some(1.0)]))
    );
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
        no_split: None,
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
            step: 1,
            no_split: Some("a Uniform scale set has one priority for all its VMs".into()),
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
