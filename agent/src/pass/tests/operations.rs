//! Operations beside the pass: a slow cloud holds only its own pool, an operation is
//! followed to its end across passes and leaders, and the fence stops requests a
//! deposed leader would send.

use super::*;
use capstan_providers::{Applied, Fence, OperationHandle};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

/// Lets the calls started beside the pass run, as the daemon's sleep between passes
/// does.
async fn between_passes() {
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
}

/// A provider whose submissions take `delay` before they reach `inner` (a cloud
/// endpoint that hangs, or a slow one).
#[derive(Debug)]
struct Slow {
    inner: Arc<FakeProvider>,
    delay: std::time::Duration,
}

#[async_trait::async_trait]
impl NodePoolProvider for Slow {
    fn kind(&self) -> &'static str {
        "slow"
    }
    async fn describe(&self) -> Result<PoolDescription, ProviderError> {
        self.inner.describe().await
    }
    async fn apply(&self, target: &CapacityTarget) -> Result<(), ProviderError> {
        self.inner.apply(target).await
    }
    async fn submit(
        &self,
        target: &CapacityTarget,
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        tokio::time::sleep(self.delay).await;
        self.inner.submit(target, fence).await
    }
    async fn poll(&self, op: &OperationHandle) -> Result<Applied, ProviderError> {
        self.inner.poll(op).await
    }
}

fn two_pools(web: Arc<dyn NodePoolProvider>, api: Arc<dyn NodePoolProvider>) -> Vec<PoolRuntime> {
    let text = r#"
        [[pool]]
        name = "web"
        provider = { type = "dry-run", initial = 2 }
        min = 1
        max = 10
        targets = [{ metric = "cpu.utilization", value = 50 }]

        [[pool]]
        name = "api"
        provider = { type = "dry-run", initial = 2 }
        min = 1
        max = 10
        targets = [{ metric = "cpu.utilization", value = 50 }]
    "#;
    let mut cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
    vec![
        PoolRuntime::new(cfg.pools.remove(0), web),
        PoolRuntime::new(cfg.pools.remove(0), api),
    ]
}

async fn pass_all(
    pools: &mut [PoolRuntime],
    reports: &[&NodeReport],
    now: DateTime<Utc>,
) -> Vec<PassOutcome> {
    let claim = leader();
    let out = fleet_pass(
        pools,
        &mut [],
        reports,
        &no_budget(),
        Turn::new(&claim, Mode::Act, now, SECOND),
    )
    .await;
    out.pools.into_iter().map(Result::unwrap).collect()
}

fn busy(pool: &str, at: DateTime<Utc>) -> NodeReport {
    crate::testutil::cpu_report(&format!("{pool}-1"), pool, 100.0, at)
}

#[tokio::test]
async fn a_hanging_cloud_holds_only_its_own_pool() {
    let (web, api) = (fake(2), fake(2));
    let hanging = Arc::new(Slow {
        inner: web.clone(),
        delay: std::time::Duration::from_secs(3600),
    });
    let mut pools = two_pools(hanging, api.clone());
    let mut actions = Vec::new();
    for k in 0..4 {
        let now = t0() + chrono::Duration::seconds(k);
        let (w, a) = (busy("web", now), busy("api", now));
        let out = pass_all(&mut pools, &[&w, &a], now).await;
        actions.push((out[0].action, out[1].action));
        between_passes().await;
    }
    // The hanging pool is submitted once and then in flight, never sent a second
    // target; the other is decided every pass (scaled, then rate-limited).
    let (held, other): (Vec<Action>, Vec<Action>) = actions.into_iter().unzip();
    assert_eq!(
        held,
        [
            Action::InFlight,
            Action::InFlight,
            Action::InFlight,
            Action::InFlight
        ]
    );
    assert_eq!(
        other,
        [Action::Scaled, Action::Scaled, Action::None, Action::None]
    );
    assert!(
        web.apply_calls().is_empty(),
        "the held call reached the cloud"
    );
    assert_eq!(api.apply_calls().len(), 2);
    let op = pools[0].memory.operation.clone().expect("in flight");
    assert_eq!((op.id(), op.target.capacity, op.from), ("call", 4, 2));
    assert!(pools[1].memory.operation.is_none());
}

#[tokio::test]
async fn an_operation_is_followed_to_its_end_and_recorded_then() {
    let f = fake(2);
    f.run_next_apply_as_operation(2);
    let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
    let mut seen = Vec::new();
    for k in 0..5 {
        let now = t0() + chrono::Duration::seconds(k);
        let r = report(100.0, now);
        let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
            .await
            .unwrap();
        seen.push((out.action, out.operation_seconds.is_some()));
        if out.operation_seconds.is_some() {
            assert_eq!(out.desired, 4, "the operation's target");
            // Journaled passes later, from the size it was sent from.
            assert_eq!(out.from, Some(2));
        }
        between_passes().await;
    }
    // Each pass reads the poll the last one started, and starts the next.
    assert_eq!(
        seen,
        [
            (Action::InFlight, false),
            (Action::InFlight, false),
            (Action::InFlight, false),
            (Action::Scaled, true),
            // From what the cloud holds now, the plan moves on.
            (Action::Scaled, false),
        ]
    );
    assert_eq!(f.poll_calls(), 3);
    assert_eq!(f.apply_calls().len(), 2, "one target per operation");
    // The scale event counts from when it was submitted.
    assert_eq!(pool.memory.history.scale_up_events[0].at, t0());
}

#[tokio::test]
async fn a_new_leader_polls_the_operation_in_flight_instead_of_submitting_another() {
    let f = fake(2);
    f.run_next_apply_as_operation(1);
    let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
    let r = report(100.0, t0());
    let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, t0(), SECOND)
        .await
        .unwrap();
    assert_eq!(out.action, Action::InFlight);
    // The leader goes away; its decision state holds the operation's handle.
    let saved = pool.memory.encode();
    drop(pool);
    let mut next = PoolRuntime::new(config().pools.remove(0), f.clone());
    next.memory = crate::state::memory::Memory::decode(&saved).unwrap();
    assert_eq!(next.memory.operation.as_ref().map(|o| o.id()), Some("op-1"));
    let polls = f.poll_calls();
    let mut actions = Vec::new();
    for k in 1..3 {
        let now = t0() + chrono::Duration::seconds(k);
        let r = report(100.0, now);
        let out = pass1(&mut next, &[&r], &leader(), Mode::Act, now, SECOND)
            .await
            .unwrap();
        actions.push(out.action);
        between_passes().await;
    }
    assert_eq!(
        actions,
        [Action::InFlight, Action::Scaled],
        "polled until done"
    );
    assert!(f.poll_calls() > polls, "the new leader did not poll");
    assert_eq!(
        f.apply_calls().len(),
        1,
        "a second submission while in flight"
    );
}

#[tokio::test]
async fn a_submission_whose_outcome_died_with_its_process_is_replanned_from_the_cloud() {
    let f = fake(2);
    let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
    pool.memory.operation = Some(crate::state::memory::Operation {
        handle: None,
        started_at: t0(),
        target: CapacityTarget::on_demand(4),
        from: 2,
        remove: Vec::new(),
    });
    let r = report(100.0, t0());
    let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, t0(), SECOND)
        .await
        .unwrap();
    assert_eq!((out.action, out.desired), (Action::Scaled, 4));
    assert!(pool.memory.operation.is_none());
}

#[tokio::test]
async fn an_operation_running_past_the_timeout_is_given_up() {
    let f = fake(2);
    f.run_next_apply_as_operation(usize::MAX);
    let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
    let r = report(100.0, t0());
    pass1(&mut pool, &[&r], &leader(), Mode::Act, t0(), SECOND)
        .await
        .unwrap();
    between_passes().await;
    let late = t0() + chrono::Duration::from_std(OPERATION_TIMEOUT).unwrap();
    let r = report(100.0, late);
    let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, late, SECOND)
        .await
        .unwrap();
    assert_eq!(out.action, Action::Failed);
    assert!(
        out.detail
            .as_deref()
            .unwrap_or("")
            .contains("still running after 600s"),
        "{:?}",
        out.detail
    );
    assert!(pool.memory.operation.is_none() && pool.call.is_none());
    assert_eq!(pool.memory.failures, 1, "backs off as any failed call");
}

#[tokio::test]
async fn no_request_goes_out_once_the_claim_lapses_or_moves() {
    // The lease runs out while the call is on its way: it is dropped at the deadline.
    let f = fake(2);
    let slow = Arc::new(Slow {
        inner: f.clone(),
        delay: std::time::Duration::from_millis(300),
    });
    let mut pool = PoolRuntime::new(config().pools.remove(0), slow.clone());
    let (tx, claim) = tokio::sync::watch::channel(Claim {
        is_leader: true,
        valid_until: Some(tokio::time::Instant::now() + std::time::Duration::from_millis(100)),
        ..Claim::default()
    });
    let r = report(100.0, t0());
    let out = pass1(&mut pool, &[&r], &claim, Mode::Act, t0(), SECOND)
        .await
        .unwrap();
    assert_eq!(out.action, Action::Skipped, "{:?}", out.detail);
    assert!(
        out.detail
            .as_deref()
            .unwrap_or("")
            .contains("lease ran out")
    );
    assert!(f.apply_calls().is_empty());
    assert_eq!(pool.memory.failures, 0, "not the cloud's failure");

    // Another agent leads by the time the request would go: the fence refuses it.
    tx.send_replace(Claim {
        is_leader: true,
        ..Claim::default()
    });
    let later = t0() + chrono::Duration::seconds(1);
    let r = report(100.0, later);
    let taken = tokio::spawn({
        let tx = tx.clone();
        async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            tx.send_replace(Claim {
                leader_id: Some("other".into()),
                ..Claim::default()
            });
        }
    });
    let out = pass1(&mut pool, &[&r], &claim, Mode::Act, later, SECOND)
        .await
        .unwrap();
    assert_eq!(out.action, Action::InFlight, "{:?}", out.detail);
    taken.await.unwrap();
    // The call reached the fence after the claim moved; the next pass reads that.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let out = pass1(
        &mut pool,
        &[&r],
        &claim,
        Mode::Act,
        later + chrono::Duration::seconds(1),
        SECOND,
    )
    .await
    .unwrap();
    assert_eq!(out.action, Action::Skipped, "{:?}", out.detail);
    assert!(out.detail.as_deref().unwrap_or("").contains("not sent"));
    assert!(
        f.apply_calls().is_empty(),
        "a deposed leader's request went out"
    );
}

/// One busy pass of `pool`, `s` seconds after [`t0`].
async fn pass_at(pool: &mut PoolRuntime, s: i64) -> PassOutcome {
    let now = t0() + chrono::Duration::seconds(s);
    let r = report(100.0, now);
    pass1(pool, &[&r], &leader(), Mode::Act, now, SECOND)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_scale_ups_time_to_serve_is_learned_and_kept_in_the_decision_state() {
    let f = fake(2);
    let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
    let out = pass_at(&mut pool, 0).await;
    assert_eq!((out.action, out.desired), (Action::Scaled, 4));
    assert_eq!(pool.memory.provisioning.waiting, Some((t0(), 4)));
    // Asked for, not serving yet: no instance in service.
    between_passes().await;
    pass_at(&mut pool, 120).await;
    assert_eq!(pool.memory.provisioning.learned(), None);
    // Seven minutes after the call, the four instances serve.
    let serving = (0..4)
        .map(|i| capstan_providers::Instance {
            id: format!("i-{i}"),
            lifecycle: Lifecycle::InService,
            health: capstan_providers::Health::Healthy,
            instance_type: None,
            zone: None,
            market: capstan_providers::Market::OnDemand,
        })
        .collect();
    f.set_description(PoolDescription {
        steps: Default::default(),
        min: 1,
        max: 10,
        desired: 4,
        instances: serving,
    });
    pass_at(&mut pool, 420).await;
    assert_eq!(
        pool.memory.provisioning.learned(),
        Some(std::time::Duration::from_secs(420))
    );
    // Still busy, the pass scaled up again: that one is timed next.
    let at = t0() + chrono::Duration::seconds(420);
    assert_eq!(pool.memory.provisioning.waiting, Some((at, 8)));
    // A new leader reads it with the rest of the pool's decision state.
    let next = crate::state::memory::Memory::decode(&pool.memory.encode()).unwrap();
    assert_eq!(next.provisioning, pool.memory.provisioning);
}
