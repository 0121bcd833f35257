//! The `kubernetes` coordinator: a `coordination.k8s.io/v1` Lease, held through the
//! maintained `kube-lease-manager` crate (acquire when free or expired, renew before
//! expiry, release on shutdown), with the agent's in-cluster credentials.
//!
//! On top of the manager's "am I the holder" channel, this coordinator reads the Lease
//! every third of its duration: the holder's identity is the leader's node id, the
//! annotation [`URL_ANNOTATION`] carries where the leader takes reports (the leader
//! writes it after acquiring), and `renewTime + leaseDurationSeconds` bounds the claim:
//! the leader acts only until then, less a safety margin of a quarter of the duration
//! (at least one second), so a leader that cannot renew stops acting before another
//! agent may take the Lease over.
//!
//! No API server can run on the test machine: the tests drive this code, and the crate
//! under it, through kube's client over a `tower-test` mock service that serves a Lease
//! store (see `ARCHITECTURE.md`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube_lease_manager::{LeaseCreateMode, LeaseManagerBuilder};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::cluster::coordinator::{Claim, ClaimTask, Coordinator, publish};

/// The Lease annotation that holds the leader's report URL.
pub const URL_ANNOTATION: &str = "capstan.dev/leader-url";
/// The field manager Capstan's own Lease writes use.
const FIELD_MANAGER: &str = "capstan";

/// Settings of the Kubernetes coordinator.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// Lease duration.
    pub duration: Duration,
    /// This agent's node id (the holder identity).
    pub node_id: String,
    /// Where this agent takes reports when it leads.
    pub url: Option<String>,
}

impl KubeSettings {
    /// The claim ends this long before the Lease could expire.
    pub fn margin(&self) -> Duration {
        (self.duration / 4).max(Duration::from_secs(1))
    }
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

fn seconds(d: Duration) -> u64 {
    d.as_secs().max(1)
}

async fn run(
    client: kube::Client,
    settings: KubeSettings,
    clock: Arc<dyn Clock>,
    tx: watch::Sender<Claim>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(client.clone(), &settings.namespace);
    let mut backoff = Duration::from_millis(200);
    // The manager creates the Lease when it is missing; building it needs the API.
    let manager = loop {
        let built = LeaseManagerBuilder::new(client.clone(), &settings.lease_name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.node_id)
            .with_duration(seconds(settings.duration))
            .with_grace(seconds(settings.duration / 3))
            .with_create_mode(LeaseCreateMode::AutoCreate)
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                publish(
                    &tx,
                    Claim {
                        note: Some(format!("Kubernetes Lease: {e}")),
                        ..Claim::default()
                    },
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                backoff = (backoff * 2).min(settings.duration);
            }
        }
    };
    let (mut holding, manager_task) = manager.watch().await;
    let mut tick = tokio::time::interval((settings.duration / 3).max(Duration::from_millis(200)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = holding.changed() => {
                if changed.is_err() {
                    // The manager's task ended (it only does on a channel error).
                    publish(&tx, Claim {
                        note: Some("the Lease manager stopped".to_owned()),
                        ..Claim::default()
                    });
                    break;
                }
            }
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        let holds = *holding.borrow_and_update();
        let claim = match api.get(&settings.lease_name).await {
            Ok(lease) => {
                let claim = claim_from(&lease, holds, &settings, clock.now());
                if claim.is_leader && url_of(&lease) != settings.url {
                    announce(&api, &settings).await;
                }
                claim
            }
            Err(e) => Claim {
                // Without the Lease in view there is no confirmed expiry: act no more.
                is_leader: false,
                note: Some(format!("reading the Lease failed: {e}")),
                ..Claim::default()
            },
        };
        publish(&tx, claim);
    }
    // Dropping the receiver makes the manager release the Lease and return.
    drop(holding);
    match tokio::time::timeout(Duration::from_secs(3), manager_task).await {
        Ok(Ok(Ok(_))) => tracing::info!("released the Lease"),
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "releasing the Lease failed; it expires by itself")
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "the Lease task failed"),
        Err(_) => tracing::warn!("releasing the Lease timed out; it expires by itself"),
    }
}

fn url_of(lease: &Lease) -> Option<String> {
    lease
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(URL_ANNOTATION))
        .cloned()
}

/// Writes this agent's URL onto the Lease it holds.
async fn announce(api: &Api<Lease>, settings: &KubeSettings) {
    let url = settings.url.as_deref().unwrap_or_default();
    if let Err(e) = annotate(api, &settings.lease_name, URL_ANNOTATION, url).await {
        tracing::warn!(error = %e, "cannot write the leader URL onto the Lease");
    }
}

/// Sets one annotation on the Lease (a merge patch: the spec is the manager's).
async fn annotate(api: &Api<Lease>, lease: &str, key: &str, value: &str) -> kube::Result<()> {
    let patch = serde_json::json!({ "metadata": { "annotations": { key: value } } });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    };
    api.patch(lease, &params, &Patch::Merge(&patch)).await?;
    Ok(())
}

/// The claim the Lease gives this agent at `now`: holder and expiry from its spec,
/// leadership only when the manager holds it and the spec agrees.
pub fn claim_from(
    lease: &Lease,
    holds: bool,
    settings: &KubeSettings,
    now: DateTime<Utc>,
) -> Claim {
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.filter(|h| !h.is_empty());
    let expiry: Option<DateTime<Utc>> = match (spec.renew_time, spec.lease_duration_seconds) {
        (Some(renew), Some(secs)) => {
            let renew: std::time::SystemTime = renew.0.into();
            Some(DateTime::<Utc>::from(renew) + chrono::Duration::seconds(i64::from(secs)))
        }
        _ => None,
    };
    let ours = holds && holder.as_deref() == Some(settings.node_id.as_str());
    let left = expiry
        .map(|e| e - now)
        .and_then(|d| d.to_std().ok())
        .and_then(|d| d.checked_sub(settings.margin()));
    let valid_until = Some(Instant::now() + left.unwrap_or(Duration::ZERO));
    let leader_url = if ours {
        settings.url.clone()
    } else {
        url_of(lease)
    };
    Claim {
        is_leader: ours,
        leader_id: holder,
        leader_url,
        valid_until,
        note: None,
    }
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
        self.claims.stop(Duration::from_secs(5)).await;
    }
}

/// Decision state on the Lease itself, one annotation per pool
/// (`state.capstan.dev/<pool>`), so the agents need RBAC for the Lease and nothing more.
#[derive(Clone)]
pub struct LeaseDecisions {
    api: Api<Lease>,
    lease_name: String,
}

impl std::fmt::Debug for LeaseDecisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseDecisions")
            .field("lease_name", &self.lease_name)
            .finish_non_exhaustive()
    }
}

impl LeaseDecisions {
    /// The store on Lease `lease_name` in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, lease_name: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            lease_name: lease_name.to_owned(),
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
        annotate(&self.api, &self.lease_name, &key, value).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The Lease logic against kube's client over `tower-test` mock services, one per
    //! agent, all answered from one in-test Lease store that behaves as the API server
    //! does for a Lease: GET, POST (409 AlreadyExists), strategic-merge, merge and
    //! server-side-apply PATCH (409 Conflict when another field manager holds
    //! `holderIdentity`), and an agent that can be cut off (503).

    use super::*;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};
    use std::collections::HashSet;
    use std::sync::Mutex;
    use tower_test::mock;

    #[derive(Debug, Default)]
    struct Store {
        lease: Option<Value>,
        holder_manager: Option<String>,
        version: u64,
        cut_off: HashSet<usize>,
    }

    type Shared = Arc<Mutex<Store>>;

    fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
        let body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        });
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap()
    }

    fn ok(code: StatusCode, v: &Value) -> Response<Body> {
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(v).unwrap()))
            .unwrap()
    }

    /// JSON merge: `null` removes a key, objects merge, anything else replaces.
    fn merge(into: &mut Value, patch: &Value) {
        match (into, patch) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    if v.is_null() {
                        a.remove(k);
                    } else {
                        merge(a.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            (slot, v) => *slot = v.clone(),
        }
    }

    async fn respond(agent: usize, req: Request<Body>, store: &Shared) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = req.into_body().collect_bytes().await.unwrap();
        let mut s = store.lock().unwrap();
        if s.cut_off.contains(&agent) {
            return status(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "cut off",
            );
        }
        let collection = "/apis/coordination.k8s.io/v1/namespaces/capstan/leases";
        let one = format!("{collection}/capstan-leader");
        match (method.as_str(), path.as_str()) {
            ("GET", p) if p == one => match &s.lease {
                Some(l) => ok(StatusCode::OK, l),
                None => status(StatusCode::NOT_FOUND, "NotFound", "no lease"),
            },
            ("POST", p) if p == collection => {
                if s.lease.is_some() {
                    return status(StatusCode::CONFLICT, "AlreadyExists", "exists");
                }
                let mut lease: Value = serde_json::from_slice(&body).unwrap();
                s.version += 1;
                lease["metadata"]["namespace"] = json!("capstan");
                lease["metadata"]["resourceVersion"] = json!(s.version.to_string());
                s.lease = Some(lease.clone());
                ok(StatusCode::CREATED, &lease)
            }
            ("PATCH", p) if p == one => {
                let manager = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("fieldManager="))
                    .unwrap_or("")
                    .to_owned();
                let patch: Value = serde_json::from_slice(&body).unwrap();
                let Some(mut lease) = s.lease.clone() else {
                    return status(StatusCode::NOT_FOUND, "NotFound", "no lease");
                };
                let held_by = lease["spec"]["holderIdentity"].as_str().map(str::to_owned);
                let wants = patch["spec"]["holderIdentity"].as_str().map(str::to_owned);
                if content_type.starts_with("application/apply-patch")
                    && held_by.is_some()
                    && wants.is_some()
                    && wants != held_by
                    && s.holder_manager.as_deref() != Some(manager.as_str())
                {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        "holderIdentity is owned by another manager",
                    );
                }
                merge(&mut lease, &patch);
                if patch["spec"].get("holderIdentity").is_some() {
                    s.holder_manager = wants.map(|_| manager);
                }
                s.version += 1;
                lease["metadata"]["resourceVersion"] = json!(s.version.to_string());
                s.lease = Some(lease.clone());
                ok(StatusCode::OK, &lease)
            }
            _ => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{method} {path}"),
            ),
        }
    }

    /// A kube client whose requests `store` answers as agent `agent`.
    fn client(agent: usize, store: &Shared) -> kube::Client {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let store = store.clone();
        tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            while let Some((req, send)) = handle.next_request().await {
                send.send_response(respond(agent, req, &store).await);
            }
        });
        kube::Client::new(service, "capstan")
    }

    fn settings(node: &str) -> KubeSettings {
        KubeSettings {
            namespace: "capstan".into(),
            lease_name: "capstan-leader".into(),
            duration: Duration::from_secs(2),
            node_id: node.into(),
            url: Some(format!("http://{node}:9464")),
        }
    }

    fn holder(store: &Shared) -> Option<String> {
        store.lock().unwrap().lease.as_ref()?["spec"]["holderIdentity"]
            .as_str()
            .map(str::to_owned)
    }

    async fn wait_for(
        rx: &mut watch::Receiver<Claim>,
        what: &str,
        f: impl Fn(&Claim) -> bool,
    ) -> Claim {
        let found = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|c| f(c)))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|c| c.clone());
        found.unwrap_or_else(|| {
            panic!(
                "timed out waiting for {what}; last claim {:?}",
                *rx.borrow()
            )
        })
    }

    fn clock() -> Arc<dyn Clock> {
        Arc::new(crate::clock::SystemClock)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acquire_renew_expire_take_over_and_release() {
        let store: Shared = Arc::default();

        // Acquire: the first agent creates the Lease, holds it, and announces its URL.
        let a = KubeCoordinator::start(client(0, &store), settings("a"), clock());
        let mut ra = a.claim();
        let claim = wait_for(&mut ra, "a to lead", |c| c.is_leader).await;
        assert_eq!(claim.leader_id.as_deref(), Some("a"));
        assert!(claim.may_act(Instant::now()).is_ok());
        assert_eq!(holder(&store).as_deref(), Some("a"));

        // A second agent follows, and learns who leads and where to report.
        let b = KubeCoordinator::start(client(1, &store), settings("b"), clock());
        let mut rb = b.claim();
        let claim = wait_for(&mut rb, "b to see a's URL", |c| {
            c.leader_url.as_deref() == Some("http://a:9464")
        })
        .await;
        assert!(!claim.is_leader);
        assert_eq!(claim.leader_id.as_deref(), Some("a"));

        // Renew: well past one duration, a still holds it and b never took it.
        let renewed_before =
            store.lock().unwrap().lease.clone().unwrap()["spec"]["renewTime"].clone();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let lease = store.lock().unwrap().lease.clone().unwrap();
        assert_ne!(lease["spec"]["renewTime"], renewed_before, "no renewal");
        assert_eq!(holder(&store).as_deref(), Some("a"));
        assert!(ra.borrow().is_leader && !rb.borrow().is_leader);

        // Expire: a is cut off from the API. It stops acting before its Lease expires…
        store.lock().unwrap().cut_off.insert(0);
        let lost = wait_for(&mut ra, "a to stop acting", |c| {
            c.may_act(Instant::now()).is_err()
        })
        .await;
        assert!(!lost.is_leader || lost.valid_until.is_some());
        // …and b takes over once it has expired.
        let claim = wait_for(&mut rb, "b to take over", |c| c.is_leader).await;
        assert_eq!(claim.leader_url.as_deref(), Some("http://b:9464"));
        assert_eq!(holder(&store).as_deref(), Some("b"));
        assert!(ra.borrow().may_act(Instant::now()).is_err());
        let transitions = store.lock().unwrap().lease.clone().unwrap()["spec"]["leaseTransitions"]
            .as_i64()
            .unwrap_or(0);
        assert!(transitions >= 2, "{transitions}");

        // Release: b vacates on shutdown; the Lease is free at once, not after expiry.
        b.vacate().await;
        assert!(!rb.borrow().is_leader);
        assert_eq!(holder(&store), None);
        a.vacate().await;
    }

    #[tokio::test]
    async fn decision_state_lives_on_the_lease() {
        use crate::state::memory::DecisionStore;
        let store: Shared = Arc::default();
        store.lock().unwrap().lease = Some(json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": { "name": "capstan-leader", "namespace": "capstan" },
            "spec": {}
        }));
        let d = LeaseDecisions::new(client(0, &store), "capstan", "capstan-leader");
        assert_eq!(d.load("web").await.unwrap(), None);
        d.save("web", br#"{"version":1}"#).await.unwrap();
        assert_eq!(
            d.load("web").await.unwrap().as_deref(),
            Some(&br#"{"version":1}"#[..])
        );
        assert!(d.save("not a valid/name", b"{}").await.is_err());
    }
}
