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
                    "coordinator \"etcd\" needs a [cluster.etcd] table with endpoints = [\"https://HOST:2379\", ...]",
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
    if raw.previous_token_file.is_some() && raw.token_file.is_none() {
        c.report(
            &[k("cluster"), k("previous_token_file")],
            None,
            "needs token_file: a rotation goes from previous_token_file's secret to token_file's",
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
        previous_token_file: raw.previous_token_file.clone(),
        status_token_file: raw.status_token_file.clone(),
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
    let tls = check_etcd_security(c, e);
    let user = pair(
        c,
        (
            "username",
            &e.username,
            "password_file, the file holding the user's password",
        ),
        (
            "password_file",
            &e.password_file,
            "username, the etcd user whose password it holds",
        ),
    );
    if let Some((name, _)) = user {
        c.non_empty(&[&base[..], &[k("username")]].concat(), None, name);
    }
    let user = user.map(|(name, file)| (name.clone(), file.clone()));
    ttl.map(|lease_ttl| Coordinator::Etcd {
        endpoints: e.endpoints.clone(),
        prefix: e.prefix.clone(),
        lease_ttl,
        tls,
        user,
    })
}

/// Two `[cluster.etcd]` keys that go together: both, or neither. Each `(key, value,
/// what it needs)`; one alone is reported at its key, naming the other.
fn pair<'a, A, B>(
    c: &mut Checker<'_>,
    (key_a, a, a_needs): (&'static str, &'a Option<A>, &str),
    (key_b, b, b_needs): (&'static str, &'a Option<B>, &str),
) -> Option<(&'a A, &'a B)> {
    let at = |key| [k("cluster"), k("etcd"), k(key)];
    match (a, b) {
        (Some(a), Some(b)) => Some((a, b)),
        (Some(_), None) => {
            c.report(&at(key_a), None, format!("needs {a_needs}"));
            None
        }
        (None, Some(_)) => {
            c.report(&at(key_b), None, format!("needs {b_needs}"));
            None
        }
        (None, None) => None,
    }
}

/// `[cluster.etcd]`'s transport: `https://` endpoints with `ca_file` (and a client
/// certificate when etcd asks for one), or `http://` only with `allow_plaintext`.
fn check_etcd_security(c: &mut Checker<'_>, e: &raw::EtcdConfig) -> Option<EtcdTls> {
    let base = [k("cluster"), k("etcd")];
    let at = |key: &'static str| [&base[..], &[k(key)]].concat();
    let plain = e.endpoints.iter().any(|ep| ep.starts_with("http://"));
    let secure = e.endpoints.iter().any(|ep| ep.starts_with("https://"));
    if plain && secure {
        c.report(
            &at("endpoints"),
            None,
            "mixes http:// and https:// endpoints; use https:// for all of them",
        );
        return None;
    }
    if plain {
        if !e.allow_plaintext {
            let i = e
                .endpoints
                .iter()
                .position(|ep| ep.starts_with("http://"))
                .unwrap_or(0);
            c.report(
                &[&base[..], &[k("endpoints"), Seg::Index(i)]].concat(),
                None,
                "http:// carries the election, the decision state and any password in cleartext, and whoever can write etcd redirects every report; use https:// with ca_file (and cert_file/key_file, username/password_file), or set allow_plaintext = true for loopback or a network you trust",
            );
        }
        for (key, set) in [
            ("ca_file", e.ca_file.is_some()),
            ("cert_file", e.cert_file.is_some()),
            ("key_file", e.key_file.is_some()),
        ] {
            if set {
                c.report(
                    &at(key),
                    None,
                    "is set but the endpoints are http://; use https:// endpoints for TLS",
                );
            }
        }
        return None;
    }
    let client = pair(
        c,
        ("cert_file", &e.cert_file, "key_file, its private key"),
        ("key_file", &e.key_file, "cert_file, its certificate"),
    )
    .map(|(cert, key)| (cert.clone(), key.clone()));
    match &e.ca_file {
        Some(ca) => Some(EtcdTls {
            ca_file: ca.clone(),
            client,
        }),
        None => {
            if secure {
                c.report(
                    &at("ca_file"),
                    None,
                    "is required with https:// endpoints: the PEM file of the CA that signed etcd's server certificates",
                );
            }
            None
        }
    }
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
