//! Every metric Capstan exports, in one place. Names are part of the interface:
//! dashboards and alert rules in `packaging/` use them.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

fn request_seconds() -> Histogram {
    // 5 ms … about 20 s: a cloud call, retries included.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

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
pub const REJECT_REASONS: [&str; 7] = [
    "unauthorized",
    "too_large",
    "malformed",
    "unsupported_version",
    "invalid",
    "unknown_pool",
    "rate_limited",
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

type GaugeF = Gauge<f64, AtomicU64>;

/// A label set that names a pool.
pub trait PoolScoped {
    /// The pool it names.
    fn pool(&self) -> &str;
}

impl PoolScoped for PoolLabel {
    fn pool(&self) -> &str {
        &self.pool
    }
}

impl PoolScoped for PoolMetricLabels {
    fn pool(&self) -> &str {
        &self.pool
    }
}

impl PoolScoped for PoolActionLabels {
    fn pool(&self) -> &str {
        &self.pool
    }
}

impl PoolScoped for PoolErrorLabels {
    fn pool(&self) -> &str {
        &self.pool
    }
}

/// A family of series labelled with a pool. It remembers every label set it has
/// created, so when a pool goes all its series go ([`Metrics::remove_pool`]): nothing
/// to list by hand, and nothing left behind when a metric is added.
#[derive(Debug)]
pub struct PoolFamily<L, M> {
    family: Family<L, M>,
    created: Arc<Mutex<HashSet<L>>>,
}

impl<L, M> Clone for PoolFamily<L, M> {
    fn clone(&self) -> Self {
        Self {
            family: self.family.clone(),
            created: Arc::clone(&self.created),
        }
    }
}

impl<L: Clone + std::hash::Hash + Eq, M: Default> Default for PoolFamily<L, M> {
    fn default() -> Self {
        Self {
            family: Family::default(),
            created: Arc::default(),
        }
    }
}

impl<L, M> PoolFamily<L, M>
where
    L: Clone + std::hash::Hash + Eq,
    M: Default,
{
    /// The series of `labels`, created if new.
    pub fn get_or_create(&self, labels: &L) -> impl std::ops::Deref<Target = M> + '_ {
        {
            let mut created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
            if !created.contains(labels) {
                created.insert(labels.clone());
            }
        }
        self.family.get_or_create(labels)
    }

    /// Drops the series of `labels`; whether it existed.
    pub fn remove(&self, labels: &L) -> bool {
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(labels);
        self.family.remove(labels)
    }

    /// The family, to register.
    fn series(&self) -> Family<L, M> {
        self.family.clone()
    }
}

/// Drops one pool's series from a family.
trait PoolSeries: std::fmt::Debug + Send + Sync {
    fn remove_pool(&self, pool: &str);
}

impl<L, M> PoolSeries for PoolFamily<L, M>
where
    L: PoolScoped + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync,
    M: std::fmt::Debug + Send + Sync,
{
    fn remove_pool(&self, pool: &str) {
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|labels| {
                if labels.pool() == pool {
                    self.family.remove(labels);
                    false
                } else {
                    true
                }
            });
    }
}

/// Registers a pool family and enrols it for [`Metrics::remove_pool`].
fn register_pool<L, M>(
    r: &mut Registry,
    pool_series: &mut Vec<Box<dyn PoolSeries>>,
    name: &str,
    help: &str,
    family: &PoolFamily<L, M>,
) where
    L: PoolScoped
        + EncodeLabelSet
        + Clone
        + std::hash::Hash
        + Eq
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    r.register(name, help, family.series());
    pool_series.push(Box::new(family.clone()));
}

/// The agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Every family labelled with a pool, for [`Metrics::remove_pool`].
    pool_series: Vec<Box<dyn PoolSeries>>,
    /// `capstan_pool_desired_nodes{pool}`: nodes the last decision asked for.
    pub pool_desired_nodes: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_current_nodes{pool}`: nodes the provider reported.
    pub pool_current_nodes: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_min_nodes{pool}`.
    pub pool_min_nodes: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_max_nodes{pool}`.
    pub pool_max_nodes: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_metric_value{pool,metric}`: the average per node of a target metric.
    pub pool_metric_value: PoolFamily<PoolMetricLabels, GaugeF>,
    /// `capstan_pool_metric_target{pool,metric}`: the target per node.
    pub pool_metric_target: PoolFamily<PoolMetricLabels, GaugeF>,
    /// `capstan_decisions_total{pool,action}`.
    pub decisions: PoolFamily<PoolActionLabels, Counter>,
    /// `capstan_provider_errors_total{pool,kind}`.
    pub provider_errors: PoolFamily<PoolErrorLabels, Counter>,
    /// `capstan_config_reloads_total{result}`.
    pub config_reloads: Family<ResultLabel, Counter>,
    /// `capstan_collection_errors_total{collector}`.
    pub collection_errors: Family<CollectorLabel, Counter>,
    /// `capstan_collection_duration_seconds`: how long one collection of this node
    /// took (every collector, workload scrapes excluded).
    pub collection_seconds: Histogram,
    /// `capstan_journal_write_errors_total`.
    pub journal_write_errors: Counter,
    /// `capstan_is_leader`: 1 when this agent leads.
    pub is_leader: Gauge,
    /// `capstan_planning_passes_total`.
    pub planning_passes: Counter,
    /// `capstan_host_cpu_percent`.
    pub host_cpu_percent: GaugeF,
    /// `capstan_host_memory_percent`.
    pub host_memory_percent: GaugeF,
    /// `capstan_host_load1_per_core`.
    pub host_load1_per_core: GaugeF,
    /// `capstan_pool_hourly_cost{pool}`: cost per hour of the pool as planned.
    pub pool_hourly_cost: PoolFamily<PoolLabel, GaugeF>,
    /// `capstan_pool_on_demand_nodes{pool}`: on-demand nodes planned.
    pub pool_on_demand_nodes: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_spot_nodes{pool}`: spot nodes planned.
    pub pool_spot_nodes: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_effective_min_nodes{pool}`: min this pass, after schedules.
    pub pool_effective_min_nodes: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_effective_max_nodes{pool}`: max this pass, after schedules.
    pub pool_effective_max_nodes: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_emergency{pool}`: 1 while an emergency is in force.
    pub pool_emergency: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_flapping{pool}`: 1 while the pool is frozen after flapping.
    pub pool_flapping: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_spot_fallback{pool}`: 1 while spot is planned as on-demand.
    pub pool_spot_fallback: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_group_current_nodes{group}`: nodes a group's members hold.
    pub group_current_nodes: Family<GroupLabel, Gauge>,
    /// `capstan_group_desired_nodes{group}`: the size a group's targets ask for.
    pub group_desired_nodes: Family<GroupLabel, Gauge>,
    /// `capstan_group_spillover_nodes_total{group,pool}`: nodes a member took over
    /// from members whose cloud refused them.
    pub group_spillover_nodes: Family<GroupMemberLabels, Counter>,
    /// `capstan_budget_hourly_cost`: cost per hour of the fleet as planned.
    pub budget_hourly_cost: GaugeF,
    /// `capstan_budget_ceiling`: the fleet ceiling per hour (absent without one).
    pub budget_ceiling: Family<NoLabels, GaugeF>,
    /// `capstan_budget_over`: 1 while the fleet costs more than its ceiling.
    pub budget_over: Gauge,
    /// `capstan_pool_circuit_open{pool}`: 1 while the pool's provider calls are
    /// suspended after failures (the actuator's circuit breaker).
    pub pool_circuit_open: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_consecutive_failures{pool}`: failed provider calls in a row.
    pub pool_consecutive_failures: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_demand{pool,metric}`: a target's readings summed over the pool.
    pub pool_demand: PoolFamily<PoolMetricLabels, GaugeF>,
    /// `capstan_forecast_demand{pool,metric}`: demand forecast `predictive.horizon` ahead.
    pub forecast_demand: PoolFamily<PoolMetricLabels, GaugeF>,
    /// `capstan_forecast_mase{pool,metric}`: the forecast's trailing-day MASE.
    pub forecast_mase: PoolFamily<PoolMetricLabels, GaugeF>,
    /// `capstan_anomalies_total{pool,metric}`: anomaly onsets in a target's demand.
    pub anomalies: PoolFamily<PoolMetricLabels, Counter>,
    /// `capstan_pool_predictive_active{pool}`: 1 while predictive scaling is in force.
    pub pool_predictive_active: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_reports_received_total`: node reports the leader accepted.
    pub reports_received: Counter,
    /// `capstan_reports_rejected_total{reason}`: node reports the leader refused.
    pub reports_rejected: Family<ReasonLabel, Counter>,
    /// `capstan_reports_sent_total{result}`: this node's reports to the leader.
    pub reports_sent: Family<ResultLabel, Counter>,
    /// `capstan_pool_nodes_reporting{pool}`: nodes whose last report is fresh.
    pub pool_nodes_reporting: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_pool_nodes_stale{pool}`: nodes silent for three intervals, not yet
    /// dropped (`cluster.node_expiry`).
    pub pool_nodes_stale: PoolFamily<PoolLabel, Gauge>,
    /// `capstan_leader_changes_total`: times this agent gained or lost leadership.
    pub leader_changes: Counter,
    /// `capstan_provider_requests_total{provider,operation,outcome}`: calls to pools'
    /// providers (each call may be several HTTP requests: the SDK retries inside it).
    pub provider_requests: Family<ProviderRequestLabels, Counter>,
    /// `capstan_provider_request_duration_seconds{provider,operation}`: how long each
    /// provider call took, retries included.
    pub provider_request_seconds: HistogramFamily<ProviderOperationLabels>,
    /// `capstan_gpu_utilization_percent{gpu,uuid}`.
    pub gpu_utilization: Family<GpuLabels, GaugeF>,
    /// `capstan_gpu_memory_utilization_percent{gpu,uuid}`.
    pub gpu_memory_utilization: Family<GpuLabels, GaugeF>,
    /// `capstan_gpu_memory_used_bytes{gpu,uuid}`.
    pub gpu_memory_used: Family<GpuLabels, GaugeF>,
    /// `capstan_gpu_memory_total_bytes{gpu,uuid}`.
    pub gpu_memory_total: Family<GpuLabels, GaugeF>,
    /// `capstan_gpu_temperature_celsius{gpu,uuid}`.
    pub gpu_temperature: Family<GpuLabels, GaugeF>,
    /// `capstan_gpu_power_watts{gpu,uuid}`.
    pub gpu_power: Family<GpuLabels, GaugeF>,
    /// `capstan_gpu_power_limit_watts{gpu,uuid}`.
    pub gpu_power_limit: Family<GpuLabels, GaugeF>,
    /// `capstan_gpu_sm_clock_mhz{gpu,uuid}`.
    pub gpu_sm_clock: Family<GpuLabels, GaugeF>,
    /// `capstan_gpu_memory_clock_mhz{gpu,uuid}`.
    pub gpu_memory_clock: Family<GpuLabels, GaugeF>,
    /// `capstan_gpu_throttled{gpu,uuid}`: 1 while any throttle reason is in force.
    pub gpu_throttled: Family<GpuLabels, Gauge>,
    /// `capstan_gpu_ecc_errors_total{gpu,uuid,type}`: ECC errors since the driver loaded
    /// (NVML's volatile counts; a driver reload starts the series again, as a reset).
    pub gpu_ecc_errors: Family<GpuEccLabels, Counter>,
    /// `capstan_gpu_xid_errors_total{gpu,uuid,xid}`: critical XID events seen.
    pub gpu_xid_errors: Family<GpuXidLabels, Counter>,
}

/// No labels: a family that can be emptied, for series that exist only sometimes.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NoLabels {}

/// Every metric name, with its type, as it appears in the exposition.
pub const NAMES: &[(&str, &str)] = &[
    ("capstan_build_info", "gauge"),
    ("capstan_pool_desired_nodes", "gauge"),
    ("capstan_pool_current_nodes", "gauge"),
    ("capstan_pool_min_nodes", "gauge"),
    ("capstan_pool_max_nodes", "gauge"),
    ("capstan_pool_metric_value", "gauge"),
    ("capstan_pool_metric_target", "gauge"),
    ("capstan_decisions_total", "counter"),
    ("capstan_provider_errors_total", "counter"),
    ("capstan_config_reloads_total", "counter"),
    ("capstan_collection_errors_total", "counter"),
    ("capstan_collection_duration_seconds", "histogram"),
    ("capstan_journal_write_errors_total", "counter"),
    ("capstan_is_leader", "gauge"),
    ("capstan_planning_passes_total", "counter"),
    ("capstan_host_cpu_percent", "gauge"),
    ("capstan_host_memory_percent", "gauge"),
    ("capstan_host_load1_per_core", "gauge"),
    ("capstan_pool_hourly_cost", "gauge"),
    ("capstan_pool_on_demand_nodes", "gauge"),
    ("capstan_pool_spot_nodes", "gauge"),
    ("capstan_pool_effective_min_nodes", "gauge"),
    ("capstan_pool_effective_max_nodes", "gauge"),
    ("capstan_pool_emergency", "gauge"),
    ("capstan_pool_flapping", "gauge"),
    ("capstan_pool_spot_fallback", "gauge"),
    ("capstan_group_current_nodes", "gauge"),
    ("capstan_group_desired_nodes", "gauge"),
    ("capstan_group_spillover_nodes_total", "counter"),
    ("capstan_budget_hourly_cost", "gauge"),
    ("capstan_budget_ceiling", "gauge"),
    ("capstan_budget_over", "gauge"),
    ("capstan_pool_circuit_open", "gauge"),
    ("capstan_pool_consecutive_failures", "gauge"),
    ("capstan_pool_demand", "gauge"),
    ("capstan_forecast_demand", "gauge"),
    ("capstan_forecast_mase", "gauge"),
    ("capstan_anomalies_total", "counter"),
    ("capstan_pool_predictive_active", "gauge"),
    ("capstan_reports_received_total", "counter"),
    ("capstan_reports_rejected_total", "counter"),
    ("capstan_reports_sent_total", "counter"),
    ("capstan_pool_nodes_reporting", "gauge"),
    ("capstan_pool_nodes_stale", "gauge"),
    ("capstan_leader_changes_total", "counter"),
    ("capstan_provider_requests_total", "counter"),
    ("capstan_provider_request_duration_seconds", "histogram"),
    ("capstan_gpu_utilization_percent", "gauge"),
    ("capstan_gpu_memory_utilization_percent", "gauge"),
    ("capstan_gpu_memory_used_bytes", "gauge"),
    ("capstan_gpu_memory_total_bytes", "gauge"),
    ("capstan_gpu_temperature_celsius", "gauge"),
    ("capstan_gpu_power_watts", "gauge"),
    ("capstan_gpu_power_limit_watts", "gauge"),
    ("capstan_gpu_sm_clock_mhz", "gauge"),
    ("capstan_gpu_memory_clock_mhz", "gauge"),
    ("capstan_gpu_throttled", "gauge"),
    ("capstan_gpu_ecc_errors_total", "counter"),
    ("capstan_gpu_xid_errors_total", "counter"),
];

impl Metrics {
    /// Registers everything.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("capstan");
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: crate::build::VERSION.to_owned(),
                revision: crate::build::REVISION.to_owned(),
                features: crate::build::features_text().to_owned(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Capstan's version, the revision it was built from and its compiled features; always 1",
            build_info,
        );
        let mut pool_series: Vec<Box<dyn PoolSeries>> = Vec::new();
        let m = Self {
            pool_desired_nodes: PoolFamily::default(),
            pool_current_nodes: PoolFamily::default(),
            pool_min_nodes: PoolFamily::default(),
            pool_max_nodes: PoolFamily::default(),
            pool_metric_value: PoolFamily::default(),
            pool_metric_target: PoolFamily::default(),
            decisions: PoolFamily::default(),
            provider_errors: PoolFamily::default(),
            config_reloads: Family::default(),
            collection_errors: Family::default(),
            // 50 µs … about 0.4 s.
            collection_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 14)),
            journal_write_errors: Counter::default(),
            is_leader: Gauge::default(),
            planning_passes: Counter::default(),
            host_cpu_percent: GaugeF::default(),
            host_memory_percent: GaugeF::default(),
            host_load1_per_core: GaugeF::default(),
            pool_hourly_cost: PoolFamily::default(),
            pool_on_demand_nodes: PoolFamily::default(),
            pool_spot_nodes: PoolFamily::default(),
            pool_effective_min_nodes: PoolFamily::default(),
            pool_effective_max_nodes: PoolFamily::default(),
            pool_emergency: PoolFamily::default(),
            pool_flapping: PoolFamily::default(),
            pool_spot_fallback: PoolFamily::default(),
            group_current_nodes: Family::default(),
            group_desired_nodes: Family::default(),
            group_spillover_nodes: Family::default(),
            budget_hourly_cost: GaugeF::default(),
            budget_ceiling: Family::default(),
            budget_over: Gauge::default(),
            pool_circuit_open: PoolFamily::default(),
            pool_consecutive_failures: PoolFamily::default(),
            pool_demand: PoolFamily::default(),
            forecast_demand: PoolFamily::default(),
            forecast_mase: PoolFamily::default(),
            anomalies: PoolFamily::default(),
            pool_predictive_active: PoolFamily::default(),
            reports_received: Counter::default(),
            reports_rejected: Family::default(),
            reports_sent: Family::default(),
            pool_nodes_reporting: PoolFamily::default(),
            pool_nodes_stale: PoolFamily::default(),
            leader_changes: Counter::default(),
            provider_requests: Family::default(),
            provider_request_seconds: Family::new_with_constructor(request_seconds),
            gpu_utilization: Family::default(),
            gpu_memory_utilization: Family::default(),
            gpu_memory_used: Family::default(),
            gpu_memory_total: Family::default(),
            gpu_temperature: Family::default(),
            gpu_power: Family::default(),
            gpu_power_limit: Family::default(),
            gpu_sm_clock: Family::default(),
            gpu_memory_clock: Family::default(),
            gpu_throttled: Family::default(),
            gpu_ecc_errors: Family::default(),
            gpu_xid_errors: Family::default(),
            registry: Registry::default(),
            pool_series: Vec::new(),
        };
        let r = &mut registry;
        register_pool(
            r,
            &mut pool_series,
            "pool_desired_nodes",
            "Nodes the last decision asked for",
            &m.pool_desired_nodes,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_current_nodes",
            "Nodes the provider reported",
            &m.pool_current_nodes,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_min_nodes",
            "The pool's configured minimum",
            &m.pool_min_nodes,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_max_nodes",
            "The pool's configured maximum",
            &m.pool_max_nodes,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_metric_value",
            "Average per node of a target metric",
            &m.pool_metric_value,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_metric_target",
            "Target per node of a target metric",
            &m.pool_metric_target,
        );
        register_pool(
            r,
            &mut pool_series,
            "decisions",
            "Planning decisions by outcome",
            &m.decisions,
        );
        register_pool(
            r,
            &mut pool_series,
            "provider_errors",
            "Failed provider calls by error kind",
            &m.provider_errors,
        );
        r.register(
            "config_reloads",
            "Configuration reloads by result",
            m.config_reloads.clone(),
        );
        r.register(
            "collection_errors",
            "Failed collections by collector",
            m.collection_errors.clone(),
        );
        r.register(
            "collection_duration_seconds",
            "How long one collection of this node took (every collector)",
            m.collection_seconds.clone(),
        );
        r.register(
            "journal_write_errors",
            "Journal lines that could not be written",
            m.journal_write_errors.clone(),
        );
        r.register(
            "is_leader",
            "1 when this agent is the leader",
            m.is_leader.clone(),
        );
        r.register(
            "planning_passes",
            "Planning passes run",
            m.planning_passes.clone(),
        );
        r.register(
            "host_cpu_percent",
            "This host's busy CPU, percent",
            m.host_cpu_percent.clone(),
        );
        r.register(
            "host_memory_percent",
            "This host's used memory, percent",
            m.host_memory_percent.clone(),
        );
        r.register(
            "host_load1_per_core",
            "This host's 1-minute load per core",
            m.host_load1_per_core.clone(),
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_hourly_cost",
            "Cost per hour of the pool as planned, from its prices and spot split",
            &m.pool_hourly_cost,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_on_demand_nodes",
            "On-demand nodes planned",
            &m.pool_on_demand_nodes,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_spot_nodes",
            "Spot nodes planned",
            &m.pool_spot_nodes,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_effective_min_nodes",
            "The pool's minimum this pass, after schedules",
            &m.pool_effective_min_nodes,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_effective_max_nodes",
            "The pool's maximum this pass, after schedules (before an emergency lift)",
            &m.pool_effective_max_nodes,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_emergency",
            "1 while an emergency lets the pool exceed max",
            &m.pool_emergency,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_flapping",
            "1 while the pool is frozen after flapping",
            &m.pool_flapping,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_spot_fallback",
            "1 while missing spot nodes are planned as on-demand",
            &m.pool_spot_fallback,
        );
        r.register(
            "group_current_nodes",
            "Nodes the members of a pool group hold",
            m.group_current_nodes.clone(),
        );
        r.register(
            "group_desired_nodes",
            "The size a pool group's targets ask for, before it is allocated to its members",
            m.group_desired_nodes.clone(),
        );
        r.register(
            "group_spillover_nodes",
            "Nodes a group member took over from members whose cloud refused them",
            m.group_spillover_nodes.clone(),
        );
        r.register(
            "budget_hourly_cost",
            "Cost per hour of the whole fleet as planned",
            m.budget_hourly_cost.clone(),
        );
        r.register(
            "budget_ceiling",
            "The fleet's budget ceiling per hour; absent when none is set",
            m.budget_ceiling.clone(),
        );
        r.register(
            "budget_over",
            "1 while the fleet costs more than its ceiling",
            m.budget_over.clone(),
        );
        r.register(
            "provider_requests",
            "Calls to pools' providers by operation and outcome (ok or the error kind)",
            m.provider_requests.clone(),
        );
        r.register(
            "provider_request_duration_seconds",
            "How long provider calls took, the SDK's retries included",
            m.provider_request_seconds.clone(),
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_circuit_open",
            "1 while the pool's provider calls are suspended after failures",
            &m.pool_circuit_open,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_consecutive_failures",
            "Failed provider calls in a row",
            &m.pool_consecutive_failures,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_demand",
            "A target's readings summed over the pool: the demand capacity must cover",
            &m.pool_demand,
        );
        register_pool(
            r,
            &mut pool_series,
            "forecast_demand",
            "Demand forecast predictive.horizon ahead (a target's readings summed over the pool)",
            &m.forecast_demand,
        );
        register_pool(
            r,
            &mut pool_series,
            "forecast_mase",
            "The forecast's mean absolute error over the last day, relative to no-change",
            &m.forecast_mase,
        );
        register_pool(
            r,
            &mut pool_series,
            "anomalies",
            "Anomaly onsets in a target's demand",
            &m.anomalies,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_predictive_active",
            "1 while predictive scaling is in force for the pool",
            &m.pool_predictive_active,
        );
        r.register(
            "reports_received",
            "Node reports the leader accepted",
            m.reports_received.clone(),
        );
        for reason in REJECT_REASONS {
            // Every reason is exported from the start, so a rate() sees its first one.
            drop(m.reports_rejected.get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            }));
        }
        r.register(
            "reports_rejected",
            "Node reports the leader refused, by reason",
            m.reports_rejected.clone(),
        );
        r.register(
            "reports_sent",
            "This node's reports to the leader, by result",
            m.reports_sent.clone(),
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_nodes_reporting",
            "Nodes of the pool whose last report is fresh",
            &m.pool_nodes_reporting,
        );
        register_pool(
            r,
            &mut pool_series,
            "pool_nodes_stale",
            "Nodes of the pool silent for three intervals and not yet dropped",
            &m.pool_nodes_stale,
        );
        r.register(
            "leader_changes",
            "Times this agent gained or lost leadership",
            m.leader_changes.clone(),
        );
        for (name, help, family) in [
            (
                "gpu_utilization_percent",
                "Percent of time a kernel ran on the GPU",
                &m.gpu_utilization,
            ),
            (
                "gpu_memory_utilization_percent",
                "Percent of time GPU memory was read or written",
                &m.gpu_memory_utilization,
            ),
            (
                "gpu_memory_used_bytes",
                "GPU memory in use",
                &m.gpu_memory_used,
            ),
            (
                "gpu_memory_total_bytes",
                "GPU memory installed",
                &m.gpu_memory_total,
            ),
            (
                "gpu_temperature_celsius",
                "GPU die temperature",
                &m.gpu_temperature,
            ),
            ("gpu_power_watts", "GPU power draw", &m.gpu_power),
            (
                "gpu_power_limit_watts",
                "GPU enforced power limit",
                &m.gpu_power_limit,
            ),
            ("gpu_sm_clock_mhz", "GPU SM clock", &m.gpu_sm_clock),
            (
                "gpu_memory_clock_mhz",
                "GPU memory clock",
                &m.gpu_memory_clock,
            ),
        ] {
            r.register(name, help, family.clone());
        }
        r.register(
            "gpu_throttled",
            "1 while a throttle reason holds the GPU's clocks down",
            m.gpu_throttled.clone(),
        );
        r.register(
            "gpu_ecc_errors",
            "GPU ECC errors since the driver loaded, by type",
            m.gpu_ecc_errors.clone(),
        );
        r.register(
            "gpu_xid_errors",
            "Critical XID errors seen on the GPU",
            m.gpu_xid_errors.clone(),
        );
        Self {
            registry,
            pool_series,
            ..m
        }
    }

    /// Exports this node's GPUs (`capstan_gpu_*{gpu,uuid}`).
    pub fn export_gpus(&self, gpus: &[capstan_collectors::GpuMetrics]) {
        for g in gpus {
            let l = GpuLabels {
                gpu: g.index.to_string(),
                uuid: g.uuid.clone(),
            };
            #[allow(clippy::cast_precision_loss)] // byte counts far below 2^53
            let gauges = [
                (&self.gpu_utilization, g.utilization_percent),
                (&self.gpu_memory_utilization, g.memory_utilization_percent),
                (&self.gpu_memory_used, g.memory_used_bytes.map(|b| b as f64)),
                (
                    &self.gpu_memory_total,
                    g.memory_total_bytes.map(|b| b as f64),
                ),
                (&self.gpu_temperature, g.temperature_celsius),
                (&self.gpu_power, g.power_watts),
                (&self.gpu_power_limit, g.power_limit_watts),
                (&self.gpu_sm_clock, g.sm_clock_mhz.map(f64::from)),
                (&self.gpu_memory_clock, g.memory_clock_mhz.map(f64::from)),
            ];
            for (family, value) in gauges {
                match value {
                    Some(v) => {
                        family.get_or_create(&l).set(v);
                    }
                    None => {
                        family.remove(&l);
                    }
                }
            }
            self.gpu_throttled
                .get_or_create(&l)
                .set(i64::from(!g.throttle_reasons.is_empty()));
            for (kind, n) in [
                ("corrected", g.ecc_corrected),
                ("uncorrected", g.ecc_uncorrected),
            ] {
                if let Some(n) = n {
                    let labels = GpuEccLabels {
                        gpu: l.gpu.clone(),
                        uuid: l.uuid.clone(),
                        r#type: kind.to_owned(),
                    };
                    // NVML's count is itself a counter: the series follows it. A count
                    // below the series' (the driver reloaded) starts the series anew,
                    // which Prometheus reads as a counter reset.
                    let seen = self.gpu_ecc_errors.get_or_create(&labels).get();
                    if n < seen {
                        self.gpu_ecc_errors.remove(&labels);
                    }
                    let counter = self.gpu_ecc_errors.get_or_create(&labels);
                    counter.inc_by(n - counter.get());
                }
            }
            for xid in &g.xid_errors {
                self.gpu_xid_errors
                    .get_or_create(&GpuXidLabels {
                        gpu: l.gpu.clone(),
                        uuid: l.uuid.clone(),
                        xid: xid.to_string(),
                    })
                    .inc();
            }
        }
    }

    /// The Prometheus/OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The classic Prometheus text format (0.0.4), for scrapers and tools that do not ask
    /// for OpenMetrics: counters' HELP and TYPE lines carry the `_total` name their
    /// samples have, and there is no `# EOF`.
    pub fn encode_prometheus_text(&self) -> String {
        let open = self.encode();
        let counters: std::collections::HashSet<&str> = open
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
            .collect();
        let mut out = String::with_capacity(open.len() + counters.len() * 16);
        for line in open.lines() {
            if line == "# EOF" || line.starts_with("# UNIT ") {
                continue;
            }
            let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
                let rest = line.strip_prefix(prefix)?;
                let (name, tail) = rest.split_once(' ')?;
                counters
                    .contains(name)
                    .then(|| format!("{prefix}{name}_total {tail}"))
            });
            out.push_str(renamed.as_deref().unwrap_or(line));
            out.push('\n');
        }
        out
    }

    /// Drops every series of a group that is gone from the config.
    pub fn remove_group<'a>(&self, group: &str, members: impl IntoIterator<Item = &'a str>) {
        let label = GroupLabel {
            group: group.to_owned(),
        };
        self.group_current_nodes.remove(&label);
        self.group_desired_nodes.remove(&label);
        for pool in members {
            self.group_spillover_nodes.remove(&GroupMemberLabels {
                group: group.to_owned(),
                pool: pool.to_owned(),
            });
        }
    }

    /// Forgets every series labelled with `pool`, e.g. after a reload removed it.
    pub fn remove_pool(&self, pool: &str) {
        for family in &self.pool_series {
            family.remove_pool(pool);
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metrics with a sample in every family (a family without one is not encoded).
    fn populated() -> Metrics {
        let m = Metrics::new();
        let p = PoolLabel { pool: "web".into() };
        let pm = PoolMetricLabels {
            pool: "web".into(),
            metric: "cpu.utilization".into(),
        };
        m.pool_desired_nodes.get_or_create(&p).set(3);
        m.pool_current_nodes.get_or_create(&p).set(3);
        m.pool_min_nodes.get_or_create(&p).set(1);
        m.pool_max_nodes.get_or_create(&p).set(9);
        m.pool_metric_value.get_or_create(&pm).set(1.0);
        m.forecast_demand.get_or_create(&pm).set(1.0);
        m.pool_demand.get_or_create(&pm).set(1.0);
        m.forecast_mase.get_or_create(&pm).set(1.0);
        m.anomalies.get_or_create(&pm).inc();
        m.pool_metric_target.get_or_create(&pm).set(1.0);
        m.decisions
            .get_or_create(&PoolActionLabels {
                pool: "web".into(),
                action: "none".into(),
            })
            .inc();
        m.provider_errors
            .get_or_create(&PoolErrorLabels {
                pool: "web".into(),
                kind: "auth".into(),
            })
            .inc();
        m.provider_requests
            .get_or_create(&ProviderRequestLabels {
                provider: "aws".into(),
                operation: "apply".into(),
                outcome: "ok".into(),
            })
            .inc();
        m.provider_request_seconds
            .get_or_create(&ProviderOperationLabels {
                provider: "aws".into(),
                operation: "apply".into(),
            })
            .observe(0.1);
        m.config_reloads
            .get_or_create(&ResultLabel {
                result: "success".into(),
            })
            .inc();
        m.collection_errors
            .get_or_create(&CollectorLabel {
                collector: "host".into(),
            })
            .inc();
        m.reports_sent
            .get_or_create(&ResultLabel {
                result: "ok".into(),
            })
            .inc();
        m.export_gpus(&[capstan_collectors::GpuMetrics {
            index: 0,
            uuid: "GPU-1".into(),
            name: "test".into(),
            utilization_percent: Some(50.0),
            memory_utilization_percent: Some(20.0),
            memory_used_bytes: Some(1),
            memory_total_bytes: Some(2),
            temperature_celsius: Some(60.0),
            power_watts: Some(300.0),
            power_limit_watts: Some(700.0),
            sm_clock_mhz: Some(1980),
            memory_clock_mhz: Some(2619),
            throttle_reasons: vec![],
            ecc_corrected: Some(0),
            ecc_uncorrected: Some(0),
            xid_errors: vec![79],
        }]);
        for f in [
            &m.pool_on_demand_nodes,
            &m.pool_spot_nodes,
            &m.pool_effective_min_nodes,
            &m.pool_effective_max_nodes,
            &m.pool_emergency,
            &m.pool_flapping,
            &m.pool_spot_fallback,
            &m.pool_circuit_open,
            &m.pool_consecutive_failures,
            &m.pool_predictive_active,
            &m.pool_nodes_reporting,
            &m.pool_nodes_stale,
        ] {
            f.get_or_create(&p).set(0);
        }
        m.pool_hourly_cost.get_or_create(&p).set(1.5);
        let g = GroupLabel {
            group: "web".into(),
        };
        m.group_current_nodes.get_or_create(&g).set(3);
        m.group_desired_nodes.get_or_create(&g).set(4);
        m.group_spillover_nodes
            .get_or_create(&GroupMemberLabels {
                group: "web".into(),
                pool: "web-aws".into(),
            })
            .inc_by(2);
        m.budget_ceiling.get_or_create(&NoLabels {}).set(10.0);
        m
    }

    /// `populated` has a series in every family (the test below checks it), so this
    /// covers every pool-labelled family, including one added later.
    #[test]
    fn removing_a_pool_drops_every_series_labelled_with_it_and_only_those() {
        let m = populated();
        m.pool_desired_nodes
            .get_or_create(&PoolLabel { pool: "api".into() })
            .set(2);
        assert!(m.encode().contains("pool=\"web\""));
        m.remove_pool("web");
        let text = m.encode();
        assert!(!text.contains("pool=\"web\""), "{text}");
        assert!(
            text.contains("capstan_pool_desired_nodes{pool=\"api\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("pool=\"web-aws\""),
            "a group member's series go with its group"
        );
        // A pool that comes back starts its series again.
        m.pool_desired_nodes
            .get_or_create(&PoolLabel { pool: "web".into() })
            .set(1);
        assert!(
            m.encode()
                .contains("capstan_pool_desired_nodes{pool=\"web\"} 1")
        );
    }

    #[test]
    fn every_registered_family_is_listed_in_names_and_back() {
        let m = populated();
        let text = m.encode();
        assert!(
            text.contains("capstan_pool_desired_nodes{pool=\"web\"} 3"),
            "{text}"
        );
        let typed: Vec<(String, String)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| {
                let mut it = l.split_whitespace();
                (it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
            })
            .collect();
        for (name, kind) in &typed {
            let exposed = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.clone()
            };
            assert!(
                NAMES.contains(&(exposed.as_str(), kind.as_str())),
                "{exposed} ({kind}) missing from NAMES"
            );
        }
        assert_eq!(
            typed.len(),
            NAMES.len(),
            "NAMES lists a metric that is not registered"
        );
    }

    #[test]
    fn ecc_errors_are_a_counter_that_follows_nvml_and_starts_again_after_a_driver_reload() {
        let m = Metrics::new();
        let gpu = |corrected: u64| capstan_collectors::GpuMetrics {
            index: 0,
            uuid: "GPU-1".into(),
            name: "test".into(),
            utilization_percent: None,
            memory_utilization_percent: None,
            memory_used_bytes: None,
            memory_total_bytes: None,
            temperature_celsius: None,
            power_watts: None,
            power_limit_watts: None,
            sm_clock_mhz: None,
            memory_clock_mhz: None,
            throttle_reasons: vec![],
            ecc_corrected: Some(corrected),
            ecc_uncorrected: None,
            xid_errors: vec![],
        };
        let value = |m: &Metrics| {
            m.encode_prometheus_text()
                .lines()
                .find_map(|l| {
                    l.strip_prefix(
                        "capstan_gpu_ecc_errors_total{gpu=\"0\",uuid=\"GPU-1\",type=\"corrected\"} ",
                    )
                    .map(str::to_owned)
                })
                .unwrap_or_default()
        };
        m.export_gpus(&[gpu(3)]);
        assert_eq!(value(&m), "3");
        m.export_gpus(&[gpu(3)]);
        assert_eq!(value(&m), "3", "the same count adds nothing");
        m.export_gpus(&[gpu(7)]);
        assert_eq!(value(&m), "7");
        m.export_gpus(&[gpu(1)]);
        assert_eq!(
            value(&m),
            "1",
            "after a driver reload the series starts again"
        );
        assert!(
            m.encode_prometheus_text()
                .contains("# TYPE capstan_gpu_ecc_errors_total counter")
        );
    }

    /// docs/metrics.md, from the declarations: each family's name, type and help as
    /// registered, and its labels as this file's doc comments give them.
    fn reference() -> String {
        let source = include_str!("metrics.rs");
        let mut labels = std::collections::BTreeMap::new();
        for piece in source.split("`capstan_").skip(1) {
            let Some(end) = piece.find('`') else { continue };
            let decl = &piece[..end];
            let (name, set) = match decl.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}').replace(',', ", ")),
                None => (decl, String::new()),
            };
            if name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                labels.entry(format!("capstan_{name}")).or_insert(set);
            }
        }
        let text = populated().encode_prometheus_text();
        let mut help = std::collections::BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, h) = rest.split_once(' ').unwrap_or((rest, ""));
                help.insert(name.to_owned(), h.to_owned());
            }
        }
        let mut out = String::from(
            "# Metrics reference\n\n\
             Every series an agent exports on `/metrics` (port 9464), generated from the\n\
             metric declarations in `agent/src/metrics.rs` by its test\n\
             `the_metrics_reference_is_complete_and_fresh` (regenerate with\n\
             `CAPSTAN_BLESS=1 cargo test -p capstan --lib metrics_reference`). Pool series\n\
             (`pool` label) are exported by the leader and removed when a reload drops the\n\
             pool; `capstan_host_*`, `capstan_gpu_*`, `capstan_collection_*` and\n\
             `capstan_reports_sent_total` by every agent about its own node. Alerts on them:\n\
             [operations.md](operations.md#alerts).\n\n\
             | metric | type | labels | meaning |\n|---|---|---|---|\n",
        );
        for (name, kind) in NAMES {
            let label_set = labels.get(*name).map_or("", String::as_str);
            let meaning = help.get(*name).map_or("", String::as_str);
            out.push_str(&format!(
                "| `{name}` | {kind} | {label_set} | {meaning} |\n"
            ));
        }
        out
    }

    #[test]
    fn the_metrics_reference_is_complete_and_fresh() {
        let reference = reference();
        for (name, _) in NAMES {
            let row = reference
                .lines()
                .find(|l| l.starts_with(&format!("| `{name}` |")))
                .unwrap_or_else(|| panic!("{name} is not in the reference"));
            let cells: Vec<&str> = row.split(" | ").collect();
            assert!(
                cells
                    .last()
                    .is_some_and(|m| m.trim_end_matches(" |").len() > 3),
                "{name} has no help text: {row}"
            );
        }
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
        if std::env::var_os("CAPSTAN_BLESS").is_some() {
            std::fs::write(&path, &reference).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == reference,
            "docs/metrics.md is stale or missing: run CAPSTAN_BLESS=1 cargo test -p capstan --lib metrics_reference and commit it"
        );
    }
}
