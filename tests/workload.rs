//! Workload metrics against real servers: `[[scrape]]` of Debian's
//! `prometheus-node-exporter`, and a PromQL target against a real Prometheus
//! (Debian `prometheus`) scraping an endpoint whose value the test controls. Both
//! servers run on 127.0.0.1 with free ports and are killed when the test ends;
//! scripts/test-deps.sh installs them.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::*;

/// A child process killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(bin: &str, args: &[String], log: &Path) -> Server {
    let log = std::fs::File::create(log).unwrap();
    Server(
        Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {bin}: {e} (scripts/test-deps.sh installs it)")
            }),
    )
}

/// Starts `bin` listening on a port free on 127.0.0.1 (`args` for that port) and waits
/// until `ready` answers 200 on it: (the server, its port). Another process can take a
/// port found free before the server binds it; the server then exits, and it is
/// started again on another port, up to 5 times.
fn serve(bin: &str, args: impl Fn(u16) -> Vec<String>, ready: &str, log: &Path) -> (Server, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut server = start(bin, &args(port), log);
        let url = format!("http://127.0.0.1:{port}{ready}");
        for _ in 0..300 {
            if request(reqwest::Method::GET, &url, None, Vec::new()).0 == 200 {
                return (server, port);
            }
            if server.0.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(STEP);
        }
        if server.0.try_wait().unwrap().is_none() {
            panic!("{url} did not answer (see {})", log.display());
        }
    }
    panic!(
        "{bin} exited 5 times on a port found free (see {})",
        log.display()
    );
}

#[test]
fn collect_scrapes_a_real_node_exporter_into_workload_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (_exporter, port) = serve(
        "prometheus-node-exporter",
        |port| {
            vec![
                format!("--web.listen-address=127.0.0.1:{port}"),
                "--collector.disable-defaults".into(),
                "--collector.loadavg".into(),
                "--collector.cpu".into(),
            ]
        },
        "/metrics",
        &dir.path().join("node-exporter.log"),
    );
    let config = dir.path().join("capstan.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
pool = "web"

[[pool]]
name = "web"
provider = {{ type = "dry-run", initial = 1 }}
min = 1
max = 4
targets = [{{ metric = "workload.load1", value = 2 }}]

[[scrape]]
url = "http://127.0.0.1:{port}/metrics"
series = "node_load1"
name = "load1"

[[scrape]]
url = "http://127.0.0.1:{port}/metrics"
series = "node_cpu_seconds_total"
labels = {{ mode = "idle" }}
aggregate = "max"
name = "idle_seconds"

[[scrape]]
url = "http://127.0.0.1:{port}/metrics"
series = "no_such_series"
"#
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["collect", "--once", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let load1 = report["workload"]["load1"].as_f64().unwrap();
    assert!(load1.is_finite() && load1 >= 0.0, "{report}");
    assert!(
        report["workload"]["idle_seconds"].as_f64().unwrap() > 0.0,
        "{report}"
    );
    assert!(
        report["workload"].get("no_such_series").is_none(),
        "{report}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("workload.no_such_series left out")
            && stderr.contains("no sample of no_such_series"),
        "{stderr}"
    );
    // The human form lists the same metrics.
    let out = Command::new(BIN)
        .args(["collect", "--once", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("workload.load1 "), "{text}");
}

#[test]
fn a_pool_with_a_promql_target_scales_when_the_value_moves() {
    let dir = tempfile::tempdir().unwrap();
    // The total demand, spread over the pool's nodes as a load balancer would: the
    // endpoint serves the per-node average, from the size the dry-run pool keeps in its
    // state file.
    let total = Arc::new(AtomicU64::new(200.0_f64.to_bits()));
    let state_file = dir.path().join("web.json");
    let target_port = demand_endpoint({
        let (total, state_file) = (total.clone(), state_file.clone());
        move || {
            let nodes = std::fs::read_to_string(&state_file)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
                .and_then(|v| v["capacity"].as_f64())
                .unwrap_or(2.0);
            f64::from_bits(total.load(Ordering::SeqCst)) / nodes.max(1.0)
        }
    });
    let prom_config = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: demand\n    static_configs:\n      - targets: [\"127.0.0.1:{target_port}\"]\n"
        ),
    )
    .unwrap();
    let (_prometheus, prom_port) = serve(
        "prometheus",
        |port| {
            vec![
                format!("--config.file={}", prom_config.display()),
                // A database of its own for each try.
                format!(
                    "--storage.tsdb.path={}",
                    dir.path().join(format!("tsdb-{port}")).display()
                ),
                format!("--web.listen-address=127.0.0.1:{port}"),
            ]
        },
        "/-/ready",
        &dir.path().join("prometheus.log"),
    );
    let prom = format!("http://127.0.0.1:{prom_port}");
    let config = dir.path().join("capstan.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[pool]]
name = "web"
provider = {{ type = "dry-run", initial = 2, state_file = {state:?} }}
min = 1
max = 10
behavior = "aggressive"
targets = [{{ promql = "test_demand", prometheus_url = "{prom}", timeout = "2s", value = 100 }}]

[[pool]]
name = "ghost"
provider = {{ type = "dry-run", initial = 2 }}
min = 1
max = 10
targets = [{{ promql = "no_such_series", prometheus_url = "{prom}", timeout = "2s", value = 100 }}]
"#,
            state = state_file.display().to_string()
        ),
    )
    .unwrap();
    let agent = Agent::start(&config, &dir.path().join("state"));
    // `None` until the agent has published its pools (its server starts first).
    let pool = |s: &serde_json::Value, name: &str| {
        s["pools"]
            .as_array()?
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
    };
    // At the target (200 over 2 nodes: 100 per node): no change, and the value is read.
    agent.wait_for("a decision on the PromQL pool", |a| {
        let s = a.status();
        let p = pool(&s, "web")?;
        (p["last_decision"]["reasons"]
            .to_string()
            .contains("promql:test_demand"))
        .then_some(())
    });
    assert_eq!(pool(&agent.status(), "web").unwrap()["desired"], 2);
    // Demand triples: 300 per node on 2 nodes; the pool grows to 6, where each node
    // serves 100 again, and stays there.
    total.store(600.0_f64.to_bits(), Ordering::SeqCst);
    agent.wait_for("the pool to scale to 6", |a| {
        (pool(&a.status(), "web")?["current"] == 6).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let s = agent.status();
    let web = pool(&s, "web").unwrap();
    assert_eq!(
        (&web["current"], &web["desired"]),
        (&6.into(), &6.into()),
        "{s}"
    );
    // A query with no data says so, and holds the pool.
    let ghost = pool(&s, "ghost").unwrap();
    let reasons = ghost["last_decision"]["reasons"].to_string();
    assert!(
        reasons.contains("query_failed") && reasons.contains("no data"),
        "{ghost}"
    );
    assert_eq!(ghost["current"], 2, "{ghost}");
}
