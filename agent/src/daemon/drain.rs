//! This node's side of targeted scale-in (`[agent.drain]`): the leader chooses the
//! node and asks it to drain in its answer to the node's report; the node drains once,
//! as `method` says, and its next reports say how it went (`drain.state`: `draining`,
//! `drained` or `failed`). While `protect_file` exists the node reports `protected` and
//! is never chosen. An `undrain` answer returns the node to service (`undo_command`).
//!
//! Nothing here opens a port: every order arrives as the answer to a report this node
//! sent (or, on the leader's own node, from the leader's own table).

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;

use capstan_collectors::{DrainState, DrainStatus, ReportAnswer};
use capstan_config::raw::{DrainConfig, DrainMethod};

/// How many bytes of a command's error output its failure keeps (the last line of it).
const DETAIL_BYTES: usize = 300;

/// Where this node's drain stands.
#[derive(Debug, Default)]
enum Phase {
    /// Nothing asked.
    #[default]
    Idle,
    /// Under way, for `pool`.
    Draining { pool: String, task: JoinHandle<()> },
    /// Ended, well (`Drained`) or not (`Failed`); kept until the node is removed or
    /// returned to service, so it drains only once.
    Ended { pool: String, status: DrainStatus },
}

/// This node's drain: its settings and where it stands.
#[derive(Debug)]
pub struct Drainer {
    node: String,
    config: Mutex<DrainConfig>,
    phase: Mutex<Phase>,
    /// A pod on the node asks not to be disrupted (`method = "kubernetes"`), as last
    /// seen by [`Drainer::refresh`].
    pod_protected: std::sync::atomic::AtomicBool,
    /// The Kubernetes node, once connected (`method = "kubernetes"`).
    #[cfg(feature = "kubernetes")]
    kube: tokio::sync::Mutex<Option<super::kube_drain::KubeNode>>,
    /// When the node's pods were last looked at, and how often they are (every node
    /// lists its pods: at most once per [`PROTECTION_EVERY`], not every report, so a
    /// large cluster's agents do not load the API server).
    #[cfg(feature = "kubernetes")]
    looked: Mutex<(Option<tokio::time::Instant>, std::time::Duration)>,
}

/// How often a node's pods are looked at for `capstan.io/do-not-disrupt`.
#[cfg(feature = "kubernetes")]
pub const PROTECTION_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

impl Drainer {
    /// The drain of node `node`, as `config` says.
    pub fn new(node: impl Into<String>, config: DrainConfig) -> Arc<Self> {
        Arc::new(Self {
            node: node.into(),
            config: Mutex::new(config),
            phase: Mutex::new(Phase::Idle),
            pod_protected: std::sync::atomic::AtomicBool::new(false),
            #[cfg(feature = "kubernetes")]
            kube: tokio::sync::Mutex::new(None),
            #[cfg(feature = "kubernetes")]
            looked: Mutex::new((None, PROTECTION_EVERY)),
        })
    }

    /// New settings (a reload); a drain under way goes on as it started.
    pub fn configure(&self, config: DrainConfig) {
        *lock(&self.config) = config;
    }

    /// Whether the node asks not to be chosen: `protect_file` exists, or (with
    /// `method = "kubernetes"`) a pod on it is annotated `capstan.io/do-not-disrupt`.
    pub fn protected(&self) -> bool {
        lock(&self.config)
            .protect_file
            .as_ref()
            .is_some_and(|p| p.exists())
            || self
                .pod_protected
                .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Looks again at what protects the node from outside the agent (its pods'
    /// annotations, with `method = "kubernetes"`), before a report, at most once per
    /// [`PROTECTION_EVERY`]. A failed look keeps the last answer.
    pub async fn refresh(&self) {
        #[cfg(feature = "kubernetes")]
        if lock(&self.config).method == DrainMethod::Kubernetes {
            {
                let mut looked = lock(&self.looked);
                let now = tokio::time::Instant::now();
                if looked.0.is_some_and(|at| now.duration_since(at) < looked.1) {
                    return;
                }
                looked.0 = Some(now);
            }
            match self.kube_node().await {
                Ok(node) => match node.protected().await {
                    Ok(p) => self
                        .pod_protected
                        .store(p, std::sync::atomic::Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read this node's pods; protection as last seen")
                    }
                },
                Err(e) => tracing::warn!(error = %e, "cannot reach the Kubernetes API"),
            }
        }
    }

    /// The Kubernetes node, connected on first use.
    #[cfg(feature = "kubernetes")]
    async fn kube_node(&self) -> Result<super::kube_drain::KubeNode, String> {
        let mut cached = self.kube.lock().await;
        if let Some(n) = cached.as_ref() {
            return Ok(n.clone());
        }
        let name = {
            let config = lock(&self.config);
            config
                .kubernetes_node
                .clone()
                .unwrap_or_else(|| self.node.clone())
        };
        let n = super::kube_drain::KubeNode::connect(&name).await?;
        *cached = Some(n.clone());
        Ok(n)
    }

    /// Uses `node` for the Kubernetes calls (tests).
    #[cfg(all(test, feature = "kubernetes"))]
    pub async fn use_kube(&self, node: super::kube_drain::KubeNode) {
        *self.kube.lock().await = Some(node);
        // Every refresh looks.
        lock(&self.looked).1 = std::time::Duration::ZERO;
    }

    /// Where the drain stands, for this node's report; `None` while none was asked.
    pub fn status(&self) -> Option<DrainStatus> {
        match &*lock(&self.phase) {
            Phase::Idle => None,
            Phase::Draining { .. } => Some(DrainStatus {
                state: DrainState::Draining,
                detail: None,
            }),
            Phase::Ended { status, .. } => Some(status.clone()),
        }
    }

    /// Acts on the leader's answer to this node's report, at `now`: starts the drain
    /// it asks for (once: a drain asked again while under way or ended changes
    /// nothing), or returns the node to service.
    pub fn answer(self: &Arc<Self>, answer: &ReportAnswer, now: DateTime<Utc>) {
        if let Some(order) = &answer.drain {
            self.start(&order.pool, order.deadline, now);
        } else if let Some(order) = &answer.undrain {
            self.undo(&order.pool);
        }
    }

    fn start(self: &Arc<Self>, pool: &str, deadline: DateTime<Utc>, now: DateTime<Utc>) {
        let mut phase = lock(&self.phase);
        if !matches!(*phase, Phase::Idle) {
            return;
        }
        let config = lock(&self.config).clone();
        tracing::warn!(pool, %deadline, method = config.method.as_str(), "the leader chose this node for scale-in: draining");
        match config.method {
            DrainMethod::None => {
                *phase = Phase::Ended {
                    pool: pool.to_owned(),
                    status: DrainStatus {
                        state: DrainState::Drained,
                        detail: Some("nothing to drain (method \"none\")".to_owned()),
                    },
                };
            }
            DrainMethod::Command | DrainMethod::Kubernetes => {
                let me = Arc::clone(self);
                let env = self.env(pool, deadline);
                let budget = (deadline - now).to_std().unwrap_or_default();
                let owned_pool = pool.to_owned();
                let task = tokio::spawn(async move {
                    let status = match config.method {
                        DrainMethod::Kubernetes => me.drain_kubernetes(budget).await,
                        _ => run(&config.command, &env, Some(budget)).await,
                    };
                    match status.state {
                        DrainState::Drained => tracing::info!(pool = %owned_pool, "drained"),
                        _ => {
                            tracing::error!(pool = %owned_pool, detail = ?status.detail, "the drain failed")
                        }
                    }
                    let mut phase = lock(&me.phase);
                    if matches!(&*phase, Phase::Draining { pool, .. } if *pool == owned_pool) {
                        *phase = Phase::Ended {
                            pool: owned_pool,
                            status,
                        };
                    }
                });
                *phase = Phase::Draining {
                    pool: pool.to_owned(),
                    task,
                };
            }
        }
    }

    fn undo(self: &Arc<Self>, pool: &str) {
        let previous = std::mem::take(&mut *lock(&self.phase));
        let was = match previous {
            Phase::Idle => return,
            Phase::Draining { pool, task } => {
                // The command is killed as its task is dropped.
                task.abort();
                pool
            }
            Phase::Ended { pool, .. } => pool,
        };
        let config = lock(&self.config).clone();
        tracing::warn!(pool = %was, "the leader keeps this node: returning it to service");
        #[cfg(feature = "kubernetes")]
        if config.method == DrainMethod::Kubernetes {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                let uncordoned = match me.kube_node().await {
                    Ok(node) => node.cordon(false).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = uncordoned {
                    tracing::error!(error = %e, "cannot uncordon this node; it stays unschedulable");
                }
            });
        }
        if config.method != DrainMethod::None && !config.undo_command.is_empty() {
            let env = self.env(pool, DateTime::<Utc>::UNIX_EPOCH);
            tokio::spawn(async move {
                let status = run(&config.undo_command, &env, None).await;
                if status.state != DrainState::Drained {
                    tracing::error!(detail = ?status.detail, "undo_command failed; the node may still be drained");
                }
            });
        }
    }

    /// `method = "kubernetes"`: cordon, evict, wait, within `budget`.
    async fn drain_kubernetes(&self, budget: std::time::Duration) -> DrainStatus {
        #[cfg(feature = "kubernetes")]
        {
            match self.kube_node().await {
                Ok(node) => node.drain(budget).await,
                Err(e) => DrainStatus {
                    state: DrainState::Failed,
                    detail: Some(e),
                },
            }
        }
        #[cfg(not(feature = "kubernetes"))]
        {
            let _ = budget;
            DrainStatus {
                state: DrainState::Failed,
                detail: Some("this capstan is built without the `kubernetes` feature".to_owned()),
            }
        }
    }

    /// The command's environment on top of the agent's.
    fn env(&self, pool: &str, deadline: DateTime<Utc>) -> Vec<(&'static str, String)> {
        vec![
            ("CAPSTAN_NODE", self.node.clone()),
            ("CAPSTAN_POOL", pool.to_owned()),
            (
                "CAPSTAN_DRAIN_DEADLINE",
                deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        ]
    }
}

/// Runs `argv` with `env` added, for at most `budget`: drained on exit status 0, else
/// failed with the status and the last line of its error output. The process is a
/// plain child watched every 50 ms (no shell, no extra runtime feature); it is killed
/// at the budget, or when the drain is given up (the task dropped).
async fn run(
    argv: &[String],
    env: &[(&'static str, String)],
    budget: Option<std::time::Duration>,
) -> DrainStatus {
    let failed = |detail: String| DrainStatus {
        state: DrainState::Failed,
        detail: Some(detail),
    };
    let Some((program, args)) = argv.split_first() else {
        return failed("no command".to_owned());
    };
    let spawned = std::process::Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => Killed(c),
        Err(e) => return failed(format!("cannot run {program}: {e}")),
    };
    // Its error output, read to the end beside it, so a chatty command never blocks.
    let stderr = child.0.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = std::io::Read::read_to_end(&mut pipe, &mut text);
            text
        })
    });
    #[allow(clippy::disallowed_methods)] // a child's timeout, not a decision input
    let started = std::time::Instant::now();
    let status = loop {
        match child.0.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return failed(format!("{program}: {e}")),
        }
        if budget.is_some_and(|b| started.elapsed() >= b) {
            return failed(format!(
                "{program} still ran at the deadline ({}s); stopped",
                budget.unwrap_or_default().as_secs()
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    if status.success() {
        return DrainStatus {
            state: DrainState::Drained,
            detail: None,
        };
    }
    let text = stderr
        .and_then(|t| t.join().ok())
        .map(|t| String::from_utf8_lossy(&t).into_owned())
        .unwrap_or_default();
    let mut detail = format!("{program}: {status}");
    if let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) {
        let line: String = line.trim().chars().take(DETAIL_BYTES).collect();
        detail.push_str(": ");
        detail.push_str(&line);
    }
    failed(detail)
}

/// A child that is killed (and reaped) when dropped unless it has exited.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_collectors::{DrainOrder, UndrainOrder};

    fn order(pool: &str, deadline: DateTime<Utc>) -> ReportAnswer {
        ReportAnswer {
            drain: Some(DrainOrder {
                pool: pool.into(),
                deadline,
            }),
            undrain: None,
        }
    }

    async fn settled(d: &Drainer) -> DrainStatus {
        for _ in 0..200 {
            if let Some(s) = d.status().filter(|s| s.state != DrainState::Draining) {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("the drain did not end: {:?}", d.status());
    }

    fn script(dir: &std::path::Path, name: &str, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    #[tokio::test]
    async fn the_command_drains_once_with_its_environment_and_undo_returns_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("env.log");
        let drain = script(
            dir.path(),
            "drain.sh",
            &format!(
                "echo \"$CAPSTAN_NODE $CAPSTAN_POOL $CAPSTAN_DRAIN_DEADLINE\" >> {}",
                log.display()
            ),
        );
        let undo = script(
            dir.path(),
            "undo.sh",
            &format!("echo undo >> {}", log.display()),
        );
        let protect = dir.path().join("protect");
        let d = Drainer::new(
            "i-1",
            DrainConfig {
                method: DrainMethod::Command,
                command: vec![drain],
                undo_command: vec![undo],
                protect_file: Some(protect.clone()),
                kubernetes_node: None,
            },
        );
        assert!(!d.protected());
        std::fs::write(&protect, "").unwrap();
        assert!(d.protected());
        assert_eq!(d.status(), None);
        let now: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let deadline = now + chrono::Duration::minutes(10);
        d.answer(&order("web", deadline), now);
        assert_eq!(settled(&d).await.state, DrainState::Drained);
        // Asked again: it drained already, nothing runs again.
        d.answer(&order("web", deadline), now);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "i-1 web 2026-12-07T10:10:00Z\n"
        );
        d.answer(
            &ReportAnswer {
                drain: None,
                undrain: Some(UndrainOrder { pool: "web".into() }),
            },
            now,
        );
        assert_eq!(d.status(), None);
        for _ in 0..100 {
            if std::fs::read_to_string(&log).unwrap().contains("undo") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(std::fs::read_to_string(&log).unwrap().ends_with("undo\n"));
    }

    #[tokio::test]
    async fn a_failing_or_overdue_command_is_a_failed_drain_that_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let fail = script(
            dir.path(),
            "fail.sh",
            "echo 'pdb blocks eviction' >&2; exit 3",
        );
        let d = Drainer::new(
            "i-2",
            DrainConfig {
                method: DrainMethod::Command,
                command: vec![fail],
                ..Default::default()
            },
        );
        let now: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        d.answer(&order("web", now + chrono::Duration::minutes(1)), now);
        let s = settled(&d).await;
        assert_eq!(s.state, DrainState::Failed);
        let detail = s.detail.unwrap();
        assert!(detail.contains("exit status: 3"), "{detail}");
        assert!(detail.ends_with("pdb blocks eviction"), "{detail}");

        let slow = script(dir.path(), "slow.sh", "sleep 30");
        let d = Drainer::new(
            "i-3",
            DrainConfig {
                method: DrainMethod::Command,
                command: vec![slow],
                ..Default::default()
            },
        );
        // A deadline one second away: stopped there.
        d.answer(&order("web", now + chrono::Duration::seconds(1)), now);
        assert_eq!(d.status().unwrap().state, DrainState::Draining);
        let s = settled(&d).await;
        assert_eq!(s.state, DrainState::Failed);
        assert!(s.detail.unwrap().contains("deadline"));
    }

    #[tokio::test]
    async fn with_nothing_to_drain_the_node_is_drained_at_once() {
        let d = Drainer::new("i-4", DrainConfig::default());
        let now: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        d.answer(&order("web", now), now);
        assert_eq!(d.status().unwrap().state, DrainState::Drained);
        assert!(!d.protected());
    }
}
