//! `[cluster]` (coordinator, listener, TLS, etcd, Kubernetes), `[budget]` and `[journal]`.

use super::*;

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

/// How the leader knows which node sent a report.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterAuth {
    /// Each node presents its own token, the lowercase hex of HMAC-SHA256 of its node
    /// id under the cluster secret in `token_file`, and may report only as that node:
    /// a token read on the wire speaks for one node.
    #[default]
    NodeHmac,
    /// Every node presents `token_file`'s content, and may report as any node (the
    /// upgrade path from releases before per-node tokens).
    SharedToken,
}

/// `[cluster]`: coordination between agents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// `standalone` (default), `etcd` or `kubernetes`.
    #[serde(default)]
    pub coordinator: CoordinatorKind,
    /// File holding the cluster secret (with `auth = "node-hmac"`) or the shared bearer
    /// token (`auth = "shared-token"`). Never the secret itself.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// During a rotation, the file of the secret (or shared token) being replaced:
    /// reports under it are accepted as well as under `token_file`'s, until a reload
    /// without it. Agents always present `token_file`'s.
    #[serde(default)]
    pub previous_token_file: Option<PathBuf>,
    /// File holding the token `/v1/status` asks for (`Authorization: Bearer`). Without
    /// it the status is open to all, with cloud accounts and principals redacted from
    /// its error messages.
    #[serde(default)]
    pub status_token_file: Option<PathBuf>,
    /// `node-hmac` (default: per-node tokens derived from the cluster secret) or
    /// `shared-token` (one token for every node).
    #[serde(default)]
    pub auth: ClusterAuth,
    /// Most nodes the leader keeps reports of; reports from new nodes past it are
    /// refused (503) and counted, known nodes keep reporting.
    #[serde(default = "defaults::max_nodes")]
    pub max_nodes: u32,
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
            previous_token_file: None,
            status_token_file: None,
            auth: ClusterAuth::default(),
            max_nodes: defaults::max_nodes(),
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
    /// etcd client URLs, e.g. `["https://10.0.0.1:2379"]` (`http://` only with
    /// `allow_plaintext`).
    pub endpoints: Vec<String>,
    /// Key prefix for the election and persisted state.
    #[serde(default = "defaults::etcd_prefix")]
    pub prefix: String,
    /// Lease time-to-live; etcd's minimum is 2s.
    #[serde(default = "defaults::lease_ttl")]
    pub lease_ttl: String,
    /// PEM file of the CA that signed etcd's server certificates; required with
    /// `https://` endpoints.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM file of this agent's client certificate chain, for etcd's
    /// `--client-cert-auth` (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM file of this agent's client private key (with `cert_file`).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// etcd user (its role needs read-write on `prefix`); with `password_file`.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the etcd user's password (trailing newline stripped).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Allow `http://` endpoints: the election, the decision state and any password
    /// then cross the network in cleartext, and whoever reaches etcd can redirect
    /// every report. Only for loopback or a network you trust.
    #[serde(default)]
    pub allow_plaintext: bool,
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
