//! One planning pass over the pools: describe, aggregate, plan, actuate, record.
//! The daemon runs it every interval; `capstan plan` runs it once without acting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use capstan_collectors::NodeReport;
use capstan_config::{Budget, Group, Pool, ProviderConfig, ValidatedConfig};
use capstan_providers::dry_run::DryRunProvider;
use capstan_providers::{
    CapacityTarget, Lifecycle, Market, NodePoolProvider, PoolDescription, ProviderError,
};

use crate::aggregate;
use crate::brain::budget::BudgetPolicy;
use crate::brain::fleet::{GroupInput, GroupPlan, PoolInput, PoolPlan, PoolState, View};
use crate::brain::group::{self, Limit};
use crate::brain::planner::Metric;
use crate::brain::predictive::{Outlook, Predictor};
use crate::brain::schedule::Bounds;
use crate::brain::{self, Direction, History, MetricSample, Policy, Reason};
use crate::coordinator::Claim;
use crate::history::HistoryStore;

/// The actuator's circuit breaker for one pool's cloud calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through (after a short backoff following a failure).
    Closed,
    /// `circuit.failures` calls in a row failed: no calls until the backoff ends.
    Open,
    /// The backoff ended: the next pass tries once; success closes the circuit, a
    /// failure opens it again for longer.
    HalfOpen,
}

impl CircuitState {
    /// As written in status and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// The provider types this build can drive.
pub const BUILT_IN_PROVIDERS: &[&str] = &[
    "dry-run",
    #[cfg(feature = "aws")]
    "aws",
    #[cfg(feature = "azure")]
    "azure",
    #[cfg(feature = "gke")]
    "gke",
];

/// How long a cloud's long-running operation (an Azure scale-set update, a GKE
/// resize) is followed before the call gives up; the next pass sees its outcome.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);

/// Builds the provider a pool is configured with.
pub fn build_provider(pool: &Pool) -> Result<Arc<dyn NodePoolProvider>, String> {
    match &pool.provider {
        ProviderConfig::DryRun(d) => {
            let p = DryRunProvider::new(pool.name.clone(), d.initial, pool.min, pool.max)
                .with_instance_type(d.instance_type.clone());
            Ok(Arc::new(match &d.state_file {
                Some(f) => p.with_state_file(f.clone()),
                None => p,
            }))
        }
        #[cfg(feature = "aws")]
        ProviderConfig::Aws(a) => Ok(Arc::new(capstan_providers::aws::AwsProvider::new(
            capstan_providers::aws::AwsSettings {
                region: a.region.clone(),
                asg: a.asg.clone(),
                endpoint_url: a.endpoint_url.clone(),
                assume_role_arn: a.assume_role_arn.clone(),
                manage_split: pool.spot.is_some(),
            },
        ))),
        #[cfg(feature = "azure")]
        ProviderConfig::Azure(a) => {
            use capstan_config::raw::AzureCredential as C;
            use capstan_providers::azure::{AzureProvider, AzureSettings, CredentialSource};
            Ok(Arc::new(AzureProvider::new(AzureSettings {
                subscription_id: a.subscription_id.clone(),
                resource_group: a.resource_group.clone(),
                scale_set: a.scale_set.clone(),
                endpoint: a.endpoint.clone(),
                credential: match a.credential {
                    C::Auto => CredentialSource::Auto,
                    C::Environment => CredentialSource::Environment,
                    C::WorkloadIdentity => CredentialSource::WorkloadIdentity,
                    C::ManagedIdentity => CredentialSource::ManagedIdentity,
                    C::AzureCli => CredentialSource::AzureCli,
                },
                managed_identity_client_id: a.managed_identity_client_id.clone(),
                authority_host: a.authority_host.clone(),
                ca_file: a.ca_file.clone(),
                manage_split: pool.spot.is_some(),
                operation_timeout: OPERATION_TIMEOUT,
            })))
        }
        #[cfg(feature = "gke")]
        ProviderConfig::Gke(g) => Ok(Arc::new(capstan_providers::gke::GkeProvider::new(
            capstan_providers::gke::GkeSettings {
                project: g.project.clone(),
                location: g.location.clone(),
                cluster: g.cluster.clone(),
                node_pool: g.node_pool.clone(),
                spot_node_pool: g.spot_node_pool.clone(),
                endpoint: g.endpoint.clone(),
                operation_poll: Duration::from_secs(2),
                operation_timeout: OPERATION_TIMEOUT,
            },
        ))),
        #[allow(unreachable_patterns)] // every provider may be built in
        other => Err(format!(
            "pool \"{}\": provider type \"{}\" is not available in this build of capstan (built with: {})",
            pool.name,
            other.kind(),
            BUILT_IN_PROVIDERS.join(", ")
        )),
    }
}

/// A pool with everything the loop keeps between passes.
#[derive(Debug)]
pub struct PoolRuntime {
    /// Its configuration.
    pub config: Pool,
    /// The planner's view of it.
    pub policy: Policy,
    /// Its provider.
    pub provider: Arc<dyn NodePoolProvider>,
    /// Planner history.
    pub history: History,
    /// Emergency, flap and spot state.
    pub state: PoolState,
    /// Demand forecasts and anomaly detection.
    pub predictor: Predictor,
    /// The minute being accumulated: minute, then (sum, count) per target.
    pub minute: Option<(i64, Vec<(f64, u32)>)>,
    /// Where demand history is kept (the daemon's; `capstan plan` keeps none).
    pub history_store: Option<Arc<dyn HistoryStore>>,
    /// The usage minute being accumulated: minute, then (sum, count) per field of
    /// [`aggregate::usage`].
    pub usage: Option<(i64, [(f64, u32); 5])>,
    /// Where usage history is kept, for `capstan rightsizing` (the daemon's).
    pub usage_store: Option<Arc<dyn HistoryStore>>,
    /// Consecutive failed provider calls.
    pub failures: u32,
    /// No provider call before this time, after failures.
    pub retry_at: Option<DateTime<Utc>>,
    /// The last target applied successfully.
    pub last_target: Option<CapacityTarget>,
    /// The last pass's outcome.
    pub last: Option<PassOutcome>,
    /// Why the last pass made no decision, if it made none.
    pub last_error: Option<String>,
    /// The last failed provider call, for as long as the failures last.
    pub last_failure: Option<String>,
    /// What the pool's instance types offer, where the cloud has a catalogue.
    pub instance_types: Vec<capstan_providers::InstanceShape>,
}

impl PoolRuntime {
    /// The circuit breaker's state at `now`.
    pub fn circuit(&self, now: DateTime<Utc>) -> CircuitState {
        if self.failures < self.config.circuit.failures {
            CircuitState::Closed
        } else if self.retry_at.is_some_and(|at| at > now) {
            CircuitState::Open
        } else {
            CircuitState::HalfOpen
        }
    }

    /// A call succeeded: the circuit closes.
    fn succeeded(&mut self) {
        if self.failures >= self.config.circuit.failures {
            tracing::info!(pool = %self.config.name, "circuit closed: the provider answers again");
        }
        self.failures = 0;
        self.retry_at = None;
        self.last_failure = None;
    }

    /// A pool with fresh state.
    pub fn new(config: Pool, provider: Arc<dyn NodePoolProvider>) -> Self {
        Self {
            policy: Policy::from(&config),
            predictor: Predictor::new(&config.predictive, config.targets.len()),
            minute: None,
            history_store: None,
            usage: None,
            usage_store: None,
            config,
            provider,
            history: History::default(),
            state: PoolState::default(),
            failures: 0,
            retry_at: None,
            last_target: None,
            last: None,
            last_error: None,
            last_failure: None,
            instance_types: Vec::new(),
        }
    }
}

/// Builds every pool of `cfg`, taking from `old` the provider and history of pools
/// whose provider settings did not change. On error `old` is left untouched.
pub fn build_pools(
    cfg: &ValidatedConfig,
    old: &mut HashMap<String, PoolRuntime>,
) -> Result<Vec<PoolRuntime>, String> {
    build_pools_with(cfg, old, None)
}

/// [`build_pools`], with every new provider's calls counted and timed into `metrics`
/// (the daemon's).
pub fn build_pools_with(
    cfg: &ValidatedConfig,
    old: &mut HashMap<String, PoolRuntime>,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<Vec<PoolRuntime>, String> {
    let reusable = |pool: &Pool| {
        old.get(&pool.name)
            .is_some_and(|p| p.config.provider == pool.provider)
    };
    let mut fresh = Vec::with_capacity(cfg.pools.len());
    for pool in &cfg.pools {
        fresh.push(if reusable(pool) {
            None
        } else {
            let provider = build_provider(pool)?;
            Some(match metrics {
                Some(m) => crate::instrumented::Instrumented::wrap(provider, m),
                None => provider,
            })
        });
    }
    let mut pools = Vec::with_capacity(cfg.pools.len());
    for (pool, provider) in cfg.pools.iter().zip(fresh) {
        match (provider, old.remove(&pool.name)) {
            (None, Some(mut kept)) => {
                kept.policy = Policy::from(pool);
                if kept.config.predictive != pool.predictive || kept.config.targets != pool.targets
                {
                    // Forecasts of other targets or settings start over (and replay
                    // the history when the daemon attaches it).
                    kept.predictor = Predictor::new(&pool.predictive, pool.targets.len());
                    kept.minute = None;
                    kept.history_store = None;
                }
                kept.config = pool.clone();
                pools.push(kept);
            }
            (Some(provider), _) => pools.push(PoolRuntime::new(pool.clone(), provider)),
            (None, None) => return Err(format!("pool \"{}\" vanished during reload", pool.name)),
        }
    }
    Ok(pools)
}

/// A group with what the loop keeps between passes. Its HPA history is kept in
/// memory only (as HPA's own controller keeps its recommendations): a new leader
/// seeds it with the group's size, so it waits out the scale-down window first.
#[derive(Debug)]
pub struct GroupRuntime {
    /// Its configuration.
    pub config: Group,
    /// The planner's view of its targets and behavior.
    pub policy: Policy,
    /// Its HPA history.
    pub history: History,
    /// Whether a pass has looked at it (its history is seeded on the first look).
    pub looked: bool,
}

impl GroupRuntime {
    /// A group with fresh state.
    pub fn new(config: Group) -> Self {
        Self {
            policy: Policy::from(&config),
            config,
            history: History::default(),
            looked: false,
        }
    }
}

/// Builds every group of `cfg`, keeping the history of groups whose targets,
/// behavior and members did not change.
pub fn build_groups(
    cfg: &ValidatedConfig,
    old: &mut HashMap<String, GroupRuntime>,
) -> Vec<GroupRuntime> {
    cfg.groups
        .iter()
        .map(|g| match old.remove(&g.name) {
            Some(mut kept)
                if kept.config.targets == g.targets
                    && kept.config.behavior == g.behavior
                    && kept.config.members == g.members =>
            {
                kept.policy = Policy::from(g);
                kept.config = g.clone();
                kept
            }
            _ => GroupRuntime::new(g.clone()),
        })
        .collect()
}

/// One member's part of a group's pass.
#[derive(Debug, Clone, Serialize)]
pub struct MemberOutcome {
    /// The pool.
    pub pool: String,
    /// Nodes it held.
    pub current: u32,
    /// Its share of the group's size.
    pub share: u32,
    /// What the budget (and any spill-over) gave it.
    pub granted: u32,
    /// What holds its share, if anything.
    pub limit: Option<Limit>,
    /// Money per node-hour there, when priced.
    pub price: Option<f64>,
    /// Nodes its cloud refused this pass.
    pub refused: u32,
    /// Nodes it took over from refusing members this pass.
    pub spilled_in: u32,
}

/// What one pass did to one group.
#[derive(Debug, Clone, Serialize)]
pub struct GroupOutcome {
    /// When.
    pub at: DateTime<Utc>,
    /// The group.
    pub group: String,
    /// Its strategy.
    pub strategy: &'static str,
    /// Nodes its members held.
    pub current: u32,
    /// The size its targets ask for.
    pub desired: u32,
    /// What its members were given in the end (after the budget and spill-overs).
    pub granted: u32,
    /// One sample per target, over all members.
    pub samples: Vec<Option<MetricSample>>,
    /// One per member, in the order listed.
    pub members: Vec<MemberOutcome>,
    /// Why the group's size is what it is.
    pub reasons: Vec<Reason>,
}

/// What a pass did with a pool (the journal's, the JSON's and the metrics' `action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Nothing to do: the cloud already has the planned target.
    None,
    /// Planned only (`capstan plan`, or a follower).
    Plan,
    /// Not acted on (backing off, circuit open, frozen, not leader...).
    Skipped,
    /// The new target was applied.
    Scaled,
    /// The cloud call failed.
    Failed,
}

impl Action {
    /// As written in the journal and in metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Plan => "plan",
            Self::Skipped => "skipped",
            Self::Scaled => "scaled",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one pass did to one pool.
#[derive(Debug, Clone, Serialize)]
pub struct PassOutcome {
    /// When.
    pub at: DateTime<Utc>,
    /// Nodes the provider reported.
    pub current: u32,
    /// Nodes decided.
    pub desired: u32,
    /// On-demand share of `desired`.
    pub on_demand: u32,
    /// Spot share of `desired`.
    pub spot: u32,
    /// Cost per hour of `desired` under its split.
    pub hourly_cost: f64,
    /// Bounds this pass, after schedules (`max` before any emergency lift).
    pub bounds: Bounds,
    /// Names of the schedule windows in force.
    pub schedules: Vec<String>,
    /// An emergency is in force.
    pub emergency: bool,
    /// The pool is frozen after flapping until then.
    pub frozen_until: Option<DateTime<Utc>>,
    /// Spot is planned as on-demand until then.
    pub spot_fallback_until: Option<DateTime<Utc>>,
    /// What the pass did with the pool.
    pub action: Action,
    /// Why not scaled, or the error.
    pub detail: Option<String>,
    /// The provider error's kind when the action failed.
    pub error_kind: Option<&'static str>,
    /// The decision's reasons.
    pub reasons: Vec<Reason>,
    /// One sample per target.
    pub samples: Vec<Option<MetricSample>>,
    /// Per target: the demand forecast `predictive.horizon` ahead.
    pub forecasts: Vec<Option<f64>>,
    /// Per target: the forecast's trailing-day MASE.
    pub mase: Vec<Option<f64>>,
    /// Predictive scaling is in force.
    pub predictive_active: bool,
    /// The group the pool is a member of.
    pub group: Option<String>,
}

/// What one pass did to the fleet.
#[derive(Debug, Clone)]
pub struct FleetOutcome {
    /// When.
    pub at: DateTime<Utc>,
    /// One per pool, in config order.
    pub pools: Vec<Result<PassOutcome, PassError>>,
    /// One per group, in config order.
    pub groups: Vec<GroupOutcome>,
    /// Cost per hour of the fleet as planned (pools not described count at their
    /// last known size).
    pub fleet_hourly_cost: f64,
    /// The fleet ceiling, if any.
    pub budget_ceiling: Option<f64>,
    /// Still over the ceiling after this pass.
    pub over_budget: bool,
    /// Fleet-level notes (over budget, minimums above the ceiling).
    pub reasons: Vec<Reason>,
}

/// Why a pass produced no decision.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PassError {
    /// Earlier calls failed; the pool is left alone until `until`.
    #[error("backing off after {failures} failed provider call(s) until {until}; the last: {last}")]
    BackingOff {
        /// Consecutive failures.
        failures: u32,
        /// When calls resume.
        until: DateTime<Utc>,
        /// The last failure.
        last: String,
    },
    /// Describing the pool failed.
    #[error("describe failed: {0}")]
    Describe(#[from] ProviderError),
}

/// Whether to call the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plan and apply (the daemon).
    Act,
    /// Plan only (`capstan plan`).
    PlanOnly,
}

fn provider_failure(
    pool: &mut PoolRuntime,
    err: &ProviderError,
    now: DateTime<Utc>,
    interval: std::time::Duration,
) {
    pool.failures = pool.failures.saturating_add(1);
    pool.last_failure = Some(err.to_string());
    let most = chrono::Duration::from_std(pool.config.circuit.max_backoff)
        .unwrap_or(chrono::Duration::minutes(5));
    let base = chrono::Duration::from_std(interval).unwrap_or(most);
    let backoff = base * 2i32.saturating_pow(pool.failures.min(16)).min(1 << 16);
    let wait = match err {
        ProviderError::Throttled {
            retry_after: Some(hint),
            ..
        } => chrono::Duration::from_std(*hint)
            .unwrap_or(most)
            .max(backoff),
        _ => backoff,
    };
    pool.retry_at = Some(now + wait.min(most));
    if pool.failures == pool.config.circuit.failures {
        tracing::warn!(
            pool = %pool.config.name,
            failures = pool.failures,
            error = %err,
            until = %pool.retry_at.unwrap_or(now),
            "circuit open: no calls to this pool's provider until then, then one try"
        );
    }
}

/// What describing a pool gave.
#[derive(Clone)]
struct Seen {
    description: PoolDescription,
    samples: Vec<Option<MetricSample>>,
    live_spot: Option<f64>,
    /// The predictor's outlook, its reasons including this pass's anomalies.
    outlook: Outlook,
    /// The metric of the first surge anomaly this pass.
    surge: Option<Metric>,
    /// Nodes with an interruption notice.
    interrupted: u32,
    /// Nodes with a faulty GPU.
    faulty_gpus: u32,
    /// In-service instances.
    in_service: u32,
    /// For a group member: one sample per target of its group.
    group_samples: Vec<Option<MetricSample>>,
}

/// Describes `pool` and aggregates its reports: samples of its own targets and, for a
/// group member, of its group's (`group_targets`).
async fn observe(
    pool: &mut PoolRuntime,
    group_targets: &[capstan_config::Target],
    reports: &[&NodeReport],
    now: DateTime<Utc>,
    interval: std::time::Duration,
) -> Result<Seen, PassError> {
    if let Some(until) = pool.retry_at.filter(|at| *at > now) {
        return Err(PassError::BackingOff {
            failures: pool.failures,
            until,
            last: pool
                .last_failure
                .clone()
                .unwrap_or_else(|| "not recorded".to_owned()),
        });
    }
    let description = match pool.provider.describe().await {
        Ok(d) => d,
        Err(e) => {
            provider_failure(pool, &e, now, interval);
            return Err(PassError::Describe(e));
        }
    };
    // Asked only when an instance runs a type not looked up yet; a failure keeps the
    // last catalogue and asks again next pass.
    let unknown_type = description.instances.iter().any(|i| {
        i.instance_type
            .as_ref()
            .is_some_and(|t| !pool.instance_types.iter().any(|s| &s.name == t))
    });
    if unknown_type {
        match pool.provider.instance_types().await {
            Ok(shapes) => pool.instance_types = shapes,
            Err(e) => {
                tracing::debug!(pool = %pool.config.name, error = %e, "no instance-type catalogue this pass");
            }
        }
    }
    // A missing live price is not worth a failed pass: the configured one applies.
    let live_spot = if pool.config.spot.is_some() {
        match pool.provider.spot_price().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(pool = %pool.config.name, error = %e, "no live spot price; using the configured one");
                None
            }
        }
    } else {
        None
    };
    let pool_reports: Vec<&NodeReport> = reports
        .iter()
        .copied()
        .filter(|r| r.pool.as_deref() == Some(pool.config.name.as_str()))
        .collect();
    let mut samples = aggregate::samples(&pool.config, &description, &pool_reports);
    let in_service = in_service(&description);
    let query_failures = promql_samples(
        &pool.config.name,
        &pool.config.targets,
        in_service,
        &mut samples,
    )
    .await;
    let group_samples = aggregate::samples_for(group_targets, &description, &pool_reports);
    let interrupted = aggregate::interrupted(&description, &pool_reports);
    let faulty_gpus = aggregate::faulty_gpus(&description, &pool_reports);
    pool.history.prune(&pool.policy.behavior, now);
    if pool.last.is_none() && pool.history.recommendations.is_empty() {
        // As HPA does for a target it sees for the first time: the current size counts
        // as a recent recommendation, so a (re)started agent waits out the scale-down
        // window instead of shrinking the pool on its first look.
        pool.history.record_recommendation(description.desired, now);
    }
    let (anomalies, surge) = track_demand(pool, &samples, now);
    track_usage(pool, description.desired, &pool_reports, now);
    let mut outlook = pool
        .predictor
        .outlook(now.timestamp().div_euclid(60), &pool.policy.targets);
    outlook.reasons.extend(query_failures);
    outlook.reasons.extend(anomalies);
    Ok(Seen {
        description,
        samples,
        live_spot,
        outlook,
        surge,
        interrupted,
        faulty_gpus,
        in_service,
        group_samples,
    })
}

/// In-service instances of a pool.
fn in_service(description: &PoolDescription) -> u32 {
    let n = description
        .instances
        .iter()
        .filter(|i| i.lifecycle == Lifecycle::InService)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Fills the samples of PromQL targets: the query's value is the per-node average over
/// the pool's in-service nodes. A failed query leaves the target unavailable and says
/// why.
async fn promql_samples(
    name: &str,
    targets: &[capstan_config::Target],
    nodes: u32,
    samples: &mut [Option<crate::brain::MetricSample>],
) -> Vec<crate::brain::Reason> {
    let mut failures = Vec::new();
    for (target, sample) in targets.iter().zip(samples.iter_mut()) {
        let capstan_config::TargetSource::PromQl {
            query,
            url,
            timeout,
        } = &target.source
        else {
            continue;
        };
        match crate::promql::query(url, query, *timeout).await {
            Ok(v) if nodes > 0 => {
                *sample = Some(crate::brain::MetricSample {
                    sum: v * f64::from(nodes),
                    ready: nodes,
                    missing: 0,
                    unready: 0,
                    reporting: nodes,
                });
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(pool = %name, %query, %error, "PromQL target unavailable");
                failures.push(crate::brain::Reason::QueryFailed {
                    query: query.clone(),
                    error,
                });
            }
        }
    }
    failures
}

/// Adds this pass's demand (each target's readings summed over the pool) to the
/// minute being accumulated; when a minute closes, records it in the predictor and the
/// history store. Returns the anomalies found, and the metric of a surge among them.
fn track_demand(
    pool: &mut PoolRuntime,
    samples: &[Option<MetricSample>],
    now: DateTime<Utc>,
) -> (Vec<Reason>, Option<Metric>) {
    let mut reasons = Vec::new();
    let mut surge = None;
    if !pool.predictor.enabled() {
        return (reasons, surge);
    }
    let minute = now.timestamp().div_euclid(60);
    let n = pool.policy.targets.len();
    if let Some((m, sums)) = pool.minute.take() {
        if m == minute {
            pool.minute = Some((m, sums));
        } else if m < minute {
            let point: Vec<Option<f64>> = sums
                .iter()
                .map(|(s, c)| (*c > 0).then(|| s / f64::from(*c)))
                .collect();
            if let Some(store) = &pool.history_store
                && let Err(e) = store.append(&pool.config.name, &(m, point.clone()))
            {
                tracing::warn!(pool = %pool.config.name, error = %e, "cannot write demand history");
            }
            for event in pool.predictor.record(m, &point) {
                let metric = pool.policy.targets[event.target].metric.clone();
                if event.verdict.z > 0.0 && surge.is_none() {
                    surge = Some(metric.clone());
                }
                reasons.push(Reason::Anomaly {
                    metric,
                    value: event.value,
                    expected: event.verdict.expected.unwrap_or(f64::NAN),
                    z: event.verdict.z,
                });
            }
        }
    }
    let (m, sums) = pool
        .minute
        .get_or_insert_with(|| (minute, vec![(0.0, 0); n]));
    if *m == minute {
        for (acc, sample) in sums.iter_mut().zip(samples) {
            if let Some(s) = sample.filter(|s| s.ready > 0 && s.sum.is_finite()) {
                acc.0 += s.sum;
                acc.1 += 1;
            }
        }
    }
    (reasons, surge)
}

/// Adds this pass's usage to the minute being accumulated; when a minute closes,
/// writes its means to the usage store, if the pool has one.
fn track_usage(pool: &mut PoolRuntime, nodes: u32, reports: &[&NodeReport], now: DateTime<Utc>) {
    if pool.usage_store.is_none() {
        return;
    }
    let usage = aggregate::usage(nodes, reports);
    let minute = now.timestamp().div_euclid(60);
    if let Some((m, sums)) = pool.usage.take_if(|(m, _)| *m != minute)
        && m < minute
        && let Some(store) = &pool.usage_store
    {
        let point: Vec<Option<f64>> = sums
            .iter()
            .map(|(s, c)| (*c > 0).then(|| s / f64::from(*c)))
            .collect();
        if let Err(e) = store.append(&pool.config.name, &(m, point)) {
            tracing::warn!(pool = %pool.config.name, error = %e, "cannot write usage history");
        }
    }
    let (_, sums) = pool.usage.get_or_insert((minute, [(0.0, 0); 5]));
    for (acc, v) in sums.iter_mut().zip(usage) {
        if let Some(v) = v {
            acc.0 += v;
            acc.1 += 1;
        }
    }
}

/// How long usage history is kept: `capstan rightsizing --days` looks back at most
/// this far.
pub const USAGE_RETENTION_DAYS: i64 = 35;

/// Gives every pool without one the usage store, and compacts each pool's usage
/// history to [`USAGE_RETENTION_DAYS`].
pub fn attach_usage(pools: &mut [PoolRuntime], store: &Arc<dyn HistoryStore>, now: DateTime<Utc>) {
    let since = now.timestamp().div_euclid(60) - USAGE_RETENTION_DAYS * 1440;
    for pool in pools.iter_mut().filter(|p| p.usage_store.is_none()) {
        pool.usage_store = Some(store.clone());
        // Loading compacts the file to the window.
        if let Err(e) = store.load(&pool.config.name, since) {
            tracing::warn!(pool = %pool.config.name, error = %e, "cannot read usage history");
        }
    }
}

/// Gives every pool without one the history store, and replays its recent history into
/// its predictor, so forecasts are warm after a restart.
pub fn attach_history(
    pools: &mut [PoolRuntime],
    store: &Arc<dyn HistoryStore>,
    now: DateTime<Utc>,
) {
    for pool in pools.iter_mut().filter(|p| p.history_store.is_none()) {
        pool.history_store = Some(store.clone());
        if !pool.predictor.enabled() {
            continue;
        }
        let window =
            i64::try_from(pool.config.predictive.history.as_secs() / 60).unwrap_or(i64::MAX);
        let since = now.timestamp().div_euclid(60).saturating_sub(window);
        match store.load(&pool.config.name, since) {
            Ok(points) => {
                let n = pool.policy.targets.len();
                for (minute, mut values) in points {
                    values.resize(n, None);
                    pool.predictor.record(minute, &values);
                }
            }
            Err(e) => {
                tracing::warn!(pool = %pool.config.name, error = %e, "cannot read demand history; forecasts start cold");
            }
        }
    }
}

fn running_spot(d: &PoolDescription) -> u32 {
    let n = d
        .instances
        .iter()
        .filter(|i| i.market == Market::Spot && i.lifecycle != Lifecycle::Terminating)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Runs one pass over every pool: describes each, plans the fleet (schedules,
/// emergencies, the HPA planner, flap protection, spot fallback, the budget by tier),
/// and, in [`Mode::Act`] while `claim` says this agent leads, applies each absolute
/// target that differs from what the pool holds. `reports` are this pass's fresh node
/// reports, any pool.
#[allow(clippy::too_many_arguments)]
pub async fn fleet_pass(
    pools: &mut [PoolRuntime],
    groups: &mut [GroupRuntime],
    reports: &[&NodeReport],
    claim: &tokio::sync::watch::Receiver<Claim>,
    mode: Mode,
    now: DateTime<Utc>,
    interval: std::time::Duration,
    budget: &Budget,
) -> FleetOutcome {
    let mut seen = Vec::with_capacity(pools.len());
    for pool in pools.iter_mut() {
        let group_targets = pool
            .config
            .group
            .as_ref()
            .and_then(|g| groups.iter().find(|r| &r.config.name == g))
            .map_or(&[][..], |g| &g.config.targets[..]);
        seen.push(observe(pool, group_targets, reports, now, interval).await);
    }

    let members = group_members(pools, groups);
    let group_samples = observe_groups(pools, groups, &members, &seen, now).await;

    let plan = {
        let group_inputs: Vec<GroupInput<'_>> = groups
            .iter()
            .zip(&members)
            .zip(&group_samples)
            .map(|((g, members), samples)| GroupInput {
                config: &g.config,
                policy: &g.policy,
                history: &g.history,
                metrics: samples,
                members,
            })
            .collect();
        let mut inputs: Vec<PoolInput<'_>> = pools
            .iter_mut()
            .zip(&seen)
            .map(|(pool, seen)| {
                let seen = seen.as_ref().ok();
                let last_known = last_known(pool);
                let prices = brain::fleet::prices(
                    pool.config.price.as_ref(),
                    seen.into_iter()
                        .flat_map(|s| s.description.in_service())
                        .map(|i| i.instance_type.as_deref()),
                    seen.and_then(|s| s.live_spot),
                );
                PoolInput {
                    config: &pool.config,
                    policy: &pool.policy,
                    prices,
                    state: &mut pool.state,
                    view: seen.map(|s| View {
                        current: s.description.desired,
                        metrics: &s.samples,
                        history: &pool.history,
                        running_spot: running_spot(&s.description),
                        asked_spot: pool.last_target.map(|t| t.spot()),
                        outlook: Some(&s.outlook),
                        surge: s.surge.as_deref(),
                        interrupted: s.interrupted,
                        faulty_gpus: s.faulty_gpus,
                    }),
                    last_known,
                }
            })
            .collect();
        brain::fleet::plan_fleet_with_groups(
            &mut inputs,
            &group_inputs,
            &BudgetPolicy::from(budget),
            now,
        )
    };

    let mut planned: Vec<Option<PoolPlan>> = plan.pools.into_iter().map(Some).collect();
    let mut results: Vec<Option<Result<PassOutcome, PassError>>> = Vec::with_capacity(pools.len());
    for (i, (pool, seen)) in pools.iter_mut().zip(&seen).enumerate() {
        // Group members are acted on with their group, below.
        if pool.config.group.is_some() {
            results.push(None);
            continue;
        }
        let Some(planned) = planned[i].take() else {
            results.push(None);
            continue;
        };
        results.push(Some(match seen {
            Ok(s) => Ok(act(pool, s, planned, claim, mode, now, interval).await),
            Err(e) => Err(e.clone()),
        }));
    }
    let mut fleet_hourly_cost = plan.fleet_hourly_cost;
    let mut room = plan
        .budget_ceiling
        .map(|c| (c - plan.fleet_hourly_cost).max(0.0));
    let mut group_outcomes = Vec::with_capacity(groups.len());
    for ((group, gp), samples) in groups.iter_mut().zip(plan.groups).zip(group_samples) {
        let outcome = act_group(
            group,
            gp,
            samples,
            pools,
            &seen,
            &mut planned,
            &mut results,
            &mut room,
            claim,
            (mode, now, interval),
        )
        .await;
        fleet_hourly_cost += outcome.1;
        group_outcomes.push(outcome.0);
    }
    let results = results
        .into_iter()
        .zip(seen)
        .map(|(r, seen)| match (r, seen) {
            (Some(r), _) => r,
            (None, Err(e)) => Err(e),
            // Every pool with a view is acted on above, in or out of a group.
            (None, Ok(_)) => Err(PassError::Describe(ProviderError::Transient {
                message: "no decision was made for this pool this pass".into(),
            })),
        })
        .collect();
    FleetOutcome {
        at: now,
        pools: results,
        groups: group_outcomes,
        fleet_hourly_cost,
        budget_ceiling: plan.budget_ceiling,
        over_budget: plan.over_budget,
        reasons: plan.reasons,
    }
}

/// Where a pool that cannot be described is counted: its last known size, or, never
/// seen, its max, so a flaky cloud API cannot let the others spend its share.
fn last_known(pool: &PoolRuntime) -> u32 {
    pool.last
        .as_ref()
        .map(|l| l.current)
        .or(pool.last_target.map(|t| t.capacity))
        .unwrap_or(pool.config.max)
}

/// Each group's members: indices into `pools`, in the order listed.
fn group_members(pools: &[PoolRuntime], groups: &[GroupRuntime]) -> Vec<Vec<usize>> {
    groups
        .iter()
        .map(|g| {
            g.config
                .members
                .iter()
                .filter_map(|m| pools.iter().position(|p| &p.config.name == m))
                .collect()
        })
        .collect()
}

/// Each group's samples over its members' nodes (PromQL targets queried once for the
/// group); prunes each group's history and, on its first look, seeds it with the
/// group's size, as a pool's.
async fn observe_groups(
    pools: &[PoolRuntime],
    groups: &mut [GroupRuntime],
    members: &[Vec<usize>],
    seen: &[Result<Seen, PassError>],
    now: DateTime<Utc>,
) -> Vec<Vec<Option<MetricSample>>> {
    let mut out = Vec::with_capacity(groups.len());
    for (group, members) in groups.iter_mut().zip(members) {
        let mut parts = Vec::with_capacity(members.len());
        let mut current = 0_u32;
        let mut nodes = 0_u32;
        for &i in members {
            match &seen[i] {
                Ok(s) => {
                    nodes = nodes.saturating_add(s.in_service);
                    current = current.saturating_add(s.description.desired);
                    parts.push((s.group_samples.clone(), s.in_service));
                }
                Err(_) => current = current.saturating_add(last_known(&pools[i])),
            }
        }
        let mut samples = aggregate::merge(&parts, group.config.targets.len());
        let failures = promql_samples(
            &group.config.name,
            &group.config.targets,
            nodes,
            &mut samples,
        )
        .await;
        for f in failures {
            tracing::debug!(group = %group.config.name, reason = %f, "group target unavailable");
        }
        group.history.prune(&group.policy.behavior, now);
        if !group.looked && group.history.recommendations.is_empty() {
            group.history.record_recommendation(current, now);
        }
        group.looked = true;
        out.push(samples);
    }
    out
}

/// Acts on one group's members: in the order the strategy fills them, each gets its
/// grant; a member whose cloud refuses it (or whose call fails) gives its shortfall to
/// the others in the same pass, within `room` (money per hour still free under the
/// budget ceiling). Returns the group's outcome and the change in the fleet's cost.
#[allow(clippy::too_many_arguments)]
async fn act_group(
    group: &mut GroupRuntime,
    plan: GroupPlan,
    samples: Vec<Option<MetricSample>>,
    pools: &mut [PoolRuntime],
    seen: &[Result<Seen, PassError>],
    planned: &mut [Option<PoolPlan>],
    results: &mut [Option<Result<PassOutcome, PassError>>],
    room: &mut Option<f64>,
    claim: &tokio::sync::watch::Receiver<Claim>,
    (mode, now, interval): (Mode, DateTime<Utc>, std::time::Duration),
) -> (GroupOutcome, f64) {
    let money: Vec<group::Money> = plan.members.iter().map(|m| m.money).collect();
    let mut rounds = group::Spillover::new(
        plan.strategy,
        group.config.max_skew,
        plan.desired,
        plan.members.iter().map(|m| m.slot).collect(),
        money.clone(),
        plan.members.iter().map(|m| m.granted).collect(),
        *room,
    );
    while !rounds.done() {
        for call in rounds.calls() {
            let j = call.member;
            let m = &plan.members[j];
            let i = m.index;
            let Ok(s) = &seen[i] else { continue };
            let pool = &mut pools[i];
            if rounds.first_round() {
                let Some(p) = planned[i].take() else { continue };
                let o = act(pool, s, p, claim, mode, now, interval).await;
                if o.action == Action::Scaled {
                    rounds.record(j, group::CallResult::Scaled(o.desired));
                } else if o.action == Action::Failed && o.desired > o.current {
                    rounds.record(j, group::CallResult::Refused(o.desired - o.current));
                }
                results[i] = Some(Ok(o));
                continue;
            }
            // A second call this pass: the pool holds what the first one applied.
            let Some(Ok(first)) = &results[i] else {
                continue;
            };
            let mut p = second_plan(first, call.nodes, &money[j]);
            p.reasons.push(Reason::GroupSpillover {
                group: plan.name.clone(),
                from: refusers(&plan, rounds.refused()),
                nodes: call.extra,
            });
            let mut again = s.clone();
            again.description.desired = rounds.holds()[j];
            let mut o = act(pool, &again, p, claim, mode, now, interval).await;
            o.current = m.slot.current;
            if o.action == Action::Scaled {
                rounds.record(j, group::CallResult::Scaled(call.nodes));
            } else if o.action == Action::Failed {
                rounds.record(j, group::CallResult::Refused(call.extra));
            }
            results[i] = Some(Ok(o));
        }
        for j in rounds.end_round() {
            let cause = results[plan.members[j].index]
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|o| o.detail.clone())
                .unwrap_or_default();
            if let Some(Ok(o)) = results[plan.members[j].index].as_mut() {
                o.reasons.push(Reason::GroupRefused {
                    group: plan.name.clone(),
                    nodes: rounds.refused()[j],
                    cause,
                });
            }
        }
    }
    *room = rounds.room();
    let (granted, refused, spilled_in) = (rounds.granted(), rounds.refused(), rounds.spilled_in());
    let k = plan.members.len();
    if mode == Mode::Act {
        if let Some(n) = plan.recommendation {
            group.history.record_recommendation(n, now);
        }
        let held: u32 = rounds.holds().iter().sum();
        group.history.record_scale(plan.current, held, now);
    }
    let members = plan
        .members
        .iter()
        .enumerate()
        .map(|(j, m)| MemberOutcome {
            pool: m.pool.clone(),
            current: m.slot.current,
            share: m.share,
            granted: granted[j],
            limit: m.limit,
            price: m.slot.price,
            refused: refused[j],
            spilled_in: spilled_in[j],
        })
        .collect();
    let outcome = GroupOutcome {
        at: now,
        group: plan.name.clone(),
        strategy: plan.strategy.as_str(),
        current: plan.current,
        desired: plan.desired,
        granted: granted.iter().sum(),
        samples,
        members,
        reasons: plan.reasons,
    };
    let cost_delta = (0..k)
        .map(|j| money[j].cost_of(granted[j]) - money[j].cost_of(plan.members[j].granted))
        .sum();
    (outcome, cost_delta)
}

/// The names of the members that refused, for a spill-over's reason.
fn refusers(plan: &GroupPlan, refused: &[u32]) -> String {
    plan.members
        .iter()
        .zip(refused)
        .filter(|(_, n)| **n > 0)
        .map(|(m, _)| m.pool.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A member's plan for a second call this pass: the first outcome's plan with the new
/// grant split as the member's money says.
fn second_plan(first: &PassOutcome, nodes: u32, money: &group::Money) -> PoolPlan {
    let on_demand = money.split.on_demand(nodes);
    PoolPlan {
        current: first.current,
        desired: nodes,
        on_demand,
        spot: nodes - on_demand,
        hourly_cost: money.cost_of(nodes),
        recommendation: None,
        bounds: first.bounds,
        schedules: Vec::new(),
        emergency: first.emergency,
        above_max: nodes > first.bounds.max,
        frozen_until: first.frozen_until,
        reasons: first.reasons.clone(),
    }
}

async fn act(
    pool: &mut PoolRuntime,
    seen: &Seen,
    planned: PoolPlan,
    claim: &tokio::sync::watch::Receiver<Claim>,
    mode: Mode,
    now: DateTime<Utc>,
    interval: std::time::Duration,
) -> PassOutcome {
    let current = seen.description.desired;
    let mut outcome = PassOutcome {
        at: now,
        current,
        desired: planned.desired,
        on_demand: planned.on_demand,
        spot: planned.spot,
        hourly_cost: planned.hourly_cost,
        bounds: planned.bounds,
        schedules: planned.schedules.iter().map(|w| w.name.clone()).collect(),
        emergency: planned.emergency,
        frozen_until: planned.frozen_until,
        spot_fallback_until: pool.state.spot.fallback.as_ref().map(|f| f.until),
        action: Action::None,
        detail: None,
        error_kind: None,
        samples: seen.samples.clone(),
        forecasts: seen.outlook.forecasts.clone(),
        mase: seen.outlook.mase.clone(),
        predictive_active: seen.outlook.active,
        reasons: planned.reasons,
        group: pool.config.group.clone(),
    };
    if mode == Mode::PlanOnly {
        outcome.action = Action::Plan;
        return outcome;
    }
    if let Some(nodes) = planned.recommendation {
        pool.history.record_recommendation(nodes, now);
    }
    let target = CapacityTarget {
        capacity: planned.desired,
        on_demand: planned.on_demand,
        emergency: planned.above_max,
    };
    let split_changed = pool
        .last_target
        .is_some_and(|t| t.capacity == current && t.on_demand != target.on_demand);
    if planned.desired == current && !split_changed {
        pool.succeeded();
        pool.last = Some(outcome.clone());
        return outcome;
    }
    // Checked right before the cloud call: only the leader acts, and only while its
    // lease is confirmed beyond the safety margin.
    let may_act = claim.borrow().may_act(tokio::time::Instant::now());
    if let Err(why) = may_act {
        outcome.action = Action::Skipped;
        outcome.detail = Some(why);
        pool.last = Some(outcome.clone());
        return outcome;
    }
    match pool.provider.apply(&target).await {
        Ok(()) => {
            pool.history.record_scale(current, planned.desired, now);
            pool.last_target = Some(target);
            pool.succeeded();
            outcome.action = Action::Scaled;
            let direction = match planned.desired.cmp(&current) {
                std::cmp::Ordering::Greater => Some(Direction::Up),
                std::cmp::Ordering::Less => Some(Direction::Down),
                std::cmp::Ordering::Equal => None,
            };
            if let Some(d) = direction {
                outcome
                    .reasons
                    .extend(pool.state.flap.record(&pool.config.flap, d, now));
                outcome.frozen_until = pool.state.flap.frozen(now);
            }
        }
        Err(e) => {
            if let ProviderError::InsufficientCapacity { message } = &e {
                let running = running_spot(&seen.description);
                let missing = target.spot().saturating_sub(running);
                if let Some(r) = pool.state.spot.refused(
                    pool.config.spot.as_ref(),
                    missing,
                    running,
                    message,
                    now,
                ) {
                    outcome.reasons.push(r);
                    outcome.spot_fallback_until =
                        pool.state.spot.fallback.as_ref().map(|f| f.until);
                }
            }
            provider_failure(pool, &e, now, interval);
            outcome.action = Action::Failed;
            outcome.detail = Some(e.to_string());
            outcome.error_kind = Some(e.kind());
        }
    }
    pool.last = Some(outcome.clone());
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_providers::fake::FakeProvider;
    use chrono::TimeZone;

    fn config() -> ValidatedConfig {
        let text = r#"
            [[pool]]
            name = "web"
            provider = { type = "dry-run", initial = 2 }
            min = 1
            max = 10
            targets = [{ metric = "cpu.utilization", value = 50 }]
        "#;
        capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap()
    }

    fn report(cpu: f64, at: DateTime<Utc>) -> NodeReport {
        crate::testutil::cpu_report("host", "web", cpu, at)
    }

    fn fake(desired: u32) -> Arc<FakeProvider> {
        Arc::new(FakeProvider::new(PoolDescription {
            min: 1,
            max: 10,
            desired,
            instances: vec![],
        }))
    }

    fn leader() -> tokio::sync::watch::Receiver<Claim> {
        tokio::sync::watch::channel(Claim {
            is_leader: true,
            ..Claim::default()
        })
        .1
    }

    const SECOND: std::time::Duration = std::time::Duration::from_secs(1);

    fn no_budget() -> Budget {
        Budget {
            max_hourly_cost: None,
            emergency_allowance: 0.0,
            enforce: capstan_config::BudgetEnforcement::Report,
        }
    }

    /// One pass over a fleet of one pool.
    async fn pass1(
        pool: &mut PoolRuntime,
        reports: &[&NodeReport],
        claim: &tokio::sync::watch::Receiver<Claim>,
        mode: Mode,
        now: DateTime<Utc>,
        interval: std::time::Duration,
    ) -> Result<PassOutcome, PassError> {
        let budget = no_budget();
        let mut out = fleet_pass(
            std::slice::from_mut(pool),
            &mut [],
            reports,
            claim,
            mode,
            now,
            interval,
            &budget,
        )
        .await;
        out.pools.remove(0)
    }

    #[test]
    fn actions_are_written_as_the_journal_and_metrics_always_wrote_them() {
        for (a, s) in [
            (Action::None, "none"),
            (Action::Plan, "plan"),
            (Action::Skipped, "skipped"),
            (Action::Scaled, "scaled"),
            (Action::Failed, "failed"),
        ] {
            assert_eq!(a.as_str(), s);
            assert_eq!(a.to_string(), s);
            assert_eq!(serde_json::to_string(&a).unwrap(), format!("\"{s}\""));
        }
    }

    #[tokio::test]
    async fn applies_absolute_targets_only_when_they_differ() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let f = fake(2);
        let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
        let r = report(100.0, now);
        let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
            .await
            .unwrap();
        assert_eq!(
            (out.current, out.desired, out.action),
            (2, 4, Action::Scaled)
        );
        assert_eq!(f.apply_calls(), vec![CapacityTarget::on_demand(4)]);
        let r = report(50.0, now);
        let out = pass1(
            &mut pool,
            &[&r],
            &leader(),
            Mode::Act,
            now + chrono::Duration::seconds(1),
            SECOND,
        )
        .await
        .unwrap();
        assert_eq!((out.desired, out.action), (4, Action::None));
        assert_eq!(f.apply_calls().len(), 1, "no call when nothing changes");
    }

    #[tokio::test]
    async fn a_fresh_agent_waits_out_the_scale_down_window_before_shrinking() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let f = fake(4);
        let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone()); // balanced: 300 s
        let idle = report(5.0, now);
        let out = pass1(&mut pool, &[&idle], &leader(), Mode::Act, now, SECOND)
            .await
            .unwrap();
        assert_eq!((out.desired, out.action), (4, Action::None));
        let later = now + chrono::Duration::seconds(301);
        let idle = report(5.0, later);
        let out = pass1(&mut pool, &[&idle], &leader(), Mode::Act, later, SECOND)
            .await
            .unwrap();
        assert_eq!((out.desired, out.action), (1, Action::Scaled));
    }

    #[tokio::test]
    async fn plan_only_and_followers_never_call_the_provider() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let f = fake(2);
        let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
        let r = report(100.0, now);
        let out = pass1(&mut pool, &[&r], &leader(), Mode::PlanOnly, now, SECOND)
            .await
            .unwrap();
        assert_eq!((out.desired, out.action), (4, Action::Plan));
        let follower = tokio::sync::watch::channel(Claim {
            is_leader: false,
            leader_id: Some("other".into()),
            ..Claim::default()
        })
        .1;
        let out = pass1(&mut pool, &[&r], &follower, Mode::Act, now, SECOND)
            .await
            .unwrap();
        assert_eq!(out.action, Action::Skipped);
        assert_eq!(out.detail.as_deref(), Some("not the leader (other leads)"));
        // A leader whose lease is not confirmed beyond the margin does not act either.
        let lapsed = tokio::sync::watch::channel(Claim {
            is_leader: true,
            valid_until: Some(tokio::time::Instant::now()),
            ..Claim::default()
        })
        .1;
        let out = pass1(&mut pool, &[&r], &lapsed, Mode::Act, now, SECOND)
            .await
            .unwrap();
        assert_eq!(out.action, Action::Skipped);
        assert!(out.detail.unwrap().contains("safety margin"));
        assert!(f.apply_calls().is_empty());
    }

    #[tokio::test]
    async fn failures_back_off_and_never_grow_the_target() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let f = fake(2);
        let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
        let r = report(100.0, now);
        f.fail_next_apply(ProviderError::Throttled {
            message: "Rate exceeded".into(),
            retry_after: None,
        });
        let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
            .await
            .unwrap();
        assert_eq!(
            (out.action, out.error_kind),
            (Action::Failed, Some("throttled"))
        );
        // Within the backoff the pool is left alone.
        assert!(
            pass1(
                &mut pool,
                &[&r],
                &leader(),
                Mode::Act,
                now + chrono::Duration::seconds(1),
                SECOND
            )
            .await
            .is_err()
        );
        assert_eq!(f.apply_calls().len(), 1);
        // After it, the same absolute target is tried again, not a bigger one.
        let later = now + chrono::Duration::seconds(3);
        let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, later, SECOND)
            .await
            .unwrap();
        assert_eq!(out.action, Action::Scaled);
        assert_eq!(
            f.apply_calls(),
            vec![CapacityTarget::on_demand(4), CapacityTarget::on_demand(4)]
        );
    }

    fn pool_from(text: &str) -> Pool {
        capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty())
            .unwrap()
            .pools
            .remove(0)
    }

    #[tokio::test]
    async fn refused_spot_is_replanned_as_on_demand_and_retried_later() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let f = fake(2);
        let config = pool_from(
            r#"
            [[pool]]
            name = "web"
            provider = { type = "dry-run", initial = 2 }
            min = 1
            max = 10
            behavior = "aggressive"
            spot = { on_demand_base = 1, on_demand_percent_above_base = 0, retry_after = "15m" }
            targets = [{ metric = "cpu.utilization", value = 50 }]
            "#,
        );
        let mut pool = PoolRuntime::new(config, f.clone());
        let r = report(100.0, now);
        f.fail_next_apply(ProviderError::InsufficientCapacity {
            message: "no spot capacity in us-east-1a".into(),
        });
        let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
            .await
            .unwrap();
        assert_eq!(out.action, Action::Failed);
        assert_eq!(
            out.reasons.last().unwrap().to_string(),
            "spot refused: no spot capacity in us-east-1a: 3 nodes to on-demand for 15 min"
        );
        assert!(out.spot_fallback_until.is_some());
        // After the backoff: the same 4 nodes, the missing spot ones as on-demand.
        let later = now + chrono::Duration::seconds(3);
        let r = report(100.0, later);
        let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, later, SECOND)
            .await
            .unwrap();
        assert_eq!(out.action, Action::Scaled);
        assert_eq!(
            f.apply_calls(),
            vec![
                CapacityTarget {
                    capacity: 4,
                    on_demand: 1,
                    emergency: false
                },
                CapacityTarget {
                    capacity: 4,
                    on_demand: 4,
                    emergency: false
                },
            ]
        );
        // After retry_after the normal split comes back, with no change of size.
        let retry = now + chrono::Duration::minutes(16);
        let r = report(50.0, retry);
        let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, retry, SECOND)
            .await
            .unwrap();
        assert_eq!(
            (out.desired, out.on_demand, out.action),
            (4, 1, Action::Scaled)
        );
        assert!(out.spot_fallback_until.is_none());
    }

    #[tokio::test]
    async fn a_pool_that_keeps_reversing_is_frozen() {
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let f = fake(4);
        let config = pool_from(
            r#"
            [[pool]]
            name = "web"
            provider = { type = "dry-run", initial = 4 }
            min = 1
            max = 10
            behavior = { preset = "aggressive", scale_down = { stabilization_window = "0s" } }
            flap = { max_reversals = 2, window = "10m", cool_off = "30m" }
            targets = [{ metric = "cpu.utilization", value = 50 }]
            "#,
        );
        let mut pool = PoolRuntime::new(config, f.clone());
        let mut actions = Vec::new();
        let mut frozen = None;
        for k in 0..6 {
            // Alternating surges and lulls, one a minute.
            let now = t0 + chrono::Duration::minutes(k);
            let cpu = if k % 2 == 0 { 100.0 } else { 10.0 };
            let r = report(cpu, now);
            let out = pass1(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
                .await
                .unwrap();
            actions.push(out.action.as_str());
            if out.frozen_until.is_some() && frozen.is_none() {
                frozen = Some(k);
                assert!(
                    out.reasons.iter().any(|r| r
                        .to_string()
                        .starts_with("flapping: 3 reversals within 600s")),
                    "{:?}",
                    out.reasons
                );
            }
        }
        assert_eq!(
            frozen,
            Some(3),
            "up, down, up, down: the third reversal freezes it"
        );
        assert_eq!(
            actions,
            ["scaled", "scaled", "scaled", "scaled", "none", "none"]
        );
        assert_eq!(f.apply_calls().len(), 4);
    }

    #[tokio::test]
    async fn a_pool_that_cannot_be_described_still_counts_against_the_budget() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let text = r#"
            [budget]
            max_hourly_cost = 10.0

            [[pool]]
            name = "web"
            provider = { type = "dry-run", initial = 2 }
            min = 1
            max = 10
            behavior = "aggressive"
            price = { on_demand = 1.0 }
            targets = [{ metric = "cpu.utilization", value = 50 }]

            [[pool]]
            name = "flaky"
            provider = { type = "dry-run", initial = 2 }
            min = 1
            max = 6
            price = { on_demand = 1.0 }
            targets = [{ metric = "cpu.utilization", value = 50 }]
        "#;
        let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
        let web = fake(2);
        let flaky = fake(3);
        let mut pools = vec![
            PoolRuntime::new(cfg.pools[0].clone(), web.clone()),
            PoolRuntime::new(cfg.pools[1].clone(), flaky.clone()),
        ];
        async fn run(
            pools: &mut [PoolRuntime],
            budget: &Budget,
            now: DateTime<Utc>,
        ) -> FleetOutcome {
            let r = crate::testutil::cpu_report("host", "web", 100.0, now);
            fleet_pass(
                pools,
                &mut [],
                &[&r],
                &leader(),
                Mode::Act,
                now,
                SECOND,
                budget,
            )
            .await
        }
        // Never seen: flaky counts at its max (6/h), so web may grow by 2 only.
        flaky.fail_next_describe(ProviderError::Transient {
            message: "timeout".into(),
        });
        let out = run(&mut pools, &cfg.budget, now).await;
        assert!(out.pools[1].is_err());
        assert_eq!(out.pools[0].as_ref().unwrap().desired, 4);
        assert!((out.fleet_hourly_cost - 10.0).abs() < 1e-9);
        // Seen at 3, then failing again: it counts at 3.
        let later = now + chrono::Duration::seconds(10);
        let out = run(&mut pools, &cfg.budget, later).await;
        assert!(out.pools[1].is_ok());
        flaky.fail_next_describe(ProviderError::Transient {
            message: "timeout".into(),
        });
        let much_later = now + chrono::Duration::seconds(20);
        let out = run(&mut pools, &cfg.budget, much_later).await;
        assert!(out.pools[1].is_err());
        assert!(
            (out.fleet_hourly_cost - 10.0).abs() < 1e-9,
            "{}",
            out.fleet_hourly_cost
        );
        assert_eq!(out.pools[0].as_ref().unwrap().desired, 7);
    }

    #[tokio::test]
    async fn demand_history_is_written_and_warms_a_restarted_pool() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn HistoryStore> =
            Arc::new(crate::history::FileHistory::open(dir.path()).unwrap());
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        // Three days of a daily wave, a pass a minute, through the engine.
        let mut pool = PoolRuntime::new(config().pools.remove(0), fake(4));
        attach_history(std::slice::from_mut(&mut pool), &store, t0);
        for m in 0..3 * 1440 {
            let now = t0 + chrono::Duration::minutes(m);
            let day = (m % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
            let r = report(50.0 + 30.0 * day.sin(), now);
            pass1(&mut pool, &[&r], &leader(), Mode::PlanOnly, now, SECOND)
                .await
                .unwrap();
        }
        let written = store.load("web", 0).unwrap();
        assert_eq!(written.len(), 3 * 1440 - 1, "one point per closed minute");
        let warm = pool.predictor.latest_forecast(0);
        assert!(warm.is_some());

        // A new agent: fresh state, the same history.
        let mut again = PoolRuntime::new(config().pools.remove(0), fake(4));
        let later = t0 + chrono::Duration::minutes(3 * 1440);
        attach_history(std::slice::from_mut(&mut again), &store, later);
        assert_eq!(
            again.predictor.latest_forecast(0),
            warm,
            "replayed to the same forecast"
        );
    }

    #[tokio::test]
    async fn usage_is_written_once_a_minute_as_the_means_of_its_passes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn HistoryStore> =
            Arc::new(crate::history::FileHistory::open(dir.path()).unwrap());
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let mut pool = PoolRuntime::new(config().pools.remove(0), fake(4));
        attach_usage(std::slice::from_mut(&mut pool), &store, t0);
        // Passes every 20 s for two minutes, CPU 10, 20, 30 then 40, 50, 60; a pass
        // in the third minute closes the second.
        for (k, cpu) in [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]
            .into_iter()
            .enumerate()
        {
            let now = t0 + chrono::Duration::seconds(20 * k as i64);
            let r = report(cpu, now);
            pass1(&mut pool, &[&r], &leader(), Mode::PlanOnly, now, SECOND)
                .await
                .unwrap();
        }
        let written = store.load("web", 0).unwrap();
        let minute = t0.timestamp() / 60;
        assert_eq!(
            written,
            vec![
                (minute, vec![Some(4.0), Some(20.0), Some(0.0), None, None]),
                (
                    minute + 1,
                    vec![Some(4.0), Some(50.0), Some(0.0), None, None]
                ),
            ]
        );
        // What rightsizing reads back, without compacting.
        assert_eq!(
            crate::history::read_only(dir.path(), "web").unwrap(),
            written
        );
    }

    #[test]
    fn reload_keeps_state_of_unchanged_pools() {
        let cfg = config();
        let mut pools = build_pools(&cfg, &mut HashMap::new()).unwrap();
        pools[0]
            .history
            .record_scale(1, 2, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let mut old: HashMap<_, _> = pools
            .into_iter()
            .map(|p| (p.config.name.clone(), p))
            .collect();
        let again = build_pools(&cfg, &mut old).unwrap();
        assert_eq!(again[0].history.scale_up_events.len(), 1);
    }

    #[cfg(all(feature = "azure", feature = "gke"))]
    #[test]
    fn azure_and_gke_pools_are_built_when_their_features_are_on() {
        let text = r#"
            [[pool]]
            name = "gpu"
            provider = { type = "azure", subscription_id = "s", resource_group = "rg", scale_set = "ml" }
            min = 1
            max = 10
            targets = [{ metric = "cpu.utilization", value = 50 }]

            [[pool]]
            name = "web"
            provider = { type = "gke", project = "p", location = "l", cluster = "c", node_pool = "np" }
            min = 1
            max = 10
            targets = [{ metric = "cpu.utilization", value = 50 }]
        "#;
        let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
        let pools = build_pools(&cfg, &mut HashMap::new()).unwrap();
        let kinds: Vec<&str> = pools.iter().map(|p| p.provider.kind()).collect();
        assert_eq!(kinds, ["azure", "gke"]);
        assert!(BUILT_IN_PROVIDERS.contains(&"azure") && BUILT_IN_PROVIDERS.contains(&"gke"));
    }

    #[cfg(not(feature = "azure"))]
    #[test]
    fn clouds_not_in_this_build_are_a_clear_error() {
        let text = r#"
            [[pool]]
            name = "gpu"
            provider = { type = "azure", subscription_id = "s", resource_group = "rg", scale_set = "ml" }
            min = 1
            max = 10
            targets = [{ metric = "cpu.utilization", value = 50 }]
        "#;
        let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
        let mut old: HashMap<_, _> = build_pools(&config(), &mut HashMap::new())
            .unwrap()
            .into_iter()
            .map(|p| (p.config.name.clone(), p))
            .collect();
        let err = build_pools(&cfg, &mut old).unwrap_err();
        assert!(err.contains("\"azure\" is not available"), "{err}");
        assert!(err.contains("built with: dry-run"), "{err}");
        assert!(
            old.contains_key("web"),
            "a failed build leaves the old pools in place"
        );
    }

    /// A group of two members on fakes: `web-aws` (cheaper, at most 6) and `web-azure`,
    /// which gives capacity back at one node a minute.
    fn group_fleet() -> (ValidatedConfig, Arc<FakeProvider>, Arc<FakeProvider>) {
        let text = r#"
            [[pool]]
            name = "web-aws"
            provider = { type = "dry-run" }
            min = 1
            max = 6
            price = { on_demand = 0.10 }

            [[pool]]
            name = "web-azure"
            provider = { type = "dry-run" }
            min = 1
            max = 10
            price = { on_demand = 0.12 }
            behavior = { scale_down = { stabilization_window = "0s", policies = [{ type = "nodes", value = 1, period = "60s" }] } }

            [[group]]
            name = "web"
            strategy = "cheapest"
            members = ["web-aws", "web-azure"]
            behavior = "aggressive"
            targets = [{ metric = "cpu.utilization", value = 50 }]
        "#;
        let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
        (cfg, fake(2), fake(2))
    }

    async fn group_pass(
        pools: &mut [PoolRuntime],
        groups: &mut [GroupRuntime],
        cpu: f64,
        now: DateTime<Utc>,
    ) -> FleetOutcome {
        let a = crate::testutil::cpu_report("a", "web-aws", cpu, now);
        let b = crate::testutil::cpu_report("b", "web-azure", cpu, now);
        fleet_pass(
            pools,
            groups,
            &[&a, &b],
            &leader(),
            Mode::Act,
            now,
            SECOND,
            &no_budget(),
        )
        .await
    }

    #[tokio::test]
    async fn a_refused_member_spills_over_in_the_same_pass_and_gets_it_back_at_the_scale_down_rate()
    {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let (cfg, aws, azure) = group_fleet();
        let mut pools = vec![
            PoolRuntime::new(cfg.pools[0].clone(), aws.clone()),
            PoolRuntime::new(cfg.pools[1].clone(), azure.clone()),
        ];
        let mut groups = build_groups(&cfg, &mut HashMap::new());
        aws.fail_next_apply(ProviderError::InsufficientCapacity {
            message: "InsufficientInstanceCapacity in us-east-1a".into(),
        });
        // 4 nodes at twice the target: the group wants 8; the cheaper member is
        // given all it may hold (6), and refuses the 4 new ones.
        let out = group_pass(&mut pools, &mut groups, 100.0, now).await;
        let g = &out.groups[0];
        assert_eq!((g.current, g.desired, g.granted), (4, 8, 8), "{g:?}");
        assert_eq!(aws.apply_calls(), vec![CapacityTarget::on_demand(6)]);
        assert_eq!(azure.apply_calls(), vec![CapacityTarget::on_demand(6)]);
        let (aws_out, azure_out) = match &out.pools[..] {
            [Ok(a), Ok(b)] => (a, b),
            other => panic!("{other:?}"),
        };
        assert_eq!(aws_out.action, Action::Failed);
        assert!(
            aws_out
                .reasons
                .iter()
                .any(|r| matches!(r, Reason::GroupRefused { nodes: 4, .. })),
            "{:?}",
            aws_out.reasons
        );
        assert_eq!((azure_out.current, azure_out.desired), (2, 6));
        assert!(
            azure_out
                .reasons
                .iter()
                .any(|r| r.to_string() == "group web: 4 node(s) spilled over from web-aws, whose cloud could not take them"),
            "{:?}",
            azure_out.reasons
        );
        assert_eq!(g.members[0].refused, 4);
        assert_eq!(g.members[1].spilled_in, 4);

        // The cloud has capacity again: each minute one node leaves web-azure (its
        // scale-down rate) and web-aws takes it, the group staying at 8.
        let mut sizes = Vec::new();
        for minute in 1..=6 {
            let at = now + chrono::Duration::seconds(61 * minute);
            let out = group_pass(&mut pools, &mut groups, 50.0, at).await;
            let g = &out.groups[0];
            assert_eq!(g.granted, 8, "{g:?}");
            sizes.push((
                aws.describe().await.unwrap().desired,
                azure.describe().await.unwrap().desired,
            ));
        }
        assert_eq!(sizes, vec![(3, 5), (4, 4), (5, 3), (6, 2), (6, 2), (6, 2)]);
    }

    #[tokio::test]
    async fn members_outside_the_group_are_acted_on_as_before_and_group_lines_explain_the_split() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let (cfg, aws, azure) = group_fleet();
        let mut pools = vec![
            PoolRuntime::new(cfg.pools[0].clone(), aws.clone()),
            PoolRuntime::new(cfg.pools[1].clone(), azure.clone()),
        ];
        let mut groups = build_groups(&cfg, &mut HashMap::new());
        let out = group_pass(&mut pools, &mut groups, 100.0, now).await;
        let g = &out.groups[0];
        assert_eq!(aws.apply_calls(), vec![CapacityTarget::on_demand(6)]);
        assert!(azure.apply_calls().is_empty());
        assert_eq!(g.members[0].limit, Some(Limit::Max));
        let Ok(o) = &out.pools[0] else { panic!() };
        assert_eq!(o.group.as_deref(), Some("web"));
        assert_eq!(
            o.reasons[0].to_string(),
            "group web (cheapest): 6 of its 8 node(s) here, 0.1000/node-h, held by max"
        );
    }
}
