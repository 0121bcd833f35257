//! Node-pool providers for Capstan.
//!
//! A [`NodePoolProvider`] is two calls: [`describe`](NodePoolProvider::describe) a pool
//! and [`apply`](NodePoolProvider::apply) an absolute [`CapacityTarget`]. The agent
//! applies in two steps instead, so that no pass waits on a cloud operation:
//! [`submit`](NodePoolProvider::submit) sends the mutating requests, each checked
//! against a [`Fence`] right before it goes out, and returns once the cloud has
//! accepted them: [`Applied::Done`] where the call completes when it returns (AWS), or
//! [`Applied::Running`] with an [`OperationHandle`] that later passes
//! [`poll`](NodePoolProvider::poll) (an Azure scale-set update, a GKE resize). A pool
//! is shrunk by name with [`remove`](NodePoolProvider::remove) (and its fenced
//! [`submit_remove`](NodePoolProvider::submit_remove)): exactly the instances the agent
//! chose and drained go, and the desired capacity drops by as many. Errors are a
//! typed [`ProviderError`] whose variants the agent branches on. Each cloud lives
//! behind its own cargo feature; [`dry_run::DryRunProvider`] records what it is told
//! and acts on nothing, and [`fake::FakeProvider`] is the recording fake for tests.
//!
//! **Invariant:** actuation is declarative. A provider is only ever told an absolute
//! capacity and on-demand/spot split, never a delta, so a repeated call is harmless;
//! a removal names instances, and an instance already gone counts as removed.
//! **Invariant:** providers never read telemetry.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "azure")]
pub mod azure;
pub mod dry_run;
pub mod fake;
#[cfg(feature = "gke")]
pub mod gke;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Lifecycle of one instance in a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    /// Being created or booting.
    Pending,
    /// Running and counted as capacity.
    InService,
    /// Being drained or deleted.
    Terminating,
    /// Held out of service by an operator.
    Standby,
}

/// Health as the cloud sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Healthy.
    Healthy,
    /// Failing health checks; will be replaced.
    Unhealthy,
    /// Not reported.
    Unknown,
}

/// How an instance is bought.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Market {
    /// On-demand (regular priority).
    OnDemand,
    /// Spot (preemptible).
    Spot,
}

/// One instance of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Cloud instance id; agents on the node report under the same id.
    pub id: String,
    /// Lifecycle state.
    pub lifecycle: Lifecycle,
    /// Health.
    pub health: Health,
    /// Instance type, e.g. `g5.xlarge`.
    pub instance_type: Option<String>,
    /// Availability zone.
    pub zone: Option<String>,
    /// On-demand or spot.
    pub market: Market,
}

/// What the cloud says about a pool now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolDescription {
    /// The group's own minimum.
    pub min: u32,
    /// The group's own maximum.
    pub max: u32,
    /// The capacity the group is asked to hold.
    pub desired: u32,
    /// Instances, in any state.
    pub instances: Vec<Instance>,
    /// The sizes it can hold and whether it takes a split.
    #[serde(default)]
    pub steps: Steps,
}

/// What a pool can be asked to hold: the planner plans within it, so what is applied is
/// what was planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Steps {
    /// It holds multiples of this many nodes (a GKE node pool in 3 zones: 3, as each
    /// zone gets the same size).
    pub step: u32,
    /// A pool whose on-demand and spot parts are sized apart (a GKE pool over an
    /// on-demand node pool and a spot one, each across zones): each part's step,
    /// `(on_demand, spot)`. `step` is then 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<(u32, u32)>,
    /// Why it cannot hold an on-demand/spot split, when it cannot (a Uniform scale set
    /// has one priority for all its VMs): it is then planned and billed all on-demand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_split: Option<String>,
}

impl Default for Steps {
    fn default() -> Self {
        Self {
            step: 1,
            parts: None,
            no_split: None,
        }
    }
}

impl PoolDescription {
    /// Instances in service.
    pub fn in_service(&self) -> impl Iterator<Item = &Instance> {
        self.instances
            .iter()
            .filter(|i| i.lifecycle == Lifecycle::InService)
    }
}

/// An absolute capacity and its on-demand/spot split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacityTarget {
    /// Total nodes.
    pub capacity: u32,
    /// Of which on-demand; the rest are spot.
    pub on_demand: u32,
    /// The capacity is above the pool's configured `max` (an emergency, a schedule
    /// that raised max, or the drain after one), so the provider may raise the group's
    /// own maximum to reach it.
    pub emergency: bool,
}

impl CapacityTarget {
    /// `capacity` nodes, all on-demand, no emergency.
    pub const fn on_demand(capacity: u32) -> Self {
        Self {
            capacity,
            on_demand: capacity,
            emergency: false,
        }
    }

    /// Spot nodes.
    pub const fn spot(&self) -> u32 {
        self.capacity.saturating_sub(self.on_demand)
    }
}

/// Errors the agent acts on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The cloud asked us to slow down.
    #[error("throttled: {message}")]
    Throttled {
        /// The cloud's message.
        message: String,
        /// The cloud's hint, when given.
        retry_after: Option<Duration>,
    },
    /// No capacity of the requested kind (typically spot) right now.
    #[error("insufficient capacity: {message}")]
    InsufficientCapacity {
        /// The cloud's message.
        message: String,
    },
    /// The pool does not exist.
    #[error("not found: {resource}")]
    NotFound {
        /// What was looked up.
        resource: String,
    },
    /// Credentials missing, expired or not allowed; retrying will not help.
    #[error("not authorized: {message}")]
    Auth {
        /// The cloud's message.
        message: String,
    },
    /// The request was refused as invalid; retrying will not help.
    #[error("invalid request: {message}")]
    Validation {
        /// The cloud's message.
        message: String,
    },
    /// A network error or server error that may pass.
    #[error("transient failure: {message}")]
    Transient {
        /// What happened.
        message: String,
    },
    /// The provider cannot be used as configured (e.g. the cloud's own autoscaler is on).
    #[error("unsupported: {message}")]
    Unsupported {
        /// Why.
        message: String,
    },
    /// The leader's fence stopped a mutating call: the [`Fence`] refused a request
    /// before it went out (this agent may no longer act: its lease lapsed, or another
    /// agent leads), or the call was cut off because the lease ran out before the cloud
    /// answered (what had gone out may have been carried out).
    #[error("{message}")]
    Fenced {
        /// What the fence stopped, and why.
        message: String,
    },
}

impl ProviderError {
    /// Whether trying again later can succeed.
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Throttled { .. } | Self::Transient { .. } | Self::InsufficientCapacity { .. }
        )
    }

    /// Every value [`ProviderError::kind`] can return.
    pub const KINDS: [&'static str; 8] = [
        "throttled",
        "insufficient_capacity",
        "not_found",
        "auth",
        "validation",
        "transient",
        "unsupported",
        "fenced",
    ];

    /// A short label for metrics and reasons.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Throttled { .. } => "throttled",
            Self::InsufficientCapacity { .. } => "insufficient_capacity",
            Self::NotFound { .. } => "not_found",
            Self::Auth { .. } => "auth",
            Self::Validation { .. } => "validation",
            Self::Transient { .. } => "transient",
            Self::Unsupported { .. } => "unsupported",
            Self::Fenced { .. } => "fenced",
        }
    }
}

/// Whether a mutating request may go out now. The agent's fence is the leader's claim:
/// a provider checks it right before each mutating request it sends, so a leader whose
/// lease lapsed in the middle of an apply sends nothing more.
pub trait Fence: Send + Sync {
    /// `Ok` when a mutating request may be sent now; otherwise why not.
    fn check(&self) -> Result<(), String>;

    /// [`Fence::check`] as the error a provider returns.
    fn admit(&self) -> Result<(), ProviderError> {
        self.check().map_err(|why| ProviderError::Fenced {
            message: format!("not sent: {why}"),
        })
    }
}

/// No fence: every request may go (the tools, and tests of a provider alone).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unfenced;

impl Fence for Unfenced {
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A cloud operation that goes on after the call that started it returned: enough to
/// poll it again, from this process or, after a failover, from the next leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationHandle {
    /// The cloud's name for it: an Azure operation-status URL, a GKE operation's name.
    pub id: String,
    /// How the provider polls it, when it has more than one way (Azure:
    /// `azure-asyncoperation` or `location`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub via: String,
}

/// Where an apply stands once [`NodePoolProvider::submit`] or
/// [`NodePoolProvider::poll`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The cloud holds the target (it was accepted, and there is nothing to follow).
    Done,
    /// The cloud accepted it and is still carrying it out; poll the handle.
    Running(OperationHandle),
}

/// A node pool in some cloud.
#[async_trait]
pub trait NodePoolProvider: Send + Sync + std::fmt::Debug {
    /// The provider's type as written in config, e.g. `aws`.
    fn kind(&self) -> &'static str;

    /// Reads the pool's bounds, desired capacity and instances.
    async fn describe(&self) -> Result<PoolDescription, ProviderError>;

    /// Sets the pool's absolute capacity and on-demand/spot split, and follows any
    /// operation the cloud starts until it ends (the tools and provider tests use it;
    /// the agent's pass uses [`NodePoolProvider::submit`]).
    async fn apply(&self, target: &CapacityTarget) -> Result<(), ProviderError>;

    /// Sends what `apply` sends, checking `fence` right before each mutating request,
    /// and returns once the cloud has accepted it: [`Applied::Running`] when the cloud
    /// goes on with an operation to [`poll`](NodePoolProvider::poll). The default is
    /// `apply` behind one check, for providers whose apply is a single request.
    async fn submit(
        &self,
        target: &CapacityTarget,
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        fence.admit()?;
        self.apply(target).await.map(|()| Applied::Done)
    }

    /// Says whether the agent chooses which instances leave this pool (targeted
    /// scale-in: its nodes report under their instance ids). A cloud that would
    /// otherwise choose on a lower desired capacity is kept from it (AWS protects the
    /// in-service instances from scale-in). The default ignores it.
    fn set_targeted(&self, targeted: bool) {
        let _ = targeted;
    }

    /// Terminates exactly the instances `ids` and lowers the pool's desired capacity by
    /// as many, so the cloud replaces none of them and chooses no other: targeted
    /// scale-in, after the agent drained them. Idempotent: an id the pool no longer
    /// holds (already gone, or never its) counts as removed, so a retry or a new
    /// leader finishing the same removal asks for nothing twice. Follows any operation
    /// the cloud starts until it ends (the tools and provider tests; the agent's pass
    /// uses [`NodePoolProvider::submit_remove`]). The default refuses: a provider that
    /// cannot name what it removes is only ever told a capacity.
    async fn remove(&self, ids: &[String]) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported {
            message: format!(
                "the {} provider cannot remove named instances ({} asked)",
                self.kind(),
                ids.len()
            ),
        })
    }

    /// Sends what `remove` sends, checking `fence` right before each mutating request,
    /// and returns once the cloud has accepted it, as [`NodePoolProvider::submit`]
    /// does. The default is `remove` behind one check.
    async fn submit_remove(
        &self,
        ids: &[String],
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        fence.admit()?;
        self.remove(ids).await.map(|()| Applied::Done)
    }

    /// How the operation behind `op` is going: [`Applied::Done`] once it succeeded,
    /// [`Applied::Running`] while it goes on, the cloud's error when it failed. The
    /// default, for providers that never return a handle, says it is done.
    async fn poll(&self, op: &OperationHandle) -> Result<Applied, ProviderError> {
        let _ = op;
        Ok(Applied::Done)
    }

    /// The live spot price per node-hour, where the cloud publishes one (AWS); `None`
    /// where it does not, and the configured price applies.
    async fn spot_price(&self) -> Result<Option<f64>, ProviderError> {
        Ok(None)
    }

    /// What each instance type of the pool offers (vCPUs, memory, GPUs), where the
    /// cloud publishes a catalogue (AWS with the `aws-ec2` feature); empty where not.
    async fn instance_types(&self) -> Result<Vec<InstanceShape>, ProviderError> {
        Ok(Vec::new())
    }

    /// Every size of an instance family (e.g. `m5`), where the cloud publishes a
    /// catalogue (AWS with the `aws-ec2` feature); empty where not.
    async fn instance_family(&self, _family: &str) -> Result<Vec<InstanceShape>, ProviderError> {
        Ok(Vec::new())
    }
}

/// What one instance type offers, from the cloud's catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceShape {
    /// The type's name, e.g. `g5.xlarge`.
    pub name: String,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// GPUs (0 for none).
    pub gpus: u32,
    /// Memory of all its GPUs together, MiB.
    pub gpu_memory_mib: u64,
}

/// An error and its sources, each said once, on one line.
#[cfg(any(feature = "aws", feature = "azure", feature = "gke"))]
pub(crate) fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_lists_every_kind() {
        let m = || "m".to_owned();
        let all = [
            ProviderError::Throttled {
                message: m(),
                retry_after: None,
            },
            ProviderError::InsufficientCapacity { message: m() },
            ProviderError::NotFound { resource: m() },
            ProviderError::Auth { message: m() },
            ProviderError::Validation { message: m() },
            ProviderError::Transient { message: m() },
            ProviderError::Unsupported { message: m() },
            ProviderError::Fenced { message: m() },
        ];
        let kinds: Vec<&str> = all.iter().map(ProviderError::kind).collect();
        assert_eq!(kinds, ProviderError::KINDS);
    }
}
