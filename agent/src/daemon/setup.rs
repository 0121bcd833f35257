//! Setting the daemon up: the token, the reports listener's TLS and advertised URL, the
//! ingest settings, and the coordinator with its decision and history stores.

use super::*;

/// The token in `path` (the file `cluster.<key>` names), trimmed; an error names the
/// key and the file.
pub fn read_token(path: Option<&std::path::Path>, key: &str) -> anyhow::Result<Option<String>> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read cluster.{key} {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        !token.is_empty(),
        "cluster.{key} {} is empty",
        path.display()
    );
    anyhow::ensure!(
        token.chars().all(|c| c.is_ascii_graphic()),
        "cluster.{key} {}: the token must be printable ASCII without spaces",
        path.display()
    );
    Ok(Some(token.to_owned()))
}

/// The cluster's token files, read at start and at every reload (no `Debug`: they
/// are secrets).
pub(super) struct Tokens {
    /// `token_file`: the cluster secret or shared token.
    pub(super) token: Option<String>,
    /// `previous_token_file`: the one being rotated out.
    pub(super) previous: Option<String>,
    /// `status_token_file`: what `/v1/status` asks for.
    pub(super) status: Option<String>,
}

impl Tokens {
    pub(super) fn read(cfg: &ValidatedConfig) -> anyhow::Result<Self> {
        let c = &cfg.cluster;
        Ok(Self {
            token: read_token(c.token_file.as_deref(), "token_file")?,
            previous: read_token(c.previous_token_file.as_deref(), "previous_token_file")?,
            status: read_token(c.status_token_file.as_deref(), "status_token_file")?,
        })
    }
}

/// What ingest checks reports against, from `cfg` and its tokens.
pub(super) fn ingest_settings(cfg: &ValidatedConfig, tokens: &Tokens) -> ingest::Settings {
    ingest::Settings {
        token: tokens
            .token
            .as_deref()
            .map(crate::cluster::identity::Secret::new),
        previous: tokens
            .previous
            .as_deref()
            .map(crate::cluster::identity::Secret::new),
        auth: cfg.cluster.auth,
        max_nodes: cfg.cluster.max_nodes,
        workload_ranges: cfg
            .scrapes
            .iter()
            .map(|s| (s.name.clone(), s.range))
            .collect(),
        pools: cfg.pools.iter().map(|p| p.name.clone()).collect(),
        interval: cfg.agent.interval,
        node_expiry: cfg.cluster.node_expiry,
    }
}

/// What this node presents to the leader: `token`, as `cfg.cluster.auth` says. Says
/// in the log when every node may report as any other.
pub(super) fn credential(
    cfg: &ValidatedConfig,
    token: Option<String>,
) -> Option<crate::cluster::identity::Credential> {
    let secret = token?;
    if cfg.cluster.auth == capstan_config::raw::ClusterAuth::SharedToken {
        tracing::warn!(
            "cluster.auth = \"shared-token\": every node presents the same token, and anyone holding it can report as any node; switch to \"node-hmac\" (the default) once every agent is upgraded"
        );
    }
    Some(crate::cluster::identity::Credential {
        auth: cfg.cluster.auth,
        secret,
    })
}

/// Where other agents reach this one: `cluster.advertise_url`, else the address it
/// takes reports on (`bound`; https with `[cluster.tls]`), with the host name in place of
/// an unspecified address.
pub(super) fn advertise_url(
    cfg: &ValidatedConfig,
    bound: std::net::SocketAddr,
    tls: bool,
) -> String {
    if let Some(url) = &cfg.cluster.advertise_url {
        return url.trim_end_matches('/').to_owned();
    }
    let scheme = if tls { "https" } else { "http" };
    if bound.ip().is_unspecified() {
        let host = hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".to_owned());
        format!("{scheme}://{host}:{}", bound.port())
    } else {
        format!("{scheme}://{bound}")
    }
}

/// The mutual-TLS reports listener, bound, with its server configuration and this
/// agent's client configuration; `None` without `[cluster.tls]`.
#[cfg(feature = "tls")]
pub(super) type TlsSetup = Option<(
    std::net::TcpListener,
    rustls::ServerConfig,
    rustls::ClientConfig,
)>;

#[cfg(feature = "tls")]
pub(super) fn tls_setup(cfg: &ValidatedConfig) -> anyhow::Result<TlsSetup> {
    let Some(tls) = &cfg.cluster.tls else {
        return Ok(None);
    };
    let server = crate::cluster::tls::server_config(tls)?;
    let client = crate::cluster::tls::client_config(tls)?;
    let listener = std::net::TcpListener::bind(tls.listen)
        .with_context(|| format!("cannot listen on cluster.tls.listen {}", tls.listen))?;
    listener.set_nonblocking(true)?;
    Ok(Some((listener, server, client)))
}

/// Where this agent's leadership, decision state and demand history live.
pub(super) struct Cluster {
    pub(super) coordinator: Box<dyn Coordinator>,
    pub(super) decisions: Arc<dyn DecisionStore>,
    pub(super) history: Arc<dyn HistoryStore>,
    /// The history is shared with the other agents (a new leader reads it back).
    pub(super) shared_history: bool,
}

/// Opens the coordinator `cluster.coordinator` names, with the decision state and
/// demand history where the next leader reads them: etcd for the etcd coordinator
/// (`shared_history`), this machine's state_dir otherwise (the Kubernetes coordinator
/// keeps decision state on its Lease).
pub(super) async fn open_cluster(
    cfg: &ValidatedConfig,
    node_id: &str,
    url: &str,
    #[cfg_attr(not(feature = "kubernetes"), allow(unused_variables))] clock: &Arc<dyn Clock>,
) -> anyhow::Result<Cluster> {
    let state_dir = &cfg.agent.state_dir;
    let file_history = || -> anyhow::Result<Arc<dyn HistoryStore>> {
        Ok(Arc::new(
            FileHistory::open(state_dir.join("history")).with_context(|| {
                format!(
                    "cannot open the demand history under {}",
                    state_dir.join("history").display()
                )
            })?,
        ))
    };
    let file_decisions = || -> anyhow::Result<Arc<dyn DecisionStore>> {
        let dir = state_dir.join("decisions");
        Ok(Arc::new(FileDecisions::open(&dir).with_context(|| {
            format!("cannot open the decision state under {}", dir.display())
        })?))
    };
    Ok(match &cfg.cluster.coordinator {
        capstan_config::Coordinator::Standalone => Cluster {
            coordinator: Box::new(Standalone::new(node_id, Some(url.to_owned()))),
            decisions: file_decisions()?,
            history: file_history()?,
            shared_history: false,
        },
        #[cfg(feature = "etcd")]
        capstan_config::Coordinator::Etcd {
            endpoints,
            prefix,
            lease_ttl,
            tls,
            user,
        } => {
            let settings = crate::cluster::etcd::EtcdSettings {
                endpoints: endpoints.clone(),
                prefix: prefix.clone(),
                lease_ttl: *lease_ttl,
                node_id: node_id.to_owned(),
                url: Some(url.to_owned()),
                access: crate::cluster::etcd::EtcdAccess::load(tls.as_ref(), user.as_ref())?,
            };
            let reach = || format!("cannot reach etcd at {}", endpoints.join(", "));
            // One client for the decision state and the demand history.
            let client = settings.client().await.with_context(reach)?;
            let history = crate::cluster::etcd::EtcdHistory::start(client.clone(), prefix);
            let etcd = crate::cluster::etcd::EtcdCoordinator::start(settings);
            let store = crate::cluster::etcd::EtcdDecisions::new(client, prefix, etcd.fence());
            Cluster {
                coordinator: Box::new(etcd),
                decisions: Arc::new(store),
                history: Arc::new(history),
                shared_history: true,
            }
        }
        #[cfg(feature = "kubernetes")]
        capstan_config::Coordinator::Kubernetes {
            namespace,
            lease_name,
            lease_duration,
        } => {
            let namespace = namespace
                .clone()
                .unwrap_or_else(crate::cluster::kubernetes::pod_namespace);
            let client = crate::cluster::kubernetes::client().await?;
            let identity = crate::cluster::kubernetes::holder_identity(node_id);
            let store = crate::cluster::kubernetes::LeaseDecisions::new(
                client.clone(),
                &namespace,
                lease_name,
                &identity,
            );
            let kube = crate::cluster::kubernetes::KubeCoordinator::start(
                client,
                crate::cluster::kubernetes::KubeSettings {
                    namespace,
                    lease_name: lease_name.clone(),
                    duration: *lease_duration,
                    node_id: node_id.to_owned(),
                    identity,
                    url: Some(url.to_owned()),
                },
                clock.clone(),
            );
            Cluster {
                coordinator: Box::new(kube),
                decisions: Arc::new(store),
                history: file_history()?,
                shared_history: false,
            }
        }
        // Reachable in builds without one of the coordinator features.
        #[allow(unreachable_patterns)]
        other => anyhow::bail!(
            "cluster.coordinator \"{}\" is not available in this build of capstan; build it with `--features {}`",
            other.name(),
            other.name()
        ),
    })
}
