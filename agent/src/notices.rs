//! The interruption watcher's task: polls the cloud's metadata service
//! (`[agent.interruptions]`) and keeps the notice in force in a `watch`, which the
//! daemon copies into every report of this node.

use std::time::Duration;

use capstan_collectors::Interruption;
use capstan_collectors::interruption::AwsImds;
use capstan_config::Interruptions;
use capstan_config::raw::InterruptionCloud;
use tokio::sync::watch;

/// A running watcher; dropping it stops the task.
#[derive(Debug)]
pub struct Watcher {
    /// The notice in force, as last read.
    pub notice: watch::Receiver<Option<Interruption>>,
    /// The settings it runs with.
    pub settings: Interruptions,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn imds(settings: &Interruptions) -> anyhow::Result<AwsImds> {
    // The metadata service is link-local: never through a proxy, and quick or not at all.
    let client = crate::http::client_builder()
        .no_proxy()
        .timeout(Duration::from_secs(2))
        .build()?;
    Ok(match settings.cloud {
        InterruptionCloud::Aws => AwsImds::new(client, &settings.endpoint),
    })
}

/// This node's instance id, from the metadata service; `None` (and a warning) when
/// it cannot be read.
pub async fn instance_id(settings: &Interruptions) -> Option<String> {
    let mut source = match imds(settings) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot build the metadata client");
            return None;
        }
    };
    match source.instance_id().await {
        Ok(id) => Some(id),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read this instance's id from the metadata service; the node is named by its host name");
            None
        }
    }
}

/// Starts polling.
pub fn spawn(settings: Interruptions) -> anyhow::Result<Watcher> {
    let mut source = imds(&settings)?;
    let (tx, rx) = watch::channel(None);
    let poll = settings.poll;
    let endpoint = settings.endpoint.clone();
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(poll);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            ticker.tick().await;
            match source.poll().await {
                Ok(notice) => {
                    if failing {
                        tracing::info!(%endpoint, "the metadata service answers again");
                        failing = false;
                    }
                    tx.send_if_modified(|old| {
                        if *old == notice {
                            return false;
                        }
                        match &notice {
                            Some(n) => tracing::warn!(kind = %n.kind, at = ?n.at, "interruption notice: this node is going away; the leader replaces it"),
                            None => tracing::info!("the interruption notice is gone"),
                        }
                        *old = notice;
                        true
                    });
                }
                // A notice already seen stays in force through a failed read.
                Err(e) => {
                    if !failing {
                        tracing::warn!(error = %e, "cannot read interruption notices; trying every poll");
                        failing = true;
                    }
                }
            }
        }
    });
    Ok(Watcher {
        notice: rx,
        settings,
        task,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, put};

    /// An IMDSv2 double: tokens are `tok-N`; only the latest is accepted.
    #[derive(Default)]
    struct Imds {
        issued: u32,
        action: Option<String>,
        rebalance: bool,
    }

    type Shared = Arc<Mutex<Imds>>;

    async fn token(State(s): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
        if !headers.contains_key("x-aws-ec2-metadata-token-ttl-seconds") {
            return (StatusCode::BAD_REQUEST, String::new());
        }
        let mut s = s.lock().unwrap();
        s.issued += 1;
        (StatusCode::OK, format!("tok-{}", s.issued))
    }

    fn authorized(s: &Imds, headers: &HeaderMap) -> bool {
        headers
            .get("x-aws-ec2-metadata-token")
            .is_some_and(|t| t.to_str().ok() == Some(format!("tok-{}", s.issued).as_str()))
    }

    async fn action(State(s): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
        let s = s.lock().unwrap();
        if !authorized(&s, &headers) {
            return (StatusCode::UNAUTHORIZED, String::new());
        }
        match &s.action {
            Some(body) => (StatusCode::OK, body.clone()),
            None => (StatusCode::NOT_FOUND, String::new()),
        }
    }

    async fn rebalance(State(s): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
        let s = s.lock().unwrap();
        if !authorized(&s, &headers) {
            return (StatusCode::UNAUTHORIZED, String::new());
        }
        if s.rebalance {
            (
                StatusCode::OK,
                r#"{"noticeTime": "2026-11-28T08:22:00Z"}"#.into(),
            )
        } else {
            (StatusCode::NOT_FOUND, String::new())
        }
    }

    async fn instance(State(s): State<Shared>, headers: HeaderMap) -> (StatusCode, String) {
        let s = s.lock().unwrap();
        if !authorized(&s, &headers) {
            return (StatusCode::UNAUTHORIZED, String::new());
        }
        (StatusCode::OK, "i-0abc".into())
    }

    async fn serve() -> (Shared, String) {
        let state: Shared = Arc::default();
        let app = Router::new()
            .route("/latest/api/token", put(token))
            .route("/latest/meta-data/spot/instance-action", get(action))
            .route(
                "/latest/meta-data/events/recommendations/rebalance",
                get(rebalance),
            )
            .route("/latest/meta-data/instance-id", get(instance))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (state, url)
    }

    #[tokio::test]
    async fn imdsv2_notices_come_and_go_and_a_refused_token_is_renewed() {
        let (state, url) = serve().await;
        let settings = Interruptions {
            cloud: InterruptionCloud::Aws,
            endpoint: url,
            poll: Duration::from_millis(20),
        };
        assert_eq!(instance_id(&settings).await.as_deref(), Some("i-0abc"));

        let mut source = imds(&settings).unwrap();
        assert_eq!(source.poll().await.unwrap(), None);
        state.lock().unwrap().rebalance = true;
        assert_eq!(
            source.poll().await.unwrap().unwrap().kind,
            capstan_collectors::interruption::REBALANCE_RECOMMENDATION
        );
        // The spot reclaim wins over the recommendation.
        state.lock().unwrap().action =
            Some(r#"{"action": "terminate", "time": "2026-11-28T08:24:00Z"}"#.into());
        let n = source.poll().await.unwrap().unwrap();
        assert_eq!(n.kind, capstan_collectors::interruption::SPOT_INTERRUPTION);
        assert!(n.at.is_some());
        // The service forgets the token (it restarted): the next read gets a new one.
        state.lock().unwrap().issued += 1;
        assert!(source.poll().await.unwrap().is_some());

        // The task publishes what it reads.
        let mut w = spawn(settings).unwrap();
        let seen = tokio::time::timeout(Duration::from_secs(5), w.notice.wait_for(Option::is_some))
            .await
            .expect("the notice within 5 s")
            .unwrap()
            .clone();
        assert_eq!(
            seen.unwrap().kind,
            capstan_collectors::interruption::SPOT_INTERRUPTION
        );
        {
            let mut s = state.lock().unwrap();
            s.action = None;
            s.rebalance = false;
        }
        tokio::time::timeout(Duration::from_secs(5), w.notice.wait_for(Option::is_none))
            .await
            .expect("the notice gone within 5 s")
            .unwrap();
    }

    #[tokio::test]
    async fn no_metadata_service_means_no_notice_and_no_instance_id() {
        // A port nothing listens on.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let settings = Interruptions {
            cloud: InterruptionCloud::Aws,
            endpoint: url,
            poll: Duration::from_millis(20),
        };
        assert_eq!(instance_id(&settings).await, None);
        let err = imds(&settings).unwrap().poll().await.unwrap_err();
        assert!(err.to_string().contains("/latest/api/token"), "{err}");
    }
}
