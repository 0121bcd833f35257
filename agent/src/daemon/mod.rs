//! `capstan run`: the agent's main loop.
//!
//! Every `agent.interval`: collect this node's report, then (as leader) run a pass
//! over every pool, journal each decision and publish status and metrics. SIGHUP
//! reloads the config and keeps the old one when the new one is invalid; SIGTERM and
//! SIGINT stop cleanly.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use capstan_collectors::host::HostCollector;
use capstan_collectors::{Collector, NodeReport};
use capstan_config::ValidatedConfig;

use crate::clock::Clock;
use crate::cluster::coordinator::{Coordinator, Standalone};
use crate::cluster::ingest::{self, Ingest};
use crate::cluster::reporter::{Reporter, Token};
use crate::pass::leader::Leader;
use crate::pass::{self, Action, PoolRuntime};
use crate::state::demand::{FileHistory, HistoryStore};
use crate::state::journal::Journal;
use crate::state::memory::{DecisionStore, FileDecisions};
use crate::telemetry::metrics::{CollectorLabel, ResultLabel};
use crate::telemetry::sdnotify::Notifier;
use crate::telemetry::status::PoolNodes;
use crate::telemetry::status::{
    DrainingNode, LastDecision, OperationStatus, PoolStatus, Shared, Status,
};

mod bounds;
pub mod drain;
pub mod http;
#[cfg(feature = "kubernetes")]
pub mod kube_drain;
mod node;
pub mod notices;
mod publish;
mod reload;
mod serve;
mod setup;
pub mod workload;

pub use self::node::*;
use self::serve::Listeners;
pub use self::setup::*;

/// Where the running config came from, for reloads.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// A file, re-read on SIGHUP.
    File(PathBuf),
    /// The embedded default; SIGHUP has nothing to re-read.
    Embedded,
}

/// Liveness grace for `/healthz`.
fn grace(interval: Duration) -> Duration {
    interval * 3 + Duration::from_secs(10)
}

struct Daemon {
    cfg: ValidatedConfig,
    source: ConfigSource,
    node_id: String,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    coordinator: Box<dyn Coordinator>,
    claim: watch::Receiver<crate::cluster::coordinator::Claim>,
    /// The interruption watcher, when `[agent.interruptions]` is set.
    notices: Option<crate::daemon::notices::Watcher>,
    /// This node's collectors: the host's, and NVML's when there is a driver and GPUs.
    collectors: Vec<Box<dyn Collector>>,
    /// HTTP client for `[[scrape]]` endpoints.
    scraper: reqwest::Client,
    /// The last scrape failures, so each is logged when it starts and stops, not every
    /// interval.
    scrape_failures: Vec<(String, String)>,
    leader: Leader,
    history: Arc<dyn HistoryStore>,
    /// Each pool's usage a minute, for `capstan rightsizing`: a file store on the
    /// leader's machine (`<state_dir>/usage/`).
    usage: Arc<dyn HistoryStore>,
    ingest: Arc<Ingest>,
    reporter: Reporter,
    /// This node's side of targeted scale-in: its drain and its protection.
    drainer: Arc<drain::Drainer>,
    /// What `/v1/status` asks for, replaced on reload.
    status_token: http::StatusToken,
    /// How long a report may take to send (its client is rebuilt on reload).
    #[cfg(feature = "tls")]
    send_timeout: Duration,
    token: Token,
    /// The mutual-TLS reports listener's certificates, swapped on reload.
    #[cfg(feature = "tls")]
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    decisions: Arc<dyn DecisionStore>,
    /// Decision state last saved, per pool (saved again only when it changes).
    saved: HashMap<String, Vec<u8>>,
    /// Whether the last tick led.
    led: bool,
    /// Demand history is shared between agents (etcd): reload it on gaining leadership.
    shared_history: bool,
    nodes: BTreeMap<String, PoolNodes>,
}

/// Puts `token` (`cluster.status_token_file`'s) in force for `/v1/status`.
fn set_status_token(status_token: &http::StatusToken, token: Option<&str>) {
    *status_token
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        token.map(crate::cluster::identity::Secret::new);
}

/// The signals the agent answers, taken over before anything else starts: one that
/// arrives while the agent starts (a `systemctl reload` right after a start) waits for
/// the loop instead of ending the process, as SIGHUP's default would.
struct Signals {
    sigterm: tokio::signal::unix::Signal,
    sigint: tokio::signal::unix::Signal,
    sighup: tokio::signal::unix::Signal,
}

impl Signals {
    fn take_over() -> std::io::Result<Self> {
        Ok(Self {
            sigterm: signal(SignalKind::terminate())?,
            sigint: signal(SignalKind::interrupt())?,
            sighup: signal(SignalKind::hangup())?,
        })
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(
    cfg: ValidatedConfig,
    source: ConfigSource,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let signals = Signals::take_over()?;
    let (node_id, notices) = identify(&cfg).await?;
    let (journal, usage) = open_local_state(&cfg, &*clock)?;
    let shared = Arc::new(Shared::new(grace(cfg.agent.interval)));
    let groups = pass::build_groups(&cfg, &mut HashMap::new());
    let mut pools = pass::build_pools_with(&cfg, &mut HashMap::new(), Some(&shared.metrics))
        .map_err(anyhow::Error::msg)?;
    let tokens = Tokens::read(&cfg)?;
    let status_token = http::StatusToken::default();
    set_status_token(&status_token, tokens.status.as_deref());
    let listeners = Listeners::bind(&cfg).await?;
    let url = advertise_url(&cfg, listeners.reports_addr()?, cfg.cluster.tls.is_some());
    let Cluster {
        coordinator,
        decisions,
        history,
        shared_history,
    } = open_cluster(&cfg, &node_id, &url, &clock).await?;
    let claim = coordinator.claim();
    pass::attach_history(&mut pools, &history, clock.now());
    pass::attach_usage(&mut pools, &usage, clock.now());
    let collectors = logged_node_collectors();
    let ingest = Arc::new(Ingest::new(ingest_settings(&cfg, &tokens), clock.clone()));
    let token: Token = Arc::new(std::sync::RwLock::new(credential(&cfg, tokens.token)));
    let send_timeout = cfg.agent.interval.min(Duration::from_secs(10));
    let client = listeners.reporter_client(send_timeout)?;
    let drainer = drain::Drainer::new(node_id.clone(), cfg.agent.drain.clone());
    let reporter = Reporter::spawn(claim.clone(), token.clone(), shared.clone(), client, {
        let (drainer, clock) = (drainer.clone(), clock.clone());
        Arc::new(move |answer| drainer.answer(answer, clock.now()))
    });
    let addr = listeners.addr;
    tracing::info!("listening on http://{addr}");
    let (stop_tx, stop_rx) = watch::channel(false);
    let servers = listeners.serve(&cfg, &shared, &ingest, status_token.clone(), stop_rx)?;
    tracing::info!(
        node_id = %node_id,
        coordinator = coordinator.name(),
        advertise_url = %url,
        pools = cfg.pools.len(),
        interval = %humantime_secs(cfg.agent.interval),
        journal = %journal.dir().display(),
        "capstan agent started"
    );
    let mut daemon = Daemon {
        scraper: crate::net::client_builder().build()?,
        leader: Leader {
            groups,
            ..Leader::new(node_id.clone(), pools, journal, shared.clone())
        },
        cfg,
        source,
        node_id,
        clock,
        shared,
        coordinator,
        claim,
        notices,
        collectors,
        scrape_failures: Vec::new(),
        history,
        usage,
        ingest,
        reporter,
        drainer,
        status_token,
        #[cfg(feature = "tls")]
        send_timeout,
        token,
        #[cfg(feature = "tls")]
        tls: servers.tls_config(),
        decisions,
        saved: HashMap::new(),
        led: false,
        shared_history,
        nodes: BTreeMap::new(),
    };
    daemon.publish_status();
    let notifier = Notifier::from_env();
    daemon.serve_until_stopped(addr, &notifier, signals).await?;
    notifier.stopping();
    daemon.coordinator.vacate().await;
    let _ = stop_tx.send(true);
    servers.stopped().await;
    tracing::info!("stopped");
    Ok(())
}

/// This node's name, as its pool's provider lists it (AWS instance id, Azure VM name,
/// GCE instance name), so the leader matches its report to the pool's instance
/// (interruption notices, per-instance readings, targeted scale-in); and the
/// interruption watcher. On Kubernetes the node keeps its Kubernetes name for its drain
/// (`[agent.drain] kubernetes_node`) but reports under its cloud identity.
async fn identify(cfg: &ValidatedConfig) -> anyhow::Result<(String, Option<notices::Watcher>)> {
    let node_id = match (&cfg.agent.node_name, &cfg.agent.interruptions) {
        (None, Some(settings)) => notices::instance_id(settings)
            .await
            .unwrap_or_else(|| node_id(cfg)),
        _ => node_id(cfg),
    };
    let notices = match &cfg.agent.interruptions {
        Some(settings) => Some(notices::spawn(settings.clone())?),
        None => None,
    };
    Ok((node_id, notices))
}

/// The journal and the usage history under `agent.state_dir`, created if missing.
fn open_local_state(
    cfg: &ValidatedConfig,
    clock: &dyn Clock,
) -> anyhow::Result<(Journal, Arc<dyn HistoryStore>)> {
    let state_dir = &cfg.agent.state_dir;
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("cannot create agent.state_dir {}", state_dir.display()))?;
    let dir = state_dir.join("journal");
    let journal = Journal::open(
        dir.clone(),
        crate::state::journal::Limits::from_config(&cfg.journal),
        clock.now(),
    )
    .with_context(|| format!("cannot open the journal under {}", dir.display()))?;
    let dir = state_dir.join("usage");
    let usage: Arc<dyn HistoryStore> = Arc::new(
        FileHistory::open(&dir)
            .with_context(|| format!("cannot open the usage history under {}", dir.display()))?,
    );
    Ok((journal, usage))
}

/// This node's collectors, saying in the log which telemetry is off and why.
fn logged_node_collectors() -> Vec<Box<dyn Collector>> {
    let collectors = node_collectors(|telemetry, why| match telemetry {
        Telemetry::Host => tracing::warn!(error = %why, "host telemetry is off"),
        // Said once: a node without a driver or GPU carries on without GPU telemetry.
        Telemetry::Gpu => tracing::info!(reason = %why, "GPU telemetry is off"),
    });
    if collectors.iter().any(|c| c.name() == "gpu") {
        tracing::info!("GPU telemetry on (NVML)");
    }
    collectors
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// The first of SIGTERM and SIGINT to arrive, by name.
async fn stop_signal(
    sigterm: &mut tokio::signal::unix::Signal,
    sigint: &mut tokio::signal::unix::Signal,
) -> &'static str {
    tokio::select! {
        _ = sigterm.recv() => "SIGTERM",
        _ = sigint.recv() => "SIGINT",
    }
}

fn new_ticker(interval: Duration) -> tokio::time::Interval {
    let mut t = tokio::time::interval(interval);
    t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    t
}

impl Daemon {
    /// Whether this agent may act now (lead, within its lease's safety margin).
    fn may_act(&self) -> Result<(), String> {
        self.claim.borrow().may_act(tokio::time::Instant::now())
    }

    /// Runs a tick every interval, pings systemd's watchdog and reloads on SIGHUP,
    /// until SIGTERM or SIGINT.
    async fn serve_until_stopped(
        &mut self,
        addr: std::net::SocketAddr,
        notifier: &Notifier,
        signals: Signals,
    ) -> anyhow::Result<()> {
        let Signals {
            mut sigterm,
            mut sigint,
            mut sighup,
        } = signals;
        notifier.ready(&format!(
            "serving on http://{addr}; {} pool(s)",
            self.cfg.pools.len()
        ));
        // Pinged from this loop only, so a stuck loop stops the pings and systemd
        // restarts us. A slow cloud does not hold the loop: its operations run beside
        // the pass (`pass::operation`), and each describe is bounded.
        let watchdog_every = notifier.watchdog_interval();
        let mut watchdog =
            tokio::time::interval(watchdog_every.unwrap_or(Duration::from_secs(3600)));
        watchdog.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // CPU usage is a delta: give the collector one measurable period before the
        // first pass.
        tokio::time::sleep(HostCollector::WARM_UP).await;
        let mut ticker = new_ticker(self.cfg.agent.interval);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    // A signal ends a pass in progress: the cloud carries on with any
                    // operation in flight, and the decision state already says so.
                    tokio::select! {
                        () = self.tick() => {}
                        name = stop_signal(&mut sigterm, &mut sigint) => {
                            tracing::info!("{name} during a pass: stopping");
                            return Ok(());
                        }
                    }
                }
                _ = watchdog.tick(), if watchdog_every.is_some() => notifier.watchdog(),
                _ = sighup.recv() => {
                    if self.reload() {
                        ticker = new_ticker(self.cfg.agent.interval);
                    }
                    notifier.status(&format!(
                        "serving on http://{addr}; {} pool(s); last reload {}",
                        self.cfg.pools.len(),
                        self.clock.now().format("%Y-%m-%dT%H:%M:%SZ")
                    ));
                }
                name = stop_signal(&mut sigterm, &mut sigint) => {
                    tracing::info!("{name}: stopping");
                    return Ok(());
                }
            }
        }
    }

    async fn collect(&mut self, now: DateTime<Utc>) {
        let mut report = NodeReport::new(self.node_id.clone(), node_pool(&self.cfg), now);
        report.interruption = self
            .notices
            .as_ref()
            .and_then(|w| w.notice.borrow().clone());
        // Collectors read /proc and the GPU driver: off the async runtime.
        let mut collectors = std::mem::take(&mut self.collectors);
        let started = tokio::time::Instant::now();
        let (collectors, report_back, failures) = tokio::task::spawn_blocking(move || {
            let failures: Vec<(&'static str, String)> = collectors
                .iter_mut()
                .filter_map(|c| {
                    let e = c.collect(now, &mut report).err()?;
                    Some((c.name(), e.to_string()))
                })
                .collect();
            (collectors, report, failures)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.shared
            .metrics
            .collection_seconds
            .observe(started.elapsed().as_secs_f64());
        self.collectors = collectors;
        report = report_back;
        for (collector, error) in failures {
            tracing::warn!(%collector, %error, "collection failed");
            self.shared
                .metrics
                .collection_errors
                .get_or_create(&CollectorLabel {
                    collector: collector.to_owned(),
                })
                .inc();
        }
        self.shared.metrics.export_gpus(&report.gpus);
        let failed =
            crate::daemon::workload::collect(&self.scraper, &self.cfg.scrapes, &mut report).await;
        for (name, why) in &failed {
            self.shared
                .metrics
                .collection_errors
                .get_or_create(&CollectorLabel {
                    collector: "scrape".to_owned(),
                })
                .inc();
            if !self
                .scrape_failures
                .iter()
                .any(|(n, w)| n == name && w == why)
            {
                tracing::warn!(workload = %name, error = %why, "scrape failed; the metric is left out of this node's report");
            }
        }
        for (name, _) in &self.scrape_failures {
            if !failed.iter().any(|(n, _)| n == name) {
                tracing::info!(workload = %name, "scrape works again");
            }
        }
        self.scrape_failures = failed;
        if let Some(h) = &report.host {
            let m = &self.shared.metrics;
            m.host_cpu_percent.set(h.cpu_percent);
            m.host_memory_percent.set(h.memory_percent().unwrap_or(0.0));
            m.host_load1_per_core.set(h.load_per_core().one);
        }
        self.drainer.refresh().await;
        report.protected = self.drainer.protected();
        report.drain = self.drainer.status();
        self.ingest.insert_local(report.clone());
        if self.claim.borrow().is_leader {
            // The leader's own node hears from its own table what the leader asks.
            self.drainer
                .answer(&self.ingest.answer_for(&self.node_id), now);
        }
        self.reporter.send(report);
    }

    async fn tick(&mut self) {
        let now = self.clock.now();
        self.collect(now).await;
        let is_leader = self.claim.borrow().is_leader;
        self.shared.metrics.is_leader.set(i64::from(is_leader));
        if is_leader != self.led {
            self.shared.metrics.leader_changes.inc();
            if is_leader {
                // Carry on where the last leader stopped: its windows, cooldowns and
                // circuit state.
                let n = pass::restore_all(&*self.decisions, &mut self.leader.pools).await;
                tracing::info!(restored = n, "leading: decision state loaded");
                // Groups start over from their members' sizes (their history lives
                // in memory, as HPA's does).
                for g in &mut self.leader.groups {
                    *g = pass::GroupRuntime::new(g.config.clone());
                }
                self.saved.clear();
                // Reports come to this agent from now on: until every agent has had time
                // to report, its plans are partial (`pass::Turn::heard_since`).
                self.leader.heard_since = Some(now);
                if self.shared_history {
                    // The forecasters learn what the last leader saw.
                    for p in &mut self.leader.pools {
                        p.restart_forecasts();
                    }
                    pass::attach_history(&mut self.leader.pools, &self.history, now);
                }
            } else {
                tracing::warn!(
                    reason = self.claim.borrow().note.as_deref().unwrap_or("-"),
                    "no longer leading"
                );
                self.ingest.clear();
            }
            self.led = is_leader;
        }
        if is_leader {
            let fresh = self.ingest.fresh(now);
            let fresh: Vec<&NodeReport> = fresh.iter().map(AsRef::as_ref).collect();
            self.leader
                .pass(
                    &fresh,
                    &self.claim,
                    now,
                    self.cfg.agent.interval,
                    &self.cfg.budget,
                )
                .await;
            // Reports into a pool whose reports match its instances come from them.
            self.ingest.set_members(
                self.leader
                    .pools
                    .iter()
                    .filter_map(|p| Some((p.config.name.clone(), p.members.clone()?)))
                    .collect(),
            );
            // The decision state is saved only while the claim still lets this agent
            // act: a deposed (or not yet confirmed) leader must not overwrite its
            // successor's state. The stores fence the write itself too (an etcd
            // transaction, a Lease precondition). Then each chosen node hears it in the
            // answer to its next report, from the state as saved, and again only while
            // this agent may act (a drain disrupts a node as a cloud call would).
            let mut answers = HashMap::new();
            if self.may_act().is_ok() {
                let (saved, failed) =
                    pass::save_then_answer(&*self.decisions, &self.leader.pools, &mut self.saved)
                        .await;
                for (pool, e) in failed {
                    tracing::warn!(%pool, error = %e, "cannot save decision state");
                }
                if self.may_act().is_ok() {
                    answers = saved;
                }
            }
            self.ingest.set_answers(answers);
        }
        // Drop expired nodes either way; only the leader's table means anything.
        let nodes = self.ingest.sweep(now);
        self.nodes = if is_leader { nodes } else { BTreeMap::new() };
        ingest::export(&self.shared.metrics, &self.nodes);
        self.publish_status();
        self.shared.ready.store(true, Ordering::Release);
        self.shared.beat(grace(self.cfg.agent.interval));
    }
}
