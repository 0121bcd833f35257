//! An in-test Google Cloud: the Container API's node pools and operations, the
//! Compute API's managed instance groups behind them, and the OAuth token endpoint an
//! `authorized_user` credential refreshes at.
//!
//! It serves the documented shapes (shared/data/cloud-api/gke: `NodePool`,
//! `Operation`, `InstanceGroupManager`, `ManagedInstance`) and checks what it is sent:
//! the bearer token, the method and path of each RPC, and `setSize`'s body. A request
//! it does not expect is answered 400 and recorded, so a wrong call fails the test.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const PROJECT: &str = "capstan-test";
pub const LOCATION: &str = "us-central1";
pub const CLUSTER: &str = "prod";
pub const REFRESH_TOKEN: &str = "refresh-1";
const TOKEN: &str = "ya29.gcp-token-1";

/// One request as the fake saw it: the RPC (discovery id) it was, or the path.
#[derive(Debug, Clone)]
pub struct Seen {
    pub rpc: String,
    pub body: Value,
    pub status: u16,
}

/// What the next `setSize` meets.
#[derive(Debug, Clone)]
pub enum SizeFault {
    /// HTTP 429 RESOURCE_EXHAUSTED (rate limit).
    Throttle,
    /// The operation ends DONE with a RESOURCE_EXHAUSTED stockout error.
    Stockout,
}

#[derive(Debug)]
pub struct NodePool {
    pub name: String,
    pub spot: bool,
    pub autoscaling: bool,
    pub zones: Vec<String>,
    /// Nodes per zone.
    pub per_zone: u32,
}

#[derive(Debug)]
struct Operation {
    polls_left: u32,
    node_pool: String,
    per_zone: u32,
    fail: bool,
}

#[derive(Debug)]
pub struct GcpState {
    pub pools: Vec<NodePool>,
    pub polls: u32,
    pub fault: Option<SizeFault>,
    pub seen: Vec<Seen>,
    ops: BTreeMap<String, Operation>,
    next_op: u32,
    /// Per group: the numbers of its instances deleted by name (never reused).
    deleted: BTreeMap<String, BTreeSet<u32>>,
    /// Per group: instances deleted by name since its node pool was last resized
    /// (its target size is the node pool's per-zone size less these).
    shrunk: BTreeMap<String, u32>,
}

impl GcpState {
    /// A group's target size.
    fn target_size(&self, p: &NodePool, igm: &str) -> u32 {
        p.per_zone
            .saturating_sub(self.shrunk.get(igm).copied().unwrap_or(0))
    }

    /// A group's instance numbers: from 0, skipping deleted ones.
    fn members(&self, p: &NodePool, igm: &str) -> Vec<u32> {
        let deleted = self.deleted.get(igm);
        (0u32..)
            .filter(|i| deleted.is_none_or(|d| !d.contains(i)))
            .take(self.target_size(p, igm) as usize)
            .collect()
    }
}

/// An instance's name in group `igm`.
pub fn instance_name(igm: &str, number: u32) -> String {
    format!("{igm}-{number:04x}")
}

pub struct FakeGcp {
    pub url: String,
    pub state: Arc<Mutex<GcpState>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeGcp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FakeGcp {
    pub fn start(pools: Vec<NodePool>) -> FakeGcp {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(Mutex::new(GcpState {
            pools,
            polls: 2,
            fault: None,
            seen: Vec::new(),
            ops: BTreeMap::new(),
            next_op: 0,
            deleted: BTreeMap::new(),
            shrunk: BTreeMap::new(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        FakeGcp {
            url,
            state,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The `authorized_user` credentials file (Application Default Credentials) that
    /// refreshes at this fake.
    pub fn credentials_json(&self, refresh_token: &str) -> Value {
        json!({
            "type": "authorized_user",
            "client_id": "capstan-test.apps.googleusercontent.com",
            "client_secret": "secret",
            "refresh_token": refresh_token,
            "token_uri": format!("{}/token", self.url),
        })
    }

    /// Nodes of a node pool, over all its zones.
    pub fn nodes(&self, pool: &str) -> u32 {
        let s = self.state.lock().unwrap();
        let p = s.pools.iter().find(|p| p.name == pool).unwrap();
        p.per_zone * p.zones.len() as u32
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// `(node pool, nodeCount)` of every accepted setSize.
    pub fn set_sizes(&self) -> Vec<(String, u64)> {
        self.seen()
            .into_iter()
            .filter(|s| s.rpc.starts_with("setSize ") && s.status == 200)
            .map(|s| {
                (
                    s.rpc["setSize ".len()..].to_owned(),
                    s.body["nodeCount"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    pub fn set_fault(&self, fault: Option<SizeFault>) {
        self.state.lock().unwrap().fault = fault;
    }

    /// Every operation running now, and every later one, is `DONE` at its next poll.
    pub fn finish_operations(&self) {
        let mut s = self.state.lock().unwrap();
        s.polls = 0;
        for op in s.ops.values_mut() {
            op.polls_left = 0;
        }
    }

    /// Operation polls answered so far.
    pub fn polls_answered(&self) -> usize {
        self.seen()
            .iter()
            .filter(|s| s.rpc == "container.projects.locations.operations.get")
            .count()
    }
}

fn google_error(status: StatusCode, grpc: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json; charset=UTF-8")],
        json!({"error": {"code": status.as_u16(), "message": message, "status": grpc}}).to_string(),
    )
        .into_response()
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(
    State(state): State<Arc<Mutex<GcpState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    let (rpc, response) = route(&mut s, &method, &path, &headers, &body, &body_json);
    s.seen.push(Seen {
        rpc,
        body: body_json,
        status: response.status().as_u16(),
    });
    response
}

fn route(
    s: &mut GcpState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    raw: &[u8],
    body: &Value,
) -> (String, Response) {
    if method == Method::POST && path == "/token" {
        // google-cloud-auth sends the refresh grant as JSON; OAuth clients may send a form.
        let form: BTreeMap<String, String> = match body.as_object() {
            Some(o) => o
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect(),
            None => form_urlencoded::parse(raw).into_owned().collect(),
        };
        let grant_ok = form.get("grant_type").map(String::as_str) == Some("refresh_token");
        if !grant_ok || form.get("refresh_token").map(String::as_str) != Some(REFRESH_TOKEN) {
            return (
                "token".into(),
                (
                    StatusCode::BAD_REQUEST,
                    [("content-type", "application/json")],
                    json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}).to_string(),
                )
                    .into_response(),
            );
        }
        return (
            "token".into(),
            ok(
                json!({"access_token": TOKEN, "expires_in": 3599, "token_type": "Bearer", "scope": "https://www.googleapis.com/auth/cloud-platform"}),
            ),
        );
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return (
            format!("{method} {path}"),
            google_error(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "Request had invalid authentication credentials.",
            ),
        );
    }
    let pools_prefix =
        format!("/v1/projects/{PROJECT}/locations/{LOCATION}/clusters/{CLUSTER}/nodePools/");
    let ops_prefix = format!("/v1/projects/{PROJECT}/locations/{LOCATION}/operations/");
    let igm_prefix = format!("/compute/v1/projects/{PROJECT}/zones/");
    if let Some(rest) = path.strip_prefix(&pools_prefix) {
        if method == Method::GET {
            let Some(p) = s.pools.iter().find(|p| p.name == rest) else {
                return (
                    "container.projects.locations.clusters.nodePools.get".into(),
                    google_error(
                        StatusCode::NOT_FOUND,
                        "NOT_FOUND",
                        &format!("Node pool \"{rest}\" not found."),
                    ),
                );
            };
            return (
                "container.projects.locations.clusters.nodePools.get".into(),
                ok(node_pool_body(p)),
            );
        }
        if method == Method::POST
            && let Some(name) = rest.strip_suffix(":setSize")
        {
            let rpc = format!("setSize {name}");
            let full = format!(
                "projects/{PROJECT}/locations/{LOCATION}/clusters/{CLUSTER}/nodePools/{name}"
            );
            // proto3 JSON leaves a zero out: no nodeCount is 0.
            let count = body.get("nodeCount").map_or(Some(0), Value::as_u64);
            let extra = body
                .as_object()
                .is_none_or(|o| o.keys().any(|k| k != "nodeCount" && k != "name"));
            if count.is_none() || extra || body.get("name").is_some_and(|n| n != &json!(full)) {
                return (
                    rpc,
                    google_error(
                        StatusCode::BAD_REQUEST,
                        "INVALID_ARGUMENT",
                        &format!("bad setSize body {body}"),
                    ),
                );
            }
            if !s.pools.iter().any(|p| p.name == name) {
                return (
                    rpc,
                    google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such node pool"),
                );
            }
            let mut fail = false;
            match s.fault.take() {
                Some(SizeFault::Throttle) => {
                    return (
                        rpc,
                        google_error(
                            StatusCode::TOO_MANY_REQUESTS,
                            "RESOURCE_EXHAUSTED",
                            "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute'.",
                        ),
                    );
                }
                Some(SizeFault::Stockout) => fail = true,
                None => {}
            }
            s.next_op += 1;
            let id = format!(
                "operation-{}-{:08x}",
                1_764_316_800_000_u64 + u64::from(s.next_op),
                s.next_op
            );
            s.ops.insert(
                id.clone(),
                Operation {
                    polls_left: s.polls,
                    node_pool: name.to_owned(),
                    per_zone: count.unwrap() as u32,
                    fail,
                },
            );
            return (rpc, ok(operation_body(&id, "RUNNING", None)));
        }
    }
    if method == Method::GET
        && let Some(id) = path.strip_prefix(&ops_prefix)
    {
        let rpc = "container.projects.locations.operations.get".to_owned();
        let Some(op) = s.ops.get_mut(id) else {
            return (
                rpc,
                google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such operation"),
            );
        };
        if op.polls_left > 0 {
            op.polls_left -= 1;
            return (rpc, ok(operation_body(id, "RUNNING", None)));
        }
        let op = s.ops.remove(id).unwrap();
        if op.fail {
            let error = json!({"code": 8, "message": "Insufficient regional quota to satisfy request: ZONE_RESOURCE_POOL_EXHAUSTED in us-central1-a"});
            return (rpc, ok(operation_body(id, "DONE", Some(error))));
        }
        if let Some(p) = s.pools.iter_mut().find(|p| p.name == op.node_pool) {
            p.per_zone = op.per_zone;
            let groups: Vec<String> = p.zones.iter().map(|z| group_name(&p.name, z)).collect();
            for g in groups {
                s.shrunk.remove(&g);
            }
        }
        return (rpc, ok(operation_body(id, "DONE", None)));
    }
    if let Some(rest) = path.strip_prefix(&igm_prefix) {
        // {zone}/instanceGroupManagers/{name}[/listManagedInstances]
        let parts: Vec<&str> = rest.split('/').collect();
        if parts.len() >= 3 && parts[1] == "instanceGroupManagers" {
            let (zone, igm) = (parts[0], parts[2]);
            let found = s.pools.iter().find(|p| {
                p.zones
                    .iter()
                    .any(|z| group_name(&p.name, z) == igm && z == zone)
            });
            let list = parts.get(3) == Some(&"listManagedInstances");
            let delete = parts.get(3) == Some(&"deleteInstances");
            let rpc = if list {
                "compute.instanceGroupManagers.listManagedInstances"
            } else if delete {
                "compute.instanceGroupManagers.deleteInstances"
            } else {
                "compute.instanceGroupManagers.get"
            };
            let Some(p) = found else {
                return (
                    rpc.into(),
                    google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such group"),
                );
            };
            if delete && method == Method::POST {
                return (rpc.into(), delete_instances(s, zone, igm, body));
            }
            if list && method == Method::POST {
                let instances: Vec<Value> = s
                    .members(p, igm)
                    .into_iter()
                    .map(|i| {
                        let name = instance_name(igm, i);
                        json!({
                            "instance": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{zone}/instances/{name}"),
                            "name": name,
                            "id": (1000 + i).to_string(),
                            "instanceStatus": "RUNNING",
                            "currentAction": "NONE",
                        })
                    })
                    .collect();
                return (rpc.into(), ok(json!({"managedInstances": instances})));
            }
            if !list && method == Method::GET {
                return (
                    rpc.into(),
                    ok(json!({
                        "kind": "compute#instanceGroupManager",
                        "name": igm,
                        "zone": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{zone}"),
                        "targetSize": s.target_size(p, igm),
                        "baseInstanceName": format!("gke-{CLUSTER}-{}", p.name),
                        "status": {"isStable": true},
                        "currentActions": {"none": p.per_zone, "creating": 0, "deleting": 0},
                    })),
                );
            }
        }
    }
    (
        format!("{method} {path}"),
        google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("the fake does not serve {method} {path}"),
        ),
    )
}

/// `instanceGroupManagers.deleteInstances`: `instances` as `zones/Z/instances/N` (or
/// full) URLs of this zone; with `skipInstancesOnValidationError`, one that is not a
/// member is skipped, else the call fails. The group's target size drops by as many;
/// the operation is DONE once the deletion is scheduled, as Compute documents.
fn delete_instances(s: &mut GcpState, zone: &str, igm: &str, body: &Value) -> Response {
    let skip = body["skipInstancesOnValidationError"].as_bool() == Some(true);
    let Some(urls) = body["instances"].as_array().filter(|a| !a.is_empty()) else {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "instances is required",
        );
    };
    let Some(p) = s
        .pools
        .iter()
        .find(|p| p.zones.iter().any(|z| group_name(&p.name, z) == igm))
    else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such group");
    };
    let members = s.members(p, igm);
    let mut gone = Vec::new();
    for url in urls {
        let url = url.as_str().unwrap_or_default();
        let Some((z, name)) = url
            .split_once("zones/")
            .and_then(|(_, rest)| rest.split_once("/instances/"))
        else {
            return google_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("malformed instance URL {url}"),
            );
        };
        if z != zone {
            return google_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("{url} is not in zone {zone}"),
            );
        }
        let member = members.iter().find(|i| instance_name(igm, **i) == name);
        match (member, skip) {
            (Some(i), _) => gone.push(*i),
            (None, true) => {}
            (None, false) => {
                return google_error(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    &format!("{url} is not a member of {igm}"),
                );
            }
        }
    }
    *s.shrunk.entry(igm.to_owned()).or_default() += gone.len() as u32;
    s.deleted.entry(igm.to_owned()).or_default().extend(gone);
    s.next_op += 1;
    ok(json!({
        "kind": "compute#operation",
        "name": format!("operation-{}", s.next_op),
        "zone": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{zone}"),
        "operationType": "compute.instanceGroupManagers.deleteInstances",
        "targetLink": format!("https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{zone}/instanceGroupManagers/{igm}"),
        "status": "DONE",
        "progress": 100,
    }))
}

pub fn group_name(pool: &str, zone: &str) -> String {
    format!("gke-{CLUSTER}-{pool}-{}-grp", &zone[zone.len() - 1..])
}

fn node_pool_body(p: &NodePool) -> Value {
    let urls: Vec<String> = p
        .zones
        .iter()
        .map(|z| {
            format!(
                "https://www.googleapis.com/compute/v1/projects/{PROJECT}/zones/{z}/instanceGroupManagers/{}",
                group_name(&p.name, z)
            )
        })
        .collect();
    let mut np = json!({
        "name": p.name,
        "config": {"machineType": "g2-standard-4", "diskSizeGb": 100, "spot": p.spot},
        "initialNodeCount": 1,
        "locations": p.zones,
        "selfLink": format!("https://container.googleapis.com/v1/projects/{PROJECT}/locations/{LOCATION}/clusters/{CLUSTER}/nodePools/{}", p.name),
        "version": "1.33.5-gke.1080000",
        "instanceGroupUrls": urls,
        "status": "RUNNING",
        "management": {"autoUpgrade": true, "autoRepair": true},
    });
    if p.autoscaling {
        np["autoscaling"] = json!({"enabled": true, "minNodeCount": 1, "maxNodeCount": 10, "locationPolicy": "BALANCED"});
    }
    np
}

fn operation_body(id: &str, status: &str, error: Option<Value>) -> Value {
    let mut op = json!({
        "name": id,
        "zone": LOCATION,
        "operationType": "SET_NODE_POOL_SIZE",
        "status": status,
        "selfLink": format!("https://container.googleapis.com/v1/projects/{PROJECT}/locations/{LOCATION}/operations/{id}"),
        "targetLink": format!("https://container.googleapis.com/v1/projects/{PROJECT}/locations/{LOCATION}/clusters/{CLUSTER}"),
        "startTime": "2026-11-28T08:00:00.000000Z",
    });
    if status == "DONE" {
        op["endTime"] = json!("2026-11-28T08:00:09.000000Z");
    }
    if let Some(e) = error {
        op["error"] = e;
    }
    op
}
