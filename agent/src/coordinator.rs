//! Coordination: who leads. A coordinator publishes a `watch` of the current
//! [`Claim`]; the actuator reads it right before every cloud call.
//!
//! **Invariant:** only the leader acts.

use tokio::sync::watch;

/// The current state of the election as this agent sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Whether this agent holds leadership now.
    pub is_leader: bool,
    /// The leader's node id, when known.
    pub leader_id: Option<String>,
}

/// A leader-election backend in the shape of kubert's `LeaseManager`.
pub trait Coordinator: Send + Sync + std::fmt::Debug {
    /// The backend's name as written in config.
    fn name(&self) -> &'static str;
    /// A receiver that always holds the current claim.
    fn claim(&self) -> watch::Receiver<Claim>;
    /// Gives up leadership, e.g. on shutdown.
    fn vacate(&self);
}

/// `standalone`: this agent leads itself, always.
#[derive(Debug)]
pub struct Standalone {
    tx: watch::Sender<Claim>,
}

impl Standalone {
    /// Leads as `node_id`.
    pub fn new(node_id: &str) -> Self {
        let (tx, _) = watch::channel(Claim {
            is_leader: true,
            leader_id: Some(node_id.to_owned()),
        });
        Self { tx }
    }
}

impl Coordinator for Standalone {
    fn name(&self) -> &'static str {
        "standalone"
    }

    fn claim(&self) -> watch::Receiver<Claim> {
        self.tx.subscribe()
    }

    fn vacate(&self) {
        self.tx.send_replace(Claim {
            is_leader: false,
            leader_id: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_leads_until_it_vacates() {
        let c = Standalone::new("me");
        let rx = c.claim();
        assert!(rx.borrow().is_leader);
        assert_eq!(rx.borrow().leader_id.as_deref(), Some("me"));
        c.vacate();
        assert!(!rx.borrow().is_leader);
    }
}
