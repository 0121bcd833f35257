//! moto_server for the AWS tests, and a fault-injecting proxy in front of it.
//!
//! Each test starts its own moto_server on 127.0.0.1 and a port of its own, so no state
//! crosses between tests (`Moto::reset` empties one in place); it is killed on drop.
//! moto has no fault injection of its own, so `Proxy` forwards AWS query-protocol
//! requests to it and, when its rule says so, answers in moto's place with AWS
//! `Throttling`, a 500, a dropped connection, or a delay. It records every action that
//! reached moto, with its parameters, so tests can check what the agent asked for.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{PATIENCE, STEP, request};

/// A moto_server process; killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Moto {
    /// Starts moto_server (found on PATH; scripts/test-deps.sh installs it) on a port
    /// it picks itself (`-p 0`: a port chosen beforehand could be taken by another
    /// process before moto binds it, and then the test would talk to that one), reads
    /// the port from its log, and waits until it answers.
    pub fn start(log: &Path) -> Moto {
        let file = std::fs::File::create(log).unwrap();
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .stdin(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]'; scripts/test-deps.sh does)");
        // Bounded: PATIENCE in steps of STEP.
        let tries = PATIENCE.as_millis() / STEP.as_millis();
        let mut url = None;
        for _ in 0..tries {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "moto_server exited ({status}); its log:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            url = url.or_else(|| {
                let text = std::fs::read_to_string(log).ok()?;
                let at = text.split("Running on ").nth(1)?;
                let end = at.find(char::is_whitespace)?;
                Some(at[..end].trim_end_matches('/').to_owned())
            });
            if let Some(url) = &url {
                let (code, _) = request(
                    reqwest::Method::GET,
                    &format!("{url}/moto-api/"),
                    None,
                    Vec::new(),
                );
                if code == 200 {
                    return Moto {
                        child,
                        url: url.clone(),
                    };
                }
            }
            std::thread::sleep(STEP);
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "moto_server did not answer ({}); its log:\n{}",
            url.as_deref().unwrap_or("no port in its log"),
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// Empties every backend.
    pub fn reset(&self) {
        let (code, body) = request(
            reqwest::Method::POST,
            &format!("{}/moto-api/reset", self.url),
            None,
            Vec::new(),
        );
        assert_eq!(code, 200, "{body}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does with one request instead of forwarding it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// HTTP 400 with AWS's `Throttling` error document.
    Throttle,
    /// HTTP 500 with an `InternalFailure` document.
    ServerError,
    /// Reads the request and closes the connection without a response.
    Drop,
    /// Forwards the request after this long.
    Delay(Duration),
    /// Forwards the request once the test calls [`Proxy::release`] (at most a minute):
    /// a request held in the network.
    Hold,
}

/// One request that reached moto.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The query action, e.g. `SetDesiredCapacity`.
    pub action: String,
    /// Its form parameters.
    pub params: BTreeMap<String, String>,
}

type Rule = Box<dyn FnMut(u64, &str) -> Option<Fault> + Send>;

struct ProxyState {
    rule: Rule,
    count: u64,
    arrived: Vec<(Instant, String)>,
    released: bool,
    seen: Vec<Seen>,
    faults: Vec<(String, Fault)>,
}

/// A fault-injecting HTTP proxy in front of moto.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`: the agent's `endpoint_url`.
    pub url: String,
    state: Arc<Mutex<ProxyState>>,
}

impl Proxy {
    /// Forwards to `upstream` (`http://127.0.0.1:PORT`); no faults until `set_rule`.
    pub fn start(upstream: &str) -> Proxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("http upstream")
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ProxyState {
            rule: Box::new(|_, _| None),
            count: 0,
            arrived: Vec::new(),
            released: false,
            seen: Vec::new(),
            faults: Vec::new(),
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let state = shared.clone();
                let upstream = upstream.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &upstream, &state);
                });
            }
        });
        Proxy { url, state }
    }

    /// `rule(n, action)` decides the fault of the n-th request (from 0).
    /// Held requests are held again from here on, until the next [`Proxy::release`].
    pub fn set_rule(&self, rule: impl FnMut(u64, &str) -> Option<Fault> + Send + 'static) {
        let mut s = self.state.lock().unwrap();
        s.rule = Box::new(rule);
        s.released = false;
    }

    /// Every request the proxy received (whatever it then did with it): when it
    /// arrived, and its action.
    pub fn arrivals(&self) -> Vec<(Instant, String)> {
        self.state.lock().unwrap().arrived.clone()
    }

    /// Lets every request held by [`Fault::Hold`] go on to moto (and any later one
    /// through at once).
    pub fn release(&self) {
        self.state.lock().unwrap().released = true;
    }

    /// Requests passed on to moto, in order. A request is here from the moment it is
    /// written to moto, so whatever moto's own state shows, its request is already here.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Faults injected, with the action they hit.
    pub fn faults(&self) -> Vec<(String, Fault)> {
        self.state.lock().unwrap().faults.clone()
    }

    /// The `DesiredCapacity` of every `SetDesiredCapacity` that reached moto.
    pub fn desired_calls(&self) -> Vec<u32> {
        self.seen()
            .iter()
            .filter(|s| s.action == "SetDesiredCapacity")
            .filter_map(|s| s.params.get("DesiredCapacity")?.parse().ok())
            .collect()
    }
}

fn form(body: &str) -> BTreeMap<String, String> {
    form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect()
}

fn serve(client: TcpStream, upstream: &str, state: &Mutex<ProxyState>) -> std::io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut length = 0_usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        // The proxy answers one request per connection.
        if lower.starts_with("connection:") {
            continue;
        }
        head.push(line);
    }
    let mut body = vec![0_u8; length];
    reader.read_exact(&mut body)?;
    let params = form(&String::from_utf8_lossy(&body));
    let action = params.get("Action").cloned().unwrap_or_default();
    #[allow(clippy::disallowed_methods)]
    let arrived = Instant::now();
    let fault = {
        let mut s = state.lock().unwrap();
        s.arrived.push((arrived, action.clone()));
        let n = s.count;
        s.count += 1;
        let fault = (s.rule)(n, &action);
        if let Some(f) = fault {
            s.faults.push((action.clone(), f));
        }
        fault
    };
    let mut client = client;
    match fault {
        Some(Fault::Throttle) => {
            return canned(
                &mut client,
                "400 Bad Request",
                "<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>capstan-test</RequestId></ErrorResponse>",
            );
        }
        Some(Fault::ServerError) => {
            return canned(
                &mut client,
                "500 Internal Server Error",
                "<ErrorResponse><Error><Type>Receiver</Type><Code>InternalFailure</Code><Message>injected</Message></Error><RequestId>capstan-test</RequestId></ErrorResponse>",
            );
        }
        Some(Fault::Drop) => {
            let _ = client.shutdown(std::net::Shutdown::Both);
            return Ok(());
        }
        Some(Fault::Delay(d)) => std::thread::sleep(d),
        Some(Fault::Hold) => {
            for _ in 0..3000 {
                if state.lock().unwrap().released {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        None => {}
    }
    let mut up = TcpStream::connect(upstream)?;
    for line in &head {
        up.write_all(line.as_bytes())?;
    }
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    up.flush()?;
    // Recorded once written to moto and before its answer is read: moto changes its
    // state before it answers, so a test that sees the change through moto itself
    // finds the request here too (recorded after the answer, it raced such a test).
    state.lock().unwrap().seen.push(Seen { action, params });
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    client.write_all(&response)?;
    client.flush()?;
    let _ = client.shutdown(std::net::Shutdown::Write);
    Ok(())
}

fn canned(client: &mut TcpStream, status: &str, xml: &str) -> std::io::Result<()> {
    write!(
        client,
        "HTTP/1.1 {status}\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{xml}",
        xml.len()
    )?;
    client.flush()?;
    let _ = client.shutdown(std::net::Shutdown::Write);
    Ok(())
}
