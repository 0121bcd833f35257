//! `capstan tune` speed: 14 days of per-minute demand, the whole grid (7 target
//! values × 3 behavior presets × reactive and 3 forecast horizons = 84 backtests) on
//! all cores. Goal: under a minute on the 2-core machine.
//!
//! `cargo bench -p capstan --features full --bench tune_speed`

use chrono::{TimeZone, Utc};

use capstan::brain::budget::BudgetPolicy;
use capstan::tools::tune::{self, Tuning};

const MINUTES: usize = 14 * 1440;

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
        predictive = { mode = "forecast-only", horizon = "30m", lead_time = "5m" }
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
    // A daily wave with a weekly swing and a short surge every four hours.
    let demand: Vec<f64> = (0..MINUTES)
        .map(|m| {
            let day = (m % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
            let week = (m % 10_080) as f64 / 10_080.0 * std::f64::consts::TAU;
            let surge = if m % 240 < 20 { 800.0 } else { 0.0 };
            3000.0 + 2000.0 * day.sin() + 500.0 * week.sin() + surge
        })
        .collect();
    let tuning = Tuning {
        demand_per_node: 100.0,
        delay_minutes: 3,
        drain_minutes: 0,
        slo_minutes: None,
        saturation: None,
        threads: None,
        warm_up_minutes: 0,
        auto: false,
    };
    // A benchmark measures wall time; the agent's clock rules are for the agent.
    #[allow(clippy::disallowed_methods)]
    let t0 = std::time::Instant::now();
    let report = tune::tune(&pool, &budget, &demand, start, &tuning);
    let secs = t0.elapsed().as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "tune_speed: {} candidates over {} days of per-minute demand in {secs:.2} s on {threads} thread(s) (goal < 60 s); best: {:?}",
        report.candidates.len(),
        MINUTES / 1440,
        report.best.map(|b| b.policy)
    );
}
