//! A real etcd cluster on loopback for the tests (Debian `etcd-server`, which
//! scripts/test.sh installs): every member on ephemeral ports, killed on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::{PATIENCE, STEP, free_port, request};

/// Wall time: the tests measure real processes (failover, stepping down), which no
/// injected clock reaches.
pub fn now() -> Instant {
    #[allow(clippy::disallowed_methods)]
    Instant::now()
}

fn etcd_binary() -> &'static str {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "etcd not found: install Debian's etcd-server (scripts/test.sh does)"
    );
    "etcd"
}

/// An etcd cluster on loopback; every member is killed on drop.
pub struct Etcd {
    pub members: Vec<Member>,
}

pub struct Member {
    pub name: String,
    client: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Member {
    /// The last lines of the member's log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// Why a cluster did not start: a member exited (worth another try on new ports), or
/// it did not become healthy in time.
enum StartFailure {
    Exited(String),
    TimedOut(String),
}
use StartFailure::{Exited, TimedOut};

/// Client TLS for an etcd started by [`Etcd::start_tls`]: the server's certificate and
/// key, and the CA whose client certificates it requires.
pub struct ServerTls<'a> {
    pub ca: &'a Path,
    pub cert: &'a Path,
    pub key: &'a Path,
}

impl Etcd {
    pub fn start(n: usize, dir: &Path) -> Etcd {
        Self::start_with(n, dir, None)
    }

    /// Members whose client URLs are `https://`, requiring a client certificate that
    /// `tls.ca` signed (`--client-cert-auth`); members talk to each other in plain http.
    pub fn start_tls(n: usize, dir: &Path, tls: ServerTls<'_>) -> Etcd {
        Self::start_with(n, dir, Some(tls))
    }

    /// Starts `n` members on fresh ephemeral ports, and waits until every one is
    /// healthy. A port is free when chosen and taken by etcd a moment later, so another
    /// process can take it in between: a member that exits before the cluster is
    /// healthy (its log says why) starts the whole cluster again on new ports, at most
    /// three times. A cluster that does not become healthy fails with every member's log.
    fn start_with(n: usize, dir: &Path, tls: Option<ServerTls<'_>>) -> Etcd {
        const ATTEMPTS: usize = 3;
        for attempt in 1..=ATTEMPTS {
            let at = dir.join(format!("etcd-{attempt}"));
            std::fs::create_dir_all(&at).unwrap();
            let mut etcd = Self::spawn(n, &at, tls.as_ref());
            match etcd.healthy(tls.is_some()) {
                Ok(()) => return etcd,
                Err(Exited(why)) if attempt < ATTEMPTS => {
                    eprintln!("etcd start {attempt} of {ATTEMPTS}: {why}; again on new ports");
                }
                Err(Exited(why) | TimedOut(why)) => panic!("etcd did not start: {why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    fn spawn(n: usize, dir: &Path, tls: Option<&ServerTls<'_>>) -> Etcd {
        let bin = etcd_binary();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let peers: Vec<(String, String, String)> = (0..n)
            .map(|i| {
                (
                    format!("m{i}"),
                    format!("{scheme}://127.0.0.1:{}", free_port()),
                    format!("http://127.0.0.1:{}", free_port()),
                )
            })
            .collect();
        let initial = peers
            .iter()
            .map(|(name, _, peer)| format!("{name}={peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let members = peers
            .into_iter()
            .map(|(name, client, peer)| {
                let log = dir.join(format!("{name}.log"));
                let mut cmd = Command::new(bin);
                if let Some(t) = tls {
                    cmd.arg("--cert-file")
                        .arg(t.cert)
                        .arg("--key-file")
                        .arg(t.key)
                        .arg("--trusted-ca-file")
                        .arg(t.ca)
                        .arg("--client-cert-auth");
                }
                let child = cmd
                    .args(["--name", &name])
                    .arg("--data-dir")
                    .arg(dir.join(&name))
                    .args(["--listen-client-urls", &client])
                    .args(["--advertise-client-urls", &client])
                    .args(["--listen-peer-urls", &peer])
                    .args(["--initial-advertise-peer-urls", &peer])
                    .args(["--initial-cluster", &initial])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--initial-cluster-token", "capstan-test"])
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).unwrap())
                    .spawn()
                    .expect("start etcd");
                Member {
                    name,
                    client,
                    child: Some(child),
                    log,
                }
            })
            .collect();
        Etcd { members }
    }

    /// Waits (at most [`PATIENCE`]) until every member answers healthy.
    fn healthy(&mut self, tls: bool) -> Result<(), StartFailure> {
        let start = now();
        while start.elapsed() < PATIENCE {
            for m in &mut self.members {
                if let Some(status) = m.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                    return Err(Exited(format!(
                        "member {} exited ({status}); its log ends:\n{}",
                        m.name,
                        m.log_tail()
                    )));
                }
            }
            let up = if tls {
                // The health endpoint wants a client certificate too: the port answers.
                self.members.iter().all(|m| {
                    std::net::TcpStream::connect(m.client.trim_start_matches("https://")).is_ok()
                })
            } else {
                self.members
                    .iter()
                    .all(|m| http_get(&format!("{}/health", m.client)).contains("\"true\""))
            };
            if up {
                if tls {
                    // Listening is not yet serving: as before, a step more.
                    std::thread::sleep(STEP);
                }
                return Ok(());
            }
            std::thread::sleep(STEP);
        }
        Err(TimedOut(format!(
            "not healthy within {PATIENCE:?}; the members' logs end:\n{}",
            self.members
                .iter()
                .map(|m| format!("--- {}\n{}", m.name, m.log_tail()))
                .collect::<Vec<_>>()
                .join("\n")
        )))
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client.clone()).collect()
    }

    /// The member that leads the etcd cluster now.
    pub fn leader(&self) -> usize {
        wait("an etcd leader", || {
            self.members.iter().position(|m| {
                m.child.is_some()
                    && http_get(&format!("{}/metrics", m.client))
                        .lines()
                        .any(|l| l.trim() == "etcd_server_is_leader 1")
            })
        })
    }

    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill_all();
    }
}

pub fn http_get(url: &str) -> String {
    request(reqwest::Method::GET, url, None, Vec::new()).1
}

/// Polls `f` every 100 ms for at most [`PATIENCE`].
pub fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = now();
    while start.elapsed() < PATIENCE {
        if let Some(v) = f() {
            return v;
        }
        std::thread::sleep(STEP);
    }
    panic!("timed out waiting for {what}");
}
