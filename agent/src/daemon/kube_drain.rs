//! `[agent.drain] method = "kubernetes"` (feature `kubernetes`): this node's Kubernetes
//! side of a drain, through the API server with the agent's ServiceAccount.
//!
//! - drain: cordon the node (`spec.unschedulable`), then evict its pods through the
//!   Eviction API, so PodDisruptionBudgets are honoured: an eviction refused with 429
//!   (a budget would be broken) is asked again at the next round. DaemonSet-owned and
//!   mirror (static) pods are left; pods that already ended do not count. Drained once
//!   no other pod is left; failed at the deadline, naming the pods still there.
//! - undo: uncordon.
//! - protection: a pod on the node annotated `capstan.io/do-not-disrupt: "true"`.
//!
//! The calls and the RBAC they need: `nodes` `patch` (cordon, uncordon), `pods` `list`
//! (by `spec.nodeName`), `pods/eviction` `create`; [`VERBS`] lists them, and the
//! shipped ClusterRole grants exactly those (tested).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{EvictParams, ListParams, Patch, PatchParams};

use capstan_collectors::{DrainState, DrainStatus};

/// The annotation that keeps a pod's node from being chosen for scale-in.
pub const DO_NOT_DISRUPT: &str = "capstan.io/do-not-disrupt";

/// The annotation the kubelet puts on a mirror (static) pod.
const MIRROR: &str = "kubernetes.io/config.mirror";

/// Every (resource, verb) the drain uses, as the ClusterRole grants them.
pub const VERBS: &[(&str, &str)] = &[
    ("nodes", "patch"),
    ("pods", "list"),
    ("pods/eviction", "create"),
];

/// A node, through the API server.
#[derive(Clone)]
pub struct KubeNode {
    client: kube::Client,
    node: String,
    /// The pause between rounds of evictions.
    pub round: Duration,
}

impl std::fmt::Debug for KubeNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeNode")
            .field("node", &self.node)
            .finish()
    }
}

impl KubeNode {
    /// Node `node` through `client`.
    pub fn new(client: kube::Client, node: impl Into<String>) -> Self {
        Self {
            client,
            node: node.into(),
            round: Duration::from_secs(2),
        }
    }

    /// Node `node` through the in-cluster (or kubeconfig) client.
    pub async fn connect(node: &str) -> Result<Self, String> {
        kube::Client::try_default()
            .await
            .map(|c| Self::new(c, node))
            .map_err(|e| format!("no Kubernetes client: {e}"))
    }

    /// Marks the node unschedulable (`true`) or schedulable again.
    pub async fn cordon(&self, on: bool) -> Result<(), String> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        nodes
            .patch(
                &self.node,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "spec": { "unschedulable": on } })),
            )
            .await
            .map(drop)
            .map_err(|e| {
                format!(
                    "cannot {} node {}: {e}",
                    if on { "cordon" } else { "uncordon" },
                    self.node
                )
            })
    }

    /// The node's pods.
    async fn pods(&self) -> Result<Vec<Pod>, String> {
        let pods: Api<Pod> = Api::all(self.client.clone());
        pods.list(&ListParams::default().fields(&format!("spec.nodeName={}", self.node)))
            .await
            .map(|l| l.items)
            .map_err(|e| format!("cannot list the pods of node {}: {e}", self.node))
    }

    /// Whether a pod on the node asks not to be disrupted.
    pub async fn protected(&self) -> Result<bool, String> {
        Ok(self.pods().await?.iter().any(|p| {
            p.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DO_NOT_DISRUPT))
                .is_some_and(|v| v == "true")
        }))
    }

    /// Cordons the node and evicts its pods until none is left, for at most `budget`.
    pub async fn drain(&self, budget: Duration) -> DrainStatus {
        let failed = |detail: String| DrainStatus {
            state: DrainState::Failed,
            detail: Some(detail),
        };
        if let Err(e) = self.cordon(true).await {
            return failed(e);
        }
        let started = tokio::time::Instant::now();
        let mut refused = 0_u32;
        loop {
            let pods = match self.pods().await {
                Ok(p) => p,
                Err(e) => return failed(e),
            };
            let left: Vec<&Pod> = pods.iter().filter(|p| to_evict(p)).collect();
            if left.is_empty() {
                tracing::info!(node = %self.node, refused, "every pod evicted");
                return DrainStatus {
                    state: DrainState::Drained,
                    detail: None,
                };
            }
            if started.elapsed() >= budget {
                let names: Vec<String> = left.iter().map(|p| full_name(p)).collect();
                return failed(format!(
                    "{} pod(s) still on the node at the deadline: {}",
                    names.len(),
                    names.join(", ")
                ));
            }
            for pod in left
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
            {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &ns);
                match api.evict(&name, &EvictParams::default()).await {
                    Ok(_) => tracing::info!(pod = %format!("{ns}/{name}"), "evicted"),
                    // A PodDisruptionBudget holds it for now: asked again next round.
                    Err(kube::Error::Api(s)) if s.code == 429 => {
                        refused += 1;
                        tracing::info!(pod = %format!("{ns}/{name}"), "eviction refused by a disruption budget; asked again");
                    }
                    // Gone already.
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return failed(format!("cannot evict {ns}/{name}: {e}")),
                }
            }
            tokio::time::sleep(self.round).await;
        }
    }
}

/// Whether a drain must evict `pod`: not owned by a DaemonSet (it would come back),
/// not a mirror pod (the kubelet runs it), and not ended.
fn to_evict(pod: &Pod) -> bool {
    let daemon = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet");
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(MIRROR));
    let ended = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|p| p == "Succeeded" || p == "Failed");
    !daemon && !mirror && !ended
}

fn full_name(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or_default(),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock;

    /// An API server holding one node's pods; evictions of `web-0` are refused with
    /// 429 (its disruption budget) this many times first.
    #[derive(Default)]
    struct Server {
        unschedulable: Option<bool>,
        pods: Vec<Value>,
        refuse: u32,
        calls: Vec<String>,
    }

    fn pod(ns: &str, name: &str, owner: Option<&str>, annotations: Value) -> Value {
        let mut p = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"namespace": ns, "name": name, "annotations": annotations},
            "spec": {"nodeName": "ip-10-0-0-1.ec2.internal", "containers": []},
            "status": {"phase": "Running"},
        });
        if let Some(kind) = owner {
            p["metadata"]["ownerReferences"] =
                json!([{"apiVersion": "apps/v1", "kind": kind, "name": "x", "uid": "u"}]);
        }
        p
    }

    fn reply(code: StatusCode, body: &Value) -> Response<Body> {
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap()
    }

    fn status(code: u16, reason: &str) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
    }

    async fn respond(req: Request<Body>, s: &Arc<Mutex<Server>>) -> Response<Body> {
        let method = req.method().to_string();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or("").to_owned();
        let body = req.into_body().collect_bytes().await.unwrap();
        let mut s = s.lock().unwrap();
        s.calls.push(format!("{method} {path}"));
        let node = "/api/v1/nodes/ip-10-0-0-1.ec2.internal";
        if method == "PATCH" && path == node {
            let patch: Value = serde_json::from_slice(&body).unwrap();
            s.unschedulable = patch["spec"]["unschedulable"].as_bool();
            return reply(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ip-10-0-0-1.ec2.internal"}}),
            );
        }
        if method == "GET" && path == "/api/v1/pods" {
            assert!(
                query.contains("fieldSelector=spec.nodeName%3Dip-10-0-0-1.ec2.internal"),
                "{query}"
            );
            return reply(
                StatusCode::OK,
                &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": s.pods}),
            );
        }
        if method == "POST" && path.ends_with("/eviction") {
            let parts: Vec<&str> = path.split('/').collect();
            let (ns, name) = (parts[4], parts[6]);
            let sent: Value = serde_json::from_slice(&body).unwrap();
            // An Eviction names the pod it evicts.
            assert_eq!(sent["metadata"]["name"], name, "{sent}");
            if name == "web-0" && s.refuse > 0 {
                s.refuse -= 1;
                return reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    &status(429, "TooManyRequests"),
                );
            }
            s.pods
                .retain(|p| !(p["metadata"]["namespace"] == ns && p["metadata"]["name"] == name));
            return reply(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            );
        }
        reply(StatusCode::NOT_FOUND, &status(404, "NotFound"))
    }

    fn node(s: &Arc<Mutex<Server>>) -> KubeNode {
        let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
        let s = s.clone();
        tokio::spawn(async move {
            let mut handle = std::pin::pin!(handle);
            while let Some((req, send)) = handle.next_request().await {
                send.send_response(respond(req, &s).await);
            }
        });
        let mut n = KubeNode::new(
            kube::Client::new(service, "default"),
            "ip-10-0-0-1.ec2.internal",
        );
        n.round = Duration::from_millis(10);
        n
    }

    #[tokio::test]
    async fn a_drain_cordons_evicts_all_but_daemonset_and_mirror_pods_and_retries_a_pdb_refusal() {
        let s = Arc::new(Mutex::new(Server {
            pods: vec![
                pod("shop", "web-0", Some("ReplicaSet"), json!({})),
                pod("shop", "worker-1", Some("StatefulSet"), json!({})),
                pod(
                    "kube-system",
                    "node-exporter-x",
                    Some("DaemonSet"),
                    json!({}),
                ),
                pod(
                    "kube-system",
                    "kube-proxy-ip",
                    None,
                    json!({"kubernetes.io/config.mirror": "abc"}),
                ),
            ],
            refuse: 2,
            ..Default::default()
        }));
        let n = node(&s);
        assert!(!n.protected().await.unwrap());
        let done = n.drain(Duration::from_secs(10)).await;
        assert_eq!(done.state, DrainState::Drained, "{done:?}");
        let s = s.lock().unwrap();
        assert_eq!(s.unschedulable, Some(true));
        let left: Vec<&str> = s
            .pods
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(left, ["node-exporter-x", "kube-proxy-ip"]);
        let evictions: Vec<&String> = s
            .calls
            .iter()
            .filter(|c| c.ends_with("/eviction"))
            .collect();
        // web-0 three times (two 429s, then allowed), worker-1 once; never the others.
        assert_eq!(
            evictions.iter().filter(|c| c.contains("/web-0/")).count(),
            3,
            "{evictions:?}"
        );
        assert_eq!(evictions.len(), 4, "{evictions:?}");
        assert_eq!(
            evictions[0],
            "POST /api/v1/namespaces/shop/pods/web-0/eviction"
        );
    }

    #[tokio::test]
    async fn a_budget_that_never_allows_it_fails_at_the_deadline_and_undo_uncordons() {
        let s = Arc::new(Mutex::new(Server {
            pods: vec![pod("shop", "web-0", Some("ReplicaSet"), json!({}))],
            refuse: u32::MAX,
            ..Default::default()
        }));
        let n = node(&s);
        let done = n.drain(Duration::from_millis(100)).await;
        assert_eq!(done.state, DrainState::Failed);
        assert!(done.detail.unwrap().contains("shop/web-0"));
        n.cordon(false).await.unwrap();
        assert_eq!(s.lock().unwrap().unschedulable, Some(false));
    }

    /// Through the node's Drainer: a drain order cordons and evicts, an undrain
    /// uncordons, and an annotated pod makes the node's reports say `protected`.
    #[tokio::test]
    async fn the_drainer_drains_and_returns_a_kubernetes_node() {
        use crate::daemon::drain::Drainer;
        use capstan_collectors::{DrainOrder, ReportAnswer, UndrainOrder};
        use capstan_config::raw::{DrainConfig, DrainMethod};
        let s = Arc::new(Mutex::new(Server {
            pods: vec![pod("shop", "web-0", Some("ReplicaSet"), json!({}))],
            ..Default::default()
        }));
        let d = Drainer::new(
            "i-0abc",
            DrainConfig {
                method: DrainMethod::Kubernetes,
                kubernetes_node: Some("ip-10-0-0-1.ec2.internal".into()),
                ..Default::default()
            },
        );
        d.use_kube(node(&s)).await;
        d.refresh().await;
        assert!(!d.protected());
        let now = chrono::DateTime::UNIX_EPOCH;
        d.answer(
            &ReportAnswer {
                drain: Some(DrainOrder {
                    pool: "web".into(),
                    deadline: now + chrono::Duration::minutes(5),
                }),
                undrain: None,
            },
            now,
        );
        for _ in 0..200 {
            if d.status().is_some_and(|s| s.state != DrainState::Draining) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(d.status().unwrap().state, DrainState::Drained);
        assert_eq!(s.lock().unwrap().unschedulable, Some(true));
        assert!(s.lock().unwrap().pods.is_empty());
        d.answer(
            &ReportAnswer {
                drain: None,
                undrain: Some(UndrainOrder { pool: "web".into() }),
            },
            now,
        );
        for _ in 0..200 {
            if s.lock().unwrap().unschedulable == Some(false) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(s.lock().unwrap().unschedulable, Some(false));
        s.lock().unwrap().pods.push(pod(
            "ml",
            "train-7",
            None,
            json!({"capstan.io/do-not-disrupt": "true"}),
        ));
        d.refresh().await;
        assert!(d.protected());
    }

    #[tokio::test]
    async fn a_pod_annotated_do_not_disrupt_protects_its_node() {
        let s = Arc::new(Mutex::new(Server {
            pods: vec![
                pod("shop", "web-0", Some("ReplicaSet"), json!({})),
                pod(
                    "ml",
                    "train-7",
                    None,
                    json!({"capstan.io/do-not-disrupt": "true"}),
                ),
            ],
            ..Default::default()
        }));
        assert!(node(&s).protected().await.unwrap());
    }
}
