//! Each reason in one sentence, as the journal's `explain`, `capstan plan` and the logs
//! say it, written by subject.

use super::*;

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // One sentence per reason, written by subject below.
        match self {
            Reason::Target { .. }
            | Reason::DrivenBy { .. }
            | Reason::MetricUnavailable { .. }
            | Reason::QueryFailed { .. }
            | Reason::ScaleDownBlockedByMissingMetrics { .. }
            | Reason::NoMetrics
            | Reason::Stabilized { .. }
            | Reason::RateLimited { .. }
            | Reason::ScalingDisabled { .. }
            | Reason::ClampedToMin { .. }
            | Reason::ClampedToMax { .. } => self.fmt_planner(f),
            Reason::Schedule(_)
            | Reason::EmergencyStarted { .. }
            | Reason::EmergencyActive { .. }
            | Reason::EmergencyEnded { .. }
            | Reason::Flapping { .. }
            | Reason::Frozen { .. }
            | Reason::ReplacingFaultyGpu { .. }
            | Reason::ReplacingInterrupted { .. }
            | Reason::AnomalyEmergency { .. } => self.fmt_bounds(f),
            Reason::GroupShare(_) | Reason::GroupSpillover { .. } | Reason::GroupRefused { .. } => {
                self.fmt_group(f)
            }
            Reason::CappedByBudget { .. }
            | Reason::CappedByEmergencyAllowance { .. }
            | Reason::CappedByPoolBudget { .. }
            | Reason::PoolOverBudget { .. }
            | Reason::OverBudget { .. }
            | Reason::MinimumsExceedBudget { .. }
            | Reason::TrimmedByBudget { .. }
            | Reason::MovedToSpot { .. }
            | Reason::SpotFallback { .. }
            | Reason::SpotFallbackOverBudget { .. }
            | Reason::SpotRetry
            | Reason::Stepped { .. }
            | Reason::SteppedParts { .. }
            | Reason::SplitNotApplied { .. } => self.fmt_money(f),
            Reason::PredictiveWarmingUp { .. }
            | Reason::PredictiveFallback { .. }
            | Reason::PredictiveAuto { .. }
            | Reason::PredictiveAutoPending { .. }
            | Reason::Predicted { .. }
            | Reason::PredictiveRaised { .. }
            | Reason::PredictiveHeld { .. }
            | Reason::Anomaly { .. } => self.fmt_forecast(f),
            Reason::ChosenForScaleIn(_)
            | Reason::DrainStarted { .. }
            | Reason::Drained { .. }
            | Reason::DrainTimedOut { .. }
            | Reason::DrainFailed(_)
            | Reason::DrainCancelled { .. }
            | Reason::Removed { .. }
            | Reason::ProtectedNodeSkipped { .. }
            | Reason::ScaleInHaltedUnready { .. }
            | Reason::ScaleInAwaitingReports { .. }
            | Reason::ScaleInByCapacity { .. } => self.fmt_scale_in(f),
        }
    }
}

impl Reason {
    /// Targeted scale-in: choosing, draining, removing.
    fn fmt_scale_in(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::ChosenForScaleIn(c) => {
                let ScaleInChoice {
                    node,
                    rule,
                    select,
                    zone,
                    zone_nodes,
                    spot,
                    busy,
                    deadline,
                } = &**c;
                let market = if *spot { "spot" } else { "on-demand" };
                write!(f, "{node} chosen to leave ({market}")?;
                if let Some(z) = zone {
                    write!(f, ", zone {z} of {zone_nodes} nodes")?;
                }
                if let Some(b) = busy {
                    write!(f, ", reading {b:.1}")?;
                }
                let why = match rule.as_str() {
                    "unhealthy" => "the cloud marks it unhealthy".to_owned(),
                    "interrupted" => "it is under an interruption notice".to_owned(),
                    "silent" => "no agent reports from it".to_owned(),
                    "market_over_share" => "its market is over its planned share".to_owned(),
                    "leader_last" => "no other node could go (it runs the leader)".to_owned(),
                    _ => format!("{select} first"),
                };
                write!(f, "): {why}")?;
                match deadline {
                    Some(d) => write!(f, "; drains until {}", d.format("%H:%M:%S")),
                    None => write!(f, "; removed without a drain"),
                }
            }
            Reason::DrainStarted { node } => write!(f, "{node} is draining"),
            Reason::Drained { node, seconds } => {
                write!(f, "{node} drained after {seconds:.0}s; it is removed next")
            }
            Reason::DrainTimedOut { node, then } => {
                write!(f, "{node} did not drain by its deadline; ")?;
                then_what(f, then)
            }
            Reason::DrainFailed(d) => {
                let DrainFailure { node, detail, then } = &**d;
                write!(f, "{node}'s drain failed ({detail}); ")?;
                then_what(f, then)
            }
            Reason::DrainCancelled { node } => write!(
                f,
                "{node} returns to service: the pool no longer shrinks that far"
            ),
            Reason::Removed { nodes } => {
                write!(
                    f,
                    "removed {}: the desired capacity drops by {}",
                    nodes.join(", "),
                    nodes.len()
                )
            }
            Reason::ProtectedNodeSkipped { node } => {
                write!(f, "{node} reports protected; not chosen for scale-in")
            }
            Reason::ScaleInHaltedUnready {
                unready,
                nodes,
                threshold_percent,
            } => write!(
                f,
                "scale-in waits: {unready} of {nodes} nodes are unready or not reporting (more than {threshold_percent:.0}%)"
            ),
            Reason::ScaleInAwaitingReports { nodes } => write!(
                f,
                "{nodes} node(s) not heard from since this agent began to lead: not chosen for scale-in until a report of theirs is overdue"
            ),
            Reason::ScaleInByCapacity { why } => {
                write!(f, "the cloud chooses which nodes leave: {why}")
            }
            _ => Ok(()),
        }
    }
}

fn then_what(f: &mut std::fmt::Formatter<'_>, then: &str) -> std::fmt::Result {
    if then == "keep" {
        write!(f, "it is kept and returned to service")
    } else {
        write!(f, "it is removed anyway")
    }
}

impl Reason {
    /// The HPA planner's steps.
    fn fmt_planner(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Target {
                metric,
                value,
                target,
                ratio,
                proposed,
                ready,
                missing,
                unready,
                no_change,
            } => {
                write!(
                    f,
                    "target {metric}: {value:.2} per node vs {target} (ratio {ratio:.2}, {ready} ready"
                )?;
                if *missing > 0 {
                    write!(f, ", {missing} missing")?;
                }
                if *unready > 0 {
                    write!(f, ", {unready} unready")?;
                }
                if *no_change {
                    write!(f, ") → no change ({proposed})")
                } else {
                    write!(f, ") → {proposed}")
                }
            }
            Reason::DrivenBy { metric, proposed } => write!(f, "driven by {metric}: {proposed}"),
            Reason::MetricUnavailable { metric } => write!(f, "no readings for {metric}"),
            Reason::QueryFailed { query, error } => write!(f, "promql {query:?}: {error}"),
            Reason::ScaleDownBlockedByMissingMetrics { proposed } => {
                write!(
                    f,
                    "scale-down to {proposed} skipped: some targets have no readings"
                )
            }
            Reason::NoMetrics => write!(f, "no target has readings; keeping the current size"),
            Reason::Stabilized {
                direction,
                window_seconds,
                from,
                to,
            } => {
                let d = direction.as_str();
                write!(
                    f,
                    "scale-{d} stabilization window {window_seconds}s: {from} → {to}"
                )
            }
            Reason::RateLimited {
                direction,
                policy,
                from,
                to,
            } => {
                let d = direction.as_str();
                write!(f, "scale-{d} rate {policy}: {from} → {to}")
            }
            Reason::ScalingDisabled { direction } => {
                let d = direction.as_str();
                write!(f, "scale-{d} disabled")
            }
            Reason::ClampedToMin { from, min } => write!(f, "raised to min: {from} → {min}"),
            Reason::ClampedToMax { from, max } => write!(f, "capped at max: {from} → {max}"),
            other => write!(f, "{other:?}"),
        }
    }

    /// Bounds this pass: schedules, emergencies, flapping, replacements of leaving nodes.
    fn fmt_bounds(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Schedule(s) => {
                let ScheduleBound {
                    name,
                    bound,
                    from,
                    to,
                    until,
                } = &**s;
                let verb = if to >= from { "raised" } else { "lowered" };
                write!(
                    f,
                    "schedule {name} {verb} {bound} to {to} (from {from}) until {}",
                    until.format("%Y-%m-%d %H:%M UTC")
                )
            }
            Reason::EmergencyStarted {
                saturation,
                threshold,
                intervals,
                emergency_max,
            } => write!(
                f,
                "emergency: saturation {saturation:.2} ≥ {threshold} for {intervals} intervals; max lifted to {emergency_max}"
            ),
            Reason::EmergencyActive {
                since,
                emergency_max,
            } => write!(
                f,
                "emergency since {}: max lifted to {emergency_max}",
                since.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Reason::EmergencyEnded { intervals } => write!(
                f,
                "emergency over: {intervals} intervals without need above max"
            ),
            Reason::Flapping {
                reversals,
                window_seconds,
                until,
            } => write!(
                f,
                "flapping: {reversals} reversals within {window_seconds}s; frozen until {until}"
            ),
            Reason::Frozen { until } => write!(f, "frozen after flapping until {until}"),
            Reason::ReplacingFaultyGpu { nodes, from, to } => write!(
                f,
                "{nodes} node(s) with a faulty GPU (uncorrected ECC errors or a fatal XID): replacing them, {from} → {to}"
            ),
            Reason::ReplacingInterrupted { nodes, from, to } => write!(
                f,
                "{nodes} node(s) under an interruption notice: replacing them early, {from} → {to}"
            ),
            Reason::AnomalyEmergency { metric } => {
                write!(f, "surge anomaly in {metric} starts emergency capacity")
            }

            other => write!(f, "{other:?}"),
        }
    }

    /// Pool groups.
    fn fmt_group(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::GroupShare(g) => {
                let GroupShare {
                    group,
                    strategy,
                    group_desired,
                    share,
                    price,
                    limit,
                } = &**g;
                write!(
                    f,
                    "group {group} ({strategy}): {share} of its {group_desired} node(s) here"
                )?;
                if let Some(p) = price {
                    write!(f, ", {p:.4}/node-h")?;
                }
                if let Some(l) = limit {
                    write!(f, ", held by {}", l.as_str())?;
                }
                Ok(())
            }
            Reason::GroupSpillover { group, from, nodes } => write!(
                f,
                "group {group}: {nodes} node(s) spilled over from {from}, whose cloud could not take them"
            ),
            Reason::GroupRefused {
                group,
                nodes,
                cause,
            } => write!(
                f,
                "group {group}: the cloud refused {nodes} node(s) ({cause}); the other members take them"
            ),
            other => write!(f, "{other:?}"),
        }
    }

    /// The budget and the spot split.
    fn fmt_money(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::CappedByBudget {
                from,
                to,
                tier,
                ceiling,
            } => write!(
                f,
                "capped by budget: {from} → {to} ({} tier, ceiling {ceiling:.2}/h)",
                tier.as_str()
            ),
            Reason::CappedByEmergencyAllowance {
                from,
                to,
                allowance,
            } => write!(
                f,
                "capped by emergency allowance: {from} → {to} (allowance {allowance:.2}/h)"
            ),
            Reason::CappedByPoolBudget { from, to, ceiling } => write!(
                f,
                "capped by pool budget: {from} → {to} (ceiling {ceiling:.2}/h)"
            ),
            Reason::PoolOverBudget { cost, ceiling } => write!(
                f,
                "pool over its budget: {cost:.2}/h against {ceiling:.2}/h"
            ),
            Reason::OverBudget {
                cost,
                ceiling,
                enforce,
            } => write!(
                f,
                "fleet over budget: {cost:.2}/h against {ceiling:.2}/h (enforce = {enforce}); scale-ups blocked"
            ),
            Reason::MinimumsExceedBudget { cost, ceiling } => write!(
                f,
                "pool minimums alone cost {cost:.2}/h, above the budget ceiling {ceiling:.2}/h; keeping the minimums"
            ),
            Reason::TrimmedByBudget { from, to, tier } => write!(
                f,
                "trimmed by budget: {from} → {to} ({} tier)",
                tier.as_str()
            ),
            Reason::MovedToSpot {
                on_demand_from,
                on_demand_to,
            } => write!(
                f,
                "moved to spot for budget: on-demand {on_demand_from} → {on_demand_to}"
            ),
            Reason::SpotFallback {
                nodes,
                minutes,
                cause,
            } => write!(f, "{cause}: {nodes} nodes to on-demand for {minutes} min"),
            Reason::SpotFallbackOverBudget { nodes } => write!(
                f,
                "{nodes} missing spot nodes not replaced by on-demand: the budget does not allow it"
            ),
            Reason::SpotRetry => write!(f, "spot fallback over; trying spot again"),
            Reason::Stepped { from, to, step } => write!(
                f,
                "fitted to the pool's steps of {step} nodes: {from} → {to}"
            ),
            Reason::SteppedParts { from, to, steps } => write!(
                f,
                "fitted to the node pools' steps ({} on-demand, {} spot nodes): {}+{} → {}+{} on-demand+spot",
                steps.0, steps.1, from.0, from.1, to.0, to.1
            ),
            Reason::SplitNotApplied { why } => write!(
                f,
                "spot split not applied ({why}): planned and billed on-demand"
            ),
            other => write!(f, "{other:?}"),
        }
    }

    /// Forecasts and anomalies.
    fn fmt_forecast(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::PredictiveWarmingUp { metric } => {
                write!(f, "forecast for {metric} warming up; reactive only")
            }
            Reason::PredictiveFallback { metric, mase } => write!(
                f,
                "forecast for {metric} worse than naive over the last day (MASE {mase:.2} > 1); reactive only"
            ),
            Reason::PredictiveAuto {
                scale,
                days,
                saturated_minutes,
                forecast_node_hours,
                reactive,
            } => {
                let against = match reactive {
                    Some((target, hours)) => format!(
                        "the cheapest reactive-only policy as good (target {target}) needs {hours:.1}"
                    ),
                    None => "no reactive-only policy stays within them".to_owned(),
                };
                write!(
                    f,
                    "auto: over the last {days:.1} days, forecast-and-scale needs {forecast_node_hours:.1} node-hours for {saturated_minutes} saturated minutes, {against}; {}",
                    if *scale {
                        "scaling on the forecast"
                    } else {
                        "reactive only"
                    }
                )
            }
            Reason::PredictiveAutoPending { detail } => {
                write!(f, "auto: no backtest yet ({detail}); reactive only")
            }
            Reason::Predicted {
                metric,
                demand,
                lead_minutes,
                nodes,
            } => write!(
                f,
                "forecast {metric}: demand {demand:.1} in {lead_minutes} min needs {nodes} nodes"
            ),
            Reason::PredictiveRaised { from, to } => {
                write!(f, "predictive scaling: {from} → {to}")
            }
            Reason::PredictiveHeld { from, to } => write!(
                f,
                "held at {to} (not {from}): the forecast needs them before a replacement would be ready"
            ),
            Reason::Anomaly {
                metric,
                value,
                expected,
                z,
            } => write!(
                f,
                "anomaly in {metric}: demand {value:.1} against {expected:.1} expected (z {z:.1})"
            ),
            other => write!(f, "{other:?}"),
        }
    }
}
