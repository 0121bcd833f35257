//! The label sets of every family.

use super::*;

/// `{pool}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    /// Pool name.
    pub pool: String,
}

/// `{group}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    /// Group name.
    pub group: String,
}

/// `{group, pool}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupMemberLabels {
    /// Group name.
    pub group: String,
    /// Member pool.
    pub pool: String,
}

/// `{pool, metric}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolMetricLabels {
    /// Pool name.
    pub pool: String,
    /// Target metric.
    pub metric: String,
}

/// `{pool, action}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolActionLabels {
    /// Pool name.
    pub pool: String,
    /// `none`, `scaled`, `skipped`, `failed`.
    pub action: String,
}

/// `{pool, result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolResultLabels {
    /// Pool name.
    pub pool: String,
    /// How it ended, e.g. a drain's `drained`, `failed`, `timed_out`, `cancelled`,
    /// `no_agent`.
    pub result: String,
}

/// `{provider, operation, outcome}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderRequestLabels {
    /// Provider type, e.g. `aws`.
    pub provider: String,
    /// `describe`, `apply`, `spot_price`, `instance_types`.
    pub operation: String,
    /// `ok`, or the error kind.
    pub outcome: String,
}

/// `{provider}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabel {
    /// Provider type, e.g. `azure`.
    pub provider: String,
}

/// `{provider, operation}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderOperationLabels {
    /// Provider type.
    pub provider: String,
    /// The call.
    pub operation: String,
}

/// A histogram family whose histograms share one set of buckets.
pub type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// `{pool, kind}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolErrorLabels {
    /// Pool name.
    pub pool: String,
    /// Error kind.
    pub kind: String,
}

/// `{result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    /// `success` or `failure`.
    pub result: String,
}

/// `{collector}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectorLabel {
    /// Collector name.
    pub collector: String,
}

/// `{reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why: one of [`REJECT_REASONS`].
    pub reason: String,
}

/// Every `reason` label of `capstan_reports_rejected_total`.
pub const REJECT_REASONS: [&str; 11] = [
    "unauthorized",
    "too_large",
    "malformed",
    "unsupported_version",
    "wrong_node",
    "invalid",
    "unknown_pool",
    "unknown_node",
    "rate_limited",
    "table_full",
    "timeout",
];

/// `{gpu, uuid}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabels {
    /// NVML index on the node.
    pub gpu: String,
    /// GPU UUID.
    pub uuid: String,
}

/// `{gpu, uuid, type}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuEccLabels {
    /// NVML index on the node.
    pub gpu: String,
    /// GPU UUID.
    pub uuid: String,
    /// `corrected` or `uncorrected`.
    pub r#type: String,
}

/// `{gpu, uuid, xid}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuXidLabels {
    /// NVML index on the node.
    pub gpu: String,
    /// GPU UUID.
    pub uuid: String,
    /// The XID.
    pub xid: String,
}

/// `capstan_build_info{version,revision,features}`: always 1.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    /// Capstan's version.
    pub version: String,
    /// The git commit it was built from.
    pub revision: String,
    /// The optional parts compiled in, comma-separated (`none` for a lean build).
    pub features: String,
}

/// No labels: a family that can be emptied, for series that exist only sometimes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoLabels {}
