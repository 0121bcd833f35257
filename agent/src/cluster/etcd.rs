//! The `etcd` coordinator: etcd's election API on a lease, and the decision store
//! under the same prefix.
//!
//! A session grants a lease of `lease_ttl`, keeps it alive every third of the TTL, and
//! campaigns for `<prefix>/leader` with this agent's id and URL as the value. While it
//! campaigns it reads the current leader, so nodes know where to report. Once elected,
//! the claim lasts until the last confirmed keep-alive plus the TTL, less a safety
//! margin of a quarter of the TTL (at least one second): the actuator checks it before
//! every cloud call, so a leader cut off from etcd stops acting before its lease can
//! expire on the server and another agent be elected. A lost lease, a failed keep-alive
//! past the claim, or another agent's key at the head of the election ends the session;
//! a new one starts after a short back-off. On shutdown the leader resigns and revokes
//! its lease, so the next leader is elected at once rather than after the TTL.
//!
//! Decision-state writes are fenced ([`EtcdDecisions`]): each is a transaction that puts
//! only if this agent's election key still exists with the creation revision it was
//! elected with, so a leader whose lease expired (paused, partitioned) writes nothing
//! over its successor's state.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, LeaderKey, ResignOptions, Txn, TxnOp,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::coordinator::{Claim, ClaimTask, Coordinator, publish};
use crate::state::memory::DecisionStore;

/// What a candidate publishes as its election value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Candidate {
    node_id: String,
    #[serde(default)]
    url: Option<String>,
}

/// Settings of the etcd coordinator.
#[derive(Debug, Clone)]
pub struct EtcdSettings {
    /// Client URLs.
    pub endpoints: Vec<String>,
    /// Key prefix (`/capstan`).
    pub prefix: String,
    /// Lease TTL.
    pub lease_ttl: Duration,
    /// This agent's node id.
    pub node_id: String,
    /// Where this agent takes reports when it leads.
    pub url: Option<String>,
    /// TLS and user for etcd (none: plain, unauthenticated).
    pub access: EtcdAccess,
}

/// How this agent proves itself to etcd and checks etcd: TLS (the CA that signed etcd's
/// server certificates, and a client certificate for `--client-cert-auth`) and a user.
#[derive(Clone, Default)]
pub struct EtcdAccess {
    tls: Option<etcd_client::TlsOptions>,
    user: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAccess")
            .field("tls", &self.tls.is_some())
            .field("user", &self.user.as_ref().map(|u| &u.0))
            .finish_non_exhaustive()
    }
}

impl EtcdAccess {
    /// Reads `[cluster.etcd]`'s TLS files and password file; an error names the key and
    /// the file.
    pub fn load(
        tls: Option<&capstan_config::EtcdTls>,
        user: Option<&(String, std::path::PathBuf)>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        let read = |key: &str, path: &std::path::Path| {
            std::fs::read(path)
                .with_context(|| format!("cannot read cluster.etcd.{key} {}", path.display()))
        };
        let tls = match tls {
            None => None,
            Some(t) => {
                let ca = read("ca_file", &t.ca_file)?;
                anyhow::ensure!(
                    String::from_utf8_lossy(&ca).contains("-----BEGIN CERTIFICATE-----"),
                    "cluster.etcd.ca_file {}: no PEM certificate in it",
                    t.ca_file.display()
                );
                let mut o = etcd_client::TlsOptions::new()
                    .ca_certificate(etcd_client::Certificate::from_pem(ca));
                if let Some((cert_file, key_file)) = &t.client {
                    let cert = read("cert_file", cert_file)?;
                    let key = read("key_file", key_file)?;
                    o = o.identity(etcd_client::Identity::from_pem(cert, key));
                }
                Some(o)
            }
        };
        let user = match user {
            None => None,
            Some((name, file)) => {
                let password =
                    String::from_utf8(read("password_file", file)?).with_context(|| {
                        format!("cluster.etcd.password_file {}: not UTF-8", file.display())
                    })?;
                let password = password.trim_end_matches(['\n', '\r']).to_owned();
                anyhow::ensure!(
                    !password.is_empty(),
                    "cluster.etcd.password_file {} is empty",
                    file.display()
                );
                Some((name.clone(), password))
            }
        };
        Ok(Self { tls, user })
    }
}

impl EtcdSettings {
    fn election(&self) -> String {
        format!("{}/leader", self.prefix.trim_end_matches('/'))
    }

    /// The claim ends this long before the lease could expire on the server.
    pub fn margin(&self) -> Duration {
        (self.lease_ttl / 4).max(Duration::from_secs(1))
    }

    /// A client whose calls are bounded by a third of the TTL.
    pub async fn client(&self) -> Result<Client, etcd_client::Error> {
        Client::connect(&self.endpoints, Some(self.options(true))).await
    }

    /// Connection options; `per_request` bounds each call (not for the campaign,
    /// which waits as long as another agent leads).
    fn options(&self, per_request: bool) -> ConnectOptions {
        let t = (self.lease_ttl / 3).max(Duration::from_millis(500));
        let mut o = ConnectOptions::new()
            .with_connect_timeout(t)
            .with_require_leader(true);
        if let Some(tls) = &self.access.tls {
            o = o.with_tls(tls.clone());
        }
        if let Some((name, password)) = &self.access.user {
            // etcd's simple tokens expire; a new one is fetched when a call meets that.
            o = o
                .with_user(name.clone(), password.clone())
                .with_auto_token_refresh(true);
        }
        if per_request { o.with_timeout(t) } else { o }
    }
}

/// What a leader holds: a client, its key in the election, its lease.
struct Held(Client, LeaderKey, i64);

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Held(lease {:x})", self.2)
    }
}

/// The etcd coordinator (see the module documentation).
#[derive(Debug)]
pub struct EtcdCoordinator {
    claims: ClaimTask,
    /// The session's leader key and lease, for resigning.
    held: Arc<Mutex<Option<Held>>>,
}

/// This agent's key in the election while it leads: what its decision-state writes
/// are conditional on. Shared with the coordinator's session, cleared when it ends.
#[derive(Debug, Clone, Default)]
pub struct Fence(Arc<Mutex<Option<Held>>>);

impl Fence {
    fn leader_key(&self) -> Option<LeaderKey> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|h| h.1.clone())
    }
}

impl EtcdCoordinator {
    /// What this coordinator's decision store fences its writes with.
    pub fn fence(&self) -> Fence {
        Fence(self.held.clone())
    }

    /// Starts campaigning.
    pub fn start(settings: EtcdSettings) -> Self {
        let held = Arc::new(Mutex::new(None));
        let claims = ClaimTask::spawn(
            Claim {
                note: Some("connecting to etcd".to_owned()),
                ..Claim::default()
            },
            {
                let held = held.clone();
                move |tx, stop| run(settings, tx, stop, held)
            },
        );
        Self { claims, held }
    }
}

async fn run(
    settings: EtcdSettings,
    tx: watch::Sender<Claim>,
    mut stop: watch::Receiver<bool>,
    held: Arc<Mutex<Option<Held>>>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let outcome = tokio::select! {
            r = session(&settings, &tx, &held) => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        let note = match outcome {
            Ok(()) => "leadership lost".to_owned(),
            Err(e) => format!("etcd: {e:#}"),
        };
        tracing::warn!(reason = %note, "etcd coordination session ended; starting another");
        *held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        publish(
            &tx,
            Claim {
                note: Some(note),
                ..Claim::default()
            },
        );
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(settings.lease_ttl / 2);
    }
}

/// One lease, one campaign. Returns when leadership or the lease is lost.
async fn session(
    settings: &EtcdSettings,
    tx: &watch::Sender<Claim>,
    held: &Mutex<Option<Held>>,
) -> anyhow::Result<()> {
    let ttl = settings.lease_ttl;
    let mut client = settings.client().await?;
    let ttl_secs = i64::try_from(ttl.as_secs().max(2)).unwrap_or(i64::MAX);
    let granted_at = Instant::now();
    let lease = client.lease_grant(ttl_secs, None).await?.id();
    let (mut keeper, mut acks) = client.lease_keep_alive(lease).await?;
    let value = serde_json::to_vec(&Candidate {
        node_id: settings.node_id.clone(),
        url: settings.url.clone(),
    })?;
    let election = settings.election();
    // The lease is good until then as far as this agent can tell (less the margin).
    let mut confirmed = granted_at + ttl;
    let margin = settings.margin();

    let mut campaign_client =
        Client::connect(&settings.endpoints, Some(settings.options(false))).await?;
    let campaign = campaign_client.campaign(election.clone(), value, lease);
    tokio::pin!(campaign);
    let mut leader_key: Option<LeaderKey> = None;
    let mut tick = tokio::time::interval(ttl / 3);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error: Option<String> = None;

    loop {
        tokio::select! {
            r = &mut campaign, if leader_key.is_none() => {
                let mut answer = r?;
                let key = answer
                    .take_leader()
                    .ok_or_else(|| anyhow::anyhow!("campaign answered without a leader key"))?;
                tracing::info!(election = %election, "elected leader");
                *held.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    Some(Held(client.clone(), key.clone(), lease));
                leader_key = Some(key);
            }
            _ = tick.tick() => {
                let sent = Instant::now();
                let renewed = async {
                    keeper.keep_alive().await?;
                    match acks.message().await? {
                        Some(ack) if ack.ttl() > 0 => Ok(()),
                        Some(_) => Err(anyhow::anyhow!("lease {lease:x} expired on the server")),
                        None => Err(anyhow::anyhow!("keep-alive stream closed")),
                    }
                };
                match tokio::time::timeout(ttl / 3, renewed).await {
                    Ok(Ok(())) => {
                        confirmed = sent + ttl;
                        last_error = None;
                    }
                    Ok(Err(e)) if e.to_string().contains("expired") => return Err(e),
                    Ok(Err(e)) => last_error = Some(format!("keep-alive failed: {e:#}")),
                    Err(_) => last_error = Some("keep-alive unanswered".to_owned()),
                }
                if Instant::now() >= confirmed {
                    anyhow::bail!(
                        "lease {lease:x} not renewed within its TTL ({}s){}",
                        ttl.as_secs(),
                        last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                    );
                }
            }
        }
        // Who leads: read from the election, so followers know where to report and a
        // leader learns if its key is no longer at the head.
        let current = match tokio::time::timeout(ttl / 3, client.leader(election.clone())).await {
            Ok(Ok(mut r)) => r.take_kv(),
            Ok(Err(e)) => {
                last_error = Some(format!("reading the leader failed: {e}"));
                None
            }
            Err(_) => {
                last_error = Some("reading the leader timed out".to_owned());
                None
            }
        };
        let head = current.as_ref().map(|kv| {
            (
                kv.key().to_vec(),
                serde_json::from_slice::<Candidate>(kv.value()).ok(),
            )
        });
        if let (Some(key), Some((head_key, _))) = (&leader_key, &head)
            && key.key() != head_key.as_slice()
        {
            return Ok(());
        }
        let (leader_id, leader_url) = match (&leader_key, head.and_then(|(_, c)| c)) {
            (Some(_), _) => (Some(settings.node_id.clone()), settings.url.clone()),
            (None, Some(c)) => (Some(c.node_id), c.url),
            (None, None) => (None, None),
        };
        publish(
            tx,
            Claim {
                is_leader: leader_key.is_some(),
                leader_id,
                leader_url,
                valid_until: Some(confirmed.checked_sub(margin).unwrap_or(confirmed)),
                note: last_error.clone(),
            },
        );
    }
}

#[async_trait::async_trait]
impl Coordinator for EtcdCoordinator {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn claim(&self) -> watch::Receiver<Claim> {
        self.claims.subscribe()
    }

    async fn vacate(&self) {
        self.claims.stop(Duration::from_secs(2)).await;
        let held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(Held(mut client, key, lease)) = held {
            let resign = async {
                client
                    .resign(Some(ResignOptions::new().with_leader(key)))
                    .await?;
                client.lease_revoke(lease).await?;
                Ok::<_, etcd_client::Error>(())
            };
            match tokio::time::timeout(Duration::from_secs(2), resign).await {
                Ok(Ok(())) => tracing::info!("resigned leadership"),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "resigning failed; the lease expires by itself")
                }
                Err(_) => tracing::warn!("resigning timed out; the lease expires by itself"),
            }
        }
    }
}

/// Decision state in etcd, one key per pool under `<prefix>/state/`, written only by
/// the leader, in a transaction conditional on its election key ([`Fence`]).
#[derive(Clone)]
pub struct EtcdDecisions {
    client: Client,
    prefix: String,
    fence: Fence,
}

impl EtcdDecisions {
    /// The store under `<prefix>/state/`, written while `fence` holds a leader key.
    pub fn new(client: Client, prefix: &str, fence: Fence) -> Self {
        Self {
            client,
            prefix: format!("{}/state/", prefix.trim_end_matches('/')),
            fence,
        }
    }
}

impl std::fmt::Debug for EtcdDecisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdDecisions")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl DecisionStore for EtcdDecisions {
    async fn load(&self, pool: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let mut c = self.client.clone();
        let r = c.get(format!("{}{pool}", self.prefix), None).await?;
        Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
    }

    async fn save(&self, pool: &str, bytes: &[u8]) -> anyhow::Result<()> {
        let leader = self
            .fence
            .leader_key()
            .ok_or_else(|| anyhow::anyhow!("not saved: this agent does not lead"))?;
        let txn = Txn::new()
            .when([Compare::create_revision(
                leader.key(),
                CompareOp::Equal,
                leader.rev(),
            )])
            .and_then([TxnOp::put(
                format!("{}{pool}", self.prefix),
                bytes.to_vec(),
                None,
            )]);
        let mut c = self.client.clone();
        let answer = c.txn(txn).await?;
        anyhow::ensure!(
            answer.succeeded(),
            "not saved: this agent's election key is gone (its lease expired; another agent may lead)"
        );
        Ok(())
    }
}

/// How long demand history is kept in etcd: the longest `pool.predictive.history` the
/// config allows (14 days), and an hour.
const HISTORY_RETENTION_HOURS: i64 = 14 * 24 + 1;
/// Minutes waiting to be written; beyond this (etcd unreachable for long) new ones are
/// dropped and logged, never queued without bound.
const HISTORY_QUEUE: usize = 4096;

/// Demand history in etcd, so the next leader's forecasters start where this one's
/// stopped: one key per pool and hour, `<prefix>/history/<pool>/<hour since the epoch>`,
/// holding that hour's minutes as CSV lines (the file store's format). Writes go through
/// a bounded queue to a task; reads block the calling thread (they happen when a pool is
/// attached: at start, on reload and on gaining leadership).
pub struct EtcdHistory {
    client: Client,
    prefix: String,
    tx: tokio::sync::mpsc::Sender<(String, crate::state::demand::Minute)>,
}

impl std::fmt::Debug for EtcdHistory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdHistory")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn history_key(prefix: &str, pool: &str, hour: i64) -> String {
    format!("{prefix}{pool}/{hour:010}")
}

impl EtcdHistory {
    /// A store under `<prefix>/history/`, writing from a task on the current runtime.
    pub fn start(client: Client, prefix: &str) -> Self {
        let prefix = format!("{}/history/", prefix.trim_end_matches('/'));
        let (tx, rx) = tokio::sync::mpsc::channel(HISTORY_QUEUE);
        tokio::spawn(write_history(client.clone(), prefix.clone(), rx));
        Self { client, prefix, tx }
    }

    /// The points of `pool` at or after `since`, oldest first.
    pub async fn load_async(
        &self,
        pool: &str,
        since: i64,
    ) -> anyhow::Result<Vec<crate::state::demand::Minute>> {
        let mut c = self.client.clone();
        let from = history_key(&self.prefix, pool, since.div_euclid(60));
        let to = format!("{}{pool}/~", self.prefix);
        let r = c
            .get(from, Some(etcd_client::GetOptions::new().with_range(to)))
            .await?;
        let mut points: Vec<crate::state::demand::Minute> = r
            .kvs()
            .iter()
            .flat_map(|kv| {
                String::from_utf8_lossy(kv.value())
                    .lines()
                    .filter_map(crate::state::demand::parse_line)
                    .collect::<Vec<_>>()
            })
            .filter(|(m, _)| *m >= since)
            .collect();
        points.sort_by_key(|(m, _)| *m);
        points.dedup_by_key(|(m, _)| *m);
        Ok(points)
    }
}

impl crate::state::demand::HistoryStore for EtcdHistory {
    fn load(&self, pool: &str, since: i64) -> std::io::Result<Vec<crate::state::demand::Minute>> {
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| handle.block_on(self.load_async(pool, since)))
            .map_err(|e| std::io::Error::other(format!("etcd: {e:#}")))
    }

    fn append(&self, pool: &str, minute: &crate::state::demand::Minute) -> std::io::Result<()> {
        self.tx
            .try_send((pool.to_owned(), minute.clone()))
            .map_err(|e| std::io::Error::other(format!("demand history not queued: {e}")))
    }
}

/// Writes queued minutes: each pool's current hour is kept in memory (read back from
/// etcd first, as another leader may have started it) and written whole on every minute;
/// hours beyond the retention are deleted when an hour starts.
async fn write_history(
    client: Client,
    prefix: String,
    mut rx: tokio::sync::mpsc::Receiver<(String, crate::state::demand::Minute)>,
) {
    let mut hours: std::collections::HashMap<String, (i64, String)> = Default::default();
    while let Some((pool, minute)) = rx.recv().await {
        let mut c = client.clone();
        let hour = minute.0.div_euclid(60);
        let key = history_key(&prefix, &pool, hour);
        let entry = hours.get(&pool).filter(|(h, _)| *h == hour);
        let mut text = match entry {
            Some((_, text)) => text.clone(),
            None => {
                let old = history_key(&prefix, &pool, hour - HISTORY_RETENTION_HOURS);
                let from = history_key(&prefix, &pool, 0);
                if let Err(e) = c
                    .delete(
                        from,
                        Some(etcd_client::DeleteOptions::new().with_range(old)),
                    )
                    .await
                {
                    tracing::warn!(%pool, error = %e, "cannot delete old demand history");
                }
                match c.get(key.clone(), None).await {
                    Ok(r) => r
                        .kvs()
                        .first()
                        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                        .unwrap_or_default(),
                    Err(_) => String::new(),
                }
            }
        };
        text.push_str(&crate::state::demand::format_line(&minute));
        match c.put(key, text.clone(), None).await {
            Ok(_) => {}
            Err(e) => tracing::warn!(%pool, error = %e, "cannot write demand history"),
        }
        hours.insert(pool, (hour, text));
    }
}
