//! The Lease logic against kube's client over `tower-test` mock services, one per
//! agent, all answered from one in-test Lease store that behaves as the API server
//! does for a Lease: GET, POST (409 AlreadyExists), PUT and merge PATCH with its
//! optimistic concurrency (409 Conflict when the `resourceVersion` sent is not the
//! current one), and an agent that can be cut off (503).

use super::*;
use crate::state::memory::DecisionStore;
use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Mutex;
use tower_test::mock;

#[derive(Debug, Default)]
struct Store {
    lease: Option<Value>,
    version: u64,
    cut_off: HashSet<usize>,
    /// Another agent takes the Lease right before the next write lands, as if it
    /// had between the writer's read and its write.
    take_over_before_next_write: Option<String>,
    writes: usize,
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

impl Store {
    fn bump(&mut self, lease: &mut Value) {
        self.version += 1;
        lease["metadata"]["resourceVersion"] = json!(self.version.to_string());
    }

    /// A write's precondition: the `resourceVersion` it names, if any, is current.
    fn write(&mut self, sent: &Value, apply: impl FnOnce(&mut Value)) -> Response<Body> {
        if let Some(holder) = self.take_over_before_next_write.take() {
            let mut lease = self.lease.clone().unwrap();
            lease["spec"]["holderIdentity"] = json!(holder);
            self.bump(&mut lease);
            self.lease = Some(lease);
        }
        let Some(mut lease) = self.lease.clone() else {
            return status(StatusCode::NOT_FOUND, "NotFound", "no lease");
        };
        let named = sent["metadata"]["resourceVersion"].as_str();
        if named.is_some_and(|v| Some(v) != lease["metadata"]["resourceVersion"].as_str()) {
            return status(
                StatusCode::CONFLICT,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            );
        }
        apply(&mut lease);
        self.bump(&mut lease);
        self.writes += 1;
        self.lease = Some(lease.clone());
        ok(StatusCode::OK, &lease)
    }
}

async fn respond(agent: usize, req: Request<Body>, store: &Shared) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
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
            lease["metadata"]["namespace"] = json!("capstan");
            s.bump(&mut lease);
            s.writes += 1;
            s.lease = Some(lease.clone());
            ok(StatusCode::CREATED, &lease)
        }
        ("PUT", p) if p == one => {
            let sent: Value = serde_json::from_slice(&body).unwrap();
            let replacement = sent.clone();
            s.write(&sent, |lease| *lease = replacement)
        }
        ("PATCH", p) if p == one => {
            let patch: Value = serde_json::from_slice(&body).unwrap();
            s.write(&patch, |lease| merge(lease, &patch))
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

fn settings(node: &str, duration: Duration) -> KubeSettings {
    KubeSettings {
        namespace: "capstan".into(),
        lease_name: "capstan-leader".into(),
        duration,
        node_id: node.into(),
        identity: holder_identity(node),
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

#[test]
fn holder_identities_are_unique_per_agent_and_name_their_node() {
    let (a, b) = (holder_identity("localhost"), holder_identity("localhost"));
    assert_ne!(a, b, "two agents on `localhost` share a holder identity");
    assert_eq!(node_of(&a), "localhost");
    assert_eq!(node_of("node-7"), "node-7", "an older agent's identity");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquire_renew_expire_take_over_and_release() {
    let store: Shared = Arc::default();
    let d = Duration::from_secs(2);

    // Acquire: the first agent creates the Lease, holds it, and announces its URL.
    let a = KubeCoordinator::start(client(0, &store), settings("a", d), clock());
    let mut ra = a.claim();
    let claim = wait_for(&mut ra, "a to lead", |c| c.is_leader).await;
    assert_eq!(claim.leader_id.as_deref(), Some("a"));
    assert!(claim.may_act(Instant::now()).is_ok());
    assert_eq!(holder(&store).as_deref().map(node_of), Some("a"));

    // A second agent follows, and learns who leads and where to report.
    let b = KubeCoordinator::start(client(1, &store), settings("b", d), clock());
    let mut rb = b.claim();
    let claim = wait_for(&mut rb, "b to see a's URL", |c| {
        c.leader_url.as_deref() == Some("http://a:9464")
    })
    .await;
    assert!(!claim.is_leader);
    assert_eq!(claim.leader_id.as_deref(), Some("a"));

    // Renew: well past one duration, a still holds it and b never took it.
    let renewed_before = store.lock().unwrap().lease.clone().unwrap()["spec"]["renewTime"].clone();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lease = store.lock().unwrap().lease.clone().unwrap();
    assert_ne!(lease["spec"]["renewTime"], renewed_before, "no renewal");
    assert_eq!(holder(&store).as_deref().map(node_of), Some("a"));
    assert!(ra.borrow().is_leader && !rb.borrow().is_leader);

    // Expire: a is cut off from the API. It stops acting before its Lease expires…
    store.lock().unwrap().cut_off.insert(0);
    wait_for(&mut ra, "a to stop acting", |c| {
        c.may_act(Instant::now()).is_err()
    })
    .await;
    assert!(
        !rb.borrow().is_leader,
        "b took over before a stopped acting"
    );
    // …and b takes over once it has expired.
    let claim = wait_for(&mut rb, "b to take over", |c| c.is_leader).await;
    assert_eq!(claim.leader_url.as_deref(), Some("http://b:9464"));
    assert_eq!(holder(&store).as_deref().map(node_of), Some("b"));
    assert!(ra.borrow().may_act(Instant::now()).is_err());
    let transitions = store.lock().unwrap().lease.clone().unwrap()["spec"]["leaseTransitions"]
        .as_i64()
        .unwrap_or(0);
    assert_eq!(transitions, 1, "created by a, taken once by b");

    // Release: b vacates on shutdown; the Lease is free at once, not after expiry.
    b.vacate().await;
    assert!(!rb.borrow().is_leader);
    assert_eq!(holder(&store), None);
    a.vacate().await;
}

/// The rule *claims never lapse while renewals succeed*, over simulated time: with
/// the shipped 15 s Lease, a healthy leader may act at every sampled instant of 10
/// lease periods (every 50 ms), while a follower contends; once its renewals stop,
/// it may not act within one duration, and the follower leads only after that.
#[tokio::test(start_paused = true)]
async fn a_healthy_leaders_claim_never_lapses_and_ends_within_a_duration_of_its_last_renewal() {
    let store: Shared = Arc::default();
    let d = Duration::from_secs(15);
    let a = KubeCoordinator::start(client(0, &store), settings("a", d), clock());
    let mut ra = a.claim();
    wait_for(&mut ra, "a to lead", |c| c.is_leader).await;
    let b = KubeCoordinator::start(client(1, &store), settings("b", d), clock());
    let rb = b.claim();

    let start = Instant::now();
    let writes_before = store.lock().unwrap().writes;
    let mut sampled = 0;
    while Instant::now() < start + 10 * d {
        let now = Instant::now();
        if let Err(why) = ra.borrow().may_act(now) {
            panic!("the claim lapsed {:?} in: {why}", now - start);
        }
        assert!(!rb.borrow().is_leader, "b leads beside a");
        sampled += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sampled, 3000);
    let renewals = store.lock().unwrap().writes - writes_before;
    assert!(
        (28..=31).contains(&renewals),
        "{renewals} renewals in 10 periods"
    );

    // Renewals stop: a is cut off from the API.
    store.lock().unwrap().cut_off.insert(0);
    let cut = Instant::now();
    let stopped = loop {
        let now = Instant::now();
        if ra.borrow().may_act(now).is_err() {
            break now - cut;
        }
        assert!(
            now - cut < d,
            "a may still act a whole duration after it was cut off"
        );
        assert!(!rb.borrow().is_leader, "b leads while a may act");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        stopped <= d - Duration::from_secs(3),
        "stopped after {stopped:?}"
    );
    let mut rb = rb;
    wait_for(&mut rb, "b to take over", |c| c.is_leader).await;
    assert!(ra.borrow().may_act(Instant::now()).is_err());
    b.vacate().await;
    a.vacate().await;
}

#[tokio::test]
async fn decision_state_lives_on_the_lease_and_only_its_holder_writes_it() {
    let store: Shared = Arc::default();
    store.lock().unwrap().lease = Some(json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": { "name": "capstan-leader", "namespace": "capstan", "resourceVersion": "1" },
        "spec": { "holderIdentity": "a/1" }
    }));
    store.lock().unwrap().version = 1;
    let d = LeaseDecisions::new(client(0, &store), "capstan", "capstan-leader", "a/1");
    assert_eq!(d.load("web").await.unwrap(), None);
    d.save("web", br#"{"version":1}"#).await.unwrap();
    assert_eq!(
        d.load("web").await.unwrap().as_deref(),
        Some(&br#"{"version":1}"#[..])
    );
    assert!(d.save("not a valid/name", b"{}").await.is_err());

    // Another agent takes the Lease between a's read and its write: the write is
    // refused (409), and a, reading again, does not write over the new holder.
    store.lock().unwrap().take_over_before_next_write = Some("b/2".into());
    let writes = store.lock().unwrap().writes;
    let e = d.save("web", br#"{"version":2}"#).await.unwrap_err();
    assert!(e.to_string().contains("b/2 does"), "{e}");
    assert_eq!(store.lock().unwrap().writes, writes, "a wrote after losing");
    assert_eq!(
        d.load("web").await.unwrap().as_deref(),
        Some(&br#"{"version":1}"#[..])
    );
    // The new holder writes.
    let b = LeaseDecisions::new(client(1, &store), "capstan", "capstan-leader", "b/2");
    b.save("web", br#"{"version":3}"#).await.unwrap();
    assert!(d.save("web", b"{}").await.is_err());
}
