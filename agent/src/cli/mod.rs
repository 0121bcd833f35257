//! The command line: the clap definitions of every subcommand, and the dispatch. The
//! daemon is `run` (`crate::daemon`); `validate` and the packagers' `completions`, `man`
//! and `config-schema` are here; each other command family has its file: `plan`,
//! `collect`, `status`, `rightsizing`, and `replay` (`forecast`, `detect`, `simulate`,
//! `tune`).

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
use crate::cluster::coordinator::{Coordinator, Standalone};
use crate::daemon::{self, ConfigSource};
use crate::pass::{self, Mode};
use crate::telemetry::status::Status;

mod collect;
mod plan;
mod replay;
mod rightsizing;
mod status;

use self::{collect::*, plan::*, replay::*, rightsizing::*, status::*};

/// The embedded default configuration: `examples/standalone.toml`.
pub const EMBEDDED_CONFIG: &str = include_str!("../../../examples/standalone.toml");
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
        /// How long a node chosen to leave drains before it goes (targeted scale-in):
        /// billed, serving nothing new; a scale-up takes back draining nodes first.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        drain_time: std::time::Duration,
        /// Also run reactive-only (predictive scaling off) beside the configured policy:
        /// at the same target, and the cheapest reactive-only policy of `capstan tune`'s
        /// grid with no more saturated minutes than the policy (the same SLO, on the same
        /// saturation line).
        #[arg(long)]
        compare: bool,
        /// Minutes replayed before scoring starts: every policy learns and scales, none
        /// is billed or counted. The daemon warms its forecaster from its stored demand
        /// history, so a forecast's first days happen once per pool, not every week.
        /// Default: 3 days on a trace of at least 9 days, else none (`0s`).
        #[arg(long, value_parser = parse_duration)]
        warm_up: Option<std::time::Duration>,
        /// Write an SVG plot here: demand, the policy's ready capacity and forecast, its
        /// under-provisioned minutes shaded, and with --compare the best reactive-only
        /// policy's capacity at the same SLO, over --window.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// How much of the run the plot shows (`7d`, `36h`, or `all`): the stretch with
        /// the most under-provisioned minutes of the policy (else the one around the
        /// peak).
        #[arg(long, default_value = "7d", value_parser = parse_window, requires = "svg")]
        window: Window,
        /// Print JSON: {"policy": M, "warm_up_minutes": N, "reactive": M, "same_slo": S}
        /// (the last two with
        /// --compare), where each M has node_hours, cost, underprovisioned_minutes,
        /// underprovisioned_demand, actions and mase, and S is {saturation, slo_minutes,
        /// policy, best_reactive} (each a candidate and its metrics on the saturation
        /// line, best_reactive null when none stays within the SLO).
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
        /// How long a node chosen to leave drains before it goes (targeted scale-in):
        /// billed, serving nothing new; a scale-up takes back draining nodes first.
        #[arg(long, default_value = "0s", value_parser = parse_duration)]
        drain_time: std::time::Duration,
        /// Minutes replayed before scoring starts: every policy learns and scales, none
        /// is billed or counted. The daemon warms its forecaster from its stored demand
        /// history, so a forecast's first days happen once per pool, not every week.
        /// Default: 3 days on a trace of at least 9 days, else none (`0s`).
        #[arg(long, value_parser = parse_duration)]
        warm_up: Option<std::time::Duration>,
        /// Also try `predictive.mode = "auto"` at every target value and behavior, each
        /// at the horizon of that pair's best forecast-and-scale candidate: auto
        /// backtests its recent demand every 6 hours as the leader does, so this takes
        /// minutes on a long trace (about a second per candidate for two weeks).
        #[arg(long)]
        auto: bool,
        /// Write an SVG of the frontier here: node-hours against saturated minutes, one
        /// point per candidate, reactive-only and forecast-and-scale in two colours,
        /// the chosen and the current policy marked.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Print JSON: pool, minutes, warm_up_minutes, slo_minutes, saturation, current, best (null when
        /// no candidate meets the SLO), snippet, candidates (best first); each with
        /// policy {target_value, behavior, predictive_mode, horizon_minutes, lead_minutes},
        /// metrics (as
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
        /// File holding the agent's `cluster.status_token_file` token: needed when it
        /// is set; without one set, the status comes with cloud accounts redacted.
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
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

/// How much of a run `simulate --svg` shows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Window {
    /// The whole run.
    All,
    /// This many minutes.
    Minutes(usize),
}

fn parse_window(s: &str) -> Result<Window, String> {
    if s == "all" {
        return Ok(Window::All);
    }
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 7d, 36h or all)"))?;
    match usize::try_from(d.as_secs() / 60) {
        Ok(m) if m >= 60 => Ok(Window::Minutes(m)),
        _ => Err("the window is at least an hour (write e.g. 7d, 36h or all)".to_owned()),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `capstan detect ... | head`, `capstan plan | head`: a closed pipe is the
        // reader's choice, not a failure.
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
            drain_time,
            compare,
            warm_up,
            svg,
            window,
            json,
        } => match load(&config) {
            Ok(cfg) => report(simulate(
                &cfg,
                &pool,
                &trace,
                demand_per_node,
                (provisioning_delay, drain_time),
                warm_up,
                compare,
                svg.as_deref().map(|p| (p, window)),
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
            drain_time,
            warm_up,
            auto,
            svg,
            json,
        } => match load(&config) {
            Ok(cfg) => report(tune(
                &cfg,
                &pool,
                trace.as_deref().filter(|_| !history),
                demand_per_node,
                (provisioning_delay, drain_time),
                slo_minutes,
                saturation,
                (warm_up, auto),
                svg.as_deref(),
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
            report(
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
            report(runtime().and_then(|rt| rt.block_on(plan(cfg, json))))
        }
        Command::Status {
            url,
            json,
            token_file,
        } => {
            report(runtime().and_then(|rt| rt.block_on(status(&url, json, token_file.as_deref()))))
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
            report(runtime().and_then(|rt| rt.block_on(collect(cfg, once, json))))
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
