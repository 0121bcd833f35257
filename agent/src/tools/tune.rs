//! `capstan tune`: backtests a grid of candidate policies for one pool through
//! [`crate::tools::simulate`] and picks the cheapest whose under-provisioned minutes stay
//! within the SLO.
//!
//! The grid: the pool's first target value × 0.6 … 1.2 (percentages capped at 100),
//! each behavior preset (and the pool's own custom behavior, if it has one), and
//! predictive scaling off or forecast-and-scale at a 15, 30 or 60 minute horizon, sizing
//! capacity for the demand one provisioning delay ahead (its `lead_time`). With
//! [`Tuning::auto`], also `predictive.mode = "auto"` at every target value and behavior,
//! at the horizon of that pair's best forecast-and-scale candidate: a second round,
//! because each such candidate backtests its recent demand every few hours as the
//! leader does, and costs about as much as a few hundred plain ones.
//!
//! Every candidate is judged by the same line: a minute is under-provisioned when the
//! ready nodes would run above the *saturation* value of the target's metric: 100 for
//! a percentage (a node at 100 % CPU is saturated), else the current target plus its
//! tolerance (what `capstan simulate` counts), unless `--saturation` says otherwise.
//! A candidate with a different target holds its nodes at that target, so one node
//! serves `demand_per_node × candidate target / current target`.
//!
//! Candidates run on every core; the ranking depends only on the figures (cost, then
//! node-hours, under-provisioned minutes, actions, then grid order), never on which
//! thread finished first.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use capstan_config::{Pool, PredictiveMode, TargetSource, presets};

use crate::brain::budget::BudgetPolicy;
use crate::tools::simulate::{self, Metrics, Settings};

/// Target values tried, as factors of the current one.
pub const TARGET_FACTORS: [f64; 7] = [0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2];
/// Forecast horizons tried with forecast-and-scale, in minutes.
pub const HORIZONS_MINUTES: [u64; 3] = [15, 30, 60];

/// One candidate policy. Field names are an interface (`tune --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    /// The first target's value.
    pub target_value: f64,
    /// A preset's name, or `custom` (the pool's own behavior).
    pub behavior: String,
    /// `off`, `forecast-and-scale` or `auto`.
    pub predictive_mode: &'static str,
    /// The forecast horizon with forecast-and-scale or auto.
    pub horizon_minutes: Option<u64>,
    /// How far ahead capacity is sized with forecast-and-scale (`lead_time`): the
    /// provisioning delay in minutes, at most the horizon (what the simulation sizes
    /// with, the current policy too).
    pub lead_minutes: Option<u64>,
}

/// A candidate with its backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scored {
    /// The policy.
    pub policy: Candidate,
    /// What the backtest measured.
    pub metrics: Metrics,
    /// Its under-provisioned minutes are within the SLO.
    pub meets_slo: bool,
}

/// The outcome of a tuning run. Field names are an interface (`tune --json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The pool.
    pub pool: String,
    /// Minutes in the trace.
    pub minutes: usize,
    /// Of them, the first replayed but not scored (the forecaster's warm-up).
    pub warm_up_minutes: usize,
    /// Under-provisioned minutes allowed.
    pub slo_minutes: u64,
    /// The metric's value per node above which a minute is under-provisioned.
    pub saturation: f64,
    /// The pool's policy as configured.
    pub current: Scored,
    /// The cheapest candidate within the SLO, if any.
    pub best: Option<Scored>,
    /// The TOML that puts `best` in place, if any.
    pub snippet: Option<String>,
    /// Every candidate, best first.
    pub candidates: Vec<Scored>,
}

/// How the backtest runs.
#[derive(Debug, Clone)]
pub struct Tuning {
    /// Demand one node serves at the pool's current first target.
    pub demand_per_node: f64,
    /// Minutes a new node takes to serve.
    pub delay_minutes: u32,
    /// Minutes a removed node drains before it goes (billed, serving nothing new).
    pub drain_minutes: u32,
    /// Under-provisioned minutes allowed; `None`: as many as the current policy has.
    pub slo_minutes: Option<u64>,
    /// The metric's value at which a node is saturated; `None`: see [`saturation`].
    pub saturation: Option<f64>,
    /// Threads; `None`: every core.
    pub threads: Option<usize>,
    /// Minutes replayed before any candidate is scored (see
    /// [`Settings::warm_up_minutes`]).
    pub warm_up_minutes: usize,
    /// Also try `predictive.mode = "auto"` (see the module's header).
    pub auto: bool,
}

use crate::brain::simulate::is_percent;

/// The lead that matters for a pool whose nodes take `delay_minutes` to serve: the
/// delay (at least a minute), at most `horizon_minutes`.
pub fn lead_for(delay_minutes: u32, horizon_minutes: u64) -> u64 {
    u64::from(delay_minutes).max(1).min(horizon_minutes)
}

/// The grid for `pool` whose nodes take `delay_minutes` to serve, in a fixed order.
pub fn candidates(pool: &Pool, delay_minutes: u32) -> Vec<Candidate> {
    let base = pool.targets.first().map_or(1.0, |t| t.value);
    let mut values: Vec<f64> = TARGET_FACTORS
        .iter()
        .map(|f| (base * f * 100.0).round() / 100.0)
        .filter(|v| *v > 0.0 && (!is_percent(pool) || *v <= 100.0))
        .collect();
    values.dedup();
    let mut behaviors: Vec<String> = presets::NAMES.iter().map(|s| (*s).to_owned()).collect();
    if !presets::NAMES.contains(&pool.behavior_name.as_str()) {
        behaviors.push(pool.behavior_name.clone());
    }
    let modes: Vec<(&'static str, Option<u64>)> = std::iter::once((OFF, None))
        .chain(
            HORIZONS_MINUTES
                .iter()
                .map(|h| (FORECAST_AND_SCALE, Some(*h))),
        )
        .collect();
    let mut out = Vec::with_capacity(values.len() * behaviors.len() * modes.len());
    for &target_value in &values {
        for behavior in &behaviors {
            for &(predictive_mode, horizon_minutes) in &modes {
                out.push(Candidate {
                    target_value,
                    behavior: behavior.clone(),
                    predictive_mode,
                    horizon_minutes,
                    lead_minutes: horizon_minutes.map(|h| lead_for(delay_minutes, h)),
                });
            }
        }
    }
    out
}

/// `predictive_mode` of the grid's reactive-only candidates.
pub const OFF: &str = "off";
/// `predictive_mode` of the grid's forecasting candidates.
pub const FORECAST_AND_SCALE: &str = "forecast-and-scale";
/// `predictive_mode` of [`Tuning::auto`]'s candidates.
pub const AUTO: &str = "auto";

/// `auto` candidates for [`Tuning::auto`]: one per target value and behavior of `grid`
/// (in its order), at the horizon and lead of that pair's first forecast-and-scale
/// candidate in `ranked` (best first); none for a pair with no such candidate.
pub fn auto_candidates(grid: &[Candidate], ranked: &[Scored]) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = Vec::new();
    for c in grid {
        let seen = out
            .iter()
            .any(|a| a.target_value == c.target_value && a.behavior == c.behavior);
        if seen {
            continue;
        }
        let best = ranked.iter().map(|s| &s.policy).find(|p| {
            p.predictive_mode == FORECAST_AND_SCALE
                && p.target_value == c.target_value
                && p.behavior == c.behavior
        });
        if let Some(b) = best {
            out.push(Candidate {
                predictive_mode: AUTO,
                ..b.clone()
            });
        }
    }
    out
}

/// `pool` with `candidate` in place.
pub fn apply(pool: &Pool, candidate: &Candidate) -> Pool {
    let mut p = pool.clone();
    if let Some(t) = p.targets.first_mut() {
        t.value = candidate.target_value;
    }
    if let Some(b) = presets::by_name(&candidate.behavior) {
        p.behavior = b;
        p.behavior_name = candidate.behavior.clone();
    }
    match candidate.horizon_minutes {
        Some(h) => {
            p.predictive.mode = if candidate.predictive_mode == AUTO {
                PredictiveMode::Auto
            } else {
                PredictiveMode::ForecastAndScale
            };
            p.predictive.horizon = Duration::from_secs(h * 60);
            if let Some(lead) = candidate.lead_minutes {
                p.predictive.lead_time = Duration::from_secs(lead * 60);
            }
        }
        None => p.predictive.mode = PredictiveMode::Off,
    }
    p
}

/// The candidate that stands for the pool as configured, its lead the one it is
/// simulated with (the provisioning delay, as the leader learns it).
fn current_candidate(pool: &Pool, delay_minutes: u32) -> Candidate {
    let mode = pool.predictive.mode;
    let scales = matches!(
        mode,
        PredictiveMode::ForecastAndScale | PredictiveMode::Auto
    );
    Candidate {
        target_value: pool.targets.first().map_or(1.0, |t| t.value),
        behavior: pool.behavior_name.clone(),
        predictive_mode: if scales { mode.as_str() } else { OFF },
        horizon_minutes: scales.then_some(pool.predictive.horizon.as_secs() / 60),
        lead_minutes: scales
            .then(|| lead_for(delay_minutes, pool.predictive.horizon.as_secs() / 60)),
    }
}

pub use crate::brain::simulate::saturation;

/// How a candidate at target `value` runs: one node serves the demand per node
/// scaled to that target, judged on the tuning's saturation line.
pub fn settings_for(pool: &Pool, value: f64, tuning: &Tuning) -> Settings {
    let base = pool.targets.first().map_or(1.0, |t| t.value);
    let line = tuning.saturation.unwrap_or_else(|| saturation(pool));
    Settings {
        demand_per_node: tuning.demand_per_node * value / base,
        delay_minutes: tuning.delay_minutes,
        drain_minutes: tuning.drain_minutes,
        keep_series: false,
        hot_per_node: Some(tuning.demand_per_node * line / base),
        warm_up_minutes: tuning.warm_up_minutes,
    }
}

/// Best first: within the SLO, then cheaper, fewer node-hours, fewer under-provisioned
/// minutes, fewer actions, then the grid's order.
fn rank(a: &(usize, Scored), b: &(usize, Scored)) -> std::cmp::Ordering {
    let (ia, a) = a;
    let (ib, b) = b;
    b.meets_slo
        .cmp(&a.meets_slo)
        .then(a.metrics.cost.total_cmp(&b.metrics.cost))
        .then(a.metrics.node_hours.total_cmp(&b.metrics.node_hours))
        .then(
            a.metrics
                .underprovisioned_minutes
                .cmp(&b.metrics.underprovisioned_minutes),
        )
        .then(a.metrics.actions.cmp(&b.metrics.actions))
        .then(ia.cmp(ib))
}

/// The grid's reactive-only part: every target value and behavior, predictive scaling
/// off (the baseline a forecast must beat at the same SLO).
pub fn reactive_candidates(pool: &Pool) -> Vec<Candidate> {
    candidates(pool, 0)
        .into_iter()
        .filter(|c| c.horizon_minutes.is_none())
        .collect()
}

/// Backtests the grid for `pool` over `demand` (one value a minute from `start`), and
/// with [`Tuning::auto`] the `auto` candidates it leads to.
pub fn tune(
    pool: &Pool,
    budget: &BudgetPolicy,
    demand: &[f64],
    start: DateTime<Utc>,
    tuning: &Tuning,
) -> Report {
    let grid = candidates(pool, tuning.delay_minutes);
    let mut report = tune_over(pool, budget, demand, start, tuning, grid.clone());
    if tuning.auto {
        let autos = auto_candidates(&grid, &report.candidates);
        let results = backtest(pool, budget, demand, start, tuning, &autos);
        // Ranked after the first round's candidates on a tie: an `auto` that never
        // scaled on the forecast is its reactive-only twin, which is the simpler policy.
        let mut ranked: Vec<(usize, Scored)> = report
            .candidates
            .drain(..)
            .chain(autos.into_iter().zip(results).filter_map(|(policy, m)| {
                m.map(|metrics| Scored {
                    meets_slo: metrics.underprovisioned_minutes <= report.slo_minutes,
                    policy,
                    metrics,
                })
            }))
            .enumerate()
            .collect();
        ranked.sort_by(rank);
        report.candidates = ranked.into_iter().map(|(_, s)| s).collect();
        report.best = report.candidates.first().filter(|c| c.meets_slo).cloned();
        report.snippet = report.best.as_ref().map(|b| snippet(pool, &b.policy));
    }
    report
}

/// Runs every candidate of `grid` on the tuning's threads; each result at its index
/// (`None` only where the simulator panicked).
fn backtest(
    pool: &Pool,
    budget: &BudgetPolicy,
    demand: &[f64],
    start: DateTime<Utc>,
    tuning: &Tuning,
    grid: &[Candidate],
) -> Vec<Option<Metrics>> {
    let threads = tuning
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .clamp(1, grid.len().max(1));
    // Work is handed out one candidate at a time (runs differ in cost: forecasting
    // ones take longer); each result is stored at its grid index.
    let next = AtomicUsize::new(0);
    let mut results: Vec<Option<Metrics>> = vec![None; grid.len()];
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                let next = &next;
                s.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(c) = grid.get(i) else { break };
                        let config = apply(pool, c);
                        let settings = settings_for(pool, c.target_value, tuning);
                        done.push((
                            i,
                            simulate::run(&config, budget, demand, start, &settings).0,
                        ));
                    }
                    done
                })
            })
            .collect();
        for w in workers {
            // A worker panics only on a bug in the simulator; its candidates are then
            // missing from the ranking rather than taking the command down.
            if let Ok(done) = w.join() {
                for (i, m) in done {
                    results[i] = Some(m);
                }
            }
        }
    });
    results
}

/// [`tune`] over `grid` instead of the whole grid.
pub fn tune_over(
    pool: &Pool,
    budget: &BudgetPolicy,
    demand: &[f64],
    start: DateTime<Utc>,
    tuning: &Tuning,
    grid: Vec<Candidate>,
) -> Report {
    let current_policy = current_candidate(pool, tuning.delay_minutes);
    let current_metrics = simulate::run(
        pool,
        budget,
        demand,
        start,
        &settings_for(pool, current_policy.target_value, tuning),
    )
    .0;
    let slo = tuning
        .slo_minutes
        .unwrap_or(current_metrics.underprovisioned_minutes);
    let results = backtest(pool, budget, demand, start, tuning, &grid);
    let mut ranked: Vec<(usize, Scored)> = grid
        .into_iter()
        .zip(results)
        .enumerate()
        .filter_map(|(i, (policy, m))| {
            m.map(|metrics| {
                (
                    i,
                    Scored {
                        meets_slo: metrics.underprovisioned_minutes <= slo,
                        policy,
                        metrics,
                    },
                )
            })
        })
        .collect();
    ranked.sort_by(rank);
    let candidates: Vec<Scored> = ranked.into_iter().map(|(_, s)| s).collect();
    let best = candidates.first().filter(|c| c.meets_slo).cloned();
    Report {
        pool: pool.name.clone(),
        minutes: demand.len(),
        warm_up_minutes: tuning.warm_up_minutes.min(demand.len()),
        slo_minutes: slo,
        saturation: tuning.saturation.unwrap_or_else(|| saturation(pool)),
        snippet: best.as_ref().map(|b| snippet(pool, &b.policy)),
        current: Scored {
            meets_slo: current_metrics.underprovisioned_minutes <= slo,
            policy: current_policy,
            metrics: current_metrics,
        },
        best,
        candidates,
    }
}

/// A TOML basic string (JSON's escapes are TOML's).
fn toml_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn target_toml(t: &capstan_config::Target, value: f64) -> String {
    match &t.source {
        TargetSource::Metric(m) => {
            format!("{{ metric = {}, value = {value} }}", toml_str(&m.name()))
        }
        TargetSource::PromQl {
            query,
            url,
            timeout,
        } => format!(
            "{{ promql = {}, prometheus_url = {}, timeout = {}, value = {value} }}",
            toml_str(query),
            toml_str(url),
            toml_str(&humantime::format_duration(*timeout).to_string())
        ),
    }
}

/// The keys of the pool's `[[pool]]` table that put `c` in place, as TOML.
pub fn snippet(pool: &Pool, c: &Candidate) -> String {
    let mut s = format!(
        "# capstan tune: in the [[pool]] table named {}, set:\n",
        toml_str(&pool.name)
    );
    if presets::by_name(&c.behavior).is_some() {
        s.push_str(&format!("behavior = {}\n", toml_str(&c.behavior)));
    } else {
        s.push_str("# behavior: keep the pool's own\n");
    }
    let targets: Vec<String> = pool
        .targets
        .iter()
        .enumerate()
        .map(|(i, t)| target_toml(t, if i == 0 { c.target_value } else { t.value }))
        .collect();
    s.push_str(&format!("targets = [{}]\n", targets.join(", ")));
    let p = &pool.predictive;
    let mode = match (c.horizon_minutes, p.mode) {
        (Some(_), _) if c.predictive_mode == AUTO => AUTO,
        (Some(_), _) => FORECAST_AND_SCALE,
        (None, PredictiveMode::Off) => "off",
        // Forecasts stay in the journal and metrics; they no longer scale the pool.
        (None, _) => "forecast-only",
    };
    let horizon = c
        .horizon_minutes
        .map_or(p.horizon, |h| Duration::from_secs(h * 60));
    s.push_str(&format!(
        "predictive = {{ mode = \"{mode}\", horizon = {}, history = {}, lead_time = {}, anomaly_threshold = {}, anomaly_triggers_emergency = {} }}\n",
        toml_str(&humantime::format_duration(horizon).to_string()),
        toml_str(&humantime::format_duration(p.history).to_string()),
        toml_str(
            &humantime::format_duration(
                c.lead_minutes
                    .map_or(p.lead_time, |m| Duration::from_secs(m * 60))
            )
            .to_string()
        ),
        p.anomaly_threshold,
        p.anomaly_triggers_emergency
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn pool(extra: &str) -> Pool {
        let text = format!(
            r#"
            [[pool]]
            name = "web"
            provider = {{ type = "dry-run" }}
            min = 1
            max = 80
            behavior = "conservative"
            price = {{ on_demand = 1.0 }}
            {extra}
            "#
        );
        capstan_config::from_str("t.toml".as_ref(), &text, std::iter::empty())
            .unwrap()
            .pools
            .remove(0)
    }

    const TARGET_50: &str = r#"targets = [{ metric = "cpu.utilization", value = 50 }]"#;

    fn budget() -> BudgetPolicy {
        BudgetPolicy {
            ceiling: None,
            emergency_allowance: 0.0,
            enforce: capstan_config::BudgetEnforcement::Report,
        }
    }

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 5, 0, 0, 0).unwrap()
    }

    fn tuning(slo: Option<u64>, threads: usize) -> Tuning {
        Tuning {
            demand_per_node: 100.0,
            delay_minutes: 5,
            drain_minutes: 0,
            slo_minutes: slo,
            saturation: None,
            threads: Some(threads),
            warm_up_minutes: 0,
            auto: false,
        }
    }

    #[test]
    fn the_grid_covers_targets_behaviors_and_predictive_modes_in_a_fixed_order() {
        let grid = candidates(&pool(TARGET_50), 3);
        assert_eq!(grid.len(), 7 * 3 * 4);
        assert_eq!(grid[0].target_value, 30.0);
        assert_eq!(grid[0].behavior, "aggressive");
        assert_eq!(grid[0].predictive_mode, "off");
        assert_eq!(grid[1].horizon_minutes, Some(15));
        assert_eq!(grid.last().unwrap().target_value, 60.0);
        // Forecasting candidates size capacity one provisioning delay ahead (at least a
        // minute), never past their horizon; reactive ones have no lead.
        assert_eq!(grid[0].lead_minutes, None);
        assert_eq!(grid[1].lead_minutes, Some(3));
        assert_eq!(
            (
                lead_for(10, 30),
                lead_for(11, 30),
                lead_for(40, 30),
                lead_for(0, 15)
            ),
            (10, 11, 30, 1)
        );
        let slow = apply(&pool(TARGET_50), &candidates(&pool(TARGET_50), 12)[1]);
        assert_eq!(slow.predictive.lead_time, Duration::from_secs(12 * 60));
        // A custom behavior is tried beside the presets; percentages stop at 100.
        let custom = pool(TARGET_50).clone_with(|p| {
            p.behavior_name = "custom".into();
            p.targets[0].value = 90.0;
        });
        let grid = candidates(&custom, 3);
        assert!(grid.iter().all(|c| c.target_value <= 100.0));
        assert!(grid.iter().any(|c| c.behavior == "custom"));
    }

    trait CloneWith {
        fn clone_with(&self, f: impl FnOnce(&mut Self)) -> Self;
    }
    impl CloneWith for Pool {
        fn clone_with(&self, f: impl FnOnce(&mut Self)) -> Self {
            let mut p = self.clone();
            f(&mut p);
            p
        }
    }

    /// Demand of 2,000 (20 nodes' worth at the current target of 60) with a surge to
    /// 1.6× for half an hour every two hours; new nodes take 5 minutes. A pool that
    /// holds its nodes at a target T runs at 1.6 T in a surge until new nodes arrive:
    /// above 100 % (saturated) for T > 62.5. So the known best target is 60: the
    /// highest in the grid (36 … 72) that rides every surge; 66 and 72 are cheaper but
    /// saturate in each surge.
    fn surges() -> Vec<f64> {
        (0..2 * 1440)
            .map(|m| {
                if m % 120 >= 60 && m % 120 < 90 {
                    3200.0
                } else {
                    2000.0
                }
            })
            .collect()
    }

    /// The lowest cost among `grid`'s candidates within `slo` saturated minutes, each
    /// run on its own (not through [`tune`]).
    fn cheapest_within(p: &Pool, grid: &[Candidate], demand: &[f64], t: &Tuning, slo: u64) -> f64 {
        grid.iter()
            .filter_map(|c| {
                let m = simulate::run(
                    &apply(p, c),
                    &budget(),
                    demand,
                    start(),
                    &settings_for(p, c.target_value, t),
                )
                .0;
                (m.underprovisioned_minutes <= slo).then_some(m.cost)
            })
            .fold(f64::INFINITY, f64::min)
    }

    #[test]
    fn on_a_surging_trace_it_finds_the_known_best_and_ranks_deterministically() {
        let p = pool("tolerance = 0.0\ntargets = [{ metric = \"cpu.utilization\", value = 60 }]");
        let demand = surges();
        // The start ramps up from one node: every candidate is short for a while.
        let slo = Some(30);
        let report = tune(&p, &budget(), &demand, start(), &tuning(slo, 2));
        let best = report.best.clone().expect("a candidate within the SLO");
        assert_eq!(best.policy.target_value, 60.0, "{best:?}");
        assert_eq!(report.saturation, 100.0);
        for c in &report.candidates {
            if c.policy.target_value > 62.5 {
                assert!(!c.meets_slo, "{c:?}");
            }
        }
        // The ranking is the same on one thread.
        let again = tune(&p, &budget(), &demand, start(), &tuning(slo, 1));
        assert_eq!(again.candidates, report.candidates);
        // And the best is the cheapest within the SLO by an independent run of each.
        let cheapest = cheapest_within(&p, &candidates(&p, 5), &demand, &tuning(slo, 1), 30);
        assert_eq!(best.metrics.cost, cheapest);
        let snippet = report.snippet.unwrap();
        assert!(
            snippet.contains("targets = [{ metric = \"cpu.utilization\", value = 60 }]"),
            "{snippet}"
        );
        // The snippet is valid config.
        let text = format!(
            "[[pool]]\nname = \"web\"\nprovider = {{ type = \"dry-run\" }}\nmin = 1\nmax = 80\n{snippet}"
        );
        capstan_config::from_str("t.toml".as_ref(), &text, std::iter::empty())
            .unwrap_or_else(|e| panic!("{}\n{text}", e.lines().join("\n")));
    }

    /// `simulate --compare`'s baseline: over the reactive-only part of the grid, the
    /// best is reactive-only, within the policy's own saturated minutes, and the
    /// cheapest such one by an independent run of each reactive candidate.
    #[test]
    fn the_reactive_grid_finds_the_cheapest_reactive_policy_at_the_policys_slo() {
        let p = pool(
            "tolerance = 0.0
targets = [{ metric = \"cpu.utilization\", value = 60 }]",
        );
        let grid = reactive_candidates(&p);
        assert_eq!(grid.len(), 7 * 3);
        assert!(grid.iter().all(|c| c.predictive_mode == "off"));
        let demand = surges();
        let t = tuning(None, 2);
        let report = tune_over(&p, &budget(), &demand, start(), &t, grid.clone());
        assert_eq!(report.candidates.len(), grid.len());
        let slo = report.current.metrics.underprovisioned_minutes;
        assert_eq!(report.slo_minutes, slo);
        let best = report.best.expect("the policy itself is in the grid");
        assert_eq!(best.policy.predictive_mode, "off");
        assert!(best.metrics.underprovisioned_minutes <= slo);
        let cheapest = cheapest_within(&p, &grid, &demand, &t, slo);
        assert_eq!(best.metrics.cost, cheapest);
    }

    /// `--auto`: one `auto` candidate per target value and behavior, at the horizon of
    /// that pair's best forecast-and-scale candidate, each scored as an independent run
    /// of its policy scores it, ranked with the rest; its snippet is valid config.
    #[test]
    fn with_auto_each_target_and_behavior_gets_an_auto_candidate_at_its_best_horizon() {
        let p = pool("tolerance = 0.0\ntargets = [{ metric = \"cpu.utilization\", value = 60 }]");
        // Four and a half days: auto backtests from the fourth on, every six hours.
        let demand: Vec<f64> = (0..9 * 720).map(|m| surges()[m % 2880]).collect();
        let t = Tuning {
            auto: true,
            ..tuning(None, 2)
        };
        let report = tune(&p, &budget(), &demand, start(), &t);
        let plain = tune(&p, &budget(), &demand, start(), &tuning(None, 2));
        assert_eq!(report.candidates.len(), plain.candidates.len() + 7 * 3);
        let autos: Vec<&Scored> = report
            .candidates
            .iter()
            .filter(|c| c.policy.predictive_mode == AUTO)
            .collect();
        assert_eq!(autos.len(), 7 * 3);
        for a in &autos {
            let best_forecast = plain
                .candidates
                .iter()
                .find(|c| {
                    c.policy.predictive_mode == FORECAST_AND_SCALE
                        && c.policy.target_value == a.policy.target_value
                        && c.policy.behavior == a.policy.behavior
                })
                .unwrap();
            assert_eq!(
                a.policy.horizon_minutes,
                best_forecast.policy.horizon_minutes
            );
            assert_eq!(a.policy.lead_minutes, best_forecast.policy.lead_minutes);
            let config = apply(&p, &a.policy);
            assert_eq!(config.predictive.mode, PredictiveMode::Auto);
            let alone = simulate::run(
                &config,
                &budget(),
                &demand,
                start(),
                &settings_for(&p, a.policy.target_value, &t),
            )
            .0;
            assert_eq!(a.metrics, alone, "{:?}", a.policy);
            assert_eq!(
                a.meets_slo,
                alone.underprovisioned_minutes <= report.slo_minutes
            );
        }
        // Best first, the first round's candidates kept as they were.
        for w in report.candidates.windows(2) {
            assert!(w[0].meets_slo >= w[1].meets_slo);
            if w[0].meets_slo == w[1].meets_slo {
                assert!(w[0].metrics.cost <= w[1].metrics.cost);
            }
        }
        let rest: Vec<&Scored> = report
            .candidates
            .iter()
            .filter(|c| c.policy.predictive_mode != AUTO)
            .collect();
        assert_eq!(rest, plain.candidates.iter().collect::<Vec<_>>());
        let snippet = snippet(&p, &autos[0].policy);
        assert!(snippet.contains("mode = \"auto\""), "{snippet}");
        let text = format!(
            "[[pool]]\nname = \"web\"\nprovider = {{ type = \"dry-run\" }}\nmin = 1\nmax = 80\n{snippet}"
        );
        let parsed = capstan_config::from_str("t.toml".as_ref(), &text, std::iter::empty())
            .unwrap_or_else(|e| panic!("{}\n{text}", e.lines().join("\n")));
        assert_eq!(parsed.pools[0].predictive.mode, PredictiveMode::Auto);
    }

    #[test]
    fn without_an_slo_the_current_policys_own_minutes_are_the_line() {
        let demand: Vec<f64> = (0..1440)
            .map(|m| if m < 720 { 1000.0 } else { 3000.0 })
            .collect();
        let report = tune(
            &pool(TARGET_50),
            &budget(),
            &demand,
            start(),
            &tuning(None, 2),
        );
        assert_eq!(
            report.slo_minutes,
            report.current.metrics.underprovisioned_minutes
        );
        assert!(report.current.meets_slo);
        let best = report.best.unwrap();
        assert!(best.metrics.cost <= report.current.metrics.cost);
    }
}
