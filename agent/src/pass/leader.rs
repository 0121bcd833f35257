//! The leader's part of a pass: plan and act on the fleet, then record each decision
//! in the journal, the metrics and the log. The daemon calls it every interval while
//! it leads; tests drive it with their own reports and time.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use capstan_collectors::NodeReport;
use capstan_config::Budget;

use crate::brain::Reason;
use crate::cluster::coordinator::Claim;
use crate::pass::{self, Action, CircuitState, FleetOutcome, Mode, PassError, PoolRuntime, Turn};
use crate::state::journal::{self, Journal};
use crate::telemetry::metrics::{
    GaugeF, Metrics, NoLabels, PoolActionLabels, PoolErrorLabels, PoolFamily, PoolLabel,
    PoolMetricLabels, PoolResultLabels, ProviderLabel,
};
use crate::telemetry::status::Shared;

/// The fleet's cost at the last pass.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FleetSummary {
    /// Cost per hour as planned.
    pub fleet_hourly_cost: f64,
    /// The ceiling, if any.
    pub budget_ceiling: Option<f64>,
    /// Over the ceiling.
    pub over_budget: bool,
}

/// The pools, and where their decisions are recorded.
#[derive(Debug)]
pub struct Leader {
    /// This agent's node id, written into the journal.
    pub node_id: String,
    /// The pools, in config order.
    pub pools: Vec<PoolRuntime>,
    /// The groups, in config order.
    pub groups: Vec<pass::GroupRuntime>,
    /// The decision journal.
    pub journal: Journal,
    /// Metrics and status shared with the HTTP server.
    pub shared: Arc<Shared>,
    /// The fleet's cost at the last pass.
    pub fleet: FleetSummary,
    /// When this agent last began to lead, and so to take the nodes' reports
    /// ([`Turn::heard_since`]); `None`: since ever.
    pub heard_since: Option<DateTime<Utc>>,
}

impl Leader {
    /// A leader over `pools`.
    pub fn new(
        node_id: String,
        pools: Vec<PoolRuntime>,
        journal: Journal,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            node_id,
            pools,
            groups: Vec::new(),
            journal,
            shared,
            fleet: FleetSummary::default(),
            heard_since: None,
        }
    }

    /// One pass over the fleet with `reports` (fresh, any pool), acting while `claim`
    /// says this agent leads, and recording every outcome.
    pub async fn pass(
        &mut self,
        reports: &[&NodeReport],
        claim: &tokio::sync::watch::Receiver<Claim>,
        now: DateTime<Utc>,
        interval: std::time::Duration,
        budget: &Budget,
    ) -> FleetSummary {
        let recorder = Recorder {
            journal: std::sync::Mutex::new(&mut self.journal),
            node_id: &self.node_id,
            metrics: &self.shared.metrics,
        };
        let outcome = pass::fleet_pass(
            &mut self.pools,
            &mut self.groups,
            reports,
            budget,
            Turn {
                record: Some(&recorder),
                node: Some(&self.node_id),
                heard_since: self.heard_since,
                ..Turn::new(claim, Mode::Act, now, interval)
            },
        )
        .await;
        self.record_fleet(&outcome);
        for g in &outcome.groups {
            self.record_group(g);
        }
        for (i, result) in outcome.pools.into_iter().enumerate() {
            self.record(i, result, outcome.fleet_hourly_cost, outcome.budget_ceiling);
            let pool = &self.pools[i];
            let label = PoolLabel {
                pool: pool.config.name.clone(),
            };
            let m = &self.shared.metrics;
            m.pool_circuit_open
                .get_or_create(&label)
                .set(i64::from(pool.circuit(now) != CircuitState::Closed));
            m.pool_consecutive_failures
                .get_or_create(&label)
                .set(i64::from(pool.memory.failures));
            m.pool_operation_in_flight
                .get_or_create(&label)
                .set(i64::from(pool.memory.operation.is_some()));
        }
        self.shared.metrics.planning_passes.inc();
        self.fleet
    }

    fn record_fleet(&mut self, outcome: &FleetOutcome) {
        let m = &self.shared.metrics;
        m.budget_hourly_cost.set(outcome.fleet_hourly_cost);
        match outcome.budget_ceiling {
            Some(c) => {
                m.budget_ceiling.get_or_create(&NoLabels {}).set(c);
            }
            None => m.budget_ceiling.clear(),
        }
        m.budget_over.set(i64::from(outcome.over_budget));
        self.fleet = FleetSummary {
            fleet_hourly_cost: outcome.fleet_hourly_cost,
            budget_ceiling: outcome.budget_ceiling,
            over_budget: outcome.over_budget,
        };
        for r in &outcome.reasons {
            // Said loudly, every pass it holds: the operator must act.
            tracing::warn!(reason = %r, "budget");
        }
    }

    fn record_group(&mut self, g: &pass::GroupOutcome) {
        let m = &self.shared.metrics;
        let label = crate::telemetry::metrics::GroupLabel {
            group: g.group.clone(),
        };
        m.group_current_nodes
            .get_or_create(&label)
            .set(i64::from(g.current));
        m.group_desired_nodes
            .get_or_create(&label)
            .set(i64::from(g.desired));
        for member in &g.members {
            if member.spilled_in > 0 {
                m.group_spillover_nodes
                    .get_or_create(&crate::telemetry::metrics::GroupMemberLabels {
                        group: g.group.clone(),
                        pool: member.pool.clone(),
                    })
                    .inc_by(u64::from(member.spilled_in));
                tracing::warn!(group = %g.group, pool = %member.pool, nodes = member.spilled_in, "capacity spilled over to this member");
            }
        }
        let Some(group) = self.groups.iter().find(|r| r.config.name == g.group) else {
            return;
        };
        let inputs = group
            .policy
            .targets
            .iter()
            .zip(&g.samples)
            .map(|(t, s)| journal::Input {
                metric: &t.metric,
                target: t.value,
                sample: *s,
                forecast: None,
                mase: None,
            })
            .collect();
        let entry = journal::GroupEntry {
            at: g.at,
            node_id: &self.node_id,
            group: &g.group,
            strategy: g.strategy,
            current: g.current,
            desired: g.desired,
            granted: g.granted,
            inputs,
            members: &g.members,
            reasons: &g.reasons,
            explain: g.reasons.iter().map(ToString::to_string).collect(),
        };
        if let Err(e) = self.journal.write_group(&entry) {
            m.journal_write_errors.inc();
            tracing::error!(error = %e, "cannot write the journal");
        }
    }

    fn record(
        &mut self,
        i: usize,
        result: Result<pass::PassOutcome, PassError>,
        fleet_hourly_cost: f64,
        budget_ceiling: Option<f64>,
    ) {
        let pool = &mut self.pools[i];
        let m = &self.shared.metrics;
        let label = PoolLabel {
            pool: pool.config.name.clone(),
        };
        m.pool_min_nodes
            .get_or_create(&label)
            .set(i64::from(pool.config.min));
        m.pool_max_nodes
            .get_or_create(&label)
            .set(i64::from(pool.config.max));
        pool.last_error = result.as_ref().err().map(ToString::to_string);
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(e) => return skipped(m, &label.pool, &e),
        };
        export_outcome(m, &label, &outcome);
        if let Some(seconds) = outcome.operation_seconds {
            m.operation_seconds
                .get_or_create(&ProviderLabel {
                    provider: pool.provider.kind().to_owned(),
                })
                .observe(seconds);
        }
        export_targets(m, pool, &outcome);
        export_drains(m, pool, &outcome);
        let name = &label.pool;
        match outcome.action {
            Action::Failed => {
                m.provider_errors
                    .get_or_create(&PoolErrorLabels {
                        pool: name.clone(),
                        kind: outcome.error_kind.unwrap_or("unknown").to_owned(),
                    })
                    .inc();
                tracing::warn!(pool = %name, detail = ?outcome.detail, "scaling call failed");
            }
            Action::Scaled => {
                tracing::info!(pool = %name, from = outcome.current, to = outcome.desired, "scaled");
            }
            _ => {}
        }
        let entry = entry(
            &self.node_id,
            pool,
            &outcome,
            (fleet_hourly_cost, budget_ceiling),
        );
        if let Err(e) = self.journal.write(&entry) {
            m.journal_write_errors.inc();
            tracing::error!(error = %e, "cannot write the journal");
        }
    }
}

/// A pool's journal line for `outcome`.
fn entry<'a>(
    node_id: &'a str,
    pool: &'a PoolRuntime,
    outcome: &'a pass::PassOutcome,
    (fleet_hourly_cost, budget_ceiling): (f64, Option<f64>),
) -> journal::Entry<'a> {
    let inputs = pool
        .policy
        .targets
        .iter()
        .zip(&outcome.samples)
        .enumerate()
        .map(|(k, (t, s))| journal::Input {
            metric: &t.metric,
            target: t.value,
            sample: *s,
            forecast: outcome.forecasts.get(k).copied().flatten(),
            mase: outcome.mase.get(k).copied().flatten(),
        })
        .collect();
    journal::Entry {
        at: outcome.at,
        node_id,
        pool: &pool.config.name,
        current: outcome.current,
        desired: outcome.desired,
        on_demand: outcome.on_demand,
        spot: outcome.spot,
        tier: pool.config.tier.as_str(),
        hourly_cost: outcome.hourly_cost,
        fleet_hourly_cost,
        budget_ceiling,
        inputs,
        reasons: &outcome.reasons,
        explain: outcome.reasons.iter().map(ToString::to_string).collect(),
        action: outcome.action.as_str(),
        detail: outcome.detail.clone(),
        from: outcome.from,
        group: outcome.group.as_deref(),
    }
}

/// The leader's journal as the pass's [`pass::Record`]: each action's `submitted`
/// line reaches the disk (`fdatasync`) before its first request is sent; a line that
/// cannot be written is counted, and its action not sent.
#[derive(Debug)]
struct Recorder<'a> {
    journal: std::sync::Mutex<&'a mut Journal>,
    node_id: &'a str,
    metrics: &'a Metrics,
}

impl pass::Record for Recorder<'_> {
    fn submitting(
        &self,
        pool: &PoolRuntime,
        outcome: &pass::PassOutcome,
        fleet: (f64, Option<f64>),
    ) -> Result<(), String> {
        let line = entry(self.node_id, pool, outcome, fleet);
        let mut journal = self
            .journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        journal.write_durably(&line).map_err(|e| {
            self.metrics.journal_write_errors.inc();
            tracing::error!(pool = %pool.config.name, error = %e, "cannot write the journal; the action is not sent");
            e.to_string()
        })
    }
}

/// A pool the pass could not decide on: counted as skipped (and, when its cloud
/// failed to describe it, as a provider error).
fn skipped(m: &Metrics, pool: &str, e: &PassError) {
    if let PassError::Describe(err) = e {
        m.provider_errors
            .get_or_create(&PoolErrorLabels {
                pool: pool.to_owned(),
                kind: err.kind().to_owned(),
            })
            .inc();
    }
    m.decisions
        .get_or_create(&PoolActionLabels {
            pool: pool.to_owned(),
            action: Action::Skipped.as_str().to_owned(),
        })
        .inc();
    tracing::warn!(pool = %pool, error = %e, "no decision this pass");
}

/// The pool's gauges of this decision: sizes, bounds, cost, the states in force, and
/// the decision counted by action.
fn export_outcome(m: &Metrics, label: &PoolLabel, outcome: &pass::PassOutcome) {
    for (family, value) in [
        (&m.pool_current_nodes, outcome.current),
        (&m.pool_desired_nodes, outcome.desired),
        (&m.pool_on_demand_nodes, outcome.on_demand),
        (&m.pool_spot_nodes, outcome.spot),
        (&m.pool_effective_min_nodes, outcome.bounds.min),
        (&m.pool_effective_max_nodes, outcome.bounds.max),
    ] {
        family.get_or_create(label).set(i64::from(value));
    }
    for (family, on) in [
        (&m.pool_emergency, outcome.emergency),
        (&m.pool_flapping, outcome.frozen_until.is_some()),
        (&m.pool_spot_fallback, outcome.spot_fallback_until.is_some()),
        (&m.pool_predictive_active, outcome.predictive_active),
    ] {
        family.get_or_create(label).set(i64::from(on));
    }
    m.pool_hourly_cost
        .get_or_create(label)
        .set(outcome.hourly_cost);
    m.decisions
        .get_or_create(&PoolActionLabels {
            pool: label.pool.clone(),
            action: outcome.action.as_str().to_owned(),
        })
        .inc();
}

/// Targeted scale-in: the nodes chosen and not yet gone, and each drain's end this
/// pass, by result, with its duration.
fn export_drains(m: &Metrics, pool: &PoolRuntime, outcome: &pass::PassOutcome) {
    use crate::state::memory::DrainPhase;
    let name = &pool.config.name;
    let draining = pool
        .memory
        .drains
        .iter()
        .filter(|d| d.phase != DrainPhase::Keep)
        .count();
    let label = PoolLabel { pool: name.clone() };
    m.pool_draining_nodes
        .get_or_create(&label)
        .set(i64::try_from(draining).unwrap_or(i64::MAX));
    m.pool_reports_unmatched
        .get_or_create(&label)
        .set(i64::from(pool.unmatched));
    let timeout = pool.config.scale_in.drain_timeout.as_secs_f64();
    for reason in &outcome.reasons {
        let (result, seconds) = match reason {
            Reason::Drained { seconds, .. } => ("drained", Some(*seconds)),
            Reason::DrainFailed(_) => ("failed", None),
            Reason::DrainTimedOut { .. } => ("timed_out", Some(timeout)),
            Reason::DrainCancelled { .. } => ("cancelled", None),
            Reason::ChosenForScaleIn(c) if c.deadline.is_none() => ("no_agent", None),
            _ => continue,
        };
        m.drains
            .get_or_create(&PoolResultLabels {
                pool: name.clone(),
                result: result.to_owned(),
            })
            .inc();
        if let Some(s) = seconds {
            m.drain_seconds.observe(s);
        }
    }
}

/// Per target: the reading per node and the demand, the target, the forecast and its
/// error (each removed while it has no value), and the anomaly onsets of this pass.
fn export_targets(m: &Metrics, pool: &PoolRuntime, outcome: &pass::PassOutcome) {
    let name = &pool.config.name;
    let set_or_remove = |family: &PoolFamily<PoolMetricLabels, GaugeF>,
                         labels: &PoolMetricLabels,
                         value: Option<f64>| match value {
        Some(v) => {
            family.get_or_create(labels).set(v);
        }
        None => {
            family.remove(labels);
        }
    };
    for (k, spec) in pool.policy.targets.iter().enumerate() {
        let labels = PoolMetricLabels {
            pool: name.clone(),
            metric: spec.metric.to_string(),
        };
        set_or_remove(
            &m.forecast_demand,
            &labels,
            outcome.forecasts.get(k).copied().flatten(),
        );
        set_or_remove(
            &m.forecast_mase,
            &labels,
            outcome.mase.get(k).copied().flatten(),
        );
        let Some(sample) = outcome.samples.get(k) else {
            continue;
        };
        m.pool_metric_target.get_or_create(&labels).set(spec.value);
        let sample = sample.filter(|s| s.ready > 0);
        set_or_remove(
            &m.pool_metric_value,
            &labels,
            sample.map(|s| s.sum / f64::from(s.ready)),
        );
        set_or_remove(&m.pool_demand, &labels, sample.map(|s| s.sum));
    }
    // Anomaly onsets of this pass are among its reasons.
    for r in &outcome.reasons {
        let Reason::Anomaly { metric, .. } = r else {
            continue;
        };
        m.anomalies
            .get_or_create(&PoolMetricLabels {
                pool: name.clone(),
                metric: metric.to_string(),
            })
            .inc();
        tracing::warn!(pool = %name, metric = %metric, "anomaly in demand");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::coordinator::{Coordinator, Standalone};
    use crate::pass::tests::{FakeProvider, SECOND, TimeZone, config, fake, no_budget, report};
    use crate::state::journal::Limits;
    use capstan_providers::CapacityTarget;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
    }

    fn leader_over(dir: &std::path::Path, f: Arc<FakeProvider>) -> Leader {
        let pool = PoolRuntime::new(config().pools.remove(0), f);
        let journal = Journal::open(
            dir.to_path_buf(),
            Limits {
                retention_days: 30,
                max_bytes: None,
                stdout: false,
            },
            t0(),
        )
        .unwrap();
        let shared = Arc::new(Shared::new(std::time::Duration::from_secs(60)));
        Leader::new("n1".into(), vec![pool], journal, shared)
    }

    async fn busy_pass(leader: &mut Leader) {
        let claim = Standalone::new("n1", None).claim();
        let r = report(100.0, t0());
        leader.pass(&[&r], &claim, t0(), SECOND, &no_budget()).await;
    }

    #[tokio::test]
    async fn an_action_is_journaled_as_submitted_before_it_is_sent_and_its_outcome_follows() {
        let dir = tempfile::tempdir().unwrap();
        let f = fake(2);
        let mut leader = leader_over(dir.path(), f.clone());
        busy_pass(&mut leader).await;
        assert_eq!(f.apply_calls(), [CapacityTarget::on_demand(4)]);
        let text =
            std::fs::read_to_string(journal::file_for(dir.path(), t0().date_naive())).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let actions: Vec<&str> = lines
            .iter()
            .map(|l| l["action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["submitted", "scaled"]);
        assert_eq!(
            (lines[0]["current"].as_u64(), lines[0]["desired"].as_u64()),
            (Some(2), Some(4))
        );
    }

    /// The journal's file is `/dev/full`: its `submitted` line cannot be written, so
    /// the target is not sent, and the failure is counted.
    #[tokio::test]
    async fn an_action_whose_record_cannot_be_written_is_not_sent() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(
            "/dev/full",
            journal::file_for(dir.path(), t0().date_naive()),
        )
        .unwrap();
        let f = fake(2);
        let mut leader = leader_over(dir.path(), f.clone());
        busy_pass(&mut leader).await;
        assert!(f.apply_calls().is_empty(), "sent without its record");
        let last = leader.pools[0].last.clone().unwrap();
        assert_eq!(last.action, Action::Skipped);
        assert!(
            last.detail
                .as_deref()
                .unwrap_or("")
                .contains("journal could not record it"),
            "{:?}",
            last.detail
        );
        assert!(leader.shared.metrics.journal_write_errors.get() >= 1);
    }
}
