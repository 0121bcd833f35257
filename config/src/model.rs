//! The validated configuration: every value parsed into the type the agent uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use crate::raw::{
    BudgetEnforcement, GroupStrategy, PolicyKind, PredictiveMode, PriceConfig, ProviderConfig,
    SelectPolicy, Tier,
};

/// A configuration that passed every check.
#[derive(Debug, Clone)]
pub struct ValidatedConfig {
    /// The file it came from.
    pub source: PathBuf,
    /// `[agent]`.
    pub agent: Agent,
    /// `[cluster]`.
    pub cluster: Cluster,
    /// `[budget]`.
    pub budget: Budget,
    /// `[journal]`.
    pub journal: Journal,
    /// `[[pool]]`, in file order.
    pub pools: Vec<Pool>,
    /// `[[scrape]]`, in file order.
    pub scrapes: Vec<Scrape>,
    /// `[[group]]`, in file order.
    pub groups: Vec<Group>,
}

/// A validated `[[group]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// Unique name.
    pub name: String,
    /// Member pools, in the order written.
    pub members: Vec<String>,
    /// Allocation strategy.
    pub strategy: GroupStrategy,
    /// `spread`: the largest difference in nodes between two members.
    pub max_skew: u32,
    /// Name of the behavior preset, or `custom`.
    pub behavior_name: String,
    /// How the group's size moves.
    pub behavior: ScalingBehavior,
    /// HPA tolerance.
    pub tolerance: f64,
    /// Targets over all members' nodes.
    pub targets: Vec<Target>,
}

/// A validated `[[scrape]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    /// Endpoint URL.
    pub url: String,
    /// Series kept.
    pub series: String,
    /// Label matchers.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Aggregation.
    pub aggregate: crate::raw::ScrapeAggregate,
    /// The workload metric's name.
    pub name: String,
    /// Timeout.
    pub timeout: Duration,
    /// The values a node may report: at least `min`, at most `max` when set.
    pub range: (f64, Option<f64>),
}

impl ValidatedConfig {
    /// A one-line summary, as `capstan validate` prints it.
    pub fn summary(&self) -> String {
        let kinds = self
            .pools
            .iter()
            .map(|p| format!("{} ({}, {}..{})", p.name, p.provider.kind(), p.min, p.max))
            .collect::<Vec<_>>()
            .join(", ");
        let groups: String = self
            .groups
            .iter()
            .map(|g| {
                format!(
                    "; group {} ({}: {})",
                    g.name,
                    g.strategy.as_str(),
                    g.members.join(", ")
                )
            })
            .collect();
        format!(
            "{}: valid; coordinator {}, interval {}, {} pool(s){}{}{groups}",
            self.source.display(),
            self.cluster.coordinator.name(),
            humantime::format_duration(self.agent.interval),
            self.pools.len(),
            if kinds.is_empty() { "" } else { ": " },
            kinds
        )
    }

    /// The pool named `name`.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.name == name)
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }
}

/// `[agent]`.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Name of this node; `None` means the host name.
    pub node_name: Option<String>,
    /// Pool of this node.
    pub pool: Option<String>,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Collection and planning interval.
    pub interval: Duration,
    /// Most HTTP connections open at once, per listener.
    pub max_connections: usize,
    /// How long a client may take to send a request; idle connections close after it.
    pub request_timeout: Duration,
    /// State directory.
    pub state_dir: PathBuf,
    /// The metadata service to watch for interruption notices.
    pub interruptions: Option<Interruptions>,
    /// How this node drains, and asks not to be chosen.
    pub drain: crate::raw::DrainConfig,
}

/// Validated `[agent.interruptions]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruptions {
    /// The cloud.
    pub cloud: crate::raw::InterruptionCloud,
    /// Base URL of its metadata service.
    pub endpoint: String,
    /// Poll period.
    pub poll: Duration,
    /// Azure: approve this VM's scheduled events one read after they are first seen.
    pub acknowledge: bool,
}

/// `[cluster]`.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// The coordinator and its settings.
    pub coordinator: Coordinator,
    /// The cluster secret or shared token, for reports.
    pub token_file: Option<PathBuf>,
    /// The secret or token being rotated out, accepted as well while set.
    pub previous_token_file: Option<PathBuf>,
    /// The token `/v1/status` asks for, when set.
    pub status_token_file: Option<PathBuf>,
    /// How a report's sender is known.
    pub auth: crate::raw::ClusterAuth,
    /// Most nodes in the leader's table.
    pub max_nodes: usize,
    /// URL other agents use to reach this one when it leads.
    pub advertise_url: Option<String>,
    /// When a silent node drops out of its pool.
    pub node_expiry: Duration,
    /// Reports over mutual TLS, when set.
    pub tls: Option<Tls>,
}

/// `[cluster.tls]`.
#[derive(Debug, Clone)]
pub struct Tls {
    /// Address of the reports listener.
    pub listen: std::net::SocketAddr,
    /// CA certificates (PEM).
    pub ca_file: PathBuf,
    /// This agent's certificate chain (PEM).
    pub cert_file: PathBuf,
    /// This agent's private key (PEM).
    pub key_file: PathBuf,
}

/// `[cluster.etcd]`'s TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA certificates that signed etcd's server certificates (PEM).
    pub ca_file: PathBuf,
    /// Client certificate chain and private key (PEM), when etcd asks for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The leader-election backend with its settings.
#[derive(Debug, Clone)]
pub enum Coordinator {
    /// This agent leads itself.
    Standalone,
    /// etcd election on a lease.
    Etcd {
        /// Client URLs.
        endpoints: Vec<String>,
        /// Key prefix.
        prefix: String,
        /// Lease TTL.
        lease_ttl: Duration,
        /// TLS to etcd, with `https://` endpoints.
        tls: Option<EtcdTls>,
        /// etcd user name and the file holding its password.
        user: Option<(String, PathBuf)>,
    },
    /// Kubernetes Lease.
    Kubernetes {
        /// Namespace, if not the pod's.
        namespace: Option<String>,
        /// Lease name.
        lease_name: String,
        /// Lease duration.
        lease_duration: Duration,
    },
}

impl Coordinator {
    /// The name as written in config.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Etcd { .. } => "etcd",
            Self::Kubernetes { .. } => "kubernetes",
        }
    }
}

/// `[budget]`.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Fleet ceiling per hour.
    pub max_hourly_cost: Option<f64>,
    /// Emergency allowance per hour above the ceiling.
    pub emergency_allowance: f64,
    /// Report or trim.
    pub enforce: BudgetEnforcement,
}

/// `[journal]`.
#[derive(Debug, Clone)]
pub struct Journal {
    /// Days to keep journal files.
    pub retention_days: u32,
    /// The most bytes the journal's files may take together.
    pub max_bytes: Option<u64>,
    /// Whether every line also goes to standard output.
    pub stdout: bool,
}

/// A validated `[[pool]]`.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Unique name.
    pub name: String,
    /// Budget tier.
    pub tier: Tier,
    /// Provider settings.
    pub provider: ProviderConfig,
    /// Floor.
    pub min: u32,
    /// Ceiling outside emergencies.
    pub max: u32,
    /// Ceiling in emergencies (equals `max` when unset).
    pub emergency_max: u32,
    /// Per-pool money ceiling per hour.
    pub max_hourly_cost: Option<f64>,
    /// Plan replacements for nodes with faulty GPUs.
    pub replace_faulty_gpu_nodes: bool,
    /// Name of the behavior preset, or `custom`.
    pub behavior_name: String,
    /// Scaling behavior.
    pub behavior: ScalingBehavior,
    /// HPA tolerance.
    pub tolerance: f64,
    /// Prices.
    pub price: Option<PriceConfig>,
    /// Spot split.
    pub spot: Option<Spot>,
    /// Targets.
    pub targets: Vec<Target>,
    /// How the nodes' reports of a target are combined.
    pub aggregate: crate::raw::PoolAggregate,
    /// Predictive settings.
    pub predictive: Predictive,
    /// Schedules.
    pub schedules: Vec<Schedule>,
    /// Emergency settings.
    pub emergency: Option<Emergency>,
    /// Flap protection.
    pub flap: Flap,
    /// The actuator's circuit breaker.
    pub circuit: Circuit,
    /// How the pool shrinks when its reports match its instances.
    pub scale_in: ScaleIn,
    /// The `[[group]]` this pool is a member of, if any.
    pub group: Option<String>,
}

/// Validated `scale_in`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScaleIn {
    /// Which healthy nodes leave first.
    pub select: crate::raw::ScaleInSelect,
    /// How long a chosen node may drain.
    pub drain_timeout: Duration,
    /// Past the timeout, or when a drain failed.
    pub on_timeout: crate::raw::OnDrainTimeout,
    /// At most this many nodes drain at once.
    pub max_draining: NodeShare,
    /// No scale-in while more than this fraction (0–1) of the in-service nodes are
    /// unready or silent.
    pub halt_when_unready: f64,
}

impl Default for ScaleIn {
    fn default() -> Self {
        Self {
            select: crate::raw::ScaleInSelect::LeastBusy,
            drain_timeout: Duration::from_secs(600),
            on_timeout: crate::raw::OnDrainTimeout::Remove,
            max_draining: NodeShare::Fraction(0.1),
            halt_when_unready: 0.45,
        }
    }
}

/// A number of nodes, or a fraction of a pool's nodes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NodeShare {
    /// This many.
    Count(u32),
    /// This fraction (0–1] of the pool's nodes, rounded up.
    Fraction(f64),
}

impl NodeShare {
    /// How many nodes of a pool of `nodes` this is: a fraction rounded up, at least 1.
    pub fn of(self, nodes: u32) -> u32 {
        match self {
            Self::Count(n) => n,
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            Self::Fraction(f) => ((f * f64::from(nodes)).ceil() as u32).max(1),
        }
    }
}

/// Validated `circuit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Circuit {
    /// Failed calls in a row that open the circuit (at least 1).
    pub failures: u32,
    /// The longest wait between tries.
    pub max_backoff: Duration,
}

impl Default for Circuit {
    fn default() -> Self {
        Self {
            failures: 5,
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Scale-up and scale-down rules (HPA v2 `behavior`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalingBehavior {
    /// Rules when adding nodes.
    pub scale_up: ScalingRules,
    /// Rules when removing nodes.
    pub scale_down: ScalingRules,
}

/// Rules for one direction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScalingRules {
    /// Recommendations within this window are considered together.
    pub stabilization_window: Duration,
    /// How to combine the policies.
    pub select_policy: SelectPolicy,
    /// Rate limits.
    pub policies: Vec<ScalingPolicy>,
}

/// One rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScalingPolicy {
    /// Nodes or percent.
    pub kind: PolicyKind,
    /// Amount per period.
    pub value: u32,
    /// Period.
    pub period: Duration,
}

const fn policy(kind: PolicyKind, value: u32, period_s: u64) -> ScalingPolicy {
    ScalingPolicy {
        kind,
        value,
        period: Duration::from_secs(period_s),
    }
}

/// The behavior presets. Their exact rules are part of the user-facing contract and
/// documented in the README.
pub mod presets {
    use super::*;

    /// The names users may write.
    pub const NAMES: [&str; 3] = ["aggressive", "balanced", "conservative"];

    /// The preset called `name`.
    pub fn by_name(name: &str) -> Option<ScalingBehavior> {
        match name {
            "aggressive" => Some(aggressive()),
            "balanced" => Some(balanced()),
            "conservative" => Some(conservative()),
            _ => None,
        }
    }

    /// Up: no stabilization, the larger of +300 % or +8 nodes per 15 s.
    /// Down: 2 min stabilization, at most 50 % per minute.
    pub fn aggressive() -> ScalingBehavior {
        ScalingBehavior {
            scale_up: ScalingRules {
                stabilization_window: Duration::ZERO,
                select_policy: SelectPolicy::Max,
                policies: vec![
                    policy(PolicyKind::Percent, 300, 15),
                    policy(PolicyKind::Nodes, 8, 15),
                ],
            },
            scale_down: ScalingRules {
                stabilization_window: Duration::from_secs(120),
                select_policy: SelectPolicy::Max,
                policies: vec![policy(PolicyKind::Percent, 50, 60)],
            },
        }
    }

    /// HPA v2's defaults. Up: no stabilization, the larger of +100 % or +4 nodes per 15 s.
    /// Down: 5 min stabilization, at most 100 % per 15 s.
    pub fn balanced() -> ScalingBehavior {
        ScalingBehavior {
            scale_up: ScalingRules {
                stabilization_window: Duration::ZERO,
                select_policy: SelectPolicy::Max,
                policies: vec![
                    policy(PolicyKind::Percent, 100, 15),
                    policy(PolicyKind::Nodes, 4, 15),
                ],
            },
            scale_down: ScalingRules {
                stabilization_window: Duration::from_secs(300),
                select_policy: SelectPolicy::Max,
                policies: vec![policy(PolicyKind::Percent, 100, 15)],
            },
        }
    }

    /// Up: 1 min stabilization, the smaller of +50 % or +2 nodes per minute.
    /// Down: 10 min stabilization, the smaller of −10 % or −1 node per 2 min.
    pub fn conservative() -> ScalingBehavior {
        ScalingBehavior {
            scale_up: ScalingRules {
                stabilization_window: Duration::from_secs(60),
                select_policy: SelectPolicy::Min,
                policies: vec![
                    policy(PolicyKind::Percent, 50, 60),
                    policy(PolicyKind::Nodes, 2, 60),
                ],
            },
            scale_down: ScalingRules {
                stabilization_window: Duration::from_secs(600),
                select_policy: SelectPolicy::Min,
                policies: vec![
                    policy(PolicyKind::Percent, 10, 120),
                    policy(PolicyKind::Nodes, 1, 120),
                ],
            },
        }
    }
}

/// The on-demand/spot split.
#[derive(Debug, Clone, PartialEq)]
pub struct Spot {
    /// Always on-demand.
    pub on_demand_base: u32,
    /// On-demand percent above the base.
    pub on_demand_percent_above_base: u32,
    /// Allowed instance types.
    pub instance_types: Vec<String>,
    /// Fallback to on-demand after this long without spot capacity.
    pub fallback_after: Duration,
    /// Retry spot after this long.
    pub retry_after: Duration,
}

/// A node metric that collectors produce.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// `cpu.utilization`: busy CPU, percent of all cores.
    CpuUtilization,
    /// `memory.utilization`: used memory, percent.
    MemoryUtilization,
    /// `swap.utilization`: used swap, percent.
    SwapUtilization,
    /// `disk.utilization`: the fullest disk, percent used.
    DiskUtilization,
    /// `load.1`: one-minute load average per core.
    Load1,
    /// `load.5`: five-minute load average per core.
    Load5,
    /// `load.15`: fifteen-minute load average per core.
    Load15,
    /// `network.rx_bytes_per_second`: received bytes per second, all interfaces.
    NetworkRxBytesPerSecond,
    /// `network.tx_bytes_per_second`: sent bytes per second, all interfaces.
    NetworkTxBytesPerSecond,
    /// `gpu.utilization`: GPU busy percent, averaged over the pool's GPUs.
    GpuUtilization,
    /// `gpu.memory_utilization`: GPU memory used, percent.
    GpuMemoryUtilization,
    /// `workload.<name>`: a series scraped from a workload on the node.
    Workload(String),
}

impl Metric {
    /// The fixed metric names; `workload.<name>` comes on top.
    pub const FIXED: [(&'static str, Metric); 11] = [
        ("cpu.utilization", Metric::CpuUtilization),
        ("memory.utilization", Metric::MemoryUtilization),
        ("swap.utilization", Metric::SwapUtilization),
        ("disk.utilization", Metric::DiskUtilization),
        ("load.1", Metric::Load1),
        ("load.5", Metric::Load5),
        ("load.15", Metric::Load15),
        (
            "network.rx_bytes_per_second",
            Metric::NetworkRxBytesPerSecond,
        ),
        (
            "network.tx_bytes_per_second",
            Metric::NetworkTxBytesPerSecond,
        ),
        ("gpu.utilization", Metric::GpuUtilization),
        ("gpu.memory_utilization", Metric::GpuMemoryUtilization),
    ];

    /// Parses a metric name as written in a target.
    pub fn parse(name: &str) -> Option<Self> {
        if let Some(series) = name.strip_prefix("workload.") {
            let mut chars = series.chars();
            let first_ok = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
            return (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .then(|| Metric::Workload(series.to_owned()));
        }
        Self::FIXED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| m.clone())
    }

    /// The name as written in config.
    pub fn name(&self) -> String {
        match self {
            Metric::Workload(series) => format!("workload.{series}"),
            fixed => Self::FIXED
                .iter()
                .find(|(_, m)| m == fixed)
                .map(|(n, _)| (*n).to_owned())
                .unwrap_or_default(),
        }
    }

    /// Whether the metric is a percentage, so targets must lie in (0, 100].
    pub const fn is_percent(&self) -> bool {
        matches!(
            self,
            Metric::CpuUtilization
                | Metric::MemoryUtilization
                | Metric::SwapUtilization
                | Metric::DiskUtilization
                | Metric::GpuUtilization
                | Metric::GpuMemoryUtilization
        )
    }
}

/// Where a target's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetSource {
    /// A metric in node reports, averaged per node.
    Metric(Metric),
    /// A PromQL query; its value is the pool's per-node average.
    PromQl {
        /// The query.
        query: String,
        /// Prometheus base URL.
        url: String,
        /// Query timeout.
        timeout: Duration,
    },
}

/// A validated target.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The metric.
    pub source: TargetSource,
    /// Per-node value to hold.
    pub value: f64,
}

impl Target {
    /// A short label for reasons and metrics: the metric name, or `promql`.
    pub fn label(&self) -> String {
        match &self.source {
            TargetSource::Metric(m) => m.name(),
            TargetSource::PromQl { .. } => "promql".to_owned(),
        }
    }
}

/// Validated `predictive`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictive {
    /// Mode.
    pub mode: PredictiveMode,
    /// Forecast horizon.
    pub horizon: Duration,
    /// History to keep.
    pub history: Duration,
    /// Provisioning lead time.
    pub lead_time: Duration,
    /// Anomaly z-score threshold.
    pub anomaly_threshold: f64,
    /// Anomalies may trigger emergency capacity.
    pub anomaly_triggers_emergency: bool,
}

/// A validated schedule window.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Label (the cron expression when unnamed).
    pub name: String,
    /// Parsed cron expression.
    pub cron: croner::Cron,
    /// Time zone.
    pub timezone: chrono_tz::Tz,
    /// Window length.
    pub duration: Duration,
    /// `min` override.
    pub min: Option<u32>,
    /// `max` override.
    pub max: Option<u32>,
}

/// Validated `emergency`.
#[derive(Debug, Clone, PartialEq)]
pub struct Emergency {
    /// Saturation ratio.
    pub threshold: f64,
    /// Consecutive intervals.
    pub intervals: u32,
}

/// Validated `flap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flap {
    /// More reversals than this within `window` freeze the pool; 0 is off.
    pub max_reversals: u32,
    /// Counting window.
    pub window: Duration,
    /// Freeze length.
    pub cool_off: Duration,
}

impl Flap {
    /// Flap protection that never triggers.
    pub const OFF: Self = Self {
        max_reversals: 0,
        window: Duration::ZERO,
        cool_off: Duration::ZERO,
    };
}
