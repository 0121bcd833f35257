//! The TOML schema exactly as users write it.
//!
//! Every table denies unknown keys, and every field carries the doc comment that
//! becomes its reference documentation. Values whose syntax needs checking beyond
//! their TOML type (durations, cron expressions, time zones, addresses, metric
//! names) stay strings here: [`crate::validate`] checks them all in one pass so that
//! a user sees every mistake at once, each with its key and line.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

mod cluster;
pub mod defaults;
mod pool;
mod scaling;

pub use self::{cluster::*, pool::*, scaling::*};

/// The whole configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// This node's agent: identity, HTTP listener, collection interval, state.
    #[serde(default)]
    pub agent: AgentConfig,
    /// How agents find and elect the leader.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Fleet-wide money limits.
    #[serde(default)]
    pub budget: BudgetConfig,
    /// The decision journal.
    #[serde(default)]
    pub journal: JournalConfig,
    /// The node pools the leader scales, written as `[[pool]]` tables.
    #[serde(default, rename = "pool")]
    pub pools: Vec<PoolConfig>,
    /// Local Prometheus endpoints this agent scrapes into `workload.<name>` metrics,
    /// written as `[[scrape]]` tables.
    #[serde(default, rename = "scrape")]
    pub scrapes: Vec<ScrapeConfig>,
    /// Pools that serve one workload together, possibly on different clouds, written
    /// as `[[group]]` tables: the group is sized on the telemetry of all its members
    /// and its size is allocated to them by `strategy`.
    #[serde(default, rename = "group")]
    pub groups: Vec<GroupConfig>,
}

/// `[[group]]`: member pools sized together and allocated by a strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// Unique name (not a pool's): letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// Member pools, by name. A pool belongs to one group at most and has no targets
    /// of its own. For `priority`, the order of this list is the order of preference.
    pub members: Vec<String>,
    /// `cheapest` (default): fill the lowest price per node first, spot included;
    /// `spread`: keep the members' sizes within `max_skew` nodes of each other;
    /// `priority`: fill the members in the order listed.
    #[serde(default)]
    pub strategy: GroupStrategy,
    /// `spread` only: the largest difference in nodes allowed between two members
    /// (as Kubernetes' topology spread `maxSkew`); at least 1, default 1.
    #[serde(default)]
    pub max_skew: Option<u32>,
    /// How the group's size moves: a preset or an explicit table, as for a pool. Each
    /// member's own `behavior.scale_down` sets how fast capacity may leave it (the
    /// return after a spill-over).
    #[serde(default)]
    pub behavior: BehaviorConfig,
    /// Relative deviation from a target that causes no change (HPA's tolerance).
    #[serde(default = "defaults::tolerance")]
    pub tolerance: f64,
    /// Metrics to track over all members' nodes together; the group is sized for the
    /// most demanding one.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
}

/// How a group's size is allocated to its members.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum GroupStrategy {
    /// Lowest price per node first (spot included, at the member's split).
    #[default]
    Cheapest,
    /// Even sizes within `max_skew`.
    Spread,
    /// In the order of `members`.
    Priority,
}

impl GroupStrategy {
    /// The name as written in config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Cheapest => "cheapest",
            Self::Spread => "spread",
            Self::Priority => "priority",
        }
    }
}

/// `[[scrape]]`: one series kept from a Prometheus text endpoint on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The endpoint, e.g. `"http://127.0.0.1:8080/metrics"`.
    pub url: String,
    /// The series (metric name) to keep, e.g. `"http_requests_per_second"`.
    pub series: String,
    /// Only samples with these labels, e.g. `{ route = "/predict" }`.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    /// How the kept samples become one value: `sum` (default), `avg`, `max`, `min`.
    #[serde(default)]
    pub aggregate: ScrapeAggregate,
    /// The workload metric's name (`workload.<name>` in targets); defaults to `series`.
    #[serde(default)]
    pub name: Option<String>,
    /// Give up on the endpoint after this long.
    #[serde(default = "defaults::scrape_timeout")]
    pub timeout: String,
    /// The lowest value a node may report for this metric (default 0): the leader
    /// refuses a report with less (422, naming the field).
    #[serde(default)]
    pub min: Option<f64>,
    /// The highest value a node may report for this metric (default: none).
    #[serde(default)]
    pub max: Option<f64>,
}

/// How a scrape's samples are combined.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ScrapeAggregate {
    /// Their sum.
    #[default]
    Sum,
    /// Their mean.
    Avg,
    /// The largest.
    Max,
    /// The smallest.
    Min,
}

/// `[agent]`: settings of the agent on this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Name of this node in reports and status. Defaults to the host name.
    #[serde(default)]
    pub node_name: Option<String>,
    /// The pool this node belongs to, when it is not discovered from cloud tags.
    #[serde(default)]
    pub pool: Option<String>,
    /// Address of the HTTP server (`/metrics`, `/healthz`, `/readyz`, `/v1/status`).
    /// Port 0 picks a free port, which the agent logs.
    #[serde(default = "defaults::listen")]
    pub listen: String,
    /// Collection and planning interval, e.g. `"10s"`. Between 1s and 1h.
    #[serde(default = "defaults::interval")]
    pub interval: String,
    /// Most HTTP connections open at once on each listener (at least 16); more are
    /// closed as they arrive. Never more than the open-file limit allows.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// How long a client may take to send a request (its head, and a report's body);
    /// a connection that sends nothing for this long is closed. Between 1s and 5m.
    #[serde(default = "defaults::request_timeout")]
    pub request_timeout: String,
    /// Directory for the journal and persisted decision state.
    #[serde(default = "defaults::state_dir")]
    pub state_dir: PathBuf,
    /// Watch the cloud's metadata service for this node's interruption notices.
    #[serde(default)]
    pub interruptions: Option<InterruptionsConfig>,
    /// How this node drains when the leader chooses it to leave its pool, and how it
    /// asks not to be chosen.
    #[serde(default)]
    pub drain: DrainConfig,
}

/// `[agent.drain]`: what this node does when the leader chooses it for scale-in (the
/// leader asks in its answer to the node's report, and removes the node once its
/// reports say `drained`, or at the pool's `scale_in.drain_timeout`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainConfig {
    /// `none` (the default: nothing to drain, the node reports `drained` at once),
    /// `command` (runs `command`; exit status 0 means drained) or `kubernetes`
    /// (cordons the node, evicts its pods through the Eviction API so disruption
    /// budgets hold, and waits until they are gone; DaemonSet and mirror pods stay).
    #[serde(default)]
    pub method: DrainMethod,
    /// With `method = "command"`: the program and its arguments (no shell), run once
    /// per drain with the agent's environment plus `CAPSTAN_NODE`, `CAPSTAN_POOL` and
    /// `CAPSTAN_DRAIN_DEADLINE` (RFC 3339). It is stopped at the deadline.
    #[serde(default)]
    pub command: Vec<String>,
    /// Run (with the same environment) when the leader returns the node to service
    /// after a drain (`scale_in.on_timeout = "keep"`, or the pool stopped shrinking).
    #[serde(default)]
    pub undo_command: Vec<String>,
    /// While this file exists, the node reports `protected` and is never chosen for
    /// scale-in. With `method = "kubernetes"`, so does a pod on the node annotated
    /// `capstan.io/do-not-disrupt: "true"`.
    #[serde(default)]
    pub protect_file: Option<PathBuf>,
    /// With `method = "kubernetes"`: the Kubernetes node to cordon and drain (the
    /// shipped DaemonSet sets it from `spec.nodeName`); default: `agent.node_name`.
    #[serde(default)]
    pub kubernetes_node: Option<String>,
}

/// `[agent.drain] method`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum DrainMethod {
    /// Nothing to drain.
    #[default]
    None,
    /// Run `command`.
    Command,
    /// Cordon the node and evict its pods.
    Kubernetes,
}

impl DrainMethod {
    /// The name as written in config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Command => "command",
            Self::Kubernetes => "kubernetes",
        }
    }
}

/// `[agent.interruptions]`: where this node learns that the cloud will take it away.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InterruptionsConfig {
    /// The cloud whose metadata service to watch: `aws` (IMDSv2: spot instance-action
    /// and rebalance recommendations), `azure` (Scheduled Events: `Preempt`,
    /// `Terminate`) or `gcp` (`preempted`, `maintenance-event`). A node without
    /// `agent.node_name` is named by its instance id (AWS) or VM/instance name (Azure,
    /// GCP), so the leader matches its report to the pool's instance.
    pub cloud: InterruptionCloud,
    /// The metadata service's base URL (tests); defaults to the cloud's
    /// (`http://169.254.169.254` on every cloud).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// How often to ask, e.g. `"2s"`. Between 1s and 1m. On GCP the reads are hanging
    /// GETs (`wait_for_change=true`) that return as soon as a value changes; this is
    /// then only the pause after a failed read.
    #[serde(default = "defaults::interruptions_poll")]
    pub poll: String,
    /// Azure only: approve (start) this VM's `Preempt` and `Terminate` scheduled events
    /// at the read after the one that first returned them (one `poll` later, once the
    /// notice is published for this node's report), so the platform need not wait out
    /// the notice period. Off by default: the node keeps all the notice time to drain.
    #[serde(default)]
    pub acknowledge: bool,
}

/// Clouds whose interruption notices the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InterruptionCloud {
    /// EC2 instance metadata (IMDSv2).
    Aws,
    /// Azure Scheduled Events (`Preempt`, `Terminate`) from the instance metadata
    /// service; a node without `agent.node_name` is named by its VM name.
    Azure,
    /// GCE metadata (`instance/preempted`, `instance/maintenance-event`); a node
    /// without `agent.node_name` is named by its instance name.
    Gcp,
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            node_name: None,
            pool: None,
            listen: defaults::listen(),
            interval: defaults::interval(),
            max_connections: defaults::max_connections(),
            request_timeout: defaults::request_timeout(),
            state_dir: defaults::state_dir(),
            interruptions: None,
            drain: DrainConfig::default(),
        }
    }
}
