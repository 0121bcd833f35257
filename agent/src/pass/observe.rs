//! Observing a pool: describing it at its cloud, aggregating its reports and scrapes.

use super::*;

/// What describing a pool gave.
#[derive(Clone)]
pub(super) struct Seen {
    pub(super) description: PoolDescription,
    pub(super) samples: Vec<Option<MetricSample>>,
    pub(super) live_spot: Option<f64>,
    /// The predictor's outlook, its reasons including this pass's anomalies.
    pub(super) outlook: Outlook,
    /// The metric of the first surge anomaly this pass.
    pub(super) surge: Option<Metric>,
    /// Nodes with an interruption notice.
    pub(super) interrupted: u32,
    /// Nodes with a faulty GPU.
    pub(super) faulty_gpus: u32,
    /// In-service instances.
    pub(super) in_service: u32,
    /// For a group member: one sample per target of its group.
    pub(super) group_samples: Vec<Option<MetricSample>>,
    /// The pool's reporting nodes, for targeted scale-in (empty while its reports
    /// match none of its instances).
    pub(super) nodes: Vec<super::scale_in::NodeFacts>,
}

/// How long a pass waits for one pool's description: the interval, between 10 and
/// 30 s (room for the SDKs' own retries of a throttled call). A cloud endpoint that
/// hangs holds the pass this long once; then the pool backs off and the next passes
/// skip it until its retry.
pub(super) fn describe_timeout(interval: std::time::Duration) -> std::time::Duration {
    interval.clamp(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(30),
    )
}

/// Describes `pool` and aggregates its reports: samples of its own targets and, for a
/// group member, of its group's (`group_targets`).
pub(super) async fn observe(
    pool: &mut PoolRuntime,
    group_targets: &[capstan_config::Target],
    reports: &[&NodeReport],
    now: DateTime<Utc>,
    interval: std::time::Duration,
) -> Result<Seen, PassError> {
    if let Some(until) = pool.memory.retry_at.filter(|at| *at > now) {
        return Err(PassError::BackingOff {
            failures: pool.memory.failures,
            until,
            last: pool
                .last_failure
                .clone()
                .unwrap_or_else(|| "not recorded".to_owned()),
        });
    }
    let limit = describe_timeout(interval);
    let described = tokio::time::timeout(limit, pool.provider.describe())
        .await
        .unwrap_or_else(|_| {
            Err(ProviderError::Transient {
                message: format!(
                    "describe did not answer within {}s; left for later passes",
                    limit.as_secs()
                ),
            })
        });
    let description = match described {
        Ok(d) => d,
        Err(e) => {
            provider_failure(pool, &e, now, interval);
            return Err(PassError::Describe(e));
        }
    };
    // Asked only when an instance runs a type not looked up yet; a failure keeps the
    // last catalogue and asks again next pass.
    let unknown_type = description.instances.iter().any(|i| {
        i.instance_type
            .as_ref()
            .is_some_and(|t| !pool.instance_types.iter().any(|s| &s.name == t))
    });
    if unknown_type {
        match pool.provider.instance_types().await {
            Ok(shapes) => pool.instance_types = shapes,
            Err(e) => {
                tracing::debug!(pool = %pool.config.name, error = %e, "no instance-type catalogue this pass");
            }
        }
    }
    // A missing live price is not worth a failed pass: the configured one applies.
    let live_spot = if pool.config.spot.is_some() {
        match pool.provider.spot_price().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(pool = %pool.config.name, error = %e, "no live spot price; using the configured one");
                None
            }
        }
    } else {
        None
    };
    let pool_reports: Vec<&NodeReport> = reports
        .iter()
        .copied()
        .filter(|r| r.pool.as_deref() == Some(pool.config.name.as_str()))
        .collect();
    let mut samples = aggregate::samples(&pool.config, &description, &pool_reports);
    pool.members = aggregate::members(&description, &pool_reports).map(Arc::new);
    let unmatched =
        pool.provider.kind() != "dry-run" && !pool_reports.is_empty() && pool.members.is_none();
    if unmatched && !pool.unmatched {
        tracing::warn!(
            pool = %pool.config.name,
            nodes = pool_reports.len(),
            instances = description.instances.len(),
            "no report of this pool comes from one of its instances: the cloud chooses which nodes leave, none is drained, and missing nodes are not counted. Name each agent by its instance id (leave agent.node_name unset and set [agent.interruptions] cloud, or set node_name to the instance id)"
        );
    }
    pool.unmatched = unmatched;
    // The cloud keeps from choosing which nodes leave where Capstan chooses.
    pool.provider.set_targeted(pool.members.is_some());
    let nodes = if pool.members.is_some() {
        super::scale_in::node_facts(&pool.config, &pool_reports)
    } else {
        Vec::new()
    };
    let in_service = in_service(&description);
    let query_failures = promql_samples(
        &pool.config.name,
        &pool.config.targets,
        in_service,
        &mut samples,
    )
    .await;
    let group_samples = aggregate::samples_for(
        group_targets,
        pool.config.aggregate,
        &description,
        &pool_reports,
    );
    let interrupted = aggregate::interrupted(&description, &pool_reports);
    let faulty_gpus = aggregate::faulty_gpus(&description, &pool_reports);
    pool.memory.history.prune(&pool.policy.behavior, now);
    if pool.last.is_none() && pool.memory.history.recommendations.is_empty() {
        // As HPA does for a target it sees for the first time: the current size counts
        // as a recent recommendation, so a (re)started agent waits out the scale-down
        // window instead of shrinking the pool on its first look.
        pool.memory
            .history
            .record_recommendation(description.desired, now);
    }
    let (anomalies, surge) = track_demand(pool, &samples, now);
    track_usage(pool, description.desired, &pool_reports, now);
    // Forecast-and-scale sizes capacity one provisioning delay ahead: the pool's own,
    // once a scale-up was timed, else the configured lead_time.
    if let Some(took) = pool
        .memory
        .provisioning
        .observe(now, in_service, description.desired)
    {
        tracing::info!(pool = %pool.config.name, seconds = took.as_secs(), "a scale-up's instances are in service");
    }
    if let Some(delay) = pool.memory.provisioning.learned() {
        pool.predictor.set_lead(delay);
    }
    let auto = super::auto::check(pool, now).await;
    let mut outlook = pool.predictor.outlook(
        now.timestamp().div_euclid(60),
        &pool.policy.targets,
        pool.policy.tolerance,
    );
    outlook.reasons.extend(auto);
    outlook.reasons.extend(query_failures);
    outlook.reasons.extend(anomalies);
    Ok(Seen {
        description,
        samples,
        live_spot,
        outlook,
        surge,
        interrupted,
        faulty_gpus,
        in_service,
        group_samples,
        nodes,
    })
}

/// In-service instances of a pool.
pub(super) fn in_service(description: &PoolDescription) -> u32 {
    let n = description
        .instances
        .iter()
        .filter(|i| i.lifecycle == Lifecycle::InService)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Fills the samples of PromQL targets: the query's value is the per-node average over
/// the pool's in-service nodes. A failed query leaves the target unavailable and says
/// why.
pub(super) async fn promql_samples(
    name: &str,
    targets: &[capstan_config::Target],
    nodes: u32,
    samples: &mut [Option<crate::brain::MetricSample>],
) -> Vec<crate::brain::Reason> {
    let mut failures = Vec::new();
    for (target, sample) in targets.iter().zip(samples.iter_mut()) {
        let capstan_config::TargetSource::PromQl {
            query,
            url,
            timeout,
        } = &target.source
        else {
            continue;
        };
        match crate::pass::promql::query(url, query, *timeout).await {
            Ok(v) if nodes > 0 => {
                *sample = Some(crate::brain::MetricSample {
                    sum: v * f64::from(nodes),
                    ready: nodes,
                    missing: 0,
                    unready: 0,
                    reporting: nodes,
                });
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(pool = %name, %query, %error, "PromQL target unavailable");
                failures.push(crate::brain::Reason::QueryFailed {
                    query: query.clone(),
                    error,
                });
            }
        }
    }
    failures
}

pub(super) fn running_spot(d: &PoolDescription) -> u32 {
    let n = d
        .instances
        .iter()
        .filter(|i| i.market == Market::Spot && i.lifecycle != Lifecycle::Terminating)
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}
