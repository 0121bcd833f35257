//! The HTTP server: `/metrics`, `/healthz`, `/readyz`, `/v1/status`, and the leader's
//! `POST /v1/reports` (see [`crate::ingest`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::brain::Reason;
use crate::ingest::{self, Ingest, MAX_REPORT_BYTES, PoolNodes};
use crate::metrics::Metrics;

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
}

/// The last decision of a pool.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LastDecision {
    /// When.
    pub at: DateTime<Utc>,
    /// `none`, `scaled`, `skipped` or `failed`.
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

/// The router.
/// A reqwest client builder for everything Capstan sends over HTTP. With the `tls`
/// feature, reqwest takes its TLS provider from the process default: this installs
/// ring's first (once; later calls are harmless).
pub fn client_builder() -> reqwest::ClientBuilder {
    #[cfg(feature = "tls")]
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

pub fn router(shared: Arc<Shared>, ingest: Option<Arc<Ingest>>) -> Router {
    let plain = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .with_state(shared.clone());
    match ingest {
        Some(ingest) => plain.merge(reports_router(shared, ingest)),
        None => plain,
    }
}

/// `POST /v1/reports` alone (for the mutual-TLS listener).
pub fn reports_router(shared: Arc<Shared>, ingest: Arc<Ingest>) -> Router {
    Router::new()
        .route("/v1/reports", post(reports))
        .layer(DefaultBodyLimit::max(MAX_REPORT_BYTES))
        .with_state((ingest, shared))
}

/// `POST /v1/reports`: 202 when the report is taken, else the refusal as JSON
/// (`{"reason", "field", "error"}`) with its status.
async fn reports(
    State((ingest, shared)): State<(Arc<Ingest>, Arc<Shared>)>,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let outcome = match body {
        Ok(body) => ingest.accept(auth, &body),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ingest::too_large(None)),
        Err(e) => Err(ingest::Rejection {
            status: 400,
            reason: "malformed",
            field: None,
            error: e.body_text(),
        }),
    };
    match outcome {
        Ok(()) => {
            shared.metrics.reports_received.inc();
            StatusCode::ACCEPTED.into_response()
        }
        Err(r) => {
            ingest::count(&shared.metrics, &r);
            let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
            (status, axum::Json(r)).into_response()
        }
    }
}

/// OpenMetrics when the scraper asks for it (Prometheus does), else the classic text
/// format that every tool reads.
async fn metrics(State(s): State<Arc<Shared>>, headers: axum::http::HeaderMap) -> Response {
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            s.metrics.encode(),
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            s.metrics.encode_prometheus_text(),
        )
            .into_response()
    }
}

async fn healthz(State(s): State<Arc<Shared>>) -> Response {
    let (at, grace) = *s
        .heartbeat
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if at.elapsed() <= grace {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("main loop silent for {:?}\n", at.elapsed()),
        )
            .into_response()
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "first pass not done yet\n").into_response()
    }
}

async fn status(State(s): State<Arc<Shared>>) -> Response {
    let status = s
        .status
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    axum::Json(status).into_response()
}
