//! What the agent shares between its loop and its HTTP endpoints: the metrics, the
//! `/v1/status` document, readiness and the loop's heartbeat.

use std::sync::atomic::AtomicBool;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::brain::Reason;
use crate::telemetry::metrics::Metrics;

/// The body of `/v1/status`. Field names are an interface.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Status {
    /// This agent's node id.
    pub node_id: String,
    /// `leader` or `follower`.
    pub role: String,
    /// The leader's node id, when known.
    pub leader_id: Option<String>,
    /// Capstan's version.
    #[serde(default)]
    pub version: String,
    /// The coordinator in use.
    #[serde(default)]
    pub coordinator: String,
    /// Cost per hour of the fleet as last planned.
    #[serde(default)]
    pub fleet_hourly_cost: f64,
    /// The fleet's budget ceiling per hour, if any.
    #[serde(default)]
    pub budget_ceiling: Option<f64>,
    /// The fleet costs more than its ceiling.
    #[serde(default)]
    pub over_budget: bool,
    /// Where the leader takes reports, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_url: Option<String>,
    /// What the coordinator last said about this agent's role, e.g. why it cannot act.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coordinator_note: Option<String>,
    /// Node reports this agent accepted as leader, since it started.
    #[serde(default)]
    pub reports_received: u64,
    /// Node reports this agent refused, by reason, since it started.
    #[serde(default)]
    pub reports_rejected: std::collections::BTreeMap<String, u64>,
    /// The pools.
    pub pools: Vec<PoolStatus>,
}

/// One pool in `/v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Pool name.
    pub name: String,
    /// Provider type.
    #[serde(default)]
    pub provider: String,
    /// Configured minimum.
    #[serde(default)]
    pub min: u32,
    /// Configured maximum.
    #[serde(default)]
    pub max: u32,
    /// Nodes the provider reported at the last pass.
    pub current: Option<u32>,
    /// Nodes decided at the last pass.
    pub desired: Option<u32>,
    /// Budget tier.
    #[serde(default)]
    pub tier: String,
    /// On-demand share of `desired`.
    #[serde(default)]
    pub on_demand: Option<u32>,
    /// Spot share of `desired`.
    #[serde(default)]
    pub spot: Option<u32>,
    /// Cost per hour of `desired`.
    #[serde(default)]
    pub hourly_cost: Option<f64>,
    /// Min and max this pass, after schedules.
    #[serde(default)]
    pub effective_min: Option<u32>,
    /// See `effective_min`.
    #[serde(default)]
    pub effective_max: Option<u32>,
    /// Schedule windows in force.
    #[serde(default)]
    pub schedules: Vec<String>,
    /// An emergency lets the pool exceed max.
    #[serde(default)]
    pub emergency: bool,
    /// Frozen after flapping.
    #[serde(default)]
    pub flapping: bool,
    /// End of the flap freeze.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_until: Option<DateTime<Utc>>,
    /// Spot is planned as on-demand until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spot_fallback_until: Option<DateTime<Utc>>,
    /// The last decision.
    pub last_decision: Option<LastDecision>,
    /// The last error, if the last pass failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The actuator's circuit breaker: `closed`, `open` or `half_open`.
    #[serde(default)]
    pub circuit: String,
    /// Failed provider calls in a row.
    #[serde(default)]
    pub consecutive_failures: u32,
    /// What the pool's instance types offer (vCPUs, memory, GPUs), where the cloud
    /// publishes a catalogue (AWS with `aws-ec2`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<capstan_providers::InstanceShape>,
    /// Nodes whose last report is fresh, and nodes silent for three intervals (leader).
    #[serde(default)]
    pub nodes: PoolNodes,
    /// The cloud operation in flight for the pool (no new target is sent until it
    /// ends), or `null`.
    #[serde(default)]
    pub operation: Option<OperationStatus>,
    /// Nodes chosen for scale-in and not yet gone (targeted scale-in).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<DrainingNode>,
    /// A cloud pool whose nodes report under ids that match none of its instances:
    /// the cloud chooses which nodes leave, none is drained.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reports_unmatched: bool,
}

/// A node chosen for scale-in, as `/v1/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainingNode {
    /// The node (instance id).
    pub node: String,
    /// `draining` (asked, not drained yet), `remove` (to be removed) or `keep`
    /// (returned to service, asked to undo its drain).
    pub phase: String,
    /// When it was chosen.
    pub chosen_at: DateTime<Utc>,
    /// When the leader stops waiting for its drain.
    pub deadline: DateTime<Utc>,
}

/// A cloud operation in flight, as `/v1/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationStatus {
    /// The cloud's handle (an Azure operation URL, a GKE operation name), or `call`
    /// while the submitting call has not returned.
    pub id: String,
    /// When it was submitted.
    pub started_at: DateTime<Utc>,
    /// The nodes it asks for.
    pub target: u32,
    /// Of which on-demand.
    #[serde(default)]
    pub on_demand: u32,
}

/// The last decision of a pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastDecision {
    /// When.
    pub at: DateTime<Utc>,
    /// `none`, `scaled`, `submitted`, `in_flight`, `skipped` or `failed`.
    #[serde(default)]
    pub action: String,
    /// Why.
    pub reasons: Vec<Reason>,
}

/// What the server shares with the loop.
#[derive(Debug)]
pub struct Shared {
    /// Metrics.
    pub metrics: Metrics,
    /// The status document.
    pub status: RwLock<Status>,
    /// Set after the first pass.
    pub ready: AtomicBool,
    /// When the loop last went round, and the most it may take.
    pub heartbeat: Mutex<(tokio::time::Instant, Duration)>,
}

impl Shared {
    /// Fresh shared state; the loop is considered alive for `grace`.
    pub fn new(grace: Duration) -> Self {
        Self {
            metrics: Metrics::new(),
            status: RwLock::new(Status::default()),
            ready: AtomicBool::new(false),
            heartbeat: Mutex::new((tokio::time::Instant::now(), grace)),
        }
    }

    /// Records that the loop went round; it must go round again within `grace`.
    pub fn beat(&self, grace: Duration) {
        *self
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            (tokio::time::Instant::now(), grace);
    }
}

/// A pool's nodes as the leader sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolNodes {
    /// Nodes whose last report is fresh.
    pub reporting: Vec<String>,
    /// Nodes silent for three intervals, not yet dropped.
    pub stale: Vec<String>,
}
