//! End-to-end tests of the one-shot commands of the built `capstan` binary:
//! `validate`, `plan`, `forecast`, `detect`, `simulate`, `tune`, `rightsizing`. Each
//! reads its own temp files and never acts on a pool.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

#[test]
fn validate_lists_every_problem_and_exits_1_or_prints_a_summary() {
    let bad = repo().join("config/tests/fixtures/invalid-money.toml");
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.lines().count() >= 7, "{err}");
    assert!(
        err.contains("invalid-money.toml:15:61: pool[0].spot.on_demand_percent_above_base"),
        "{err}"
    );

    let good = repo().join("examples/standalone.toml");
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let summary = String::from_utf8_lossy(&out.stdout);
    assert_eq!(summary.lines().count(), 1, "{summary}");
    assert!(
        summary.contains("valid") && summary.contains("local"),
        "{summary}"
    );
}

#[test]
fn plan_prints_decisions_as_json_and_never_acts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hot.toml");
    std::fs::write(&config, configs::HOT_POOL).unwrap();
    let out = Command::new(BIN)
        .args(["plan", "--json", "--config"])
        .arg(&config)
        .env("CAPSTAN_AGENT__STATE_DIR", dir.path().join("state"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let pool = &v["pools"][0];
    assert_eq!(pool["name"], "hot");
    assert_eq!(pool["current"], 2);
    assert_eq!(pool["desired"], 6);
    assert!(
        pool["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "driven_by")
    );
    assert!(
        !dir.path().join("state").exists(),
        "plan writes no state and journals nothing"
    );

    let out = Command::new(BIN)
        .args(["plan", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("pool hot (dry-run): 2 → 6 nodes (scale up); premium tier"),
        "{text}"
    );
}

/// `hot` always wants its max (6); a budget of 3.00/h leaves room for 5.
const HOT_FLEET: &str = r#"
[agent]
pool = "hot"

[budget]
max_hourly_cost = 3.0

[[pool]]
name = "hot"
tier = "enterprise"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 6
behavior = "aggressive"
price = { on_demand = 1.0, spot = 0.25 }
spot = { on_demand_base = 1, on_demand_percent_above_base = 0 }
targets = [{ metric = "memory.utilization", value = 0.01 }]

[[pool]]
name = "quiet"
tier = "basic"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 6
price = { on_demand = 0.5 }
targets = [{ metric = "cpu.utilization", value = 50 }]
"#;

#[test]
fn plan_json_shows_the_spot_mix_costs_and_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fleet.toml");
    std::fs::write(&config, HOT_FLEET).unwrap();
    let out = Command::new(BIN)
        .args(["plan", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["budget_ceiling"], 3.0);
    assert_eq!(v["fleet_hourly_cost"], 3.0);
    let hot = &v["pools"][0];
    assert_eq!(
        (
            &hot["desired"],
            &hot["on_demand"],
            &hot["spot"],
            &hot["hourly_cost"]
        ),
        (
            &serde_json::json!(5),
            &serde_json::json!(1),
            &serde_json::json!(4),
            &serde_json::json!(2.0)
        ),
        "{hot}"
    );
    assert!(
        hot["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "capped_by_budget" && r["from"] == 6 && r["to"] == 5),
        "{hot}"
    );
    let quiet = &v["pools"][1];
    assert_eq!(
        (&quiet["desired"], &quiet["hourly_cost"]),
        (&serde_json::json!(2), &serde_json::json!(1.0))
    );
}

#[test]
fn plan_shows_a_groups_size_and_its_allocation_cheapest_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("group.toml");
    std::fs::write(&config, configs::GROUP_FLEET).unwrap();
    let out = Command::new(BIN)
        .args(["plan", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = &v["groups"][0];
    assert_eq!(g["group"], "web");
    assert_eq!(
        (g["current"].as_u64(), g["desired"].as_u64()),
        (Some(6), Some(9)),
        "{g}"
    );
    let members: Vec<(String, u64)> = g["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["pool"].as_str().unwrap().to_owned(),
                m["granted"].as_u64().unwrap(),
            )
        })
        .collect();
    // Listed c, b, a; filled a (cheapest) to its max, then b, then c.
    assert_eq!(
        members,
        vec![
            ("web-c".into(), 2),
            ("web-b".into(), 4),
            ("web-a".into(), 3)
        ]
    );
    let a = v["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "web-a")
        .unwrap();
    assert_eq!(a["desired"], 3);
    assert_eq!(a["reasons"][0]["kind"], "group_share", "{a}");

    let out = Command::new(BIN)
        .args(["plan", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("group web (cheapest): 6 → 9 nodes: web-c 2, web-b 4 [max], web-a 3 [max]"),
        "{text}"
    );
    assert!(
        text.contains("group web (cheapest): 3 of its 9 node(s) here, 0.1000/node-h, held by max"),
        "{text}"
    );

    // Validation names a member with targets of its own.
    let bad = configs::GROUP_FLEET.replace(
        "price = { on_demand = 0.3 }",
        "price = { on_demand = 0.3 }\ntargets = [{ metric = \"cpu.utilization\", value = 50 }]",
    );
    std::fs::write(&config, bad).unwrap();
    let out = Command::new(BIN)
        .args(["validate", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "pool[2].targets (pool \"web-c\"): pool \"web-c\" is a member of group \"web\""
        ),
        "{err}"
    );
}

fn nab(file: &str) -> PathBuf {
    repo().join("testdata/nab/data").join(file)
}

#[test]
fn forecast_and_detect_print_one_line_per_row() {
    let csv = nab("realKnownCause/nyc_taxi.csv");
    let rows = std::fs::read_to_string(&csv).unwrap().lines().count() - 1;
    let out = Command::new(BIN)
        .args(["forecast", "--horizon", "30m", "--csv"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "timestamp,value,forecast");
    assert_eq!(lines.len() - 1, rows);
    assert_eq!(
        lines[1], "2014-07-01 00:00:00,10844,",
        "warm-up rows have no forecast"
    );
    // After the two-day warm-up every row has a forecast within reach of its value.
    let (mut err, mut n) = (0.0, 0.0);
    for l in &lines[1 + 96..] {
        let f: Vec<&str> = l.split(',').collect();
        let (v, p): (f64, f64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        err += (v - p).abs() / v.abs().max(1.0);
        n += 1.0;
    }
    assert!(err / n < 0.2, "mean relative error {}", err / n);

    let out = Command::new(BIN)
        .args(["detect", "--csv"])
        .arg(&csv)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "timestamp,value,anomaly_score,label");
    assert_eq!(lines.len() - 1, rows);
    let mut onsets = 0;
    for l in &lines[1..] {
        let f: Vec<&str> = l.split(',').collect();
        let score: f64 = f[2].parse().unwrap();
        assert!((0.0..=1.0).contains(&score), "{l}");
        assert_eq!(f[3] == "1", score >= 0.5, "{l}");
        onsets += usize::from(f[3] == "1");
    }
    assert!(
        onsets > 0 && onsets < rows / 100,
        "{onsets} onsets in {rows} rows"
    );

    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "timestamp,value\n2014-07-01 00:00:00,oops\n").unwrap();
    let out = Command::new(BIN)
        .args(["detect", "--csv"])
        .arg(bad.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":2: `oops` is not a number"), "{err}");
}

#[test]
fn simulate_compares_the_policy_with_reactive_only_and_plots_it() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("taxi.svg");
    let out = Command::new(BIN)
        .args(["simulate", "--config"])
        .arg(repo().join("examples/taxi.toml"))
        .args(["--pool", "taxi", "--trace"])
        .arg(nab("realKnownCause/nyc_taxi.csv"))
        .args([
            "--demand-per-node",
            "1000",
            "--provisioning-delay",
            "3m",
            "--compare",
            "--json",
            "--svg",
        ])
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for side in ["policy", "reactive"] {
        for field in [
            "node_hours",
            "cost",
            "underprovisioned_minutes",
            "underprovisioned_demand",
            "actions",
            "mase",
        ] {
            assert!(v[side].get(field).is_some(), "{side}.{field} in {v}");
        }
    }
    let (p, r) = (&v["policy"], &v["reactive"]);
    assert!(
        p["underprovisioned_minutes"].as_u64() < r["underprovisioned_minutes"].as_u64(),
        "forecast-and-scale is under-provisioned less than reactive: {v}"
    );
    assert!(p["mase"].as_f64().unwrap() < 1.0, "{v}");
    // The honest comparison: the cheapest reactive-only policy with no more saturated
    // minutes than the policy, on the same saturation line.
    let same = &v["same_slo"];
    let slo = same["slo_minutes"].as_u64().unwrap();
    assert_eq!(same["saturation"], 100.0, "{same}");
    assert_eq!(
        same["policy"]["metrics"]["underprovisioned_minutes"].as_u64(),
        Some(slo),
        "{same}"
    );
    let best = &same["best_reactive"];
    assert_eq!(best["policy"]["predictive_mode"], "off", "{same}");
    assert!(best["meets_slo"].as_bool().unwrap(), "{same}");
    assert!(
        best["metrics"]["underprovisioned_minutes"]
            .as_u64()
            .unwrap()
            <= slo
    );
    assert!(best["metrics"]["node_hours"].as_f64().unwrap() > 0.0);
    // The trace is 215 days: scored after the default 3-day warm-up.
    assert_eq!(v["warm_up_minutes"], 3 * 1440, "{v}");
    // The plot: a week (the default window) of demand, both policies' capacity and
    // the forecast, titled with the trace's file name, not its path; days ticked.
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("forecast"));
    assert!(
        plot.contains(">nyc_taxi.csv: pool taxi, 3 min provisioning delay, 7.0 of 215.0 days<")
    );
    assert!(!plot.contains("realKnownCause/"), "no path in the plot");
    assert!(plot.contains("ready capacity: policy (forecast-and-scale, target 60)"));
    assert!(plot.contains("ready capacity: best reactive-only at the same SLO (target "));
    let weekdays = ["Mon ", "Tue ", "Wed ", "Thu ", "Fri ", "Sat ", "Sun "];
    let ticks = weekdays
        .iter()
        .filter(|d| plot.contains(&format!(">{d}")))
        .count();
    assert!(ticks >= 6, "day ticks: {ticks}");

    let out = Command::new(BIN)
        .args(["simulate", "--config"])
        .arg(repo().join("examples/taxi.toml"))
        .args(["--pool", "nope", "--trace"])
        .arg(nab("realKnownCause/nyc_taxi.csv"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--pool nope: no such pool"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const TUNE_POOL: &str = r#"
[agent]
state_dir = "STATE"

[[pool]]
name = "web"
provider = { type = "dry-run" }
min = 1
max = 80
tolerance = 0.0
price = { on_demand = 0.5 }
targets = [{ metric = "cpu.utilization", value = 60 }]
"#;

#[test]
fn tune_finds_the_cheapest_policy_within_the_slo_from_a_trace_or_the_stored_history() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tune.toml");
    let state = dir.path().join("state");
    std::fs::write(&config, TUNE_POOL.replace("STATE", state.to_str().unwrap())).unwrap();
    // Two days: 2,000 with a surge to 3,200 for half an hour every two hours.
    let start = chrono::NaiveDate::from_ymd_opt(2026, 11, 2)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let demand = |m: i64| {
        if m % 120 >= 60 && m % 120 < 90 {
            3200.0
        } else {
            2000.0
        }
    };
    let mut csv = String::from("timestamp,value\n");
    for m in 0..2 * 1440 {
        let at = start + chrono::Duration::minutes(m);
        csv.push_str(&format!(
            "{},{}\n",
            at.format("%Y-%m-%d %H:%M:%S"),
            demand(m)
        ));
    }
    let trace = dir.path().join("trace.csv");
    std::fs::write(&trace, csv).unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(["tune", "--config"])
            .arg(&config)
            .args([
                "--pool",
                "web",
                "--provisioning-delay",
                "5m",
                "--slo-minutes",
                "30",
            ])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let trace_arg = trace.to_str().unwrap();
    let frontier = dir.path().join("frontier.svg");
    let v: serde_json::Value = serde_json::from_slice(&run(&[
        "--trace",
        trace_arg,
        "--demand-per-node",
        "100",
        "--json",
        "--svg",
        frontier.to_str().unwrap(),
    ]))
    .unwrap();
    // A two-day trace is scored whole; the frontier has a point per candidate (and
    // the chosen and current policies marked).
    assert_eq!(v["warm_up_minutes"], 0);
    let plot = std::fs::read_to_string(&frontier).unwrap();
    assert_eq!(
        plot.matches("<circle").count(),
        84 + 1,
        "points and the ring"
    );
    assert!(plot.contains("chosen: target 60,"), "{plot}");
    assert!(plot.contains("current: target 60,"));
    assert!(plot.contains(">SLO 30 min<"));
    // At a target T a surge of 1.6× runs nodes at 1.6 T until new ones arrive:
    // saturated (above 100 %) for T > 62.5; 60 is the highest target that rides it.
    assert_eq!(v["best"]["policy"]["target_value"], 60.0, "{}", v["best"]);
    assert_eq!(v["best"]["meets_slo"], true);
    assert_eq!(v["candidates"].as_array().unwrap().len(), 84);
    assert!(v["snippet"].as_str().unwrap().contains("value = 60 }]"));
    let text = String::from_utf8_lossy(&run(&["--trace", trace_arg, "--demand-per-node", "100"]))
        .into_owned();
    assert!(text.contains("current  target     60"), "{text}");
    assert!(
        text.contains("# capstan tune: in the [[pool]] table named \"web\", set:"),
        "{text}"
    );

    // `--auto`: one auto candidate per target value and behavior, at that pair's best
    // forecasting horizon. Two days hold no backtest (auto needs four), so each scales
    // as its reactive-only twin and ranks after it.
    let a: serde_json::Value = serde_json::from_slice(&run(&[
        "--trace",
        trace_arg,
        "--demand-per-node",
        "100",
        "--auto",
        "--json",
    ]))
    .unwrap();
    let all = a["candidates"].as_array().unwrap();
    assert_eq!(all.len(), 84 + 21);
    let autos: Vec<&serde_json::Value> = all
        .iter()
        .filter(|c| c["policy"]["predictive_mode"] == "auto")
        .collect();
    assert_eq!(autos.len(), 21);
    for auto in &autos {
        assert!(auto["policy"]["horizon_minutes"].is_u64(), "{auto}");
        let twin = all
            .iter()
            .position(|c| {
                c["policy"]["predictive_mode"] == "off"
                    && c["policy"]["target_value"] == auto["policy"]["target_value"]
                    && c["policy"]["behavior"] == auto["policy"]["behavior"]
            })
            .unwrap();
        // The same figures (auto forecasts, so it has a MASE too).
        for k in ["node_hours", "cost", "underprovisioned_minutes", "actions"] {
            assert_eq!(all[twin]["metrics"][k], auto["metrics"][k], "{k}");
        }
        let at = all.iter().position(|c| c == *auto).unwrap();
        assert!(twin < at, "the reactive twin ranks first on a tie");
    }
    assert_eq!(a["best"], v["best"]);

    // The same demand from the pool's stored history: per minute, the target's
    // readings summed over the pool (so one node at the target serves 60).
    std::fs::create_dir_all(state.join("history")).unwrap();
    let mut history = String::new();
    let m0 = start.and_utc().timestamp() / 60;
    for m in 0..2 * 1440 {
        history.push_str(&format!("{},{}\n", m0 + m, demand(m) * 0.6));
    }
    std::fs::write(state.join("history/web.csv"), history).unwrap();
    let h: serde_json::Value = serde_json::from_slice(&run(&["--history", "--json"])).unwrap();
    assert_eq!(h["minutes"], v["minutes"]);
    assert_eq!(h["best"]["policy"], v["best"]["policy"], "{}", h["best"]);

    // A warm-up as long as the trace leaves nothing to score: refused, saying so.
    let out = Command::new(BIN)
        .args(["tune", "--config"])
        .arg(&config)
        .args(["--pool", "web", "--trace", trace_arg, "--warm-up", "2d"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--warm-up 2days leaves nothing to score of the 2.0-day trace"),
        "{err}"
    );

    // Neither a trace nor --history: a usage error.
    let out = Command::new(BIN)
        .args(["tune", "--config"])
        .arg(&config)
        .args(["--pool", "web"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const RIGHTSIZE_POOL: &str = r#"
[agent]
state_dir = "STATE"

[[pool]]
name = "web"
provider = { type = "dry-run", initial = 4, instance_type = "m5.2xlarge" }
min = 4
max = 20
targets = [{ metric = "cpu.utilization", value = 60 }]
[pool.price]
on_demand = 0.384
by_type."m5.large" = { on_demand = 0.096, vcpus = 2, memory_gib = 8 }
by_type."m5.xlarge" = { on_demand = 0.192, vcpus = 4, memory_gib = 16 }
by_type."m5.2xlarge" = { on_demand = 0.384, vcpus = 8, memory_gib = 32 }
"#;

#[test]
fn rightsizing_reports_exact_percentiles_and_the_cheaper_size_of_the_family() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rs.toml");
    let state = dir.path().join("state");
    std::fs::write(
        &config,
        RIGHTSIZE_POOL.replace("STATE", state.to_str().unwrap()),
    )
    .unwrap();
    std::fs::create_dir_all(state.join("usage")).unwrap();
    // The last 100 minutes at 4 nodes: CPU cycling 1..=20 % for 95 minutes, then
    // 96..=100 %; memory 30 %; and one minute older than --days, which must not count.
    #[allow(clippy::disallowed_methods)]
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 60;
    let mut usage = format!("{},4,100,100,,\n", now - 3 * 1440);
    for i in 0..100 {
        let cpu = if i < 95 { i % 20 + 1 } else { i + 1 };
        usage.push_str(&format!("{},4,{cpu},30,,\n", now - 100 + i));
    }
    std::fs::write(state.join("usage/web.csv"), usage).unwrap();
    let out = Command::new(BIN)
        .args(["rightsizing", "--days", "2", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let r = &v[0];
    assert_eq!(r["minutes"], 100);
    assert_eq!(
        r["cpu"],
        serde_json::json!({"p50": 10.0, "p95": 20.0, "max": 100.0})
    );
    assert_eq!(
        r["memory"],
        serde_json::json!({"p50": 30.0, "p95": 30.0, "max": 30.0})
    );
    assert_eq!(r["gpu"], serde_json::Value::Null);
    assert_eq!(r["instance_type"], "m5.2xlarge");
    // CPU demand at p95: 4 × 8 × 20 % = 6.4 vCPU, held at 60 %; memory 38.4 GiB at
    // 80 %: m5.large needs 6 nodes (0.576/h), the others the pool's min of 4
    // (m5.2xlarge: 1.536/h).
    let rec = &r["recommendation"];
    assert_eq!(rec["change"], "smaller", "{rec}");
    assert_eq!(rec["instance_type"], "m5.large");
    assert_eq!(
        (rec["current_nodes"].as_u64(), rec["nodes"].as_u64()),
        (Some(4), Some(6))
    );
    let saving = rec["monthly_saving"].as_f64().unwrap();
    assert!((saving - (1.536 - 0.576) * 730.0).abs() < 1e-6, "{saving}");
    assert!(
        r["evidence"].as_array().unwrap().iter().any(|e| e
            .as_str()
            .unwrap()
            .starts_with("CPU: p95 20.0 % of 8 vCPU per node")),
        "{r}"
    );
    let out = Command::new(BIN)
        .args(["rightsizing", "--days", "2", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("recommend m5.large × 6 (smaller than m5.2xlarge): 700.80 a month less"),
        "{text}"
    );
    let out = Command::new(BIN)
        .args(["rightsizing", "--days", "99", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--days 99: allowed 1 to 35"));
}
