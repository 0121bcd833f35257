//! Tests of the pass: planning and acting against fake providers, with the helpers
//! every file here shares; by subject in `money.rs`, `groups.rs`, `record.rs`,
//! `runtime.rs`, operations beside the pass in `operations.rs`, targeted scale-in in
//! `scale_in.rs`.

pub(super) use super::*;
pub(super) use capstan_providers::fake::FakeProvider;
pub(super) use chrono::TimeZone;

mod groups;
mod money;
mod operations;
mod record;
mod runtime;
mod scale_in;

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
        (Action::Draining, "draining"),
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

pub(super) fn pool_from(text: &str) -> Pool {
    capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty())
        .unwrap()
        .pools
        .remove(0)
}

/// One lying node among three: under `mean` (HPA's rule) it sends the pool to max in
/// one pass; under `trimmed-mean` the pool stays where the honest nodes put it.
#[tokio::test]
async fn one_liar_cannot_take_a_trimmed_mean_pool_to_max() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let reports: Vec<NodeReport> = [("a", 90.0), ("b", 100.0), ("liar", 1e9)]
        .into_iter()
        .map(|(id, rps)| {
            let mut r = NodeReport::new(id, Some("web".into()), now);
            r.workload.insert("rps".into(), rps);
            r
        })
        .collect();
    let refs: Vec<&NodeReport> = reports.iter().collect();
    for (aggregate, want) in [("mean", 10), ("trimmed-mean", 3)] {
        let f = fake(3);
        let config = pool_from(&format!(
            r#"
            [[pool]]
            name = "web"
            provider = {{ type = "dry-run", initial = 3 }}
            min = 1
            max = 10
            behavior = "aggressive"
            aggregate = "{aggregate}"
            targets = [{{ metric = "workload.rps", value = 100 }}]
            "#
        ));
        let mut pool = PoolRuntime::new(config, f.clone());
        let out = pass1(&mut pool, &refs, &leader(), Mode::Act, now, SECOND)
            .await
            .unwrap();
        assert_eq!(out.desired, want, "{aggregate}: {:?}", out.reasons);
    }
}
