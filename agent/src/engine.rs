//! One planning pass over the pools: describe, aggregate, plan, actuate, record.
//! The daemon runs it every interval; `capstan plan` runs it once without acting.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use capstan_collectors::NodeReport;
use capstan_config::{Pool, ProviderConfig, ValidatedConfig};
use capstan_providers::dry_run::DryRunProvider;
use capstan_providers::{CapacityTarget, NodePoolProvider, PoolDescription, ProviderError};

use crate::aggregate;
use crate::brain::{self, Decision, History, MetricSample, Observed, Policy, Reason};
use crate::coordinator::Claim;

/// Longest wait between retries of a failing pool.
const MAX_BACKOFF: chrono::Duration = chrono::Duration::minutes(5);

/// Builds the provider a pool is configured with.
pub fn build_provider(pool: &Pool) -> Result<Arc<dyn NodePoolProvider>, String> {
    match &pool.provider {
        ProviderConfig::DryRun(d) => Ok(Arc::new(DryRunProvider::new(
            pool.name.clone(),
            d.initial,
            pool.min,
            pool.max,
        ))),
        other => Err(format!(
            "pool \"{}\": provider type \"{}\" is not available in this build of capstan (only \"dry-run\" is)",
            pool.name,
            other.kind()
        )),
    }
}

/// A pool with everything the loop keeps between passes.
#[derive(Debug)]
pub struct PoolRuntime {
    /// Its configuration.
    pub config: Pool,
    /// The planner's view of it.
    pub policy: Policy,
    /// Its provider.
    pub provider: Arc<dyn NodePoolProvider>,
    /// Planner history.
    pub history: History,
    /// Consecutive failed provider calls.
    pub failures: u32,
    /// No provider call before this time, after failures.
    pub retry_at: Option<DateTime<Utc>>,
    /// The last pass's outcome.
    pub last: Option<PassOutcome>,
    /// Why the last pass made no decision, if it made none.
    pub last_error: Option<String>,
}

impl PoolRuntime {
    /// A pool with fresh state.
    pub fn new(config: Pool, provider: Arc<dyn NodePoolProvider>) -> Self {
        Self {
            policy: Policy::from(&config),
            config,
            provider,
            history: History::default(),
            failures: 0,
            retry_at: None,
            last: None,
            last_error: None,
        }
    }
}

/// Builds every pool of `cfg`, taking from `old` the provider and history of pools
/// whose provider settings did not change. On error `old` is left untouched.
pub fn build_pools(
    cfg: &ValidatedConfig,
    old: &mut HashMap<String, PoolRuntime>,
) -> Result<Vec<PoolRuntime>, String> {
    let reusable = |pool: &Pool| {
        old.get(&pool.name)
            .is_some_and(|p| p.config.provider == pool.provider)
    };
    let mut fresh = Vec::with_capacity(cfg.pools.len());
    for pool in &cfg.pools {
        fresh.push(if reusable(pool) {
            None
        } else {
            Some(build_provider(pool)?)
        });
    }
    let mut pools = Vec::with_capacity(cfg.pools.len());
    for (pool, provider) in cfg.pools.iter().zip(fresh) {
        match (provider, old.remove(&pool.name)) {
            (None, Some(mut kept)) => {
                kept.policy = Policy::from(pool);
                kept.config = pool.clone();
                pools.push(kept);
            }
            (Some(provider), _) => pools.push(PoolRuntime::new(pool.clone(), provider)),
            (None, None) => return Err(format!("pool \"{}\" vanished during reload", pool.name)),
        }
    }
    Ok(pools)
}

/// What one pass did to one pool.
#[derive(Debug, Clone, Serialize)]
pub struct PassOutcome {
    /// When.
    pub at: DateTime<Utc>,
    /// Nodes the provider reported.
    pub current: u32,
    /// Nodes decided.
    pub desired: u32,
    /// On-demand share of `desired`.
    pub on_demand: u32,
    /// `none`, `scaled`, `skipped`, `failed` or `plan` (planned only).
    pub action: &'static str,
    /// Why not scaled, or the error.
    pub detail: Option<String>,
    /// The provider error's kind when the action failed.
    pub error_kind: Option<&'static str>,
    /// The decision's reasons.
    pub reasons: Vec<Reason>,
    /// One sample per target.
    pub samples: Vec<Option<MetricSample>>,
}

/// Why a pass produced no decision.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PassError {
    /// Earlier calls failed; the pool is left alone until `until`.
    #[error("backing off after {failures} failed provider call(s) until {until}")]
    BackingOff {
        /// Consecutive failures.
        failures: u32,
        /// When calls resume.
        until: DateTime<Utc>,
    },
    /// Describing the pool failed.
    #[error("describe failed: {0}")]
    Describe(#[from] ProviderError),
}

/// Whether to call the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Plan and apply (the daemon).
    Act,
    /// Plan only (`capstan plan`).
    PlanOnly,
}

fn provider_failure(
    pool: &mut PoolRuntime,
    err: &ProviderError,
    now: DateTime<Utc>,
    interval: std::time::Duration,
) {
    pool.failures = pool.failures.saturating_add(1);
    let base = chrono::Duration::from_std(interval).unwrap_or(MAX_BACKOFF);
    let backoff = base * 2i32.saturating_pow(pool.failures.min(16)).min(1 << 16);
    let wait = match err {
        ProviderError::Throttled {
            retry_after: Some(hint),
            ..
        } => chrono::Duration::from_std(*hint)
            .unwrap_or(MAX_BACKOFF)
            .max(backoff),
        _ => backoff,
    };
    pool.retry_at = Some(now + wait.min(MAX_BACKOFF));
}

/// Runs one pass for `pool`. Describes the pool, plans against the fresh reports,
/// and, in [`Mode::Act`] while `claim` says this agent leads, applies the absolute
/// target when it differs from what the pool holds.
pub async fn pass(
    pool: &mut PoolRuntime,
    reports: &[&NodeReport],
    claim: &tokio::sync::watch::Receiver<Claim>,
    mode: Mode,
    now: DateTime<Utc>,
    interval: std::time::Duration,
) -> Result<PassOutcome, PassError> {
    if let Some(until) = pool.retry_at.filter(|at| *at > now) {
        return Err(PassError::BackingOff {
            failures: pool.failures,
            until,
        });
    }
    let description: PoolDescription = match pool.provider.describe().await {
        Ok(d) => d,
        Err(e) => {
            provider_failure(pool, &e, now, interval);
            return Err(PassError::Describe(e));
        }
    };
    let samples = aggregate::samples(&pool.config, &description, reports);
    pool.history.prune(&pool.policy.behavior, now);
    if pool.last.is_none() && pool.history.recommendations.is_empty() {
        // As HPA does for a target it sees for the first time: the current size counts
        // as a recent recommendation, so a (re)started agent waits out the scale-down
        // window instead of shrinking the pool on its first look.
        pool.history
            .recommendations
            .push(crate::brain::planner::Recommendation {
                at: now,
                nodes: description.desired,
            });
    }
    let observed = Observed {
        current: description.desired,
        metrics: &samples,
        history: &pool.history,
    };
    let decision: Decision = brain::plan(&observed, &pool.policy, now);
    let on_demand = brain::on_demand_share(decision.desired, pool.config.spot.as_ref());

    let mut outcome = PassOutcome {
        at: now,
        current: decision.current,
        desired: decision.desired,
        on_demand,
        action: "none",
        detail: None,
        error_kind: None,
        reasons: decision.reasons.clone(),
        samples,
    };
    if mode == Mode::PlanOnly {
        outcome.action = "plan";
        return Ok(outcome);
    }
    pool.history.record_decision(&decision, now);
    if decision.desired != description.desired {
        // Checked right before the cloud call: only the leader acts.
        if !claim.borrow().is_leader {
            outcome.action = "skipped";
            outcome.detail = Some("not the leader".to_owned());
        } else {
            let target = CapacityTarget {
                capacity: decision.desired,
                on_demand,
                emergency: false,
            };
            match pool.provider.apply(&target).await {
                Ok(()) => {
                    pool.history
                        .record_scale(description.desired, decision.desired, now);
                    pool.failures = 0;
                    pool.retry_at = None;
                    outcome.action = "scaled";
                }
                Err(e) => {
                    provider_failure(pool, &e, now, interval);
                    outcome.action = "failed";
                    outcome.detail = Some(e.to_string());
                    outcome.error_kind = Some(e.kind());
                }
            }
        }
    } else {
        pool.failures = 0;
        pool.retry_at = None;
    }
    pool.last = Some(outcome.clone());
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_providers::fake::FakeProvider;
    use chrono::TimeZone;

    fn config() -> ValidatedConfig {
        let text = r#"
            [[pool]]
            name = "web"
            provider = { type = "dry-run", initial = 2 }
            min = 1
            max = 10
            targets = [{ metric = "cpu.utilization", value = 50 }]
        "#;
        capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap()
    }

    fn report(cpu: f64, at: DateTime<Utc>) -> NodeReport {
        crate::testutil::cpu_report("host", "web", cpu, at)
    }

    fn fake(desired: u32) -> Arc<FakeProvider> {
        Arc::new(FakeProvider::new(PoolDescription {
            min: 1,
            max: 10,
            desired,
            instances: vec![],
        }))
    }

    fn leader() -> tokio::sync::watch::Receiver<Claim> {
        tokio::sync::watch::channel(Claim {
            is_leader: true,
            leader_id: None,
        })
        .1
    }

    const SECOND: std::time::Duration = std::time::Duration::from_secs(1);

    #[tokio::test]
    async fn applies_absolute_targets_only_when_they_differ() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let f = fake(2);
        let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
        let r = report(100.0, now);
        let out = pass(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
            .await
            .unwrap();
        assert_eq!((out.current, out.desired, out.action), (2, 4, "scaled"));
        assert_eq!(f.apply_calls(), vec![CapacityTarget::on_demand(4)]);
        let r = report(50.0, now);
        let out = pass(
            &mut pool,
            &[&r],
            &leader(),
            Mode::Act,
            now + chrono::Duration::seconds(1),
            SECOND,
        )
        .await
        .unwrap();
        assert_eq!((out.desired, out.action), (4, "none"));
        assert_eq!(f.apply_calls().len(), 1, "no call when nothing changes");
    }

    #[tokio::test]
    async fn a_fresh_agent_waits_out_the_scale_down_window_before_shrinking() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let f = fake(4);
        let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone()); // balanced: 300 s
        let idle = report(5.0, now);
        let out = pass(&mut pool, &[&idle], &leader(), Mode::Act, now, SECOND)
            .await
            .unwrap();
        assert_eq!((out.desired, out.action), (4, "none"));
        let later = now + chrono::Duration::seconds(301);
        let idle = report(5.0, later);
        let out = pass(&mut pool, &[&idle], &leader(), Mode::Act, later, SECOND)
            .await
            .unwrap();
        assert_eq!((out.desired, out.action), (1, "scaled"));
    }

    #[tokio::test]
    async fn plan_only_and_followers_never_call_the_provider() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let f = fake(2);
        let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
        let r = report(100.0, now);
        let out = pass(&mut pool, &[&r], &leader(), Mode::PlanOnly, now, SECOND)
            .await
            .unwrap();
        assert_eq!((out.desired, out.action), (4, "plan"));
        let follower = tokio::sync::watch::channel(Claim {
            is_leader: false,
            leader_id: Some("other".into()),
        })
        .1;
        let out = pass(&mut pool, &[&r], &follower, Mode::Act, now, SECOND)
            .await
            .unwrap();
        assert_eq!(out.action, "skipped");
        assert!(f.apply_calls().is_empty());
    }

    #[tokio::test]
    async fn failures_back_off_and_never_grow_the_target() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let f = fake(2);
        let mut pool = PoolRuntime::new(config().pools.remove(0), f.clone());
        let r = report(100.0, now);
        f.fail_next_apply(ProviderError::Throttled {
            message: "Rate exceeded".into(),
            retry_after: None,
        });
        let out = pass(&mut pool, &[&r], &leader(), Mode::Act, now, SECOND)
            .await
            .unwrap();
        assert_eq!((out.action, out.error_kind), ("failed", Some("throttled")));
        // Within the backoff the pool is left alone.
        assert!(
            pass(
                &mut pool,
                &[&r],
                &leader(),
                Mode::Act,
                now + chrono::Duration::seconds(1),
                SECOND
            )
            .await
            .is_err()
        );
        assert_eq!(f.apply_calls().len(), 1);
        // After it, the same absolute target is tried again, not a bigger one.
        let later = now + chrono::Duration::seconds(3);
        let out = pass(&mut pool, &[&r], &leader(), Mode::Act, later, SECOND)
            .await
            .unwrap();
        assert_eq!(out.action, "scaled");
        assert_eq!(
            f.apply_calls(),
            vec![CapacityTarget::on_demand(4), CapacityTarget::on_demand(4)]
        );
    }

    #[test]
    fn reload_keeps_state_of_unchanged_pools() {
        let cfg = config();
        let mut pools = build_pools(&cfg, &mut HashMap::new()).unwrap();
        pools[0]
            .history
            .record_scale(1, 2, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let mut old: HashMap<_, _> = pools
            .into_iter()
            .map(|p| (p.config.name.clone(), p))
            .collect();
        let again = build_pools(&cfg, &mut old).unwrap();
        assert_eq!(again[0].history.scale_up_events.len(), 1);
    }

    #[test]
    fn clouds_not_in_this_build_are_a_clear_error() {
        let text = r#"
            [[pool]]
            name = "gpu"
            provider = { type = "aws", region = "us-east-1", asg = "ml" }
            min = 1
            max = 10
            targets = [{ metric = "cpu.utilization", value = 50 }]
        "#;
        let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
        let mut old: HashMap<_, _> = build_pools(&config(), &mut HashMap::new())
            .unwrap()
            .into_iter()
            .map(|p| (p.config.name.clone(), p))
            .collect();
        let err = build_pools(&cfg, &mut old).unwrap_err();
        assert!(err.contains("\"aws\" is not available"), "{err}");
        assert!(
            old.contains_key("web"),
            "a failed build leaves the old pools in place"
        );
    }
}
