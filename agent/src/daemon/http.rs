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

use crate::cluster::identity::{NODE_HEADER, Secret};
use crate::cluster::ingest::{self, Ingest, MAX_REPORT_BYTES, Sender};
use crate::telemetry::status::Shared;

/// What `/v1/status` asks for (`cluster.status_token_file`); replaced on reload.
pub type StatusToken = Arc<std::sync::RwLock<Option<Secret>>>;

/// The router; a report must arrive whole within `request_timeout`.
pub fn router(
    shared: Arc<Shared>,
    ingest: Option<Arc<Ingest>>,
    status_token: StatusToken,
    request_timeout: std::time::Duration,
) -> Router {
    let plain = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(shared.clone())
        .merge(
            Router::new()
                .route("/v1/status", get(status))
                .with_state((shared.clone(), status_token)),
        );
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

/// `POST /v1/reports`: 202 when the report is taken (with what the leader asks of the
/// node, `{"drain": {"pool", "deadline"}}` or `{"undrain": {"pool"}}`, when it asks
/// anything), else the refusal as JSON (`{"reason", "field", "error"}`) with its
/// status.
async fn reports(
    State((ingest, shared)): State<(Arc<Ingest>, Arc<Shared>)>,
    axum::Extension(sender): axum::Extension<Sender>,
    #[cfg(feature = "tls")] tls: Option<axum::Extension<crate::cluster::tls::CertifiedNodes>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // Over mutual TLS, the nodes the client certificate names (read once per
    // connection, at the handshake).
    #[cfg(feature = "tls")]
    let certified: Option<Arc<Vec<String>>> = tls.map(|axum::Extension(nodes)| nodes.0);
    #[cfg(not(feature = "tls"))]
    let certified: Option<Arc<Vec<String>>> = None;
    let outcome = match body {
        Ok(body) => ingest.take(&sender, certified.as_deref().map(Vec::as_slice), &body),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ingest::too_large(None)),
        Err(e) => Err(ingest::Rejection {
            status: 400,
            reason: "malformed",
            field: None,
            error: e.body_text(),
        }),
    };
    match outcome {
        Ok(answer) => {
            shared.metrics.reports_received.inc();
            if answer.is_empty() {
                StatusCode::ACCEPTED.into_response()
            } else {
                // What the leader asks of this node (a drain), in the answer to its own
                // report: nodes open no port for it.
                (StatusCode::ACCEPTED, axum::Json(answer)).into_response()
            }
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

/// What a caller may read of `/v1/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusAccess {
    /// All of it: the caller presented the status token.
    Full,
    /// Cloud accounts and principals redacted: no status token is set.
    Redacted,
    /// Nothing: a status token is set and the caller did not present it.
    Refused,
}

/// What a caller presenting `authorization` may read (the token compared in constant
/// time).
fn status_access(token: &StatusToken, authorization: Option<&str>) -> StatusAccess {
    let token = token
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(token) = token.as_ref() else {
        return StatusAccess::Redacted;
    };
    let presented = authorization
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or("");
    if token.is_shared_token(presented) {
        StatusAccess::Full
    } else {
        StatusAccess::Refused
    }
}

/// `/v1/status`: in full to a caller with `cluster.status_token_file`'s token, 401 to
/// one without it when it is set; open but with cloud accounts and principals redacted
/// from every string when it is not ([`crate::telemetry::redact`]).
async fn status(
    State((s, token)): State<(Arc<Shared>, StatusToken)>,
    headers: axum::http::HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let access = status_access(&token, authorization);
    if access == StatusAccess::Refused {
        let body = serde_json::json!({
            "reason": "unauthorized",
            "error": "/v1/status needs the token of cluster.status_token_file (Authorization: Bearer)",
        });
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            axum::Json(body),
        )
            .into_response();
    }
    let status = s
        .status
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    if access == StatusAccess::Full {
        return axum::Json(status).into_response();
    }
    match serde_json::to_value(&status) {
        Ok(mut value) => {
            crate::telemetry::redact::redact_json(&mut value);
            axum::Json(value).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENIED: &str = "AccessDenied: User: arn:aws:sts::123456789012:assumed-role/capstan/i-0abc \
                          is not authorized to perform: autoscaling:SetDesiredCapacity";

    async fn get(base: &str, token: Option<&str>) -> (u16, serde_json::Value) {
        let client = crate::net::client_builder().build().unwrap();
        let mut request = client.get(format!("{base}/v1/status"));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    #[tokio::test]
    async fn the_status_is_whole_with_its_token_refused_without_and_redacted_when_none_is_set() {
        let shared = Arc::new(Shared::new(std::time::Duration::from_secs(60)));
        shared.status.write().unwrap().coordinator_note = Some(DENIED.to_owned());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let token = StatusToken::default();
        let app = router(
            shared.clone(),
            None,
            token.clone(),
            std::time::Duration::from_secs(5),
        );
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        // No status token: open, the account and role gone, the action kept.
        let (code, body) = get(&base, None).await;
        assert_eq!(code, 200);
        assert_eq!(
            body["coordinator_note"],
            "AccessDenied: User: arn:<redacted> is not authorized to perform: autoscaling:SetDesiredCapacity"
        );
        // A status token: without it (or with another) 401; with it, the whole text.
        *token.write().unwrap() = Some(Secret::new("status-secret"));
        for presented in [None, Some("guess"), Some("status-secret-and-more")] {
            let (code, body) = get(&base, presented).await;
            assert_eq!(code, 401, "{presented:?}");
            assert_eq!(body["reason"], "unauthorized");
            assert!(body.get("coordinator_note").is_none());
        }
        let (code, body) = get(&base, Some("status-secret")).await;
        assert_eq!(code, 200);
        assert_eq!(body["coordinator_note"], DENIED);
        server.abort();
    }
}
