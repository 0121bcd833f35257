//! One planning pass over 1,000 pools (goal: under 10 ms on the 2-core machine), and over
//! 10,000 to show how the cost grows: the HPA planner alone, and the whole fleet pass
//! (schedules, emergencies, spot, and the budget allocator under a binding ceiling), and
//! the whole pass over a fleet above its ceiling with `enforce = "trim"` (spot fallbacks
//! dropped, basic pools moved to spot, the lowest tiers scaled down).
//!
//! `cargo bench -p capstan --features full --bench planner`; other sizes with
//! `PLANNER_SIZES=1000,2000,4000,10000,20000,40000`.

use std::hint::black_box;

use chrono::{TimeZone, Utc};
use criterion::{Criterion, criterion_group, criterion_main};

use capstan::brain::planner::{Recommendation, ScaleEvent};
use capstan::brain::{History, MetricSample, Observed, Policy, Reason, TargetSpec, plan};
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
                // Oldest first, as History's record methods keep them.
                recommendations: (0..30)
                    .rev()
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

/// The sizes measured: the goal's 1,000 pools, and 10,000 to show how cost grows; or
/// those in `PLANNER_SIZES` (e.g. `PLANNER_SIZES=1000,4000,10000,40000`) for a sweep.
fn sizes() -> Vec<u32> {
    std::env::var("PLANNER_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .filter(|v: &Vec<u32>| !v.is_empty())
        .unwrap_or_else(|| vec![1000, 10_000])
}

fn planning_pass(c: &mut Criterion) {
    for n in sizes() {
        planning_pass_of(c, n);
    }
}

fn planning_pass_of(c: &mut Criterion, n: u32) {
    let pools = fleet(n);
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    c.bench_function(&format!("plan {n} pools"), |b| {
        b.iter(|| {
            let mut total = 0u64;
            for p in &pools {
                let observed = Observed {
                    current: p.current,
                    metrics: &p.metrics,
                    history: &p.history,
                    predicted: None,
                    held: None,
                };
                total += u64::from(plan(black_box(&observed), &p.policy, now).desired);
            }
            black_box(total)
        });
    });
}

/// What the bench fleet's budget does.
#[derive(Clone, Copy, PartialEq)]
enum Budget {
    /// A ceiling that binds on the scale-ups.
    Binding,
    /// A ceiling below what the fleet costs now, with `enforce = "trim"`; a quarter of
    /// the pools plan with a spot fallback (all on-demand).
    Trimming,
}

/// A fleet of `n` pools in TOML: three tiers, prices, spot splits, an always-active
/// schedule on every fifth pool, emergencies on every seventh, and a ceiling that binds
/// or trims.
fn fleet_config(n: u32, budget: Budget) -> capstan_config::ValidatedConfig {
    let mut text = match budget {
        Budget::Binding => format!(
            "[budget]\nmax_hourly_cost = {}.0\nemergency_allowance = 500.0\n",
            40 * n
        ),
        Budget::Trimming => format!(
            "[budget]\nmax_hourly_cost = {}.0\nenforce = \"trim\"\n",
            26 * n
        ),
    };
    for i in 0..n {
        let tier = ["enterprise", "premium", "basic"][(i % 3) as usize];
        let behavior = ["aggressive", "balanced", "conservative"][(i % 3) as usize];
        text += &format!(
            "[[pool]]\nname = \"p{i}\"\ntier = \"{tier}\"\nprovider = {{ type = \"dry-run\" }}\nmin = 1\nmax = 200\nemergency_max = 500\nbehavior = \"{behavior}\"\nprice = {{ on_demand = {}.5, spot = 0.4 }}\nspot = {{ on_demand_base = 2, on_demand_percent_above_base = 25 }}\ntargets = [{{ metric = \"cpu.utilization\", value = 60 }}, {{ metric = \"workload.requests_per_second\", value = 5000 }}]\n",
            1 + i % 4
        );
        if i % 5 == 0 {
            text += "schedule = [{ cron = \"0 * * * *\", timezone = \"Europe/Stockholm\", duration = \"2h\", min = 3 }]\n";
        }
        if i % 7 == 0 {
            text += "emergency = { threshold = 1.5, intervals = 2 }\n";
        }
    }
    capstan_config::from_str("bench.toml".as_ref(), &text, std::iter::empty()).unwrap()
}

fn fleet_pass(c: &mut Criterion) {
    for budget in [Budget::Binding, Budget::Trimming] {
        for n in sizes() {
            fleet_pass_of(c, n, budget);
        }
    }
}

fn fleet_pass_of(c: &mut Criterion, n: u32, budget_kind: Budget) {
    use capstan::brain::budget::BudgetPolicy;
    use capstan::brain::fleet::{PoolState, plan_fleet};
    use capstan::brain::spot::Fallback;

    let cfg = fleet_config(n, budget_kind);
    let pools = fleet(n);
    let policies: Vec<Policy> = cfg.pools.iter().map(Policy::from).collect();
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
    let states: Vec<PoolState> = (0..n)
        .map(|i| {
            let mut state = PoolState::default();
            if budget_kind == Budget::Trimming && i % 4 == 1 {
                state.spot.fallback = Some(Fallback {
                    until: now + chrono::Duration::hours(1),
                    keep_spot: 0,
                    cause: "spot refused: InsufficientInstanceCapacity".into(),
                });
            }
            state
        })
        .collect();
    let budget = BudgetPolicy::from(&cfg.budget);
    let name = match budget_kind {
        Budget::Binding => format!("plan a fleet of {n} pools under a binding budget"),
        Budget::Trimming => format!("plan a fleet of {n} pools trimmed to its budget"),
    };
    c.bench_function(&name, |b| {
        b.iter_batched(
            || states.clone(),
            |mut states| {
                let mut inputs = fleet_inputs(&cfg, &policies, &pools, &mut states);
                black_box(plan_fleet(&mut inputs, &budget, now))
            },
            criterion::BatchSize::SmallInput,
        );
    });
    // The ceiling must bind (or trim), or this measures the easy case.
    let mut probe = states.clone();
    let plan = plan_fleet(
        &mut fleet_inputs(&cfg, &policies, &pools, &mut probe),
        &budget,
        now,
    );
    let count = |kind: fn(&Reason) -> bool| {
        plan.pools
            .iter()
            .filter(|p| p.reasons.iter().any(kind))
            .count()
    };
    let capped = count(|r| matches!(r, Reason::CappedByBudget { .. }));
    let (dropped, moved, trimmed) = (
        count(|r| matches!(r, Reason::SpotFallbackOverBudget { .. })),
        count(|r| matches!(r, Reason::MovedToSpot { .. })),
        count(|r| matches!(r, Reason::TrimmedByBudget { .. })),
    );
    match budget_kind {
        Budget::Binding => assert!(capped > 0, "the bench fleet's budget does not bind"),
        Budget::Trimming => assert!(
            dropped > 0 && moved > 0 && trimmed > 0,
            "the bench fleet's budget does not trim ({dropped} fallbacks dropped, {moved} moved to spot, {trimmed} trimmed)"
        ),
    }
    eprintln!(
        "fleet bench: {capped} of {n} pools capped by budget, {dropped} fallbacks dropped, \
         {moved} moved to spot, {trimmed} trimmed; fleet {:.2}/h of {:.2}/h",
        plan.fleet_hourly_cost,
        budget.ceiling.unwrap_or_default()
    );
}

fn fleet_inputs<'a>(
    cfg: &'a capstan_config::ValidatedConfig,
    policies: &'a [Policy],
    pools: &'a [Pool],
    states: &'a mut [capstan::brain::fleet::PoolState],
) -> Vec<capstan::brain::fleet::PoolInput<'a>> {
    use capstan::brain::fleet::{PoolInput, View, prices};
    cfg.pools
        .iter()
        .zip(policies)
        .zip(states.iter_mut())
        .zip(pools)
        .map(|(((config, policy), state), p)| PoolInput {
            config,
            policy,
            prices: prices(config.price.as_ref(), [], None),
            state,
            view: Some(View {
                current: p.current,
                metrics: &p.metrics,
                history: &p.history,
                running_spot: 0,
                asked_spot: None,
                outlook: None,
                surge: None,
                interrupted: 0,
                faulty_gpus: 0,
            }),
            last_known: p.current,
        })
        .collect()
}

criterion_group!(benches, planning_pass, fleet_pass);
criterion_main!(benches);
