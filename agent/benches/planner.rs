//! One planning pass over 1,000 pools (goal: under 10 ms on the 2-core machine).
//!
//! `cargo bench -p capstan --bench planner`

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};

use capstan::brain::planner::{Recommendation, ScaleEvent};
use capstan::brain::{History, MetricSample, Observed, Policy, TargetSpec, plan};
use capstan_config::presets;

struct Pool {
    policy: Policy,
    current: u32,
    metrics: Vec<Option<MetricSample>>,
    history: History,
}

fn fleet(n: u32) -> Vec<Pool> {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    (0..n)
        .map(|i| {
            let behavior = match i % 3 {
                0 => presets::aggressive(),
                1 => presets::balanced(),
                _ => presets::conservative(),
            };
            let current = 2 + i % 50;
            let load = 20.0 + f64::from(i % 17) * 10.0;
            let history = History {
                recommendations: (0..30)
                    .map(|k| Recommendation {
                        at: now - chrono::Duration::seconds(10 * k),
                        nodes: current + (k as u32 % 5),
                    })
                    .collect(),
                scale_up_events: vec![ScaleEvent {
                    at: now - chrono::Duration::seconds(20),
                    change: 2,
                }],
                scale_down_events: vec![ScaleEvent {
                    at: now - chrono::Duration::seconds(200),
                    change: 1,
                }],
            };
            Pool {
                policy: Policy {
                    min: 1,
                    max: 500,
                    tolerance: 0.1,
                    targets: vec![
                        TargetSpec {
                            metric: "cpu.utilization".into(),
                            value: 60.0,
                            missing_fallback: 60.0,
                        },
                        TargetSpec {
                            metric: "workload.requests_per_second".into(),
                            value: 5000.0,
                            missing_fallback: 5000.0,
                        },
                    ],
                    behavior,
                },
                current,
                metrics: vec![
                    Some(MetricSample {
                        sum: load * f64::from(current),
                        ready: current,
                        missing: i % 2,
                        unready: i % 3,
                        reporting: current,
                    }),
                    if i % 7 == 0 {
                        None
                    } else {
                        Some(MetricSample {
                            sum: 4000.0 * f64::from(current),
                            ready: current,
                            missing: 0,
                            unready: 0,
                            reporting: current,
                        })
                    },
                ],
                history,
            }
        })
        .collect()
}

fn planning_pass(c: &mut Criterion) {
    let pools = fleet(1000);
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    c.bench_function("plan 1000 pools", |b| {
        b.iter(|| {
            let mut total = 0u64;
            for p in &pools {
                let observed = Observed {
                    current: p.current,
                    metrics: &p.metrics,
                    history: &p.history,
                };
                total += u64::from(plan(black_box(&observed), &p.policy, now).desired);
            }
            black_box(total)
        });
    });
}

criterion_group!(benches, planning_pass);
criterion_main!(benches);
