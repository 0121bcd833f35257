//! A decorator that counts and times every call to a pool's provider:
//! `capstan_provider_requests_total{provider,operation,outcome}` and
//! `capstan_provider_request_duration_seconds{provider,operation}`.

use std::sync::Arc;

use async_trait::async_trait;
use capstan_providers::{
    Applied, CapacityTarget, Fence, InstanceShape, NodePoolProvider, OperationHandle,
    PoolDescription, ProviderError,
};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::telemetry::metrics::{
    HistogramFamily, Metrics, ProviderOperationLabels, ProviderRequestLabels,
};

/// Any provider, with its calls counted and timed.
#[derive(Debug)]
pub struct Instrumented {
    inner: Arc<dyn NodePoolProvider>,
    requests: Family<ProviderRequestLabels, Counter>,
    seconds: HistogramFamily<ProviderOperationLabels>,
}

impl Instrumented {
    /// Wraps `inner`, counting into `metrics`' provider families.
    pub fn wrap(inner: Arc<dyn NodePoolProvider>, metrics: &Metrics) -> Arc<dyn NodePoolProvider> {
        Arc::new(Self {
            inner,
            requests: metrics.provider_requests.clone(),
            seconds: metrics.provider_request_seconds.clone(),
        })
    }

    async fn observe<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let started = tokio::time::Instant::now();
        let result = call.await;
        let provider = self.inner.kind().to_owned();
        self.seconds
            .get_or_create(&ProviderOperationLabels {
                provider: provider.clone(),
                operation: operation.to_owned(),
            })
            .observe(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.requests
            .get_or_create(&ProviderRequestLabels {
                provider,
                operation: operation.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        result
    }
}

#[async_trait]
impl NodePoolProvider for Instrumented {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn describe(&self) -> Result<PoolDescription, ProviderError> {
        self.observe("describe", self.inner.describe()).await
    }

    async fn apply(&self, target: &CapacityTarget) -> Result<(), ProviderError> {
        self.observe("apply", self.inner.apply(target)).await
    }

    async fn submit(
        &self,
        target: &CapacityTarget,
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        // Counted as `apply`, as before operations were followed across passes.
        self.observe("apply", self.inner.submit(target, fence))
            .await
    }

    fn set_targeted(&self, targeted: bool) {
        self.inner.set_targeted(targeted);
    }

    async fn remove(&self, ids: &[String]) -> Result<(), ProviderError> {
        self.observe("remove", self.inner.remove(ids)).await
    }

    async fn submit_remove(
        &self,
        ids: &[String],
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        self.observe("remove", self.inner.submit_remove(ids, fence))
            .await
    }

    async fn poll(&self, op: &OperationHandle) -> Result<Applied, ProviderError> {
        self.observe("poll", self.inner.poll(op)).await
    }

    async fn spot_price(&self) -> Result<Option<f64>, ProviderError> {
        self.observe("spot_price", self.inner.spot_price()).await
    }

    async fn instance_types(&self) -> Result<Vec<InstanceShape>, ProviderError> {
        self.observe("instance_types", self.inner.instance_types())
            .await
    }

    async fn instance_family(&self, family: &str) -> Result<Vec<InstanceShape>, ProviderError> {
        self.observe("instance_family", self.inner.instance_family(family))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_providers::fake::FakeProvider;

    #[tokio::test]
    async fn every_call_is_counted_by_outcome_and_timed() {
        let fake = Arc::new(FakeProvider::new(PoolDescription {
            steps: Default::default(),
            min: 0,
            max: 5,
            desired: 1,
            instances: vec![],
        }));
        let metrics = Metrics::new();
        let p = Instrumented::wrap(fake.clone(), &metrics);
        p.describe().await.unwrap();
        fake.fail_next_apply(ProviderError::Throttled {
            message: "slow down".into(),
            retry_after: None,
        });
        p.apply(&CapacityTarget::on_demand(3)).await.unwrap_err();
        p.apply(&CapacityTarget::on_demand(3)).await.unwrap();
        let text = metrics.encode();
        for line in [
            r#"capstan_provider_requests_total{provider="fake",operation="describe",outcome="ok"} 1"#,
            r#"capstan_provider_requests_total{provider="fake",operation="apply",outcome="throttled"} 1"#,
            r#"capstan_provider_requests_total{provider="fake",operation="apply",outcome="ok"} 1"#,
            r#"capstan_provider_request_duration_seconds_count{provider="fake",operation="apply"} 2"#,
        ] {
            assert!(text.contains(line), "{line} not in\n{text}");
        }
    }
}
