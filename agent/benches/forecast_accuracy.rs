//! Forecast accuracy against the statsmodels baselines, with the protocol of the
//! brief's `forecast_baselines.py`: the same six NAB series on a regular grid, a
//! 30-minute horizon, a 14-day warm-up (half the points for shorter series), rolling
//! origins over every later point, MASE scaled by the warm-up's 30-minute naive MAE,
//! and MASE_xw outside NAB's labelled anomaly windows.
//!
//! `cargo bench -p capstan --features full --bench forecast_accuracy`

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

use capstan::brain::forecast::{ForecastConfig, Forecaster};
use capstan::tools::trace;

const SERIES: [(&str, &str, i64); 6] = [
    ("nyc_taxi", "realKnownCause/nyc_taxi.csv", 30),
    (
        "elb_request_count_8c0756",
        "realAWSCloudwatch/elb_request_count_8c0756.csv",
        5,
    ),
    (
        "ec2_cpu_utilization_5f5533",
        "realAWSCloudwatch/ec2_cpu_utilization_5f5533.csv",
        5,
    ),
    (
        "ec2_cpu_utilization_53ea38",
        "realAWSCloudwatch/ec2_cpu_utilization_53ea38.csv",
        5,
    ),
    (
        "rds_cpu_utilization_e47b3b",
        "realAWSCloudwatch/rds_cpu_utilization_e47b3b.csv",
        5,
    ),
    (
        "cpu_utilization_asg_misconfiguration",
        "realKnownCause/cpu_utilization_asg_misconfiguration.csv",
        5,
    ),
];

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata")
}

/// The best statsmodels method per series, from `forecast_baselines.md`.
fn baselines() -> BTreeMap<String, (String, f64, f64)> {
    let text = std::fs::read_to_string(data().join("forecast_baselines.md")).unwrap();
    let mut best: BTreeMap<String, (String, f64, f64)> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| series"))
    {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        // | series | step | h | n_test | method | MAE | MAPE | sMAPE | MASE | MASE_xw |
        let (Ok(mase), Ok(xw)) = (f[9].parse::<f64>(), f[10].parse::<f64>()) else {
            continue;
        };
        let entry = best
            .entry(f[1].to_owned())
            .or_insert((f[5].to_owned(), mase, xw));
        if mase < entry.1 {
            *entry = (f[5].to_owned(), mase, xw);
        }
    }
    best
}

fn main() {
    let windows: BTreeMap<String, Vec<[String; 2]>> = serde_json::from_str(
        &std::fs::read_to_string(data().join("nab/labels/combined_windows.json")).unwrap(),
    )
    .unwrap();
    let best = baselines();
    println!(
        "| series | h | n_test | capstan MASE | capstan MASE_xw | best statsmodels | its MASE | its MASE_xw | better |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    // A benchmark measures wall time; the agent's clock rules are for the agent.
    #[allow(clippy::disallowed_methods)]
    let started = std::time::Instant::now();
    let mut all_better = true;
    for (name, file, minutes) in SERIES {
        let points = trace::read_csv(&data().join("nab/data").join(file)).unwrap();
        let grid = trace::regularize(&points, minutes * 60);
        let y = &grid.values;
        let n = y.len();
        let spd = usize::try_from(24 * 60 / minutes).unwrap();
        let h = usize::try_from(30 / minutes).unwrap();
        let t0 = if n / spd >= 28 { 14 * spd } else { n / 2 };
        let parse = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap();
        let spans: Vec<(NaiveDateTime, NaiveDateTime)> = windows
            .get(file)
            .map(|w| w.iter().map(|[a, b]| (parse(a), parse(b))).collect())
            .unwrap_or_default();
        let in_window = |i: usize| {
            let t = grid.time(i);
            spans.iter().any(|(a, b)| t >= *a && t <= *b)
        };

        let mut f = Forecaster::new(ForecastConfig {
            steps_per_day: spd,
            horizon: h,
        });
        // forecasts[t] = the forecast of y[t + h] made after observing y[t].
        let forecasts: Vec<f64> = y.iter().map(|v| f.observe(*v).unwrap_or(*v)).collect();
        let scale = (h..t0).map(|i| (y[i] - y[i - h]).abs()).sum::<f64>() / (t0 - h) as f64;
        let (mut sum, mut count, mut sum_xw, mut count_xw) = (0.0, 0usize, 0.0, 0usize);
        for (origin, forecast) in forecasts.iter().enumerate().take(n - h).skip(t0) {
            let target = origin + h;
            let e = (y[target] - forecast).abs();
            sum += e;
            count += 1;
            if !in_window(target) {
                sum_xw += e;
                count_xw += 1;
            }
        }
        let mase = sum / count as f64 / scale;
        let mase_xw = sum_xw / count_xw as f64 / scale;
        let (method, their, their_xw) = best.get(name).cloned().unwrap_or_default();
        let better = mase < their;
        all_better &= better;
        println!(
            "| {name} | {h} | {count} | {mase:.3} | {mase_xw:.3} | {method} | {their:.3} | {their_xw:.3} | {} |",
            if better { "yes" } else { "no" }
        );
    }
    println!(
        "\n{} ({:.1} s)",
        if all_better {
            "Lower MASE than the best statsmodels method on every series."
        } else {
            "NOT better than statsmodels on every series."
        },
        started.elapsed().as_secs_f64()
    );
}
