//! `[cluster]` (coordinator, listener, TLS, token) and `[budget]`.

use super::*;

pub(super) fn check_cluster(c: &mut Checker<'_>, raw: &raw::ClusterConfig) -> Option<Cluster> {
    let node_expiry = c.duration(
        &[k("cluster"), k("node_expiry")],
        None,
        &raw.node_expiry,
        Duration::from_secs(1),
        Duration::from_secs(24 * 3600),
    );
    if let Some(url) = &raw.advertise_url {
        c.url(&[k("cluster"), k("advertise_url")], None, url);
    }
    if raw.etcd.is_some() && raw.coordinator != CoordinatorKind::Etcd {
        c.report(
            &[k("cluster"), k("etcd")],
            None,
            "[cluster.etcd] is set but coordinator is not \"etcd\"; set coordinator = \"etcd\" or remove the table",
        );
    }
    if raw.kubernetes.is_some() && raw.coordinator != CoordinatorKind::Kubernetes {
        c.report(
            &[k("cluster"), k("kubernetes")],
            None,
            "[cluster.kubernetes] is set but coordinator is not \"kubernetes\"; set coordinator = \"kubernetes\" or remove the table",
        );
    }
    let coordinator = match raw.coordinator {
        CoordinatorKind::Standalone => Some(Coordinator::Standalone),
        CoordinatorKind::Etcd => match &raw.etcd {
            None => {
                c.report(
                    &[k("cluster"), k("coordinator")],
                    None,
                    "coordinator \"etcd\" needs a [cluster.etcd] table with endpoints = [\"http://HOST:2379\", ...]",
                );
                None
            }
            Some(e) => check_etcd(c, e),
        },
        CoordinatorKind::Kubernetes => check_kubernetes(c, raw),
    };
    if raw.coordinator != CoordinatorKind::Standalone && raw.token_file.is_none() {
        c.report(
            &[k("cluster"), k("token_file")],
            None,
            "is required with an elected leader: agents present the token in it with every report, and the leader refuses reports without it",
        );
    }
    if raw.max_nodes == 0 {
        c.report(
            &[k("cluster"), k("max_nodes")],
            None,
            "must be at least 1: the leader's table holds its own node",
        );
    }
    let tls = check_tls(c, raw);
    if let (Some(_), Some(url)) = (&raw.tls, &raw.advertise_url)
        && !url.starts_with("https://")
    {
        c.report(
            &[k("cluster"), k("advertise_url")],
            None,
            "must be an https:// URL (of the [cluster.tls] listener) when [cluster.tls] is set",
        );
    }
    Some(Cluster {
        coordinator: coordinator?,
        token_file: raw.token_file.clone(),
        auth: raw.auth,
        max_nodes: usize::try_from(raw.max_nodes).unwrap_or(usize::MAX),
        advertise_url: raw.advertise_url.clone(),
        node_expiry: node_expiry?,
        tls: tls?,
    })
}

/// `[cluster.etcd]`: endpoints, the key prefix, the lease's TTL.
fn check_etcd(c: &mut Checker<'_>, e: &raw::EtcdConfig) -> Option<Coordinator> {
    let base = [k("cluster"), k("etcd")];
    if e.endpoints.is_empty() {
        c.report(
            &[&base[..], &[k("endpoints")]].concat(),
            None,
            "needs at least one endpoint",
        );
    }
    for (i, ep) in e.endpoints.iter().enumerate() {
        c.url(
            &[&base[..], &[k("endpoints"), Seg::Index(i)]].concat(),
            None,
            ep,
        );
    }
    if !e.prefix.starts_with('/') {
        c.report(
            &[&base[..], &[k("prefix")]].concat(),
            None,
            "must start with '/'",
        );
    }
    let ttl = c.duration(
        &[&base[..], &[k("lease_ttl")]].concat(),
        None,
        &e.lease_ttl,
        MIN_LEASE,
        Duration::from_secs(300),
    );
    ttl.map(|lease_ttl| Coordinator::Etcd {
        endpoints: e.endpoints.clone(),
        prefix: e.prefix.clone(),
        lease_ttl,
    })
}

/// `[cluster.kubernetes]` (its defaults when absent): the Lease's name and duration.
fn check_kubernetes(c: &mut Checker<'_>, raw: &raw::ClusterConfig) -> Option<Coordinator> {
    let kc = raw.kubernetes.clone().unwrap_or(raw::KubernetesConfig {
        namespace: None,
        lease_name: raw::defaults::lease_name(),
        lease_duration: raw::defaults::lease_ttl(),
    });
    let base = [k("cluster"), k("kubernetes")];
    c.non_empty(
        &[&base[..], &[k("lease_name")]].concat(),
        None,
        &kc.lease_name,
    );
    let d = c.duration(
        &[&base[..], &[k("lease_duration")]].concat(),
        None,
        &kc.lease_duration,
        MIN_LEASE,
        Duration::from_secs(300),
    );
    d.map(|lease_duration| Coordinator::Kubernetes {
        namespace: kc.namespace.clone(),
        lease_name: kc.lease_name.clone(),
        lease_duration,
    })
}

/// `[cluster.tls]`: `Some(None)` without one, `None` when it is invalid.
fn check_tls(c: &mut Checker<'_>, raw: &raw::ClusterConfig) -> Option<Option<Tls>> {
    match &raw.tls {
        None => Some(None),
        Some(t) => match t.listen.parse::<SocketAddr>() {
            Ok(listen) => Some(Some(Tls {
                listen,
                ca_file: t.ca_file.clone(),
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
            })),
            Err(_) => {
                c.report(
                    &[k("cluster"), k("tls"), k("listen")],
                    None,
                    format!(
                        "\"{}\" is not an address; write IP:PORT, e.g. \"0.0.0.0:9465\"",
                        t.listen
                    ),
                );
                None
            }
        },
    }
}

pub(super) fn check_budget(c: &mut Checker<'_>, raw: &raw::BudgetConfig) -> Budget {
    if let Some(max) = raw.max_hourly_cost
        && (!max.is_finite() || max <= 0.0)
    {
        c.report(
            &[k("budget"), k("max_hourly_cost")],
            None,
            format!("{max} is not allowed; must be a finite number above 0"),
        );
    }
    c.money(
        &[k("budget"), k("emergency_allowance")],
        None,
        raw.emergency_allowance,
    );
    Budget {
        max_hourly_cost: raw.max_hourly_cost,
        emergency_allowance: raw.emergency_allowance,
        enforce: raw.enforce,
    }
}
