//! The agent's listeners and HTTP servers: bound at start, serving `/metrics`, health,
//! status and (on the leader) reports, and stopped on SIGTERM.

use super::*;

/// The agent's listeners, bound: `agent.listen`, and with `[cluster.tls]` the
/// mutual-TLS reports listener.
pub(super) struct Listeners {
    plain: tokio::net::TcpListener,
    pub(super) addr: std::net::SocketAddr,
    #[cfg(feature = "tls")]
    tls: TlsSetup,
}

impl Listeners {
    pub(super) async fn bind(cfg: &ValidatedConfig) -> anyhow::Result<Self> {
        let plain = tokio::net::TcpListener::bind(cfg.agent.listen)
            .await
            .with_context(|| format!("cannot listen on agent.listen {}", cfg.agent.listen))?;
        let addr = plain.local_addr()?;
        #[cfg(not(feature = "tls"))]
        anyhow::ensure!(
            cfg.cluster.tls.is_none(),
            "[cluster.tls] needs a build of capstan with `--features tls`"
        );
        Ok(Self {
            plain,
            addr,
            #[cfg(feature = "tls")]
            tls: tls_setup(cfg)?,
        })
    }

    /// Where followers send reports: the mutual-TLS listener when there is one.
    pub(super) fn reports_addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        #[cfg(feature = "tls")]
        if let Some((listener, _, _)) = &self.tls {
            return Ok(listener.local_addr()?);
        }
        Ok(self.addr)
    }

    /// The client this node's reports go out with (presenting its certificate with
    /// `[cluster.tls]`).
    pub(super) fn reporter_client(&self, timeout: Duration) -> anyhow::Result<reqwest::Client> {
        #[cfg(feature = "tls")]
        return crate::cluster::reporter::client(timeout, self.tls.as_ref().map(|t| t.2.clone()));
        #[cfg(not(feature = "tls"))]
        crate::cluster::reporter::client(timeout)
    }

    /// Serves the endpoints until `stop` turns true, each listener within the bounds of
    /// [`super::bounds`]. With `[cluster.tls]`, reports are taken on their own
    /// mutual-TLS listener only.
    pub(super) fn serve(
        self,
        cfg: &ValidatedConfig,
        shared: &Arc<Shared>,
        ingest: &Arc<Ingest>,
        status_token: http::StatusToken,
        stop: watch::Receiver<bool>,
    ) -> anyhow::Result<Servers> {
        #[cfg(feature = "tls")]
        let listeners = 1 + usize::from(self.tls.is_some());
        #[cfg(not(feature = "tls"))]
        let listeners = 1;
        let bounds = bounds::Bounds {
            max_connections: bounds::connections_within_file_limit(
                cfg.agent.max_connections,
                listeners,
            ),
            request_timeout: cfg.agent.request_timeout,
        };
        let handle = axum_server::Handle::new();
        let stopping = handle.clone();
        let mut stop = stop;
        tokio::spawn(async move {
            let _ = stop.wait_for(|stop| *stop).await;
            stopping.graceful_shutdown(Some(Duration::from_secs(3)));
        });
        #[cfg(feature = "tls")]
        let reports = match self.tls {
            None => None,
            Some((listener, server, _)) => {
                let address = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                tracing::info!(address = %address, "taking reports over mutual TLS");
                let config = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server));
                let tls = crate::cluster::tls::Certified(
                    axum_server::tls_rustls::RustlsAcceptor::new(config.clone())
                        .acceptor(axum_server::accept::NoDelayAcceptor::new()),
                );
                let router =
                    http::reports_router(shared.clone(), ingest.clone(), cfg.agent.request_timeout);
                let server = bounds::server(listener, tls, bounds, handle.clone())?;
                Some((
                    tokio::spawn(server.serve(router.into_make_service())),
                    config,
                ))
            }
        };
        let plain_reports = cfg.cluster.tls.is_none().then(|| ingest.clone());
        let router = http::router(
            shared.clone(),
            plain_reports,
            status_token,
            cfg.agent.request_timeout,
        );
        // Answers go out at once: agents and scrapers wait on each one.
        let server = bounds::server(
            self.plain.into_std()?,
            axum_server::accept::NoDelayAcceptor::new(),
            bounds,
            handle,
        )?;
        let plain = tokio::spawn(server.serve(router.into_make_service()));
        Ok(Servers {
            plain,
            #[cfg(feature = "tls")]
            reports,
        })
    }
}

/// The running HTTP servers.
pub(super) struct Servers {
    plain: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The mutual-TLS reports server, and its certificates (swapped on reload).
    #[cfg(feature = "tls")]
    reports: Option<(
        tokio::task::JoinHandle<std::io::Result<()>>,
        axum_server::tls_rustls::RustlsConfig,
    )>,
}

impl Servers {
    /// Where the reports listener's certificates are swapped, with `[cluster.tls]`.
    #[cfg(feature = "tls")]
    pub(super) fn tls_config(&self) -> Option<axum_server::tls_rustls::RustlsConfig> {
        self.reports.as_ref().map(|r| r.1.clone())
    }

    /// Waits (5 s at most each) for the servers to finish once told to stop.
    pub(super) async fn stopped(self) {
        async fn wait(what: &str, server: tokio::task::JoinHandle<std::io::Result<()>>) {
            match tokio::time::timeout(Duration::from_secs(5), server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "{what} ended with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "{what} task failed"),
                Err(_) => tracing::warn!("{what} did not stop within 5s"),
            }
        }
        wait("http server", self.plain).await;
        #[cfg(feature = "tls")]
        if let Some((server, _)) = self.reports {
            wait("reports server", server).await;
        }
    }
}
