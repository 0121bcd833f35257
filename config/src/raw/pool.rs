//! `[[pool]]`: tier, bounds, and the provider of each cloud.

use super::*;

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
    /// How the nodes' reports of a target become the pool's value: `mean` (default,
    /// HPA's rule) or `trimmed-mean` (the highest and lowest tenth of the nodes, at
    /// least one each with three or more, left out: one lying node cannot move it).
    #[serde(default)]
    pub aggregate: PoolAggregate,
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
    /// How the pool shrinks when its nodes report under their instance ids: which
    /// nodes leave, and how they drain first.
    #[serde(default)]
    pub scale_in: ScaleInConfig,
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

/// How a pool's reports of a target are combined.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum PoolAggregate {
    /// The mean over the reporting nodes (HPA's rule).
    #[default]
    Mean,
    /// The mean with the highest and lowest tenth of the nodes (at least one each, with
    /// three nodes or more) left out.
    TrimmedMean,
}
