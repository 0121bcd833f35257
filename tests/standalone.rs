//! End-to-end tests of the built `capstan` binary on one machine: standalone leader,
//! dry-run pools, real host telemetry. Every agent listens on 127.0.0.1 with an
//! ephemeral port, keeps its state in a temp dir, and is stopped by the test.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

#[test]
fn standalone_agent_serves_metrics_journals_reloads_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(&config, example()).unwrap();
    let mut agent = Agent::start(&config, &dir.path().join("state"));

    // The pool gauges appear on /metrics.
    let text = agent.wait_for("pool gauges on /metrics", |a| {
        let (code, text) = a.get("/metrics");
        (code == 200 && text.contains("capstan_pool_desired_nodes{pool=\"local\"}")).then_some(text)
    });
    assert!(
        metric(&text, "capstan_pool_current_nodes{pool=\"local\"}").is_some(),
        "{text}"
    );
    assert!(
        metric(&text, "capstan_host_cpu_percent").is_some(),
        "{text}"
    );
    // The example has no prices and no ceiling: cost 0, no ceiling series.
    assert_eq!(
        metric(&text, "capstan_budget_hourly_cost"),
        Some(0.0),
        "{text}"
    );
    assert!(!text.contains("capstan_budget_ceiling "), "{text}");
    assert_eq!(
        metric(&text, "capstan_pool_flapping{pool=\"local\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(agent.get("/healthz").0, 200);
    assert_eq!(agent.get("/readyz").0, 200);

    // /v1/status has the documented shape.
    let status = agent.status();
    assert_eq!(status["role"], "leader");
    assert_eq!(status["leader_id"], status["node_id"]);
    assert_eq!(status["pools"][0]["name"], "local");
    assert!(status["pools"][0]["current"].is_u64());
    assert!(status["pools"][0]["desired"].is_u64());
    assert_eq!(status["pools"][0]["tier"], "premium");
    assert_eq!(status["pools"][0]["flapping"], false);
    assert_eq!(status["pools"][0]["emergency"], false);
    assert!(status["pools"][0]["on_demand"].is_u64());
    assert_eq!(status["fleet_hourly_cost"], 0.0);
    assert!(status["budget_ceiling"].is_null());
    assert!(status["pools"][0]["last_decision"]["at"].is_string());
    assert!(
        !status["pools"][0]["last_decision"]["reasons"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // `capstan status` renders it as a table.
    let out = Command::new(BIN)
        .args(["status", "--url", &agent.base])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("role leader") && table.contains("local") && table.contains("dry-run"),
        "{table}"
    );

    // Journal lines appear, one JSON object per decision, with inputs and reasons.
    let lines = agent.wait_for("two journal lines", |a| {
        Some(a.journal_lines()).filter(|l| l.len() >= 2)
    });
    assert_eq!(lines[0]["pool"], "local");
    assert_eq!(lines[0]["inputs"][0]["metric"], "cpu.utilization");
    assert!(
        lines[0]["reasons"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );

    // A broken file on SIGHUP is rejected, counted, and the old config stays in force.
    let broken = "[[pool]]\nname = \"local\"\nprovider = { type = \"dry-run\" }\nmin = 5\nmax = 2\ntargets = []\n";
    std::fs::write(&config, broken).unwrap();
    agent.signal("HUP");
    agent.wait_for("a counted reload failure", |a| {
        metric(
            &a.get("/metrics").1,
            "capstan_config_reloads_total{result=\"failure\"}",
        )
        .filter(|v| *v >= 1.0)
    });
    let passes =
        |a: &Agent| metric(&a.get("/metrics").1, "capstan_planning_passes_total").unwrap_or(0.0);
    let before = passes(&agent);
    let journaled = agent.journal_lines().len();
    agent.wait_for("passes to continue after the failed reload", |a| {
        (passes(a) >= before + 2.0).then_some(())
    });
    assert!(
        agent.journal_lines().len() > journaled,
        "journal continues on the old config"
    );
    let status = agent.status();
    assert_eq!(status["pools"].as_array().unwrap().len(), 1);
    assert_eq!(status["pools"][0]["max"], 10, "old config still in force");
    assert!(
        agent
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("min (5) is above max (2)")),
        "the rejection names the problem"
    );

    // A valid file on SIGHUP takes effect.
    let extra = "\n[[pool]]\nname = \"second\"\nprovider = { type = \"dry-run\", initial = 1 }\nmin = 1\nmax = 3\ntargets = [{ metric = \"memory.utilization\", value = 80 }]\n";
    std::fs::write(&config, example() + extra).unwrap();
    agent.signal("HUP");
    agent.wait_for("the second pool after a good reload", |a| {
        let s = a.status();
        (s["pools"].as_array().unwrap().len() == 2 && s["pools"][1]["desired"].is_u64())
            .then_some(())
    });
    let text = agent.get("/metrics").1;
    assert!(
        metric(&text, "capstan_config_reloads_total{result=\"success\"}").is_some_and(|v| v >= 1.0),
        "{text}"
    );
    assert!(
        text.contains("capstan_pool_desired_nodes{pool=\"second\"}"),
        "{text}"
    );
    let second = text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("pool=\"second\""))
        .count();
    assert!(
        second >= 10,
        "the second pool exports its series: {second}\n{text}"
    );

    // Dropping the pool again removes every one of its series.
    std::fs::write(&config, example()).unwrap();
    agent.signal("HUP");
    let text = agent.wait_for("the second pool's series to go", |a| {
        let (_, text) = a.get("/metrics");
        (!text.contains("pool=\"second\"") && a.status()["pools"].as_array().unwrap().len() == 1)
            .then_some(text)
    });
    assert!(
        text.contains("capstan_pool_desired_nodes{pool=\"local\"}"),
        "{text}"
    );

    // SIGTERM stops cleanly with exit 0.
    agent.signal("TERM");
    let status = agent.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "log:\n{}",
        agent.log.lock().unwrap().join("\n")
    );
}

/// A target this host always exceeds: memory in use is far above 0.01 %.
const HOT_POOL: &str = r#"
[agent]
pool = "hot"

[[pool]]
name = "hot"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 6
behavior = "aggressive"
targets = [{ metric = "memory.utilization", value = 0.01 }]
"#;

#[test]
fn a_pool_over_its_target_is_scaled_up_within_max_and_the_call_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hot.toml");
    std::fs::write(&config, HOT_POOL).unwrap();
    let mut agent = Agent::start(&config, &dir.path().join("state"));
    let scaled = agent.wait_for("a journaled scale-up", |a| {
        a.journal_lines()
            .into_iter()
            .find(|l| l["action"] == "scaled")
    });
    assert_eq!(scaled["current"], 2);
    // Aggressive allows +300 % at once, but max is 6.
    assert_eq!(scaled["desired"], 6);
    assert!(
        scaled["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "clamped_to_max"),
        "{scaled}"
    );
    let status = agent.wait_for("the pool at 6", |a| {
        let s = a.status();
        (s["pools"][0]["current"] == 6).then_some(s)
    });
    assert_eq!(status["pools"][0]["desired"], 6);
    assert!(
        agent
            .journal_lines()
            .iter()
            .all(|l| l["desired"].as_u64().unwrap() <= 6)
    );
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().code(), Some(0));
}

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
    std::fs::write(&config, HOT_POOL).unwrap();
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
fn under_systemd_it_says_ready_pings_the_watchdog_and_says_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(&config, example()).unwrap();
    let socket = dir.path().join("notify");
    let listener = std::os::unix::net::UnixDatagram::bind(&socket).unwrap();
    listener.set_read_timeout(Some(PATIENCE)).unwrap();
    // WatchdogSec=2s: pings every second from the main loop.
    let mut agent = Agent::start_with(
        &config,
        &dir.path().join("state"),
        &[
            ("NOTIFY_SOCKET", socket.to_str().unwrap()),
            ("WATCHDOG_USEC", "2000000"),
        ],
    );
    let mut messages = Vec::new();
    let mut buf = [0u8; 512];
    while messages
        .iter()
        .filter(|m: &&String| *m == "WATCHDOG=1")
        .count()
        < 2
    {
        let len = listener
            .recv(&mut buf)
            .expect("a notification within the patience");
        messages.push(String::from_utf8_lossy(&buf[..len]).into_owned());
        assert!(messages.len() < 50, "{messages:?}");
    }
    assert!(
        messages[0].starts_with("READY=1\nSTATUS=serving on http://127.0.0.1:"),
        "{messages:?}"
    );
    agent.signal("TERM");
    loop {
        let len = listener.recv(&mut buf).expect("STOPPING=1 before exit");
        if buf[..len].starts_with(b"STOPPING=1") {
            break;
        }
    }
    assert!(agent.wait_exit().success());
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
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("forecast"));

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

#[test]
fn the_leader_takes_node_reports_and_refuses_bad_ones_with_the_failing_field() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "t0ken-for-tests\n").unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(&config, example()).unwrap();
    let token_path = token.display().to_string();
    let agent = Agent::start_with(
        &config,
        &dir.path().join("state"),
        &[("CAPSTAN_CLUSTER__TOKEN_FILE", token_path.as_str())],
    );
    agent.wait_for("the first pass", |a| {
        (a.get("/readyz").0 == 200).then_some(())
    });
    let report = |node: &str, pool: &str, cpu: &str| {
        format!(
            r#"{{"version":1,"node_id":"{node}","pool":"{pool}","at":"2026-01-01T00:00:00Z","host":{{"cpu_percent":{cpu},"cpu_per_core_percent":[],"cores":1,"load":{{"one":0.0,"five":0.0,"fifteen":0.0}},"memory":{{"total_bytes":10,"used_bytes":1,"available_bytes":9}},"swap":{{"total_bytes":0,"used_bytes":0}},"disks":[],"network":[]}}}}"#
        )
        .into_bytes()
    };
    let ok = Some("t0ken-for-tests");
    // (what, token, body, status, reason, field)
    type Case<'a> = (
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        u16,
        &'a str,
        Option<&'a str>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "wrong token",
            Some("nope"),
            report("n1", "local", "50"),
            401,
            "unauthorized",
            None,
        ),
        (
            "no token",
            None,
            report("n1", "local", "50"),
            401,
            "unauthorized",
            None,
        ),
        (
            "malformed",
            ok,
            b"{\"version\":1,".to_vec(),
            400,
            "malformed",
            None,
        ),
        (
            "NaN",
            ok,
            report("n1", "local", "NaN"),
            400,
            "malformed",
            Some("host.cpu_percent"),
        ),
        (
            "out of range",
            ok,
            report("n1", "local", "250"),
            422,
            "invalid",
            Some("host.cpu_percent"),
        ),
        (
            "unknown pool",
            ok,
            report("n1", "nowhere", "50"),
            422,
            "unknown_pool",
            Some("pool"),
        ),
        (
            "oversized",
            ok,
            vec![b' '; 70 * 1024],
            413,
            "too_large",
            None,
        ),
    ];
    for (what, token, body, status, reason, field) in &cases {
        let (code, text) = agent.post("/v1/reports", *token, body.clone());
        assert_eq!(code, *status, "{what}: {text}");
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        assert_eq!(v["reason"], *reason, "{what}: {text}");
        assert_eq!(v["field"].as_str(), *field, "{what}: {text}");
    }
    // Nothing refused reached the leader's table.
    let status = agent.status();
    let reporting = status["pools"][0]["nodes"]["reporting"].clone();
    assert!(
        !reporting.as_array().unwrap().iter().any(|n| n == "n1"),
        "{status}"
    );
    let (code, text) = agent.post("/v1/reports", ok, report("n1", "local", "50"));
    assert_eq!(code, 202, "{text}");
    let status = agent.wait_for("n1 among the reporting nodes", |a| {
        let s = a.status();
        s["pools"][0]["nodes"]["reporting"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "n1")
            .then_some(s)
    });
    assert_eq!(status["reports_received"], 1, "{status}");
    for (_, _, _, _, reason, _) in &cases {
        assert!(
            status["reports_rejected"][reason].as_u64().unwrap() >= 1,
            "{reason}: {status}"
        );
    }
    let (_, metrics) = agent.get("/metrics");
    assert_eq!(
        metric(
            &metrics,
            "capstan_reports_rejected_total{reason=\"unauthorized\"}"
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "capstan_reports_received_total"),
        Some(1.0),
        "{metrics}"
    );
    // `capstan status` prints the counts and the pool's reporting nodes.
    let out = Command::new(BIN)
        .args(["status", "--url", &agent.base])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("reports accepted 1  rejected 7"), "{text}");
    assert!(text.contains("REPORTING"), "{text}");
}

#[cfg(feature = "tls")]
#[test]
fn with_cluster_tls_reports_need_a_client_certificate_from_the_cluster_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ours = pki(dir.path(), "cluster");
    let rogue = pki(dir.path(), "rogue");
    let token = dir.path().join("token");
    std::fs::write(&token, "tls-token").unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[cluster]
token_file = {token:?}

[cluster.tls]
listen = "127.0.0.1:0"
ca_file = {ca:?}
cert_file = {cert:?}
key_file = {key:?}

[[pool]]
name = "local"
provider = {{ type = "dry-run", initial = 2 }}
min = 1
max = 4
targets = [{{ metric = "cpu.utilization", value = 60 }}]
"#,
            token = token.display().to_string(),
            ca = ours.ca.display().to_string(),
            cert = ours.cert.display().to_string(),
            key = ours.key.display().to_string(),
        ),
    )
    .unwrap();
    let agent = Agent::start(&config, &dir.path().join("state"));
    // The reports listener's address is in the advertised URL.
    let url = agent.wait_for("the advertised https URL", |a| {
        a.log.lock().unwrap().iter().find_map(|l| {
            l.split("advertise_url=")
                .nth(1)
                .map(|u| u.split_whitespace().next().unwrap_or("").to_owned())
        })
    });
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let body = r#"{"version":1,"node_id":"n1","pool":"local","at":"2026-01-01T00:00:00Z"}"#;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let post = |client: reqwest::Client| {
        rt.block_on(async {
            client
                .post(format!("{url}/v1/reports"))
                .bearer_auth("tls-token")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    assert_eq!(post(tls_client(&ours.ca, Some(&ours))).unwrap(), 202);
    // No client certificate, or one from another CA: the handshake fails.
    assert!(post(tls_client(&ours.ca, None)).is_err());
    assert!(post(tls_client(&ours.ca, Some(&rogue))).is_err());
    // The plain listener takes no reports when [cluster.tls] is set; it still serves
    // metrics and status.
    let (code, _) = agent.post("/v1/reports", Some("tls-token"), body.as_bytes().to_vec());
    assert_eq!(code, 404);
    assert_eq!(agent.get("/metrics").0, 200);
    let status = agent.wait_for("n1 reporting", |a| {
        let s = a.status();
        (s["reports_received"] == 1).then_some(s)
    });
    assert_eq!(
        status["leader_url"].as_str(),
        Some(url.as_str()),
        "{status}"
    );
}

/// Three dry-run pools in one group; this node reports for `web-a`. The group's
/// target is always exceeded, and its scale-up is limited to 3 nodes a second (a pass
/// at the tests' 1 s interval).
const GROUP_FLEET: &str = r#"
[agent]
pool = "web-a"

[[pool]]
name = "web-a"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 3
price = { on_demand = 0.1 }

[[pool]]
name = "web-b"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 4
price = { on_demand = 0.2 }

[[pool]]
name = "web-c"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 10
price = { on_demand = 0.3 }

[[group]]
name = "web"
strategy = "cheapest"
members = ["web-c", "web-b", "web-a"]
behavior = { scale_up = { policies = [{ type = "nodes", value = 3, period = "1s" }] } }
targets = [{ metric = "memory.utilization", value = 0.01 }]
"#;

#[test]
fn plan_shows_a_groups_size_and_its_allocation_cheapest_first() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("group.toml");
    std::fs::write(&config, GROUP_FLEET).unwrap();
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
    let bad = GROUP_FLEET.replace(
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
    let v: serde_json::Value = serde_json::from_slice(&run(&[
        "--trace",
        trace_arg,
        "--demand-per-node",
        "100",
        "--json",
    ]))
    .unwrap();
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

#[test]
fn a_running_leader_scales_a_group_journals_its_allocation_and_exports_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("group.toml");
    std::fs::write(&config, GROUP_FLEET).unwrap();
    let mut agent = Agent::start(&config, &dir.path().join("state"));
    // The first pass: the group goes 6 → 9 and web-a (cheapest) is scaled to its max.
    let line = agent.wait_for("the group's journal line", |a| {
        a.journal_lines()
            .into_iter()
            .find(|l| l["group"] == "web" && l.get("pool").is_none())
    });
    assert_eq!(
        (line["current"].as_u64(), line["desired"].as_u64()),
        (Some(6), Some(9)),
        "{line}"
    );
    assert_eq!(line["strategy"], "cheapest");
    assert_eq!(line["inputs"][0]["metric"], "memory.utilization");
    let members: Vec<&str> = line["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["pool"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["web-c", "web-b", "web-a"]);
    let scaled = agent.wait_for("web-a scaled", |a| {
        a.journal_lines()
            .into_iter()
            .find(|l| l["pool"] == "web-a" && l["action"] == "scaled")
    });
    assert_eq!(
        (scaled["current"].as_u64(), scaled["desired"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(scaled["group"], "web");
    assert_eq!(scaled["reasons"][0]["kind"], "group_share");
    // Pass after pass the group grows 3 nodes at a time up to its members' 17.
    let metrics = agent.wait_for("the group at its members' max", |a| {
        let (_, text) = a.get("/metrics");
        (metric(&text, "capstan_group_current_nodes{group=\"web\"}") == Some(17.0)).then_some(text)
    });
    assert_eq!(
        metric(&metrics, "capstan_group_desired_nodes{group=\"web\"}"),
        Some(17.0)
    );
    assert_eq!(
        metric(&metrics, "capstan_pool_current_nodes{pool=\"web-c\"}"),
        Some(10.0)
    );
    agent.signal("TERM");
    assert_eq!(agent.wait_exit().code(), Some(0));
}
