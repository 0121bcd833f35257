//! The node role: this agent's report goes to the leader every interval, as
//! `POST <leader_url>/v1/reports` with this node's bearer token (derived from
//! `cluster.token_file` as `cluster.auth` says; see [`crate::cluster::identity`]) and
//! its node id in `X-Capstan-Node`.
//!
//! The leader is whoever the coordinator's claim names, read at each send, so reports
//! follow leadership when it moves. Only the latest report waits: the hand-over is a
//! `watch`, which holds one value, so while the leader is unreachable nothing queues and
//! the next send carries the newest readings. Outcomes are counted in
//! `capstan_reports_sent_total{result}`: `ok`, `refused` (the leader answered 4xx; the
//! reason is logged), `failed` (unreachable, timeout, 5xx), `no_leader`. The body of
//! the leader's `202` says what it asks of this node (targeted scale-in's drain), and
//! goes to the node's drain (`daemon::drain`).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use capstan_collectors::{NodeReport, ReportAnswer};

use crate::cluster::coordinator::Claim;
use crate::cluster::identity::{Credential, NODE_HEADER};
use crate::telemetry::metrics::ResultLabel;
use crate::telemetry::status::Shared;

/// The client reports go out with: each send waits at most `timeout`; with `tls`, the
/// agent's certificate is presented, the leader's is checked against the cluster's CA
/// (and the leader URL's host), and a leader URL that is not `https://` is never
/// contacted: whoever can write the election's value cannot draw reports, bearer token
/// included, to a listener of their own.
pub fn client(
    timeout: Duration,
    #[cfg(feature = "tls")] tls: Option<rustls::ClientConfig>,
) -> anyhow::Result<reqwest::Client> {
    let builder = crate::net::client_builder().timeout(timeout);
    #[cfg(feature = "tls")]
    let builder = match tls {
        Some(config) => builder.tls_backend_preconfigured(config).https_only(true),
        None => builder,
    };
    Ok(builder.build()?)
}

/// Hands reports to the sending task.
#[derive(Debug)]
pub struct Reporter {
    tx: watch::Sender<Option<NodeReport>>,
    client: Arc<RwLock<reqwest::Client>>,
}

/// Where the leader's answers to this node's reports go (the node's drain).
pub type Answers = Arc<dyn Fn(&ReportAnswer) + Send + Sync>;

/// What this node presents; replaced on reload.
pub type Token = Arc<RwLock<Option<Credential>>>;

impl Reporter {
    /// Starts the sending task on `client` (plain, or with this agent's certificate for
    /// mutual TLS; see [`client`]).
    /// The leader's answers (a drain it asks for) go to `answers`.
    pub fn spawn(
        claim: watch::Receiver<Claim>,
        token: Token,
        shared: Arc<Shared>,
        client: reqwest::Client,
        answers: Answers,
    ) -> Self {
        let (tx, rx) = watch::channel(None);
        let client = Arc::new(RwLock::new(client));
        tokio::spawn(send_loop(rx, claim, token, shared, client.clone(), answers));
        Self { tx, client }
    }

    /// Sends the next reports with `client` (certificates rotated on reload).
    pub fn set_client(&self, client: reqwest::Client) {
        *self
            .client
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = client;
    }

    /// Replaces the report waiting to be sent (if the last one is still going out, this
    /// one follows it; any older one is dropped).
    pub fn send(&self, report: NodeReport) {
        self.tx.send_replace(Some(report));
    }
}

fn count(shared: &Shared, result: &str) {
    shared
        .metrics
        .reports_sent
        .get_or_create(&ResultLabel {
            result: result.to_owned(),
        })
        .inc();
}

async fn send_loop(
    mut rx: watch::Receiver<Option<NodeReport>>,
    claim: watch::Receiver<Claim>,
    token: Token,
    shared: Arc<Shared>,
    client: Arc<RwLock<reqwest::Client>>,
    answers: Answers,
) {
    // Ends when the daemon drops the Reporter.
    while rx.changed().await.is_ok() {
        let Some(report) = rx.borrow_and_update().clone() else {
            continue;
        };
        let claim = claim.borrow().clone();
        if claim.is_leader {
            // The leader takes its own report directly.
            continue;
        }
        let Some(url) = claim.leader_url else {
            count(&shared, "no_leader");
            tracing::debug!("no leader known; report not sent");
            continue;
        };
        let bearer = token
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|c| c.bearer(&report.node_id))
            .unwrap_or_default();
        let endpoint = format!("{}/v1/reports", url.trim_end_matches('/'));
        let client = client
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let sent = client
            .post(&endpoint)
            .bearer_auth(bearer)
            .header(NODE_HEADER, &report.node_id)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(report.encode())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                count(&shared, "ok");
                // What the leader asks of this node: empty mostly; a drain when it chose
                // this node to leave its pool.
                let body = r.bytes().await.unwrap_or_default();
                if !body.is_empty() {
                    match serde_json::from_slice::<ReportAnswer>(&body) {
                        Ok(answer) => answers(&answer),
                        Err(e) => {
                            tracing::warn!(%endpoint, error = %e, "the leader's answer is not one this agent reads; ignored");
                        }
                    }
                }
            }
            Ok(r) if r.status().is_client_error() => {
                let status = r.status();
                let body = r.text().await.unwrap_or_default();
                tracing::warn!(%endpoint, %status, response = %body, "the leader refused this node's report");
                count(&shared, "refused");
            }
            Ok(r) => {
                tracing::warn!(%endpoint, status = %r.status(), "the leader failed to take this node's report");
                count(&shared, "failed");
            }
            Err(e) => {
                // The causes say why: a certificate not from the cluster's CA, a URL
                // that is not https:// under [cluster.tls], a refused connection.
                let error = anyhow::Error::new(e);
                tracing::warn!(%endpoint, error = format!("{error:#}"), "cannot reach the leader; the next report goes when it is back");
                count(&shared, "failed");
            }
        }
    }
}
