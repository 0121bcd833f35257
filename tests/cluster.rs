//! Cluster mode against a real etcd (Debian `etcd-server`, which scripts/test.sh
//! installs): three agents on one machine, each with its own port and state dir, in one
//! dry-run pool whose size lives in a shared state file, so every provider call is on
//! record (`<state_file>.log`, one JSON line per applied target, with the pid).
//!
//! The pool's target (CPU at 100 %) never asks for more than `min`; the test moves the
//! pool below `min` by writing the state file, and the leader must put it back, once.
//! Everything listens on 127.0.0.1 with ephemeral ports, and every process is stopped.

#[path = "support/etcd.rs"]
mod etcd;
mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use etcd::{Etcd, now, wait};
use support::*;

const TOKEN: &str = "cluster-test-token";

/// One applied target, from the state file's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
struct Call {
    pid: u32,
    from: u32,
    capacity: u32,
}

struct Cluster {
    dir: PathBuf,
    state_file: PathBuf,
    agents: Vec<Option<Agent>>,
}

impl Cluster {
    fn start(dir: &Path, endpoints: &[String], ttl: &str, n: usize) -> Cluster {
        Self::start_with(dir, endpoints, ttl, n, "")
    }

    /// `extra` is appended to every agent's config (e.g. a `[cluster.tls]` table).
    fn start_with(dir: &Path, endpoints: &[String], ttl: &str, n: usize, extra: &str) -> Cluster {
        Self::start_secured(dir, endpoints, ttl, n, "allow_plaintext = true", extra)
    }

    /// `etcd_extra` goes into `[cluster.etcd]` (its TLS files and user, or
    /// `allow_plaintext` for the loopback etcd in plain http).
    fn start_secured(
        dir: &Path,
        endpoints: &[String],
        ttl: &str,
        n: usize,
        etcd_extra: &str,
        extra: &str,
    ) -> Cluster {
        let token = dir.join("token");
        std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
        let state_file = dir.join("pool.json");
        let mut c = Cluster {
            dir: dir.to_owned(),
            state_file: state_file.clone(),
            agents: Vec::new(),
        };
        for i in 0..n {
            let config = dir.join(format!("agent-{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    r#"
[agent]
node_name = "agent-{i}"
pool = "web"

[cluster]
coordinator = "etcd"
token_file = {token:?}

[cluster.etcd]
endpoints = {endpoints:?}
prefix = "/capstan-test"
lease_ttl = "{ttl}"
{etcd_extra}

[[pool]]
name = "web"
provider = {{ type = "dry-run", initial = 3, state_file = {state_file:?} }}
min = 3
max = 10
targets = [{{ metric = "cpu.utilization", value = 100 }}]
{extra}
"#,
                    token = token.display().to_string(),
                    state_file = state_file.display().to_string(),
                ),
            )
            .unwrap();
            c.agents.push(None);
            c.start_agent(i);
        }
        c
    }

    fn start_agent(&mut self, i: usize) {
        let config = self.dir.join(format!("agent-{i}.toml"));
        let state = self.dir.join(format!("state-{i}"));
        self.agents[i] = Some(Agent::start(&config, &state));
    }

    fn kill_agent(&mut self, i: usize) {
        if let Some(a) = &self.agents[i] {
            a.signal("KILL");
        }
        if let Some(mut a) = self.agents[i].take() {
            a.wait_exit();
        }
    }

    /// The agent that says it leads (one, and only one, must).
    fn leader(&self) -> usize {
        wait("exactly one leader", || {
            let leaders: Vec<usize> = self
                .agents
                .iter()
                .enumerate()
                .filter_map(|(i, a)| {
                    let a = a.as_ref()?;
                    let (code, body) = a.get("/v1/status");
                    let s: serde_json::Value = serde_json::from_str(&body).ok()?;
                    (code == 200 && s["role"] == "leader").then_some(i)
                })
                .collect();
            (leaders.len() == 1).then(|| leaders[0])
        })
    }

    fn calls(&self) -> Vec<Call> {
        let log = capstan_log(&self.state_file);
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Moves the pool below its minimum behind the agents' backs.
    fn shrink(&self) {
        std::fs::write(&self.state_file, r#"{"capacity":1,"on_demand":1}"#).unwrap();
    }

    fn wait_calls(&self, n: usize) -> Vec<Call> {
        wait(&format!("{n} provider calls"), || {
            let calls = self.calls();
            (calls.len() >= n).then_some(calls)
        })
    }

    fn logs(&self) -> String {
        self.agents
            .iter()
            .flatten()
            .map(|a| a.log.lock().unwrap().join("\n"))
            .collect::<Vec<_>>()
            .join("\n----\n")
    }
}

/// A runtime for the tests that drive etcd's client directly.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn capstan_log(state_file: &Path) -> PathBuf {
    let mut p = state_file.as_os_str().to_owned();
    p.push(".log");
    PathBuf::from(p)
}

#[test]
fn a_killed_leader_is_replaced_without_double_actuation_and_without_etcd_nobody_acts() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(1, dir.path());
    let ttl = Duration::from_secs(2);
    let interval = Duration::from_secs(1);
    let mut cluster = Cluster::start(dir.path(), &etcd.endpoints(), "2s", 3);

    let mut failovers = Vec::new();
    let mut expected = 0;
    for round in 0..10 {
        let leader = cluster.leader();
        let pid = cluster.agents[leader].as_ref().unwrap().pid();
        // The leader puts the pool back to its minimum.
        cluster.shrink();
        expected += 1;
        let calls = cluster.wait_calls(expected);
        assert_eq!(
            calls[expected - 1],
            Call {
                pid,
                from: 1,
                capacity: 3
            },
            "round {round}: {calls:?}"
        );
        // SIGKILL it; another agent must take over and act.
        cluster.kill_agent(leader);
        let killed = now();
        cluster.shrink();
        expected += 1;
        let calls = cluster.wait_calls(expected);
        let took = killed.elapsed();
        let call = calls[expected - 1];
        assert_ne!(
            call.pid, pid,
            "round {round}: the dead leader acted? {calls:?}"
        );
        assert_eq!(
            (call.from, call.capacity),
            (1, 3),
            "round {round}: {calls:?}"
        );
        failovers.push(took);
        cluster.start_agent(leader);
    }
    // Every call was asked for, by one agent, once: no double actuation, no repeated
    // scale-up (a repeat would show as a call from 3, or more calls than shrinks).
    std::thread::sleep(interval * 3);
    let calls = cluster.calls();
    assert_eq!(calls.len(), expected, "{calls:?}\n{}", cluster.logs());
    assert!(
        calls.iter().all(|c| (c.from, c.capacity) == (1, 3)),
        "{calls:?}"
    );

    failovers.sort();
    let median = failovers[failovers.len() / 2];
    let worst = failovers[failovers.len() - 1];
    eprintln!(
        "failover (SIGKILL of the leader until the new leader's call), lease_ttl 2s, interval 1s: median {:.1}s, worst {:.1}s over {} rounds",
        median.as_secs_f64(),
        worst.as_secs_f64(),
        failovers.len()
    );
    // Within TTL + one interval, plus the renewal period (TTL/3) and process start-up
    // slack on a loaded 2-core machine.
    let bound = ttl + interval + ttl / 3 + Duration::from_secs(2);
    assert!(worst <= bound, "worst failover {worst:?} > {bound:?}");

    // etcd gone: the leader stops leading within its TTL, says why, and nothing acts.
    let leader = cluster.leader();
    etcd.kill_all();
    let stopped = now();
    let agent = cluster.agents[leader].as_ref().unwrap();
    let status = agent.wait_for("the leader to step down", |a| {
        let s = a.status();
        (s["role"] == "follower").then_some(s)
    });
    let stepped_down = stopped.elapsed();
    assert!(
        stepped_down <= ttl + Duration::from_secs(2),
        "stepped down after {stepped_down:?}"
    );
    let note = status["coordinator_note"].as_str().unwrap_or_default();
    assert!(note.contains("etcd"), "{status}");
    cluster.shrink();
    std::thread::sleep(ttl + interval * 2);
    assert_eq!(
        cluster.calls().len(),
        expected,
        "an agent acted without etcd"
    );
    let log = agent.log.lock().unwrap().join("\n");
    assert!(log.contains("no longer leading"), "{log}");
}

#[test]
fn the_agents_carry_on_when_the_etcd_leader_member_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut etcd = Etcd::start(3, dir.path());
    let cluster = Cluster::start(dir.path(), &etcd.endpoints(), "5s", 3);
    let leader = cluster.leader();
    cluster.shrink();
    let calls = cluster.wait_calls(1);
    assert_eq!((calls[0].from, calls[0].capacity), (1, 3));

    let member = etcd.leader();
    eprintln!("killing etcd leader member {}", etcd.members[member].name);
    etcd.kill(member);
    // The cluster elects another member; the agents keep (or re-elect) a leader that acts.
    cluster.shrink();
    let calls = cluster.wait_calls(2);
    assert_eq!((calls[1].from, calls[1].capacity), (1, 3), "{calls:?}");
    let now_leading = cluster.leader();
    eprintln!("agent leader before: agent-{leader}, after: agent-{now_leading}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        cluster.calls().len(),
        2,
        "{:?}\n{}",
        cluster.calls(),
        cluster.logs()
    );
}

#[test]
fn demand_history_in_etcd_is_read_back_by_the_next_leader_and_expires() {
    use capstan::state::demand::HistoryStore;
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(1, dir.path());
    let rt = runtime();
    rt.block_on(async {
        let settings = capstan::cluster::etcd::EtcdSettings {
            endpoints: etcd.endpoints(),
            prefix: "/capstan-test".into(),
            lease_ttl: Duration::from_secs(2),
            node_id: "a".into(),
            url: None,
            access: Default::default(),
        };
        let first = capstan::cluster::etcd::EtcdHistory::start(
            settings.client().await.unwrap(),
            &settings.prefix,
        );
        // Two and a half hours of minutes, the second target missing every 7th minute.
        let base = 29_000_000_i64; // minutes since the epoch, in 2025
        let points: Vec<(i64, Vec<Option<f64>>)> = (0..150)
            .map(|m| {
                (
                    base + m,
                    vec![Some(m as f64 * 1.5), (m % 7 != 0).then_some(m as f64)],
                )
            })
            .collect();
        for p in &points {
            first.append("web", p).unwrap();
        }
        // The writes are asynchronous: wait until they are all in.
        let mut waited = 0;
        while first.load_async("web", base).await.unwrap().len() < points.len() {
            assert!(waited < 100, "history writes did not arrive");
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        // The next leader (another client) reads the same series, from any minute on.
        let next = capstan::cluster::etcd::EtcdHistory::start(
            settings.client().await.unwrap(),
            &settings.prefix,
        );
        // Through the store's blocking interface, as the agent attaches a pool.
        let back = next.load("web", base + 100).unwrap();
        assert_eq!(back, points[100..].to_vec());
        assert!(first.load_async("db", 0).await.unwrap().is_empty());

        // A point 15 days later drops the hours beyond the retention (14 days + 1 h).
        first
            .append("web", &(base + 15 * 24 * 60, vec![Some(1.0), None]))
            .unwrap();
        let mut waited = 0;
        loop {
            let all = first.load_async("web", 0).await.unwrap();
            if all.len() == 1 {
                assert_eq!(all[0].0, base + 15 * 24 * 60);
                break;
            }
            assert!(
                waited < 100,
                "old hours not deleted: {} points left",
                all.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
    });
}

#[cfg(feature = "tls")]
#[test]
fn followers_report_to_the_leader_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(1, dir.path());
    // One certificate for the three agents, naming each of them.
    let p = pki_for_nodes(dir.path(), "cluster", &["agent-0", "agent-1", "agent-2"]);
    let tls = format!(
        "\n[cluster.tls]\nlisten = \"127.0.0.1:0\"\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
        p.ca.display().to_string(),
        p.cert.display().to_string(),
        p.key.display().to_string()
    );
    let cluster = Cluster::start_with(dir.path(), &etcd.endpoints(), "2s", 3, &tls);
    let leader = cluster.leader();
    let agent = cluster.agents[leader].as_ref().unwrap();
    // Every agent's report reaches the leader, over its mutual-TLS listener.
    let status = agent.wait_for("three reporting nodes", |a| {
        let s = a.status();
        (s["pools"][0]["nodes"]["reporting"].as_array().map(Vec::len) == Some(3)).then_some(s)
    });
    assert!(
        status["leader_url"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:"),
        "{status}"
    );
    assert!(
        status["reports_received"].as_u64().unwrap() >= 2,
        "{status}"
    );
    let sent = |a: &Agent| {
        let (_, m) = a.get("/metrics");
        metric(&m, "capstan_reports_sent_total{result=\"ok\"}").unwrap_or(0.0)
    };
    for (i, a) in cluster.agents.iter().enumerate() {
        if i != leader {
            assert!(sent(a.as_ref().unwrap()) >= 1.0, "agent-{i} sent nothing");
        }
    }
}

/// A deposed leader's decision-state write is refused by etcd itself: the store's
/// transaction puts only while the writer's election key still exists with the revision
/// it was elected at. The key goes as the lease is revoked behind the leader's back (as
/// when it expires on the server while the leader is paused); the write right after,
/// before the leader's session has noticed anything, is refused and changes nothing,
/// and the next leader's write goes through.
#[test]
fn a_deposed_leaders_decision_state_write_is_refused_by_etcd() {
    use capstan::cluster::etcd::{EtcdCoordinator, EtcdDecisions, EtcdSettings};
    use capstan::state::memory::DecisionStore;

    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(1, dir.path());
    let settings = |node: &str| EtcdSettings {
        endpoints: etcd.endpoints(),
        prefix: "/capstan".into(),
        // Long enough that the session's next keep-alive (a third of it) comes well
        // after the write under test.
        lease_ttl: Duration::from_secs(30),
        node_id: node.into(),
        url: None,
        access: Default::default(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let leads = |c: &EtcdCoordinator| {
            let mut rx = c.claim();
            async move {
                tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|c| c.is_leader))
                    .await
                    .expect("elected")
                    .unwrap();
            }
        };
        use capstan::cluster::coordinator::Coordinator;
        let a = EtcdCoordinator::start(settings("a"));
        leads(&a).await;
        let mut client = settings("a").client().await.unwrap();
        let store = EtcdDecisions::new(client.clone(), "/capstan", a.fence());
        store.save("web", b"{\"by\":\"a\"}").await.unwrap();

        // a's election key goes with its lease.
        let keys = client
            .get(
                "/capstan/leader",
                Some(etcd_client::GetOptions::new().with_prefix()),
            )
            .await
            .unwrap();
        let lease = keys.kvs().first().expect("a's election key").lease();
        client.lease_revoke(lease).await.unwrap();

        let e = store
            .save("web", b"{\"by\":\"a, deposed\"}")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("election key is gone"), "{e}");
        assert_eq!(
            store.load("web").await.unwrap().as_deref(),
            Some(&b"{\"by\":\"a\"}"[..])
        );

        // The next leader writes.
        let b = EtcdCoordinator::start(settings("b"));
        leads(&b).await;
        let by_b = EtcdDecisions::new(client.clone(), "/capstan", b.fence());
        by_b.save("web", b"{\"by\":\"b\"}").await.unwrap();
        assert!(store.save("web", b"{}").await.is_err());
        b.vacate().await;
        a.vacate().await;
    });
}

/// etcd with client-certificate TLS and authentication on (a user whose role may read
/// and write only the agents' prefix): the agents elect a leader, it acts and saves its
/// decision state there, and the demand history goes there and comes back. Without the
/// password, or without a client certificate, etcd lets nobody in.
#[cfg(feature = "tls")]
#[test]
fn etcd_with_client_certificate_tls_and_a_user_holds_the_election_state_and_history() {
    use capstan::cluster::etcd::{EtcdAccess, EtcdHistory, EtcdSettings};
    use capstan::state::demand::HistoryStore;
    use etcd_client::{Certificate, Client, ConnectOptions, Identity, Permission, TlsOptions};

    let dir = tempfile::tempdir().unwrap();
    // One CA for etcd's server certificate and the agents' client certificates.
    let p = pki_for_nodes(dir.path(), "etcd", &[]);
    let etcd = Etcd::start_tls(
        1,
        dir.path(),
        etcd::ServerTls {
            ca: &p.ca,
            cert: &p.cert,
            key: &p.key,
        },
    );
    assert!(etcd.endpoints()[0].starts_with("https://127.0.0.1:"));
    let password = dir.path().join("etcd-password");
    std::fs::write(&password, "capstan-secret\n").unwrap();
    let tls = || {
        TlsOptions::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(&p.ca).unwrap()))
            .identity(Identity::from_pem(
                std::fs::read(&p.cert).unwrap(),
                std::fs::read(&p.key).unwrap(),
            ))
    };
    let rt = runtime();
    // Users as an operator would set them up, then authentication on.
    rt.block_on(async {
        let opts = ConnectOptions::new()
            .with_tls(tls())
            .with_timeout(Duration::from_secs(2));
        let mut admin = None;
        for _ in 0..100 {
            if let Ok(mut c) = Client::connect(etcd.endpoints(), Some(opts.clone())).await
                && c.status().await.is_ok()
            {
                admin = Some(c);
                break;
            }
            tokio::time::sleep(STEP).await;
        }
        let mut c = admin.expect("etcd over TLS");
        c.user_add("root", "root-secret", None).await.unwrap();
        c.user_grant_role("root", "root").await.unwrap();
        c.role_add("capstan").await.unwrap();
        c.role_grant_permission(
            "capstan",
            Permission::read_write("/capstan-test").with_prefix(),
        )
        .await
        .unwrap();
        c.user_add("capstan", "capstan-secret", None).await.unwrap();
        c.user_grant_role("capstan", "capstan").await.unwrap();
        c.auth_enable().await.unwrap();
    });

    let etcd_extra = format!(
        "ca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\nusername = \"capstan\"\npassword_file = {:?}\n",
        p.ca.display().to_string(),
        p.cert.display().to_string(),
        p.key.display().to_string(),
        password.display().to_string(),
    );
    let cluster = Cluster::start_secured(dir.path(), &etcd.endpoints(), "2s", 2, &etcd_extra, "");
    // The election: one leader, and it acts.
    let leader = cluster.leader();
    let pid = cluster.agents[leader].as_ref().unwrap().pid();
    cluster.shrink();
    let calls = cluster.wait_calls(1);
    assert_eq!(
        calls[0],
        Call {
            pid,
            from: 1,
            capacity: 3
        }
    );

    let settings = |access: EtcdAccess| EtcdSettings {
        endpoints: etcd.endpoints(),
        prefix: "/capstan-test".into(),
        lease_ttl: Duration::from_secs(2),
        node_id: "reader".into(),
        url: None,
        access,
    };
    let config_tls = capstan_config::EtcdTls {
        ca_file: p.ca.clone(),
        client: Some((p.cert.clone(), p.key.clone())),
    };
    let as_capstan = || {
        EtcdAccess::load(
            Some(&config_tls),
            Some(&("capstan".to_owned(), password.clone())),
        )
        .unwrap()
    };
    rt.block_on(async {
        let mut client = settings(as_capstan()).client().await.unwrap();
        // The leader's decision state, written under its election key's fence.
        let mut state = None;
        for _ in 0..100 {
            let r = client.get("/capstan-test/state/web", None).await.unwrap();
            state = r.kvs().first().map(|kv| kv.value().to_vec());
            if state.is_some() {
                break;
            }
            tokio::time::sleep(STEP).await;
        }
        let state = state.expect("the leader's decision state in etcd");
        let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
        assert!(state.is_object(), "{state}");

        // The demand history: written by one client, read back by another.
        let history = EtcdHistory::start(
            settings(as_capstan()).client().await.unwrap(),
            "/capstan-test",
        );
        let base = 29_000_000_i64;
        for m in 0..3 {
            history
                .append("web", &(base + m, vec![Some(m as f64)]))
                .unwrap();
        }
        let next = EtcdHistory::start(
            settings(as_capstan()).client().await.unwrap(),
            "/capstan-test",
        );
        let mut waited = 0;
        while next.load_async("web", base).await.unwrap().len() < 3 {
            assert!(waited < 100, "history writes did not arrive");
            tokio::time::sleep(STEP).await;
            waited += 1;
        }

        // A wrong password is refused at connect.
        let wrong = dir.path().join("wrong-password");
        std::fs::write(&wrong, "guess\n").unwrap();
        let Err(e) = settings(
            EtcdAccess::load(Some(&config_tls), Some(&("capstan".to_owned(), wrong))).unwrap(),
        )
        .client()
        .await
        else {
            panic!("connected with a wrong password")
        };
        assert!(e.to_string().contains("authentication failed"), "{e}");
        // With the certificate but no user, nothing under the prefix can be read.
        let mut anonymous = settings(EtcdAccess::load(Some(&config_tls), None).unwrap())
            .client()
            .await
            .unwrap();
        let e = anonymous
            .get("/capstan-test/state/web", None)
            .await
            .expect_err("no user, no read");
        assert!(e.to_string().contains("permission denied"), "{e}");
        // Without a client certificate, the TLS handshake fails.
        let ca_only = capstan_config::EtcdTls {
            ca_file: p.ca.clone(),
            client: None,
        };
        let no_cert = settings(
            EtcdAccess::load(
                Some(&ca_only),
                Some(&("capstan".to_owned(), password.clone())),
            )
            .unwrap(),
        )
        .client()
        .await;
        assert!(no_cert.is_err(), "connected without a client certificate");
    });
}

/// Whoever can write etcd can name any URL as the leader's. Under `[cluster.tls]` a
/// follower sends its report (and its token) only to a leader that proves, over TLS,
/// that its certificate is the cluster's: an `http://` URL is never even connected to,
/// and a TLS listener with a certificate from another CA (here a real capstan agent
/// with a rogue CA, whose certificate even names the follower's node) receives nothing.
#[cfg(feature = "tls")]
#[test]
fn a_follower_reports_only_to_a_leader_whose_certificate_is_the_clusters() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let dir = tempfile::tempdir().unwrap();
    let etcd = Etcd::start(1, dir.path());

    // A plain listener that counts the connections it gets.
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_url = format!("http://{}", plain.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    {
        let connections = connections.clone();
        std::thread::spawn(move || {
            for stream in plain.incoming() {
                connections.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });
    }
    // A rogue leader: a capstan agent on another CA's certificate.
    let rogue_pki = pki_for_nodes(dir.path(), "rogue", &["agent-0"]);
    let rogue_port = free_port();
    let rogue_config = dir.path().join("rogue.toml");
    let rogue_token = dir.path().join("rogue-token");
    std::fs::write(&rogue_token, format!("{TOKEN}\n")).unwrap();
    std::fs::write(
        &rogue_config,
        format!(
            r#"
[agent]
node_name = "rogue"
pool = "web"

[cluster]
token_file = {token:?}

[cluster.tls]
listen = "127.0.0.1:{rogue_port}"
ca_file = {ca:?}
cert_file = {cert:?}
key_file = {key:?}

[[pool]]
name = "web"
provider = {{ type = "dry-run", initial = 3 }}
min = 3
max = 10
targets = [{{ metric = "cpu.utilization", value = 100 }}]
"#,
            token = rogue_token.display().to_string(),
            ca = rogue_pki.ca.display().to_string(),
            cert = rogue_pki.cert.display().to_string(),
            key = rogue_pki.key.display().to_string(),
        ),
    )
    .unwrap();
    let rogue = Agent::start(&rogue_config, &dir.path().join("rogue-state"));
    let rogue_url = format!("https://127.0.0.1:{rogue_port}");

    // Both placed at the head of the election before any agent campaigns: the plain
    // one first, the rogue TLS one next.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt
        .block_on(etcd_client::Client::connect(etcd.endpoints(), None))
        .unwrap();
    let mut plant = |node: &str, url: &str| {
        rt.block_on(async {
            let lease = client.lease_grant(300, None).await.unwrap().id();
            let key = format!("/capstan-test/leader/{lease:x}");
            let value = serde_json::json!({ "node_id": node, "url": url }).to_string();
            client
                .put(
                    key.clone(),
                    value,
                    Some(etcd_client::PutOptions::new().with_lease(lease)),
                )
                .await
                .unwrap();
            key
        })
    };
    let plain_key = plant("mallory", &plain_url);
    plant("rogue", &rogue_url);

    let p = pki_for_nodes(dir.path(), "cluster", &["agent-0"]);
    let tls = format!(
        "\n[cluster.tls]\nlisten = \"127.0.0.1:0\"\nca_file = {:?}\ncert_file = {:?}\nkey_file = {:?}\n",
        p.ca.display().to_string(),
        p.cert.display().to_string(),
        p.key.display().to_string()
    );
    let cluster = Cluster::start_with(dir.path(), &etcd.endpoints(), "2s", 1, &tls);
    let follower = cluster.agents[0].as_ref().unwrap();
    let sent = |a: &Agent, result: &str| {
        let (_, m) = a.get("/metrics");
        metric(
            &m,
            &format!("capstan_reports_sent_total{{result=\"{result}\"}}"),
        )
        .unwrap_or(0.0)
    };

    // The plain URL: reports fail, and not one connection is made.
    follower.wait_for("reports to the plain URL to fail", |a| {
        let s = a.status();
        (s["leader_url"] == plain_url.as_str() && sent(a, "failed") >= 3.0).then_some(())
    });
    assert_eq!(connections.load(Ordering::SeqCst), 0);
    assert_eq!(sent(follower, "ok"), 0.0);
    let log = follower.log.lock().unwrap().join("\n");
    assert!(log.contains("URL scheme is not allowed"), "{log}");

    // The rogue TLS listener: the handshake fails on its certificate; it gets no report.
    rt.block_on(client.delete(plain_key, None)).unwrap();
    let before = sent(follower, "failed");
    follower.wait_for("reports to the rogue leader to fail", |a| {
        let s = a.status();
        (s["leader_url"] == rogue_url.as_str() && sent(a, "failed") >= before + 3.0).then_some(())
    });
    assert_eq!(sent(follower, "ok"), 0.0);
    let rogue_status = rogue.status();
    assert_eq!(rogue_status["reports_received"], 0, "{rogue_status}");
    let log = follower.log.lock().unwrap().join("\n");
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert_eq!(connections.load(Ordering::SeqCst), 0);
}
