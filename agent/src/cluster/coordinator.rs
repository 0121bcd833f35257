//! Coordination: who leads. A coordinator publishes a `watch` of the current
//! [`Claim`]; the actuator reads it right before every cloud call
//! ([`Claim::may_act`]).
//!
//! **Invariant:** only the leader acts, and only while its lease is confirmed to last
//! beyond a safety margin: a leader cut off from its coordinator stops acting before
//! another agent can be elected.

use tokio::sync::watch;
use tokio::time::Instant;

/// The current state of the election as this agent sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claim {
    /// Whether this agent holds leadership now.
    pub is_leader: bool,
    /// The leader's node id, when known.
    pub leader_id: Option<String>,
    /// Where the leader takes reports (its `cluster.advertise_url`), when known.
    pub leader_url: Option<String>,
    /// The leader may act until then: the lease's last confirmed expiry less the
    /// safety margin. `None`: no lease (standalone).
    pub valid_until: Option<Instant>,
    /// Why this agent does not lead or cannot act, when there is something to say
    /// (e.g. "etcd unreachable: ...").
    pub note: Option<String>,
}

impl Claim {
    /// Whether this agent may make a cloud call at `now`; if not, why.
    pub fn may_act(&self, now: Instant) -> Result<(), String> {
        if !self.is_leader {
            return Err(match (&self.leader_id, &self.note) {
                (_, Some(note)) => format!("not the leader: {note}"),
                (Some(id), None) => format!("not the leader ({id} leads)"),
                (None, None) => "not the leader".to_owned(),
            });
        }
        match self.valid_until {
            Some(until) if now >= until => Err(format!(
                "leadership lease not confirmed beyond its safety margin{}",
                self.note
                    .as_deref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            )),
            _ => Ok(()),
        }
    }
}

/// A leader-election backend in the shape of kubert's `LeaseManager`: a task that
/// publishes the current claim, and gives it up on shutdown.
#[async_trait::async_trait]
pub trait Coordinator: Send + Sync + std::fmt::Debug {
    /// The backend's name as written in config.
    fn name(&self) -> &'static str;
    /// A receiver that always holds the current claim.
    fn claim(&self) -> watch::Receiver<Claim>;
    /// Gives up leadership (resigns, releases the lease), e.g. on shutdown.
    async fn vacate(&self);
}

/// Publishes `claim` only when it differs from the current one, so receivers wake for
/// real changes.
pub fn publish(tx: &watch::Sender<Claim>, claim: Claim) {
    tx.send_if_modified(|c| {
        if *c == claim {
            false
        } else {
            *c = claim;
            true
        }
    });
}

/// The running part of a coordinator backed by a task (etcd, Kubernetes): the claim
/// the task publishes, and how to stop it.
#[derive(Debug)]
pub struct ClaimTask {
    tx: watch::Sender<Claim>,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl ClaimTask {
    /// Spawns `run(claims, stop)`, which publishes claims until `stop` turns true.
    pub fn spawn<F, Fut>(initial: Claim, run: F) -> Self
    where
        F: FnOnce(watch::Sender<Claim>, watch::Receiver<bool>) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (tx, _) = watch::channel(initial);
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(tx.clone(), stop_rx));
        Self {
            tx,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        }
    }

    /// A receiver of the claims.
    pub fn subscribe(&self) -> watch::Receiver<Claim> {
        self.tx.subscribe()
    }

    /// Stops the task (waiting at most `wait` for it to clean up), then says so.
    pub async fn stop(&self, wait: std::time::Duration) {
        let _ = self.stop.send(true);
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(wait, task).await;
        }
        publish(
            &self.tx,
            Claim {
                note: Some("stopped".to_owned()),
                ..Claim::default()
            },
        );
    }
}

/// `standalone`: this agent leads itself, always.
#[derive(Debug)]
pub struct Standalone {
    tx: watch::Sender<Claim>,
}

impl Standalone {
    /// Leads as `node_id`, taking reports at `url`.
    pub fn new(node_id: &str, url: Option<String>) -> Self {
        let (tx, _) = watch::channel(Claim {
            is_leader: true,
            leader_id: Some(node_id.to_owned()),
            leader_url: url,
            ..Claim::default()
        });
        Self { tx }
    }
}

#[async_trait::async_trait]
impl Coordinator for Standalone {
    fn name(&self) -> &'static str {
        "standalone"
    }

    fn claim(&self) -> watch::Receiver<Claim> {
        self.tx.subscribe()
    }

    async fn vacate(&self) {
        self.tx.send_replace(Claim {
            note: Some("stopped".to_owned()),
            ..Claim::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn standalone_leads_until_it_vacates() {
        let c = Standalone::new("me", None);
        let rx = c.claim();
        assert!(rx.borrow().is_leader);
        assert_eq!(rx.borrow().may_act(Instant::now()), Ok(()));
        assert_eq!(rx.borrow().leader_id.as_deref(), Some("me"));
        c.vacate().await;
        assert!(!rx.borrow().is_leader);
        assert!(rx.borrow().may_act(Instant::now()).is_err());
    }

    #[tokio::test]
    async fn a_leader_stops_acting_when_its_lease_is_not_confirmed() {
        let now = Instant::now();
        let claim = Claim {
            is_leader: true,
            valid_until: Some(now + std::time::Duration::from_secs(5)),
            ..Claim::default()
        };
        assert_eq!(claim.may_act(now), Ok(()));
        let e = claim
            .may_act(now + std::time::Duration::from_secs(5))
            .unwrap_err();
        assert!(e.contains("safety margin"), "{e}");
    }
}
