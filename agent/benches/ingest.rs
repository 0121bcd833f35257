//! Leader ingest throughput: a `capstan run` leader (standalone, one dry-run pool, a
//! 10 s interval) takes node reports from this process, a separate load generator, over
//! loopback. Each simulated node sends one report per pass (a realistic ~0.6 KB host
//! report). Two shapes of load, one after the other: 16 keep-alive connections with
//! HTTP/1.1 pipelining (32 requests in flight on each), so the generator costs little
//! next to the leader; then 64 connections with one request in flight each, as real
//! agents send. Every answer must be 202; the figure is accepted reports per second.
//! Goal: ≥ 50,000/s on the 2-core machine.
//!
//! Both ways a leader knows a report's sender are measured in the same run, each on a
//! leader of its own: `shared-token` (one token, compared) and `node-hmac` (each node's
//! own token, the HMAC-SHA256 of its id, checked per report), shared-token twice
//! (before and after), so the run shows how much order alone moves the figures.
//!
//! Over mutual TLS a report is also checked against the nodes its client certificate
//! names, read from the certificate once per connection: the run ends by timing both
//! parts on an agent's certificate (the parse, per connection; the lookup, per report),
//! beside the per-report time of the node-hmac leader.
//!
//! `cargo bench -p capstan --features full --bench ingest [-- NODES]` (default 100,000 nodes, two
//! passes per shape).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "bench-token";
/// The `cluster.auth` modes measured, in order: the shared token before and after the
/// per-node tokens, so an effect of order shows as a difference between the two.
const AUTHS: [&str; 3] = ["shared-token", "node-hmac", "shared-token"];
/// (connections, requests in flight per connection).
const SHAPES: [(usize, usize); 2] = [(16, 32), (64, 1)];

fn report(i: usize, auth: &str) -> Vec<u8> {
    let cpu = (i % 97) as f64;
    let body = format!(
        r#"{{"version":1,"node_id":"node-{i:06}","pool":"bench","at":"2026-11-28T00:00:00Z","host":{{"cpu_percent":{cpu},"cpu_per_core_percent":[{cpu},{cpu},{cpu},{cpu}],"cores":4,"load":{{"one":1.5,"five":1.2,"fifteen":1.0}},"memory":{{"total_bytes":16000000000,"used_bytes":8000000000,"available_bytes":7000000000}},"swap":{{"total_bytes":0,"used_bytes":0}},"disks":[{{"mount_point":"/","total_bytes":100000000000,"available_bytes":50000000000}}],"network":[{{"interface":"eth0","rx_bytes_per_second":125000.0,"tx_bytes_per_second":98000.0}}]}},"workload":{{"requests_per_second":4800.0}}}}"#
    );
    let node = format!("node-{i:06}");
    let bearer = match auth {
        "node-hmac" => capstan::cluster::identity::node_token(TOKEN, &node),
        _ => TOKEN.to_owned(),
    };
    format!(
        "POST /v1/reports HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {bearer}\r\nx-capstan-node: {node}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Reads `n` responses; returns how many were not 202.
async fn read_responses(
    stream: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
    mut n: usize,
) -> usize {
    let mut bad = 0;
    let mut chunk = [0_u8; 16 * 1024];
    while n > 0 {
        // A whole head in the buffer?
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                if !head.starts_with("http/1.1 202") {
                    bad += 1;
                    if bad == 1 {
                        eprintln!(
                            "refused: {}",
                            String::from_utf8_lossy(&buf[..end + 4 + len])
                        );
                    }
                }
                buf.drain(..end + 4 + len);
                n -= 1;
                continue;
            }
        }
        let got = stream.read(&mut chunk).await.expect("read");
        assert!(got > 0, "the leader closed the connection");
        buf.extend_from_slice(&chunk[..got]);
    }
    bad
}

async fn pass(
    base: std::net::SocketAddr,
    requests: Arc<Vec<Vec<u8>>>,
    (connections, pipeline): (usize, usize),
) -> (f64, usize) {
    #[allow(clippy::disallowed_methods)] // a benchmark measures wall time
    let t0 = std::time::Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(base).await.expect("connect");
                stream.set_nodelay(true).unwrap();
                let mine: Vec<usize> = (c..requests.len()).step_by(connections).collect();
                let mut buf = Vec::new();
                let mut bad = 0;
                for batch in mine.chunks(pipeline) {
                    let mut out = Vec::with_capacity(batch.len() * 900);
                    for &i in batch {
                        out.extend_from_slice(&requests[i]);
                    }
                    stream.write_all(&out).await.expect("write");
                    bad += read_responses(&mut stream, &mut buf, batch.len()).await;
                }
                bad
            })
        })
        .collect();
    let mut bad = 0;
    for t in tasks {
        bad += t.await.unwrap();
    }
    (t0.elapsed().as_secs_f64(), bad)
}

fn main() {
    let nodes: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let mut summary = Vec::new();
    let mut hmac_rate = 0.0;
    for auth in AUTHS {
        let (lines, pipelined) = measure(nodes, auth);
        summary.extend(lines);
        if auth == "node-hmac" {
            hmac_rate = pipelined;
        }
    }
    summary.push(san_check(hmac_rate));
    for line in summary {
        println!("{line}");
    }
}

/// Without mutual TLS in the build there is no SAN check to time.
#[cfg(not(feature = "tls"))]
fn san_check(_rate: f64) -> String {
    "SAN check: not timed (this build has no mutual TLS: --features tls or full)".to_owned()
}

/// The SAN check's cost: an agent's certificate (its host names and its node URI)
/// parsed, as the reports listener does once per connection, and the report's node
/// looked up in what it names, as it does per report; the lookup as a share of one core
/// at `rate` reports/s (the node-hmac leader's pipelined figure).
#[cfg(feature = "tls")]
fn san_check(rate: f64) -> String {
    use rcgen::{CertificateParams, KeyPair, SanType};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![
        "ip-10-0-12-34.ec2.internal".to_owned(),
        "10.0.12.34".to_owned(),
    ])
    .unwrap();
    params.subject_alt_names.push(SanType::URI(
        "capstan://node/i-0123456789abcdef0".try_into().unwrap(),
    ));
    let der = params.self_signed(&key).unwrap().der().to_vec();
    let n = 200_000_u32;
    #[allow(clippy::disallowed_methods)]
    let t0 = std::time::Instant::now();
    let mut names = Vec::new();
    for _ in 0..n {
        names = capstan::cluster::identity::certificate_nodes(std::hint::black_box(&der));
    }
    let parse = t0.elapsed().as_secs_f64() / f64::from(n);
    let names = std::sync::Arc::new(names);
    #[allow(clippy::disallowed_methods)]
    let t0 = std::time::Instant::now();
    let mut found = 0_u32;
    for _ in 0..n {
        let names = std::hint::black_box(names.clone());
        found += u32::from(names.iter().any(|id| id == "i-0123456789abcdef0"));
    }
    let lookup = t0.elapsed().as_secs_f64() / f64::from(n);
    assert_eq!(found, n, "the node is named in the certificate");
    format!(
        "SAN check: the client certificate parsed once per connection, {:.2} µs; the report's node looked up per report, {:.0} ns: at {rate:.0} reports/s (node-hmac, pipelined) {:.2} % of one core",
        parse * 1e6,
        lookup * 1e9,
        lookup * rate * 100.0
    )
}

/// One leader with `cluster.auth = auth`, both shapes of load; the summary lines, and
/// the pipelined rate.
fn measure(nodes: usize, auth: &str) -> (Vec<String>, f64) {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[agent]
listen = "127.0.0.1:0"
interval = "10s"
state_dir = {state:?}

[cluster]
token_file = {token:?}
auth = "{auth}"
max_nodes = {max_nodes}
node_expiry = "5m"

[[pool]]
name = "bench"
provider = {{ type = "dry-run", initial = 10 }}
min = 1
max = 1000
targets = [{{ metric = "cpu.utilization", value = 60 }}]
"#,
            state = dir.path().join("state").display().to_string(),
            token = token.display().to_string(),
            max_nodes = nodes + 1,
        ),
    )
    .unwrap();
    let mut leader = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["run", "--config"])
        .arg(&config)
        .env("CAPSTAN_LOG", "warn,capstan::daemon=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start capstan");
    let stderr = leader.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Keeps draining the leader's log, so it never writes into a closed pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(a) = line.split("listening on http://").nth(1) {
                let _ = tx.send(a.trim().to_owned());
            } else if line.contains("WARN") || line.contains("ERROR") {
                eprintln!("leader: {line}");
            }
        }
    });
    let addr: std::net::SocketAddr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the leader's address")
        .parse()
        .unwrap();

    let requests = Arc::new((0..nodes).map(|i| report(i, auth)).collect::<Vec<_>>());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let mut best = Vec::new();
    for (round, shape) in SHAPES.into_iter().enumerate() {
        let mut rate = 0.0_f64;
        for p in 1..=2 {
            // Each node may report 3 times per 10 s interval: wait one out between
            // shapes, so the second shape's reports are not rate-limited.
            if round > 0 && p == 1 {
                std::thread::sleep(Duration::from_secs(10));
            }
            let (secs, bad) = rt.block_on(pass(addr, requests.clone(), shape));
            assert_eq!(bad, 0, "{shape:?} pass {p}: {bad} reports refused");
            let r = nodes as f64 / secs;
            println!(
                "{auth}: {} connections × {} in flight, pass {p}: {nodes} reports from {nodes} nodes in {secs:.2} s: {r:.0} reports/s",
                shape.0, shape.1
            );
            rate = rate.max(r);
        }
        best.push((shape, rate));
    }
    let hwm = std::fs::read_to_string(format!("/proc/{}/status", leader.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_default();
    let _ = leader.kill();
    let _ = leader.wait();
    let pipelined = best.first().map_or(0.0, |b| b.1);
    let mut lines: Vec<String> = best
        .into_iter()
        .map(|((connections, pipeline), rate)| {
            format!(
                "leader ingest, {auth}: {rate:.0} reports/s with {connections} connections × {pipeline} in flight (best of 2 passes)"
            )
        })
        .collect();
    lines.push(format!(
        "leader peak RSS {hwm} ({auth}) with {nodes} nodes in its table; goal ≥ 50000 reports/s"
    ));
    (lines, pipelined)
}
