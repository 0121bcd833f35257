//! `capstan forecast`, `detect`, `simulate` and `tune`: the brain replayed over a
//! `timestamp,value` trace.

use super::*;

pub(super) fn fmt_time(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub(super) fn fmt_value(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

pub(super) fn forecast_csv(csv: &Path, horizon: std::time::Duration) -> anyhow::Result<()> {
    let points = crate::tools::trace::read_csv(csv)?;
    let forecasts = crate::tools::analysis::forecast(&points, horizon)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "timestamp,value,forecast")?;
    for (p, f) in points.iter().zip(forecasts) {
        let f = f.map(|v| format!("{v:.6}")).unwrap_or_default();
        writeln!(out, "{},{},{f}", fmt_time(p.at), fmt_value(p.value))?;
    }
    out.flush()?;
    Ok(())
}

/// `capstan tune`: `trace`, else the pool's stored history.
#[allow(clippy::too_many_arguments)]
pub(super) fn tune(
    cfg: &ValidatedConfig,
    pool: &str,
    trace: Option<&Path>,
    demand_per_node: Option<f64>,
    (delay, drain): (std::time::Duration, std::time::Duration),
    slo_minutes: Option<u64>,
    saturation: Option<f64>,
    (warm_up, auto): (Option<std::time::Duration>, bool),
    svg: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let config = pool_to_replay(cfg, pool)?;
    let points = match trace {
        Some(path) => crate::tools::trace::read_csv(path)?,
        None => {
            let dir = cfg.agent.state_dir.join("history");
            let points: Vec<crate::tools::trace::Point> =
                crate::state::demand::read_only(&dir, &config.name)
                    .with_context(|| format!("cannot read {}", dir.display()))?
                    .into_iter()
                    .filter_map(|(minute, values)| {
                        let at = chrono::DateTime::from_timestamp(minute.checked_mul(60)?, 0)?;
                        Some(crate::tools::trace::Point {
                            at: at.naive_utc(),
                            value: values.first().copied().flatten()?,
                        })
                    })
                    .collect();
            anyhow::ensure!(
                points.len() >= 2,
                "--history: {} holds {} minute(s) of pool {pool}'s demand; the agent writes one a minute while it leads (predictive mode not off)",
                dir.join(format!("{pool}.csv")).display(),
                points.len()
            );
            points
        }
    };
    let prepared = crate::tools::analysis::prepare(&points)?;
    let demand = crate::tools::simulate::per_minute(&prepared.grid);
    let peak = demand.iter().copied().fold(0.0_f64, f64::max);
    let target = config.targets.first().map_or(1.0, |t| t.value);
    if let Some(s) = saturation {
        anyhow::ensure!(s.is_finite() && s > 0.0, "--saturation must be above 0");
    }
    let tuning = crate::tools::tune::Tuning {
        // The history holds the target's readings summed over the pool: one node at
        // the target serves the target's value.
        demand_per_node: match (trace, demand_per_node) {
            (None, None) => target,
            (_, given) => demand_per_node_or_peak(given, peak, config)?,
        },
        delay_minutes: whole_minutes(delay),
        drain_minutes: whole_minutes(drain),
        slo_minutes,
        saturation,
        threads: None,
        warm_up_minutes: warm_up_minutes(warm_up, demand.len())?,
        auto,
    };
    let budget = crate::brain::budget::BudgetPolicy::from(&cfg.budget);
    let start = crate::tools::simulate::start_of(prepared.grid.start);
    let report = crate::tools::tune::tune(config, &budget, &demand, start, &tuning);
    if let Some(path) = svg {
        let title = format!(
            "capstan tune: pool {pool}, {}, {} min provisioning delay, {:.0} days",
            trace.map_or_else(|| "stored history".to_owned(), file_name),
            tuning.delay_minutes,
            demand.len() as f64 / 1440.0
        );
        std::fs::write(path, frontier_svg(&title, &report))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "pool {pool}: {} candidates over {:.1} days{}, {} min provisioning delay{}, one node serves {:.1} at target {target}; under-provisioned above {} per node; SLO {} minute(s)",
        report.candidates.len(),
        demand.len() as f64 / 1440.0,
        scored_after(report.warm_up_minutes),
        tuning.delay_minutes,
        drained_for(tuning.drain_minutes),
        tuning.demand_per_node,
        report.saturation,
        report.slo_minutes
    )?;
    let line = |s: &crate::tools::tune::Scored| {
        let p = &s.policy;
        let predictive = predictive_label(p);
        format!(
            "target {:>6} {:<12} {:<24} cost {:>10.2}  node-h {:>9.1}  short {:>5} min  actions {:>5}{}",
            p.target_value,
            p.behavior,
            predictive,
            s.metrics.cost,
            s.metrics.node_hours,
            s.metrics.underprovisioned_minutes,
            s.metrics.actions,
            if s.meets_slo {
                ""
            } else {
                "  (outside the SLO)"
            }
        )
    };
    writeln!(out, "current  {}", line(&report.current))?;
    match &report.best {
        Some(best) => {
            writeln!(out, "best     {}", line(best))?;
            let saving = report.current.metrics.cost - best.metrics.cost;
            if report.current.metrics.cost > 0.0 {
                writeln!(
                    out,
                    "         {saving:.2} less over the trace ({:.1} %)",
                    100.0 * saving / report.current.metrics.cost
                )?;
            }
        }
        None => writeln!(
            out,
            "no candidate stays within {} under-provisioned minute(s); the closest:
         {}",
            report.slo_minutes,
            report.candidates.first().map(line).unwrap_or_default()
        )?,
    }
    writeln!(out, "next best:")?;
    for c in report.candidates.iter().skip(1).take(5) {
        writeln!(out, "         {}", line(c))?;
    }
    if let Some(snippet) = &report.snippet {
        writeln!(out)?;
        write!(out, "{snippet}")?;
    }
    Ok(())
}

/// A trace's file name, for a figure's title (not the path it was read from).
fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// `reactive`, or the predictive mode and its horizon (`forecast-and-scale 15m`).
fn predictive_label(c: &crate::tools::tune::Candidate) -> String {
    match c.horizon_minutes {
        Some(h) => format!("{} {h}m", c.predictive_mode),
        None => "reactive".to_owned(),
    }
}

/// A candidate in a few words, for a figure.
fn describe(c: &crate::tools::tune::Candidate) -> String {
    format!(
        "target {}, {}, {}",
        c.target_value,
        c.behavior,
        predictive_label(c)
    )
}

/// `tune --svg`: every candidate on the frontier, the chosen and current marked.
fn frontier_svg(title: &str, report: &crate::tools::tune::Report) -> String {
    use crate::tools::plot::{Point, frontier};
    let point = |s: &crate::tools::tune::Scored| Point {
        saturated_minutes: s.metrics.underprovisioned_minutes,
        node_hours: s.metrics.node_hours,
        predictive: s.policy.horizon_minutes.is_some(),
    };
    let points: Vec<Point> = report.candidates.iter().map(point).collect();
    let chosen = report
        .best
        .as_ref()
        .map(|b| (point(b), format!("chosen: {}", describe(&b.policy))));
    let current = format!("current: {}", describe(&report.current.policy));
    frontier(
        title,
        &points,
        report.slo_minutes,
        chosen.as_ref().map(|(p, t)| (*p, t.as_str())),
        (point(&report.current), &current),
    )
}

/// `--demand-per-node` when given (above 0), else what makes the trace's peak need
/// 80 % of the pool's max.
pub(super) fn demand_per_node_or_peak(
    given: Option<f64>,
    peak: f64,
    config: &capstan_config::Pool,
) -> anyhow::Result<f64> {
    match given {
        Some(x) => {
            anyhow::ensure!(
                x.is_finite() && x > 0.0,
                "--demand-per-node must be above 0"
            );
            Ok(x)
        }
        None => Ok((peak / (0.8 * f64::from(config.max))).max(f64::MIN_POSITIVE)),
    }
}

/// `--warm-up` in minutes; by default 3 days on a trace of at least 9 days, else none.
/// A warm-up that leaves nothing of the trace to score is refused.
pub(super) fn warm_up_minutes(
    given: Option<std::time::Duration>,
    minutes: usize,
) -> anyhow::Result<usize> {
    const DEFAULT_DAYS: usize = 3;
    match given {
        Some(d) => {
            let w = usize::try_from(d.as_secs() / 60).unwrap_or(usize::MAX);
            anyhow::ensure!(
                w < minutes,
                "--warm-up {} leaves nothing to score of the {:.1}-day trace",
                humantime::format_duration(d),
                minutes as f64 / 1440.0
            );
            Ok(w)
        }
        None if minutes >= 3 * DEFAULT_DAYS * 1440 => Ok(DEFAULT_DAYS * 1440),
        None => Ok(0),
    }
}

/// ", scored after a 3.0-day warm-up" (nothing without one).
fn scored_after(warm_up_minutes: usize) -> String {
    if warm_up_minutes == 0 {
        String::new()
    } else {
        format!(
            ", scored after a {:.1}-day warm-up",
            warm_up_minutes as f64 / 1440.0
        )
    }
}

/// ", a N min drain" when nodes drain before they go.
fn drained_for(drain_minutes: u32) -> String {
    if drain_minutes == 0 {
        String::new()
    } else {
        format!(", a {drain_minutes} min drain")
    }
}

/// A provisioning delay in whole minutes, rounded up.
pub(super) fn whole_minutes(delay: std::time::Duration) -> u32 {
    u32::try_from(delay.as_secs().div_ceil(60)).unwrap_or(u32::MAX)
}

/// The pool `simulate` and `tune` replay: it must exist and have a target.
pub(super) fn pool_to_replay<'c>(
    cfg: &'c ValidatedConfig,
    pool: &str,
) -> anyhow::Result<&'c capstan_config::Pool> {
    let Some(config) = cfg.pool(pool) else {
        let names: Vec<&str> = cfg.pools.iter().map(|p| p.name.as_str()).collect();
        anyhow::bail!(
            "--pool {pool}: no such pool in {}; configured: {}",
            cfg.source.display(),
            names.join(", ")
        );
    };
    if let Some(group) = &config.group {
        anyhow::bail!(
            "pool {pool} is a member of group {group}, which sizes it; its targets are the group's"
        );
    }
    anyhow::ensure!(
        !config.targets.is_empty(),
        "pool {pool} has no target for the trace to drive"
    );
    Ok(config)
}

#[allow(clippy::too_many_arguments)]
pub(super) fn simulate(
    cfg: &ValidatedConfig,
    pool: &str,
    trace: &Path,
    demand_per_node: Option<f64>,
    (delay, drain): (std::time::Duration, std::time::Duration),
    warm_up: Option<std::time::Duration>,
    compare: bool,
    svg: Option<(&Path, super::Window)>,
    json: bool,
) -> anyhow::Result<()> {
    use crate::tools::simulate as sim;
    let config = pool_to_replay(cfg, pool)?;
    let points = crate::tools::trace::read_csv(trace)?;
    let prepared = crate::tools::analysis::prepare(&points)?;
    let demand = sim::per_minute(&prepared.grid);
    let peak = demand.iter().copied().fold(0.0_f64, f64::max);
    let x = demand_per_node_or_peak(demand_per_node, peak, config)?;
    let settings = sim::Settings {
        demand_per_node: x,
        delay_minutes: whole_minutes(delay),
        drain_minutes: whole_minutes(drain),
        keep_series: svg.is_some(),
        hot_per_node: None,
        warm_up_minutes: warm_up_minutes(warm_up, demand.len())?,
    };
    // The pool alone under the fleet's budget; its own max_hourly_cost applies too.
    let budget = crate::brain::budget::BudgetPolicy::from(&cfg.budget);
    let start = sim::start_of(prepared.grid.start);
    let (policy, series) = sim::run(config, &budget, &demand, start, &settings);
    let reactive = compare.then(|| {
        sim::run(
            &sim::reactive_only(config),
            &budget,
            &demand,
            start,
            &sim::Settings {
                keep_series: false,
                ..settings.clone()
            },
        )
        .0
    });
    // The honest comparison: every reactive-only policy of tune's grid (target values,
    // behaviors) judged against the policy on the same saturation line; the cheapest
    // with no more saturated minutes than the policy.
    let tuning = crate::tools::tune::Tuning {
        demand_per_node: x,
        delay_minutes: settings.delay_minutes,
        drain_minutes: settings.drain_minutes,
        slo_minutes: None,
        saturation: None,
        threads: None,
        warm_up_minutes: settings.warm_up_minutes,
        auto: false,
    };
    let same_slo = compare.then(|| {
        crate::tools::tune::tune_over(
            config,
            &budget,
            &demand,
            start,
            &tuning,
            crate::tools::tune::reactive_candidates(config),
        )
    });
    if let Some((path, window)) = svg {
        // Beside the policy: the best reactive-only policy at the same SLO, else
        // reactive-only at the same target.
        let baseline = same_slo.as_ref().map(|t| match &t.best {
            Some(best) => (
                crate::tools::tune::apply(config, &best.policy),
                format!(
                    "best reactive-only at the same SLO ({})",
                    describe(&best.policy)
                ),
                best.policy.target_value,
            ),
            None => (
                sim::reactive_only(config),
                "reactive-only at the same target".to_owned(),
                config.targets.first().map_or(1.0, |t| t.value),
            ),
        });
        let baseline = baseline.map(|(pool, name, value)| {
            // Run as tune ran it, keeping its series.
            let s = sim::Settings {
                keep_series: true,
                ..crate::tools::tune::settings_for(config, value, &tuning)
            };
            (sim::run(&pool, &budget, &demand, start, &s).1, name)
        });
        let mut runs = vec![sim::Run {
            name: format!(
                "policy ({}, target {})",
                config.predictive.mode.as_str(),
                config.targets.first().map_or(1.0, |t| t.value)
            ),
            series: &series,
        }];
        if let Some((series, name)) = &baseline {
            runs.push(sim::Run {
                name: name.clone(),
                series,
            });
        }
        let range = match window {
            super::Window::All => 0..demand.len(),
            super::Window::Minutes(m) => {
                let peak_at = demand
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map_or(0, |(i, _)| i);
                crate::tools::plot::busiest_window(&series.saturated, m, peak_at)
            }
        };
        let title = format!(
            "{}: pool {pool}, {} min provisioning delay, {:.1} of {:.1} days",
            file_name(trace),
            settings.delay_minutes,
            range.len() as f64 / 1440.0,
            demand.len() as f64 / 1440.0
        );
        std::fs::write(path, sim::svg(&title, start, range, &runs))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if json {
        let mut doc = serde_json::json!({
            "policy": policy,
            "warm_up_minutes": settings.warm_up_minutes,
            "drain_minutes": settings.drain_minutes,
        });
        if let Some(r) = &reactive {
            doc["reactive"] = serde_json::to_value(r)?;
        }
        if let Some(t) = &same_slo {
            doc["same_slo"] = serde_json::json!({
                "saturation": t.saturation,
                "slo_minutes": t.slo_minutes,
                "policy": t.current,
                "best_reactive": t.best,
            });
        }
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "pool {pool}: {:.1} days{}, {} min provisioning delay{}, one node serves {x:.1} (peak {peak:.1})",
        demand.len() as f64 / 1440.0,
        scored_after(settings.warm_up_minutes),
        settings.delay_minutes,
        drained_for(settings.drain_minutes)
    )?;
    let fmt_mase = |m: Option<f64>| m.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
    type Cell = Box<dyn Fn(&sim::Metrics) -> String>;
    let rows: [(&str, Cell); 6] = [
        ("node-hours", Box::new(|m| format!("{:.1}", m.node_hours))),
        ("cost", Box::new(|m| format!("{:.2}", m.cost))),
        (
            "under-provisioned minutes",
            Box::new(|m| m.underprovisioned_minutes.to_string()),
        ),
        (
            "under-provisioned demand",
            Box::new(|m| format!("{:.1}", m.underprovisioned_demand)),
        ),
        ("scaling actions", Box::new(|m| m.actions.to_string())),
        ("forecast MASE", Box::new(move |m| fmt_mase(m.mase))),
    ];
    writeln!(
        out,
        "{:<28} {:>16}{}",
        "",
        format!("policy ({})", config.predictive.mode.as_str()),
        if reactive.is_some() {
            format!(" {:>16}", "reactive")
        } else {
            String::new()
        }
    )?;
    for (label, f) in &rows {
        write!(out, "{label:<28} {:>16}", f(&policy))?;
        if let Some(r) = &reactive {
            write!(out, " {:>16}", f(r))?;
        }
        writeln!(out)?;
    }
    if let Some(t) = &same_slo {
        write_same_slo(&mut out, t)?;
    }
    Ok(())
}

/// The policy beside the cheapest reactive-only policy with no more saturated minutes
/// (a node's metric above the saturation line) than it: whether the forecast pays for
/// itself, which lowering the target could also buy.
fn write_same_slo(out: &mut impl Write, t: &crate::tools::tune::Report) -> std::io::Result<()> {
    let p = &t.current.metrics;
    writeln!(
        out,
        "\nat the same SLO: {} saturated minutes (the metric above {} on a node)",
        t.slo_minutes, t.saturation
    )?;
    let Some(best) = &t.best else {
        return writeln!(
            out,
            "no reactive-only policy of the grid (target ×0.6 to ×1.2, every behavior preset) stays within it"
        );
    };
    let b = &best.metrics;
    writeln!(
        out,
        "cheapest reactive-only policy within it: target {}, behavior {}",
        best.policy.target_value, best.policy.behavior
    )?;
    writeln!(
        out,
        "{:<28} {:>16} {:>16}",
        "",
        format!("policy ({})", t.current.policy.predictive_mode),
        "best reactive"
    )?;
    writeln!(
        out,
        "{:<28} {:>16.1} {:>16.1}",
        "node-hours", p.node_hours, b.node_hours
    )?;
    writeln!(out, "{:<28} {:>16.2} {:>16.2}", "cost", p.cost, b.cost)?;
    writeln!(
        out,
        "{:<28} {:>16} {:>16}",
        "saturated minutes", p.underprovisioned_minutes, b.underprovisioned_minutes
    )?;
    let ratio = if b.node_hours > 0.0 {
        p.node_hours / b.node_hours
    } else {
        f64::NAN
    };
    writeln!(
        out,
        "the policy needs {ratio:.3}× the best reactive-only policy's node-hours at the same SLO"
    )
}

pub(super) fn detect_csv(csv: &Path, threshold: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        threshold.is_finite() && threshold > 0.0,
        "--threshold must be a positive number of standard deviations, e.g. 2.5"
    );
    let points = crate::tools::trace::read_csv(csv)?;
    let verdicts = crate::tools::analysis::detect(&points, threshold)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "timestamp,value,anomaly_score,label")?;
    for (p, v) in points.iter().zip(verdicts) {
        writeln!(
            out,
            "{},{},{:.6},{}",
            fmt_time(p.at),
            fmt_value(p.value),
            v.score,
            u8::from(v.score >= 0.5)
        )?;
    }
    out.flush()?;
    Ok(())
}
