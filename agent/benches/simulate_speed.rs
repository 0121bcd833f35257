//! `capstan simulate` speed: a year of per-minute demand for 100 pools (goal: under
//! 10 s on the 2-core machine), every pool in forecast-and-scale, on all cores.
//!
//! `cargo bench -p capstan --features full --bench simulate_speed`

use chrono::{TimeZone, Utc};

use capstan::brain::budget::BudgetPolicy;
use capstan::tools::simulate::{self, Settings};

const POOLS: usize = 100;
const MINUTES: usize = 365 * 1440;

fn main() {
    let text = r#"
        [[pool]]
        name = "bench"
        provider = { type = "dry-run" }
        min = 2
        max = 100
        behavior = "balanced"
        price = { on_demand = 0.1 }
        targets = [{ metric = "cpu.utilization", value = 60 }]
        predictive = { mode = "forecast-and-scale", horizon = "30m", lead_time = "5m" }
    "#;
    let pool = capstan_config::from_str("bench.toml".as_ref(), text, std::iter::empty())
        .unwrap()
        .pools
        .remove(0);
    let budget = BudgetPolicy {
        ceiling: None,
        emergency_allowance: 0.0,
        enforce: capstan_config::BudgetEnforcement::Report,
    };
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The traces are made before the clock starts: the figure is the simulation's
    // (`capstan simulate` reads its trace from a file before it runs, too).
    let traces: Vec<Vec<f64>> = (0..POOLS)
        .map(|p| {
            let phase = p as f64 * 0.1;
            (0..MINUTES)
                .map(|m| {
                    let day = (m % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
                    let week = (m % 10_080) as f64 / 10_080.0 * std::f64::consts::TAU;
                    3000.0 + 2000.0 * (day + phase).sin() + 500.0 * week.sin()
                })
                .collect()
        })
        .collect();
    // A benchmark measures wall time; the agent's clock rules are for the agent.
    #[allow(clippy::disallowed_methods)]
    let t0 = std::time::Instant::now();
    let node_hours: f64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|k| {
                let pool = &pool;
                let budget = &budget;
                let traces = &traces;
                s.spawn(move || {
                    let mut total = 0.0;
                    for demand in traces.iter().skip(k).step_by(threads) {
                        let settings = Settings {
                            demand_per_node: 100.0,
                            delay_minutes: 3,
                            drain_minutes: 0,
                            keep_series: false,
                            hot_per_node: None,
                            warm_up_minutes: 0,
                        };
                        total += simulate::run(pool, budget, demand, start, &settings)
                            .0
                            .node_hours;
                    }
                    total
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "simulated {POOLS} pools × {MINUTES} minutes (a year each) on {threads} threads in {secs:.2} s \
         ({:.0} pool-minutes/s; {node_hours:.0} node-hours in all)",
        (POOLS * MINUTES) as f64 / secs
    );
}
