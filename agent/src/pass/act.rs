//! Acting on a pool's plan (a cloud call, with back-off and the circuit breaker), and on
//! a group's, with spill-over rounds.

use super::*;

/// Acts on one group's members: in the order the strategy fills them, each gets its
/// grant; a member whose cloud refuses it (or whose call fails) gives its shortfall to
/// the others in the same pass, within `room` (money per hour still free under the
/// budget ceiling). Returns the group's outcome and the change in the fleet's cost.
pub(super) async fn act_group(
    group: &mut GroupRuntime,
    plan: GroupPlan,
    samples: Vec<Option<MetricSample>>,
    fleet: &mut Acting<'_>,
    room: &mut Option<f64>,
    turn: Turn<'_>,
) -> (GroupOutcome, f64) {
    let Acting {
        pools,
        seen,
        planned,
        results,
    } = fleet;
    let now = turn.now;
    let money: Vec<group::Money> = plan.members.iter().map(|m| m.money).collect();
    let mut rounds = group::Spillover::new(
        plan.strategy,
        group.config.max_skew,
        plan.desired,
        plan.members.iter().map(|m| m.slot).collect(),
        money.clone(),
        plan.members.iter().map(|m| m.granted).collect(),
        *room,
    );
    while !rounds.done() {
        for call in rounds.calls() {
            let j = call.member;
            let m = &plan.members[j];
            let i = m.index;
            let Ok(s) = &seen[i] else { continue };
            let pool = &mut pools[i];
            if rounds.first_round() {
                let Some(p) = planned[i].take() else { continue };
                let o = act(pool, s, p, turn).await;
                if o.action == Action::Scaled {
                    rounds.record(j, group::CallResult::Scaled(o.desired));
                } else if o.action == Action::Failed && o.desired > o.current {
                    rounds.record(j, group::CallResult::Refused(o.desired - o.current));
                }
                results[i] = Some(Ok(o));
                continue;
            }
            // A second call this pass: the pool holds what the first one applied.
            let Some(Ok(first)) = &results[i] else {
                continue;
            };
            let mut p = second_plan(first, call.nodes, &money[j]);
            p.reasons.push(Reason::GroupSpillover {
                group: plan.name.clone(),
                from: refusers(&plan, rounds.refused()),
                nodes: call.extra,
            });
            let mut again = s.clone();
            again.description.desired = rounds.holds()[j];
            let mut o = act(pool, &again, p, turn).await;
            o.current = m.slot.current;
            if o.action == Action::Scaled {
                rounds.record(j, group::CallResult::Scaled(call.nodes));
            } else if o.action == Action::Failed {
                rounds.record(j, group::CallResult::Refused(call.extra));
            }
            results[i] = Some(Ok(o));
        }
        for j in rounds.end_round() {
            let cause = results[plan.members[j].index]
                .as_ref()
                .and_then(|r| r.as_ref().ok())
                .and_then(|o| o.detail.clone())
                .unwrap_or_default();
            if let Some(Ok(o)) = results[plan.members[j].index].as_mut() {
                o.reasons.push(Reason::GroupRefused {
                    group: plan.name.clone(),
                    nodes: rounds.refused()[j],
                    cause,
                });
            }
        }
    }
    *room = rounds.room();
    let (granted, refused, spilled_in) = (rounds.granted(), rounds.refused(), rounds.spilled_in());
    let k = plan.members.len();
    if turn.mode == Mode::Act {
        if let Some(n) = plan.recommendation {
            group.history.record_recommendation(n, now);
        }
        let held: u32 = rounds.holds().iter().sum();
        group.history.record_scale(plan.current, held, now);
    }
    let members = plan
        .members
        .iter()
        .enumerate()
        .map(|(j, m)| MemberOutcome {
            pool: m.pool.clone(),
            current: m.slot.current,
            share: m.share,
            granted: granted[j],
            limit: m.limit,
            price: m.slot.price,
            refused: refused[j],
            spilled_in: spilled_in[j],
        })
        .collect();
    let outcome = GroupOutcome {
        at: now,
        group: plan.name.clone(),
        strategy: plan.strategy.as_str(),
        current: plan.current,
        desired: plan.desired,
        granted: granted.iter().sum(),
        samples,
        members,
        reasons: plan.reasons,
    };
    let cost_delta = (0..k)
        .map(|j| money[j].cost_of(granted[j]) - money[j].cost_of(plan.members[j].granted))
        .sum();
    (outcome, cost_delta)
}

/// The names of the members that refused, for a spill-over's reason.
pub(super) fn refusers(plan: &GroupPlan, refused: &[u32]) -> String {
    plan.members
        .iter()
        .zip(refused)
        .filter(|(_, n)| **n > 0)
        .map(|(m, _)| m.pool.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A member's plan for a second call this pass: the first outcome's plan with the new
/// grant split as the member's money says.
pub(super) fn second_plan(first: &PassOutcome, nodes: u32, money: &group::Money) -> PoolPlan {
    let grant = money.grant(nodes);
    PoolPlan {
        current: first.current,
        desired: grant.nodes,
        on_demand: grant.on_demand,
        spot: grant.spot,
        hourly_cost: grant.hourly_cost,
        recommendation: None,
        bounds: first.bounds,
        schedules: Vec::new(),
        emergency: first.emergency,
        above_max: nodes > first.bounds.max,
        frozen_until: first.frozen_until,
        reasons: first.reasons.clone(),
    }
}

pub(super) async fn act(
    pool: &mut PoolRuntime,
    seen: &Seen,
    planned: PoolPlan,
    turn: Turn<'_>,
) -> PassOutcome {
    let Turn {
        claim,
        mode,
        now,
        interval,
        ..
    } = turn;
    let current = seen.description.desired;
    let mut outcome = PassOutcome {
        at: now,
        current,
        desired: planned.desired,
        on_demand: planned.on_demand,
        spot: planned.spot,
        hourly_cost: planned.hourly_cost,
        bounds: planned.bounds,
        schedules: planned.schedules.iter().map(|w| w.name.clone()).collect(),
        emergency: planned.emergency,
        frozen_until: planned.frozen_until,
        spot_fallback_until: pool.memory.state.spot.fallback.as_ref().map(|f| f.until),
        action: Action::None,
        detail: None,
        error_kind: None,
        operation_seconds: None,
        from: None,
        samples: seen.samples.clone(),
        forecasts: seen.outlook.forecasts.clone(),
        mase: seen.outlook.mase.clone(),
        predictive_active: seen.outlook.active,
        reasons: planned.reasons,
        group: pool.config.group.clone(),
    };
    if mode == Mode::PlanOnly {
        outcome.action = Action::Plan;
        return outcome;
    }
    // Whether every agent has had time to report to this one since it began to lead.
    // Until then a plan reads some nodes' reports, or none (a failover, a restart):
    // it is not remembered as a recommendation (it would hold the pool through the
    // whole scale-down window), a node not heard from is not taken for one without an
    // agent, and no node chosen for scale-in is returned to service for it.
    let heard_all = turn
        .heard_since
        .is_none_or(|t| now - t >= crate::cluster::ingest::stale_after(interval));
    if let Some(nodes) = planned.recommendation
        && heard_all
    {
        pool.memory.history.record_recommendation(nodes, now);
    }
    // A pool with an operation in flight is sent nothing new until it ends.
    if pool.memory.operation.is_some() && follow(pool, seen, &mut outcome, turn).await {
        pool.last = Some(outcome.clone());
        return outcome;
    }
    // A pool whose nodes report under their instance ids shrinks by name, after
    // draining the nodes chosen to leave; any other lets the cloud choose.
    if scale_in::targeted(pool) {
        // Choosing a node and asking it to drain disrupt it as a cloud call would: only
        // while this agent may act.
        if let Err(why) = claim.borrow().may_act(tokio::time::Instant::now()) {
            outcome.action = Action::Skipped;
            outcome.detail = Some(why);
            pool.last = Some(outcome.clone());
            return outcome;
        }
        let tended = scale_in::tend(
            pool,
            seen,
            (planned.desired, planned.on_demand),
            (turn.node, heard_all),
            now,
        );
        outcome.reasons.extend(tended.reasons);
        if planned.desired < current {
            return shrink(pool, seen, tended.remove, outcome, turn).await;
        }
    } else if planned.desired < current {
        outcome.reasons.push(Reason::ScaleInByCapacity {
            why: "its nodes' reports match none of its instances (a node reports under its instance id to be chosen by name)".to_owned(),
        });
    }
    let target = CapacityTarget {
        capacity: planned.desired,
        on_demand: planned.on_demand,
        emergency: planned.above_max,
    };
    let split_changed = pool
        .memory
        .last_target
        .is_some_and(|t| t.capacity == current && t.on_demand != target.on_demand);
    if planned.desired == current && !split_changed {
        pool.succeeded();
        pool.last = Some(outcome.clone());
        return outcome;
    }
    if !cleared(pool, &mut outcome, turn) {
        pool.last = Some(outcome.clone());
        return outcome;
    }
    operation::start(pool, target, current, Vec::new(), claim, now);
    match operation::standing(pool, operation::submit_grace(interval)).await {
        operation::Standing::Done => {
            pool.memory.operation = None;
            applied(pool, current, target, now, &mut outcome);
        }
        operation::Standing::Failed(e) => {
            pool.memory.operation = None;
            failed(pool, seen, &target, &e, turn, &mut outcome);
        }
        operation::Standing::Running | operation::Standing::Unknown => {
            let id = pool
                .memory
                .operation
                .as_ref()
                .map_or("call", |op| op.id())
                .to_owned();
            outcome.action = Action::InFlight;
            outcome.detail = Some(format!(
                "operation {id} submitted: {} nodes ({} on-demand); the cloud carries it out and later passes follow it",
                target.capacity, target.on_demand
            ));
        }
    }
    pool.last = Some(outcome.clone());
    outcome
}

/// Whether a call may go out for `pool` now: only the leader acts, and only while its
/// lease is confirmed beyond the safety margin (checked here before the call starts,
/// and again by the provider right before each mutating request); and the
/// `submitted` line is written down, durably, first: no action without its record.
/// When not, `outcome` says why (skipped).
fn cleared(pool: &PoolRuntime, outcome: &mut PassOutcome, turn: Turn<'_>) -> bool {
    if let Err(why) = turn.claim.borrow().may_act(tokio::time::Instant::now()) {
        outcome.action = Action::Skipped;
        outcome.detail = Some(why);
        return false;
    }
    if let Some(record) = turn.record {
        let mut line = outcome.clone();
        line.action = Action::Submitted;
        if let Err(e) = record.submitting(pool, &line, turn.fleet) {
            outcome.action = Action::Skipped;
            outcome.detail = Some(format!(
                "not sent: the journal could not record it first ({e})"
            ));
            return false;
        }
    }
    true
}

/// Shrinks a targeted pool: removes the nodes ready to go (`remove`: drained, past
/// their deadline, or with no agent) as one operation, by name; while none is ready,
/// the chosen nodes drain and nothing is sent.
async fn shrink(
    pool: &mut PoolRuntime,
    seen: &Seen,
    remove: Vec<String>,
    mut outcome: PassOutcome,
    turn: Turn<'_>,
) -> PassOutcome {
    let current = seen.description.desired;
    if remove.is_empty() {
        let draining: Vec<&str> = pool
            .memory
            .drains
            .iter()
            .filter(|d| d.phase == crate::state::memory::DrainPhase::Draining)
            .map(|d| d.node.as_str())
            .collect();
        outcome.action = Action::Draining;
        outcome.detail = Some(if draining.is_empty() {
            "no node can leave now; the reasons say why".to_owned()
        } else {
            format!(
                "{} node(s) draining before they are removed: {}",
                draining.len(),
                draining.join(", ")
            )
        });
        pool.last = Some(outcome.clone());
        return outcome;
    }
    let n = u32::try_from(remove.len()).unwrap_or(u32::MAX);
    let capacity = current.saturating_sub(n);
    let target = CapacityTarget {
        capacity,
        // The split the cloud was last told, within what stays; a planned change of
        // split is applied once the removal is done.
        on_demand: pool
            .memory
            .last_target
            .map_or(capacity, |t| t.on_demand.min(capacity)),
        emergency: false,
    };
    outcome.detail = Some(format!("removing {}", remove.join(", ")));
    if !cleared(pool, &mut outcome, turn) {
        pool.last = Some(outcome.clone());
        return outcome;
    }
    operation::start(pool, target, current, remove.clone(), turn.claim, turn.now);
    match operation::standing(pool, operation::submit_grace(turn.interval)).await {
        operation::Standing::Done => {
            pool.memory.operation = None;
            applied(pool, current, target, turn.now, &mut outcome);
            removed(pool, &remove, &mut outcome);
        }
        operation::Standing::Failed(e) => {
            pool.memory.operation = None;
            failed(pool, seen, &target, &e, turn, &mut outcome);
        }
        operation::Standing::Running | operation::Standing::Unknown => {
            outcome.action = Action::InFlight;
            outcome.detail = Some(format!(
                "removing {}: the cloud carries it out and later passes follow it",
                remove.join(", ")
            ));
        }
    }
    pool.last = Some(outcome.clone());
    outcome
}

/// The instances `ids` are gone: their drains end, and the journal says so.
fn removed(pool: &mut PoolRuntime, ids: &[String], outcome: &mut PassOutcome) {
    pool.memory.drains.retain(|d| !ids.contains(&d.node));
    outcome.reasons.push(Reason::Removed {
        nodes: ids.to_vec(),
    });
}

/// Follows the operation in flight for `pool`: `true` while it runs (or when it ended
/// this pass), so no new target is sent; `false` when its outcome cannot be known (the
/// process that submitted it is gone) and the pass may plan from what the cloud shows.
async fn follow(
    pool: &mut PoolRuntime,
    seen: &Seen,
    outcome: &mut PassOutcome,
    turn: Turn<'_>,
) -> bool {
    let standing = operation::standing(pool, Duration::ZERO).await;
    let Some(op) = pool.memory.operation.clone() else {
        return false;
    };
    let age = operation::age(&op, turn.now);
    match standing {
        operation::Standing::Running if age < OPERATION_TIMEOUT => {
            outcome.action = Action::InFlight;
            outcome.detail = Some(format!(
                "operation {} in flight for {}s (target {} nodes); no new target until it ends",
                op.id(),
                age.as_secs(),
                op.target.capacity
            ));
        }
        operation::Standing::Running => {
            operation::abandon(pool);
            let e = ProviderError::Transient {
                message: format!(
                    "operation {} was still running after {}s; no longer followed (the cloud may carry on, and the next pass sees what it did)",
                    op.id(),
                    age.as_secs()
                ),
            };
            failed(pool, seen, &op.target, &e, turn, outcome);
            outcome.operation_seconds = Some(age.as_secs_f64());
        }
        operation::Standing::Done => {
            pool.memory.operation = None;
            applied(pool, op.from, op.target, op.started_at, outcome);
            if !op.remove.is_empty() {
                removed(pool, &op.remove, outcome);
            }
            outcome.desired = op.target.capacity;
            outcome.on_demand = op.target.on_demand;
            outcome.spot = op.target.spot();
            outcome.detail = Some(format!(
                "operation {} done after {}s: {} to {} nodes",
                op.id(),
                age.as_secs(),
                op.from,
                op.target.capacity
            ));
            outcome.operation_seconds = Some(age.as_secs_f64());
        }
        operation::Standing::Failed(e) => {
            pool.memory.operation = None;
            failed(pool, seen, &op.target, &e, turn, outcome);
            outcome.operation_seconds = Some(age.as_secs_f64());
        }
        operation::Standing::Unknown => {
            pool.memory.operation = None;
            tracing::warn!(
                pool = %pool.config.name,
                target = op.target.capacity,
                "a submission from before a restart has no outcome on record; planning from what the cloud shows"
            );
            return false;
        }
    }
    true
}

/// Records a target the cloud carried out: the scale event (at `at`, when it was
/// submitted), the last target, the circuit closed, and flap protection.
fn applied(
    pool: &mut PoolRuntime,
    from: u32,
    target: CapacityTarget,
    at: DateTime<Utc>,
    outcome: &mut PassOutcome,
) {
    pool.memory.history.record_scale(from, target.capacity, at);
    pool.memory.last_target = Some(target);
    pool.succeeded();
    outcome.action = Action::Scaled;
    outcome.from = Some(from);
    let direction = match target.capacity.cmp(&from) {
        std::cmp::Ordering::Greater => Some(Direction::Up),
        std::cmp::Ordering::Less => Some(Direction::Down),
        std::cmp::Ordering::Equal => None,
    };
    if let Some(d) = direction {
        outcome
            .reasons
            .extend(pool.memory.state.flap.record(&pool.config.flap, d, at));
        outcome.frozen_until = pool.memory.state.flap.frozen(outcome.at);
    }
}

/// Records a target the cloud refused or that failed: spot fallback on a capacity
/// error, the back-off and circuit. A request the fence stopped is a skip (nothing
/// failed at the cloud; this agent may no longer act).
fn failed(
    pool: &mut PoolRuntime,
    seen: &Seen,
    target: &CapacityTarget,
    e: &ProviderError,
    turn: Turn<'_>,
    outcome: &mut PassOutcome,
) {
    if let ProviderError::Fenced { .. } = e {
        outcome.action = Action::Skipped;
        outcome.detail = Some(e.to_string());
        return;
    }
    if let ProviderError::InsufficientCapacity { message } = e {
        let running = running_spot(&seen.description);
        let missing = target.spot().saturating_sub(running);
        if let Some(r) = pool.memory.state.spot.refused(
            pool.config.spot.as_ref(),
            missing,
            running,
            message,
            turn.now,
        ) {
            outcome.reasons.push(r);
            outcome.spot_fallback_until = pool.memory.state.spot.fallback.as_ref().map(|f| f.until);
        }
    }
    provider_failure(pool, e, turn.now, turn.interval);
    outcome.action = Action::Failed;
    outcome.detail = Some(e.to_string());
    outcome.error_kind = Some(e.kind());
}
