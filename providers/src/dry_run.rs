//! The `dry-run` provider: a pool that exists only in memory.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::{
    CapacityTarget, Health, Instance, Lifecycle, Market, NodePoolProvider, PoolDescription,
    ProviderError,
};

/// Starts at a configured size, applies targets in memory at once, and records each.
#[derive(Debug)]
pub struct DryRunProvider {
    pool: String,
    min: u32,
    max: u32,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    target: CapacityTarget,
    applied: Vec<CapacityTarget>,
}

impl DryRunProvider {
    /// A pool called `pool` with `initial` on-demand nodes and the given bounds.
    pub fn new(pool: impl Into<String>, initial: u32, min: u32, max: u32) -> Self {
        Self {
            pool: pool.into(),
            min,
            max,
            state: Mutex::new(State {
                target: CapacityTarget::on_demand(initial),
                applied: Vec::new(),
            }),
        }
    }

    /// Every target applied so far, oldest first.
    pub fn applied(&self) -> Vec<CapacityTarget> {
        self.lock().applied.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl NodePoolProvider for DryRunProvider {
    fn kind(&self) -> &'static str {
        "dry-run"
    }

    async fn describe(&self) -> Result<PoolDescription, ProviderError> {
        let state = self.lock();
        let t = state.target;
        let instances = (0..t.capacity)
            .map(|i| Instance {
                id: format!("dry-run-{}-{i}", self.pool),
                lifecycle: Lifecycle::InService,
                health: Health::Healthy,
                instance_type: None,
                zone: None,
                market: if i < t.on_demand {
                    Market::OnDemand
                } else {
                    Market::Spot
                },
            })
            .collect();
        Ok(PoolDescription {
            min: self.min,
            max: self.max.max(t.capacity),
            desired: t.capacity,
            instances,
        })
    }

    async fn apply(&self, target: &CapacityTarget) -> Result<(), ProviderError> {
        if target.on_demand > target.capacity {
            return Err(ProviderError::Validation {
                message: format!(
                    "on_demand {} exceeds capacity {}",
                    target.on_demand, target.capacity
                ),
            });
        }
        let mut state = self.lock();
        state.target = *target;
        state.applied.push(*target);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn applies_absolute_targets_and_records_them() {
        let p = DryRunProvider::new("web", 2, 1, 10);
        let d = p.describe().await.unwrap();
        assert_eq!((d.desired, d.instances.len()), (2, 2));
        let t = CapacityTarget {
            capacity: 5,
            on_demand: 3,
            emergency: false,
        };
        p.apply(&t).await.unwrap();
        p.apply(&t).await.unwrap();
        let d = p.describe().await.unwrap();
        assert_eq!(d.desired, 5);
        assert_eq!(
            d.instances
                .iter()
                .filter(|i| i.market == Market::Spot)
                .count(),
            2
        );
        assert_eq!(p.applied(), vec![t, t]);
        let bad = CapacityTarget {
            capacity: 1,
            on_demand: 2,
            emergency: false,
        };
        assert!(matches!(
            p.apply(&bad).await,
            Err(ProviderError::Validation { .. })
        ));
    }
}
