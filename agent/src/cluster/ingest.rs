//! The leader's ingest of node reports (`POST /v1/reports`) and the table of nodes it
//! has heard from.
//!
//! Every report is checked before it touches the table, in this order, and a refusal
//! names its reason (a label of `capstan_reports_rejected_total`) and, where there is
//! one, the failing field:
//!
//! | check | status | reason |
//! |---|---|---|
//! | bearer token (constant-time compare), from the headers before the body is read: the shared token, or the token of the node `X-Capstan-Node` names ([`identity`]), under `cluster.token_file`'s secret or, during a rotation, `previous_token_file`'s | 401, or 403 without `cluster.token_file` | `unauthorized` |
//! | size, at most [`MAX_REPORT_BYTES`] | 413 | `too_large` |
//! | JSON of the report's shape | 400 | `malformed` |
//! | encoding version | 400 | `unsupported_version` |
//! | per-node tokens: the report's `node_id` is the node the token is for | 403 | `wrong_node` |
//! | finite, in-range numbers (a workload value within its `[[scrape]]` `min`/`max`, 0 and up by default), sane names and sizes, `at` not in the future | 422 | `invalid` |
//! | a pool the leader knows | 422 | `unknown_pool` |
//! | once the pool's reports match its instances, an instance of the pool ([`Ingest::set_members`]) | 422 | `unknown_node` |
//! | at most [`REPORTS_PER_INTERVAL`] per node per interval (only that node's own reports count) | 429 | `rate_limited` |
//! | a node already in the table, or room for one more (`cluster.max_nodes`) | 503 | `table_full` |
//!
//! A refused report changes nothing. The table keeps each node's latest report with the
//! leader's time of receipt (node clocks may be off): a node silent for three intervals
//! is *stale* (its instance counts as missing under HPA's rules), and after
//! `cluster.node_expiry` it is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use capstan_collectors::{NodeReport, ReportAnswer, ReportError};

use capstan_config::raw::ClusterAuth;

use crate::clock::Clock;
use crate::cluster::identity::Secret;
use crate::telemetry::metrics::{Metrics, PoolLabel, ReasonLabel};
use crate::telemetry::status::PoolNodes;

/// The largest report body the leader reads.
pub const MAX_REPORT_BYTES: usize = 64 * 1024;
/// Reports one node may send per interval before it is refused (a node reports once an
/// interval; the slack covers retries and a restart).
pub const REPORTS_PER_INTERVAL: u32 = 3;
/// How far ahead of the leader's clock a report's `at` may be.
const MAX_CLOCK_AHEAD: chrono::Duration = chrono::Duration::minutes(5);
/// Bounds on a report's lists and names.
const MAX_LIST: usize = 4096;
const MAX_NAME: usize = 253;

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejection {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// The `reason` label.
    pub reason: &'static str,
    /// The failing field, as a path (`host.cpu_percent`, `workload["rps"]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong, for a person.
    pub error: String,
}

impl Rejection {
    fn new(status: u16, reason: &'static str, field: Option<&str>, error: String) -> Self {
        Self {
            status,
            reason,
            field: field.map(str::to_owned),
            error,
        }
    }

    fn invalid(field: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            status: 422,
            reason: "invalid",
            field: Some(field.into()),
            error: error.into(),
        }
    }
}

/// What ingest checks against; replaced on reload.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The cluster secret (`node-hmac`) or the shared token reports must carry; `None`
    /// refuses every report.
    pub token: Option<Secret>,
    /// The secret or token being rotated out (`cluster.previous_token_file`): accepted
    /// as well until a reload drops it.
    pub previous: Option<Secret>,
    /// How the sender of a report is known.
    pub auth: ClusterAuth,
    /// Most nodes in the table (0: no limit).
    pub max_nodes: usize,
    /// Each workload metric's allowed values (`[[scrape]]` `min`, `max`); a metric not
    /// listed takes 0 and up.
    pub workload_ranges: HashMap<String, (f64, Option<f64>)>,
    /// Pools the leader plans.
    pub pools: HashSet<String>,
    /// The agents' interval: rate limit window and staleness unit.
    pub interval: Duration,
    /// When a silent node is dropped.
    pub node_expiry: Duration,
}

#[derive(Debug, Clone)]
struct Entry {
    report: Arc<NodeReport>,
    received: DateTime<Utc>,
    /// Start of the node's rate window and the reports accepted in it.
    window: (DateTime<Utc>, u32),
}

/// Reports received, and the checks they pass through.
#[derive(Debug)]
pub struct Ingest {
    /// Read on every report: shared, so a report clones a pointer, not the pool set.
    settings: RwLock<Arc<Settings>>,
    /// Per pool whose reports match its instances, the instance ids (the leader's
    /// last describe).
    members: RwLock<HashMap<String, Arc<HashSet<String>>>>,
    /// What the leader answers each node's report (targeted scale-in's drains), by
    /// node id; set after each pass.
    answers: RwLock<HashMap<String, ReportAnswer>>,
    nodes: Mutex<HashMap<String, Entry>>,
    clock: Arc<dyn Clock>,
}

/// Who sent a report, as far as the request's headers show before its body is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// Any node: it presented the shared token (`cluster.auth = "shared-token"`).
    AnyNode,
    /// This node: the request named it, and its token is this node's.
    Node(String),
    /// A per-node token from a request that named no node (an agent from before the
    /// header): checked against the report's `node_id` once the body is read.
    Unnamed(String),
}

fn to_chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// A node whose last report is older than this (three intervals) is stale: its report
/// no longer counts, and its instance counts as missing.
pub fn stale_after(interval: Duration) -> chrono::Duration {
    to_chrono(interval * 3)
}

impl Ingest {
    /// An empty table.
    pub fn new(settings: Settings, clock: Arc<dyn Clock>) -> Self {
        Self {
            settings: RwLock::new(Arc::new(settings)),
            members: RwLock::new(HashMap::new()),
            answers: RwLock::new(HashMap::new()),
            nodes: Mutex::new(HashMap::new()),
            clock,
        }
    }

    /// Replaces the settings (a reload). Nodes of pools no longer known are dropped.
    pub fn configure(&self, settings: Settings) {
        self.lock_nodes().retain(|_, e| {
            e.report
                .pool
                .as_ref()
                .is_some_and(|p| settings.pools.contains(p))
        });
        *self
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(settings);
    }

    fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn lock_nodes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks a request's credentials from its headers, before its body is read:
    /// `authorization` is its `Authorization` header, `node` its `X-Capstan-Node`.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        node: Option<&str>,
    ) -> Result<Sender, Rejection> {
        let settings = self.settings();
        let Some(secret) = settings.token.as_ref() else {
            return Err(Rejection::new(
                403,
                "unauthorized",
                None,
                "this agent takes no reports: cluster.token_file is not set".to_owned(),
            ));
        };
        let presented = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .unwrap_or("");
        let wrong = || {
            Rejection::new(
                401,
                "unauthorized",
                None,
                "missing or wrong bearer token".to_owned(),
            )
        };
        // The current secret, and during a rotation the previous one.
        let secrets = || std::iter::once(secret).chain(settings.previous.as_ref());
        match (settings.auth, node) {
            (ClusterAuth::SharedToken, _) => secrets()
                .any(|s| s.is_shared_token(presented))
                .then_some(Sender::AnyNode)
                .ok_or_else(wrong),
            (ClusterAuth::NodeHmac, Some(node)) => secrets()
                .any(|s| s.verifies(node, presented))
                .then(|| Sender::Node(node.to_owned()))
                .ok_or_else(wrong),
            (ClusterAuth::NodeHmac, None) if presented.is_empty() => Err(wrong()),
            (ClusterAuth::NodeHmac, None) => Ok(Sender::Unnamed(presented.to_owned())),
        }
    }

    /// Checks and stores one report from the wire: [`Ingest::authenticate`], then
    /// [`Ingest::take`].
    pub fn accept(
        &self,
        authorization: Option<&str>,
        node: Option<&str>,
        body: &[u8],
    ) -> Result<ReportAnswer, Rejection> {
        let sender = self.authenticate(authorization, node)?;
        self.take(&sender, None, body)
    }

    /// Checks and stores the report in `body` from `sender` (as
    /// [`Ingest::authenticate`] found it); over mutual TLS, `certified` are the nodes
    /// the client certificate names, and the report must be one of them. Taken, the
    /// answer is what the leader asks of that node.
    pub fn take(
        &self,
        sender: &Sender,
        certified: Option<&[String]>,
        body: &[u8],
    ) -> Result<ReportAnswer, Rejection> {
        let settings = self.settings();
        if body.len() > MAX_REPORT_BYTES {
            return Err(too_large(Some(body.len())));
        }
        let report = decode(body)?;
        let from_another = match sender {
            Sender::AnyNode => false,
            Sender::Node(node) => *node != report.node_id,
            Sender::Unnamed(presented) => {
                // Unnamed, a token that is not this node's may be garbage as well as
                // another node's: refused as a wrong token.
                let verified = settings
                    .token
                    .iter()
                    .chain(&settings.previous)
                    .any(|secret| secret.verifies(&report.node_id, presented));
                if !verified {
                    return Err(Rejection::new(
                        401,
                        "unauthorized",
                        None,
                        format!(
                            "missing or wrong bearer token for node {:?}",
                            report.node_id
                        ),
                    ));
                }
                false
            }
        };
        if let Some(names) = certified
            && !names.contains(&report.node_id)
        {
            return Err(Rejection::new(
                403,
                "wrong_node",
                Some("node_id"),
                format!(
                    "the client certificate names {names:?}, not node {:?}: a node reports only as itself",
                    report.node_id
                ),
            ));
        }
        if from_another {
            return Err(Rejection::new(
                403,
                "wrong_node",
                Some("node_id"),
                format!(
                    "this request's token is not node {:?}'s: a node reports only as itself",
                    report.node_id
                ),
            ));
        }
        let now = self.clock.now();
        validate(&report, &settings.pools, now)?;
        self.is_member(&report)?;
        workload_in_range(&report, &settings.workload_ranges)?;
        let node = report.node_id.clone();
        self.store(report, now, Some((settings.interval, settings.max_nodes)))?;
        Ok(self.answer_for(&node))
    }

    /// Sets what the leader answers each node's report (after each pass): a drain for
    /// each node chosen for scale-in, an undrain for each returned to service.
    pub fn set_answers(&self, answers: HashMap<String, ReportAnswer>) {
        *self
            .answers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = answers;
    }

    /// What the leader asks of `node` (nothing, mostly).
    pub fn answer_for(&self, node: &str) -> ReportAnswer {
        self.answers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(node)
            .cloned()
            .unwrap_or_default()
    }

    /// Sets the instance ids of each pool whose reports match its instances (the
    /// leader's pass); a pool left out takes reports from any id.
    pub fn set_members(&self, members: HashMap<String, Arc<HashSet<String>>>) {
        *self
            .members
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = members;
    }

    /// A report into a pool with known members must come from one of them.
    fn is_member(&self, report: &NodeReport) -> Result<(), Rejection> {
        let members = self
            .members
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match report.pool.as_ref().and_then(|p| members.get(p)) {
            Some(ids) if !ids.contains(&report.node_id) => Err(Rejection::new(
                422,
                "unknown_node",
                Some("node_id"),
                format!(
                    "{:?} is not an instance of pool {:?} (its reports match its instances; a new instance is known from the leader's next look at the pool)",
                    report.node_id,
                    report.pool.as_deref().unwrap_or_default()
                ),
            )),
            _ => Ok(()),
        }
    }

    /// Stores this agent's own report (no token, no rate limit).
    pub fn insert_local(&self, report: NodeReport) {
        let now = self.clock.now();
        // Our own report passed no wire: the checks that matter are done by the collector.
        let _ = self.store(report, now, None);
    }

    /// Stores `report`; from the wire (`limits`: the interval, the table's cap), only
    /// within the node's rate and the table's room.
    fn store(
        &self,
        report: NodeReport,
        now: DateTime<Utc>,
        limits: Option<(Duration, usize)>,
    ) -> Result<(), Rejection> {
        let mut nodes = self.lock_nodes();
        if let Some((_, max_nodes)) = limits
            && max_nodes > 0
            && nodes.len() >= max_nodes
            && !nodes.contains_key(&report.node_id)
        {
            return Err(Rejection::new(
                503,
                "table_full",
                Some("node_id"),
                format!(
                    "the leader already holds {max_nodes} nodes (cluster.max_nodes); node {:?} is not one of them",
                    report.node_id
                ),
            ));
        }
        let window = match (nodes.get(&report.node_id), limits.map(|(i, _)| i)) {
            (Some(e), Some(interval)) => {
                let (start, count) = e.window;
                if now - start < to_chrono(interval) {
                    if count >= REPORTS_PER_INTERVAL {
                        return Err(Rejection::new(
                            429,
                            "rate_limited",
                            Some("node_id"),
                            format!(
                                "node {} sent more than {REPORTS_PER_INTERVAL} reports within one interval ({}s)",
                                report.node_id,
                                interval.as_secs_f64()
                            ),
                        ));
                    }
                    (start, count + 1)
                } else {
                    (now, 1)
                }
            }
            _ => (now, 1),
        };
        nodes.insert(
            report.node_id.clone(),
            Entry {
                report: Arc::new(report),
                received: now,
                window,
            },
        );
        Ok(())
    }

    /// Reports received within three intervals of `now` (shared, not copied).
    pub fn fresh(&self, now: DateTime<Utc>) -> Vec<Arc<NodeReport>> {
        let max_age = stale_after(self.settings().interval);
        self.lock_nodes()
            .values()
            .filter(|e| now - e.received <= max_age)
            .map(|e| e.report.clone())
            .collect()
    }

    /// Drops nodes silent for longer than `cluster.node_expiry`, and returns each
    /// pool's reporting and stale nodes, by name.
    pub fn sweep(&self, now: DateTime<Utc>) -> BTreeMap<String, PoolNodes> {
        let settings = self.settings();
        let max_age = stale_after(settings.interval);
        let expiry = to_chrono(settings.node_expiry).max(max_age);
        let mut nodes = self.lock_nodes();
        nodes.retain(|_, e| now - e.received <= expiry);
        let mut pools: BTreeMap<String, PoolNodes> = settings
            .pools
            .iter()
            .map(|p| (p.clone(), PoolNodes::default()))
            .collect();
        for (id, e) in nodes.iter() {
            let Some(p) = e.report.pool.as_ref().and_then(|p| pools.get_mut(p)) else {
                continue;
            };
            if now - e.received <= max_age {
                p.reporting.push(id.clone());
            } else {
                p.stale.push(id.clone());
            }
        }
        for p in pools.values_mut() {
            p.reporting.sort();
            p.stale.sort();
        }
        pools
    }

    /// Forgets every node (this agent stopped leading: the next leader has its own table).
    pub fn clear(&self) {
        self.lock_nodes().clear();
        self.set_members(HashMap::new());
        self.set_answers(HashMap::new());
    }
}

/// Exports a sweep as `capstan_pool_nodes_reporting` and `capstan_pool_nodes_stale`.
pub fn export(metrics: &Metrics, pools: &BTreeMap<String, PoolNodes>) {
    for (pool, nodes) in pools {
        let label = PoolLabel { pool: pool.clone() };
        metrics
            .pool_nodes_reporting
            .get_or_create(&label)
            .set(i64::try_from(nodes.reporting.len()).unwrap_or(i64::MAX));
        metrics
            .pool_nodes_stale
            .get_or_create(&label)
            .set(i64::try_from(nodes.stale.len()).unwrap_or(i64::MAX));
    }
}

/// Counts a refusal.
pub fn count(metrics: &Metrics, rejection: &Rejection) {
    metrics
        .reports_rejected
        .get_or_create(&ReasonLabel {
            reason: rejection.reason.to_owned(),
        })
        .inc();
}

/// The refusal of a body over [`MAX_REPORT_BYTES`] (of `len` bytes, when known).
pub fn too_large(len: Option<usize>) -> Rejection {
    let size = len.map_or_else(
        || "a report".to_owned(),
        |n| format!("a report of {n} bytes"),
    );
    Rejection::new(
        413,
        "too_large",
        None,
        format!("{size} is over the limit of {MAX_REPORT_BYTES} bytes"),
    )
}

/// Parses a report, naming the failing field of a malformed one.
pub fn decode(body: &[u8]) -> Result<NodeReport, Rejection> {
    match NodeReport::decode(body) {
        Ok(r) => Ok(r),
        Err(ReportError::UnsupportedVersion { found }) => Err(Rejection::new(
            400,
            "unsupported_version",
            Some("version"),
            format!(
                "report version {found}; this leader reads version {}",
                capstan_collectors::REPORT_VERSION
            ),
        )),
        Err(ReportError::Malformed(e)) => {
            // Parse again to learn where it failed: the path of the failing field.
            let mut de = serde_json::Deserializer::from_slice(body);
            let field = serde_path_to_error::deserialize::<_, NodeReport>(&mut de)
                .err()
                .map(|pe| pe.path().to_string())
                .filter(|p| p != "." && p != "?");
            Err(Rejection::new(
                400,
                "malformed",
                field.as_deref(),
                format!("not a node report: {e}"),
            ))
        }
    }
}

fn finite_in(field: &str, v: f64, lo: f64, hi: f64) -> Result<(), Rejection> {
    if !v.is_finite() {
        return Err(Rejection::invalid(
            field,
            format!("{v} is not a finite number"),
        ));
    }
    if v < lo || v > hi {
        return Err(Rejection::invalid(
            field,
            format!("{v} is out of range; allowed: {lo} to {hi}"),
        ));
    }
    Ok(())
}

fn name(field: &str, s: &str) -> Result<(), Rejection> {
    if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(Rejection::invalid(
            field,
            format!("must be 1 to {MAX_NAME} characters, none of them control characters"),
        ));
    }
    Ok(())
}

fn list(field: &str, n: usize) -> Result<(), Rejection> {
    if n > MAX_LIST {
        return Err(Rejection::invalid(
            field,
            format!("{n} entries; at most {MAX_LIST}"),
        ));
    }
    Ok(())
}

/// The checks on a decoded report (see the module documentation).
pub fn validate(
    report: &NodeReport,
    pools: &HashSet<String>,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    name("node_id", &report.node_id)?;
    if report.at - now > MAX_CLOCK_AHEAD {
        return Err(Rejection::invalid(
            "at",
            format!(
                "{} is more than {} minutes ahead of the leader's clock ({now})",
                report.at,
                MAX_CLOCK_AHEAD.num_minutes()
            ),
        ));
    }
    if let Some(h) = &report.host {
        finite_in("host.cpu_percent", h.cpu_percent, 0.0, 100.0)?;
        list("host.cpu_per_core_percent", h.cpu_per_core_percent.len())?;
        for (i, v) in h.cpu_per_core_percent.iter().enumerate() {
            finite_in(&format!("host.cpu_per_core_percent[{i}]"), *v, 0.0, 100.0)?;
        }
        let max_load = 1e6;
        finite_in("host.load.one", h.load.one, 0.0, max_load)?;
        finite_in("host.load.five", h.load.five, 0.0, max_load)?;
        finite_in("host.load.fifteen", h.load.fifteen, 0.0, max_load)?;
        if h.memory.available_bytes > h.memory.total_bytes {
            return Err(Rejection::invalid(
                "host.memory.available_bytes",
                "exceeds host.memory.total_bytes",
            ));
        }
        list("host.disks", h.disks.len())?;
        for (i, d) in h.disks.iter().enumerate() {
            name(&format!("host.disks[{i}].mount_point"), &d.mount_point)?;
            if d.available_bytes > d.total_bytes {
                return Err(Rejection::invalid(
                    format!("host.disks[{i}].available_bytes"),
                    "exceeds total_bytes",
                ));
            }
        }
        list("host.network", h.network.len())?;
        for (i, n) in h.network.iter().enumerate() {
            name(&format!("host.network[{i}].interface"), &n.interface)?;
            finite_in(
                &format!("host.network[{i}].rx_bytes_per_second"),
                n.rx_bytes_per_second,
                0.0,
                f64::MAX,
            )?;
            finite_in(
                &format!("host.network[{i}].tx_bytes_per_second"),
                n.tx_bytes_per_second,
                0.0,
                f64::MAX,
            )?;
        }
    }
    list("gpus", report.gpus.len())?;
    for (i, g) in report.gpus.iter().enumerate() {
        let f = |k: &str| format!("gpus[{i}].{k}");
        name(&f("uuid"), if g.uuid.is_empty() { "-" } else { &g.uuid })?;
        let checks = [
            ("utilization_percent", g.utilization_percent, 0.0, 100.0),
            (
                "memory_utilization_percent",
                g.memory_utilization_percent,
                0.0,
                100.0,
            ),
            ("temperature_celsius", g.temperature_celsius, -50.0, 200.0),
            ("power_watts", g.power_watts, 0.0, 1e5),
            ("power_limit_watts", g.power_limit_watts, 0.0, 1e5),
        ];
        for (key, v, lo, hi) in checks {
            if let Some(v) = v {
                finite_in(&f(key), v, lo, hi)?;
            }
        }
        if let (Some(u), Some(t)) = (g.memory_used_bytes, g.memory_total_bytes)
            && u > t
        {
            return Err(Rejection::invalid(
                f("memory_used_bytes"),
                "exceeds memory_total_bytes",
            ));
        }
    }
    if let Some(i) = &report.interruption {
        name("interruption.kind", &i.kind)?;
    }
    list("workload", report.workload.len())?;
    for (k, v) in &report.workload {
        name(&format!("workload[{k:?}]"), k)?;
        finite_in(&format!("workload[{k:?}]"), *v, f64::MIN, f64::MAX)?;
    }
    match &report.pool {
        None => Err(Rejection::invalid(
            "pool",
            "is required: the leader aggregates reports by pool (set agent.pool on the node)",
        )),
        Some(p) if !pools.contains(p) => Err(Rejection::new(
            422,
            "unknown_pool",
            Some("pool"),
            format!(
                "pool {p:?} is not one the leader plans (known: {})",
                sorted(pools).join(", ")
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Each workload value within its metric's declared range (0 and up when undeclared):
/// a negative or huge value would send a pool to its min or past its max.
pub fn workload_in_range(
    report: &NodeReport,
    ranges: &HashMap<String, (f64, Option<f64>)>,
) -> Result<(), Rejection> {
    for (k, v) in &report.workload {
        let (lo, hi) = ranges.get(k).copied().unwrap_or((0.0, None));
        if *v < lo || hi.is_some_and(|hi| *v > hi) {
            let allowed = match hi {
                Some(hi) => format!("{lo} to {hi}"),
                None => format!("{lo} and up"),
            };
            return Err(Rejection::invalid(
                format!("workload[{k:?}]"),
                format!("{v} is out of range; allowed: {allowed} (the [[scrape]]'s min and max)"),
            ));
        }
    }
    Ok(())
}

fn sorted(pools: &HashSet<String>) -> Vec<&str> {
    let mut v: Vec<&str> = pools.iter().map(String::as_str).collect();
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::ManualClock;

    fn ingest(clock: &Arc<ManualClock>) -> Ingest {
        Ingest::new(
            Settings {
                token: Some(Secret::new("s3cret")),
                auth: ClusterAuth::SharedToken,
                pools: ["web".to_owned()].into(),
                interval: Duration::from_secs(10),
                node_expiry: Duration::from_secs(300),
                ..Settings::default()
            },
            clock.clone(),
        )
    }

    fn report(node: &str, at: DateTime<Utc>) -> NodeReport {
        let mut r = NodeReport::new(node, Some("web".into()), at);
        r.workload.insert("rps".into(), 120.0);
        r
    }

    const AUTH: Option<&str> = Some("Bearer s3cret");

    #[test]
    fn each_bad_report_is_refused_with_its_reason_and_changes_nothing() {
        let clock = Arc::new(ManualClock::at("2026-11-28T00:00:00Z"));
        let i = ingest(&clock);
        let now = clock.now();
        let good = report("a", now).encode();
        // (authorization, body, status, reason, field)
        type Case<'a> = (Option<&'a str>, Vec<u8>, u16, &'a str, Option<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (None, good.clone(), 401, "unauthorized", None),
            (Some("Bearer wrong"), good.clone(), 401, "unauthorized", None),
            (Some("s3cret"), good.clone(), 401, "unauthorized", None),
            (AUTH, vec![b' '; MAX_REPORT_BYTES + 1], 413, "too_large", None),
            (AUTH, b"{not json".to_vec(), 400, "malformed", None),
            (
                AUTH,
                br#"{"version":1,"node_id":"a","at":"2026-11-28T00:00:00Z","workload":{"rps":"x"}}"#
                    .to_vec(),
                400,
                "malformed",
                Some("workload.rps"),
            ),
            (
                AUTH,
                br#"{"version":1,"node_id":"a","pool":"web","at":"2026-11-28T00:00:00Z","workload":{"rps":NaN}}"#
                    .to_vec(),
                400,
                "malformed",
                Some("workload.rps"),
            ),
            (
                AUTH,
                br#"{"version":9,"node_id":"a","at":"2026-11-28T00:00:00Z"}"#.to_vec(),
                400,
                "unsupported_version",
                Some("version"),
            ),
            (
                AUTH,
                {
                    let mut r = report("a", now);
                    r.pool = Some("db".into());
                    r.encode()
                },
                422,
                "unknown_pool",
                Some("pool"),
            ),
            (
                AUTH,
                {
                    let mut r = report("a", now);
                    r.pool = None;
                    r.encode()
                },
                422,
                "invalid",
                Some("pool"),
            ),
            (
                AUTH,
                report("", now).encode(),
                422,
                "invalid",
                Some("node_id"),
            ),
            (
                AUTH,
                report("a", now + chrono::Duration::hours(1)).encode(),
                422,
                "invalid",
                Some("at"),
            ),
        ];
        for (auth, body, status, reason, field) in cases {
            let r = i.accept(auth, None, &body).unwrap_err();
            assert_eq!(
                (r.status, r.reason, r.field.as_deref()),
                (status, reason, field),
                "{r:?}"
            );
            assert!(i.fresh(now).is_empty(), "a refused report was stored");
        }
    }

    #[test]
    fn out_of_range_numbers_name_their_field() {
        let now: DateTime<Utc> = "2026-11-28T00:00:00Z".parse().unwrap();
        let pools: HashSet<String> = ["web".to_owned()].into();
        let mut r = report("a", now);
        r.workload.insert("lat".into(), f64::INFINITY);
        let e = validate(&r, &pools, now).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("workload[\"lat\"]"));
        let r = crate::testutil::cpu_report("a", "web", 140.0, now);
        let e = validate(&r, &pools, now).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("host.cpu_percent"));
        assert!(e.error.contains("out of range"), "{}", e.error);
    }

    #[test]
    fn a_node_is_rate_limited_per_interval() {
        let clock = Arc::new(ManualClock::at("2026-11-28T00:00:00Z"));
        let i = ingest(&clock);
        for _ in 0..REPORTS_PER_INTERVAL {
            i.accept(AUTH, None, &report("a", clock.now()).encode())
                .unwrap();
        }
        let e = i
            .accept(AUTH, None, &report("a", clock.now()).encode())
            .unwrap_err();
        assert_eq!((e.status, e.reason), (429, "rate_limited"));
        // Another node is not held back by the first.
        i.accept(AUTH, None, &report("b", clock.now()).encode())
            .unwrap();
        clock.advance(Duration::from_secs(10));
        i.accept(AUTH, None, &report("a", clock.now()).encode())
            .unwrap();
    }

    #[test]
    fn silent_nodes_go_stale_then_drop_out() {
        let clock = Arc::new(ManualClock::at("2026-11-28T00:00:00Z"));
        let i = ingest(&clock);
        i.accept(AUTH, None, &report("a", clock.now()).encode())
            .unwrap();
        i.accept(AUTH, None, &report("b", clock.now()).encode())
            .unwrap();
        clock.advance(Duration::from_secs(20));
        i.accept(AUTH, None, &report("b", clock.now()).encode())
            .unwrap();
        clock.advance(Duration::from_secs(11));
        // a: silent 31 s > 3 intervals; b: 11 s.
        let now = clock.now();
        let nodes = i.sweep(now);
        assert_eq!(nodes["web"].reporting, vec!["b"]);
        assert_eq!(nodes["web"].stale, vec!["a"]);
        assert_eq!(
            i.fresh(now)
                .iter()
                .map(|r| r.node_id.as_str())
                .collect::<Vec<_>>(),
            vec!["b"]
        );
        clock.advance(Duration::from_secs(300));
        let nodes = i.sweep(clock.now());
        assert!(nodes["web"].reporting.is_empty() && nodes["web"].stale.is_empty());
    }

    fn node_ingest(clock: &Arc<ManualClock>, max_nodes: usize) -> Ingest {
        Ingest::new(
            Settings {
                token: Some(Secret::new("cluster-secret")),
                auth: ClusterAuth::NodeHmac,
                max_nodes,
                pools: ["web".to_owned()].into(),
                interval: Duration::from_secs(10),
                node_expiry: Duration::from_secs(300),
                workload_ranges: [("rps".to_owned(), (0.0, Some(10_000.0)))].into(),
                previous: None,
            },
            clock.clone(),
        )
    }

    fn bearer(node: &str) -> String {
        format!(
            "Bearer {}",
            crate::cluster::identity::node_token("cluster-secret", node)
        )
    }

    /// Per-node tokens: n1's token reports as n1 only, with or without the header
    /// that names it; reporting as n2 is refused (403 when the header shows the token is
    /// n1's, 401 without it) and spends none of n2's quota.
    #[test]
    fn a_node_reports_only_as_itself() {
        let clock = Arc::new(ManualClock::at("2026-11-28T00:00:00Z"));
        let i = node_ingest(&clock, 0);
        let now = clock.now();
        let n1 = bearer("n1");
        i.accept(Some(&n1), Some("n1"), &report("n1", now).encode())
            .unwrap();
        i.accept(Some(&n1), None, &report("n1", now).encode())
            .unwrap();
        // n1's token, as n2: named in the header, or only in the body.
        for _ in 0..10 {
            let e = i
                .accept(Some(&n1), Some("n1"), &report("n2", now).encode())
                .unwrap_err();
            assert_eq!(
                (e.status, e.reason, e.field.as_deref()),
                (403, "wrong_node", Some("node_id"))
            );
            let e = i
                .accept(Some(&n1), None, &report("n2", now).encode())
                .unwrap_err();
            assert_eq!((e.status, e.reason), (401, "unauthorized"));
            // Claiming n2 in the header with n1's token fails before the body.
            let e = i.authenticate(Some(&n1), Some("n2")).unwrap_err();
            assert_eq!((e.status, e.reason), (401, "unauthorized"));
        }
        // n2's own reports are still taken: the flood spent none of its quota.
        i.accept(Some(&bearer("n2")), Some("n2"), &report("n2", now).encode())
            .unwrap();
        // The cluster secret itself is not a token.
        let e = i
            .accept(
                Some("Bearer cluster-secret"),
                Some("n1"),
                &report("n1", now).encode(),
            )
            .unwrap_err();
        assert_eq!(e.status, 401);
        assert_eq!(i.authenticate(None, None).unwrap_err().status, 401);
    }

    /// Once a pool's reports match its instances, a report into it from another id is
    /// refused (422 `unknown_node`, the field named), before it takes a place in the
    /// table; a pool without known members, or a leader that stopped leading, takes
    /// any id.
    #[test]
    fn a_pool_whose_reports_match_its_instances_takes_reports_from_them_only() {
        let clock = Arc::new(ManualClock::at("2026-11-28T00:00:00Z"));
        let i = node_ingest(&clock, 0);
        let now = clock.now();
        let ids: HashSet<String> = ["i-1".to_owned(), "i-2".to_owned()].into();
        i.set_members([("web".to_owned(), Arc::new(ids))].into());
        i.accept(
            Some(&bearer("i-1")),
            Some("i-1"),
            &report("i-1", now).encode(),
        )
        .unwrap();
        let e = i
            .accept(
                Some(&bearer("i-9")),
                Some("i-9"),
                &report("i-9", now).encode(),
            )
            .unwrap_err();
        assert_eq!(
            (e.status, e.reason, e.field.as_deref()),
            (422, "unknown_node", Some("node_id"))
        );
        assert!(
            e.error
                .contains("\"i-9\" is not an instance of pool \"web\""),
            "{}",
            e.error
        );
        assert_eq!(i.sweep(now)["web"].reporting, vec!["i-1"]);
        // Not leading any more: nothing is known of the pools.
        i.clear();
        i.accept(
            Some(&bearer("i-9")),
            Some("i-9"),
            &report("i-9", now).encode(),
        )
        .unwrap();
    }

    /// During a rotation both secrets' tokens are taken; without `previous`, only the
    /// current one's.
    #[test]
    fn the_previous_secret_is_taken_during_a_rotation_only() {
        let clock = Arc::new(ManualClock::at("2026-11-28T00:00:00Z"));
        let i = node_ingest(&clock, 0);
        let now = clock.now();
        let old = format!(
            "Bearer {}",
            crate::cluster::identity::node_token("old-secret", "n1")
        );
        let mut settings = (*i.settings()).clone();
        settings.previous = Some(Secret::new("old-secret"));
        i.configure(settings.clone());
        i.accept(Some(&old), Some("n1"), &report("n1", now).encode())
            .unwrap();
        i.accept(Some(&bearer("n1")), None, &report("n1", now).encode())
            .unwrap();
        settings.previous = None;
        i.configure(settings);
        let e = i
            .accept(Some(&old), Some("n1"), &report("n1", now).encode())
            .unwrap_err();
        assert_eq!((e.status, e.reason), (401, "unauthorized"));
    }

    /// Over mutual TLS, a report is taken only as a node the client certificate names.
    #[test]
    fn a_certified_node_reports_only_as_a_name_in_its_certificate() {
        let clock = Arc::new(ManualClock::at("2026-11-28T00:00:00Z"));
        let i = node_ingest(&clock, 0);
        let now = clock.now();
        let n1 = bearer("n1");
        let sender = i.authenticate(Some(&n1), Some("n1")).unwrap();
        let names = ["n1".to_owned()];
        i.take(&sender, Some(&names), &report("n1", now).encode())
            .unwrap();
        let others = ["n2".to_owned()];
        let e = i
            .take(&sender, Some(&others), &report("n1", now).encode())
            .unwrap_err();
        assert_eq!((e.status, e.reason), (403, "wrong_node"));
    }

    /// The table holds at most `max_nodes`: a new node past it is refused (503), known
    /// nodes keep reporting, and this agent's own report always fits.
    #[test]
    fn the_node_table_stays_at_its_cap() {
        let clock = Arc::new(ManualClock::at("2026-11-28T00:00:00Z"));
        let i = node_ingest(&clock, 3);
        let now = clock.now();
        for n in ["a", "b", "c"] {
            i.accept(Some(&bearer(n)), Some(n), &report(n, now).encode())
                .unwrap();
        }
        for n in 0..100 {
            let id = format!("made-up-{n}");
            let e = i
                .accept(Some(&bearer(&id)), Some(&id), &report(&id, now).encode())
                .unwrap_err();
            assert_eq!((e.status, e.reason), (503, "table_full"));
        }
        clock.advance(Duration::from_secs(10));
        i.accept(
            Some(&bearer("a")),
            Some("a"),
            &report("a", clock.now()).encode(),
        )
        .unwrap();
        i.insert_local(report("leader", clock.now()));
        assert_eq!(i.fresh(clock.now()).len(), 4);
    }

    /// A workload value outside its `[[scrape]]` range (0 and up when undeclared) is
    /// refused with the field named.
    #[test]
    fn workload_values_stay_in_their_declared_range() {
        let clock = Arc::new(ManualClock::at("2026-11-28T00:00:00Z"));
        let i = node_ingest(&clock, 0);
        let now = clock.now();
        for (metric, value, ok) in [
            ("rps", -1.0, false),
            ("rps", 10_001.0, false),
            ("rps", 10_000.0, true),
            ("queue", -0.5, false),
            ("queue", 1e12, true),
        ] {
            let mut r = report("n1", now);
            r.workload.clear();
            r.workload.insert(metric.into(), value);
            let got = i.accept(Some(&bearer("n1")), Some("n1"), &r.encode());
            match (ok, got) {
                (true, Ok(_)) => {}
                (false, Err(e)) => {
                    assert_eq!((e.status, e.reason), (422, "invalid"));
                    assert_eq!(e.field, Some(format!("workload[{metric:?}]")), "{e:?}");
                }
                (_, got) => panic!("{metric} = {value}: {got:?}"),
            }
            clock.advance(Duration::from_secs(10));
        }
    }
}
