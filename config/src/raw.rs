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
    /// Directory for the journal and persisted decision state.
    #[serde(default = "defaults::state_dir")]
    pub state_dir: PathBuf,
    /// Watch the cloud's metadata service for this node's interruption notices.
    #[serde(default)]
    pub interruptions: Option<InterruptionsConfig>,
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
            state_dir: defaults::state_dir(),
            interruptions: None,
        }
    }
}

/// Leader election backend.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum CoordinatorKind {
    /// This agent leads itself (single machine, or one leader by construction).
    #[default]
    Standalone,
    /// The etcd election API on a lease.
    Etcd,
    /// A `coordination.k8s.io/v1` Lease.
    Kubernetes,
}

/// `[cluster]`: coordination between agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `standalone` (default), `etcd` or `kubernetes`.
    #[serde(default)]
    pub coordinator: CoordinatorKind,
    /// File holding the bearer token agents present to the leader. Never the token itself.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// URL at which other agents reach this agent when it leads, e.g. `"http://10.0.0.5:9464"`.
    #[serde(default)]
    pub advertise_url: Option<String>,
    /// How long a silent node stays in its pool's aggregate before it is dropped, e.g. `"5m"`.
    #[serde(default = "defaults::node_expiry")]
    pub node_expiry: String,
    /// `[cluster.etcd]`: required when `coordinator = "etcd"`.
    #[serde(default)]
    pub etcd: Option<EtcdConfig>,
    /// `[cluster.kubernetes]`: optional settings when `coordinator = "kubernetes"`.
    #[serde(default)]
    pub kubernetes: Option<KubernetesConfig>,
    /// `[cluster.tls]`: node reports over mutual TLS, on a listener of their own.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `[cluster.tls]`: with it, the leader takes reports only over mutual TLS on
/// `listen`, from agents whose certificate `ca_file` signed; every agent presents
/// `cert_file` (its server certificate too) when it reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Address of the reports listener, e.g. `"0.0.0.0:9465"`.
    pub listen: String,
    /// PEM file of the CA that signs every agent's certificate.
    pub ca_file: PathBuf,
    /// PEM file of this agent's certificate chain (valid for its advertised host name or IP).
    pub cert_file: PathBuf,
    /// PEM file of this agent's private key.
    pub key_file: PathBuf,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            coordinator: CoordinatorKind::default(),
            token_file: None,
            advertise_url: None,
            node_expiry: defaults::node_expiry(),
            etcd: None,
            kubernetes: None,
            tls: None,
        }
    }
}

/// `[cluster.etcd]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// etcd client URLs, e.g. `["http://127.0.0.1:2379"]`.
    pub endpoints: Vec<String>,
    /// Key prefix for the election and persisted state.
    #[serde(default = "defaults::etcd_prefix")]
    pub prefix: String,
    /// Lease time-to-live; etcd's minimum is 2s.
    #[serde(default = "defaults::lease_ttl")]
    pub lease_ttl: String,
}

/// `[cluster.kubernetes]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConfig {
    /// Namespace of the Lease; defaults to the pod's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name of the Lease object.
    #[serde(default = "defaults::lease_name")]
    pub lease_name: String,
    /// Lease duration.
    #[serde(default = "defaults::lease_ttl")]
    pub lease_duration: String,
}

/// What to do when the fleet is over budget because prices rose.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum BudgetEnforcement {
    /// Report the over-budget state; scale-ups stay blocked.
    #[default]
    Report,
    /// Scale down from the lowest tier, at each pool's scale-down rate.
    Trim,
}

/// `[budget]`: fleet-wide money ceiling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// Ceiling in money per hour for the whole fleet. Unset means no ceiling.
    #[serde(default)]
    pub max_hourly_cost: Option<f64>,
    /// Extra money per hour that emergency capacity may spend above the ceiling.
    #[serde(default)]
    pub emergency_allowance: f64,
    /// `report` (default) or `trim`.
    #[serde(default)]
    pub enforce: BudgetEnforcement,
}

/// `[journal]`: the decision journal under `<state_dir>/journal/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalConfig {
    /// Days a journal file is kept before it is deleted.
    #[serde(default = "defaults::retention_days")]
    pub retention_days: u32,
    /// The most bytes the journal's files may take on disk together (at least 65536);
    /// past it the oldest are deleted first. Unbounded (by size) when absent.
    #[serde(default)]
    pub max_bytes: Option<u64>,
    /// Also write every journal line to standard output (logs go to standard error), so
    /// that a container's log pipeline keeps the journal when its volume is lost.
    #[serde(default)]
    pub stdout: bool,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            retention_days: defaults::retention_days(),
            max_bytes: None,
            stdout: false,
        }
    }
}

/// Budget tier: under a binding ceiling capacity is granted enterprise first, basic last.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Served first.
    Enterprise,
    /// Served after enterprise. The default.
    #[default]
    Premium,
    /// Trimmed first.
    Basic,
}

impl Tier {
    /// The name as written in config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Enterprise => "enterprise",
            Self::Premium => "premium",
            Self::Basic => "basic",
        }
    }
}

/// One `[[pool]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Unique pool name: letters, digits, `-`, `_` and `.`, at most 63 characters.
    pub name: String,
    /// `enterprise`, `premium` (default) or `basic`.
    #[serde(default)]
    pub tier: Tier,
    /// The cloud resource behind the pool, e.g. `{ type = "aws", asg = "web", region = "us-east-1" }`.
    pub provider: ProviderConfig,
    /// Fewest nodes; neither schedules' absence nor the budget go below it.
    pub min: u32,
    /// Most nodes outside an emergency.
    pub max: u32,
    /// Most nodes during an emergency; at least `max`.
    #[serde(default)]
    pub emergency_max: Option<u32>,
    /// Per-pool ceiling in money per hour.
    #[serde(default)]
    pub max_hourly_cost: Option<f64>,
    /// Replace a node whose GPU reports uncorrected ECC errors or a fatal XID: its
    /// replacement is planned (within `max` and the budget) and journaled.
    #[serde(default)]
    pub replace_faulty_gpu_nodes: bool,
    /// `aggressive`, `balanced` (default), `conservative`, or an explicit table.
    #[serde(default)]
    pub behavior: BehaviorConfig,
    /// Relative deviation from a target that causes no change (HPA's tolerance).
    #[serde(default = "defaults::tolerance")]
    pub tolerance: f64,
    /// Prices per node-hour.
    #[serde(default)]
    pub price: Option<PriceConfig>,
    /// On-demand/spot split.
    #[serde(default)]
    pub spot: Option<SpotConfig>,
    /// Metrics to track; the pool is sized for the most demanding one.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// Forecast-based scaling.
    #[serde(default)]
    pub predictive: PredictiveConfig,
    /// Time windows that raise or lower `min` and `max`.
    #[serde(default)]
    pub schedule: Vec<ScheduleConfig>,
    /// When saturation may take the pool above `max`.
    #[serde(default)]
    pub emergency: Option<EmergencyConfig>,
    /// Flap protection: a pool whose decisions keep reversing is frozen for a while.
    #[serde(default)]
    pub flap: FlapConfig,
    /// The actuator's circuit breaker: after this many failed cloud calls in a row the
    /// pool's provider is left alone, then tried once (half-open) after a backoff.
    #[serde(default)]
    pub circuit: CircuitConfig,
}

/// The provider table of a pool, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum ProviderConfig {
    /// An AWS Auto Scaling Group.
    Aws(AwsProviderConfig),
    /// An Azure VM Scale Set.
    Azure(AzureProviderConfig),
    /// A GKE node pool.
    Gke(GkeProviderConfig),
    /// An in-memory pool that records what it is told; acts on nothing.
    DryRun(DryRunProviderConfig),
}

impl ProviderConfig {
    /// The `type` as written in config.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Aws(_) => "aws",
            Self::Azure(_) => "azure",
            Self::Gke(_) => "gke",
            Self::DryRun(_) => "dry-run",
        }
    }
}

/// `type = "aws"`. Credentials come from the SDK's default chain, never from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AwsProviderConfig {
    /// Region of the Auto Scaling Group.
    pub region: String,
    /// Name of the Auto Scaling Group.
    pub asg: String,
    /// Endpoint override (VPC endpoints, LocalStack, tests).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Role to assume on top of the default credentials.
    #[serde(default)]
    pub assume_role_arn: Option<String>,
}

/// `type = "azure"`. Credentials come from `azure_identity`, never from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AzureProviderConfig {
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group of the scale set.
    pub resource_group: String,
    /// Name of the VM Scale Set.
    pub scale_set: String,
    /// ARM endpoint override (sovereign clouds, Azure Stack Hub, tests); the token
    /// is asked for this endpoint's audience (`<endpoint>/.default`).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Where the credentials come from: `auto` (environment, then workload identity,
    /// then managed identity), `environment` (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_CLIENT_SECRET`), `workload-identity` (AKS: `AZURE_FEDERATED_TOKEN_FILE`),
    /// `managed-identity` or `azure-cli`.
    #[serde(default)]
    pub credential: AzureCredential,
    /// Client id of a user-assigned managed identity (default: the system-assigned one).
    #[serde(default)]
    pub managed_identity_client_id: Option<String>,
    /// Microsoft Entra ID endpoint override (sovereign clouds, tests), e.g.
    /// `https://login.microsoftonline.us`.
    #[serde(default)]
    pub authority_host: Option<String>,
    /// A PEM file of CA certificates to trust for the ARM and Entra ID endpoints, in
    /// addition to the system's (Azure Stack Hub, tests).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// Where an Azure pool's credentials come from.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AzureCredential {
    /// The environment's client secret, else workload identity, else managed identity.
    #[default]
    Auto,
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and `AZURE_CLIENT_SECRET`.
    Environment,
    /// AKS workload identity (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
    /// `AZURE_FEDERATED_TOKEN_FILE`).
    WorkloadIdentity,
    /// The VM's managed identity (IMDS).
    ManagedIdentity,
    /// The signed-in Azure CLI (development).
    AzureCli,
}

/// `type = "gke"`. Credentials come from Application Default Credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GkeProviderConfig {
    /// Google Cloud project id.
    pub project: String,
    /// Region or zone of the cluster.
    pub location: String,
    /// GKE cluster name.
    pub cluster: String,
    /// The (on-demand) node pool.
    pub node_pool: String,
    /// An optional node pool of spot VMs that takes the spot share.
    #[serde(default)]
    pub spot_node_pool: Option<String>,
    /// API endpoint override (Private Service Connect, tests): the Container API is
    /// asked at `<endpoint>/v1/...` and the Compute API (the node pools' managed
    /// instance groups) at `<endpoint>/compute/v1/...`.
    #[serde(default)]
    pub endpoint: Option<String>,
}

/// `type = "dry-run"`: starts at `initial` nodes and applies targets in memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DryRunProviderConfig {
    /// Nodes the pool starts with.
    #[serde(default)]
    pub initial: u32,
    /// A file that holds the pool's size, so agents on one machine share one pool (for
    /// trying cluster mode out, and its tests). Every applied target is also appended,
    /// one JSON line each, to the same path with `.log` added.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
    /// The instance type its imaginary nodes run (for prices by type and
    /// `capstan rightsizing`).
    #[serde(default)]
    pub instance_type: Option<String>,
}

/// A named behavior preset or an explicit behavior.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum BehaviorConfig {
    /// `"aggressive"`, `"balanced"` or `"conservative"`.
    Preset(String),
    /// A table with `scale_up` and `scale_down` rules.
    Explicit(ExplicitBehaviorConfig),
}

impl Default for BehaviorConfig {
    fn default() -> Self {
        Self::Preset("balanced".to_owned())
    }
}

impl<'de> Deserialize<'de> for BehaviorConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BehaviorVisitor;
        impl<'de> Visitor<'de> for BehaviorVisitor {
            type Value = BehaviorConfig;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a preset name (\"aggressive\", \"balanced\", \"conservative\") or a table with scale_up/scale_down")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(BehaviorConfig::Preset(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                ExplicitBehaviorConfig::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(BehaviorConfig::Explicit)
            }
        }
        deserializer.deserialize_any(BehaviorVisitor)
    }
}

/// An explicit behavior, optionally starting from a preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplicitBehaviorConfig {
    /// The preset whose rules apply where this table is silent (default `balanced`).
    #[serde(default)]
    pub preset: Option<String>,
    /// Rules for adding nodes.
    #[serde(default)]
    pub scale_up: Option<RulesConfig>,
    /// Rules for removing nodes.
    #[serde(default)]
    pub scale_down: Option<RulesConfig>,
}

/// Scaling rules for one direction (HPA's `HPAScalingRules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Look-back window over which recommendations are smoothed, at most 1h.
    #[serde(default)]
    pub stabilization_window: Option<String>,
    /// `max` (the policy allowing the biggest change), `min`, or `disabled`.
    #[serde(default)]
    pub select_policy: Option<SelectPolicy>,
    /// Rate limits; replace the preset's when given.
    #[serde(default)]
    pub policies: Option<Vec<PolicyConfig>>,
}

/// Which rate policy applies when several do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SelectPolicy {
    /// The policy that allows the largest change.
    #[serde(alias = "Max")]
    Max,
    /// The policy that allows the smallest change.
    #[serde(alias = "Min")]
    Min,
    /// No change in this direction at all.
    #[serde(alias = "Disabled")]
    Disabled,
}

/// The unit of a rate policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    /// A number of nodes per period.
    #[serde(alias = "Nodes", alias = "Pods")]
    Nodes,
    /// A percentage of the nodes at the start of the period.
    #[serde(alias = "Percent")]
    Percent,
}

/// One rate policy: at most `value` nodes or percent per `period`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// `nodes` or `percent`.
    #[serde(rename = "type")]
    pub kind: PolicyKind,
    /// Nodes or percent; above zero.
    pub value: u32,
    /// Period, between 1s and 30m.
    pub period: String,
}

/// `price`: money per node-hour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// On-demand price per node-hour.
    pub on_demand: f64,
    /// Spot price per node-hour, where the cloud does not give live prices.
    #[serde(default)]
    pub spot: Option<f64>,
    /// Prices by instance type, for pools that mix types.
    #[serde(default)]
    pub by_type: BTreeMap<String, TypePriceConfig>,
}

/// Prices of one instance type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TypePriceConfig {
    /// On-demand price per node-hour.
    pub on_demand: f64,
    /// Spot price per node-hour.
    #[serde(default)]
    pub spot: Option<f64>,
    /// The type's family, for `capstan rightsizing` (sizes of one family are compared);
    /// default: the name up to its first `.` (AWS's `m5` of `m5.xlarge`).
    #[serde(default)]
    pub family: Option<String>,
    /// Virtual CPUs, for `capstan rightsizing` where the cloud has no catalogue.
    #[serde(default)]
    pub vcpus: Option<u32>,
    /// Memory in GiB, for `capstan rightsizing`.
    #[serde(default)]
    pub memory_gib: Option<f64>,
    /// GPUs, for `capstan rightsizing`.
    #[serde(default)]
    pub gpus: Option<u32>,
    /// Memory of all its GPUs together in GiB, for `capstan rightsizing`.
    #[serde(default)]
    pub gpu_memory_gib: Option<f64>,
}

/// `spot`: the on-demand/spot split, as the clouds define it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpotConfig {
    /// Nodes that are always on-demand.
    #[serde(default)]
    pub on_demand_base: u32,
    /// Percentage of nodes above the base that are on-demand (0–100); the rest are spot.
    #[serde(default = "defaults::on_demand_percent")]
    pub on_demand_percent_above_base: u32,
    /// Instance types the pool may use.
    #[serde(default)]
    pub instance_types: Vec<String>,
    /// Spot nodes not arriving within this time are planned as on-demand.
    #[serde(default = "defaults::spot_fallback_after")]
    pub fallback_after: String,
    /// After a fallback, spot is tried again after this long.
    #[serde(default = "defaults::spot_retry_after")]
    pub retry_after: String,
}

/// One scaling target: a metric and the per-node value to hold it at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// A node metric, e.g. `cpu.utilization`, `gpu.utilization`, `workload.requests_per_second`.
    #[serde(default)]
    pub metric: Option<String>,
    /// A PromQL query against `prometheus_url`, instead of `metric`.
    #[serde(default)]
    pub promql: Option<String>,
    /// Prometheus server for `promql`.
    #[serde(default)]
    pub prometheus_url: Option<String>,
    /// Timeout of the PromQL query.
    #[serde(default)]
    pub timeout: Option<String>,
    /// The value per node to hold the metric at.
    pub value: f64,
}

/// Forecast mode.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum PredictiveMode {
    /// No forecast.
    Off,
    /// Forecast, journal and export, but do not act (the default).
    #[default]
    ForecastOnly,
    /// desired = max(reactive, predictive).
    ForecastAndScale,
}

impl PredictiveMode {
    /// The name as written in config.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::ForecastOnly => "forecast-only",
            Self::ForecastAndScale => "forecast-and-scale",
        }
    }
}

/// `predictive`: forecast-based scaling and anomaly detection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictiveConfig {
    /// `off`, `forecast-only` (default) or `forecast-and-scale`.
    #[serde(default)]
    pub mode: PredictiveMode,
    /// How far ahead to forecast, between 1m and 24h.
    #[serde(default = "defaults::horizon")]
    pub horizon: String,
    /// History kept for learning, at most 14d.
    #[serde(default = "defaults::history")]
    pub history: String,
    /// Time a new node needs to be ready; predictive capacity is planned this far ahead.
    #[serde(default = "defaults::lead_time")]
    pub lead_time: String,
    /// Robust z-score above which a residual is an anomaly.
    #[serde(default = "defaults::anomaly_threshold")]
    pub anomaly_threshold: f64,
    /// Whether a surge anomaly may trigger emergency capacity.
    #[serde(default)]
    pub anomaly_triggers_emergency: bool,
}

impl Default for PredictiveConfig {
    fn default() -> Self {
        Self {
            mode: PredictiveMode::default(),
            horizon: defaults::horizon(),
            history: defaults::history(),
            lead_time: defaults::lead_time(),
            anomaly_threshold: defaults::anomaly_threshold(),
            anomaly_triggers_emergency: false,
        }
    }
}

/// A cron window that raises or lowers `min`/`max` while active.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// A label for journal lines, e.g. `"business-hours"`.
    #[serde(default)]
    pub name: Option<String>,
    /// Start of the window, a 5-field cron expression (`minute hour day month weekday`).
    pub cron: String,
    /// IANA time zone the cron expression is read in, e.g. `"Europe/Stockholm"`.
    #[serde(default = "defaults::timezone")]
    pub timezone: String,
    /// How long the window lasts from each start.
    pub duration: String,
    /// `min` while the window is active.
    #[serde(default)]
    pub min: Option<u32>,
    /// `max` while the window is active.
    #[serde(default)]
    pub max: Option<u32>,
}

/// `emergency`: when saturation may exceed `max`, up to `emergency_max`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmergencyConfig {
    /// Ratio of metric to target (above 1) that counts as saturation.
    #[serde(default = "defaults::emergency_threshold")]
    pub threshold: f64,
    /// Consecutive saturated intervals before the emergency starts.
    #[serde(default = "defaults::emergency_intervals")]
    pub intervals: u32,
}

/// `circuit`: the actuator's circuit breaker for the pool's cloud calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CircuitConfig {
    /// Failed provider calls in a row that open the circuit. Before that, each failure
    /// waits a backoff (one interval, doubling) before the next try.
    #[serde(default = "defaults::circuit_failures")]
    pub failures: u32,
    /// The longest wait between tries, open or not (the backoff doubles up to it).
    #[serde(default = "defaults::circuit_max_backoff")]
    pub max_backoff: String,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            failures: defaults::circuit_failures(),
            max_backoff: defaults::circuit_max_backoff(),
        }
    }
}

/// `flap`: freezes a pool whose scaling keeps changing direction. On by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FlapConfig {
    /// More direction reversals than this within `window` freeze the pool. 0 turns
    /// flap protection off.
    #[serde(default = "defaults::flap_max_reversals")]
    pub max_reversals: u32,
    /// The window reversals are counted in.
    #[serde(default = "defaults::flap_window")]
    pub window: String,
    /// How long a flapping pool stays frozen.
    #[serde(default = "defaults::flap_cool_off")]
    pub cool_off: String,
}

impl Default for FlapConfig {
    fn default() -> Self {
        Self {
            max_reversals: defaults::flap_max_reversals(),
            window: defaults::flap_window(),
            cool_off: defaults::flap_cool_off(),
        }
    }
}

/// Default values, one function each so serde and docs share them.
pub mod defaults {
    use std::path::PathBuf;

    /// `scrape.timeout`.
    pub fn scrape_timeout() -> String {
        "2s".to_owned()
    }

    /// `agent.listen`.
    pub fn listen() -> String {
        "0.0.0.0:9464".to_owned()
    }
    /// `agent.interval`.
    pub fn interval() -> String {
        "10s".to_owned()
    }
    /// `agent.state_dir`.
    pub fn state_dir() -> PathBuf {
        PathBuf::from("/var/lib/capstan")
    }
    /// `cluster.node_expiry`.
    pub fn node_expiry() -> String {
        "5m".to_owned()
    }
    /// `cluster.etcd.prefix`.
    pub fn etcd_prefix() -> String {
        "/capstan".to_owned()
    }
    /// `cluster.etcd.lease_ttl` and `cluster.kubernetes.lease_duration`.
    pub fn lease_ttl() -> String {
        "10s".to_owned()
    }
    /// `cluster.kubernetes.lease_name`.
    pub fn lease_name() -> String {
        "capstan-leader".to_owned()
    }
    /// `journal.retention_days`.
    pub const fn retention_days() -> u32 {
        90
    }
    /// `pool.tolerance`, as HPA's.
    pub const fn tolerance() -> f64 {
        0.1
    }
    /// `pool.spot.on_demand_percent_above_base`: all on-demand unless told otherwise.
    pub const fn on_demand_percent() -> u32 {
        100
    }
    /// `pool.spot.fallback_after`.
    pub fn spot_fallback_after() -> String {
        "5m".to_owned()
    }
    /// `pool.spot.retry_after`.
    pub fn spot_retry_after() -> String {
        "15m".to_owned()
    }
    /// `pool.predictive.horizon`.
    pub fn horizon() -> String {
        "30m".to_owned()
    }
    /// `pool.predictive.history`.
    pub fn history() -> String {
        "14d".to_owned()
    }
    /// `pool.predictive.lead_time`.
    pub fn lead_time() -> String {
        "5m".to_owned()
    }
    /// `pool.predictive.anomaly_threshold`.
    pub const fn anomaly_threshold() -> f64 {
        2.5
    }
    /// `pool.schedule.timezone`.
    pub fn timezone() -> String {
        "UTC".to_owned()
    }
    /// `pool.emergency.threshold`.
    pub const fn emergency_threshold() -> f64 {
        1.5
    }
    /// `pool.emergency.intervals`.
    pub const fn emergency_intervals() -> u32 {
        3
    }
    /// `pool.flap.max_reversals`.
    pub const fn flap_max_reversals() -> u32 {
        3
    }
    /// `pool.flap.window`.
    pub fn flap_window() -> String {
        "30m".to_owned()
    }
    /// `pool.flap.cool_off`.
    pub fn flap_cool_off() -> String {
        "30m".to_owned()
    }
    /// `agent.interruptions.poll`.
    pub fn interruptions_poll() -> String {
        "2s".to_owned()
    }
    /// `pool.circuit.failures`.
    pub const fn circuit_failures() -> u32 {
        5
    }
    /// `pool.circuit.max_backoff`.
    pub fn circuit_max_backoff() -> String {
        "5m".to_owned()
    }
}
