//! Table-driven cases from HPA's documented behaviour, and property tests.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;

use capstan_config::{PolicyKind, ScalingPolicy, ScalingRules, SelectPolicy, presets};

use super::planner::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
}

fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

fn policy(min: u32, max: u32, targets: &[f64]) -> Policy {
    Policy {
        min,
        max,
        tolerance: 0.1,
        targets: targets
            .iter()
            .enumerate()
            .map(|(i, v)| TargetSpec {
                metric: format!("m{i}").into(),
                value: *v,
                missing_fallback: *v,
            })
            .collect(),
        behavior: presets::balanced(),
    }
}

/// `ready` nodes all reading `avg`.
fn s(avg: f64, ready: u32) -> Option<MetricSample> {
    Some(MetricSample {
        sum: avg * f64::from(ready),
        ready,
        missing: 0,
        unready: 0,
        reporting: ready,
    })
}

fn run(current: u32, metrics: &[Option<MetricSample>], p: &Policy, h: &History) -> Decision {
    plan(
        &Observed {
            current,
            metrics,
            history: h,
            predicted: None,
            held: None,
        },
        p,
        t0(),
    )
}

fn has(d: &Decision, f: impl Fn(&Reason) -> bool) -> bool {
    d.reasons.iter().any(f)
}

#[test]
fn ratio_doubles_and_halves() {
    let p = policy(1, 100, &[100.0]);
    let h = History::default();
    // "if the current metric value is 200m and the desired value is 100m, the number of replicas will be doubled"
    assert_eq!(run(4, &[s(200.0, 4)], &p, &h).desired, 8);
    // "if the current value is instead 50m, you'll halve the number of replicas"
    assert_eq!(run(8, &[s(50.0, 8)], &p, &h).desired, 4);
    // desiredReplicas = ceil[currentReplicas * ( currentMetricValue / desiredMetricValue )]
    assert_eq!(run(3, &[s(130.0, 3)], &p, &h).desired, 4);
}

#[test]
fn tolerance_of_ten_percent_means_no_change() {
    let p = policy(1, 100, &[100.0]);
    let h = History::default();
    let d = run(10, &[s(109.0, 10)], &p, &h);
    assert_eq!(d.desired, 10);
    assert!(has(&d, |r| matches!(
        r,
        Reason::Target {
            no_change: true,
            ..
        }
    )));
    assert_eq!(run(10, &[s(91.0, 10)], &p, &h).desired, 10);
    assert_eq!(run(10, &[s(111.0, 10)], &p, &h).desired, 12);
    let mut tight = p.clone();
    tight.tolerance = 0.0;
    assert_eq!(run(10, &[s(101.0, 10)], &tight, &h).desired, 11);
}

#[test]
fn the_largest_proposal_over_targets_wins_and_is_named() {
    let p = policy(1, 100, &[50.0, 100.0]);
    let d = run(4, &[s(75.0, 4), s(225.0, 4)], &p, &History::default());
    assert_eq!(d.desired, 8, "{d:?}"); // m0 says 6, m1 says 9, up rate limit is max(+100 %, +4) = 8
    assert!(has(
        &d,
        |r| matches!(r, Reason::DrivenBy { metric, proposed: 9 } if &**metric == "m1")
    ));
    assert!(has(&d, |r| matches!(
        r,
        Reason::RateLimited {
            direction: Direction::Up,
            from: 9,
            to: 8,
            ..
        }
    )));
}

#[test]
fn missing_nodes_count_as_idle_on_a_scale_up() {
    let p = policy(1, 100, &[50.0]);
    let h = History::default();
    // Two nodes report 100 (ratio 2), two report nothing: 200/4 = 50, exactly on target.
    let m = Some(MetricSample {
        sum: 200.0,
        ready: 2,
        missing: 2,
        unready: 0,
        reporting: 2,
    });
    assert_eq!(run(4, &[m], &p, &h).desired, 4);
    // Two report 150 (ratio 3): 300/4 = 75, ratio 1.5 over 4 nodes = 6.
    let m = Some(MetricSample {
        sum: 300.0,
        ready: 2,
        missing: 2,
        unready: 0,
        reporting: 2,
    });
    assert_eq!(run(4, &[m], &p, &h).desired, 6);
}

/// HPA fills in missing nodes only when the reading says which way to go: exactly on
/// target, neither at target nor idle. Counted as idle (as before), two nodes reading
/// exactly 50 of 4 would have shrunk the pool to 2 on half the readings: a new leader
/// whose first reports had not all come in did just that.
#[test]
fn missing_nodes_leave_a_reading_exactly_on_target_where_it_is() {
    let p = policy(1, 100, &[50.0]);
    let m = Some(MetricSample {
        sum: 100.0,
        ready: 2,
        missing: 2,
        unready: 0,
        reporting: 2,
    });
    let d = run(4, &[m], &p, &History::default());
    assert_eq!(d.desired, 4, "{:?}", d.reasons);
    assert_eq!(d.recommendation, Some(4));
}

#[test]
fn missing_nodes_count_as_at_target_on_a_scale_down() {
    let p = policy(1, 100, &[50.0]);
    // Two report 20 (ratio 0.4); the two missing count as 50: 140/4 = 35, ratio 0.7, ceil(2.8) = 3.
    let m = Some(MetricSample {
        sum: 40.0,
        ready: 2,
        missing: 2,
        unready: 0,
        reporting: 2,
    });
    assert_eq!(run(4, &[m], &p, &History::default()).desired, 3);
    // Two report 45 (ratio 0.9, inside tolerance anyway); the fill keeps it inside: no change.
    let m = Some(MetricSample {
        sum: 90.0,
        ready: 2,
        missing: 2,
        unready: 0,
        reporting: 2,
    });
    assert_eq!(run(4, &[m], &p, &History::default()).desired, 4);
}

#[test]
fn unready_nodes_count_as_idle_on_a_scale_up_and_are_ignored_on_a_scale_down() {
    let p = policy(1, 100, &[50.0]);
    let h = History::default();
    let m = Some(MetricSample {
        sum: 200.0,
        ready: 2,
        missing: 0,
        unready: 2,
        reporting: 2,
    });
    assert_eq!(
        run(4, &[m], &p, &h).desired,
        4,
        "100 % over target, halved by two idle unready nodes"
    );
    let m = Some(MetricSample {
        sum: 40.0,
        ready: 2,
        missing: 0,
        unready: 2,
        reporting: 2,
    });
    // Scale-down looks at ready nodes only: ceil(0.4 × 2) = 1.
    assert_eq!(run(4, &[m], &p, &h).desired, 1);
}

#[test]
fn a_missing_metric_blocks_scale_down_but_not_scale_up() {
    let p = policy(1, 100, &[50.0, 50.0]);
    let h = History::default();
    let d = run(8, &[s(10.0, 8), None], &p, &h);
    assert_eq!(d.desired, 8);
    assert!(has(&d, |r| matches!(
        r,
        Reason::ScaleDownBlockedByMissingMetrics { .. }
    )));
    assert!(has(
        &d,
        |r| matches!(r, Reason::MetricUnavailable { metric } if &**metric == "m1")
    ));
    assert_eq!(run(4, &[s(100.0, 4), None], &p, &h).desired, 8);
}

#[test]
fn no_metrics_means_no_change_and_no_recommendation() {
    let p = policy(1, 100, &[50.0]);
    let d = run(4, &[None], &p, &History::default());
    assert_eq!((d.desired, d.recommendation), (4, None));
    assert!(has(&d, |r| matches!(r, Reason::NoMetrics)));
    let zero_ready = Some(MetricSample {
        sum: 0.0,
        ready: 0,
        missing: 4,
        unready: 0,
        reporting: 0,
    });
    assert_eq!(run(4, &[zero_ready], &p, &History::default()).desired, 4);
}

#[test]
fn scale_down_stabilization_keeps_the_highest_recent_recommendation() {
    let p = policy(1, 100, &[100.0]); // balanced: 300 s down window
    let mut h = History::default();
    h.recommendations.push(Recommendation {
        at: t0() - secs(100),
        nodes: 10,
    });
    let d = run(10, &[s(50.0, 10)], &p, &h);
    assert_eq!(d.desired, 10);
    assert_eq!(
        d.recommendation,
        Some(5),
        "the raw recommendation is remembered"
    );
    assert!(has(&d, |r| matches!(
        r,
        Reason::Stabilized {
            direction: Direction::Down,
            window_seconds: 300,
            from: 5,
            to: 10
        }
    )));
    // Partly inside the window: the highest recent one (7) bounds the scale-down.
    h.recommendations = vec![
        Recommendation {
            at: t0() - secs(400),
            nodes: 10,
        },
        Recommendation {
            at: t0() - secs(200),
            nodes: 7,
        },
    ];
    assert_eq!(run(10, &[s(50.0, 10)], &p, &h).desired, 7);
    // Once the window has passed, the pool follows the metric.
    h.recommendations = vec![Recommendation {
        at: t0() - secs(301),
        nodes: 10,
    }];
    assert_eq!(run(10, &[s(50.0, 10)], &p, &h).desired, 5);
}

#[test]
fn scale_up_stabilization_keeps_the_lowest_recent_recommendation() {
    let mut p = policy(1, 100, &[100.0]);
    p.behavior = presets::conservative(); // 60 s up window
    let mut h = History::default();
    h.recommendations.push(Recommendation {
        at: t0() - secs(30),
        nodes: 4,
    });
    let d = run(4, &[s(200.0, 4)], &p, &h);
    assert_eq!(d.desired, 4);
    assert!(has(&d, |r| matches!(
        r,
        Reason::Stabilized {
            direction: Direction::Up,
            window_seconds: 60,
            ..
        }
    )));
    h.recommendations = vec![Recommendation {
        at: t0() - secs(61),
        nodes: 4,
    }];
    // conservative allows min(+50 %, +2) per minute: 6.
    let d = run(4, &[s(200.0, 4)], &p, &h);
    assert_eq!(d.desired, 6);
    assert!(has(&d, |r| matches!(
        r,
        Reason::RateLimited {
            direction: Direction::Up,
            from: 8,
            to: 6,
            ..
        }
    )));
}

fn rules(select: SelectPolicy, policies: &[(PolicyKind, u32, u64)]) -> ScalingRules {
    ScalingRules {
        stabilization_window: Duration::ZERO,
        select_policy: select,
        policies: policies
            .iter()
            .map(|&(kind, value, period)| ScalingPolicy {
                kind,
                value,
                period: Duration::from_secs(period),
            })
            .collect(),
    }
}

#[test]
fn select_policy_max_takes_the_policy_allowing_the_biggest_change() {
    let mut p = policy(1, 1000, &[10.0]);
    p.behavior.scale_up = rules(
        SelectPolicy::Max,
        &[(PolicyKind::Percent, 100, 15), (PolicyKind::Nodes, 4, 15)],
    );
    assert_eq!(run(10, &[s(50.0, 10)], &p, &History::default()).desired, 20);
    assert_eq!(run(2, &[s(50.0, 2)], &p, &History::default()).desired, 6);
}

#[test]
fn select_policy_min_takes_the_policy_allowing_the_smallest_change() {
    let mut p = policy(1, 1000, &[10.0]);
    p.behavior.scale_up = rules(
        SelectPolicy::Min,
        &[(PolicyKind::Percent, 100, 15), (PolicyKind::Nodes, 4, 15)],
    );
    assert_eq!(run(10, &[s(50.0, 10)], &p, &History::default()).desired, 14);
    p.behavior.scale_down = rules(
        SelectPolicy::Min,
        &[(PolicyKind::Percent, 50, 60), (PolicyKind::Nodes, 1, 60)],
    );
    assert_eq!(run(10, &[s(1.0, 10)], &p, &History::default()).desired, 9);
}

#[test]
fn percent_policies_round_up_on_the_way_up_and_down_on_the_way_down() {
    let mut p = policy(1, 1000, &[10.0]);
    p.behavior.scale_up = rules(SelectPolicy::Max, &[(PolicyKind::Percent, 50, 60)]);
    assert_eq!(run(3, &[s(100.0, 3)], &p, &History::default()).desired, 5); // ceil(4.5)
    p.behavior.scale_down = rules(SelectPolicy::Max, &[(PolicyKind::Percent, 50, 60)]);
    assert_eq!(run(5, &[s(0.1, 5)], &p, &History::default()).desired, 2); // floor(2.5)
}

#[test]
fn changes_within_the_period_count_against_the_policy() {
    let mut p = policy(1, 1000, &[10.0]);
    p.behavior.scale_up = rules(SelectPolicy::Max, &[(PolicyKind::Percent, 100, 60)]);
    let mut h = History::default();
    h.scale_up_events.push(ScaleEvent {
        at: t0() - secs(30),
        change: 10,
    });
    // 20 nodes now, 10 at the start of the period: at most 20 — no more room.
    let d = run(20, &[s(100.0, 20)], &p, &h);
    assert_eq!(d.desired, 20);
    // After the period the whole budget is back.
    h.scale_up_events = vec![ScaleEvent {
        at: t0() - secs(61),
        change: 10,
    }];
    assert_eq!(run(20, &[s(100.0, 20)], &p, &h).desired, 40);
    // Nodes policy: +2 per minute, one added 10 s ago leaves room for 1.
    p.behavior.scale_up = rules(SelectPolicy::Max, &[(PolicyKind::Nodes, 2, 60)]);
    h.scale_up_events = vec![ScaleEvent {
        at: t0() - secs(10),
        change: 1,
    }];
    assert_eq!(run(5, &[s(100.0, 5)], &p, &h).desired, 6);
}

#[test]
fn an_up_then_down_within_the_period_leaves_the_whole_scale_up_budget() {
    // Scale-up periods of 15 s, scale-down periods of 5 s (bench/reaction.py found
    // this): 2 → 6 at -10 s, 6 → 2 at -5 s. The period started at 2 nodes, so the
    // next step up may go to 6 again. The down event must outlive its own 5 s period:
    // the scale-up limit reads it too.
    let mut p = policy(1, 1000, &[30.0]);
    p.behavior.scale_up = rules(
        SelectPolicy::Max,
        &[(PolicyKind::Percent, 100, 15), (PolicyKind::Nodes, 4, 15)],
    );
    p.behavior.scale_down = rules(SelectPolicy::Max, &[(PolicyKind::Percent, 100, 5)]);
    let mut h = History::default();
    h.record_scale(2, 6, t0() - secs(10));
    h.record_scale(6, 2, t0() - secs(5) - chrono::Duration::milliseconds(1));
    h.prune(&p.behavior, t0());
    assert_eq!(h.scale_down_events.len(), 1, "kept for the scale-up period");
    let d = run(2, &[s(90.0, 2)], &p, &h);
    assert_eq!(d.desired, 6, "{:?}", d.reasons);
}

#[test]
fn a_disabled_direction_never_moves() {
    let mut p = policy(1, 100, &[10.0]);
    p.behavior.scale_down = rules(SelectPolicy::Disabled, &[]);
    let d = run(10, &[s(1.0, 10)], &p, &History::default());
    assert_eq!(d.desired, 10);
    assert!(has(&d, |r| matches!(
        r,
        Reason::ScalingDisabled {
            direction: Direction::Down
        }
    )));
    assert_eq!(
        run(10, &[s(20.0, 10)], &p, &History::default()).desired,
        20,
        "up still works"
    );
    p.behavior.scale_up = rules(SelectPolicy::Disabled, &[]);
    assert_eq!(run(10, &[s(20.0, 10)], &p, &History::default()).desired, 10);
}

#[test]
fn min_and_max_clamp_the_result() {
    let mut p = policy(2, 12, &[10.0]);
    p.behavior = presets::aggressive();
    let d = run(10, &[s(100.0, 10)], &p, &History::default());
    assert_eq!(d.desired, 12);
    assert!(has(&d, |r| matches!(
        r,
        Reason::ClampedToMax { max: 12, .. }
    )));
    let d = run(10, &[s(0.1, 10)], &p, &History::default());
    assert_eq!(d.desired, 5, "aggressive halves at most per minute");
    let mut p2 = policy(2, 12, &[10.0]);
    p2.behavior.scale_down = rules(SelectPolicy::Max, &[(PolicyKind::Percent, 100, 15)]);
    let d = run(10, &[s(0.1, 10)], &p2, &History::default());
    assert_eq!(d.desired, 2);
    assert!(has(&d, |r| matches!(
        r,
        Reason::ClampedToMin { min: 2, .. }
    )));
}

#[test]
fn a_pool_above_max_returns_at_its_scale_down_rate() {
    // After an emergency or when a schedule lowers max: conservative takes at most
    // 1 node or 10 % per 2 min, whichever is smaller.
    let mut p = policy(3, 10, &[10.0]);
    p.behavior = presets::conservative();
    let d = run(100, &[s(100.0, 100)], &p, &History::default());
    assert_eq!((d.desired, d.recommendation), (99, None));
    assert!(has(&d, |r| matches!(
        r,
        Reason::ClampedToMax { max: 10, .. }
    )));
    assert!(has(&d, |r| matches!(
        r,
        Reason::RateLimited {
            direction: Direction::Down,
            to: 99,
            ..
        }
    )));
    // With scale-down disabled, max is still a hard bound: straight there.
    p.behavior.scale_down.select_policy = SelectPolicy::Disabled;
    assert_eq!(run(100, &[None], &p, &History::default()).desired, 10);
}

#[test]
fn a_pool_outside_its_bounds_moves_straight_to_them() {
    let p = policy(3, 10, &[10.0]);
    let d = run(15, &[s(100.0, 15)], &p, &History::default());
    assert_eq!((d.desired, d.recommendation), (10, None));
    assert_eq!(run(1, &[None], &p, &History::default()).desired, 3);
}

#[test]
fn aggressive_may_add_three_hundred_percent_in_fifteen_seconds() {
    let mut p = policy(1, 1000, &[10.0]);
    p.behavior = presets::aggressive();
    assert_eq!(
        run(10, &[s(100.0, 10)], &p, &History::default()).desired,
        40
    );
    p.behavior = presets::balanced();
    assert_eq!(
        run(10, &[s(100.0, 10)], &p, &History::default()).desired,
        20
    );
}

#[test]
fn history_is_pruned_to_what_windows_and_periods_can_see() {
    let behavior = presets::balanced();
    let mut h = History {
        recommendations: vec![
            Recommendation {
                at: t0() - secs(301),
                nodes: 1,
            },
            Recommendation {
                at: t0() - secs(10),
                nodes: 2,
            },
        ],
        scale_up_events: vec![
            ScaleEvent {
                at: t0() - secs(16),
                change: 1,
            },
            ScaleEvent {
                at: t0() - secs(5),
                change: 1,
            },
        ],
        scale_down_events: vec![],
    };
    h.prune(&behavior, t0());
    assert_eq!(h.recommendations.len(), 1);
    assert_eq!(h.scale_up_events.len(), 1);
    h.record_scale(5, 3, t0());
    assert_eq!(
        h.scale_down_events,
        vec![ScaleEvent {
            at: t0(),
            change: 2
        }]
    );
}

fn arb_sample() -> impl Strategy<Value = Option<MetricSample>> {
    prop_oneof![
        1 => Just(None),
        6 => (0.0f64..400.0, 0u32..50, 0u32..5, 0u32..5).prop_map(|(avg, ready, missing, unready)| {
            Some(MetricSample { sum: avg * f64::from(ready), ready, missing, unready, reporting: ready })
        }),
    ]
}

fn arb_history() -> impl Strategy<Value = History> {
    (
        prop::collection::vec((0i64..900, 0u32..200), 0..6),
        prop::collection::vec((0i64..900, 1u32..50), 0..4),
        prop::collection::vec((0i64..900, 1u32..50), 0..4),
    )
        .prop_map(|(mut recs, mut ups, mut downs)| {
            // Oldest first, as History's record methods keep them.
            recs.sort_by_key(|(a, _)| -a);
            ups.sort_by_key(|(a, _)| -a);
            downs.sort_by_key(|(a, _)| -a);
            History {
                recommendations: recs
                    .into_iter()
                    .map(|(a, n)| Recommendation {
                        at: t0() - secs(a),
                        nodes: n,
                    })
                    .collect(),
                scale_up_events: ups
                    .into_iter()
                    .map(|(a, c)| ScaleEvent {
                        at: t0() - secs(a),
                        change: c,
                    })
                    .collect(),
                scale_down_events: downs
                    .into_iter()
                    .map(|(a, c)| ScaleEvent {
                        at: t0() - secs(a),
                        change: c,
                    })
                    .collect(),
            }
        })
}

fn arb_behavior() -> impl Strategy<Value = capstan_config::ScalingBehavior> {
    prop_oneof![
        Just(presets::aggressive()),
        Just(presets::balanced()),
        Just(presets::conservative())
    ]
}

proptest! {
    #[test]
    fn always_within_min_and_max_or_draining_towards_max(
        min in 0u32..20, span in 0u32..100, current in 0u32..150,
        metrics in prop::collection::vec(arb_sample(), 1..4),
        history in arb_history(), behavior in arb_behavior(),
    ) {
        let mut p = policy(min, min + span, &vec![50.0; metrics.len()]);
        p.behavior = behavior;
        let d = run(current, &metrics, &p, &history);
        if current > p.max {
            // Above max (a bound that moved) the pool only shrinks, at its scale-down rate.
            prop_assert!(d.desired >= p.max && d.desired <= current, "{d:?}");
        } else {
            prop_assert!(d.desired >= p.min && d.desired <= p.max, "{d:?}");
        }
    }

    #[test]
    fn no_change_inside_tolerance(
        min in 0u32..5, current in 5u32..50,
        ratios in prop::collection::vec(0.9f64..=1.1, 1..4),
        history in arb_history(), behavior in arb_behavior(),
    ) {
        let mut p = policy(min, 60, &vec![50.0; ratios.len()]);
        p.behavior = behavior;
        let metrics: Vec<_> = ratios.iter().map(|r| s(50.0 * r, current)).collect();
        let d = run(current, &metrics, &p, &history);
        prop_assert_eq!(d.desired, current);
    }

    #[test]
    fn same_inputs_same_decision(
        current in 0u32..150,
        metrics in prop::collection::vec(arb_sample(), 1..4),
        history in arb_history(), behavior in arb_behavior(),
    ) {
        let mut p = policy(1, 100, &vec![50.0; metrics.len()]);
        p.behavior = behavior;
        let a = run(current, &metrics, &p, &history);
        let b = run(current, &metrics, &p, &history.clone());
        prop_assert_eq!(a, b);
    }
}

#[test]
fn on_demand_share_follows_the_clouds_definition() {
    let spot = |base, pct| capstan_config::Spot {
        on_demand_base: base,
        on_demand_percent_above_base: pct,
        instance_types: vec![],
        fallback_after: Duration::from_secs(300),
        retry_after: Duration::from_secs(900),
    };
    assert_eq!(on_demand_share(10, None), 10);
    assert_eq!(on_demand_share(10, Some(&spot(2, 20))), 2 + 2); // 20 % of 8 = 1.6 → 2
    assert_eq!(on_demand_share(1, Some(&spot(2, 20))), 1);
    assert_eq!(on_demand_share(10, Some(&spot(0, 0))), 0);
    assert_eq!(on_demand_share(10, Some(&spot(0, 100))), 10);
}

#[test]
fn reasons_read_as_sentences() {
    let r = Reason::RateLimited {
        direction: Direction::Up,
        policy: "max(percent 100/15s)".into(),
        from: 9,
        to: 8,
    };
    assert_eq!(r.to_string(), "scale-up rate max(percent 100/15s): 9 → 8");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["kind"], "rate_limited");
}

#[test]
fn predictive_only_ever_raises_the_recommendation() {
    let p = policy(1, 50, &[50.0]);
    let h = History::default();
    let with = |predicted| {
        plan(
            &Observed {
                current: 10,
                metrics: &[s(50.0, 10)],
                history: &h,
                predicted,
                held: None,
            },
            &p,
            t0(),
        )
    };
    assert_eq!(with(None).desired, 10);
    let d = with(Some(14));
    assert_eq!(d.desired, 14);
    assert!(has(&d, |r| matches!(
        r,
        Reason::PredictiveRaised { from: 10, to: 14 }
    )));
    // A lower forecast does not scale in: the reactive answer stands.
    assert_eq!(with(Some(3)).desired, 10);
    // Rate policies still bound it: balanced allows +100 % or +4 per 15 s.
    assert_eq!(with(Some(45)).desired, 20);
}

/// With a forecast that looks past the bucket being measured, a scale-down keeps what
/// the forecast needs before a replacement could be ready, in place of the scale-down
/// stabilization window's look back.
#[test]
fn a_forecast_that_looks_ahead_holds_a_scale_down_in_place_of_the_window() {
    // Balanced: a 300 s scale-down window, at most 100 % down per 15 s.
    let p = policy(1, 50, &[50.0]);
    let mut h = History::default();
    h.record_recommendation(20, t0() - secs(60));
    let with = |held| {
        plan(
            &Observed {
                current: 20,
                // Half the target: the readings ask for 10.
                metrics: &[s(25.0, 20)],
                history: &h,
                predicted: None,
                held,
            },
            &p,
            t0(),
        )
    };
    // Without a forecast the window holds the 20 recommended a minute ago.
    let d = with(None);
    assert_eq!(d.desired, 20);
    assert!(has(&d, |r| matches!(r, Reason::Stabilized { .. })));
    // The forecast needs 14 before a replacement could be ready: 14 stay, not 20.
    let d = with(Some(14));
    assert_eq!(d.desired, 14);
    assert!(has(&d, |r| matches!(
        r,
        Reason::PredictiveHeld { from: 10, to: 14 }
    )));
    assert!(!has(&d, |r| matches!(r, Reason::Stabilized { .. })));
    assert_eq!(
        Reason::PredictiveHeld { from: 10, to: 14 }.to_string(),
        "held at 14 (not 10): the forecast needs them before a replacement would be ready"
    );
    // A forecast that needs fewer than the readings: the readings' 10.
    let d = with(Some(6));
    assert_eq!(d.desired, 10);
    assert!(!has(&d, |r| matches!(r, Reason::PredictiveHeld { .. })));
    // Needing more than the pool holds keeps it (the raise is `predicted`'s to make).
    assert_eq!(with(Some(30)).desired, 20);
}

#[test]
fn history_stays_in_time_order_when_the_clock_steps_back() {
    let mut h = History::default();
    h.record_recommendation(5, t0());
    h.record_recommendation(7, t0() - secs(30));
    h.record_scale(2, 4, t0());
    h.record_scale(4, 6, t0() - secs(10));
    assert!(h.recommendations.windows(2).all(|w| w[0].at <= w[1].at));
    assert!(h.scale_up_events.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(h.recommendations[0].nodes, 7);
}

/// The stabilization walk as it was written before the bisection: every record newest
/// first, each compared with both cutoffs, stopping at the first both have left behind.
fn window_bounds_by_walk(
    recommendations: &[Recommendation],
    (up_cutoff, down_cutoff): (DateTime<Utc>, DateTime<Utc>),
    mut up: u32,
    mut down: u32,
) -> (u32, u32) {
    let oldest_seen = up_cutoff.min(down_cutoff);
    for r in recommendations.iter().rev() {
        if r.at <= oldest_seen {
            break;
        }
        if r.at > up_cutoff {
            up = up.min(r.nodes);
        }
        if r.at > down_cutoff {
            down = down.max(r.nodes);
        }
    }
    (up, down)
}

/// The rules' text as `format!` and `join` wrote it before it was written by hand.
fn describe_rules_by_format(rules: &ScalingRules) -> String {
    let list = rules
        .policies
        .iter()
        .map(|p| {
            let kind = match p.kind {
                PolicyKind::Nodes => "nodes",
                PolicyKind::Percent => "percent",
            };
            format!("{kind} {}/{}s", p.value, p.period.as_secs())
        })
        .collect::<Vec<_>>()
        .join(", ");
    let select = match rules.select_policy {
        SelectPolicy::Max => "max",
        SelectPolicy::Min => "min",
        SelectPolicy::Disabled => "disabled",
    };
    format!("{select}({list})")
}

proptest! {
    /// Bisecting to each window's tail finds what walking every record found, on
    /// histories in time order (as `History` keeps them), with records sharing a time
    /// and cutoffs that fall on a record's time.
    #[test]
    fn window_bounds_are_those_the_walk_finds(
        mut ages in prop::collection::vec(0i64..40, 0..40),
        nodes in prop::collection::vec(0u32..60, 40),
        up_age in 0i64..45, down_age in 0i64..45, raw in 0u32..60, held in 0u32..60,
    ) {
        ages.sort_unstable_by(|a, b| b.cmp(a));
        let recs: Vec<Recommendation> = ages
            .iter()
            .zip(&nodes)
            .map(|(&a, &n)| Recommendation { at: t0() - secs(a), nodes: n })
            .collect();
        let cutoffs = (t0() - secs(up_age), t0() - secs(down_age));
        let down = raw.max(held);
        prop_assert_eq!(
            window_bounds(&recs, cutoffs, raw, down),
            window_bounds_by_walk(&recs, cutoffs, raw, down)
        );
    }

    /// The hand-written text of the rules is the one `format!` wrote.
    #[test]
    fn rules_read_as_format_wrote_them(
        select in prop_oneof![Just(SelectPolicy::Max), Just(SelectPolicy::Min), Just(SelectPolicy::Disabled)],
        policies in prop::collection::vec(
            (any::<bool>(), prop_oneof![0u32..1000, Just(u32::MAX)], prop_oneof![0u64..100_000, Just(u64::MAX)]),
            0..4,
        ),
    ) {
        let rules = ScalingRules {
            select_policy: select,
            policies: policies
                .into_iter()
                .map(|(nodes, value, period)| ScalingPolicy {
                    kind: if nodes { PolicyKind::Nodes } else { PolicyKind::Percent },
                    value,
                    period: Duration::from_secs(period),
                })
                .collect(),
            ..presets::balanced().scale_up
        };
        prop_assert_eq!(describe_rules(&rules), describe_rules_by_format(&rules));
    }
}

proptest! {
    /// A window's start is the moment chrono's subtraction gives, the same-day shortcut
    /// included: across midnight, at the end of a leap second, with a fraction to
    /// borrow, for whole minutes (which land a leap second on a leap second), and for
    /// periods of days.
    #[test]
    fn a_window_starts_where_chrono_says(
        day in 0i64..3000,
        secs in prop_oneof![0u32..86_400, 86_380u32..86_400, 0u32..20, (0u32..1440).prop_map(|m| m * 60 + 59)],
        frac in prop_oneof![0u32..1_000_000_000, Just(0u32), 1_000_000_000u32..2_000_000_000],
        back in prop_oneof![0u64..100, 0u64..200_000, (0u64..3000).prop_map(|m| m * 60), Just(u64::from(u32::MAX) + 7)],
        back_frac in prop_oneof![0u32..1_000_000_000, Just(0u32)],
    ) {
        // A fraction of a second or more is only a leap second at hh:mm:59.
        let Some(time) = chrono::NaiveTime::from_num_seconds_from_midnight_opt(secs, frac) else {
            return Ok(());
        };
        let now = (t0().date_naive() + chrono::Duration::days(day)).and_time(time).and_utc();
        let d = Duration::new(back, back_frac);
        prop_assert_eq!(since(now, d), now - chrono::Duration::from_std(d).unwrap());
    }
}

/// In a leap second, a window a whole minute long starts where chrono says: one second
/// later than the time of day alone would put it.
#[test]
fn a_window_that_starts_from_a_leap_second_starts_where_chrono_says() {
    let leap = chrono::NaiveTime::from_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
    let now = t0().date_naive().and_time(leap).and_utc();
    for back in [0, 1, 59, 60, 61, 3600, 86_400] {
        let d = Duration::new(back, 250_000_000);
        assert_eq!(
            since(now, d),
            now - chrono::Duration::from_std(d).unwrap(),
            "{back} s"
        );
    }
}

/// A history read back out of time order (a state file edited by hand, another
/// writer) is put in order as it is read: the scale-down window still sees the
/// recommendation of 20 made a minute ago, listed first.
#[test]
fn a_history_read_out_of_order_is_put_in_time_order() {
    let json = serde_json::json!({
        "recommendations": [
            {"at": t0() - secs(60), "nodes": 20},
            {"at": t0() - secs(600), "nodes": 3},
            {"at": t0() - secs(30), "nodes": 12},
            {"at": t0() - secs(600), "nodes": 4},
        ],
        "scale_up_events": [
            {"at": t0() - secs(5), "change": 2},
            {"at": t0() - secs(50), "change": 1},
        ],
        "scale_down_events": [],
    });
    let h: History = serde_json::from_value(json).unwrap();
    let order = |h: &History| {
        h.recommendations
            .iter()
            .map(|r| r.nodes)
            .collect::<Vec<_>>()
    };
    // Oldest first; the two of the same moment keep the order they were listed in.
    assert_eq!(order(&h), [3, 4, 20, 12]);
    assert!(h.scale_up_events.windows(2).all(|w| w[0].at <= w[1].at));
    // Half the target asks for 10; balanced's 300 s window holds the 20.
    let p = policy(1, 50, &[50.0]);
    assert_eq!(run(20, &[s(25.0, 20)], &p, &h).desired, 20);
    // What is written is read back the same.
    let again: History = serde_json::from_str(&serde_json::to_string(&h).unwrap()).unwrap();
    assert_eq!(again, h);
}
