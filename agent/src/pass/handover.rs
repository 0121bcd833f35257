//! Handing a pool over to the next leader: its [`Memory`] is saved after every pass
//! while leading ([`save_changed`]) and loaded when leadership is gained
//! ([`restore_all`]), from whichever [`DecisionStore`] the coordinator keeps.

use super::PoolRuntime;
use crate::state::memory::{DecisionStore, Memory};

/// Loads every pool's memory from `store` into `pools`; a pool without stored state,
/// or with unreadable state (said in the log), keeps what it has. A provider call
/// still held from an earlier term is dropped: its answer belongs to that term's
/// operation, not to the one the stored state names (which is polled afresh, or, with
/// no handle, planned from what the cloud shows).
pub async fn restore_all(store: &dyn DecisionStore, pools: &mut [PoolRuntime]) -> usize {
    let mut restored = 0;
    for pool in pools.iter_mut() {
        if let Some(call) = pool.call.take() {
            call.abort();
        }
        match store.load(&pool.config.name).await {
            Ok(Some(bytes)) => match Memory::decode(&bytes) {
                Ok(m) => {
                    pool.memory = m;
                    restored += 1;
                }
                Err(e) => {
                    tracing::warn!(pool = %pool.config.name, error = %e, "stored decision state ignored")
                }
            },
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(pool = %pool.config.name, error = %e, "cannot read stored decision state")
            }
        }
    }
    restored
}

/// Saves every pool whose memory changed since `saved` (pool → bytes last saved).
/// Returns the pools that could not be saved, with why.
pub async fn save_changed(
    store: &dyn DecisionStore,
    pools: &[PoolRuntime],
    saved: &mut std::collections::HashMap<String, Vec<u8>>,
) -> Vec<(String, String)> {
    let mut failed = Vec::new();
    for pool in pools {
        let bytes = pool.memory.encode();
        if saved.get(&pool.config.name) == Some(&bytes) {
            continue;
        }
        match store.save(&pool.config.name, &bytes).await {
            Ok(()) => {
                saved.insert(pool.config.name.clone(), bytes);
            }
            Err(e) => failed.push((pool.config.name.clone(), e.to_string())),
        }
    }
    failed
}

/// Saves every pool whose memory changed ([`save_changed`]), then gives the answers to
/// the nodes' reports (drain and undrain orders) that the stored state holds: a node
/// hears that it was chosen only once a successor would know it, so a leader that dies
/// between choosing a node and saving that choice leaves no node draining that no
/// leader follows. A pool whose save failed answers from what was last saved of it.
/// Returns the answers, and the pools that could not be saved, with why.
pub async fn save_then_answer(
    store: &dyn DecisionStore,
    pools: &[PoolRuntime],
    saved: &mut std::collections::HashMap<String, Vec<u8>>,
) -> (
    std::collections::HashMap<String, capstan_collectors::ReportAnswer>,
    Vec<(String, String)>,
) {
    let failed = save_changed(store, pools, saved).await;
    let mut answers = std::collections::HashMap::new();
    for pool in pools {
        let name = &pool.config.name;
        if !failed.iter().any(|(p, _)| p == name) {
            super::scale_in::answer_drains(name, &pool.memory.drains, &mut answers);
        } else if let Some(m) = saved.get(name).and_then(|b| Memory::decode(b).ok()) {
            super::scale_in::answer_drains(name, &m.drains, &mut answers);
        }
    }
    (answers, failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::FileDecisions;
    use capstan_providers::CapacityTarget;
    use chrono::{TimeZone, Utc};

    #[tokio::test]
    async fn memory_survives_the_file_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileDecisions::open(dir.path().join("decisions")).unwrap();
        let cfg = crate::pass::tests::config();
        let provider = crate::pass::build_provider(&cfg.pools[0]).unwrap();
        let mut pool = PoolRuntime::new(cfg.pools[0].clone(), provider.clone());
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap();
        pool.memory.history.record_recommendation(5, now);
        pool.memory.history.record_scale(2, 5, now);
        pool.memory.failures = 2;
        pool.memory.last_target = Some(CapacityTarget::on_demand(5));
        let mut saved = std::collections::HashMap::new();
        assert!(
            save_changed(&store, std::slice::from_ref(&pool), &mut saved)
                .await
                .is_empty()
        );
        assert_eq!(saved.len(), 1);

        let mut next = [PoolRuntime::new(cfg.pools[0].clone(), provider)];
        assert_eq!(restore_all(&store, &mut next).await, 1);
        assert_eq!(next[0].memory, pool.memory);
        assert_eq!(next[0].memory.history.scale_up_events.len(), 1);

        // Unreadable state is ignored, not fatal.
        std::fs::write(dir.path().join("decisions/web.json"), "{").unwrap();
        let mut fresh = [PoolRuntime::new(
            cfg.pools[0].clone(),
            crate::pass::build_provider(&cfg.pools[0]).unwrap(),
        )];
        assert_eq!(restore_all(&store, &mut fresh).await, 0);
        assert!(fresh[0].memory.history.scale_up_events.is_empty());
    }

    /// A store whose saves fail while `down` is set.
    #[derive(Debug, Default)]
    struct Flaky {
        inner: std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>,
        down: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl DecisionStore for Flaky {
        async fn load(&self, pool: &str) -> anyhow::Result<Option<Vec<u8>>> {
            Ok(self.inner.lock().unwrap().get(pool).cloned())
        }
        async fn save(&self, pool: &str, bytes: &[u8]) -> anyhow::Result<()> {
            if self.down.load(std::sync::atomic::Ordering::Relaxed) {
                anyhow::bail!("the store is down");
            }
            self.inner
                .lock()
                .unwrap()
                .insert(pool.to_owned(), bytes.to_vec());
            Ok(())
        }
    }

    fn drain(node: &str, at: chrono::DateTime<Utc>) -> crate::state::memory::Drain {
        crate::state::memory::Drain {
            node: node.into(),
            chosen_at: at,
            deadline: at + chrono::Duration::minutes(5),
            phase: crate::state::memory::DrainPhase::Draining,
            started: false,
        }
    }

    /// A node hears it was chosen only from saved state: while the store refuses the
    /// save of a new choice, the node is not told (a successor could not follow its
    /// drain), and what was saved before is still answered.
    #[tokio::test]
    async fn a_node_is_told_to_drain_only_once_its_choice_is_saved() {
        let store = Flaky::default();
        let cfg = crate::pass::tests::config();
        let provider = crate::pass::build_provider(&cfg.pools[0]).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap();
        let mut pools = [PoolRuntime::new(cfg.pools[0].clone(), provider)];
        pools[0].memory.drains.push(drain("i-1", now));
        let mut saved = std::collections::HashMap::new();
        let (answers, failed) = save_then_answer(&store, &pools, &mut saved).await;
        assert!(failed.is_empty());
        assert_eq!(answers.keys().collect::<Vec<_>>(), ["i-1"]);

        // A second choice while the store is down: not told; the first still is.
        store.down.store(true, std::sync::atomic::Ordering::Relaxed);
        pools[0].memory.drains.push(drain("i-2", now));
        let (answers, failed) = save_then_answer(&store, &pools, &mut saved).await;
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(failed[0].1.contains("down"), "{failed:?}");
        assert_eq!(answers.keys().collect::<Vec<_>>(), ["i-1"]);
        let order = answers["i-1"].drain.as_ref().unwrap();
        assert_eq!(
            (order.pool.as_str(), order.deadline),
            ("web", now + chrono::Duration::minutes(5))
        );

        // Saved at last: told.
        store
            .down
            .store(false, std::sync::atomic::Ordering::Relaxed);
        let (answers, failed) = save_then_answer(&store, &pools, &mut saved).await;
        assert!(failed.is_empty());
        let mut told: Vec<&String> = answers.keys().collect();
        told.sort();
        assert_eq!(told, ["i-1", "i-2"]);
        let mut next = [PoolRuntime::new(
            cfg.pools[0].clone(),
            crate::pass::build_provider(&cfg.pools[0]).unwrap(),
        )];
        assert_eq!(restore_all(&store, &mut next).await, 1);
        assert_eq!(next[0].memory.drains.len(), 2);
    }

    /// A leader that lost its claim with a call in flight and leads again later: the
    /// call's answer (here a refusal by the fence) is not taken for the operation the
    /// stored state names, which another leader submitted.
    #[tokio::test]
    async fn a_call_from_an_earlier_term_is_dropped_when_leading_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileDecisions::open(dir.path().join("decisions")).unwrap();
        let cfg = crate::pass::tests::config();
        let provider = crate::pass::build_provider(&cfg.pools[0]).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap();
        let mut other = PoolRuntime::new(cfg.pools[0].clone(), provider.clone());
        other.memory.operation = Some(crate::state::memory::Operation {
            handle: Some(capstan_providers::OperationHandle {
                id: "operations/theirs".into(),
                via: String::new(),
            }),
            started_at: now,
            target: CapacityTarget::on_demand(4),
            from: 2,
            remove: Vec::new(),
        });
        let mut saved = std::collections::HashMap::new();
        assert!(
            save_changed(&store, std::slice::from_ref(&other), &mut saved)
                .await
                .is_empty()
        );

        let mut pools = [PoolRuntime::new(cfg.pools[0].clone(), provider)];
        pools[0].call = Some(tokio::spawn(async {
            Err(capstan_providers::ProviderError::Fenced {
                message: "lease ran out".into(),
            })
        }));
        assert_eq!(restore_all(&store, &mut pools).await, 1);
        assert!(pools[0].call.is_none());
        // The stored operation is followed by a poll of its own handle.
        let standing =
            crate::pass::operation::standing(&mut pools[0], std::time::Duration::ZERO).await;
        assert!(
            matches!(standing, crate::pass::operation::Standing::Running),
            "{standing:?}"
        );
        assert_eq!(
            pools[0].memory.operation.as_ref().map(|o| o.id()),
            Some("operations/theirs")
        );
    }
}
