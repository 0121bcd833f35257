//! Targeted scale-in on the leader: when the plan lowers a pool whose nodes report
//! under their instance ids, the leader chooses which nodes leave
//! (`brain::scale_in::choose`), asks each to drain in the answer to its own report,
//! and removes exactly those instances (`NodePoolProvider::submit_remove`, an
//! operation like any other) once each has drained, or at its deadline
//! (`scale_in.on_timeout`). Every chosen node is in the pool's decision state
//! ([`Drain`]) until it is gone, so a new leader carries on the same drains, chooses
//! no others for the same shrink, and removes each instance once.
//!
//! A pool whose reports match none of its instances shrinks as before: its desired
//! capacity is lowered and the cloud chooses (journaled as `scale_in_by_capacity`).

use std::collections::HashMap;

use capstan_collectors::{DrainOrder, DrainState, DrainStatus, ReportAnswer, UndrainOrder};
use capstan_config::TargetSource;
use capstan_config::raw::OnDrainTimeout;

use super::*;
use crate::brain::reason::{DrainFailure, ScaleInChoice};
use crate::brain::scale_in::{self as choice, Candidate, Excess};
use crate::state::memory::{Drain, DrainPhase};

/// What the leader knows of one reporting node of a pool this pass.
#[derive(Debug, Clone)]
pub(super) struct NodeFacts {
    pub(super) id: String,
    /// Its reading of the pool's first target read from node reports.
    pub(super) busy: Option<f64>,
    pub(super) booted: Option<DateTime<Utc>>,
    pub(super) protected: bool,
    pub(super) interrupted: bool,
    pub(super) drain: Option<DrainStatus>,
}

/// The facts of a pool's reporting nodes.
pub(super) fn node_facts(pool: &Pool, reports: &[&NodeReport]) -> Vec<NodeFacts> {
    let metric = pool.targets.iter().find_map(|t| match &t.source {
        TargetSource::Metric(m) => Some(m),
        TargetSource::PromQl { .. } => None,
    });
    reports
        .iter()
        .map(|r| NodeFacts {
            id: r.node_id.clone(),
            busy: metric.and_then(|m| aggregate::metric_value(r, m)),
            booted: r.booted_at,
            protected: r.protected,
            interrupted: r.interruption.is_some(),
            drain: r.drain.clone(),
        })
        .collect()
}

/// Whether the leader chooses which of `pool`'s nodes leave: its reports match its
/// instances.
pub(super) fn targeted(pool: &PoolRuntime) -> bool {
    pool.members.is_some()
}

/// What tending a pool's scale-in gave this pass.
#[derive(Debug, Default)]
pub(super) struct Tended {
    /// Instances to remove now: drained, past their deadline (or failed) with
    /// `on_timeout = "remove"`, or chosen with no agent reporting from them.
    pub(super) remove: Vec<String>,
    /// What happened, for the pool's reasons.
    pub(super) reasons: Vec<Reason>,
}

/// One pass over a targeted pool's scale-in, planned to `desired` nodes of which
/// `on_demand` on-demand: follows each chosen node's drain by its reports and its
/// deadline, returns nodes to service the pool no longer needs to lose, and chooses
/// more while the pool must shrink further (within `max_draining`, unless too many of
/// its nodes are unready). `leader` is the node the leader runs on; with `heard_all`
/// false (this agent began to lead too recently to have heard from every agent), a
/// node with no fresh report is not chosen, and no chosen node is returned to service.
pub(super) fn tend(
    pool: &mut PoolRuntime,
    seen: &Seen,
    (desired, on_demand): (u32, u32),
    (leader, heard_all): (Option<&str>, bool),
    now: DateTime<Utc>,
) -> Tended {
    let cfg = pool.config.scale_in;
    let then = cfg.on_timeout.as_str().to_owned();
    let facts: HashMap<&str, &NodeFacts> = seen.nodes.iter().map(|f| (f.id.as_str(), f)).collect();
    let live: HashMap<&str, &capstan_providers::Instance> = seen
        .description
        .instances
        .iter()
        .filter(|i| i.lifecycle != Lifecycle::Terminating)
        .map(|i| (i.id.as_str(), i))
        .collect();
    let mut out = Tended::default();
    let drains = &mut pool.memory.drains;

    // Gone from the pool (removed, interrupted, replaced): nothing more to do. One whose
    // removal went out without its answer coming back (cut off at the lease's end, a
    // timeout, a leader that died) is journaled as removed here, by the pass that sees
    // it gone.
    let unanswered: Vec<String> = drains
        .iter()
        .filter(|d| d.phase == DrainPhase::Remove && !live.contains_key(d.node.as_str()))
        .map(|d| d.node.clone())
        .collect();
    if !unanswered.is_empty() {
        out.reasons.push(Reason::Removed { nodes: unanswered });
    }
    drains.retain(|d| live.contains_key(d.node.as_str()));
    for d in drains.iter_mut() {
        let status = facts.get(d.node.as_str()).and_then(|f| f.drain.as_ref());
        match d.phase {
            DrainPhase::Draining => {
                let state = status.map(|s| s.state);
                if state.is_some() && !d.started {
                    d.started = true;
                    out.reasons.push(Reason::DrainStarted {
                        node: d.node.clone(),
                    });
                }
                let after = cfg.on_timeout;
                match state {
                    Some(DrainState::Drained) => {
                        d.phase = DrainPhase::Remove;
                        out.reasons.push(Reason::Drained {
                            node: d.node.clone(),
                            seconds: seconds(now - d.chosen_at),
                        });
                    }
                    Some(DrainState::Failed) => {
                        d.phase = phase_after(after);
                        out.reasons.push(Reason::DrainFailed(Box::new(DrainFailure {
                            node: d.node.clone(),
                            detail: status
                                .and_then(|s| s.detail.clone())
                                .unwrap_or_else(|| "no detail".to_owned()),
                            then: then.clone(),
                        })));
                    }
                    _ if now >= d.deadline => {
                        d.phase = phase_after(after);
                        out.reasons.push(Reason::DrainTimedOut {
                            node: d.node.clone(),
                            then: then.clone(),
                        });
                    }
                    _ => {}
                }
            }
            DrainPhase::Remove | DrainPhase::Keep => {}
        }
    }
    // Returned to service: forgotten once its reports carry no drain (or it is silent).
    drains.retain(|d| {
        d.phase != DrainPhase::Keep
            || facts
                .get(d.node.as_str())
                .is_some_and(|f| f.drain.is_some())
    });

    // The pool must lose this many more nodes than the removals in hand.
    let want = seen.description.desired.saturating_sub(desired) as usize;
    let active = |drains: &Vec<Drain>| {
        drains
            .iter()
            .filter(|d| d.phase != DrainPhase::Keep)
            .count()
    };
    // Shrinking less than before: the latest chosen go back first, nodes still draining
    // before drained ones. Not while this agent has just begun to lead: a plan made
    // before every agent's report has come in (none, at first) is no reason to return
    // a node its predecessor chose.
    if heard_all && active(drains) > want {
        let mut order: Vec<usize> = (0..drains.len())
            .filter(|&i| drains[i].phase != DrainPhase::Keep)
            .collect();
        order.sort_by_key(|&i| {
            (
                drains[i].phase == DrainPhase::Remove,
                std::cmp::Reverse(drains[i].chosen_at),
            )
        });
        for &i in order.iter().take(active(drains) - want) {
            drains[i].phase = DrainPhase::Keep;
            out.reasons.push(Reason::DrainCancelled {
                node: drains[i].node.clone(),
            });
        }
    }
    let more = want.saturating_sub(active(drains));
    if more > 0 {
        choose_more(
            pool,
            seen,
            &facts,
            &live,
            (desired, on_demand),
            (leader, heard_all),
            more,
            now,
            &mut out,
        );
    }
    out.remove = pool
        .memory
        .drains
        .iter()
        .filter(|d| d.phase == DrainPhase::Remove)
        .map(|d| d.node.clone())
        .collect();
    out
}

/// What follows a drain that failed or ran out of time.
const fn phase_after(on_timeout: OnDrainTimeout) -> DrainPhase {
    match on_timeout {
        OnDrainTimeout::Remove => DrainPhase::Remove,
        OnDrainTimeout::Keep => DrainPhase::Keep,
    }
}

fn seconds(d: chrono::TimeDelta) -> f64 {
    d.to_std().unwrap_or_default().as_secs_f64()
}

/// Chooses up to `more` further nodes to leave, unless too many of the pool's nodes
/// are unready, within `max_draining`.
#[allow(clippy::too_many_arguments)]
fn choose_more(
    pool: &mut PoolRuntime,
    seen: &Seen,
    facts: &HashMap<&str, &NodeFacts>,
    live: &HashMap<&str, &capstan_providers::Instance>,
    (desired, on_demand): (u32, u32),
    (leader, heard_all): (Option<&str>, bool),
    more: usize,
    now: DateTime<Utc>,
    out: &mut Tended,
) {
    let cfg = pool.config.scale_in;
    let nodes = u32::try_from(live.len()).unwrap_or(u32::MAX);
    let unready = live
        .values()
        .filter(|i| {
            i.lifecycle != Lifecycle::InService
                || i.health == capstan_providers::Health::Unhealthy
                || !facts.contains_key(i.id.as_str())
        })
        .count();
    let unready = u32::try_from(unready).unwrap_or(u32::MAX);
    if choice::halted(unready, nodes, cfg.halt_when_unready) {
        out.reasons.push(Reason::ScaleInHaltedUnready {
            unready,
            nodes,
            threshold_percent: cfg.halt_when_unready * 100.0,
        });
        return;
    }
    let drains = &pool.memory.drains;
    let in_service = u32::try_from(seen.description.in_service().count()).unwrap_or(u32::MAX);
    let draining = drains
        .iter()
        .filter(|d| d.phase != DrainPhase::Keep)
        .count();
    let budget = cfg.max_draining.of(in_service) as usize;
    let count = more.min(budget.saturating_sub(draining));
    if count == 0 {
        return;
    }
    let mut candidates: Vec<Candidate> = seen
        .description
        .in_service()
        .filter(|i| !drains.iter().any(|d| d.node == i.id))
        .map(|i| {
            let f = facts.get(i.id.as_str());
            Candidate {
                id: i.id.clone(),
                zone: i.zone.clone(),
                spot: i.market == Market::Spot,
                unhealthy: i.health == capstan_providers::Health::Unhealthy,
                interrupted: f.is_some_and(|f| f.interrupted),
                silent: f.is_none(),
                protected: f.is_some_and(|f| f.protected),
                leader: leader == Some(i.id.as_str()),
                busy: f.and_then(|f| f.busy),
                booted: f.and_then(|f| f.booted),
            }
        })
        .collect();
    let spot_now = candidates.iter().filter(|c| c.spot).count();
    let od_now = candidates.len() - spot_now;
    // What stays after the removals in hand is compared with the plan.
    let excess = Excess::of(
        u32::try_from(od_now).unwrap_or(u32::MAX),
        u32::try_from(spot_now).unwrap_or(u32::MAX),
        on_demand,
        desired.saturating_sub(on_demand),
    );
    // Before every agent has had time to report to this leader, a node not heard from
    // may simply not have found it yet: it stays (counted in the shares above) and is
    // not chosen, neither as one without an agent nor otherwise.
    if !heard_all {
        let before = candidates.len();
        candidates.retain(|c| !c.silent);
        let unheard = before - candidates.len();
        if unheard > 0 {
            out.reasons.push(Reason::ScaleInAwaitingReports {
                nodes: u32::try_from(unheard).unwrap_or(u32::MAX),
            });
        }
    }
    let chosen = choice::choose(&candidates, count, excess, cfg.select);
    // A protected node that would have been chosen is said to be passed over.
    let unprotected: Vec<Candidate> = candidates
        .iter()
        .map(|c| Candidate {
            protected: false,
            ..c.clone()
        })
        .collect();
    for c in choice::choose(&unprotected, count, excess, cfg.select) {
        if candidates.iter().any(|p| p.id == c.node.id && p.protected) {
            out.reasons
                .push(Reason::ProtectedNodeSkipped { node: c.node.id });
        }
    }
    for c in chosen {
        let silent = c.node.silent;
        let deadline = now + chrono::TimeDelta::from_std(cfg.drain_timeout).unwrap_or_default();
        out.reasons
            .push(Reason::ChosenForScaleIn(Box::new(ScaleInChoice {
                node: c.node.id.clone(),
                rule: c.rule.as_str().to_owned(),
                select: cfg.select.as_str().to_owned(),
                zone: c.node.zone.clone(),
                zone_nodes: c.zone_nodes,
                spot: c.node.spot,
                busy: c.node.busy,
                deadline: (!silent).then_some(deadline),
            })));
        pool.memory.drains.push(Drain {
            node: c.node.id,
            chosen_at: now,
            deadline: if silent { now } else { deadline },
            // No agent to ask: removed without a drain.
            phase: if silent {
                DrainPhase::Remove
            } else {
                DrainPhase::Draining
            },
            started: false,
        });
    }
}

/// What the leader answers the reports of `pool`'s nodes, into `out`: a drain for every
/// chosen node not yet gone, an undrain for every node returned to service. The daemon
/// answers from the state as saved ([`super::save_then_answer`]).
pub(super) fn answer_drains(pool: &str, drains: &[Drain], out: &mut HashMap<String, ReportAnswer>) {
    for d in drains {
        let answer = match d.phase {
            DrainPhase::Draining | DrainPhase::Remove => ReportAnswer {
                drain: Some(DrainOrder {
                    pool: pool.to_owned(),
                    deadline: d.deadline,
                }),
                undrain: None,
            },
            DrainPhase::Keep => ReportAnswer {
                drain: None,
                undrain: Some(UndrainOrder {
                    pool: pool.to_owned(),
                }),
            },
        };
        out.insert(d.node.clone(), answer);
    }
}
