//! SIGHUP: the config file read again, validated whole, and put in force (tokens,
//! certificates, pools, groups, the journal's limits), or the old one kept.

use super::*;

/// A new config, validated, with its token and pools built; `left` are the running
/// pools it dropped or re-created.
struct Reloaded {
    cfg: ValidatedConfig,
    tokens: Tokens,
    /// `[cluster.tls]`'s files, read again: the server's and the reporter's sides.
    #[cfg(feature = "tls")]
    tls: Option<(rustls::ServerConfig, rustls::ClientConfig)>,
    pools: Vec<PoolRuntime>,
    left: HashMap<String, PoolRuntime>,
}

/// Says which settings of `new` wait for a restart.
fn warn_restart_only(old: &ValidatedConfig, new: &ValidatedConfig) {
    let listen = |c: &ValidatedConfig| c.cluster.tls.as_ref().map(|t| t.listen);
    if listen(new) != listen(old) {
        tracing::warn!(
            "turning [cluster.tls] on or off, or moving cluster.tls.listen, takes effect at restart"
        );
    }
    if new.cluster.coordinator.name() != old.cluster.coordinator.name() {
        tracing::warn!(
            old = old.cluster.coordinator.name(),
            new = new.cluster.coordinator.name(),
            "cluster.coordinator changes take effect at restart"
        );
    }
    if (new.agent.max_connections, new.agent.request_timeout)
        != (old.agent.max_connections, old.agent.request_timeout)
    {
        tracing::warn!(
            "agent.max_connections and agent.request_timeout changes take effect at restart"
        );
    }
    if new.agent.listen != old.agent.listen {
        tracing::warn!(old = %old.agent.listen, new = %new.agent.listen, "agent.listen changes take effect at restart");
    }
}

impl Daemon {
    /// Re-reads the config file. Returns whether the interval changed.
    pub(super) fn reload(&mut self) -> bool {
        let ConfigSource::File(path) = &self.source else {
            tracing::warn!("SIGHUP: running on the embedded default config; nothing to reload");
            return false;
        };
        let path = path.clone();
        let result = match self.prepare_reload(&path) {
            Ok(next) => Ok(self.apply_reload(next)),
            Err(problems) => Err(problems),
        };
        let (label, interval_changed) = match &result {
            Ok(changed) => ("success", *changed),
            Err(_) => ("failure", false),
        };
        self.shared
            .metrics
            .config_reloads
            .get_or_create(&ResultLabel {
                result: label.to_owned(),
            })
            .inc();
        match result {
            Ok(_) => {
                tracing::info!(
                    pools = self.leader.pools.len(),
                    "SIGHUP: configuration reloaded"
                );
                self.publish_status();
            }
            Err(problems) => tracing::error!(
                "SIGHUP: new configuration rejected; keeping the running one:\n{problems}"
            ),
        }
        interval_changed
    }

    /// Reads and validates the file, and builds the pools it names (keeping the
    /// running state of the pools that stay). On any problem, the running pools are
    /// back in place, in their order, and the problems are returned.
    fn prepare_reload(&mut self, path: &std::path::Path) -> Result<Reloaded, String> {
        let new = capstan_config::load_for(path, crate::build::config_features())
            .map_err(|e| e.lines().join("\n"))?;
        let tokens = Tokens::read(&new).map_err(|e| format!("{e:#}"))?;
        #[cfg(feature = "tls")]
        let tls = match &new.cluster.tls {
            Some(t) => Some((
                crate::cluster::tls::server_config(t).map_err(|e| format!("{e:#}"))?,
                crate::cluster::tls::client_config(t).map_err(|e| format!("{e:#}"))?,
            )),
            None => None,
        };
        let order: Vec<String> = self
            .leader
            .pools
            .iter()
            .map(|p| p.config.name.clone())
            .collect();
        let mut old: HashMap<String, PoolRuntime> = std::mem::take(&mut self.leader.pools)
            .into_iter()
            .map(|p| (p.config.name.clone(), p))
            .collect();
        match pass::build_pools_with(&new, &mut old, Some(&self.shared.metrics)) {
            // What is left in `old` are pools the new config dropped or re-created.
            Ok(pools) => Ok(Reloaded {
                cfg: new,
                tokens,
                #[cfg(feature = "tls")]
                tls,
                pools,
                left: old,
            }),
            Err(e) => {
                self.leader.pools = order.iter().filter_map(|n| old.remove(n)).collect();
                Err(e)
            }
        }
    }

    /// Swaps in `[cluster.tls]`'s certificates, read again by the reload: new
    /// connections to the reports listener, and the next report sent, use them.
    #[cfg(feature = "tls")]
    fn reload_certificates(
        &self,
        new: &ValidatedConfig,
        tls: Option<(rustls::ServerConfig, rustls::ClientConfig)>,
    ) {
        let same_listener = new.cluster.tls.as_ref().map(|t| t.listen)
            == self.cfg.cluster.tls.as_ref().map(|t| t.listen);
        let (Some((server, client)), Some(live), true) = (tls, &self.tls, same_listener) else {
            return;
        };
        live.reload_from_config(Arc::new(server));
        match crate::cluster::reporter::client(self.send_timeout, Some(client)) {
            Ok(client) => self.reporter.set_client(client),
            Err(e) => {
                tracing::error!(error = %e, "cluster.tls: the reporter keeps its old certificate")
            }
        }
        tracing::info!("cluster.tls: certificates reloaded");
    }

    /// Puts a validated config in force; whether the interval changed.
    fn apply_reload(&mut self, next: Reloaded) -> bool {
        let Reloaded {
            cfg: new,
            tokens,
            #[cfg(feature = "tls")]
            tls,
            pools,
            left,
        } = next;
        warn_restart_only(&self.cfg, &new);
        #[cfg(feature = "tls")]
        self.reload_certificates(&new, tls);
        self.ingest.configure(ingest_settings(&new, &tokens));
        set_status_token(&self.status_token, tokens.status.as_deref());
        *self
            .token
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = credential(&new, tokens.token);
        for gone in left.values().filter(|p| new.pool(&p.config.name).is_none()) {
            self.shared.metrics.remove_pool(&gone.config.name);
        }
        let interval_changed = new.agent.interval != self.cfg.agent.interval;
        self.drainer.configure(new.agent.drain.clone());
        if new.agent.interruptions != self.cfg.agent.interruptions {
            self.notices = None;
            match new.agent.interruptions.clone().map(notices::spawn) {
                Some(Ok(w)) => self.notices = Some(w),
                Some(Err(e)) => tracing::error!(error = %e, "interruption notices are off"),
                None => {}
            }
            if new.agent.node_name.is_none() {
                tracing::warn!("the node's name (its instance id or host name) changes at restart");
            }
        }
        self.leader
            .journal
            .set_limits(crate::state::journal::Limits::from_config(&new.journal));
        self.leader.pools = pools;
        let mut old_groups: HashMap<String, pass::GroupRuntime> =
            std::mem::take(&mut self.leader.groups)
                .into_iter()
                .map(|g| (g.config.name.clone(), g))
                .collect();
        self.leader.groups = pass::build_groups(&new, &mut old_groups);
        for gone in old_groups
            .values()
            .filter(|g| new.group(&g.config.name).is_none())
        {
            self.shared.metrics.remove_group(
                &gone.config.name,
                gone.config.members.iter().map(String::as_str),
            );
        }
        pass::attach_history(&mut self.leader.pools, &self.history, self.clock.now());
        pass::attach_usage(&mut self.leader.pools, &self.usage, self.clock.now());
        self.cfg = new;
        interval_changed
    }
}
