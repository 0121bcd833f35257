//! An in-test Azure Resource Manager for one VM Scale Set, over TLS (azure_core's
//! bearer-token policy refuses plain http), with Microsoft Entra ID's token endpoint.
//!
//! It serves the published request and response shapes (shared/data/cloud-api/azure:
//! `VirtualMachineScaleSet_Get`, `_Update`, the VM lists, the `OperationStatusResult`
//! of an `Azure-AsyncOperation` poll, the Compute RP's 429) and checks what it is
//! sent: the api-version, the bearer token, the PATCH body's fields and the VM list's
//! `$filter`. A request it does not expect is answered 400 and recorded, so a wrong
//! call fails the test that made it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const API_VERSION: &str = "2024-11-01";
pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";
pub const RESOURCE_GROUP: &str = "capstan-rg";
pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
pub const CLIENT_ID: &str = "capstan-client";
pub const CLIENT_SECRET: &str = "s3cret";
const TOKEN: &str = "arm-token-1";

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Value,
    pub status: u16,
}

/// What the next PATCH meets.
#[derive(Debug, Clone)]
pub enum PatchFault {
    /// 429 with this Retry-After (seconds), the Compute RP's documented body.
    Throttle(u64),
    /// The operation runs, then ends `Failed` with this code.
    FailOperation(&'static str),
    /// 409 at once with this code.
    Refuse(&'static str),
    /// 403 AuthorizationFailed.
    Forbidden,
}

#[derive(Debug)]
pub struct ScaleSet {
    pub name: String,
    pub capacity: u32,
    pub flexible: bool,
    /// The profile's priority is Spot.
    pub spot_profile: bool,
    /// `(baseRegularPriorityCount, regularPriorityPercentageAboveBase)`.
    pub mix: Option<(u32, u32)>,
    /// VM names and whether each is spot.
    pub vms: Vec<(String, bool)>,
    serial: u32,
}

impl ScaleSet {
    /// Brings the VMs to `capacity`, regular ones first as the mix asks.
    fn settle(&mut self) {
        let regular = match (self.flexible, self.mix) {
            (true, Some((base, above))) => {
                let rest = self.capacity.saturating_sub(base);
                base.min(self.capacity) + rest * above / 100
            }
            _ if self.spot_profile => 0,
            _ => self.capacity,
        };
        self.vms.truncate(self.capacity as usize);
        while self.vms.len() < self.capacity as usize {
            self.serial += 1;
            self.vms
                .push((format!("{}_{:08x}", self.name, self.serial), false));
        }
        for (i, vm) in self.vms.iter_mut().enumerate() {
            vm.1 = i as u32 >= regular;
        }
    }
}

#[derive(Debug, Default)]
struct Operation {
    polls_left: u32,
    capacity: Option<u32>,
    mix: Option<(u32, u32)>,
    fail: Option<&'static str>,
    /// VM names a `…/delete` removes when it ends.
    delete: Vec<String>,
}

/// A Uniform VM's `instanceId`: stable for its life, as Azure's are (the number its
/// name ends with).
pub fn instance_id(name: &str) -> String {
    let hex = name.rsplit('_').next().unwrap_or_default();
    u32::from_str_radix(hex, 16).unwrap_or(0).to_string()
}

#[derive(Debug)]
pub struct ArmState {
    pub set: ScaleSet,
    /// InProgress answers before an operation ends.
    pub polls: u32,
    /// Answer updates with `Location` (202 while running, 200 at the end) instead of
    /// `Azure-AsyncOperation`.
    pub location_polling: bool,
    pub fault: Option<PatchFault>,
    pub seen: Vec<Seen>,
    pub tokens_issued: u32,
    /// The scale set's ETag: changes with every accepted update.
    pub etag: u32,
    /// `If-Match` of every PATCH, in order.
    pub if_match: Vec<Option<String>>,
    ops: BTreeMap<String, Operation>,
    next_op: u32,
    base: String,
}

pub struct FakeArm {
    pub url: String,
    pub ca: std::path::PathBuf,
    pub state: Arc<Mutex<ArmState>>,
    handle: axum_server::Handle<std::net::SocketAddr>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for FakeArm {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl FakeArm {
    /// A scale set `name` of `capacity` VMs, served at `https://127.0.0.1:<port>`
    /// with a certificate from a test CA written under `dir`.
    pub fn start(
        dir: &Path,
        name: &str,
        capacity: u32,
        flexible: bool,
        spot_profile: bool,
    ) -> FakeArm {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let pki = super::pki(dir, &format!("arm-{name}"));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!(
            "https://127.0.0.1:{}",
            listener.local_addr().unwrap().port()
        );
        let mut set = ScaleSet {
            name: name.to_owned(),
            capacity,
            flexible,
            spot_profile,
            mix: flexible.then_some((capacity, 100)),
            vms: Vec::new(),
            serial: 0,
        };
        set.settle();
        let state = Arc::new(Mutex::new(ArmState {
            set,
            polls: 2,
            location_polling: false,
            fault: None,
            seen: Vec::new(),
            tokens_issued: 0,
            etag: 1,
            if_match: Vec::new(),
            ops: BTreeMap::new(),
            next_op: 0,
            base: url.clone(),
        }));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let handle = axum_server::Handle::new();
        let server_handle = handle.clone();
        let (cert, key) = (pki.cert.clone(), pki.key.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                    .await
                    .unwrap();
                axum_server::from_tcp_rustls(listener, config)
                    .unwrap()
                    .handle(server_handle)
                    .serve(app.into_make_service())
                    .await
                    .unwrap();
            });
        });
        FakeArm {
            url,
            ca: pki.ca,
            state,
            handle,
            thread: Some(thread),
        }
    }

    pub fn capacity(&self) -> u32 {
        self.state.lock().unwrap().set.capacity
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// The bodies of every PATCH that was accepted.
    pub fn patches(&self) -> Vec<Value> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "PATCH" && (s.status == 200 || s.status == 202))
            .map(|s| s.body)
            .collect()
    }

    /// Someone else updates the scale set: its ETag changes.
    pub fn touch(&self) {
        self.state.lock().unwrap().etag += 1;
    }

    /// Every operation still running ends at its next poll.
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
            .filter(|s| s.method == "GET" && s.path.contains("/operations/"))
            .count()
    }

    pub fn set_fault(&self, fault: Option<PatchFault>) {
        self.state.lock().unwrap().fault = fault;
    }

    pub fn scale_set_path(name: &str) -> String {
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachineScaleSets/{name}"
        )
    }
}

fn arm_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        json!({"error": {"code": code, "message": message}}).to_string(),
    )
        .into_response()
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(
    State(state): State<Arc<Mutex<ArmState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let query: BTreeMap<String, String> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let body_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    let response = route(&mut s, &method, &path, &query, &headers, &body);
    s.seen.push(Seen {
        method: method.to_string(),
        path,
        query,
        body: body_json,
        status: response.status().as_u16(),
    });
    response
}

fn route(
    s: &mut ArmState,
    method: &Method,
    path: &str,
    query: &BTreeMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    // Microsoft Entra ID: the client-credentials grant.
    if method == Method::POST && path == format!("/{TENANT}/oauth2/v2.0/token") {
        let form: BTreeMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        let scope_ok = form.get("scope") == Some(&format!("{}/.default", s.base));
        if form.get("grant_type").map(String::as_str) != Some("client_credentials") || !scope_ok {
            return json_response(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_request", "error_description": format!("AADSTS900144: bad request {form:?}"), "error_codes": [900144]}),
            );
        }
        if form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
            || form.get("client_secret").map(String::as_str) != Some(CLIENT_SECRET)
        {
            return json_response(
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided.", "error_codes": [7000215]}),
            );
        }
        s.tokens_issued += 1;
        return json_response(
            StatusCode::OK,
            json!({"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": TOKEN}),
        );
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return arm_error(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        );
    }
    if query.get("api-version").map(String::as_str) != Some(API_VERSION) {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            &format!(
                "The api-version '{:?}' is invalid.",
                query.get("api-version")
            ),
        );
    }
    let set_path = FakeArm::scale_set_path(&s.set.name);
    let vms_path = format!(
        "/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines"
    );
    let ops_prefix = format!(
        "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/westus/operations/"
    );
    match (method.clone(), path) {
        (Method::GET, p) if p == set_path => json_response(StatusCode::OK, scale_set_body(s)),
        (Method::GET, p)
            if p.starts_with(&FakeArm::scale_set_path("")) && !p.contains("/virtualMachines") =>
        {
            arm_error(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                "The Resource 'Microsoft.Compute/virtualMachineScaleSets' under resource group 'capstan-rg' was not found.",
            )
        }
        (Method::GET, p) if p == format!("{set_path}/virtualMachines") => {
            if s.set.flexible {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "OperationNotAllowed",
                    "Flexible scale sets list their VMs through virtualMachines",
                );
            }
            let from = query
                .get("$skiptoken")
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            json_response(StatusCode::OK, uniform_vms(s, from))
        }
        (Method::GET, p) if p == vms_path => {
            let want = format!("'virtualMachineScaleSet/id' eq '{set_path}'");
            if query.get("$filter") != Some(&want) {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameter",
                    &format!("$filter must be {want}"),
                );
            }
            json_response(StatusCode::OK, flexible_vms(s))
        }
        (Method::PATCH, p) if p == set_path => {
            // ARM's optimistic concurrency: an update names the ETag it was planned
            // against, and is refused once the set has changed.
            let if_match = headers
                .get("if-match")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            s.if_match.push(if_match.clone());
            if if_match.is_some_and(|m| m != format!("\"{}\"", s.etag)) {
                return arm_error(
                    StatusCode::PRECONDITION_FAILED,
                    "PreconditionFailed",
                    "The resource has been modified since it was read (ETag mismatch).",
                );
            }
            let response = patch(s, body);
            if response.status().is_success() {
                s.etag += 1;
            }
            response
        }
        (Method::POST, p) if p == format!("{set_path}/delete") => delete(s, body),
        (Method::GET, p) if p.starts_with(&ops_prefix) => {
            let id = &p[ops_prefix.len()..];
            poll(s, id)
        }
        _ => arm_error(
            StatusCode::BAD_REQUEST,
            "NoRegisteredProviderFound",
            &format!("the fake does not serve {method} {path}"),
        ),
    }
}

fn scale_set_body(s: &ArmState) -> Value {
    // VirtualMachineScaleSet_Get.json's shape, with this set's values.
    let set = &s.set;
    let mut props = json!({
        "singlePlacementGroup": false,
        "upgradePolicy": {"mode": "Manual"},
        "virtualMachineProfile": {
            "storageProfile": {"imageReference": {"publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server", "version": "latest"}},
            "priority": if set.spot_profile { "Spot" } else { "Regular" },
        },
        "provisioningState": "Succeeded",
        "overprovision": false,
        "orchestrationMode": if set.flexible { "Flexible" } else { "Uniform" },
        "timeCreated": "2026-11-01T10:00:00.000Z",
    });
    if let (true, Some((base, above))) = (set.flexible, set.mix) {
        props["priorityMixPolicy"] =
            json!({"baseRegularPriorityCount": base, "regularPriorityPercentageAboveBase": above});
    }
    json!({
        "name": set.name,
        "id": FakeArm::scale_set_path(&set.name),
        "type": "Microsoft.Compute/virtualMachineScaleSets",
        "location": "westus",
        "sku": {"name": "Standard_D2s_v3", "tier": "Standard", "capacity": set.capacity},
        "etag": format!("\"{}\"", s.etag),
        "properties": props,
    })
}

fn uniform_vms(s: &ArmState, from: usize) -> Value {
    // VirtualMachineScaleSetVM_List: instanceId, name, sku, provisioningState; pages
    // of two, joined by nextLink.
    let set = &s.set;
    let path = FakeArm::scale_set_path(&set.name);
    let value: Vec<Value> = set
        .vms
        .iter()
        .enumerate()
        .skip(from)
        .take(2)
        .map(|(_, (name, _))| {
            json!({
                "name": name,
                "id": format!("{path}/virtualMachines/{}", instance_id(name)),
                "type": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
                "instanceId": instance_id(name),
                "location": "westus",
                "sku": {"name": "Standard_D2s_v3", "tier": "Standard"},
                "zones": ["1"],
                "properties": {"latestModelApplied": true, "provisioningState": "Succeeded", "vmId": format!("vm-{}", instance_id(name))},
            })
        })
        .collect();
    let mut page = json!({ "value": value });
    if from + 2 < set.vms.len() {
        page["nextLink"] = json!(format!(
            "{}{path}/virtualMachines?api-version={API_VERSION}&$skiptoken={}",
            s.base,
            from + 2
        ));
    }
    page
}

fn flexible_vms(s: &ArmState) -> Value {
    // VirtualMachines_List with $filter: each VM names its scale set and priority.
    let set = &s.set;
    let value: Vec<Value> = set
        .vms
        .iter()
        .map(|(name, spot)| {
            json!({
                "name": name,
                "id": format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines/{name}"),
                "type": "Microsoft.Compute/virtualMachines",
                "location": "westus",
                "zones": ["2"],
                "properties": {
                    "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
                    "virtualMachineScaleSet": {"id": FakeArm::scale_set_path(&set.name)},
                    "priority": if *spot { "Spot" } else { "Regular" },
                    "evictionPolicy": if *spot { Some("Delete") } else { None },
                    "provisioningState": "Succeeded",
                },
            })
        })
        .collect();
    json!({"value": value})
}

fn patch(s: &mut ArmState, body: &[u8]) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return arm_error(StatusCode::BAD_REQUEST, "InvalidRequestContent", "not JSON");
    };
    // Only sku.capacity and properties.priorityMixPolicy may be sent.
    let keys: Vec<&String> = body
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    let props_ok = body.get("properties").is_none_or(|p| {
        p.as_object()
            .is_some_and(|o| o.keys().all(|k| k == "priorityMixPolicy"))
    });
    let capacity = body["sku"]["capacity"].as_u64();
    if keys.iter().any(|k| *k != "sku" && *k != "properties") || !props_ok || capacity.is_none() {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            &format!("unexpected PATCH body {body}"),
        );
    }
    let mix = body["properties"]["priorityMixPolicy"]
        .as_object()
        .map(|m| {
            (
                m["baseRegularPriorityCount"].as_u64().unwrap() as u32,
                m["regularPriorityPercentageAboveBase"].as_u64().unwrap() as u32,
            )
        });
    if mix.is_some() && !s.set.flexible {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "PropertyChangeNotAllowed",
            "priorityMixPolicy applies to Flexible scale sets only",
        );
    }
    let mut fail = None;
    match s.fault.take() {
        Some(PatchFault::Throttle(secs)) => {
            // compute_throttling_429_sample.json, in the CloudError envelope.
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    ("x-ms-ratelimit-remaining-resource", "Microsoft.Compute/HighCostGet30Min;0".to_owned()),
                    ("retry-after", secs.to_string()),
                    ("content-type", "application/json; charset=utf-8".to_owned()),
                ],
                json!({"error": {
                    "code": "OperationNotAllowed",
                    "message": "The server rejected the request because too many requests have been received for this subscription.",
                    "details": [{"code": "TooManyRequests", "target": "HighCostGet30Min",
                                 "message": "{\"operationGroup\":\"HighCostGet30Min\",\"allowedRequestCount\":800,\"measuredRequestCount\":1238}"}]
                }})
                .to_string(),
            )
                .into_response();
        }
        Some(PatchFault::Refuse(code)) => {
            return arm_error(
                StatusCode::CONFLICT,
                code,
                "The requested size is not available in the location.",
            );
        }
        Some(PatchFault::Forbidden) => {
            return arm_error(
                StatusCode::FORBIDDEN,
                "AuthorizationFailed",
                "The client does not have authorization to perform action 'Microsoft.Compute/virtualMachineScaleSets/write'.",
            );
        }
        Some(PatchFault::FailOperation(code)) => fail = Some(code),
        None => {}
    }
    let async_op = start(
        s,
        Operation {
            capacity: capacity.map(|c| c as u32),
            mix,
            fail,
            ..Default::default()
        },
    );
    if s.location_polling {
        return (
            StatusCode::ACCEPTED,
            [("location", async_op), ("retry-after", "0".to_owned())],
        )
            .into_response();
    }
    let mut body = scale_set_body(s);
    body["properties"]["provisioningState"] = json!("Updating");
    (
        StatusCode::OK,
        [
            ("azure-asyncoperation", async_op),
            ("retry-after", "0".to_owned()),
            ("content-type", "application/json".to_owned()),
        ],
        body.to_string(),
    )
        .into_response()
}

/// Starts an operation; its status URL.
fn start(s: &mut ArmState, op: Operation) -> String {
    s.next_op += 1;
    let id = format!("{:08x}-0000-4000-8000-{:012x}", s.next_op, s.next_op);
    s.ops.insert(
        id.clone(),
        Operation {
            polls_left: s.polls,
            ..op
        },
    );
    format!(
        "{}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/locations/westus/operations/{id}?api-version={API_VERSION}",
        s.base
    )
}

/// `VirtualMachineScaleSets_DeleteInstances`: `{"instanceIds": [...]}` (a Uniform
/// set's instance ids, a Flexible set's VM names), every one the set's; 202 with the
/// operation to poll, which deletes them and lowers the capacity by as many.
fn delete(s: &mut ArmState, body: &[u8]) -> Response {
    let ids: Option<Vec<String>> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|b| b.as_object().filter(|o| o.len() == 1).cloned())
        .and_then(|o| o.get("instanceIds").cloned())
        .and_then(|v| serde_json::from_value(v).ok());
    let Some(ids) = ids.filter(|ids| !ids.is_empty()) else {
        return arm_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameter",
            "the body must be {\"instanceIds\": [...]}",
        );
    };
    let flexible = s.set.flexible;
    let mut names = Vec::new();
    for id in &ids {
        let found = s.set.vms.iter().find(|(name, _)| {
            if flexible {
                name == id
            } else {
                instance_id(name) == *id
            }
        });
        match found {
            Some((name, _)) => names.push(name.clone()),
            None => {
                return arm_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameter",
                    &format!("instance id {id} is not in the scale set"),
                );
            }
        }
    }
    let async_op = start(
        s,
        Operation {
            delete: names,
            ..Default::default()
        },
    );
    let header = if s.location_polling {
        "location"
    } else {
        "azure-asyncoperation"
    };
    (
        StatusCode::ACCEPTED,
        [(header, async_op), ("retry-after", "0".to_owned())],
    )
        .into_response()
}

fn poll(s: &mut ArmState, id: &str) -> Response {
    let Some(op) = s.ops.get_mut(id) else {
        return arm_error(StatusCode::NOT_FOUND, "NotFound", "no such operation");
    };
    if op.polls_left > 0 {
        op.polls_left -= 1;
        if s.location_polling {
            return (StatusCode::ACCEPTED, [("retry-after", "0")]).into_response();
        }
        return (
            StatusCode::OK,
            [("retry-after", "0"), ("content-type", "application/json")],
            json!({"name": id, "status": "InProgress", "startTime": "2026-11-28T08:00:00Z"})
                .to_string(),
        )
            .into_response();
    }
    let op = s.ops.remove(id).unwrap();
    if let Some(code) = op.fail {
        return json_response(
            StatusCode::OK,
            json!({"name": id, "status": "Failed", "startTime": "2026-11-28T08:00:00Z", "endTime": "2026-11-28T08:00:05Z",
                   "error": {"code": code, "message": "Allocation failed. We do not have sufficient capacity for the requested VM size in this region."}}),
        );
    }
    if let Some(c) = op.capacity {
        s.set.capacity = c;
    }
    if !op.delete.is_empty() {
        s.set.vms.retain(|(name, _)| !op.delete.contains(name));
        s.set.capacity = s.set.vms.len() as u32;
    }
    if op.mix.is_some() {
        s.set.mix = op.mix;
    }
    s.set.settle();
    if s.location_polling {
        return json_response(StatusCode::OK, scale_set_body(s));
    }
    json_response(
        StatusCode::OK,
        json!({"name": id, "status": "Succeeded", "startTime": "2026-11-28T08:00:00Z", "endTime": "2026-11-28T08:00:05Z"}),
    )
}
