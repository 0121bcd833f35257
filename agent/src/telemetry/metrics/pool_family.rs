//! Families labelled with a pool, which forget a removed pool's series by themselves.

use super::*;

/// A label set that names a pool.
pub trait PoolScoped {
    /// The pool it names.
    fn pool(&self) -> &str;
}

impl PoolScoped for PoolLabel {
    fn pool(&self) -> &str {
        &self.pool
    }
}

impl PoolScoped for PoolMetricLabels {
    fn pool(&self) -> &str {
        &self.pool
    }
}

impl PoolScoped for PoolActionLabels {
    fn pool(&self) -> &str {
        &self.pool
    }
}

impl PoolScoped for PoolResultLabels {
    fn pool(&self) -> &str {
        &self.pool
    }
}

impl PoolScoped for PoolErrorLabels {
    fn pool(&self) -> &str {
        &self.pool
    }
}

/// A family of series labelled with a pool. It remembers every label set it has
/// created, so when a pool goes all its series go ([`Metrics::remove_pool`]): nothing
/// to list by hand, and nothing left behind when a metric is added.
#[derive(Debug)]
pub struct PoolFamily<L, M> {
    family: Family<L, M>,
    created: Arc<Mutex<HashSet<L>>>,
}

impl<L, M> Clone for PoolFamily<L, M> {
    fn clone(&self) -> Self {
        Self {
            family: self.family.clone(),
            created: Arc::clone(&self.created),
        }
    }
}

impl<L: Clone + std::hash::Hash + Eq, M: Default> Default for PoolFamily<L, M> {
    fn default() -> Self {
        Self {
            family: Family::default(),
            created: Arc::default(),
        }
    }
}

impl<L, M> PoolFamily<L, M>
where
    L: Clone + std::hash::Hash + Eq,
    M: Default,
{
    /// The series of `labels`, created if new.
    pub fn get_or_create(&self, labels: &L) -> impl std::ops::Deref<Target = M> + '_ {
        {
            let mut created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
            if !created.contains(labels) {
                created.insert(labels.clone());
            }
        }
        self.family.get_or_create(labels)
    }

    /// Drops the series of `labels`; whether it existed.
    pub fn remove(&self, labels: &L) -> bool {
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(labels);
        self.family.remove(labels)
    }

    /// The family, to register.
    fn series(&self) -> Family<L, M> {
        self.family.clone()
    }
}

/// Drops one pool's series from a family.
pub(super) trait PoolSeries: std::fmt::Debug + Send + Sync {
    fn remove_pool(&self, pool: &str);
}

impl<L, M> PoolSeries for PoolFamily<L, M>
where
    L: PoolScoped + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync,
    M: std::fmt::Debug + Send + Sync,
{
    fn remove_pool(&self, pool: &str) {
        self.created
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|labels| {
                if labels.pool() == pool {
                    self.family.remove(labels);
                    false
                } else {
                    true
                }
            });
    }
}

/// A pool family registers its series and enrols for [`Metrics::remove_pool`].
impl<L, M> Declared for PoolFamily<L, M>
where
    L: PoolScoped
        + EncodeLabelSet
        + Clone
        + std::hash::Hash
        + Eq
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn register(
        &self,
        r: &mut Registry,
        pools: &mut Vec<Box<dyn PoolSeries>>,
        name: &str,
        help: &str,
    ) {
        r.register(name, help, self.series());
        pools.push(Box::new(self.clone()));
    }
}
