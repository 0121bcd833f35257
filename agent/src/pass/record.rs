//! Recording demand and usage, a minute at a time, to the history stores (and warming
//! a pool's predictor from them).

use super::*;

/// Means over a minute of a few series, a pass at a time: values are added through
/// the minute, and the first value of a later minute closes it and gives its means.
/// (A value of an earlier minute, after the clock went back, starts that minute over.)
#[derive(Debug, Clone, Default)]
pub struct MinuteMeans {
    /// The open minute, and (sum, count) per series.
    open: Option<(i64, Vec<(f64, u32)>)>,
}

impl MinuteMeans {
    /// Adds `values` (one per series, `None` for no reading) at `minute`; returns the
    /// minute this closed and its means (`None` for a series without readings).
    pub fn add(
        &mut self,
        minute: i64,
        values: impl ExactSizeIterator<Item = Option<f64>>,
    ) -> Option<(i64, Vec<Option<f64>>)> {
        let closed = self
            .open
            .take_if(|(m, _)| *m != minute)
            .filter(|(m, _)| *m < minute)
            .map(|(m, sums)| {
                let means = sums
                    .iter()
                    .map(|(s, c)| (*c > 0).then(|| s / f64::from(*c)))
                    .collect();
                (m, means)
            });
        let width = values.len();
        let (_, sums) = self
            .open
            .get_or_insert_with(|| (minute, vec![(0.0, 0); width]));
        for (acc, v) in sums.iter_mut().zip(values) {
            if let Some(v) = v {
                acc.0 += v;
                acc.1 += 1;
            }
        }
        closed
    }
}

/// Adds this pass's demand (each target's readings summed over the pool) to the
/// minute being accumulated; when a minute closes, records it in the predictor and the
/// history store. Returns the anomalies found, and the metric of a surge among them.
pub(super) fn track_demand(
    pool: &mut PoolRuntime,
    samples: &[Option<MetricSample>],
    now: DateTime<Utc>,
) -> (Vec<Reason>, Option<Metric>) {
    let mut reasons = Vec::new();
    let mut surge = None;
    if !pool.predictor.enabled() {
        return (reasons, surge);
    }
    let n = pool.policy.targets.len();
    let demand = (0..n).map(|k| {
        samples
            .get(k)
            .copied()
            .flatten()
            .filter(|s| s.ready > 0 && s.sum.is_finite())
            .map(|s| s.sum)
    });
    if let Some((m, point)) = pool.minute.add(now.timestamp().div_euclid(60), demand) {
        if let Some(store) = &pool.demand_store
            && let Err(e) = store.append(&pool.config.name, &(m, point.clone()))
        {
            tracing::warn!(pool = %pool.config.name, error = %e, "cannot write demand history");
        }
        for event in pool.predictor.record(m, &point) {
            let metric = pool.policy.targets[event.target].metric.clone();
            if event.verdict.z > 0.0 && surge.is_none() {
                surge = Some(metric.clone());
            }
            reasons.push(Reason::Anomaly {
                metric,
                value: event.value,
                expected: event.verdict.expected.unwrap_or(f64::NAN),
                z: event.verdict.z,
            });
        }
    }
    (reasons, surge)
}

/// Adds this pass's usage to the minute being accumulated; when a minute closes,
/// writes its means to the usage store, if the pool has one.
pub(super) fn track_usage(
    pool: &mut PoolRuntime,
    nodes: u32,
    reports: &[&NodeReport],
    now: DateTime<Utc>,
) {
    let Some(store) = &pool.usage_store else {
        return;
    };
    let usage = aggregate::usage(nodes, reports);
    if let Some(closed) = pool
        .usage
        .add(now.timestamp().div_euclid(60), usage.into_iter())
        && let Err(e) = store.append(&pool.config.name, &closed)
    {
        tracing::warn!(pool = %pool.config.name, error = %e, "cannot write usage history");
    }
}

/// How long usage history is kept: `capstan rightsizing --days` looks back at most
/// this far.
pub const USAGE_RETENTION_DAYS: i64 = 35;

/// Gives every pool without one the usage store, and compacts each pool's usage
/// history to [`USAGE_RETENTION_DAYS`].
pub fn attach_usage(pools: &mut [PoolRuntime], store: &Arc<dyn HistoryStore>, now: DateTime<Utc>) {
    let since = now.timestamp().div_euclid(60) - USAGE_RETENTION_DAYS * 1440;
    for pool in pools.iter_mut().filter(|p| p.usage_store.is_none()) {
        pool.usage_store = Some(store.clone());
        // Loading compacts the file to the window.
        if let Err(e) = store.load(&pool.config.name, since) {
            tracing::warn!(pool = %pool.config.name, error = %e, "cannot read usage history");
        }
    }
}

/// Gives every pool without one the history store, and replays its recent history into
/// its predictor, so forecasts are warm after a restart.
pub fn attach_history(
    pools: &mut [PoolRuntime],
    store: &Arc<dyn HistoryStore>,
    now: DateTime<Utc>,
) {
    for pool in pools.iter_mut().filter(|p| p.demand_store.is_none()) {
        pool.demand_store = Some(store.clone());
        if !pool.predictor.enabled() {
            continue;
        }
        let window =
            i64::try_from(pool.config.predictive.history.as_secs() / 60).unwrap_or(i64::MAX);
        let since = now.timestamp().div_euclid(60).saturating_sub(window);
        match store.load(&pool.config.name, since) {
            Ok(points) => {
                let n = pool.policy.targets.len();
                for (minute, mut values) in points {
                    values.resize(n, None);
                    pool.predictor.record(minute, &values);
                }
            }
            Err(e) => {
                tracing::warn!(pool = %pool.config.name, error = %e, "cannot read demand history; forecasts start cold");
            }
        }
    }
}
