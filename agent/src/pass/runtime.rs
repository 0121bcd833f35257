//! What the loop keeps per pool and per group between passes, and building each pool's
//! provider from its config.

use super::*;
use crate::state::memory::Memory;

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
/// resize) is followed before it is given up on; the next pass sees its outcome.
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
    /// What the next leader needs to carry on: the planner's history, the emergency,
    /// flap and spot state, the circuit's failures and back-off, the last target
    /// applied. Saved after every pass while leading ([`save_changed`]).
    pub memory: Memory,
    /// Demand forecasts and anomaly detection.
    pub predictor: Predictor,
    /// Demand (each target's readings summed over the pool) of the minute being
    /// accumulated.
    pub minute: MinuteMeans,
    /// Where demand history is kept (the daemon's; `capstan plan` keeps none).
    pub demand_store: Option<Arc<dyn HistoryStore>>,
    /// Usage (each field of [`aggregate::usage`]) of the minute being accumulated.
    pub usage: MinuteMeans,
    /// Where usage history is kept, for `capstan rightsizing` (the daemon's).
    pub usage_store: Option<Arc<dyn HistoryStore>>,
    /// The last pass's outcome.
    pub last: Option<PassOutcome>,
    /// Why the last pass made no decision, if it made none.
    pub last_error: Option<String>,
    /// The last failed provider call, for as long as the failures last.
    pub last_failure: Option<String>,
    /// What the pool's instance types offer, where the cloud has a catalogue.
    pub instance_types: Vec<capstan_providers::InstanceShape>,
    /// The provider call running beside the pass for the operation in
    /// `memory.operation` (its submission, or a poll), if one is running here.
    pub call: Option<operation::Call>,
    /// The pool's instance ids at its last describe, once its reports match them
    /// ([`aggregate::members`]): ingest refuses reports from other ids in the pool.
    pub members: Option<Arc<std::collections::HashSet<String>>>,
    /// A cloud pool whose nodes report, but under ids that match none of its
    /// instances: the cloud chooses which nodes leave, and none is drained.
    pub unmatched: bool,
    /// `predictive.mode = "auto"`: the backtest running, and when the next is due.
    pub auto: auto::AutoCheck,
}

impl PoolRuntime {
    /// Forgets what the forecasts learned, and the history store, so that attaching
    /// it again (`attach_history`) replays the history into a fresh predictor: after
    /// its settings or targets changed, or when another leader's history is to be
    /// learned.
    pub fn restart_forecasts(&mut self) {
        self.predictor = Predictor::new(&self.config.predictive, self.policy.targets.len());
        self.minute = MinuteMeans::default();
        self.demand_store = None;
        // The fresh predictor has no verdict: backtest at the next pass.
        self.auto = auto::AutoCheck::default();
    }

    /// A pool with fresh state.
    pub fn new(config: Pool, provider: Arc<dyn NodePoolProvider>) -> Self {
        Self {
            policy: Policy::from(&config),
            predictor: Predictor::new(&config.predictive, config.targets.len()),
            minute: MinuteMeans::default(),
            demand_store: None,
            usage: MinuteMeans::default(),
            usage_store: None,
            config,
            provider,
            memory: Memory::default(),
            last: None,
            last_error: None,
            last_failure: None,
            instance_types: Vec::new(),
            call: None,
            members: None,
            unmatched: false,
            auto: auto::AutoCheck::default(),
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
    metrics: Option<&crate::telemetry::metrics::Metrics>,
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
                Some(m) => crate::pass::instrumented::Instrumented::wrap(provider, m),
                None => provider,
            })
        });
    }
    let mut pools = Vec::with_capacity(cfg.pools.len());
    for (pool, provider) in cfg.pools.iter().zip(fresh) {
        match (provider, old.remove(&pool.name)) {
            (None, Some(mut kept)) => {
                kept.policy = Policy::from(pool);
                let forecasts_changed = kept.config.predictive != pool.predictive
                    || kept.config.targets != pool.targets;
                kept.config = pool.clone();
                if forecasts_changed {
                    // Forecasts of other targets or settings start over (and replay
                    // the history when the daemon attaches it).
                    kept.restart_forecasts();
                }
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
