//! One planning pass over the pools: observe (describe and aggregate), decide
//! (`brain::fleet`), act (each pool's cloud call), record (demand and usage).
//! The daemon runs it every interval; `capstan plan` runs it once without acting.
//!
//! - `observe.rs`: describing each pool and aggregating its reports; `promql.rs`
//!   for PromQL targets;
//! - `act.rs`: a pool's cloud call and a group's spill-over rounds, through
//!   `instrumented.rs`, which counts and times every provider call; `operation.rs`:
//!   each call runs beside the pass as an operation in flight (fenced by the claim,
//!   bounded by its lease, followed across passes and leaders); `circuit.rs`: the
//!   back-off after failed calls and the circuit breaker;
//! - `auto.rs`: `predictive.mode = "auto"`'s backtests, beside the pass;
//! - `runtime.rs`: what each pool and group keeps between passes, building providers;
//!   `handover.rs`: a pool's memory saved for the next leader and restored from it;
//!   `record.rs`: demand and usage history;
//! - `scale_in.rs`: targeted scale-in: choosing the nodes that leave, following their
//!   drains, removing exactly them;
//! - `outcome.rs`: what a pass says it did (a typed `Action` per pool);
//! - `leader.rs`: the leader's tick around the pass: journal, metrics and log.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use capstan_collectors::NodeReport;
use capstan_config::{Budget, Group, Pool, ProviderConfig, ValidatedConfig};
use capstan_providers::dry_run::DryRunProvider;
use capstan_providers::{
    CapacityTarget, Lifecycle, Market, NodePoolProvider, PoolDescription, ProviderError,
};

use crate::brain::budget::BudgetPolicy;
use crate::brain::fleet::{GroupInput, GroupPlan, PoolInput, PoolPlan, View};
use crate::brain::group::{self, Limit};
use crate::brain::planner::Metric;
use crate::brain::predictive::{Outlook, Predictor};
use crate::brain::schedule::Bounds;
use crate::brain::{self, Direction, History, MetricSample, Policy, Reason};
use crate::cluster::aggregate;
use crate::cluster::coordinator::Claim;
use crate::state::demand::HistoryStore;

mod act;
pub mod auto;
mod circuit;
mod handover;
pub mod instrumented;
pub mod leader;
mod observe;
pub mod operation;
mod outcome;
pub mod promql;
mod record;
mod runtime;
pub mod scale_in;
#[cfg(test)]
mod tests;

use self::{act::*, observe::*};
pub use self::{circuit::*, handover::*, outcome::*, record::*, runtime::*};

/// What every step of one pass shares.
#[derive(Debug, Clone, Copy)]
pub struct Turn<'c> {
    /// Whether this agent leads, read right before each provider call.
    pub claim: &'c tokio::sync::watch::Receiver<Claim>,
    /// Whether the pass may act at all.
    pub mode: Mode,
    /// When the pass runs.
    pub now: DateTime<Utc>,
    /// How often passes come.
    pub interval: std::time::Duration,
    /// Where each action is written down, durably, before it is sent (the daemon's
    /// journal); `None`: not written down (`capstan plan`, tests).
    pub record: Option<&'c dyn Record>,
    /// The fleet's planned cost per hour and its ceiling, for the record (the pass
    /// sets it once it has planned).
    pub fleet: (f64, Option<f64>),
    /// The node this agent runs on: chosen for scale-in only when no other can go.
    pub node: Option<&'c str>,
    /// Since when this agent has taken the nodes' reports as leader: a node with no
    /// fresh report counts as having no agent only once a report of it is overdue
    /// since then. `None`: since ever (tools, tests).
    pub heard_since: Option<DateTime<Utc>>,
}

impl<'c> Turn<'c> {
    /// A pass at `now` that records nothing before acting.
    pub fn new(
        claim: &'c tokio::sync::watch::Receiver<Claim>,
        mode: Mode,
        now: DateTime<Utc>,
        interval: std::time::Duration,
    ) -> Self {
        Self {
            claim,
            mode,
            now,
            interval,
            record: None,
            fleet: (0.0, None),
            node: None,
            heard_since: None,
        }
    }
}

/// Writes an action down before it is sent.
pub trait Record: Sync + std::fmt::Debug {
    /// Records, durably, that `outcome` (action `submitted`) is about to be sent for
    /// `pool`, with the fleet's planned cost and ceiling; an error means it must not
    /// be sent.
    fn submitting(
        &self,
        pool: &PoolRuntime,
        outcome: &PassOutcome,
        fleet: (f64, Option<f64>),
    ) -> Result<(), String>;
}

/// The fleet as a pass acts on it: the pools, what was seen of each, the plans not yet
/// acted on, and the outcomes so far (one per pool, by index).
struct Acting<'a> {
    pools: &'a mut [PoolRuntime],
    seen: &'a [Result<Seen, PassError>],
    planned: &'a mut [Option<PoolPlan>],
    results: &'a mut [Option<Result<PassOutcome, PassError>>],
}

/// Runs one pass over every pool: describes each, plans the fleet (schedules,
/// emergencies, the HPA planner, flap protection, spot fallback, the budget by tier),
/// and, in [`Mode::Act`] while `claim` says this agent leads, applies each absolute
/// target that differs from what the pool holds. `reports` are this pass's fresh node
/// reports, any pool.
pub async fn fleet_pass(
    pools: &mut [PoolRuntime],
    groups: &mut [GroupRuntime],
    reports: &[&NodeReport],
    budget: &Budget,
    turn: Turn<'_>,
) -> FleetOutcome {
    let Turn { now, interval, .. } = turn;
    let mut seen = Vec::with_capacity(pools.len());
    for pool in pools.iter_mut() {
        let group_targets = pool
            .config
            .group
            .as_ref()
            .and_then(|g| groups.iter().find(|r| &r.config.name == g))
            .map_or(&[][..], |g| &g.config.targets[..]);
        seen.push(observe(pool, group_targets, reports, now, interval).await);
    }

    let members = group_members(pools, groups);
    let group_samples = observe_groups(pools, groups, &members, &seen, now).await;
    let unsplit = unsplit_where_the_cloud_cannot_split(pools, &seen);

    let plan = {
        let group_inputs: Vec<GroupInput<'_>> = groups
            .iter()
            .zip(&members)
            .zip(&group_samples)
            .map(|((g, members), samples)| GroupInput {
                config: &g.config,
                policy: &g.policy,
                history: &g.history,
                metrics: samples,
                members,
            })
            .collect();
        let mut inputs = pool_inputs(pools, &seen, &unsplit);
        brain::fleet::plan_fleet_with_groups(
            &mut inputs,
            &group_inputs,
            &BudgetPolicy::from(budget),
            now,
        )
    };

    let mut planned: Vec<Option<PoolPlan>> = plan.pools.into_iter().map(Some).collect();
    let mut room = plan
        .budget_ceiling
        .map(|c| (c - plan.fleet_hourly_cost).max(0.0));
    let mut fleet_hourly_cost =
        plan.fleet_hourly_cost + fit_to_clouds(pools, &seen, &unsplit, &mut planned, &mut room);
    let turn = Turn {
        fleet: (fleet_hourly_cost, plan.budget_ceiling),
        ..turn
    };
    let mut results: Vec<Option<Result<PassOutcome, PassError>>> = Vec::with_capacity(pools.len());
    for (i, (pool, seen)) in pools.iter_mut().zip(&seen).enumerate() {
        // Group members are acted on with their group, below.
        if pool.config.group.is_some() {
            results.push(None);
            continue;
        }
        let Some(planned) = planned[i].take() else {
            results.push(None);
            continue;
        };
        results.push(Some(match seen {
            Ok(s) => Ok(act(pool, s, planned, turn).await),
            Err(e) => Err(e.clone()),
        }));
    }
    let mut group_outcomes = Vec::with_capacity(groups.len());
    let mut fleet = Acting {
        pools,
        seen: &seen,
        planned: &mut planned,
        results: &mut results,
    };
    for ((group, gp), samples) in groups.iter_mut().zip(plan.groups).zip(group_samples) {
        let outcome = act_group(group, gp, samples, &mut fleet, &mut room, turn).await;
        fleet_hourly_cost += outcome.1;
        group_outcomes.push(outcome.0);
    }
    let results = results
        .into_iter()
        .zip(seen)
        .map(|(r, seen)| match (r, seen) {
            (Some(r), _) => r,
            (None, Err(e)) => Err(e),
            // Every pool with a view is acted on above, in or out of a group.
            (None, Ok(_)) => Err(PassError::NotPlanned),
        })
        .collect();
    FleetOutcome {
        at: now,
        pools: results,
        groups: group_outcomes,
        fleet_hourly_cost,
        budget_ceiling: plan.budget_ceiling,
        over_budget: plan.over_budget,
        reasons: plan.reasons,
    }
}

/// Each pool's inputs to the fleet's plan: its config (`unsplit`'s, without spot
/// settings, where its cloud cannot split), prices, state and what was seen of it.
fn pool_inputs<'a>(
    pools: &'a mut [PoolRuntime],
    seen: &'a [Result<Seen, PassError>],
    unsplit: &'a [Option<Pool>],
) -> Vec<PoolInput<'a>> {
    pools
        .iter_mut()
        .zip(seen)
        .zip(unsplit)
        .map(|((pool, seen), unsplit)| {
            let seen = seen.as_ref().ok();
            let last_known = last_known(pool);
            let prices = prices_of(pool, seen);
            PoolInput {
                config: unsplit.as_ref().unwrap_or(&pool.config),
                policy: &pool.policy,
                prices,
                state: &mut pool.memory.state,
                view: seen.map(|s| View {
                    current: s.description.desired,
                    metrics: &s.samples,
                    history: &pool.memory.history,
                    running_spot: running_spot(&s.description),
                    asked_spot: pool.memory.last_target.map(|t| t.spot()),
                    outlook: Some(&s.outlook),
                    surge: s.surge.as_deref(),
                    interrupted: s.interrupted,
                    faulty_gpus: s.faulty_gpus,
                }),
                last_known,
            }
        })
        .collect()
}

/// A pool's prices this pass: its configured ones by the instance types in service,
/// and the live spot price where the cloud gave one.
fn prices_of(pool: &PoolRuntime, seen: Option<&Seen>) -> Option<brain::budget::Prices> {
    brain::fleet::prices(
        pool.config.price.as_ref(),
        seen.into_iter()
            .flat_map(|s| s.description.in_service())
            .map(|i| i.instance_type.as_deref()),
        seen.and_then(|s| s.live_spot),
    )
}

/// Per pool, the config it is planned with this pass when its cloud cannot hold its
/// split (a Uniform scale set): its own without spot settings, so it is planned and
/// billed all on-demand. `None`: its own config.
fn unsplit_where_the_cloud_cannot_split(
    pools: &[PoolRuntime],
    seen: &[Result<Seen, PassError>],
) -> Vec<Option<Pool>> {
    pools
        .iter()
        .zip(seen)
        .map(|(pool, seen)| {
            let no_split = seen
                .as_ref()
                .is_ok_and(|s| s.description.steps.no_split.is_some());
            (no_split && pool.config.spot.is_some()).then(|| Pool {
                spot: None,
                ..pool.config.clone()
            })
        })
        .collect()
}

/// What is applied is what was planned: each plan fitted to the sizes its pool can
/// hold (group members hold their group's allocation, node by node), within `room`
/// (money per hour left under the ceiling); a pool planned without its split says
/// why. Returns the change in the fleet's cost per hour.
fn fit_to_clouds(
    pools: &[PoolRuntime],
    seen: &[Result<Seen, PassError>],
    unsplit: &[Option<Pool>],
    planned: &mut [Option<PoolPlan>],
    room: &mut Option<f64>,
) -> f64 {
    let mut delta = 0.0;
    for (((p, seen), pool), unsplit) in planned.iter_mut().zip(seen).zip(pools).zip(unsplit) {
        let (Some(p), Ok(s)) = (p.as_mut(), seen) else {
            continue;
        };
        if let (Some(why), Some(_)) = (&s.description.steps.no_split, unsplit) {
            p.reasons.push(Reason::SplitNotApplied { why: why.clone() });
        }
        if pool.config.group.is_some() {
            continue;
        }
        delta += match s.description.steps.parts {
            Some(parts) => {
                brain::steps::fit_parts(p, parts, prices_of(pool, Some(s)).as_ref(), room)
            }
            None => brain::steps::fit(p, s.description.steps.step, room),
        };
    }
    delta
}

/// Where a pool that cannot be described is counted: its last known size, or, never
/// seen, its max, so a flaky cloud API cannot let the others spend its share.
fn last_known(pool: &PoolRuntime) -> u32 {
    pool.last
        .as_ref()
        .map(|l| l.current)
        .or(pool.memory.last_target.map(|t| t.capacity))
        .unwrap_or(pool.config.max)
}

/// Each group's members: indices into `pools`, in the order listed.
fn group_members(pools: &[PoolRuntime], groups: &[GroupRuntime]) -> Vec<Vec<usize>> {
    groups
        .iter()
        .map(|g| {
            g.config
                .members
                .iter()
                .filter_map(|m| pools.iter().position(|p| &p.config.name == m))
                .collect()
        })
        .collect()
}

/// Each group's samples over its members' nodes (PromQL targets queried once for the
/// group); prunes each group's history and, on its first look, seeds it with the
/// group's size, as a pool's.
async fn observe_groups(
    pools: &[PoolRuntime],
    groups: &mut [GroupRuntime],
    members: &[Vec<usize>],
    seen: &[Result<Seen, PassError>],
    now: DateTime<Utc>,
) -> Vec<Vec<Option<MetricSample>>> {
    let mut out = Vec::with_capacity(groups.len());
    for (group, members) in groups.iter_mut().zip(members) {
        let mut parts = Vec::with_capacity(members.len());
        let mut current = 0_u32;
        let mut nodes = 0_u32;
        for &i in members {
            match &seen[i] {
                Ok(s) => {
                    nodes = nodes.saturating_add(s.in_service);
                    current = current.saturating_add(s.description.desired);
                    parts.push((s.group_samples.clone(), s.in_service));
                }
                Err(_) => current = current.saturating_add(last_known(&pools[i])),
            }
        }
        let mut samples = aggregate::merge(&parts, group.config.targets.len());
        let failures = promql_samples(
            &group.config.name,
            &group.config.targets,
            nodes,
            &mut samples,
        )
        .await;
        for f in failures {
            tracing::debug!(group = %group.config.name, reason = %f, "group target unavailable");
        }
        group.history.prune(&group.policy.behavior, now);
        if !group.looked && group.history.recommendations.is_empty() {
            group.history.record_recommendation(current, now);
        }
        group.looked = true;
        out.push(samples);
    }
    out
}
