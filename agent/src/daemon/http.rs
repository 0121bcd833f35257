//! The agent's HTTP server: `/metrics`, `/healthz`, `/readyz`, `/v1/status` (from
//! [`crate::telemetry`]), and the leader's `POST /v1/reports` (checked by
//! [`crate::cluster::ingest`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::cluster::identity::NODE_HEADER;
use crate::cluster::ingest::{self, Ingest, MAX_REPORT_BYTES, Sender};
use crate::telemetry::status::Shared;

/// The router; a report must arrive whole within `request_timeout`.
pub fn router(
    shared: Arc<Shared>,
    ingest: Option<Arc<Ingest>>,
    request_timeout: std::time::Duration,
) -> Router {
    let plain = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/v1/status", get(status))
        .with_state(shared.clone());
    match ingest {
        Some(ingest) => plain.merge(reports_router(shared, ingest, request_timeout)),
        None => plain,
    }
}

/// `POST /v1/reports` alone (for the mutual-TLS listener); a report must arrive whole
/// within `request_timeout`.
pub fn reports_router(
    shared: Arc<Shared>,
    ingest: Arc<Ingest>,
    request_timeout: std::time::Duration,
) -> Router {
    let state = (ingest, shared, request_timeout);
    Router::new()
        .route("/v1/reports", post(reports))
        .layer(DefaultBodyLimit::max(MAX_REPORT_BYTES))
        // Outermost: the credentials are checked before anything reads the body.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        .with_state((state.0, state.1))
}

/// Checks a report's credentials from its headers alone; a request that fails is
/// answered without its body being read. One that passes must then arrive whole within
/// `request_timeout` (408 `timeout`), so a slow body holds nothing for long.
async fn authenticate(
    State((ingest, shared, request_timeout)): State<(
        Arc<Ingest>,
        Arc<Shared>,
        std::time::Duration,
    )>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    match ingest.authenticate(text(header::AUTHORIZATION.as_str()), text(NODE_HEADER)) {
        Ok(sender) => {
            request.extensions_mut().insert(sender);
            match tokio::time::timeout(request_timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => refuse(
                    &shared,
                    &ingest::Rejection {
                        status: 408,
                        reason: "timeout",
                        field: None,
                        error: format!(
                            "the report did not arrive within {}s (agent.request_timeout)",
                            request_timeout.as_secs_f64()
                        ),
                    },
                ),
            }
        }
        Err(r) => refuse(&shared, &r),
    }
}

/// A refusal, counted, as JSON (`{"reason", "field", "error"}`) with its status.
fn refuse(shared: &Shared, r: &ingest::Rejection) -> Response {
    ingest::count(&shared.metrics, r);
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(r)).into_response()
}

/// `POST /v1/reports`: 202 when the report is taken, else the refusal as JSON
/// (`{"reason", "field", "error"}`) with its status.
async fn reports(
    State((ingest, shared)): State<(Arc<Ingest>, Arc<Shared>)>,
    axum::Extension(sender): axum::Extension<Sender>,
    #[cfg(feature = "tls")] tls: Option<axum::Extension<Arc<axum_server::tls::TlsInfo>>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Over mutual TLS, the nodes the client certificate names.
    #[cfg(feature = "tls")]
    let certified: Option<Vec<String>> = tls.map(|axum::Extension(info)| {
        info.peer_certificates
            .first()
            .map(|der| crate::cluster::identity::certificate_nodes(der))
            .unwrap_or_default()
    });
    #[cfg(not(feature = "tls"))]
    let certified: Option<Vec<String>> = None;
    let outcome = match body {
        Ok(body) => ingest.take(&sender, certified.as_deref(), &body),
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
        Err(r) => refuse(&shared, &r),
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
