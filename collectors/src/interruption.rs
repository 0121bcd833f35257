//! Interruption notices from the cloud's metadata service: the cloud telling this node
//! that it will be taken away (a spot reclaim) or is at elevated risk of it (a
//! rebalance recommendation).
//!
//! [`AwsImds`] speaks IMDSv2: a session token from `PUT /latest/api/token`, then `GET`
//! of `meta-data/spot/instance-action` and `meta-data/events/recommendations/rebalance`
//! with the token; 404 means no notice. The agent polls it every
//! `agent.interruptions.poll` (2 s by default) and puts the notice into its report.
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
