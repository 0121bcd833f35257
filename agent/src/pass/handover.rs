//! Handing a pool over to the next leader: its [`Memory`] is saved after every pass
//! while leading ([`save_changed`]) and loaded when leadership is gained
//! ([`restore_all`]), from whichever [`DecisionStore`] the coordinator keeps.

use super::PoolRuntime;
use crate::state::memory::{DecisionStore, Memory};

/// Loads every pool's memory from `store` into `pools`; a pool without stored state,
/// or with unreadable state (said in the log), keeps what it has.
pub async fn restore_all(store: &dyn DecisionStore, pools: &mut [PoolRuntime]) -> usize {
    let mut restored = 0;
    for pool in pools.iter_mut() {
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
}
