//! Interruption notices from the cloud's metadata service: the cloud telling this node
//! that it will be taken away (a spot reclaim) or is at elevated risk of it (a
//! rebalance recommendation).
//!
//! [`AwsImds`] speaks IMDSv2: a session token from `PUT /latest/api/token`, then `GET`
//! of `meta-data/spot/instance-action` and `meta-data/events/recommendations/rebalance`
//! with the token; 404 means no notice. The agent polls it every
//! `agent.interruptions.poll` (2 s by default) and puts the notice into its report.
//!
//! [`AzureScheduledEvents`] reads Azure's Scheduled Events (`Preempt`, `Terminate`)
//! and [`GceMetadata`] GCE's `instance/preempted` and `instance/maintenance-event`
//! with hanging GETs.
//!
//! **Invariant:** like every collector, it only observes this node.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::Interruption;

/// `Interruption::kind` of an EC2 spot reclaim (`instance-action`).
pub const SPOT_INTERRUPTION: &str = "spot-interruption";
/// `Interruption::kind` of an EC2 rebalance recommendation.
pub const REBALANCE_RECOMMENDATION: &str = "rebalance-recommendation";

/// How long an IMDSv2 token is asked to last (the maximum, 6 h).
const TOKEN_TTL: Duration = Duration::from_secs(6 * 3600);

/// Why the metadata service could not be read this time.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct WatchError {
    /// What was being read.
    pub what: String,
    /// Why it failed.
    pub reason: String,
}

/// The EC2 instance metadata service, version 2.
#[derive(Debug)]
pub struct AwsImds {
    client: reqwest::Client,
    base: String,
    /// The session token and when it stops being used (renewed a minute early).
    token: Option<(String, tokio::time::Instant)>,
}

#[derive(Debug, Deserialize)]
struct InstanceAction {
    action: String,
    time: Option<DateTime<Utc>>,
}

impl AwsImds {
    /// The service at `base` (e.g. `http://169.254.169.254`), read with `client`
    /// (which should carry a short timeout).
    pub fn new(client: reqwest::Client, base: &str) -> Self {
        Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    async fn token(&mut self) -> Result<String, WatchError> {
        if let Some((token, until)) = &self.token
            && tokio::time::Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let url = format!("{}/latest/api/token", self.base);
        let err = |reason: String| WatchError {
            what: format!("PUT {url}"),
            reason,
        };
        let response = self
            .client
            .put(&url)
            .header(
                "X-aws-ec2-metadata-token-ttl-seconds",
                TOKEN_TTL.as_secs().to_string(),
            )
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !response.status().is_success() {
            return Err(err(format!("HTTP {}", response.status())));
        }
        let token = response.text().await.map_err(|e| err(e.to_string()))?;
        let token = token.trim().to_owned();
        if token.is_empty() {
            return Err(err("empty token".to_owned()));
        }
        let until = tokio::time::Instant::now() + TOKEN_TTL - Duration::from_secs(60);
        self.token = Some((token.clone(), until));
        Ok(token)
    }

    /// `GET latest/meta-data/<path>`: `Some(body)`, or `None` on 404. A refused token
    /// (401) is renewed once.
    async fn get(&mut self, path: &str) -> Result<Option<String>, WatchError> {
        let url = format!("{}/latest/meta-data/{path}", self.base);
        let err = |reason: String| WatchError {
            what: format!("GET {url}"),
            reason,
        };
        for attempt in 0..2 {
            let token = self.token().await?;
            let response = self
                .client
                .get(&url)
                .header("X-aws-ec2-metadata-token", token)
                .send()
                .await
                .map_err(|e| err(e.to_string()))?;
            match response.status().as_u16() {
                200 => {
                    return response
                        .text()
                        .await
                        .map(Some)
                        .map_err(|e| err(e.to_string()));
                }
                404 => return Ok(None),
                401 if attempt == 0 => self.token = None,
                s => return Err(err(format!("HTTP {s}"))),
            }
        }
        Err(err("the token was refused twice".to_owned()))
    }

    /// This instance's id (`i-…`).
    pub async fn instance_id(&mut self) -> Result<String, WatchError> {
        match self.get("instance-id").await? {
            Some(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
            _ => Err(WatchError {
                what: "instance-id".to_owned(),
                reason: "not served".to_owned(),
            }),
        }
    }

    /// The notice in force now, if any: a spot reclaim before a rebalance
    /// recommendation.
    pub async fn poll(&mut self) -> Result<Option<Interruption>, WatchError> {
        if let Some(body) = self.get("spot/instance-action").await? {
            return parse_instance_action(&body).map(Some);
        }
        if self
            .get("events/recommendations/rebalance")
            .await?
            .is_some()
        {
            return Ok(Some(Interruption {
                kind: REBALANCE_RECOMMENDATION.to_owned(),
                at: None,
            }));
        }
        Ok(None)
    }
}

/// `Interruption::kind` of an Azure `Preempt` scheduled event (a spot eviction).
pub const AZURE_PREEMPT: &str = "Preempt";
/// `Interruption::kind` of an Azure `Terminate` scheduled event.
pub const AZURE_TERMINATE: &str = "Terminate";
/// `Interruption::kind` of a GCE preemption (`instance/preempted` is `TRUE`).
pub const GCE_PREEMPTED: &str = "preempted";
/// `Interruption::kind` of a GCE host maintenance that stops the VM (GPU VMs cannot
/// live-migrate): `instance/maintenance-event` is `TERMINATE_ON_HOST_MAINTENANCE`.
pub const GCE_TERMINATE_ON_MAINTENANCE: &str = "terminate-on-host-maintenance";

/// The Scheduled Events API version asked for.
pub const SCHEDULED_EVENTS_API: &str = "2020-07-01";

/// Azure Scheduled Events from the instance metadata service:
/// `GET /metadata/scheduledevents` with `Metadata: true`. Only `Preempt` and
/// `Terminate` events that name this VM count; the document is re-read only when
/// its `DocumentIncarnation` changes. With `acknowledge`, each such event is approved
/// once (`POST {"StartRequests": [{"EventId": ...}]}`) at the first read after the one
/// that returned it, so the notice has been published to the node's report first.
#[derive(Debug)]
pub struct AzureScheduledEvents {
    client: reqwest::Client,
    base: String,
    acknowledge: bool,
    vm_name: Option<String>,
    incarnation: Option<u64>,
    current: Option<(Interruption, Vec<String>)>,
    /// Events already returned by a read.
    returned: Vec<String>,
    acknowledged: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EventsDocument {
    document_incarnation: u64,
    #[serde(default)]
    events: Vec<ScheduledEvent>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScheduledEvent {
    event_id: String,
    event_type: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    not_before: String,
}

impl AzureScheduledEvents {
    /// The service at `base` (e.g. `http://169.254.169.254`).
    pub fn new(client: reqwest::Client, base: &str, acknowledge: bool) -> Self {
        Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            acknowledge,
            vm_name: None,
            incarnation: None,
            current: None,
            returned: Vec::new(),
            acknowledged: Vec::new(),
        }
    }

    /// This VM's name (`/metadata/instance/compute/name`), as ARM lists it in the
    /// scale set.
    pub async fn vm_name(&mut self) -> Result<String, WatchError> {
        if let Some(n) = &self.vm_name {
            return Ok(n.clone());
        }
        let url = format!(
            "{}/metadata/instance/compute/name?api-version=2021-02-01&format=text",
            self.base
        );
        let name = text_get(&self.client, &url, ("Metadata", "true")).await?;
        let name = name.trim().to_owned();
        if name.is_empty() {
            return Err(WatchError {
                what: url,
                reason: "empty VM name".to_owned(),
            });
        }
        self.vm_name = Some(name.clone());
        Ok(name)
    }

    /// The notice in force now, if any: a `Preempt` before a `Terminate`.
    pub async fn poll(&mut self) -> Result<Option<Interruption>, WatchError> {
        let vm = self.vm_name().await?;
        let url = format!(
            "{}/metadata/scheduledevents?api-version={SCHEDULED_EVENTS_API}",
            self.base
        );
        let body = text_get(&self.client, &url, ("Metadata", "true")).await?;
        let doc: EventsDocument = serde_json::from_str(&body).map_err(|e| WatchError {
            what: format!("GET {url}"),
            reason: format!("unreadable events document: {e}"),
        })?;
        if self.incarnation != Some(doc.document_incarnation) {
            self.incarnation = Some(doc.document_incarnation);
            self.current = pick_event(&doc.events, &vm);
        }
        let Some((notice, ids)) = self.current.clone() else {
            return Ok(None);
        };
        if self.acknowledge {
            // Approved only once an earlier read has returned the notice, so the
            // watcher has already published it for the node's report.
            let pending: Vec<String> = ids
                .iter()
                .filter(|id| self.returned.contains(id) && !self.acknowledged.contains(id))
                .cloned()
                .collect();
            if !pending.is_empty() {
                self.approve(&url, &pending).await?;
                self.acknowledged.extend(pending);
            }
        }
        for id in ids {
            if !self.returned.contains(&id) {
                self.returned.push(id);
            }
        }
        Ok(Some(notice))
    }

    async fn approve(&self, url: &str, ids: &[String]) -> Result<(), WatchError> {
        let body = serde_json::json!({
            "StartRequests": ids.iter().map(|id| serde_json::json!({"EventId": id})).collect::<Vec<_>>()
        });
        let err = |reason: String| WatchError {
            what: format!("POST {url}"),
            reason,
        };
        let response = self
            .client
            .post(url)
            .header("Metadata", "true")
            .json(&body)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if !response.status().is_success() {
            return Err(err(format!("HTTP {}", response.status())));
        }
        tracing::info!(events = ?ids, "acknowledged the scheduled events");
        Ok(())
    }
}

/// The `Preempt` (else `Terminate`) events that name `vm`, as one notice with the
/// earliest `NotBefore`, and their ids.
fn pick_event(events: &[ScheduledEvent], vm: &str) -> Option<(Interruption, Vec<String>)> {
    for kind in [AZURE_PREEMPT, AZURE_TERMINATE] {
        let mine: Vec<&ScheduledEvent> = events
            .iter()
            .filter(|e| e.event_type == kind && e.resources.iter().any(|r| r == vm))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let at = mine
            .iter()
            .filter_map(|e| DateTime::parse_from_rfc2822(e.not_before.trim()).ok())
            .map(|t| t.with_timezone(&Utc))
            .min();
        return Some((
            Interruption {
                kind: kind.to_owned(),
                at,
            },
            mine.iter().map(|e| e.event_id.clone()).collect(),
        ));
    }
    None
}

/// GET of a small text value with one required header; any non-200 is an error.
async fn text_get(
    client: &reqwest::Client,
    url: &str,
    header: (&str, &str),
) -> Result<String, WatchError> {
    let err = |reason: String| WatchError {
        what: format!("GET {url}"),
        reason,
    };
    let response = client
        .get(url)
        .header(header.0, header.1)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(err(format!("HTTP {}", response.status())));
    }
    response.text().await.map_err(|e| err(e.to_string()))
}

/// GCE metadata: `instance/preempted` and `instance/maintenance-event`, read with
/// `Metadata-Flavor: Google`. After a first plain read of both, each poll is a pair
/// of hanging GETs (`wait_for_change=true&last_etag=...`) that returns as soon as
/// either value changes, or after [`GceMetadata::HANG`].
#[derive(Debug)]
pub struct GceMetadata {
    client: reqwest::Client,
    base: String,
    preempted: Option<Watched>,
    maintenance: Option<Watched>,
}

/// A watched metadata value and its ETag.
#[derive(Debug, Clone)]
struct Watched {
    text: String,
    etag: Option<String>,
}

impl GceMetadata {
    /// How long one hanging GET waits for a change (`timeout_sec`); the client's own
    /// timeout must be longer.
    pub const HANG: Duration = Duration::from_secs(60);

    /// The service at `base` (e.g. `http://169.254.169.254`).
    pub fn new(client: reqwest::Client, base: &str) -> Self {
        Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            preempted: None,
            maintenance: None,
        }
    }

    /// This instance's name (`instance/name`), the node name GKE gives it.
    pub async fn instance_name(&mut self) -> Result<String, WatchError> {
        let v = self.read("name", None).await?;
        let name = v.text.trim().to_owned();
        if name.is_empty() {
            return Err(WatchError {
                what: "instance/name".to_owned(),
                reason: "empty".to_owned(),
            });
        }
        Ok(name)
    }

    async fn read(&self, key: &str, last: Option<&Watched>) -> Result<Watched, WatchError> {
        let mut url = format!("{}/computeMetadata/v1/instance/{key}", self.base);
        if let Some(last) = last {
            url.push_str(&format!(
                "?wait_for_change=true&timeout_sec={}",
                Self::HANG.as_secs()
            ));
            if let Some(etag) = &last.etag {
                url.push_str("&last_etag=");
                url.push_str(etag);
            }
        }
        let err = |reason: String| WatchError {
            what: format!("GET {url}"),
            reason,
        };
        let response = self
            .client
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(err(format!("HTTP {}", response.status())));
        }
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.map_err(|e| err(e.to_string()))?;
        Ok(Watched { text, etag })
    }

    /// The notice in force after the next change (or the hang's end): a preemption
    /// before a terminating maintenance.
    pub async fn poll(&mut self) -> Result<Option<Interruption>, WatchError> {
        match (self.preempted.clone(), self.maintenance.clone()) {
            (Some(p), Some(m)) => {
                tokio::select! {
                    v = self.read("preempted", Some(&p)) => self.preempted = Some(v?),
                    v = self.read("maintenance-event", Some(&m)) => self.maintenance = Some(v?),
                }
            }
            _ => {
                self.preempted = Some(self.read("preempted", None).await?);
                self.maintenance = Some(self.read("maintenance-event", None).await?);
            }
        }
        Ok(self.notice())
    }

    fn notice(&self) -> Option<Interruption> {
        let is = |v: &Option<Watched>, want: &str| {
            v.as_ref()
                .is_some_and(|v| v.text.trim().eq_ignore_ascii_case(want))
        };
        if is(&self.preempted, "TRUE") {
            return Some(Interruption {
                kind: GCE_PREEMPTED.to_owned(),
                at: None,
            });
        }
        if is(&self.maintenance, "TERMINATE_ON_HOST_MAINTENANCE") {
            return Some(Interruption {
                kind: GCE_TERMINATE_ON_MAINTENANCE.to_owned(),
                at: None,
            });
        }
        None
    }
}

/// Reads the body of `spot/instance-action`, e.g.
/// `{"action": "terminate", "time": "2017-09-18T08:22:00Z"}`.
pub fn parse_instance_action(body: &str) -> Result<Interruption, WatchError> {
    let a: InstanceAction = serde_json::from_str(body).map_err(|e| WatchError {
        what: "spot/instance-action".to_owned(),
        reason: format!("unreadable body: {e}"),
    })?;
    if a.action.is_empty() {
        return Err(WatchError {
            what: "spot/instance-action".to_owned(),
            reason: "no action".to_owned(),
        });
    }
    Ok(Interruption {
        kind: SPOT_INTERRUPTION.to_owned(),
        at: a.time,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(id: &str, kind: &str, vm: &str, not_before: &str) -> ScheduledEvent {
        ScheduledEvent {
            event_id: id.to_owned(),
            event_type: kind.to_owned(),
            resources: vec![vm.to_owned()],
            not_before: not_before.to_owned(),
        }
    }

    #[test]
    fn azure_events_for_this_vm_only_preempt_first() {
        let events = vec![
            event("a", "Freeze", "vm-1", ""),
            event("b", "Terminate", "vm-1", "Tue, 09 Aug 2022 17:20:00 GMT"),
            event("c", "Preempt", "vm-2", "Tue, 09 Aug 2022 17:07:32 GMT"),
        ];
        let (notice, ids) = pick_event(&events, "vm-1").unwrap();
        assert_eq!(notice.kind, AZURE_TERMINATE);
        assert_eq!(ids, vec!["b".to_owned()]);
        assert_eq!(
            notice.at,
            Some(Utc.with_ymd_and_hms(2022, 8, 9, 17, 20, 0).unwrap())
        );
        let (notice, _) = pick_event(&events, "vm-2").unwrap();
        assert_eq!(notice.kind, AZURE_PREEMPT);
        assert!(
            pick_event(&events[..1], "vm-1").is_none(),
            "a Freeze is no interruption"
        );
        // A started event has a blank NotBefore.
        let started = [event("d", "Preempt", "vm-1", "")];
        assert_eq!(pick_event(&started, "vm-1").unwrap().0.at, None);
    }

    #[test]
    fn the_published_preempt_document_reads() {
        let doc = r#"{"DocumentIncarnation": 1, "Events": [{"EventId": "C1BF8322-4CBF-4FC4-9C45-B40CF3106D0E",
            "EventStatus": "Scheduled", "EventType": "Preempt", "ResourceType": "VirtualMachine",
            "Resources": ["vm-spot"], "NotBefore": "Tue, 09 Aug 2022 17:07:32 GMT", "Description": "",
            "EventSource": "Platform", "DurationInSeconds": -1}]}"#;
        let doc: EventsDocument = serde_json::from_str(doc).unwrap();
        assert_eq!(doc.document_incarnation, 1);
        let (notice, ids) = pick_event(&doc.events, "vm-spot").unwrap();
        assert_eq!(notice.kind, AZURE_PREEMPT);
        assert_eq!(ids, vec!["C1BF8322-4CBF-4FC4-9C45-B40CF3106D0E".to_owned()]);
    }

    #[test]
    fn an_instance_action_is_a_spot_interruption_with_its_time() {
        let i = parse_instance_action(r#"{"action": "terminate", "time": "2017-09-18T08:22:00Z"}"#)
            .unwrap();
        assert_eq!(i.kind, SPOT_INTERRUPTION);
        assert_eq!(
            i.at,
            Some(Utc.with_ymd_and_hms(2017, 9, 18, 8, 22, 0).unwrap())
        );
        let stop = parse_instance_action(r#"{"action": "stop", "time": "2017-09-18T08:22:00Z"}"#);
        assert_eq!(stop.unwrap().kind, SPOT_INTERRUPTION);
        let err = parse_instance_action("<html>").unwrap_err();
        assert!(err.to_string().contains("unreadable body"), "{err}");
    }
}
