//! The harness the end-to-end tests share: the built binary, an agent process that is
//! killed on drop, polling with a bound.

#![allow(dead_code)] // each test binary uses its own part of the harness

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub mod configs;

pub const BIN: &str = env!("CARGO_BIN_EXE_capstan");
/// Upper bound for anything we wait on; the agent runs at a 1 s interval.
pub const PATIENCE: Duration = Duration::from_secs(30);
pub const STEP: Duration = Duration::from_millis(100);

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A port free on 127.0.0.1 now (for servers that cannot take port 0 and say which
/// they got: etcd, Prometheus, node_exporter).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP request on a runtime of its own: (status, body), or (0, the error).
pub fn request(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    request_with(method, url, token, &[], body)
}

/// [`request`] with more headers.
pub fn request_with(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = capstan::net::client_builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut req = client.request(method, url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if !body.is_empty() {
            req = req.header("content-type", "application/json").body(body);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        }
    })
}

/// A running agent; killed on drop if the test did not stop it.
pub struct Agent {
    pub child: Child,
    pub base: String,
    pub state: PathBuf,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    pub fn start(config: &Path, state: &Path) -> Agent {
        Self::start_with(config, state, &[])
    }

    pub fn start_with(config: &Path, state: &Path, env: &[(&str, &str)]) -> Agent {
        // A bench may run the shipped build instead of the test build.
        let bin = std::env::var("CAPSTAN_BENCH_BIN").unwrap_or_else(|_| BIN.to_owned());
        let mut child = Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .env("CAPSTAN_AGENT__LISTEN", "127.0.0.1:0")
            .env("CAPSTAN_AGENT__STATE_DIR", state)
            .env("CAPSTAN_AGENT__INTERVAL", "1s")
            .env("CAPSTAN_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start capstan");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = tx.send(rest.trim().to_owned());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let base = match rx.recv_timeout(PATIENCE) {
            Ok(base) => base,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "agent did not start listening; log:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        Agent {
            child,
            base,
            state: state.to_owned(),
            log,
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        request(
            reqwest::Method::GET,
            &format!("{}{path}", self.base),
            None,
            Vec::new(),
        )
    }

    /// POSTs `body` to `path` with an optional bearer token.
    pub fn post(&self, path: &str, token: Option<&str>, body: Vec<u8>) -> (u16, String) {
        request(
            reqwest::Method::POST,
            &format!("{}{path}", self.base),
            token,
            body,
        )
    }

    /// POSTs a report as node `node` names itself (`X-Capstan-Node`), with `token`.
    pub fn report_as(&self, node: &str, token: &str, body: Vec<u8>) -> (u16, String) {
        request_with(
            reqwest::Method::POST,
            &format!("{}/v1/reports", self.base),
            Some(token),
            &[("x-capstan-node", node)],
            body,
        )
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn status(&self) -> serde_json::Value {
        let (code, body) = self.get("/v1/status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Polls `f` until it returns `Some`, or fails the test with `what` and the log.
    pub fn wait_for<T>(&self, what: &str, mut f: impl FnMut(&Agent) -> Option<T>) -> T {
        let mut waited = Duration::ZERO;
        while waited < PATIENCE {
            if let Some(v) = f(self) {
                return v;
            }
            std::thread::sleep(STEP);
            waited += STEP;
        }
        panic!(
            "timed out waiting for {what}; log:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn journal_lines(&self) -> Vec<serde_json::Value> {
        let dir = self.state.join("journal");
        let mut lines = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            lines.extend(
                text.lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
            );
        }
        lines
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut waited = Duration::ZERO;
        while waited < PATIENCE {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(STEP);
            waited += STEP;
        }
        panic!("agent did not exit");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

pub fn example() -> String {
    std::fs::read_to_string(repo().join("examples/standalone.toml")).unwrap()
}

/// Test certificates for mutual TLS: a CA, and one leaf certificate (for 127.0.0.1 and
/// localhost, server and client use) written as PEM files under `dir`.
#[cfg(feature = "tls")]
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[cfg(feature = "tls")]
pub fn pki(dir: &Path, name: &str) -> Pki {
    pki_for_nodes(dir, name, &[])
}

/// [`pki`] whose leaf also names `nodes` (URIs `capstan://node/<id>`): the nodes an
/// agent presenting it may report as.
#[cfg(feature = "tls")]
pub fn pki_for_nodes(dir: &Path, name: &str, nodes: &[&str]) -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    for node in nodes {
        leaf.subject_alt_names.push(SanType::URI(
            format!("capstan://node/{node}").try_into().unwrap(),
        ));
    }
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    leaf.distinguished_name
        .push(DnType::CommonName, format!("{name} agent"));
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let p = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&p.ca, ca_cert.pem()).unwrap();
    std::fs::write(&p.cert, cert.pem()).unwrap();
    std::fs::write(&p.key, key.serialize_pem()).unwrap();
    p
}

/// A client that presents `pki`'s certificate (when given) and trusts `ca`.
#[cfg(feature = "tls")]
pub fn tls_client(ca: &Path, identity: Option<&Pki>) -> reqwest::Client {
    let mut b = capstan::net::client_builder()
        .timeout(Duration::from_secs(5))
        .tls_certs_only([reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap()]);
    if let Some(p) = identity {
        let mut pem = std::fs::read(&p.cert).unwrap();
        pem.extend(std::fs::read(&p.key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

/// Serves `test_demand <value()>` in the text format.
pub fn demand_endpoint(value: impl Fn() -> f64 + Send + 'static) -> u16 {
    http_endpoint("text/plain; version=0.0.4", move || {
        format!("# TYPE test_demand gauge\ntest_demand {}\n", value())
    })
}

/// Answers every request with 200 and `body()` as `content_type`.
pub fn http_endpoint(
    content_type: &'static str,
    body: impl Fn() -> String + Send + 'static,
) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            // Read the request head.
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let body = body();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.flush();
            let mut rest = [0_u8; 64];
            let _ = stream.set_read_timeout(Some(Duration::from_millis(10)));
            let _ = stream.read(&mut rest);
        }
    });
    port
}

/// A node's report token under `cluster.auth = "node-hmac"`: the lowercase hex of
/// HMAC-SHA256(secret, node_id), computed here independently of the agent.
pub fn node_token(secret: &str, node_id: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(node_id.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
