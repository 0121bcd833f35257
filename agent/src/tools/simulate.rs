//! `capstan simulate`: replays a demand trace through the same brain the daemon runs
//! (schedules, emergencies, the HPA planner, predictive scaling, flap protection, the
//! budget) against a simulated pool whose new nodes take a provisioning delay to
//! arrive.
//!
//! Time runs minute by minute; the trace is interpolated onto minutes. The pool's first
//! target is the one the trace drives: `demand_per_node` is the demand one node serves
//! at the target, so a pool of `n` ready nodes under demand `d` reads
//! `target × d / (demand_per_node × n)` per node. A minute is under-provisioned when
//! the ready nodes run above the target by more than the pool's tolerance (the band in
//! which the planner, like HPA, deliberately does nothing), i.e. when
//! `d > n × demand_per_node × (1 + tolerance)`; the shortfall beyond that is the
//! under-provisioned demand. New nodes are billed from the minute they are asked for
//! and serve from the minute they arrive; removed nodes go at once.
//!
//! The simulation itself is `capstan_brain::simulate` (built for speed with the rest of
//! the decision code); this module adds the trace's minutes, the plot and the CLI's
//! helpers.

pub use crate::brain::simulate::{Metrics, Series, Settings, reactive_only, run};
use crate::tools::trace::Regular;
use chrono::{DateTime, TimeZone, Utc};

/// The trace on minutes: linear between its points.
pub fn per_minute(trace: &Regular) -> Vec<f64> {
    let step_minutes = (trace.step / 60).max(1);
    let n = trace.values.len();
    if n == 0 {
        return Vec::new();
    }
    let total = usize::try_from((n as i64 - 1) * step_minutes + 1).unwrap_or(0);
    (0..total)
        .map(|m| {
            let pos = m as f64 / step_minutes as f64;
            let i = pos.floor() as usize;
            let f = pos - i as f64;
            if i + 1 < n {
                trace.values[i] + f * (trace.values[i + 1] - trace.values[i])
            } else {
                trace.values[n - 1]
            }
        })
        .collect()
}

/// A minute-resolution start time for a trace that begins at `at`.
pub fn start_of(at: chrono::NaiveDateTime) -> DateTime<Utc> {
    Utc.from_utc_datetime(&at)
}

/// One policy's run for the time plot: its series and legend name.
#[derive(Debug)]
pub struct Run<'a> {
    /// Legend text, e.g. `policy (forecast-and-scale, target 60)`.
    pub name: String,
    /// The run, with `keep_series`.
    pub series: &'a Series,
}

/// The time plot of `simulate --svg`: over `window` (minutes of the run), the demand,
/// the first run's ready capacity and its forecast, the other runs' capacity, and the
/// first run's under-provisioned (saturated) minutes shaded.
pub fn svg(
    title: &str,
    start: DateTime<Utc>,
    window: std::ops::Range<usize>,
    runs: &[Run<'_>],
) -> String {
    use crate::tools::plot::{Line, time_plot};
    const CAPACITY: [&str; 3] = ["#1a9850", "#2f6db5", "#7b3294"];
    let Some(first) = runs.first() else {
        return time_plot(title, start, window, &[], None);
    };
    let mut lines = vec![Line {
        label: "demand".into(),
        colour: "#222",
        dashed: false,
        values: first.series.demand.iter().copied().map(Some).collect(),
    }];
    for (i, run) in runs.iter().enumerate() {
        lines.push(Line {
            label: format!("ready capacity: {}", run.name),
            colour: CAPACITY[i % CAPACITY.len()],
            dashed: false,
            values: run.series.capacity.iter().copied().map(Some).collect(),
        });
    }
    if first.series.forecast.iter().any(Option::is_some) {
        lines.push(Line {
            label: "forecast".into(),
            colour: "#c33",
            dashed: true,
            values: first.series.forecast.clone(),
        });
    }
    time_plot(
        title,
        start,
        window,
        &lines,
        Some((
            &first.series.saturated,
            "#d73027",
            "under-provisioned minutes of the first",
        )),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::budget::BudgetPolicy;
    use capstan_config::Pool;

    fn pool(mode: &str) -> Pool {
        let text = format!(
            r#"
            [[pool]]
            name = "web"
            provider = {{ type = "dry-run" }}
            min = 2
            max = 60
            behavior = "aggressive"
            price = {{ on_demand = 1.0 }}
            targets = [{{ metric = "cpu.utilization", value = 50 }}]
            predictive = {{ mode = "{mode}", horizon = "30m", lead_time = "5m" }}
            "#
        );
        capstan_config::from_str("t.toml".as_ref(), &text, std::iter::empty())
            .unwrap()
            .pools
            .remove(0)
    }

    fn budget() -> BudgetPolicy {
        BudgetPolicy {
            ceiling: None,
            emergency_allowance: 0.0,
            enforce: capstan_config::BudgetEnforcement::Report,
        }
    }

    /// Six days of a daily wave peaking at 40 nodes' worth (100 per node).
    fn demand() -> Vec<f64> {
        (0..6 * 1440)
            .map(|m| {
                let day = f64::from(m % 1440) / 1440.0 * std::f64::consts::TAU;
                2200.0 + 1800.0 * day.sin()
            })
            .collect()
    }

    fn settings() -> Settings {
        Settings {
            demand_per_node: 100.0,
            delay_minutes: 3,
            drain_minutes: 0,
            keep_series: true,
            hot_per_node: None,
            warm_up_minutes: 0,
        }
    }

    #[test]
    fn a_reactive_pool_follows_the_demand_and_is_billed_for_it() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let (m, series) = run(&pool("off"), &budget(), &demand(), start, &settings());
        assert!(m.actions > 10, "{m:?}");
        // Enough capacity most of the time.
        assert!(m.underprovisioned_minutes < 6 * 1440 / 4, "{m:?}");
        // Node-hours between the demand's own and the maximum.
        let ideal: f64 = demand().iter().map(|d| d / 100.0 / 60.0).sum();
        assert!(
            m.node_hours > ideal && m.node_hours < 60.0 * 24.0 * 6.0,
            "{m:?} vs {ideal}"
        );
        assert!((m.cost - m.node_hours).abs() < 1e-6, "1.0 per node-hour");
        assert_eq!(m.mase, None);
        assert_eq!(series.demand.len(), 6 * 1440);
        assert_eq!(series.saturated.len(), series.demand.len());
        assert_eq!(
            series.saturated.iter().filter(|s| **s).count() as u64,
            m.underprovisioned_minutes
        );
        let plot = svg(
            "web",
            start,
            0..1440,
            &[Run {
                name: "policy".into(),
                series: &series,
            }],
        );
        assert!(plot.starts_with("<svg") && plot.contains("ready capacity: policy"));
    }

    #[test]
    fn the_plot_has_a_forecast_for_every_minute_once_warm() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let (_, series) = run(
            &pool("forecast-only"),
            &budget(),
            &demand(),
            start,
            &settings(),
        );
        let warm = &series.forecast[3 * 1440..];
        assert!(
            warm.iter().all(Option::is_some),
            "gaps in the forecast line"
        );
        // In demand units, near the demand it forecasts.
        let (f, d) = (warm[0].unwrap(), series.demand[3 * 1440]);
        assert!((f - d).abs() < 0.2 * d, "forecast {f} vs demand {d}");
    }

    #[test]
    fn draining_nodes_are_billed_and_a_rise_takes_them_back_before_asking_for_new_ones() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let pool = pool("forecast-only");
        let with = |drain_minutes| {
            let s = Settings {
                keep_series: false,
                drain_minutes,
                ..settings()
            };
            run(&pool, &budget(), &demand(), start, &s).0
        };
        let (now, drained) = (with(0), with(10));
        // Every node that leaves is billed ten minutes more...
        assert!(
            drained.node_hours > now.node_hours,
            "{drained:?} vs {now:?}"
        );
        // ...but never serves less: a rise takes back draining nodes at once, with
        // no provisioning delay.
        assert!(
            drained.underprovisioned_minutes <= now.underprovisioned_minutes,
            "{drained:?} vs {now:?}"
        );
        // No drain is what it always was.
        assert_eq!(with(0), now);
    }

    #[test]
    fn predictive_scaling_cuts_underprovisioning_on_a_daily_wave() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let s = Settings {
            keep_series: false,
            ..settings()
        };
        let (reactive, _) = run(&pool("forecast-only"), &budget(), &demand(), start, &s);
        let (predictive, _) = run(&pool("forecast-and-scale"), &budget(), &demand(), start, &s);
        assert!(predictive.mase.unwrap() < 1.0, "{predictive:?}");
        assert!(
            predictive.underprovisioned_minutes < reactive.underprovisioned_minutes,
            "predictive {predictive:?} vs reactive {reactive:?}"
        );
    }

    /// Eight days of the daily wave.
    fn wave() -> Vec<f64> {
        let day = demand();
        (0..8 * 1440).map(|m| day[m % 1440]).collect()
    }

    /// Eight days of nearly flat demand: a forecast has nothing to foresee.
    fn flat() -> Vec<f64> {
        (0..8 * 1440)
            .map(|m| 3000.0 + 50.0 * (f64::from(m) * 0.7).sin())
            .collect()
    }

    /// A pool at target 90 %: little headroom below saturation (100 %).
    fn auto_pool() -> Pool {
        let mut p = pool("auto");
        p.targets[0].value = 90.0;
        p
    }

    #[test]
    fn auto_scales_on_the_forecast_where_it_beats_reactive_and_not_where_it_does_not() {
        use crate::brain::simulate::auto_backtest;
        let start = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
        // A daily wave, nodes 15 minutes slow: reactive-only needs a lower target (81)
        // to stay unsaturated, forecast-and-scale holds 90 for fewer node-hours.
        let v = auto_backtest(&auto_pool(), &budget(), &wave(), start, 100.0, 15)
            .expect("eight days are enough");
        assert!(v.scale, "{v:?}");
        let (value, reactive) = v.reactive.clone().unwrap();
        assert!(value < 90.0, "{v:?}");
        assert!(
            v.forecast.node_hours < reactive.node_hours
                && reactive.underprovisioned_minutes <= v.forecast.underprovisioned_minutes,
            "{v:?}"
        );
        assert_eq!(v.days, 5.0, "eight days less the three of warm-up");
        assert!(matches!(
            v.reason(),
            crate::brain::Reason::PredictiveAuto { scale: true, .. }
        ));
        // Flat demand: reactive-only at the same target is as good for no more.
        let v = auto_backtest(&auto_pool(), &budget(), &flat(), start, 100.0, 15).unwrap();
        assert!(!v.scale, "{v:?}");
        assert_eq!(v.reactive.as_ref().map(|(t, _)| *t), Some(90.0));
        // Too little history: no verdict.
        assert_eq!(
            auto_backtest(
                &auto_pool(),
                &budget(),
                &flat()[..3 * 1440],
                start,
                100.0,
                15
            ),
            None
        );
    }

    #[test]
    fn a_simulated_auto_pool_switches_the_forecast_on_only_where_it_pays() {
        let start = Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap();
        // Judged on the saturation line (100 %), as the backtest judges, from the first
        // backtest on (four days in).
        let s = Settings {
            keep_series: false,
            delay_minutes: 15,
            hot_per_node: Some(100.0 * 100.0 / 90.0),
            warm_up_minutes: 4 * 1440,
            ..settings()
        };
        let with_mode = |mode| {
            let mut p = auto_pool();
            p.predictive.mode = mode;
            p
        };
        let only = with_mode(capstan_config::PredictiveMode::ForecastOnly);
        // On the wave, once a backtest has four days, auto scales on the forecast:
        // fewer saturated minutes than never doing so.
        let (auto, _) = run(&auto_pool(), &budget(), &wave(), start, &s);
        let (reactive, _) = run(&only, &budget(), &wave(), start, &s);
        assert!(
            auto.underprovisioned_minutes < reactive.underprovisioned_minutes,
            "auto {auto:?} vs forecast-only {reactive:?}"
        );
        // Flat: it never does, and runs exactly as forecast-only.
        let (auto, _) = run(&auto_pool(), &budget(), &flat(), start, &s);
        let (reactive, _) = run(&only, &budget(), &flat(), start, &s);
        assert_eq!(auto, reactive);
    }
}
