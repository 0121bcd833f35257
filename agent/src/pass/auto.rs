//! `predictive.mode = "auto"`: every few hours the leader backtests each such pool's
//! recent demand (its history store) with the simulator
//! ([`crate::brain::simulate::auto_backtest`]), beside the pass on a blocking thread,
//! one pool at a time (so at most one core however many pools), and the predictor
//! scales on the forecast until the next backtest only if it found that
//! forecast-and-scale needs fewer node-hours than the cheapest reactive-only policy
//! with no more saturated minutes. Each verdict is journaled with its figures.

use std::sync::Mutex;

use capstan_config::PredictiveMode;
use tokio::task::JoinHandle;

use super::*;
use crate::brain::simulate::{AUTO_EVERY_MINUTES, AUTO_MIN_MINUTES, AutoVerdict, auto_backtest};

/// A pool's `auto` backtest: the one running, and when the next is due.
#[derive(Debug, Default)]
pub struct AutoCheck {
    /// The next backtest starts at the first pass from then (`None`: the next pass).
    pub next_at: Option<DateTime<Utc>>,
    /// The backtest running beside the pass.
    pub task: Option<JoinHandle<Result<AutoVerdict, String>>>,
}

/// Backtests run one at a time, whichever pools they are for.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Each pass of an `auto` pool: takes a finished backtest (its verdict set in the
/// predictor, its reason returned for the journal), and starts the next when due.
pub(super) async fn check(pool: &mut PoolRuntime, now: DateTime<Utc>) -> Option<Reason> {
    if pool.config.predictive.mode != PredictiveMode::Auto {
        return None;
    }
    let mut reason = None;
    if pool.auto.task.as_ref().is_some_and(JoinHandle::is_finished)
        && let Some(task) = pool.auto.task.take()
    {
        reason = Some(match task.await {
            Ok(Ok(verdict)) => {
                pool.predictor.set_auto(verdict.scale);
                verdict.reason()
            }
            Ok(Err(detail)) => Reason::PredictiveAutoPending { detail },
            Err(e) => Reason::PredictiveAutoPending {
                detail: format!("the backtest failed: {e}"),
            },
        });
    }
    let due = pool.auto.next_at.is_none_or(|at| now >= at);
    if pool.auto.task.is_none()
        && due
        && let Some(store) = pool.demand_store.clone()
    {
        let config = pool.config.clone();
        let delay = pool
            .memory
            .provisioning
            .learned()
            .unwrap_or(config.predictive.lead_time);
        pool.auto.task = Some(tokio::task::spawn_blocking(move || {
            let _one = ONE_AT_A_TIME
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            backtest(&config, store.as_ref(), now, delay)
        }));
        pool.auto.next_at = Some(now + chrono::Duration::minutes(AUTO_EVERY_MINUTES));
    }
    reason
}

/// The backtest of `config`'s stored demand over its `predictive.history` before
/// `now`, new nodes taking `delay`.
pub fn backtest(
    config: &Pool,
    store: &dyn HistoryStore,
    now: DateTime<Utc>,
    delay: Duration,
) -> Result<AutoVerdict, String> {
    let window = i64::try_from(config.predictive.history.as_secs() / 60).unwrap_or(i64::MAX);
    let since = now.timestamp().div_euclid(60).saturating_sub(window);
    let points = store
        .load(&config.name, since)
        .map_err(|e| format!("cannot read the demand history: {e}"))?;
    let (first, demand) = per_minute(&points);
    let Some(start) = first.and_then(|m| DateTime::from_timestamp(m.checked_mul(60)?, 0)) else {
        return Err("no demand history yet".to_owned());
    };
    let budget = BudgetPolicy {
        ceiling: None,
        emergency_allowance: 0.0,
        enforce: capstan_config::BudgetEnforcement::Report,
    };
    // The history holds the first target's readings summed over the pool: one node at
    // the target serves the target's value.
    let per_node = config.targets.first().map_or(1.0, |t| t.value);
    let delay_minutes = u32::try_from(delay.as_secs().div_ceil(60)).unwrap_or(u32::MAX);
    auto_backtest(config, &budget, &demand, start, per_node, delay_minutes).ok_or_else(|| {
        format!(
            "{:.1} days of demand history; a backtest needs {:.0}",
            demand.len() as f64 / 1440.0,
            AUTO_MIN_MINUTES as f64 / 1440.0
        )
    })
}

/// The first target's demand a minute at a time from its first point, a minute with no
/// point holding the one before.
fn per_minute(points: &[crate::state::demand::Minute]) -> (Option<i64>, Vec<f64>) {
    let mut first = None;
    let mut demand: Vec<f64> = Vec::new();
    let mut last: Option<(i64, f64)> = None;
    for (minute, values) in points {
        let Some(v) = values.first().copied().flatten().filter(|v| v.is_finite()) else {
            continue;
        };
        if let Some((m, held)) = last {
            if *minute <= m {
                continue;
            }
            let gap = usize::try_from(minute - m - 1).unwrap_or(0);
            demand.extend(std::iter::repeat_n(held, gap));
        } else {
            first = Some(*minute);
        }
        demand.push(v);
        last = Some((*minute, v));
    }
    (first, demand)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_minutes_become_a_series_with_gaps_held() {
        let points: Vec<crate::state::demand::Minute> = vec![
            (100, vec![Some(1.0)]),
            (101, vec![None]),
            (103, vec![Some(3.0), Some(9.0)]),
            (103, vec![Some(7.0)]),
            (104, vec![Some(4.0)]),
        ];
        assert_eq!(
            per_minute(&points),
            (Some(100), vec![1.0, 1.0, 1.0, 3.0, 4.0])
        );
        assert_eq!(per_minute(&[]), (None, vec![]));
    }
}
