//! The interruption watcher's task: polls the cloud's metadata service
//! (`[agent.interruptions]`) and keeps the notice in force in a `watch`, which the
//! daemon copies into every report of this node.

use std::time::Duration;

use capstan_collectors::Interruption;
use capstan_collectors::interruption::{AwsImds, AzureScheduledEvents, GceMetadata, WatchError};
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

/// One cloud's metadata service.
#[derive(Debug)]
enum Source {
    Aws(AwsImds),
    Azure(AzureScheduledEvents),
    Gcp(GceMetadata),
}

impl Source {
    /// The name the pool's provider lists this node under.
    async fn instance_id(&mut self) -> Result<String, WatchError> {
        match self {
            Self::Aws(s) => s.instance_id().await,
            Self::Azure(s) => s.vm_name().await,
            Self::Gcp(s) => s.instance_name().await,
        }
    }

    async fn poll(&mut self) -> Result<Option<Interruption>, WatchError> {
        match self {
            Self::Aws(s) => s.poll().await,
            Self::Azure(s) => s.poll().await,
            Self::Gcp(s) => s.poll().await,
        }
    }
}

fn imds(settings: &Interruptions) -> anyhow::Result<Source> {
    // The metadata service is link-local: never through a proxy, and quick or not at
    // all; GCE's reads hang until a value changes, so they may take that long.
    let timeout = match settings.cloud {
        InterruptionCloud::Gcp => GceMetadata::HANG + Duration::from_secs(5),
        InterruptionCloud::Aws | InterruptionCloud::Azure => Duration::from_secs(2),
    };
    let client = crate::net::client_builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(2))
        .timeout(timeout)
        .build()?;
    Ok(match settings.cloud {
        InterruptionCloud::Aws => Source::Aws(AwsImds::new(client, &settings.endpoint)),
        InterruptionCloud::Azure => Source::Azure(AzureScheduledEvents::new(
            client,
            &settings.endpoint,
            settings.acknowledge,
        )),
        InterruptionCloud::Gcp => Source::Gcp(GceMetadata::new(client, &settings.endpoint)),
    })
}

/// This node's instance id (AWS) or VM/instance name (Azure, GCP), from the metadata
/// service; `None` (and a warning) when it cannot be read.
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
            tracing::warn!(error = %e, "cannot read this instance's name from the metadata service; the node is named by its host name");
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
            acknowledge: false,
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

    /// Azure's instance metadata service: the VM's name and Scheduled Events; every
    /// request must carry `Metadata: true` (400 otherwise, as Azure answers).
    #[derive(Default)]
    struct AzureImds {
        document: serde_json::Value,
        approvals: Vec<serde_json::Value>,
        gets: u32,
    }

    type AzureShared = Arc<Mutex<AzureImds>>;

    fn metadata_header(headers: &HeaderMap) -> bool {
        headers.get("metadata").and_then(|v| v.to_str().ok()) == Some("true")
    }

    async fn azure_name(headers: HeaderMap) -> (StatusCode, String) {
        if !metadata_header(&headers) {
            return (StatusCode::BAD_REQUEST, String::new());
        }
        (StatusCode::OK, "vm-spot".into())
    }

    async fn azure_events(
        State(s): State<AzureShared>,
        axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
        headers: HeaderMap,
    ) -> (StatusCode, String) {
        if !metadata_header(&headers)
            || q.get("api-version").map(String::as_str) != Some("2020-07-01")
        {
            return (StatusCode::BAD_REQUEST, String::new());
        }
        let mut s = s.lock().unwrap();
        s.gets += 1;
        (StatusCode::OK, s.document.to_string())
    }

    async fn azure_approve(
        State(s): State<AzureShared>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let Ok(body) = serde_json::from_str::<serde_json::Value>(&body) else {
            return StatusCode::BAD_REQUEST;
        };
        if !metadata_header(&headers) || !body["StartRequests"].is_array() {
            return StatusCode::BAD_REQUEST;
        }
        s.lock().unwrap().approvals.push(body);
        StatusCode::OK
    }

    fn preempt(incarnation: u64, vm: &str) -> serde_json::Value {
        // The document `az vm simulate-eviction` produced (shared/data/cloud-api).
        serde_json::json!({"DocumentIncarnation": incarnation, "Events": [{
            "EventId": "C1BF8322-4CBF-4FC4-9C45-B40CF3106D0E", "EventStatus": "Scheduled",
            "EventType": "Preempt", "ResourceType": "VirtualMachine", "Resources": [vm],
            "NotBefore": "Tue, 09 Aug 2022 17:07:32 GMT", "Description": "",
            "EventSource": "Platform", "DurationInSeconds": -1}]})
    }

    #[tokio::test]
    async fn azure_scheduled_events_name_the_vm_and_are_acknowledged_once() {
        let state: AzureShared = Arc::new(Mutex::new(AzureImds {
            document: serde_json::json!({"DocumentIncarnation": 0, "Events": []}),
            ..AzureImds::default()
        }));
        let app = Router::new()
            .route("/metadata/instance/compute/name", get(azure_name))
            .route(
                "/metadata/scheduledevents",
                get(azure_events).post(azure_approve),
            )
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let settings = Interruptions {
            cloud: InterruptionCloud::Azure,
            endpoint: url,
            poll: Duration::from_millis(20),
            acknowledge: true,
        };
        assert_eq!(instance_id(&settings).await.as_deref(), Some("vm-spot"));
        let mut source = imds(&settings).unwrap();
        assert_eq!(source.poll().await.unwrap(), None);
        // Another VM's eviction is not ours.
        state.lock().unwrap().document = preempt(1, "vm-other");
        assert_eq!(source.poll().await.unwrap(), None);
        assert!(state.lock().unwrap().approvals.is_empty());
        state.lock().unwrap().document = preempt(2, "vm-spot");
        let n = source.poll().await.unwrap().unwrap();
        assert_eq!(n.kind, capstan_collectors::interruption::AZURE_PREEMPT);
        assert!(n.at.is_some());
        // Not approved by the read that found it: the notice goes out first.
        assert!(state.lock().unwrap().approvals.is_empty());
        // Still in force on the next read, which approves it; approved only once.
        assert!(source.poll().await.unwrap().is_some());
        assert!(source.poll().await.unwrap().is_some());
        {
            let s = state.lock().unwrap();
            assert_eq!(s.approvals.len(), 1, "{:?}", s.approvals);
            assert_eq!(
                s.approvals[0]["StartRequests"][0]["EventId"],
                "C1BF8322-4CBF-4FC4-9C45-B40CF3106D0E"
            );
        }
        // The event is over: a new incarnation without it.
        state.lock().unwrap().document =
            serde_json::json!({"DocumentIncarnation": 3, "Events": []});
        assert_eq!(source.poll().await.unwrap(), None);

        // Without `acknowledge`, nothing is approved.
        state.lock().unwrap().document = preempt(4, "vm-spot");
        let quiet = Interruptions {
            acknowledge: false,
            ..settings
        };
        let mut w = spawn(quiet).unwrap();
        tokio::time::timeout(Duration::from_secs(5), w.notice.wait_for(Option::is_some))
            .await
            .expect("the notice within 5 s")
            .unwrap();
        assert_eq!(state.lock().unwrap().approvals.len(), 1);
    }

    /// GCE's metadata server: values with ETags, and `wait_for_change` hanging GETs
    /// that return when the value's ETag differs from `last_etag` or after
    /// `timeout_sec`. `Metadata-Flavor: Google` is required (403 otherwise).
    #[derive(Clone)]
    struct Gce {
        preempted: Arc<watch::Sender<String>>,
        maintenance: Arc<watch::Sender<String>>,
        hanging: Arc<Mutex<u32>>,
    }

    fn etag(v: &str) -> String {
        format!(
            "{:x}",
            v.bytes()
                .fold(7_u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        )
    }

    async fn gce_value(
        tx: &watch::Sender<String>,
        hanging: &Mutex<u32>,
        q: &std::collections::HashMap<String, String>,
        headers: &HeaderMap,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
            return StatusCode::FORBIDDEN.into_response();
        }
        let mut rx = tx.subscribe();
        if q.get("wait_for_change").map(String::as_str) == Some("true") {
            *hanging.lock().unwrap() += 1;
            let last = q.get("last_etag").cloned().unwrap_or_default();
            let secs: u64 = q
                .get("timeout_sec")
                .and_then(|t| t.parse().ok())
                .unwrap_or(60);
            let _ =
                tokio::time::timeout(Duration::from_secs(secs), rx.wait_for(|v| etag(v) != last))
                    .await;
        }
        let v = rx.borrow().clone();
        ([("etag", etag(&v))], v).into_response()
    }

    #[tokio::test]
    async fn gce_hanging_gets_see_a_preemption_as_it_happens() {
        use axum::extract::Query;
        type Q = Query<std::collections::HashMap<String, String>>;
        let gce = Gce {
            preempted: Arc::new(watch::channel("FALSE".to_owned()).0),
            maintenance: Arc::new(watch::channel("NONE".to_owned()).0),
            hanging: Arc::default(),
        };
        let app = Router::new()
            .route(
                "/computeMetadata/v1/instance/name",
                get(|headers: HeaderMap| async move {
                    if headers.get("metadata-flavor").is_none() {
                        return (StatusCode::FORBIDDEN, String::new());
                    }
                    (StatusCode::OK, "gke-c-spot-1a2b".to_owned())
                }),
            )
            .route(
                "/computeMetadata/v1/instance/preempted",
                get(
                    |State(g): State<Gce>, Query(q): Q, h: HeaderMap| async move {
                        gce_value(&g.preempted, &g.hanging, &q, &h).await
                    },
                ),
            )
            .route(
                "/computeMetadata/v1/instance/maintenance-event",
                get(
                    |State(g): State<Gce>, Query(q): Q, h: HeaderMap| async move {
                        gce_value(&g.maintenance, &g.hanging, &q, &h).await
                    },
                ),
            )
            .with_state(gce.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let settings = Interruptions {
            cloud: InterruptionCloud::Gcp,
            endpoint: url,
            poll: Duration::from_millis(20),
            acknowledge: false,
        };
        assert_eq!(
            instance_id(&settings).await.as_deref(),
            Some("gke-c-spot-1a2b")
        );
        let mut w = spawn(settings.clone()).unwrap();
        // The watcher reads both values, then hangs on both.
        for _ in 0..250 {
            if *gce.hanging.lock().unwrap() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            *gce.hanging.lock().unwrap() >= 2,
            "the watcher hangs on both values"
        );
        assert!(w.notice.borrow().is_none());
        gce.maintenance
            .send_replace("TERMINATE_ON_HOST_MAINTENANCE".to_owned());
        let n = tokio::time::timeout(Duration::from_secs(5), w.notice.wait_for(Option::is_some))
            .await
            .expect("the maintenance notice within 5 s")
            .unwrap()
            .clone();
        assert_eq!(
            n.unwrap().kind,
            capstan_collectors::interruption::GCE_TERMINATE_ON_MAINTENANCE
        );
        gce.preempted.send_replace("TRUE".to_owned());
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            w.notice.wait_for(|n| {
                n.as_ref()
                    .is_some_and(|n| n.kind == capstan_collectors::interruption::GCE_PREEMPTED)
            }),
        )
        .await
        .expect("the preemption within 5 s")
        .is_ok();
        assert!(n);
        gce.preempted.send_replace("FALSE".to_owned());
        gce.maintenance.send_replace("NONE".to_owned());
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
            acknowledge: false,
        };
        assert_eq!(instance_id(&settings).await, None);
        let err = imds(&settings).unwrap().poll().await.unwrap_err();
        assert!(err.to_string().contains("/latest/api/token"), "{err}");
    }
}
