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
