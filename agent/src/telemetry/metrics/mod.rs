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
use self::pool_family::PoolSeries;
pub use self::pool_family::{PoolFamily, PoolScoped};

fn request_seconds() -> Histogram {
    // 5 ms … about 20 s: a cloud call, retries included.
    Histogram::new(exponential_buckets(0.005, 2.0, 13))
}

fn operation_seconds() -> Histogram {
    // 50 ms … about 28 min: from a call that completes when it returns to a scale-set
    // update that runs for many minutes.
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// A gauge of floating-point values.
pub type GaugeF = Gauge<f64, AtomicU64>;

/// A metric as it is registered: a pool family also enrols for
/// [`Metrics::remove_pool`], everything else is registered as it is.
trait Declared {
    fn register(
        &self,
        r: &mut Registry,
        pools: &mut Vec<Box<dyn PoolSeries>>,
        name: &str,
        help: &str,
    );
}

macro_rules! declared_as_is {
    ($($t:ty),*) => {$(
        impl Declared for $t {
            fn register(&self, r: &mut Registry, _: &mut Vec<Box<dyn PoolSeries>>, name: &str, help: &str) {
                r.register(name, help, self.clone());
            }
        }
    )*};
}
declared_as_is!(Counter, Gauge, GaugeF, Histogram);

impl<L, M, C> Declared for Family<L, M, C>
where
    Family<L, M, C>: prometheus_client::registry::Metric + Clone,
{
    fn register(&self, r: &mut Registry, _: &mut Vec<Box<dyn PoolSeries>>, name: &str, help: &str) {
        r.register(name, help, self.clone());
    }
}

/// The name a metric is exposed under: counters gain `_total`.
macro_rules! exposed {
    (counter, $name:literal) => {
        concat!("capstan_", $name, "_total")
    };
    ($kind:ident, $name:literal) => {
        concat!("capstan_", $name)
    };
}

/// A metric's starting value: its type's default unless the declaration gives one.
macro_rules! initial {
    () => {
        Default::default()
    };
    ($init:expr) => {
        $init
    };
}

/// Declares every metric once: its field (with the doc comment the reference page
/// reads its labels from), its type, its kind, its registered name and its help, and
/// optionally how to build it. The struct, [`NAMES`] and the registration all follow
/// from this list, and a pool family's series are removed with its pool by
/// [`Metrics::remove_pool`] because the family is a [`PoolFamily`]: adding a metric is
/// one declaration here and its setter where the value is known.
macro_rules! declare_metrics {
    ($(
        $(#[doc = $doc:literal])*
        $field:ident: $ty:ty = $kind:ident $name:literal, $help:literal $(, $init:expr)?;
    )*) => {
        /// The agent's metrics.
        #[derive(Debug)]
        pub struct Metrics {
            registry: Registry,
            /// Every family labelled with a pool, for [`Metrics::remove_pool`].
            pool_series: Vec<Box<dyn PoolSeries>>,
            $($(#[doc = $doc])* pub $field: $ty,)*
        }

        /// Every metric name, with its type, as it appears in the exposition.
        pub const NAMES: &[(&str, &str)] = &[
            ("capstan_build_info", "gauge"),
            $((exposed!($kind, $name), stringify!($kind)),)*
        ];

        impl Metrics {
            /// Every declared metric, unregistered.
            fn declared() -> Self {
                Self {
                    registry: Registry::default(),
                    pool_series: Vec::new(),
                    $($field: initial!($($init)?),)*
                }
            }

            /// Registers every declared metric, in declaration order.
            fn register_declared(&self, r: &mut Registry, pools: &mut Vec<Box<dyn PoolSeries>>) {
                $(Declared::register(&self.$field, r, pools, $name, $help);)*
            }
        }
    };
}

declare_metrics! {

    /// `capstan_pool_desired_nodes{pool}`: nodes the last decision asked for.
    pool_desired_nodes: PoolFamily<PoolLabel, Gauge> = gauge "pool_desired_nodes",
        "Nodes the last decision asked for";
    /// `capstan_pool_current_nodes{pool}`: nodes the provider reported.
    pool_current_nodes: PoolFamily<PoolLabel, Gauge> = gauge "pool_current_nodes",
        "Nodes the provider reported";
    /// `capstan_pool_min_nodes{pool}`.
    pool_min_nodes: PoolFamily<PoolLabel, Gauge> = gauge "pool_min_nodes",
        "The pool's configured minimum";
    /// `capstan_pool_max_nodes{pool}`.
    pool_max_nodes: PoolFamily<PoolLabel, Gauge> = gauge "pool_max_nodes",
        "The pool's configured maximum";
    /// `capstan_pool_metric_value{pool,metric}`: the average per node of a target metric.
    pool_metric_value: PoolFamily<PoolMetricLabels, GaugeF> = gauge "pool_metric_value",
        "Average per node of a target metric";
    /// `capstan_pool_metric_target{pool,metric}`: the target per node.
    pool_metric_target: PoolFamily<PoolMetricLabels, GaugeF> = gauge "pool_metric_target",
        "Target per node of a target metric";
    /// `capstan_decisions_total{pool,action}`.
    decisions: PoolFamily<PoolActionLabels, Counter> = counter "decisions",
        "Planning decisions by outcome";
    /// `capstan_provider_errors_total{pool,kind}`.
    provider_errors: PoolFamily<PoolErrorLabels, Counter> = counter "provider_errors",
        "Failed provider calls by error kind";
    /// `capstan_config_reloads_total{result}`.
    config_reloads: Family<ResultLabel, Counter> = counter "config_reloads",
        "Configuration reloads by result";
    /// `capstan_collection_errors_total{collector}`.
    collection_errors: Family<CollectorLabel, Counter> = counter "collection_errors",
        "Failed collections by collector";
    /// `capstan_collection_duration_seconds`: how long one collection of this node
    /// took (every collector, workload scrapes excluded).
    collection_seconds: Histogram = histogram "collection_duration_seconds",
        "How long one collection of this node took (every collector)",
        // 50 µs … about 0.4 s.
        Histogram::new(exponential_buckets(0.000_05, 2.0, 14));
    /// `capstan_journal_write_errors_total`.
    journal_write_errors: Counter = counter "journal_write_errors",
        "Journal lines that could not be written";
    /// `capstan_is_leader`: 1 when this agent leads.
    is_leader: Gauge = gauge "is_leader",
        "1 when this agent is the leader";
    /// `capstan_planning_passes_total`.
    planning_passes: Counter = counter "planning_passes",
        "Planning passes run";
    /// `capstan_host_cpu_percent`.
    host_cpu_percent: GaugeF = gauge "host_cpu_percent",
        "This host's busy CPU, percent";
    /// `capstan_host_memory_percent`.
    host_memory_percent: GaugeF = gauge "host_memory_percent",
        "This host's used memory, percent";
    /// `capstan_host_load1_per_core`.
    host_load1_per_core: GaugeF = gauge "host_load1_per_core",
        "This host's 1-minute load per core";
    /// `capstan_pool_hourly_cost{pool}`: cost per hour of the pool as planned.
    pool_hourly_cost: PoolFamily<PoolLabel, GaugeF> = gauge "pool_hourly_cost",
        "Cost per hour of the pool as planned, from its prices and spot split";
    /// `capstan_pool_on_demand_nodes{pool}`: on-demand nodes planned.
    pool_on_demand_nodes: PoolFamily<PoolLabel, Gauge> = gauge "pool_on_demand_nodes",
        "On-demand nodes planned";
    /// `capstan_pool_spot_nodes{pool}`: spot nodes planned.
    pool_spot_nodes: PoolFamily<PoolLabel, Gauge> = gauge "pool_spot_nodes",
        "Spot nodes planned";
    /// `capstan_pool_effective_min_nodes{pool}`: min this pass, after schedules.
    pool_effective_min_nodes: PoolFamily<PoolLabel, Gauge> = gauge "pool_effective_min_nodes",
        "The pool's minimum this pass, after schedules";
    /// `capstan_pool_effective_max_nodes{pool}`: max this pass, after schedules.
    pool_effective_max_nodes: PoolFamily<PoolLabel, Gauge> = gauge "pool_effective_max_nodes",
        "The pool's maximum this pass, after schedules (before an emergency lift)";
    /// `capstan_pool_emergency{pool}`: 1 while an emergency is in force.
    pool_emergency: PoolFamily<PoolLabel, Gauge> = gauge "pool_emergency",
        "1 while an emergency lets the pool exceed max";
    /// `capstan_pool_flapping{pool}`: 1 while the pool is frozen after flapping.
    pool_flapping: PoolFamily<PoolLabel, Gauge> = gauge "pool_flapping",
        "1 while the pool is frozen after flapping";
    /// `capstan_pool_spot_fallback{pool}`: 1 while spot is planned as on-demand.
    pool_spot_fallback: PoolFamily<PoolLabel, Gauge> = gauge "pool_spot_fallback",
        "1 while missing spot nodes are planned as on-demand";
    /// `capstan_group_current_nodes{group}`: nodes a group's members hold.
    group_current_nodes: Family<GroupLabel, Gauge> = gauge "group_current_nodes",
        "Nodes the members of a pool group hold";
    /// `capstan_group_desired_nodes{group}`: the size a group's targets ask for.
    group_desired_nodes: Family<GroupLabel, Gauge> = gauge "group_desired_nodes",
        "The size a pool group's targets ask for, before it is allocated to its members";
    /// `capstan_group_spillover_nodes_total{group,pool}`: nodes a member took over
    /// from members whose cloud refused them.
    group_spillover_nodes: Family<GroupMemberLabels, Counter> = counter "group_spillover_nodes",
        "Nodes a group member took over from members whose cloud refused them";
    /// `capstan_budget_hourly_cost`: cost per hour of the fleet as planned.
    budget_hourly_cost: GaugeF = gauge "budget_hourly_cost",
        "Cost per hour of the whole fleet as planned";
    /// `capstan_budget_ceiling`: the fleet ceiling per hour (absent without one).
    budget_ceiling: Family<NoLabels, GaugeF> = gauge "budget_ceiling",
        "The fleet's budget ceiling per hour; absent when none is set";
    /// `capstan_budget_over`: 1 while the fleet costs more than its ceiling.
    budget_over: Gauge = gauge "budget_over",
        "1 while the fleet costs more than its ceiling";
    /// `capstan_pool_circuit_open{pool}`: 1 while the pool's provider calls are
    /// suspended after failures (the actuator's circuit breaker).
    pool_circuit_open: PoolFamily<PoolLabel, Gauge> = gauge "pool_circuit_open",
        "1 while the pool's provider calls are suspended after failures";
    /// `capstan_pool_consecutive_failures{pool}`: failed provider calls in a row.
    pool_consecutive_failures: PoolFamily<PoolLabel, Gauge> = gauge "pool_consecutive_failures",
        "Failed provider calls in a row";
    /// `capstan_pool_demand{pool,metric}`: a target's readings summed over the pool.
    pool_demand: PoolFamily<PoolMetricLabels, GaugeF> = gauge "pool_demand",
        "A target's readings summed over the pool: the demand capacity must cover";
    /// `capstan_forecast_demand{pool,metric}`: demand forecast `predictive.horizon` ahead.
    forecast_demand: PoolFamily<PoolMetricLabels, GaugeF> = gauge "forecast_demand",
        "Demand forecast predictive.horizon ahead (a target's readings summed over the pool)";
    /// `capstan_forecast_mase{pool,metric}`: the forecast's trailing-day MASE.
    forecast_mase: PoolFamily<PoolMetricLabels, GaugeF> = gauge "forecast_mase",
        "The forecast's mean absolute error over the last day, relative to no-change";
    /// `capstan_anomalies_total{pool,metric}`: anomaly onsets in a target's demand.
    anomalies: PoolFamily<PoolMetricLabels, Counter> = counter "anomalies",
        "Anomaly onsets in a target's demand";
    /// `capstan_pool_predictive_active{pool}`: 1 while predictive scaling is in force.
    pool_predictive_active: PoolFamily<PoolLabel, Gauge> = gauge "pool_predictive_active",
        "1 while predictive scaling is in force for the pool";
    /// `capstan_reports_received_total`: node reports the leader accepted.
    reports_received: Counter = counter "reports_received",
        "Node reports the leader accepted";
    /// `capstan_reports_rejected_total{reason}`: node reports the leader refused.
    reports_rejected: Family<ReasonLabel, Counter> = counter "reports_rejected",
        "Node reports the leader refused, by reason";
    /// `capstan_reports_sent_total{result}`: this node's reports to the leader.
    reports_sent: Family<ResultLabel, Counter> = counter "reports_sent",
        "This node's reports to the leader, by result";
    /// `capstan_pool_reports_unmatched{pool}`: 1 while a cloud pool's nodes report
    /// under ids that match none of its instances (no targeted scale-in, no
    /// missing-node rules).
    pool_reports_unmatched: PoolFamily<PoolLabel, Gauge> = gauge "pool_reports_unmatched",
        "1 while a cloud pool's nodes report under ids that match none of its instances";
    /// `capstan_pool_draining_nodes{pool}`: nodes chosen for scale-in and not yet
    /// removed (draining, or drained and waiting for their removal).
    pool_draining_nodes: PoolFamily<PoolLabel, Gauge> = gauge "pool_draining_nodes",
        "Nodes chosen for scale-in and not yet removed";
    /// `capstan_drains_total{pool,result}`: drains of chosen nodes by how they ended
    /// (`drained`, `failed`, `timed_out`, `cancelled`, `no_agent`).
    drains: PoolFamily<PoolResultLabels, Counter> = counter "drains",
        "Drains of nodes chosen for scale-in, by how they ended";
    /// `capstan_drain_duration_seconds`: from a node's choice to its drained report
    /// (or its deadline).
    drain_seconds: Histogram = histogram "drain_duration_seconds",
        "From a node's choice for scale-in to its drained report, or its deadline",
        operation_seconds();
    /// `capstan_pool_nodes_reporting{pool}`: nodes whose last report is fresh.
    pool_nodes_reporting: PoolFamily<PoolLabel, Gauge> = gauge "pool_nodes_reporting",
        "Nodes of the pool whose last report is fresh";
    /// `capstan_pool_nodes_stale{pool}`: nodes silent for three intervals, not yet
    /// dropped (`cluster.node_expiry`).
    pool_nodes_stale: PoolFamily<PoolLabel, Gauge> = gauge "pool_nodes_stale",
        "Nodes of the pool silent for three intervals and not yet dropped";
    /// `capstan_leader_changes_total`: times this agent gained or lost leadership.
    leader_changes: Counter = counter "leader_changes",
        "Times this agent gained or lost leadership";
    /// `capstan_provider_requests_total{provider,operation,outcome}`: calls to pools'
    /// providers (each call may be several HTTP requests: the SDK retries inside it).
    provider_requests: Family<ProviderRequestLabels, Counter> = counter "provider_requests",
        "Calls to pools' providers by operation and outcome (ok or the error kind)";
    /// `capstan_provider_request_duration_seconds{provider,operation}`: how long each
    /// provider call took, retries included.
    provider_request_seconds: HistogramFamily<ProviderOperationLabels> = histogram "provider_request_duration_seconds",
        "How long provider calls took, the SDK's retries included",
        Family::new_with_constructor(request_seconds);
    /// `capstan_pool_operation_in_flight{pool}`: 1 while a cloud operation the pool's
    /// last target started is in flight (the pool gets no new target until it ends).
    pool_operation_in_flight: PoolFamily<PoolLabel, Gauge> = gauge "pool_operation_in_flight",
        "1 while a cloud operation for the pool is in flight (no new target is sent until it ends)";
    /// `capstan_operation_duration_seconds{provider}`: from submitting a target until
    /// the cloud said it was done (or failed), polls included.
    operation_seconds: HistogramFamily<ProviderLabel> = histogram "operation_duration_seconds",
        "How long cloud operations took from submission to their end, by provider",
        Family::new_with_constructor(operation_seconds);
    /// `capstan_gpu_utilization_percent{gpu,uuid}`.
    gpu_utilization: Family<GpuLabels, GaugeF> = gauge "gpu_utilization_percent",
        "Percent of time a kernel ran on the GPU";
    /// `capstan_gpu_memory_utilization_percent{gpu,uuid}`.
    gpu_memory_utilization: Family<GpuLabels, GaugeF> = gauge "gpu_memory_utilization_percent",
        "Percent of time GPU memory was read or written";
    /// `capstan_gpu_memory_used_bytes{gpu,uuid}`.
    gpu_memory_used: Family<GpuLabels, GaugeF> = gauge "gpu_memory_used_bytes",
        "GPU memory in use";
    /// `capstan_gpu_memory_total_bytes{gpu,uuid}`.
    gpu_memory_total: Family<GpuLabels, GaugeF> = gauge "gpu_memory_total_bytes",
        "GPU memory installed";
    /// `capstan_gpu_temperature_celsius{gpu,uuid}`.
    gpu_temperature: Family<GpuLabels, GaugeF> = gauge "gpu_temperature_celsius",
        "GPU die temperature";
    /// `capstan_gpu_power_watts{gpu,uuid}`.
    gpu_power: Family<GpuLabels, GaugeF> = gauge "gpu_power_watts",
        "GPU power draw";
    /// `capstan_gpu_power_limit_watts{gpu,uuid}`.
    gpu_power_limit: Family<GpuLabels, GaugeF> = gauge "gpu_power_limit_watts",
        "GPU enforced power limit";
    /// `capstan_gpu_sm_clock_mhz{gpu,uuid}`.
    gpu_sm_clock: Family<GpuLabels, GaugeF> = gauge "gpu_sm_clock_mhz",
        "GPU SM clock";
    /// `capstan_gpu_memory_clock_mhz{gpu,uuid}`.
    gpu_memory_clock: Family<GpuLabels, GaugeF> = gauge "gpu_memory_clock_mhz",
        "GPU memory clock";
    /// `capstan_gpu_throttled{gpu,uuid}`: 1 while any throttle reason is in force.
    gpu_throttled: Family<GpuLabels, Gauge> = gauge "gpu_throttled",
        "1 while a throttle reason holds the GPU's clocks down";
    /// `capstan_gpu_ecc_errors_total{gpu,uuid,type}`: ECC errors since the driver loaded
    /// (NVML's volatile counts; a driver reload starts the series again, as a reset).
    gpu_ecc_errors: Family<GpuEccLabels, Counter> = counter "gpu_ecc_errors",
        "GPU ECC errors since the driver loaded, by type";
    /// `capstan_gpu_xid_errors_total{gpu,uuid,xid}`: critical XID events seen.
    gpu_xid_errors: Family<GpuXidLabels, Counter> = counter "gpu_xid_errors",
        "Critical XID errors seen on the GPU";
}

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
        let m = Self::declared();
        for reason in REJECT_REASONS {
            // Every reason is exported from the start, so a rate() sees its first one.
            drop(m.reports_rejected.get_or_create(&ReasonLabel {
                reason: reason.to_owned(),
            }));
        }
        let mut pool_series = Vec::new();
        m.register_declared(&mut registry, &mut pool_series);
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
