//! The reactive planner: the Kubernetes HPA v2 algorithm, applied to node pools.
//!
//! For each target, `desired = ceil(current × metric / target)` with HPA's tolerance
//! and missing-metric rules; the pool takes the maximum over targets; then the
//! scale-up and scale-down stabilization windows smooth the recommendation; then
//! the rate policies and the `[min, max]` clamps bound the change. Every step that
//! shaped the result leaves a [`Reason`].
//!
//! **Invariant:** [`plan`] is a pure function. No I/O, no clock, no randomness.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use capstan_config::{PolicyKind, Pool, ScalingBehavior, ScalingRules, SelectPolicy, TargetSource};

pub use super::reason::{Direction, Metric, Reason};

mod history;

use history::after;
pub(crate) use history::since;
pub use history::{History, Recommendation, ScaleEvent};

/// What the planner needs of a pool's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Floor.
    pub min: u32,
    /// Ceiling.
    pub max: u32,
    /// HPA tolerance.
    pub tolerance: f64,
    /// Targets, in config order.
    pub targets: Vec<TargetSpec>,
    /// Stabilization windows and rate policies.
    pub behavior: ScalingBehavior,
}

/// One target as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    /// Metric name for reasons.
    pub metric: Metric,
    /// Per-node value to hold.
    pub value: f64,
    /// What a node with no reading counts as on a scale-down: the target itself,
    /// as HPA does ("missing pods consume 100 % of the desired value").
    pub missing_fallback: f64,
}

impl From<&Pool> for Policy {
    fn from(pool: &Pool) -> Self {
        Self {
            min: pool.min,
            max: pool.max,
            tolerance: pool.tolerance,
            targets: target_specs(&pool.targets),
            behavior: pool.behavior.clone(),
        }
    }
}

impl From<&capstan_config::Group> for Policy {
    /// A group's targets and behavior; its bounds (the sums of its members' bounds)
    /// are set each pass.
    fn from(group: &capstan_config::Group) -> Self {
        Self {
            min: 0,
            max: 0,
            tolerance: group.tolerance,
            targets: target_specs(&group.targets),
            behavior: group.behavior.clone(),
        }
    }
}

fn target_specs(targets: &[capstan_config::Target]) -> Vec<TargetSpec> {
    targets
        .iter()
        .map(|t| TargetSpec {
            metric: match &t.source {
                TargetSource::Metric(m) => m.name().into(),
                TargetSource::PromQl { query, .. } => format!("promql:{query}").into(),
            },
            value: t.value,
            missing_fallback: t.value,
        })
        .collect()
}

/// One target's readings across the pool.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct MetricSample {
    /// Sum of the readings of ready nodes that reported the metric.
    pub sum: f64,
    /// Ready nodes that reported the metric.
    pub ready: u32,
    /// Ready nodes in the pool that did not report it (HPA's "missing pods").
    pub missing: u32,
    /// Nodes not ready yet (HPA's "unready pods"); count as 0 on a scale-up.
    pub unready: u32,
    /// Nodes that actually reported. Equals `ready` when reports match instances; when
    /// the reports are only a sample of the pool, `ready` is the pool's in-service
    /// count and `sum` is the sample's average times that count.
    #[serde(default)]
    pub reporting: u32,
}

/// Everything observed about a pool for one pass.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    /// Nodes the pool holds now (the provider's desired capacity).
    pub current: u32,
    /// One entry per policy target, in order; `None` when the metric is unavailable.
    pub metrics: &'a [Option<MetricSample>],
    /// The pool's planner history.
    pub history: &'a History,
    /// Nodes predictive scaling asks for, if it is in force.
    pub predicted: Option<u32>,
    /// Nodes the forecast needs before capacity asked for now is ready, if predictive
    /// scaling is in force and looks past the bucket being measured: a scale-down keeps
    /// them in place of the scale-down stabilization window (the outlook's `hold`).
    pub held: Option<u32>,
}

/// The outcome of one planning pass for one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// Nodes now.
    pub current: u32,
    /// Nodes the pool should hold.
    pub desired: u32,
    /// The raw recommendation to remember for the stabilization windows; `None` when
    /// the pass made none (no metrics, or the pool was outside its bounds).
    pub recommendation: Option<u32>,
    /// Why, step by step.
    pub reasons: Vec<Reason>,
}

/// Plans one pool: HPA's `computeReplicasForMetrics` then `normalizeDesiredReplicasWithBehaviors`.
pub fn plan(observed: &Observed<'_>, policy: &Policy, now: DateTime<Utc>) -> Decision {
    plan_within(
        observed,
        policy,
        (policy.min, policy.max),
        now,
        Vec::with_capacity(8),
    )
}

/// [`plan`] between `(min, max)`, this pass's bounds (after schedules and an
/// emergency), in place of the policy's own, so the policy is not copied to change
/// them; its reasons are appended to `reasons` (which the decision then holds), so a
/// caller that has reasons of its own needs no second buffer.
pub fn plan_within(
    observed: &Observed<'_>,
    policy: &Policy,
    (min, max): (u32, u32),
    now: DateTime<Utc>,
    mut reasons: Vec<Reason>,
) -> Decision {
    let current = observed.current;

    // Above max (an emergency ended, a schedule lowered max) the pool returns to max
    // at its normal scale-down rate, so a bound that moves never drops hundreds of
    // nodes at once; with scale-down disabled it goes straight there.
    if current > max {
        reasons.push(Reason::ClampedToMax { from: current, max });
        let rules = &policy.behavior.scale_down;
        let mut desired = max;
        if rules.select_policy != SelectPolicy::Disabled {
            let limit = rate_limit(observed, rules, Direction::Down, now).min(current);
            if limit > max {
                reasons.push(Reason::RateLimited {
                    direction: Direction::Down,
                    policy: describe_rules(rules),
                    from: max,
                    to: limit,
                });
                desired = limit;
            }
        }
        return Decision {
            current,
            desired,
            recommendation: None,
            reasons,
        };
    }
    // Below min, the pool moves straight to min, whatever the metrics say (as HPA).
    if current < min {
        reasons.push(Reason::ClampedToMin { from: current, min });
        return Decision {
            current,
            desired: min,
            recommendation: None,
            reasons,
        };
    }

    let Some(raw) = recommend(observed, policy, &mut reasons) else {
        return Decision {
            current,
            desired: current,
            recommendation: None,
            reasons,
        };
    };
    let stabilized = stabilize(observed, policy, raw, now, &mut reasons);
    let desired = limit_rate(observed, policy, (min, max), stabilized, now, &mut reasons);
    Decision {
        current,
        desired,
        recommendation: Some(raw),
        reasons,
    }
}

/// The largest proposal over targets, with HPA's rule that unavailable metrics block
/// a scale-down. `None` when no target has readings.
fn recommend(observed: &Observed<'_>, policy: &Policy, reasons: &mut Vec<Reason>) -> Option<u32> {
    let current = observed.current;
    let mut best: Option<(u32, &Metric)> = None;
    let mut unavailable = 0;
    for (i, target) in policy.targets.iter().enumerate() {
        let sample = observed.metrics.get(i).copied().flatten();
        match sample.and_then(|s| propose(current, s, target, policy.tolerance)) {
            Some(p) => {
                reasons.push(Reason::Target {
                    metric: target.metric.clone(),
                    value: p.value,
                    target: target.value,
                    ratio: p.ratio,
                    proposed: p.nodes,
                    ready: p.sample.ready,
                    missing: p.sample.missing,
                    unready: p.sample.unready,
                    no_change: p.nodes == current,
                });
                if best.is_none_or(|(n, _)| p.nodes > n) {
                    best = Some((p.nodes, &target.metric));
                }
            }
            None => {
                unavailable += 1;
                reasons.push(Reason::MetricUnavailable {
                    metric: target.metric.clone(),
                });
            }
        }
    }
    let reactive = match best {
        None => {
            reasons.push(Reason::NoMetrics);
            None
        }
        Some((nodes, metric)) => {
            reasons.push(Reason::DrivenBy {
                metric: metric.clone(),
                proposed: nodes,
            });
            if unavailable > 0 && nodes < current {
                reasons.push(Reason::ScaleDownBlockedByMissingMetrics { proposed: nodes });
                Some(current)
            } else {
                Some(nodes)
            }
        }
    };
    // Predictive scaling only ever raises: max(reactive, predictive). Without readings
    // the reactive side keeps the current size.
    match (reactive, observed.predicted) {
        (Some(r), Some(p)) if p > r => {
            reasons.push(Reason::PredictiveRaised { from: r, to: p });
            Some(p)
        }
        (None, Some(p)) if p > current => {
            reasons.push(Reason::PredictiveRaised {
                from: current,
                to: p,
            });
            Some(p)
        }
        (r, _) => r,
    }
}

struct Proposal {
    nodes: u32,
    value: f64,
    ratio: f64,
    sample: MetricSample,
}

fn ceil_nodes(x: f64) -> u32 {
    // Node counts are far below u32::MAX; a NaN (impossible here) would give 0.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = x.ceil().clamp(0.0, f64::from(u32::MAX)) as u32;
    n
}

/// HPA's per-metric replica count (`GetResourceReplicas` / `calcPlainMetricReplicas`).
fn propose(current: u32, s: MetricSample, target: &TargetSpec, tolerance: f64) -> Option<Proposal> {
    if s.ready == 0 || !s.sum.is_finite() || target.value <= 0.0 {
        return None;
    }
    let value = s.sum / f64::from(s.ready);
    let ratio = value / target.value;
    let within = |r: f64| (1.0 - r).abs() <= tolerance;
    let scale_up_with_unready = s.unready > 0 && ratio > 1.0;

    if !scale_up_with_unready && s.missing == 0 {
        let nodes = if within(ratio) {
            current
        } else {
            ceil_nodes(ratio * f64::from(s.ready))
        };
        return Some(Proposal {
            nodes,
            value,
            ratio,
            sample: s,
        });
    }

    // Fill in the gaps the way HPA does: on a scale-down missing nodes count as at
    // target; on a scale-up they count as idle, and so do unready nodes. A reading
    // exactly on target is neither: the missing nodes are left out, as HPA leaves them.
    let mut sum = s.sum;
    let mut count = s.ready;
    if s.missing > 0 {
        if ratio < 1.0 {
            sum += target.missing_fallback * f64::from(s.missing);
            count += s.missing;
        } else if ratio > 1.0 {
            count += s.missing;
        }
    }
    if scale_up_with_unready {
        count += s.unready;
    }
    let new_ratio = sum / f64::from(count) / target.value;
    let reversed = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if within(new_ratio) || reversed {
        return Some(Proposal {
            nodes: current,
            value,
            ratio,
            sample: s,
        });
    }
    let nodes = ceil_nodes(new_ratio * f64::from(count));
    if (new_ratio < 1.0 && nodes > current) || (new_ratio > 1.0 && nodes < current) {
        return Some(Proposal {
            nodes: current,
            value,
            ratio,
            sample: s,
        });
    }
    Some(Proposal {
        nodes,
        value,
        ratio,
        sample: s,
    })
}

/// HPA's `stabilizeRecommendationWithBehaviors`: a scale-up goes no higher than the
/// lowest recommendation in the up window; a scale-down no lower than the highest in
/// the down window.
fn stabilize(
    observed: &Observed<'_>,
    policy: &Policy,
    raw: u32,
    now: DateTime<Utc>,
    reasons: &mut Vec<Reason>,
) -> u32 {
    let up_window = policy.behavior.scale_up.stabilization_window;
    let down_window = policy.behavior.scale_down.stabilization_window;
    let up_cutoff = since(now, up_window);
    // A forecast that looks past the bucket being measured holds what it needs until a
    // replacement could be ready; the window's look back is then not needed.
    let down_cutoff = if observed.held.is_some() {
        now
    } else {
        since(now, down_window)
    };
    let (up, down) = window_bounds(
        &observed.history.recommendations,
        (up_cutoff, down_cutoff),
        raw,
        raw.max(observed.held.unwrap_or(0)),
    );
    let mut result = observed.current;
    if result < up {
        result = up;
    }
    if result > down {
        result = down;
    }
    if result != raw && raw < observed.current && observed.held.is_some() {
        // Only the forecast's hold bounds a scale-down while it stands in for the window.
        reasons.push(Reason::PredictiveHeld {
            from: raw,
            to: result,
        });
    } else if result != raw {
        let (direction, window) = if raw > observed.current {
            (Direction::Up, up_window)
        } else {
            (Direction::Down, down_window)
        };
        reasons.push(Reason::Stabilized {
            direction,
            window_seconds: window.as_secs(),
            from: raw,
            to: result,
        });
    }
    result
}

/// The stabilization windows' bounds: the lowest of `up` and the recommendations made
/// after `up_cutoff`, and the highest of `down` and those made after `down_cutoff`.
pub(crate) fn window_bounds(
    recommendations: &[Recommendation],
    (up_cutoff, down_cutoff): (DateTime<Utc>, DateTime<Utc>),
    up: u32,
    down: u32,
) -> (u32, u32) {
    (
        after(recommendations, up_cutoff)
            .iter()
            .fold(up, |m, r| m.min(r.nodes)),
        after(recommendations, down_cutoff)
            .iter()
            .fold(down, |m, r| m.max(r.nodes)),
    )
}

/// Nodes the changes made after `cutoff` added (or removed).
fn changes_since(events: &[ScaleEvent], cutoff: DateTime<Utc>) -> u32 {
    after(events, cutoff)
        .iter()
        .map(|e| e.change)
        .fold(0, u32::saturating_add)
}

/// The rules as a rate-limited reason names them, e.g. `max(percent 100/15s, nodes 4/15s)`.
///
/// Written out by hand rather than with `format!` and `join`: a fleet pass names the
/// rules of every pool its rates hold, and the formatting machinery cost more than the
/// rest of that pool's plan.
pub(crate) fn describe_rules(rules: &ScalingRules) -> String {
    let mut text = String::with_capacity(8 + 24 * rules.policies.len());
    text.push_str(match rules.select_policy {
        SelectPolicy::Max => "max(",
        SelectPolicy::Min => "min(",
        SelectPolicy::Disabled => "disabled(",
    });
    for (i, p) in rules.policies.iter().enumerate() {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(match p.kind {
            PolicyKind::Nodes => "nodes ",
            PolicyKind::Percent => "percent ",
        });
        push_decimal(&mut text, u64::from(p.value));
        text.push('/');
        push_decimal(&mut text, p.period.as_secs());
        text.push('s');
    }
    text.push(')');
    text
}

/// Appends `n` in decimal.
fn push_decimal(text: &mut String, mut n: u64) {
    let mut digits = [0_u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // A single decimal digit.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (n % 10) as u8;
        digits[at] = b'0' + digit;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    text.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// Nodes at the start of a policy's period: now, less what was added within it, plus
/// what was removed within it.
fn period_start(observed: &Observed<'_>, period: std::time::Duration, now: DateTime<Utc>) -> u32 {
    let h = observed.history;
    let cutoff = since(now, period);
    let added = changes_since(&h.scale_up_events, cutoff);
    let deleted = changes_since(&h.scale_down_events, cutoff);
    observed
        .current
        .saturating_add(deleted)
        .saturating_sub(added)
}

/// The bound the rate policies put on a change in `direction`: HPA's
/// `calculateScaleUpLimitWithScalingRules` and `calculateScaleDownLimitWithBehaviors`.
/// `select_policy = max` takes the policy that allows the largest change.
fn rate_limit(
    observed: &Observed<'_>,
    rules: &ScalingRules,
    direction: Direction,
    now: DateTime<Utc>,
) -> u32 {
    let proposals = rules.policies.iter().map(|p| {
        let start = period_start(observed, p.period, now);
        match (direction, p.kind) {
            (Direction::Up, PolicyKind::Nodes) => start.saturating_add(p.value),
            (Direction::Up, PolicyKind::Percent) => {
                ceil_nodes(f64::from(start) * (1.0 + f64::from(p.value) / 100.0))
            }
            (Direction::Down, PolicyKind::Nodes) => start.saturating_sub(p.value),
            (Direction::Down, PolicyKind::Percent) => {
                let keep = (1.0 - f64::from(p.value.min(100)) / 100.0).max(0.0);
                // HPA truncates here; node counts are far below u32::MAX.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let n = (f64::from(start) * keep).floor() as u32;
                n
            }
        }
    });
    let largest_change = rules.select_policy != SelectPolicy::Min;
    match (direction, largest_change) {
        (Direction::Up, true) | (Direction::Down, false) => proposals.max().unwrap_or(0),
        (Direction::Up, false) | (Direction::Down, true) => proposals.min().unwrap_or(u32::MAX),
    }
}

/// HPA's `convertDesiredReplicasWithBehaviorRate`: rate policies, then the bounds.
fn limit_rate(
    observed: &Observed<'_>,
    policy: &Policy,
    (min, max): (u32, u32),
    desired: u32,
    now: DateTime<Utc>,
    reasons: &mut Vec<Reason>,
) -> u32 {
    let current = observed.current;
    if desired > current {
        let rules = &policy.behavior.scale_up;
        if rules.select_policy == SelectPolicy::Disabled {
            reasons.push(Reason::ScalingDisabled {
                direction: Direction::Up,
            });
            return current;
        }
        let limit = rate_limit(observed, rules, Direction::Up, now).max(current);
        if limit < max {
            if desired > limit {
                reasons.push(Reason::RateLimited {
                    direction: Direction::Up,
                    policy: describe_rules(rules),
                    from: desired,
                    to: limit,
                });
                return limit;
            }
        } else if desired > max {
            reasons.push(Reason::ClampedToMax { from: desired, max });
            return max;
        }
        desired
    } else if desired < current {
        let rules = &policy.behavior.scale_down;
        if rules.select_policy == SelectPolicy::Disabled {
            reasons.push(Reason::ScalingDisabled {
                direction: Direction::Down,
            });
            return current;
        }
        let limit = rate_limit(observed, rules, Direction::Down, now).min(current);
        if limit > min {
            if desired < limit {
                reasons.push(Reason::RateLimited {
                    direction: Direction::Down,
                    policy: describe_rules(rules),
                    from: desired,
                    to: limit,
                });
                return limit;
            }
        } else if desired < min {
            reasons.push(Reason::ClampedToMin { from: desired, min });
            return min;
        }
        desired
    } else {
        desired
    }
}

/// The lowest size the pool's scale-down rules allow this pass, never below `min`:
/// what a budget trim may take the pool down to.
pub fn lowest_allowed(
    observed: &Observed<'_>,
    policy: &Policy,
    min: u32,
    now: DateTime<Utc>,
) -> u32 {
    let rules = &policy.behavior.scale_down;
    if rules.select_policy == SelectPolicy::Disabled {
        return observed.current.max(min);
    }
    rate_limit(observed, rules, Direction::Down, now)
        .min(observed.current)
        .max(min)
}

/// The on-demand share of `capacity` under a spot split, as the clouds define it:
/// the first `base` nodes are on-demand, then `percent` % of the rest, rounded up.
/// Without a split every node is on-demand.
pub fn on_demand_share(capacity: u32, spot: Option<&capstan_config::Spot>) -> u32 {
    let Some(spot) = spot else { return capacity };
    let base = spot.on_demand_base.min(capacity);
    let above = capacity - base;
    let pct = f64::from(spot.on_demand_percent_above_base.min(100)) / 100.0;
    base + ceil_nodes(f64::from(above) * pct).min(above)
}
