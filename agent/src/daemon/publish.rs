//! What the daemon publishes after each tick: `/v1/status`, from the leader's pools,
//! the node table and the claim.

use super::*;

impl Daemon {
    pub(super) fn publish_status(&self) {
        let now = self.clock.now();
        let claim = self.claim.borrow().clone();
        let m = &self.shared.metrics;
        let reports_rejected = crate::telemetry::metrics::REJECT_REASONS
            .iter()
            .map(|r| {
                let n = m
                    .reports_rejected
                    .get_or_create(&crate::telemetry::metrics::ReasonLabel {
                        reason: (*r).to_owned(),
                    })
                    .get();
                ((*r).to_owned(), n)
            })
            .collect();
        let status = Status {
            node_id: self.node_id.clone(),
            role: if claim.is_leader {
                "leader"
            } else {
                "follower"
            }
            .to_owned(),
            leader_id: claim.leader_id,
            leader_url: claim.leader_url,
            coordinator_note: claim.note,
            reports_received: m.reports_received.get(),
            reports_rejected,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            coordinator: self.coordinator.name().to_owned(),
            fleet_hourly_cost: self.leader.fleet.fleet_hourly_cost,
            budget_ceiling: self.leader.fleet.budget_ceiling,
            over_budget: self.leader.fleet.over_budget,
            pools: self
                .leader
                .pools
                .iter()
                .map(|p| PoolStatus {
                    name: p.config.name.clone(),
                    provider: p.config.provider.kind().to_owned(),
                    min: p.config.min,
                    max: p.config.max,
                    current: p.last.as_ref().map(|l| l.current),
                    desired: p.last.as_ref().map(|l| l.desired),
                    tier: p.config.tier.as_str().to_owned(),
                    on_demand: p.last.as_ref().map(|l| l.on_demand),
                    spot: p.last.as_ref().map(|l| l.spot),
                    hourly_cost: p.last.as_ref().map(|l| l.hourly_cost),
                    effective_min: p.last.as_ref().map(|l| l.bounds.min),
                    effective_max: p.last.as_ref().map(|l| l.bounds.max),
                    schedules: p
                        .last
                        .as_ref()
                        .map(|l| l.schedules.clone())
                        .unwrap_or_default(),
                    emergency: p.last.as_ref().is_some_and(|l| l.emergency),
                    flapping: p.last.as_ref().is_some_and(|l| l.frozen_until.is_some()),
                    frozen_until: p.last.as_ref().and_then(|l| l.frozen_until),
                    spot_fallback_until: p.last.as_ref().and_then(|l| l.spot_fallback_until),
                    last_decision: p.last.as_ref().map(|l| LastDecision {
                        at: l.at,
                        action: l.action.as_str().to_owned(),
                        reasons: l.reasons.clone(),
                    }),
                    error: p.last_error.clone().or_else(|| {
                        p.last
                            .as_ref()
                            .filter(|l| matches!(l.action, Action::Failed | Action::Skipped))
                            .and_then(|l| l.detail.clone())
                    }),
                    operation: p.memory.operation.as_ref().map(|op| OperationStatus {
                        id: op.id().to_owned(),
                        started_at: op.started_at,
                        target: op.target.capacity,
                        on_demand: op.target.on_demand,
                    }),
                    draining: p
                        .memory
                        .drains
                        .iter()
                        .map(|d| DrainingNode {
                            node: d.node.clone(),
                            phase: d.phase.as_str().to_owned(),
                            chosen_at: d.chosen_at,
                            deadline: d.deadline,
                        })
                        .collect(),
                    reports_unmatched: p.unmatched,
                    nodes: self.nodes.get(&p.config.name).cloned().unwrap_or_default(),
                    circuit: p.circuit(now).as_str().to_owned(),
                    consecutive_failures: p.memory.failures,
                    instance_types: p.instance_types.clone(),
                })
                .collect(),
        };
        *self
            .shared
            .status
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = status;
    }
}
