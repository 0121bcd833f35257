//! What the pass records: demand history and usage, a minute at a time.

use super::*;

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

/// A pool in `auto` over `days` of stored demand from `history(minute)`, ending at
/// `now`; its nodes take 15 minutes to serve (its `lead_time`, nothing learned yet).
fn auto_pool_over(
    store: &Arc<dyn HistoryStore>,
    now: DateTime<Utc>,
    days: i64,
    history: impl Fn(i64) -> f64,
) -> PoolRuntime {
    let text = r#"
        [[pool]]
        name = "web"
        provider = { type = "dry-run", initial = 4 }
        min = 2
        max = 60
        behavior = "aggressive"
        targets = [{ metric = "cpu.utilization", value = 90 }]
        predictive = { mode = "auto", horizon = "30m", lead_time = "15m" }
    "#;
    let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
    let end = now.timestamp() / 60;
    for m in end - days * 1440..end {
        store.append("web", &(m, vec![Some(history(m))])).unwrap();
    }
    let mut pool = PoolRuntime::new(cfg.pools[0].clone(), fake(4));
    attach_history(std::slice::from_mut(&mut pool), store, now);
    pool
}

/// Passes until the pool's backtest has finished and been taken (bounded).
async fn until_verdict(pool: &mut PoolRuntime, now: DateTime<Utc>) -> Reason {
    for _ in 0..200 {
        let r = report(50.0, now);
        let out = pass1(pool, &[&r], &leader(), Mode::PlanOnly, now, SECOND)
            .await
            .unwrap();
        if let Some(reason) = out.reasons.iter().find(|r| {
            matches!(
                r,
                Reason::PredictiveAuto { .. } | Reason::PredictiveAutoPending { .. }
            )
        }) {
            return reason.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no verdict after 200 passes");
}

#[tokio::test]
async fn auto_backtests_the_stored_demand_and_scales_on_the_forecast_only_where_it_pays() {
    let now = Utc.with_ymd_and_hms(2026, 1, 9, 0, 0, 0).unwrap();
    // A daily wave, as the history holds it: the target's readings summed (90 per
    // node at the target), between 4 and 40 nodes' worth.
    let wave = |m: i64| {
        let day = (m % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
        0.9 * (2200.0 + 1800.0 * day.sin())
    };
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn HistoryStore> =
        Arc::new(crate::state::demand::FileHistory::open(dir.path()).unwrap());
    let mut pool = auto_pool_over(&store, now, 8, wave);
    assert!(
        !pool.predictor.scales(),
        "reactive until a backtest says otherwise"
    );
    // The pass starts the backtest beside it and goes on.
    let r = report(50.0, now);
    let out = pass1(&mut pool, &[&r], &leader(), Mode::PlanOnly, now, SECOND)
        .await
        .unwrap();
    assert!(pool.auto.task.is_some(), "started");
    assert!(
        !out.reasons
            .iter()
            .any(|r| matches!(r, Reason::PredictiveAuto { .. })),
        "the pass did not wait for it"
    );
    let reason = until_verdict(&mut pool, now).await;
    assert!(
        matches!(reason, Reason::PredictiveAuto { scale: true, .. }),
        "{reason:?}"
    );
    assert!(pool.predictor.scales());
    let text = reason.to_string();
    assert!(text.contains("scaling on the forecast"), "{text}");
    // The next one is due in six hours, not before.
    let next = now + chrono::Duration::hours(6);
    assert_eq!(pool.auto.next_at, Some(next));
    let r = report(50.0, now);
    pass1(
        &mut pool,
        &[&r],
        &leader(),
        Mode::PlanOnly,
        now + chrono::Duration::hours(1),
        SECOND,
    )
    .await
    .unwrap();
    assert!(pool.auto.task.is_none());

    // Nearly flat demand: reactive-only at the same target is as good for no more.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn HistoryStore> =
        Arc::new(crate::state::demand::FileHistory::open(dir.path()).unwrap());
    let mut pool = auto_pool_over(&store, now, 8, |m| 2700.0 + 45.0 * (m as f64 * 0.7).sin());
    let reason = until_verdict(&mut pool, now).await;
    assert!(
        matches!(reason, Reason::PredictiveAuto { scale: false, .. }),
        "{reason:?}"
    );
    assert!(!pool.predictor.scales());

    // Two days of history: no backtest yet, and the journal says why.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn HistoryStore> =
        Arc::new(crate::state::demand::FileHistory::open(dir.path()).unwrap());
    let mut pool = auto_pool_over(&store, now, 2, wave);
    let reason = until_verdict(&mut pool, now).await;
    assert!(
        reason
            .to_string()
            .contains("2.0 days of demand history; a backtest needs 4"),
        "{reason}"
    );
    assert!(!pool.predictor.scales());
}
