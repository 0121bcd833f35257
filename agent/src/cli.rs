//! The command line: `run`, `validate`, `plan`, `status`, and `completions` and `man`
//! for packagers.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde::Serialize;

use capstan_collectors::host::HostCollector;
use capstan_collectors::{Collector, NodeReport};
use capstan_config::{ConfigError, ValidatedConfig};

use crate::brain::Reason;
use crate::clock::{Clock, SystemClock};
use crate::coordinator::{Coordinator, Standalone};
use crate::daemon::{self, ConfigSource};
use crate::engine::{self, Mode};
use crate::http::Status;

/// The embedded default configuration: `examples/standalone.toml`.
pub const EMBEDDED_CONFIG: &str = include_str!("../../examples/standalone.toml");
const EMBEDDED_NAME: &str = "<embedded>/examples/standalone.toml";

/// Capstan scales cloud node pools from node telemetry.
#[derive(Debug, Parser)]
#[command(name = "capstan", version = crate::build::VERSION_LINE, about)]
pub struct Cli {
    /// Log lines as human-readable text (default) or one JSON object per line for log
    /// shippers. Logs go to stderr; CAPSTAN_LOG sets the filter (e.g. `debug`).
    #[arg(long, global = true, value_enum, env = "CAPSTAN_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: collect, lead (standalone), plan and act every interval.
    Run {
        /// Configuration file; the embedded default (examples/standalone.toml) when absent.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check a configuration file without starting anything. Exit 1 listing every problem.
    Validate {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// One pass of collect, describe and plan, printed per pool with reasons. Never acts.
    Plan {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// Print JSON: {"pools": [{"name", "tier", "current", "desired", "on_demand", "spot",
        /// "hourly_cost", "reasons", ...}], "fleet_hourly_cost", "budget_ceiling"}.
        #[arg(long)]
        json: bool,
    },
    /// Replay a `timestamp,value` CSV through the forecaster. Prints
    /// `timestamp,value,forecast` for every row, where `forecast` is the value predicted
    /// for that timestamp from the data up to `horizon` before it (empty during warm-up).
    Forecast {
        /// The CSV file (NAB's format: a `timestamp,value` header).
        #[arg(long)]
        csv: PathBuf,
        /// How far ahead, e.g. 30m.
        #[arg(long, default_value = "30m", value_parser = parse_duration)]
        horizon: std::time::Duration,
    },
    /// Score a `timestamp,value` CSV for anomalies. Prints
    /// `timestamp,value,anomaly_score,label` for every row. The score, in [0, 1], ranks
    /// how surprising the row is: the forecast residual's tail probability, or a value
    /// beyond the range of the last 5,000 points, on a scale where 0.5 is as rare as a
    /// `--threshold`-σ normal event; the label is 1 where the score is at least 0.5.
    /// (The agent itself journals and acts on residual onsets only: the robust z-score
    /// reaches the threshold and beats the last 500 points.)
    Detect {
        /// The CSV file (NAB's format: a `timestamp,value` header).
        #[arg(long)]
        csv: PathBuf,
        /// Robust z-score threshold.
        #[arg(long, default_value_t = 2.5)]
        threshold: f64,
    },
    /// Replay a `timestamp,value` demand trace through a pool's policy (the daemon's own
    /// planner) against a simulated pool with a provisioning delay. Prints node-hours,
    /// cost, minutes and demand under-provisioned, scaling actions and forecast MASE.
    Simulate {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The pool whose policy to replay.
        #[arg(long)]
        pool: String,
        /// The demand trace (`timestamp,value`).
        #[arg(long)]
        trace: PathBuf,
        /// Demand one node serves at the pool's first target. Default: the trace's peak
        /// needs 80 % of the pool's max.
        #[arg(long)]
        demand_per_node: Option<f64>,
        /// How long a new node takes to serve.
        #[arg(long, default_value = "3m", value_parser = parse_duration)]
        provisioning_delay: std::time::Duration,
        /// Also run reactive-only (predictive scaling off) beside the configured policy.
        #[arg(long)]
        compare: bool,
        /// Write an SVG plot of demand, capacity and forecast here.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Print JSON: {"policy": M, "reactive": M} (reactive with --compare), where each
        /// M has node_hours, cost, underprovisioned_minutes, underprovisioned_demand,
        /// actions and mase.
        #[arg(long)]
        json: bool,
    },
    /// Backtest a grid of policies for a pool (target values, behavior presets,
    /// predictive mode and horizon) and print the cheapest within the SLO, beside the
    /// current policy, as a TOML snippet.
    Tune {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
        /// The pool to tune.
        #[arg(long)]
        pool: String,
        /// The demand trace (`timestamp,value`).
        #[arg(long, conflicts_with = "history", required_unless_present = "history")]
        trace: Option<PathBuf>,
        /// Take the trace from the pool's stored demand history
        /// (`<state_dir>/history/<pool>.csv`, its first target) instead.
        #[arg(long)]
        history: bool,
        /// Under-provisioned minutes allowed over the trace. Default: as many as the
        /// current policy has (no worse than today).
        #[arg(long)]
        slo_minutes: Option<u64>,
        /// Demand one node serves at the pool's current first target. Default: with
        /// --history, the target's value (the history holds the target's readings
        /// summed over the pool); with --trace, the peak needs 80 % of the pool's max.
        #[arg(long)]
        demand_per_node: Option<f64>,
        /// The metric's value per node at which a node is saturated: a minute above it
        /// is under-provisioned. Default: 100 for a percentage, else the current target
        /// plus its tolerance.
        #[arg(long)]
        saturation: Option<f64>,
        /// How long a new node takes to serve.
        #[arg(long, default_value = "3m", value_parser = parse_duration)]
        provisioning_delay: std::time::Duration,
        /// Print JSON: pool, minutes, slo_minutes, saturation, current, best (null when
        /// no candidate meets the SLO), snippet, candidates (best first); each with
        /// policy {target_value, behavior, predictive_mode, horizon_minutes}, metrics (as
        /// `simulate --json`) and meets_slo.
        #[arg(long)]
        json: bool,
    },
    /// Per pool, from the usage the leader recorded: p50, p95 and max of CPU, memory,
    /// GPU and GPU memory utilization, and the size of the same instance family that
    /// would serve it for the least money, with the monthly saving and the evidence.
    Rightsizing {
        /// Configuration file (its `agent.state_dir` holds the usage history).
        #[arg(long, short)]
        config: PathBuf,
        /// Days to look back (1 to 35).
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// Print JSON: one object per pool with pool, days, minutes, nodes ({mean,
        /// max}), cpu, memory, gpu, gpu_memory ({p50, p95, max} or null), instance_type,
        /// recommendation (current_type, instance_type, change, current_nodes, nodes,
        /// hourly_cost_now, hourly_cost_then, monthly_saving, options) and evidence.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script to stdout (packaging/completions/ holds them).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write every page (capstan(1) and one
    /// capstan-COMMAND(1) per subcommand) into a directory (packaging/man/ holds them).
    Man {
        /// Write capstan.1 and every capstan-COMMAND.1 into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Print the configuration's JSON Schema (packaging/schema/capstan.schema.json).
    ConfigSchema,
    /// Print this node's report, as the agent sends it: host, GPUs and workload metrics.
    Collect {
        /// Configuration file (the node's name and pool, `[[scrape]]` endpoints); the
        /// embedded default without it.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Print one report and exit; without it, one every `agent.interval` until Ctrl-C.
        #[arg(long)]
        once: bool,
        /// Print the report's JSON (one line each), exactly as sent to the leader.
        #[arg(long)]
        json: bool,
    },
    /// Show a running agent's status as a table.
    Status {
        /// The agent's base URL, e.g. http://127.0.0.1:9464.
        #[arg(long, default_value = "http://127.0.0.1:9464")]
        url: String,
        /// Print the raw JSON of /v1/status.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAPSTAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            builder.with_ansi(ansi).init();
        }
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}

/// The man pages, as roff: `capstan.1` first, then `capstan-COMMAND.1` for each
/// subcommand (the main page's SUBCOMMANDS section refers to them). The pages carry the
/// plain version, not the revision, so they change only with the interface.
pub fn man_pages() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let mut cli = <Cli as clap::CommandFactory>::command().version(crate::build::VERSION);
    // Built, so that clap's own `help` subcommand is listed (the main page names it).
    cli.build();
    let mut pages = Vec::new();
    let mut out = Vec::new();
    clap_mangen::Man::new(cli.clone()).render(&mut out)?;
    pages.push(("capstan.1".to_owned(), out));
    for sub in cli.get_subcommands() {
        let name = format!("capstan-{}", sub.get_name());
        let page = sub
            .clone()
            .name(name.clone())
            .display_name(name.clone())
            .bin_name(format!("capstan {}", sub.get_name()))
            .version(crate::build::VERSION);
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        pages.push((format!("{name}.1"), out));
    }
    Ok(pages)
}

/// `capstan man [--dir DIR]`.
fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    let pages = man_pages()?;
    match dir {
        None => std::io::stdout().write_all(&pages[0].1)?,
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            for (file, page) in &pages {
                std::fs::write(dir.join(file), page)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", dir.join(file).display()))?;
            }
        }
    }
    Ok(())
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(
        shell,
        &mut <Cli as clap::CommandFactory>::command(),
        "capstan",
        &mut out,
    );
    out
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 30m, 1h)"))
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `capstan detect ... | head`: the reader is done, and so are we.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("capstan: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn fmt_time(t: chrono::NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn fmt_value(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

fn forecast_csv(csv: &Path, horizon: std::time::Duration) -> anyhow::Result<()> {
    let points = crate::trace::read_csv(csv)?;
    let forecasts = crate::analysis::forecast(&points, horizon)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(out, "timestamp,value,forecast")?;
    for (p, f) in points.iter().zip(forecasts) {
        let f = f.map(|v| format!("{v:.6}")).unwrap_or_default();
        writeln!(out, "{},{},{f}", fmt_time(p.at), fmt_value(p.value))?;
    }
    out.flush()?;
    Ok(())
}

/// `capstan rightsizing`.
async fn rightsizing(cfg: &ValidatedConfig, days: u32, json: bool) -> anyhow::Result<()> {
    use crate::rightsizing as rs;
    let retention = u32::try_from(engine::USAGE_RETENTION_DAYS).unwrap_or(35);
    anyhow::ensure!(
        (1..=retention).contains(&days),
        "--days {days}: allowed 1 to {retention} (the usage history is kept {retention} days)"
    );
    let since = SystemClock.now().timestamp().div_euclid(60) - i64::from(days) * 1440;
    let dir = cfg.agent.state_dir.join("usage");
    let mut reports = Vec::with_capacity(cfg.pools.len());
    for pool in &cfg.pools {
        let points: Vec<crate::history::Minute> = crate::history::read_only(&dir, &pool.name)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .into_iter()
            .filter(|(m, _)| *m >= since)
            .collect();
        reports.push(rs::report(cfg, pool, days, &points).await);
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &reports)?;
        writeln!(out)?;
        return Ok(());
    }
    let pct = |s: Option<rs::Stats>| {
        s.map_or_else(
            || "-".to_owned(),
            |s| {
                format!(
                    "p50 {:5.1} %  p95 {:5.1} %  max {:5.1} %",
                    s.p50, s.p95, s.max
                )
            },
        )
    };
    for r in &reports {
        writeln!(
            out,
            "pool {} ({}): {} minute(s) of usage in {} day(s){}",
            r.pool,
            r.instance_type.as_deref().unwrap_or("type unknown"),
            r.minutes,
            r.days,
            r.nodes
                .map(|n| format!(", {:.1} nodes on average, {} at most", n.mean, n.max))
                .unwrap_or_default()
        )?;
        for (label, s) in [
            ("cpu", r.cpu),
            ("memory", r.memory),
            ("gpu", r.gpu),
            ("gpu memory", r.gpu_memory),
        ] {
            writeln!(out, "  {label:<11} {}", pct(s))?;
        }
        if let Some(rec) = &r.recommendation {
            match (rec.change, rec.monthly_saving) {
                ("none", _) => writeln!(out, "  keep {}", rec.current_type)?,
                (change, saving) => writeln!(
                    out,
                    "  recommend {} × {} ({change} than {}): {} a month less",
                    rec.instance_type,
                    rec.nodes,
                    rec.current_type,
                    saving.map_or_else(|| "?".to_owned(), |s| format!("{s:.2}"))
                )?,
            }
        }
        for e in &r.evidence {
            writeln!(out, "  - {e}")?;
        }
    }
    Ok(())
}

/// `capstan tune`: `trace`, else the pool's stored history.
#[allow(clippy::too_many_arguments)]
fn tune(
    cfg: &ValidatedConfig,
    pool: &str,
    trace: Option<&Path>,
    demand_per_node: Option<f64>,
    delay: std::time::Duration,
    slo_minutes: Option<u64>,
    saturation: Option<f64>,
    json: bool,
) -> anyhow::Result<()> {
    let config = pool_to_replay(cfg, pool)?;
    let points = match trace {
        Some(path) => crate::trace::read_csv(path)?,
        None => {
            let dir = cfg.agent.state_dir.join("history");
            let points: Vec<crate::trace::Point> = crate::history::read_only(&dir, &config.name)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .into_iter()
                .filter_map(|(minute, values)| {
                    let at = chrono::DateTime::from_timestamp(minute.checked_mul(60)?, 0)?;
                    Some(crate::trace::Point {
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
    let prepared = crate::analysis::prepare(&points)?;
    let demand = crate::simulate::per_minute(&prepared.grid);
    let peak = demand.iter().copied().fold(0.0_f64, f64::max);
    let target = config.targets.first().map_or(1.0, |t| t.value);
    if let Some(s) = saturation {
        anyhow::ensure!(s.is_finite() && s > 0.0, "--saturation must be above 0");
    }
    let tuning = crate::tune::Tuning {
        // The history holds the target's readings summed over the pool: one node at
        // the target serves the target's value.
        demand_per_node: match (trace, demand_per_node) {
            (None, None) => target,
            (_, given) => demand_per_node_or_peak(given, peak, config)?,
        },
        delay_minutes: whole_minutes(delay),
        slo_minutes,
        saturation,
        threads: None,
    };
    let budget = crate::brain::budget::BudgetPolicy::from(&cfg.budget);
    let start = crate::simulate::start_of(prepared.grid.start);
    let report = crate::tune::tune(config, &budget, &demand, start, &tuning);
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "pool {pool}: {} candidates over {:.1} days, {} min provisioning delay, one node serves {:.1} at target {target}; under-provisioned above {} per node; SLO {} minute(s)",
        report.candidates.len(),
        demand.len() as f64 / 1440.0,
        tuning.delay_minutes,
        tuning.demand_per_node,
        report.saturation,
        report.slo_minutes
    )?;
    let line = |s: &crate::tune::Scored| {
        let p = &s.policy;
        let predictive = match p.horizon_minutes {
            Some(h) => format!("forecast-and-scale {h}m"),
            None => "reactive".to_owned(),
        };
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

/// `--demand-per-node` when given (above 0), else what makes the trace's peak need
/// 80 % of the pool's max.
fn demand_per_node_or_peak(
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

/// A provisioning delay in whole minutes, rounded up.
fn whole_minutes(delay: std::time::Duration) -> u32 {
    u32::try_from(delay.as_secs().div_ceil(60)).unwrap_or(u32::MAX)
}

/// The pool `simulate` and `tune` replay: it must exist and have a target.
fn pool_to_replay<'c>(
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
fn simulate(
    cfg: &ValidatedConfig,
    pool: &str,
    trace: &Path,
    demand_per_node: Option<f64>,
    delay: std::time::Duration,
    compare: bool,
    svg: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    use crate::simulate as sim;
    let config = pool_to_replay(cfg, pool)?;
    let points = crate::trace::read_csv(trace)?;
    let prepared = crate::analysis::prepare(&points)?;
    let demand = sim::per_minute(&prepared.grid);
    let peak = demand.iter().copied().fold(0.0_f64, f64::max);
    let x = demand_per_node_or_peak(demand_per_node, peak, config)?;
    let settings = sim::Settings {
        demand_per_node: x,
        delay_minutes: whole_minutes(delay),
        keep_series: svg.is_some(),
        hot_per_node: None,
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
    if let Some(path) = svg {
        let title = format!(
            "capstan simulate: pool {pool}, {} ({}), {} min delay",
            trace.display(),
            config.predictive.mode.as_str(),
            settings.delay_minutes
        );
        std::fs::write(path, sim::svg(&title, &series))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    if json {
        let mut doc = serde_json::json!({ "policy": policy });
        if let Some(r) = &reactive {
            doc["reactive"] = serde_json::to_value(r)?;
        }
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
        return Ok(());
    }
    writeln!(
        out,
        "pool {pool}: {:.1} days, {} min provisioning delay, one node serves {x:.1} (peak {peak:.1})",
        demand.len() as f64 / 1440.0,
        settings.delay_minutes
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
    Ok(())
}

fn detect_csv(csv: &Path, threshold: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        threshold.is_finite() && threshold > 0.0,
        "--threshold must be a positive number of standard deviations, e.g. 2.5"
    );
    let points = crate::trace::read_csv(csv)?;
    let verdicts = crate::analysis::detect(&points, threshold)?;
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

/// Loads a config for a command that needs no cloud (simulate, tune): every provider
/// and coordinator is accepted, whatever this build was compiled with.
fn load(path: &Path) -> Result<ValidatedConfig, ConfigError> {
    capstan_config::load(path)
}

/// Loads a config for a command that runs, describes or validates what it names
/// (run, validate, plan, collect, rightsizing): refused, naming the key and the feature,
/// when it needs a part this build lacks.
fn load_for_this_build(path: &Path) -> Result<ValidatedConfig, ConfigError> {
    capstan_config::load_for(path, crate::build::config_features())
}

fn print_config_error(e: &ConfigError) {
    for line in e.lines() {
        eprintln!("{line}");
    }
}

/// Runs the CLI.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { config } => match load_for_this_build(&config) {
            Ok(cfg) => {
                println!("{}", cfg.summary());
                ExitCode::SUCCESS
            }
            Err(e) => {
                print_config_error(&e);
                ExitCode::FAILURE
            }
        },
        Command::Completions { shell } => {
            let _ = std::io::stdout().write_all(&completions(shell));
            ExitCode::SUCCESS
        }
        Command::Forecast { csv, horizon } => report(forecast_csv(&csv, horizon)),
        Command::Detect { csv, threshold } => report(detect_csv(&csv, threshold)),
        Command::Simulate {
            config,
            pool,
            trace,
            demand_per_node,
            provisioning_delay,
            compare,
            svg,
            json,
        } => match load(&config) {
            Ok(cfg) => report(simulate(
                &cfg,
                &pool,
                &trace,
                demand_per_node,
                provisioning_delay,
                compare,
                svg.as_deref(),
                json,
            )),
            Err(e) => {
                print_config_error(&e);
                ExitCode::FAILURE
            }
        },
        Command::Tune {
            config,
            pool,
            trace,
            history,
            slo_minutes,
            demand_per_node,
            saturation,
            provisioning_delay,
            json,
        } => match load(&config) {
            Ok(cfg) => report(tune(
                &cfg,
                &pool,
                trace.as_deref().filter(|_| !history),
                demand_per_node,
                provisioning_delay,
                slo_minutes,
                saturation,
                json,
            )),
            Err(e) => {
                print_config_error(&e);
                ExitCode::FAILURE
            }
        },
        Command::Rightsizing { config, days, json } => match load_for_this_build(&config) {
            Ok(cfg) => report(runtime().and_then(|rt| rt.block_on(rightsizing(&cfg, days, json)))),
            Err(e) => {
                print_config_error(&e);
                ExitCode::FAILURE
            }
        },
        Command::ConfigSchema => {
            print!("{}", capstan_config::json_schema());
            ExitCode::SUCCESS
        }
        Command::Man { dir } => report(man(dir.as_deref())),
        Command::Run { config } => {
            init_logging(cli.log_format);
            let (cfg, source) = match &config {
                Some(path) => match load_for_this_build(path) {
                    Ok(cfg) => (cfg, ConfigSource::File(path.clone())),
                    Err(e) => {
                        print_config_error(&e);
                        return ExitCode::FAILURE;
                    }
                },
                None => match capstan_config::from_str_for(
                    Path::new(EMBEDDED_NAME),
                    EMBEDDED_CONFIG,
                    std::env::vars(),
                    crate::build::config_features(),
                ) {
                    Ok(cfg) => (cfg, ConfigSource::Embedded),
                    Err(e) => {
                        print_config_error(&e);
                        return ExitCode::FAILURE;
                    }
                },
            };
            exit(
                runtime()
                    .and_then(|rt| rt.block_on(daemon::run(cfg, source, Arc::new(SystemClock)))),
            )
        }
        Command::Plan { config, json } => {
            let cfg = match load_for_this_build(&config) {
                Ok(cfg) => cfg,
                Err(e) => {
                    print_config_error(&e);
                    return ExitCode::FAILURE;
                }
            };
            exit(runtime().and_then(|rt| rt.block_on(plan(cfg, json))))
        }
        Command::Status { url, json } => {
            exit(runtime().and_then(|rt| rt.block_on(status(&url, json))))
        }
        Command::Collect { config, once, json } => {
            let cfg = match &config {
                Some(path) => load_for_this_build(path),
                None => capstan_config::from_str_for(
                    Path::new(EMBEDDED_NAME),
                    EMBEDDED_CONFIG,
                    std::env::vars(),
                    crate::build::config_features(),
                ),
            };
            let cfg = match cfg {
                Ok(cfg) => cfg,
                Err(e) => {
                    print_config_error(&e);
                    return ExitCode::FAILURE;
                }
            };
            exit(runtime().and_then(|rt| rt.block_on(collect(cfg, once, json))))
        }
    }
}

fn exit(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`capstan plan | head`) is the reader's choice, not a failure.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("capstan: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// One pool in `capstan plan --json`. Field names are an interface.
#[derive(Debug, Serialize)]
struct PlannedPool {
    name: String,
    provider: String,
    tier: &'static str,
    current: Option<u32>,
    desired: Option<u32>,
    on_demand: Option<u32>,
    spot: Option<u32>,
    hourly_cost: Option<f64>,
    /// Bounds this pass, after schedules.
    min: Option<u32>,
    max: Option<u32>,
    emergency: bool,
    reasons: Vec<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// This node's collectors, for `plan` and `collect`; what is off is said on stderr.
struct Local {
    collectors: Vec<Box<dyn Collector>>,
    client: reqwest::Client,
}

impl Local {
    async fn open() -> anyhow::Result<Self> {
        let mut collectors: Vec<Box<dyn Collector>> = Vec::new();
        match HostCollector::new() {
            Ok(c) => collectors.push(Box::new(c)),
            Err(e) => eprintln!("capstan: host telemetry is off: {e}"),
        }
        match capstan_collectors::gpu::GpuCollector::nvml() {
            Ok(c) => collectors.push(Box::new(c)),
            Err(e) => eprintln!("capstan: GPU telemetry is off: {e}"),
        }
        // CPU use is a delta: one measurable period first.
        tokio::time::sleep(HostCollector::WARM_UP).await;
        Ok(Self {
            collectors,
            client: crate::http::client_builder().build()?,
        })
    }

    /// One report of this node, as the agent would send it.
    async fn report(&mut self, cfg: &ValidatedConfig) -> NodeReport {
        let now = SystemClock.now();
        let mut report = NodeReport::new(daemon::node_id(cfg), daemon::node_pool(cfg), now);
        for c in &mut self.collectors {
            if let Err(e) = c.collect(now, &mut report) {
                eprintln!("capstan: {} collection failed: {e}", c.name());
            }
        }
        for (name, why) in crate::workload::collect(&self.client, &cfg.scrapes, &mut report).await {
            eprintln!("capstan: workload.{name} left out: {why}");
        }
        report
    }
}

async fn plan(cfg: ValidatedConfig, json: bool) -> anyhow::Result<()> {
    let clock = SystemClock;
    let node_id = daemon::node_id(&cfg);
    let report = Local::open().await?.report(&cfg).await;
    let mut pools = engine::build_pools(&cfg, &mut HashMap::new()).map_err(anyhow::Error::msg)?;
    let claim = Standalone::new(&node_id, None).claim();
    let now = clock.now();
    let max_age = crate::ingest::stale_after(cfg.agent.interval);
    let fresh: Vec<&NodeReport> = std::iter::once(&report)
        .filter(|r| now - r.at <= max_age)
        .collect();
    let mut groups = engine::build_groups(&cfg, &mut HashMap::new());
    let outcome = engine::fleet_pass(
        &mut pools,
        &mut groups,
        &fresh,
        &claim,
        Mode::PlanOnly,
        now,
        cfg.agent.interval,
        &cfg.budget,
    )
    .await;
    let planned: Vec<PlannedPool> = pools
        .iter()
        .zip(outcome.pools)
        .map(|(pool, result)| {
            let name = pool.config.name.clone();
            let provider = pool.config.provider.kind().to_owned();
            let tier = pool.config.tier.as_str();
            match result {
                Ok(o) => PlannedPool {
                    name,
                    provider,
                    tier,
                    current: Some(o.current),
                    desired: Some(o.desired),
                    on_demand: Some(o.on_demand),
                    spot: Some(o.spot),
                    hourly_cost: Some(o.hourly_cost),
                    min: Some(o.bounds.min),
                    max: Some(o.bounds.max),
                    emergency: o.emergency,
                    reasons: o.reasons,
                    error: None,
                },
                Err(e) => PlannedPool {
                    name,
                    provider,
                    tier,
                    current: None,
                    desired: None,
                    on_demand: None,
                    spot: None,
                    hourly_cost: None,
                    min: None,
                    max: None,
                    emergency: false,
                    reasons: vec![],
                    error: Some(e.to_string()),
                },
            }
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({
                "pools": planned,
                "groups": outcome.groups,
                "fleet_hourly_cost": outcome.fleet_hourly_cost,
                "budget_ceiling": outcome.budget_ceiling,
                "over_budget": outcome.over_budget,
                "reasons": outcome.reasons,
            }),
        )?;
        writeln!(out)?;
    } else {
        for p in &planned {
            match (p.current, p.desired) {
                (Some(c), Some(d)) => {
                    let verb = if d > c {
                        "scale up"
                    } else if d < c {
                        "scale down"
                    } else {
                        "no change"
                    };
                    let mut notes = vec![format!("{} tier", p.tier)];
                    if let (Some(od), Some(spot)) = (p.on_demand, p.spot)
                        && spot > 0
                    {
                        notes.push(format!("{od} on-demand + {spot} spot"));
                    }
                    if let Some(cost) = p.hourly_cost.filter(|c| *c > 0.0) {
                        notes.push(format!("{cost:.2}/h"));
                    }
                    writeln!(
                        out,
                        "pool {} ({}): {c} → {d} nodes ({verb}); {}",
                        p.name,
                        p.provider,
                        notes.join("; ")
                    )?;
                }
                _ => writeln!(out, "pool {} ({}): no decision", p.name, p.provider)?,
            }
            for r in &p.reasons {
                writeln!(out, "  - {r}")?;
            }
            if let Some(e) = &p.error {
                writeln!(out, "  ! {e}")?;
            }
        }
        for g in &outcome.groups {
            let members = g
                .members
                .iter()
                .map(|m| {
                    let mut s = format!("{} {}", m.pool, m.granted);
                    if m.granted != m.share {
                        s.push_str(&format!(" (share {})", m.share));
                    }
                    if let Some(l) = m.limit {
                        s.push_str(&format!(" [{}]", l.as_str()));
                    }
                    s
                })
                .collect::<Vec<_>>()
                .join(", ");
            writeln!(
                out,
                "group {} ({}): {} → {} nodes: {members}",
                g.group, g.strategy, g.current, g.desired
            )?;
            for r in &g.reasons {
                writeln!(out, "  - {r}")?;
            }
        }
        for r in &outcome.reasons {
            writeln!(out, "! {r}")?;
        }
        match outcome.budget_ceiling {
            Some(c) => writeln!(
                out,
                "fleet: {:.2}/h against a ceiling of {c:.2}/h",
                outcome.fleet_hourly_cost
            )?,
            None if outcome.fleet_hourly_cost > 0.0 => writeln!(
                out,
                "fleet: {:.2}/h (no budget ceiling)",
                outcome.fleet_hourly_cost
            )?,
            None => {}
        }
        writeln!(out, "(plan only: nothing was changed)")?;
    }
    Ok(())
}

async fn collect(cfg: ValidatedConfig, once: bool, json: bool) -> anyhow::Result<()> {
    let mut local = Local::open().await?;
    loop {
        let report = local.report(&cfg).await;
        let mut out = std::io::stdout().lock();
        if json {
            out.write_all(&report.encode())?;
            writeln!(out)?;
        } else {
            print_report(&mut out, &report)?;
        }
        out.flush()?;
        drop(out);
        if once {
            return Ok(());
        }
        tokio::time::sleep(cfg.agent.interval).await;
    }
}

fn print_report(out: &mut impl Write, r: &capstan_collectors::NodeReport) -> std::io::Result<()> {
    writeln!(
        out,
        "node {}  pool {}  at {}",
        r.node_id,
        r.pool.as_deref().unwrap_or("-"),
        r.at.format("%Y-%m-%dT%H:%M:%SZ")
    )?;
    if let Some(h) = &r.host {
        writeln!(
            out,
            "host  cpu {:.1} % of {} cores  memory {:.1} %  load1/core {:.2}  disk {:.1} %  rx {:.0} B/s  tx {:.0} B/s",
            h.cpu_percent,
            h.cores,
            h.memory_percent().unwrap_or(0.0),
            h.load_per_core().one,
            h.disk_percent().unwrap_or(0.0),
            h.rx_bytes_per_second(),
            h.tx_bytes_per_second()
        )?;
    }
    for g in &r.gpus {
        let opt = |v: Option<f64>, unit: &str| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}{unit}"))
        };
        writeln!(
            out,
            "gpu {} {} ({})  util {}  mem {}  {}  power {} of {}  sm {} MHz  ecc {}/{}{}{}",
            g.index,
            g.name,
            g.uuid,
            opt(g.utilization_percent, " %"),
            opt(g.memory_percent(), " %"),
            opt(g.temperature_celsius, " °C"),
            opt(g.power_watts, " W"),
            opt(g.power_limit_watts, " W"),
            g.sm_clock_mhz
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            g.ecc_corrected
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            g.ecc_uncorrected
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
            if g.throttle_reasons.is_empty() {
                String::new()
            } else {
                format!("  throttled: {}", g.throttle_reasons.join(","))
            },
            if g.xid_errors.is_empty() {
                String::new()
            } else {
                format!("  XID {:?}", g.xid_errors)
            },
        )?;
    }
    for (name, v) in &r.workload {
        writeln!(out, "workload.{name} {v}")?;
    }
    if let Some(i) = &r.interruption {
        writeln!(out, "interruption notice: {}", i.kind)?;
    }
    Ok(())
}

async fn status(url: &str, json: bool) -> anyhow::Result<()> {
    let base = url.trim_end_matches('/');
    let endpoint = if base.ends_with("/v1/status") {
        base.to_owned()
    } else {
        format!("{base}/v1/status")
    };
    let response = crate::http::client_builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?
        .get(&endpoint)
        .send()
        .await
        .with_context(|| format!("cannot reach {endpoint}"))?
        .error_for_status()
        .with_context(|| format!("{endpoint} answered with an error"))?;
    let body = response.text().await?;
    let status: Status = serde_json::from_str(&body)
        .with_context(|| format!("{endpoint} did not return a Capstan status"))?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{body}")?;
        return Ok(());
    }
    writeln!(
        out,
        "node {}  role {}  leader {}  coordinator {}  version {}",
        status.node_id,
        status.role,
        status.leader_id.as_deref().unwrap_or("-"),
        if status.coordinator.is_empty() {
            "-"
        } else {
            &status.coordinator
        },
        if status.version.is_empty() {
            "-"
        } else {
            &status.version
        },
    )?;
    if let Some(url) = &status.leader_url {
        writeln!(out, "leader url {url}")?;
    }
    if let Some(note) = &status.coordinator_note {
        writeln!(out, "coordinator: {note}")?;
    }
    let rejected: u64 = status.reports_rejected.values().sum();
    if status.role == "leader" || status.reports_received > 0 || rejected > 0 {
        let by_reason: Vec<String> = status
            .reports_rejected
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        writeln!(
            out,
            "reports accepted {}  rejected {rejected}{}",
            status.reports_received,
            if by_reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", by_reason.join(", "))
            }
        )?;
    }
    match status.budget_ceiling {
        Some(c) => writeln!(
            out,
            "fleet {:.2}/h of a {c:.2}/h ceiling{}",
            status.fleet_hourly_cost,
            if status.over_budget {
                "  OVER BUDGET"
            } else {
                ""
            }
        )?,
        None if status.fleet_hourly_cost > 0.0 => {
            writeln!(out, "fleet {:.2}/h (no ceiling)", status.fleet_hourly_cost)?
        }
        None => {}
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<24} {:<9} {:>5} {:>5} {:>8} {:>8} {:>9} {:>6}  {:<8} {:<25} REASON",
        "POOL",
        "PROVIDER",
        "MIN",
        "MAX",
        "CURRENT",
        "DESIRED",
        "REPORTING",
        "STALE",
        "ACTION",
        "DECIDED AT"
    )?;
    let dash = |v: Option<u32>| v.map_or_else(|| "-".to_owned(), |n| n.to_string());
    for p in &status.pools {
        let (action, at, reason) = match &p.last_decision {
            Some(d) => (
                d.action.clone(),
                d.at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                d.reasons
                    .last()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
            None => ("-".to_owned(), "-".to_owned(), String::new()),
        };
        writeln!(
            out,
            "{:<24} {:<9} {:>5} {:>5} {:>8} {:>8} {:>9} {:>6}  {:<8} {:<25} {}",
            p.name,
            p.provider,
            p.min,
            p.max,
            dash(p.current),
            dash(p.desired),
            p.nodes.reporting.len(),
            p.nodes.stale.len(),
            action,
            at,
            p.error.as_deref().map_or(reason, |e| format!("error: {e}"))
        )?;
    }
    for p in status.pools.iter().filter(|p| !p.nodes.stale.is_empty()) {
        writeln!(out, "stale in {}: {}", p.name, p.nodes.stale.join(", "))?;
    }
    for p in status
        .pools
        .iter()
        .filter(|p| !p.circuit.is_empty() && p.circuit != "closed")
    {
        writeln!(
            out,
            "circuit {} for {}: {} failed provider call(s) in a row",
            p.circuit.replace('_', "-"),
            p.name,
            p.consecutive_failures
        )?;
    }
    Ok(())
}
