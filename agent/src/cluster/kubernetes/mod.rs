//! The `kubernetes` coordinator: a `coordination.k8s.io/v1` Lease, contended for with
//! the agent's in-cluster credentials, and the decision state kept on the same Lease.
//!
//! Every step (a third of the Lease's duration) reads the Lease; the holder's identity
//! names the leader, and the annotation [`URL_ANNOTATION`] says where it takes reports.
//! Four rules make the claim safe and continuous:
//!
//! - **A renewal extends the claim itself** (the rule ARCHITECTURE.md calls *claims
//!   never lapse while renewals succeed*). The holder renews with a write conditional
//!   on the `resourceVersion` it just read, and that write alone confirms the claim: it
//!   lasts from the instant the write was *sent* for the duration, less a margin of a
//!   quarter (at least one second). No later read is needed, and the next renewal, one
//!   step later, comes before the claim ends (⅓ < ¾ of the duration), so a healthy
//!   leader may act at every instant. One failed renewal is absorbed; after that the
//!   claim ends on its own, a quarter of the duration before anyone may take over.
//! - **Takeover waits the Lease's duration, measured here.** A follower takes the Lease
//!   over only when its record (holder, renewTime, duration) has not changed for the
//!   Lease's own duration by this agent's monotonic clock, as client-go's election does,
//!   so a skewed wall clock on either side cannot shorten it. A released Lease (no
//!   holder) is taken at once.
//! - **Holder identities are unique per agent**: `<node id>/<pod UID or a random
//!   suffix>` ([`holder_identity`]), so two agents whose node name falls back to the same
//!   value are never both "the holder". The claim's `leader_id` is the node id part.
//! - **Decision-state writes are fenced** ([`LeaseDecisions`]): a save reads the Lease,
//!   refuses unless this agent holds it, and writes with that read's `resourceVersion`
//!   as a precondition, so a takeover in between fails the write with 409 and nothing
//!   is written over the new holder's state.
//!
//! No API server can run on the test machine: the tests drive this code through kube's
//! client over a `tower-test` mock service that serves a Lease store with the API
//! server's optimistic concurrency (see `ARCHITECTURE.md`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::cluster::coordinator::{Claim, ClaimTask, Coordinator, publish};

/// The Lease annotation that holds the leader's report URL.
pub const URL_ANNOTATION: &str = "capstan.dev/leader-url";
/// The field manager Capstan's own Lease writes use.
const FIELD_MANAGER: &str = "capstan";
/// Writes within one step that may meet a conflict (another write between this agent's
/// read and its write, e.g. the leader's own decision state) before the step gives up.
const CONFLICT_RETRIES: usize = 3;
/// How long releasing the Lease on shutdown may take; past it the Lease expires by
/// itself (shutdown must stay well under systemd's and the kubelet's stop timeouts).
const RELEASE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Settings of the Kubernetes coordinator.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// Lease duration.
    pub duration: Duration,
    /// This agent's node id (the claim's `leader_id` while it leads).
    pub node_id: String,
    /// This agent's holder identity, unique per agent ([`holder_identity`]).
    pub identity: String,
    /// Where this agent takes reports when it leads.
    pub url: Option<String>,
}

impl KubeSettings {
    /// The claim ends this long before the Lease could expire.
    pub fn margin(&self) -> Duration {
        (self.duration / 4).max(Duration::from_secs(1))
    }

    /// How often the Lease is read and, when held, renewed.
    pub fn step(&self) -> Duration {
        (self.duration / 3).max(Duration::from_millis(200))
    }

    /// How long a write sent at `sent` lets the holder act: the duration less the margin.
    fn claim_after(&self, sent: Instant) -> Instant {
        sent + self.duration.saturating_sub(self.margin())
    }
}

/// This agent's holder identity: `<node id>/<suffix>`, the suffix being the pod's UID
/// (`POD_UID`, set by the shipped DaemonSets from the downward API) or, outside a pod,
/// a random one, so no two agents ever share an identity.
pub fn holder_identity(node_id: &str) -> String {
    let suffix = std::env::var("POD_UID")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(random_suffix);
    format!("{node_id}/{suffix}")
}

/// 64 random bits in hex: the pid hashed with the standard library's hash keys, which
/// are seeded from the operating system's randomness and differ with every call.
fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    format!("{:016x}", h.finish())
}

/// The node id in a holder identity (the identity itself when it has no suffix, as an
/// older agent's has).
fn node_of(identity: &str) -> &str {
    identity.rsplit_once('/').map_or(identity, |(node, _)| node)
}

/// The Kubernetes Lease coordinator (see the module documentation).
#[derive(Debug)]
pub struct KubeCoordinator {
    claims: ClaimTask,
}

/// A client from the in-cluster service account (or `KUBECONFIG` outside a pod).
pub async fn client() -> anyhow::Result<kube::Client> {
    kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG): {e}")
    })
}

/// The pod's namespace: `POD_NAMESPACE`, else the service account's, else `default`.
pub fn pod_namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|n| n.trim().to_owned())
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| "default".to_owned())
}

impl KubeCoordinator {
    /// Starts contending for the Lease with `client`.
    pub fn start(client: kube::Client, settings: KubeSettings, clock: Arc<dyn Clock>) -> Self {
        let claims = ClaimTask::spawn(
            Claim {
                note: Some("contending for the Lease".to_owned()),
                ..Claim::default()
            },
            move |tx, stop| run(client, settings, clock, tx, stop),
        );
        Self { claims }
    }
}

async fn run(
    client: kube::Client,
    settings: KubeSettings,
    clock: Arc<dyn Clock>,
    tx: watch::Sender<Claim>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    let mut tick = tokio::time::interval(settings.step());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut elector = Elector::new(settings, clock);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let claim = tokio::select! {
            claim = elector.step(&api) => claim,
            _ = stop.wait_for(|s| *s) => break,
        };
        publish(&tx, claim);
    }
    if elector.held_until.is_some() {
        match tokio::time::timeout(RELEASE_TIMEOUT, elector.release(&api)).await {
            Ok(Ok(true)) => tracing::info!("released the Lease"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "releasing the Lease failed; it expires by itself")
            }
            Err(_) => tracing::warn!("releasing the Lease timed out; it expires by itself"),
        }
    }
}

/// What the election looks at to tell a live holder from a dead one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    duration: Option<i32>,
}

impl Record {
    fn of(spec: &LeaseSpec) -> Self {
        Self {
            holder: spec.holder_identity.clone().filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.clone(),
            duration: spec.lease_duration_seconds,
        }
    }
}

/// Why a step's write did not go through.
enum Failed {
    /// The Lease changed between the read and the write (409): read it again.
    Conflict,
    /// The API could not be reached or refused.
    Api(String),
}

fn failed(what: &'static str) -> impl Fn(kube::Error) -> Failed {
    move |e| match &e {
        kube::Error::Api(s) if s.code == 409 => Failed::Conflict,
        _ => Failed::Api(format!("{what} the Lease failed: {e}")),
    }
}

/// One agent's side of the election (see the module documentation).
struct Elector {
    settings: KubeSettings,
    clock: Arc<dyn Clock>,
    /// The holder's record as last read, and since when it has read the same.
    seen: Option<(Record, Instant)>,
    /// Until when this agent's last successful write lets it act, while it holds.
    held_until: Option<Instant>,
}

impl Elector {
    fn new(settings: KubeSettings, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings,
            clock,
            seen: None,
            held_until: None,
        }
    }

    /// Reads the Lease and renews or takes it when the rules allow; the claim after.
    async fn step(&mut self, api: &Api<Lease>) -> Claim {
        for _ in 0..CONFLICT_RETRIES {
            match self.attempt(api).await {
                Ok(claim) => return claim,
                Err(Failed::Conflict) => {}
                Err(Failed::Api(why)) => return self.unconfirmed(why),
            }
        }
        self.unconfirmed("the Lease kept changing between reading and writing it".to_owned())
    }

    async fn attempt(&mut self, api: &Api<Lease>) -> Result<Claim, Failed> {
        let Some(mut lease) = api
            .get_opt(&self.settings.lease_name)
            .await
            .map_err(failed("reading"))?
        else {
            let sent = Instant::now();
            api.create(&PostParams::default(), &self.fresh_lease())
                .await
                .map_err(failed("creating"))?;
            tracing::info!(lease = %self.settings.lease_name, "created and took the Lease");
            return Ok(self.holding(sent));
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let record = Record::of(spec);
        let ours = record.holder.as_deref() == Some(self.settings.identity.as_str());
        if !ours && record.holder.is_some() && !self.expired(&record) {
            self.held_until = None;
            return Ok(Claim {
                is_leader: false,
                leader_id: record.holder.as_deref().map(|h| node_of(h).to_owned()),
                leader_url: url_of(&lease),
                valid_until: None,
                note: None,
            });
        }
        // Ours to renew, or free or expired to take: one write, conditional on the
        // resourceVersion just read (kept in the object `replace` sends).
        let now = MicroTime(timestamp(self.clock.now()));
        if !ours {
            spec.holder_identity = Some(self.settings.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(self.duration_seconds());
        if let Some(url) = &self.settings.url {
            lease
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(URL_ANNOTATION.to_owned(), url.clone());
        }
        let sent = Instant::now();
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        api.replace(&self.settings.lease_name, &params, &lease)
            .await
            .map_err(failed(if ours { "renewing" } else { "taking" }))?;
        if !ours {
            tracing::info!(
                lease = %self.settings.lease_name,
                from = record.holder.as_deref().unwrap_or("nobody"),
                "took the Lease"
            );
        }
        Ok(self.holding(sent))
    }

    /// Whether `record` has stayed the same for the Lease's duration, by this agent's
    /// clock, since this agent first read it.
    fn expired(&mut self, record: &Record) -> bool {
        let now = Instant::now();
        let since = match &self.seen {
            Some((seen, since)) if seen == record => *since,
            _ => {
                self.seen = Some((record.clone(), now));
                now
            }
        };
        let theirs = record
            .duration
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.settings.duration, Duration::from_secs);
        now.duration_since(since) >= theirs
    }

    /// The claim after a write sent at `sent` went through.
    fn holding(&mut self, sent: Instant) -> Claim {
        let until = self.settings.claim_after(sent);
        self.held_until = Some(until);
        self.seen = None;
        Claim {
            is_leader: true,
            leader_id: Some(self.settings.node_id.clone()),
            leader_url: self.settings.url.clone(),
            valid_until: Some(until),
            note: None,
        }
    }

    /// The claim when the Lease could not be read or written: the last confirmed one
    /// until it ends, then none.
    fn unconfirmed(&mut self, why: String) -> Claim {
        match self.held_until {
            Some(until) if Instant::now() < until => Claim {
                is_leader: true,
                leader_id: Some(self.settings.node_id.clone()),
                leader_url: self.settings.url.clone(),
                valid_until: Some(until),
                note: Some(why),
            },
            _ => {
                self.held_until = None;
                Claim {
                    note: Some(why),
                    ..Claim::default()
                }
            }
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.settings.duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    fn fresh_lease(&self) -> Lease {
        let now = MicroTime(timestamp(self.clock.now()));
        Lease {
            metadata: ObjectMeta {
                name: Some(self.settings.lease_name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                annotations: self
                    .settings
                    .url
                    .as_ref()
                    .map(|url| std::iter::once((URL_ANNOTATION.to_owned(), url.clone())).collect()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.settings.identity.clone()),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_duration_seconds: Some(self.duration_seconds()),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        }
    }

    /// Gives the Lease up when this agent still holds it, so the next agent takes it at
    /// once rather than after the duration. `Ok(false)`: someone else holds it.
    async fn release(&mut self, api: &Api<Lease>) -> kube::Result<bool> {
        self.held_until = None;
        let Some(mut lease) = api.get_opt(&self.settings.lease_name).await? else {
            return Ok(false);
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(false);
        }
        spec.holder_identity = None;
        spec.renew_time = Some(MicroTime(timestamp(self.clock.now())));
        api.replace(&self.settings.lease_name, &PostParams::default(), &lease)
            .await?;
        Ok(true)
    }
}

/// A wall-clock time as the Kubernetes API's timestamp.
fn timestamp(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

fn url_of(lease: &Lease) -> Option<String> {
    lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(URL_ANNOTATION))
        .cloned()
}

#[async_trait::async_trait]
impl Coordinator for KubeCoordinator {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn claim(&self) -> watch::Receiver<Claim> {
        self.claims.subscribe()
    }

    async fn vacate(&self) {
        self.claims.stop(Duration::from_secs(2)).await;
    }
}

/// Decision state on the Lease itself, one annotation per pool
/// (`state.capstan.dev/<pool>`), so the agents need RBAC for the Lease and nothing
/// more. Writes are fenced: only the Lease's holder writes, conditionally on the
/// `resourceVersion` it read (see the module documentation).
#[derive(Clone)]
pub struct LeaseDecisions {
    api: Api<Lease>,
    lease_name: String,
    identity: String,
}

impl std::fmt::Debug for LeaseDecisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseDecisions")
            .field("lease_name", &self.lease_name)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl LeaseDecisions {
    /// The store on Lease `lease_name` in `namespace`, written only while `identity`
    /// (this agent's [`holder_identity`]) holds it.
    pub fn new(client: kube::Client, namespace: &str, lease_name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            lease_name: lease_name.to_owned(),
            identity: identity.to_owned(),
        }
    }

    fn key(pool: &str) -> anyhow::Result<String> {
        anyhow::ensure!(
            !pool.is_empty()
                && pool.len() <= 63
                && pool
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')),
            "pool name {pool:?} cannot be a Kubernetes annotation name (at most 63 of [A-Za-z0-9-_.])"
        );
        Ok(format!("state.capstan.dev/{pool}"))
    }
}

#[async_trait::async_trait]
impl crate::state::memory::DecisionStore for LeaseDecisions {
    async fn load(&self, pool: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let key = Self::key(pool)?;
        let lease = self.api.get_opt(&self.lease_name).await?;
        Ok(lease
            .and_then(|l| l.metadata.annotations)
            .and_then(|mut a| a.remove(&key))
            .map(String::into_bytes))
    }

    async fn save(&self, pool: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let key = Self::key(pool)?;
        let value = std::str::from_utf8(bytes)?;
        for _ in 0..CONFLICT_RETRIES {
            let lease = self
                .api
                .get_opt(&self.lease_name)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the Lease {} is missing", self.lease_name))?;
            let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
            anyhow::ensure!(
                holder.as_deref() == Some(self.identity.as_str()),
                "not saved: this agent no longer holds the Lease ({} does)",
                holder.as_deref().unwrap_or("nobody")
            );
            // A merge patch that names the resourceVersion it was read at: the API
            // server applies it only if the Lease is unchanged since.
            let patch = serde_json::json!({ "metadata": {
                "resourceVersion": lease.metadata.resource_version,
                "annotations": { key.as_str(): value },
            }});
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            match self
                .api
                .patch(&self.lease_name, &params, &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Changed since the read (a renewal, or a takeover): read it again.
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("not saved: the Lease kept changing between reading and writing it")
    }
}

#[cfg(test)]
mod tests;
