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

mod gpu;
mod labels;
mod pool_family;
#[cfg(test)]
mod tests;

pub use self::labels::*;
pub use self::pool_family::{PoolFamily, PoolScoped};
use self::pool_family::{PoolSeries, register_pool};

fn request_seconds() -> Histogram {
    // 5 ms … about 20 s: a cloud call, retries included.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

type GaugeF = Gauge<f64, AtomicU64>;

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
