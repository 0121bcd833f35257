//! End-to-end tests of the leader's `POST /v1/reports`: what it takes, what it
//! refuses (with the failing field and a counted reason), and mutual TLS. Every agent
//! listens on 127.0.0.1 with an ephemeral port and is stopped by the test.

mod support;

use std::process::Command;

use support::*;

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
    // Per-node tokens (the default `cluster.auth`): n1's own.
    let n1 = node_token("t0ken-for-tests", "n1");
    let ok = Some(n1.as_str());
    let workload = |node: &str, value: &str| {
        format!(r#"{{"version":1,"node_id":"{node}","pool":"local","at":"2026-01-01T00:00:00Z","workload":{{"queue":{value}}}}}"#).into_bytes()
    };
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
            "the cluster secret itself",
            Some("t0ken-for-tests"),
            report("n1", "local", "50"),
            401,
            "unauthorized",
            None,
        ),
        (
            "n1's token, reporting as n2",
            ok,
            report("n2", "local", "50"),
            401,
            "unauthorized",
            None,
        ),
        (
            "a negative workload value",
            ok,
            workload("n1", "-3"),
            422,
            "invalid",
            Some("workload[\"queue\"]"),
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
    // n1, naming itself, reporting as n2: its token is proven n1's, so it is refused
    // as another node (403), as often as it tries; n2's own reports are still taken.
    for _ in 0..5 {
        let (code, text) = agent.report_as("n1", &n1, report("n2", "local", "50"));
        assert_eq!(code, 403, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (v["reason"].as_str(), v["field"].as_str()),
            (Some("wrong_node"), Some("node_id")),
            "{text}"
        );
    }
    // Claiming n2 with n1's token is refused before the body is read.
    let (code, _) = agent.report_as("n2", &n1, report("n2", "local", "50"));
    assert_eq!(code, 401);
    // Nothing refused reached the leader's table.
    let status = agent.status();
    let reporting = status["pools"][0]["nodes"]["reporting"].clone();
    assert!(
        !reporting
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "n1" || n == "n2"),
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
        Some(5.0),
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "capstan_reports_rejected_total{reason=\"wrong_node\"}"
        ),
        Some(5.0),
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
    assert!(text.contains("reports accepted 1  rejected 16"), "{text}");
    assert!(text.contains("REPORTING"), "{text}");
    // n2 itself: the five reports under its name spent none of its rate limit.
    let n2 = node_token("t0ken-for-tests", "n2");
    for _ in 0..3 {
        let (code, text) = agent.report_as("n2", &n2, report("n2", "local", "50"));
        assert_eq!(code, 202, "{text}");
    }
}

/// A standalone leader taking reports over mutual TLS only, with `tls-token` as the
/// cluster secret and `[cluster.tls]`'s files at `ca`, `cert`, `key`; and the
/// https URL of its reports listener.
#[cfg(feature = "tls")]
fn tls_leader(
    dir: &std::path::Path,
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (Agent, String) {
    let token = dir.join("token");
    std::fs::write(&token, "tls-token").unwrap();
    let config = dir.join("capstan.toml");
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
            ca = ca.display().to_string(),
            cert = cert.display().to_string(),
            key = key.display().to_string(),
        ),
    )
    .unwrap();
    let agent = Agent::start(&config, &dir.join("state"));
    // The reports listener's address is in the advertised URL.
    let url = agent.wait_for("the advertised https URL", |a| {
        a.log.lock().unwrap().iter().find_map(|l| {
            l.split("advertise_url=")
                .nth(1)
                .map(|u| u.split_whitespace().next().unwrap_or("").to_owned())
        })
    });
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    (agent, url)
}

#[cfg(feature = "tls")]
#[test]
fn with_cluster_tls_reports_need_a_client_certificate_from_the_cluster_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ours = pki_for_nodes(dir.path(), "cluster", &["n1"]);
    let rogue = pki_for_nodes(dir.path(), "rogue", &["n1"]);
    let (agent, url) = tls_leader(dir.path(), &ours.ca, &ours.cert, &ours.key);
    let body = r#"{"version":1,"node_id":"n1","pool":"local","at":"2026-01-01T00:00:00Z"}"#;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let post = |client: reqwest::Client| {
        rt.block_on(async {
            client
                .post(format!("{url}/v1/reports"))
                .bearer_auth(node_token("tls-token", "n1"))
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    assert_eq!(post(tls_client(&ours.ca, Some(&ours))).unwrap(), 202);
    // The certificate names n1 only: with n2's own valid token, a report as n2 is
    // still refused (403 wrong_node).
    let as_n2 = rt.block_on(async {
        tls_client(&ours.ca, Some(&ours))
            .post(format!("{url}/v1/reports"))
            .bearer_auth(node_token("tls-token", "n2"))
            .header("x-capstan-node", "n2")
            .body(body.replace("\"n1\"", "\"n2\""))
            .send()
            .await
            .unwrap()
    });
    assert_eq!(as_n2.status().as_u16(), 403);
    let text = rt.block_on(as_n2.text()).unwrap();
    assert!(
        text.contains("wrong_node") && text.contains("client certificate"),
        "{text}"
    );
    // No client certificate, or one from another CA: the handshake fails.
    assert!(post(tls_client(&ours.ca, None)).is_err());
    assert!(post(tls_client(&ours.ca, Some(&rogue))).is_err());
    // The plain listener takes no reports when [cluster.tls] is set; it still serves
    // metrics and status.
    let (code, _) = agent.post(
        "/v1/reports",
        Some(&node_token("tls-token", "n1")),
        body.as_bytes().to_vec(),
    );
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

/// `cluster.auth = "shared-token"` (the upgrade path): the token itself is taken from
/// any node, for any node id, and the leader says in its log what that allows.
#[test]
fn a_shared_token_still_works_where_it_is_asked_for_and_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "shared-t0ken\n").unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(&config, example()).unwrap();
    let token_path = token.display().to_string();
    let agent = Agent::start_with(
        &config,
        &dir.path().join("state"),
        &[
            ("CAPSTAN_CLUSTER__TOKEN_FILE", token_path.as_str()),
            ("CAPSTAN_CLUSTER__AUTH", "shared-token"),
        ],
    );
    for node in ["n1", "n2"] {
        let body = format!(
            r#"{{"version":1,"node_id":"{node}","pool":"local","at":"2026-01-01T00:00:00Z"}}"#
        );
        let (code, text) = agent.post("/v1/reports", Some("shared-t0ken"), body.into_bytes());
        assert_eq!(code, 202, "{node}: {text}");
    }
    let body = br#"{"version":1,"node_id":"n1","pool":"local","at":"2026-01-01T00:00:00Z"}"#;
    let (code, _) = agent.post(
        "/v1/reports",
        Some(&node_token("shared-t0ken", "n1")),
        body.to_vec(),
    );
    assert_eq!(
        code, 401,
        "a per-node token where the shared one is asked for"
    );
    let log = agent.log.lock().unwrap().join("\n");
    assert!(
        log.contains("cluster.auth = \"shared-token\"") && log.contains("report as any node"),
        "{log}"
    );
}

/// Idle and slow clients: 3,000 connections that send nothing and a few that send a
/// request's head a byte at a time hold nothing for long. `/healthz` still answers
/// while they are open; each is closed once `agent.request_timeout` (2 s here) passes.
/// With `agent.max_connections`, connections past it are closed as they arrive, and
/// the agent answers again as soon as the idle ones are cut off.
#[test]
fn idle_and_slow_clients_are_cut_off_and_the_agent_keeps_answering() {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(&config, example()).unwrap();
    let agent = Agent::start_with(
        &config,
        &dir.path().join("state"),
        &[("CAPSTAN_AGENT__REQUEST_TIMEOUT", "2s")],
    );
    let addr = agent.base.trim_start_matches("http://").to_owned();
    let closed = |s: &mut TcpStream| {
        s.set_nonblocking(true).unwrap();
        let mut b = [0_u8; 1024];
        // EOF, or reset: closed; nothing to read yet: still open.
        loop {
            match s.read(&mut b) {
                Ok(0) => return true,
                // A response before the close (the kept-alive one below).
                Ok(_) => continue,
                Err(e) => return e.kind() != std::io::ErrorKind::WouldBlock,
            }
        }
    };
    let mut idle: Vec<TcpStream> = (0..3000)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    // A kept-alive connection left idle after one request.
    let mut kept = TcpStream::connect(&addr).unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    idle.push(kept);
    // Slow clients: a request head, a byte at a time.
    let slow: Vec<std::thread::JoinHandle<Option<usize>>> = (0..5)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                let head = b"POST /v1/reports HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
                for (i, b) in head.iter().enumerate() {
                    if s.write_all(&[*b]).is_err() {
                        return Some(i);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                None
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    #[allow(clippy::disallowed_methods)]
    let asked = std::time::Instant::now();
    let (code, _) = agent.get("/healthz");
    let took = asked.elapsed();
    eprintln!("/healthz with 3,000 idle and 5 slow connections open: {code} in {took:?}");
    assert_eq!(code, 200);
    // Every idle connection is closed by the timeout (2 s; bounded wait).
    let mut open = idle.len();
    for _ in 0..100 {
        idle.retain_mut(|s| !closed(s));
        open = idle.len();
        if open == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        open, 0,
        "{open} idle connections (of 3,000, and one kept alive) still open after 10 s"
    );
    // A slow head is cut off: its writes fail before the whole head is sent (it would
    // take 9 s at a byte every 100 ms).
    for t in slow {
        assert!(
            t.join().unwrap().is_some(),
            "a byte-a-second head was read to its end"
        );
    }
    drop(agent);

    // At most 16 connections: the 17th is closed as it arrives; once the idle 16 are
    // cut off, the agent answers again.
    let agent = Agent::start_with(
        &config,
        &dir.path().join("state-2"),
        &[
            ("CAPSTAN_AGENT__REQUEST_TIMEOUT", "2s"),
            ("CAPSTAN_AGENT__MAX_CONNECTIONS", "16"),
        ],
    );
    let addr = agent.base.trim_start_matches("http://").to_owned();
    let held: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(&addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let mut extra = TcpStream::connect(&addr).unwrap();
    extra
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    extra
        .set_read_timeout(Some(std::time::Duration::from_secs(1)))
        .unwrap();
    let mut b = Vec::new();
    let got = extra.read_to_end(&mut b);
    assert!(
        matches!(got, Ok(0)) || got.is_err() && b.is_empty(),
        "the 17th connection was served: {got:?} {:?}",
        String::from_utf8_lossy(&b)
    );
    agent.wait_for("the agent answering once the idle ones are cut off", |a| {
        (a.get("/healthz").0 == 200).then_some(())
    });
    drop(held);
    let log = agent.log.lock().unwrap().join("\n");
    assert!(log.contains("connections refused"), "{log}");
}

/// A flood of made-up node ids, each with its own valid token (the worst case: a
/// holder of the cluster secret): the table stays at `cluster.max_nodes` (the default,
/// 20,000), every id past it gets 503 `table_full`, and a node already in the table
/// keeps reporting. The leader's peak RSS is printed (docs/performance.md).
#[test]
fn a_flood_of_made_up_node_ids_stays_at_the_table_cap() {
    const FLOOD: usize = 50_000;
    const CAP: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "flood-secret\n").unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(&config, example()).unwrap();
    let token_path = token.display().to_string();
    let agent = Agent::start_with(
        &config,
        &dir.path().join("state"),
        &[("CAPSTAN_CLUSTER__TOKEN_FILE", token_path.as_str())],
    );
    let url = format!("{}/v1/reports", agent.base);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = capstan::net::client_builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap();
    let post = |client: reqwest::Client, url: String, i: usize| async move {
        let node = format!("flood-{i:05}");
        let body = format!(
            r#"{{"version":1,"node_id":"{node}","pool":"local","at":"2026-01-01T00:00:00Z"}}"#
        );
        client
            .post(url)
            .bearer_auth(node_token("flood-secret", &node))
            .header("x-capstan-node", &node)
            .body(body)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    // Eight senders at once, each over its kept-alive connection.
    let codes: Vec<u16> = rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|w| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut codes = Vec::new();
                    for i in (w..FLOOD).step_by(8) {
                        codes.push(post(client.clone(), url.clone(), i).await);
                    }
                    codes
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let accepted = codes.iter().filter(|c| **c == 202).count();
    let full = codes.iter().filter(|c| **c == 503).count();
    assert_eq!(accepted + full, FLOOD, "other answers: {:?}", {
        let mut other: Vec<u16> = codes
            .iter()
            .copied()
            .filter(|c| *c != 202 && *c != 503)
            .collect();
        other.dedup();
        other
    });
    // The leader's own node may hold one place.
    assert!(
        (CAP - 1..=CAP).contains(&accepted),
        "{accepted} made-up nodes taken with a cap of {CAP}"
    );
    // The table as the next pass publishes it: reporting nodes, and those silent for
    // three intervals already (stale, still in the table).
    let reporting = agent.wait_for("the flood in the published table", |a| {
        let nodes = &a.status()["pools"][0]["nodes"];
        let n = ["reporting", "stale"]
            .iter()
            .map(|k| nodes[*k].as_array().map_or(0, Vec::len))
            .sum::<usize>();
        (n >= CAP - 1).then_some(n)
    });
    assert!(reporting <= CAP + 1, "{reporting} nodes in the table");
    let (_, metrics) = agent.get("/metrics");
    assert_eq!(
        metric(
            &metrics,
            "capstan_reports_rejected_total{reason=\"table_full\"}"
        ),
        Some(full as f64)
    );
    // A node in the table still reports; a new one still cannot.
    let first = codes.iter().position(|c| *c == 202).unwrap();
    assert_eq!(rt.block_on(post(client.clone(), url.clone(), first)), 202);
    assert_eq!(
        rt.block_on(post(client.clone(), url.clone(), FLOOD + 1)),
        503
    );
    let hwm = std::fs::read_to_string(format!("/proc/{}/status", agent.pid()))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        .unwrap_or_default();
    eprintln!(
        "flood of {FLOOD} made-up node ids (each with a valid per-node token), cluster.max_nodes {CAP}: {accepted} taken, {full} refused 503 table_full, {reporting} nodes in the table; leader (debug build) peak RSS {hwm}"
    );
}

/// The reloads a config file goes through: `capstan_config_reloads_total{result}` read
/// until it reaches `n`.
fn wait_reloads(agent: &Agent, result: &str, n: f64) {
    agent.wait_for(&format!("{n} {result} reloads"), |a| {
        let (_, m) = a.get("/metrics");
        (metric(
            &m,
            &format!("capstan_config_reloads_total{{result=\"{result}\"}}"),
        )
        .unwrap_or(0.0)
            >= n)
            .then_some(())
    });
}

fn report_body(node: &str) -> Vec<u8> {
    format!(r#"{{"version":1,"node_id":"{node}","pool":"local","at":"2026-01-01T00:00:00Z"}}"#)
        .into_bytes()
}

/// A rotation without a restart: SIGHUP reads the token files again. With
/// `previous_token_file` set, nodes still on the old secret keep reporting while the
/// new one spreads; the next reload without it drops the old secret. The status token
/// rotates the same way, and a reload naming a file that is not there keeps the
/// running tokens.
#[test]
fn sighup_rotates_the_cluster_secret_and_the_status_token() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let old = write("secret-old", "old-secret\n");
    let config = dir.path().join("capstan.toml");
    // The example with its [cluster] table replaced.
    let with_cluster = |cluster: &str| {
        let text = example().replace(
            "[cluster]\ncoordinator = \"standalone\"\n",
            &format!("[cluster]\ncoordinator = \"standalone\"\n{cluster}\n"),
        );
        assert!(
            text.contains(cluster),
            "the example's [cluster] table changed"
        );
        std::fs::write(&config, text).unwrap();
    };
    with_cluster(&format!("token_file = {old:?}"));
    let agent = Agent::start(&config, &dir.path().join("state"));
    let mut n = 0;
    let mut post = |secret: &str| {
        n += 1;
        let node = format!("n{n}");
        agent.report_as(&node, &node_token(secret, &node), report_body(&node))
    };
    assert_eq!(post("old-secret").0, 202);

    // The rotation starts: the new secret is sent, the old one still taken.
    let new = write("secret-new", "new-secret\n");
    let status1 = write("status-1", "status-token-1\n");
    with_cluster(&format!(
        "token_file = {new:?}\nprevious_token_file = {old:?}\nstatus_token_file = {status1:?}"
    ));
    agent.signal("HUP");
    wait_reloads(&agent, "success", 1.0);
    assert_eq!(
        post("old-secret").0,
        202,
        "the previous secret during the rotation"
    );
    assert_eq!(post("new-secret").0, 202);
    assert_eq!(post("someone-elses").0, 401);
    // The status now asks for its token; `capstan status` presents it from a file.
    assert_eq!(agent.get("/v1/status").0, 401);
    let cli = |token_file: Option<&str>| {
        let mut c = std::process::Command::new(BIN);
        c.args(["status", "--url", &agent.base]);
        if let Some(f) = token_file {
            c.args(["--token-file", f]);
        }
        c.output().unwrap()
    };
    let out = cli(Some(&status1));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("local"));
    let out = cli(None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--token-file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A reload naming a missing file is refused, and the running tokens stay.
    with_cluster(&format!(
        "token_file = {new:?}\nprevious_token_file = \"{}/gone\"",
        dir.path().display()
    ));
    agent.signal("HUP");
    wait_reloads(&agent, "failure", 1.0);
    assert_eq!(post("old-secret").0, 202);
    assert_eq!(cli(Some(&status1)).status.code(), Some(0));

    // The rotation ends: the old secret and the first status token are refused.
    let status2 = write("status-2", "status-token-2\n");
    with_cluster(&format!(
        "token_file = {new:?}\nstatus_token_file = {status2:?}"
    ));
    agent.signal("HUP");
    wait_reloads(&agent, "success", 2.0);
    assert_eq!(
        post("old-secret").0,
        401,
        "the previous secret after the rotation"
    );
    assert_eq!(post("new-secret").0, 202);
    assert!(!cli(Some(&status1)).status.success());
    assert!(cli(Some(&status2)).status.success());
}

/// Certificates rotate on SIGHUP: the reports listener presents the new certificate to
/// new connections, and takes client certificates from whichever CAs `ca_file` holds
/// now (both during a CA rotation, then only the new one).
#[cfg(feature = "tls")]
#[test]
fn sighup_rotates_the_reports_listeners_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = ["n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8"];
    let a = pki_for_nodes(dir.path(), "a", &nodes);
    let b = pki_for_nodes(dir.path(), "b", &nodes);
    let (ca, cert, key) = (
        dir.path().join("ca.pem"),
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
    );
    let install = |cas: &[&Pki], leaf: &Pki| {
        let bundle: String = cas
            .iter()
            .map(|p| std::fs::read_to_string(&p.ca).unwrap())
            .collect();
        std::fs::write(&ca, bundle).unwrap();
        std::fs::copy(&leaf.cert, &cert).unwrap();
        std::fs::copy(&leaf.key, &key).unwrap();
    };
    install(&[&a], &a);
    let (agent, url) = tls_leader(dir.path(), &ca, &cert, &key);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut n = 0;
    // Posts as the next node, trusting `trust`'s CA, presenting `identity`.
    let mut post = |trust: &Pki, identity: &Pki| {
        n += 1;
        let node = nodes[n - 1];
        rt.block_on(async {
            tls_client(&trust.ca, Some(identity))
                .post(format!("{url}/v1/reports"))
                .bearer_auth(node_token("tls-token", node))
                .header("x-capstan-node", node)
                .body(report_body(node))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| format!("{:#}", anyhow::Error::new(e)))
        })
    };
    assert_eq!(post(&a, &a), Ok(202));

    // The rotation starts: the listener's certificate is B's, both CAs are trusted.
    install(&[&a, &b], &b);
    agent.signal("HUP");
    wait_reloads(&agent, "success", 1.0);
    assert!(
        post(&a, &a).is_err(),
        "a client trusting only A still sees A's certificate"
    );
    assert_eq!(post(&b, &b), Ok(202));
    assert_eq!(
        post(&b, &a),
        Ok(202),
        "A's client certificates during the rotation"
    );

    // A bad file is refused on reload, and the running certificates stay.
    std::fs::write(&key, "not a key").unwrap();
    agent.signal("HUP");
    wait_reloads(&agent, "failure", 1.0);
    assert_eq!(post(&b, &b), Ok(202));

    // The rotation ends: only B's CA.
    install(&[&b], &b);
    agent.signal("HUP");
    wait_reloads(&agent, "success", 2.0);
    assert!(
        post(&b, &a).is_err(),
        "A's client certificate after the rotation"
    );
    assert_eq!(post(&b, &b), Ok(202));
}
