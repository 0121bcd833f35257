//! End-to-end tests of `capstan run` on one machine: a standalone leader, dry-run
//! pools, real host telemetry; reloads, signals, systemd's protocol, groups. Every
//! agent listens on 127.0.0.1 with an ephemeral port, keeps its state in a temp dir,
//! and is stopped by the test.

mod support;

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

#[test]
fn a_pool_over_its_target_is_scaled_up_within_max_and_the_call_is_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hot.toml");
    std::fs::write(&config, configs::HOT_POOL).unwrap();
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

#[test]
fn a_running_leader_scales_a_group_journals_its_allocation_and_exports_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("group.toml");
    std::fs::write(&config, configs::GROUP_FLEET).unwrap();
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
