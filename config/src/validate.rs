//! Semantic validation: raw config in, [`ValidatedConfig`] out, or every problem at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::Features;
use crate::error::{ConfigError, Location, Problem, Seg, render_path};
use crate::load::Source;
use crate::model::*;
use crate::raw::{self, CoordinatorKind, RawConfig};

/// Longest stabilization window, as HPA allows.
const MAX_WINDOW: Duration = Duration::from_secs(3600);
/// Longest policy period, as HPA allows.
const MAX_PERIOD: Duration = Duration::from_secs(1800);
/// etcd's shortest lease.
const MIN_LEASE: Duration = Duration::from_secs(2);
/// The smallest journal size bound: a few passes of a large fleet.
const MIN_JOURNAL_BYTES: u64 = 65_536;
/// Longest history the forecaster keeps.
const MAX_HISTORY: Duration = Duration::from_secs(14 * 24 * 3600);

struct Checker<'a> {
    source: &'a Source,
    problems: Vec<Problem>,
}

fn k(key: &str) -> Seg {
    Seg::Key(key.to_owned())
}

impl Checker<'_> {
    fn report(&mut self, path: &[Seg], pool: Option<&str>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: render_path(path),
            pool: pool.map(str::to_owned),
            location: self.source.locate(path),
            message: message.into(),
        });
    }

    /// A duration within `[lo, hi]`, or a problem and `None`.
    fn duration(
        &mut self,
        path: &[Seg],
        pool: Option<&str>,
        text: &str,
        lo: Duration,
        hi: Duration,
    ) -> Option<Duration> {
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d >= lo && d <= hi => Some(d),
            Ok(_) => {
                self.report(
                    path,
                    pool,
                    format!(
                        "\"{text}\" is out of range; allowed: {} to {}",
                        humantime::format_duration(lo),
                        humantime::format_duration(hi)
                    ),
                );
                None
            }
            Err(e) => {
                self.report(
                    path,
                    pool,
                    format!("\"{text}\" is not a duration ({e}); write e.g. \"30s\", \"5m\", \"1h\", \"14d\""),
                );
                None
            }
        }
    }

    fn money(&mut self, path: &[Seg], pool: Option<&str>, value: f64) {
        if !value.is_finite() || value < 0.0 {
            self.report(
                path,
                pool,
                format!("{value} is not allowed; a price or cost must be a finite number >= 0"),
            );
        }
    }

    fn non_empty(&mut self, path: &[Seg], pool: Option<&str>, value: &str) {
        if value.trim().is_empty() {
            self.report(path, pool, "must not be empty");
        }
    }

    fn url(&mut self, path: &[Seg], pool: Option<&str>, value: &str) {
        if !(value.starts_with("http://") || value.starts_with("https://")) || value.len() < 10 {
            self.report(
                path,
                pool,
                format!("\"{value}\" is not an http:// or https:// URL"),
            );
        }
    }
}

/// Checks `raw` and builds the validated configuration, or returns every problem.
pub(crate) fn validate(
    raw: RawConfig,
    source: &Source,
    features: Features<'_>,
) -> Result<ValidatedConfig, ConfigError> {
    let mut c = Checker {
        source,
        problems: Vec::new(),
    };
    check_features(&mut c, &raw, features);

    let agent = check_agent(&mut c, &raw);
    let cluster = check_cluster(&mut c, &raw.cluster);
    let budget = check_budget(&mut c, &raw.budget);
    if let Some(max) = raw.journal.max_bytes
        && max < MIN_JOURNAL_BYTES
    {
        c.report(
            &[k("journal"), k("max_bytes")],
            None,
            format!(
                "{max} is too small; must be at least {MIN_JOURNAL_BYTES} (bytes), e.g. 200_000_000"
            ),
        );
    }
    if raw.journal.retention_days == 0 {
        c.report(
            &[k("journal"), k("retention_days")],
            None,
            "must be at least 1 (day)",
        );
    }

    let scrapes = check_scrapes(&mut c, &raw.scrapes);
    let (groups, membership) = check_groups(&mut c, &raw);
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut pools = Vec::new();
    for (i, pool) in raw.pools.iter().enumerate() {
        if let Some(first) = seen.insert(pool.name.as_str(), i) {
            c.report(
                &[k("pool"), Seg::Index(i), k("name")],
                Some(&pool.name),
                format!(
                    "duplicate pool name; pool[{first}] already uses \"{}\"; names must be unique",
                    pool.name
                ),
            );
        }
        let group = membership.get(pool.name.as_str()).copied();
        if let Some(p) = check_pool(&mut c, i, pool, group) {
            pools.push(p);
        }
        let ceiling = if pool.max_hourly_cost.is_some() {
            Some("its max_hourly_cost")
        } else if raw.budget.max_hourly_cost.is_some() {
            Some("budget.max_hourly_cost")
        } else {
            None
        };
        if let Some(ceiling) = ceiling
            && pool.price.is_none()
        {
            c.report(
                &[k("pool"), Seg::Index(i), k("name")],
                Some(&pool.name),
                format!(
                    "the pool has no price, so {ceiling} cannot be enforced; add e.g. price = {{ on_demand = 0.096 }} (money per node-hour)"
                ),
            );
        }
    }
    if let Some(name) = &raw.agent.pool
        && !raw.pools.is_empty()
        && !raw.pools.iter().any(|p| &p.name == name)
    {
        let names: Vec<&str> = raw.pools.iter().map(|p| p.name.as_str()).collect();
        c.report(
            &[k("agent"), k("pool")],
            None,
            format!(
                "\"{name}\" is not a configured pool; configured: {}",
                names.join(", ")
            ),
        );
    }

    if c.problems.is_empty()
        && let (Some(agent), Some(cluster)) = (agent, cluster)
    {
        return Ok(ValidatedConfig {
            source: source.file.clone(),
            agent,
            cluster,
            budget,
            journal: Journal {
                retention_days: raw.journal.retention_days,
                max_bytes: raw.journal.max_bytes,
                stdout: raw.journal.stdout,
            },
            pools,
            scrapes,
            groups,
        });
    }
    let mut problems = c.problems;
    problems.sort_by_key(|p| match p.location {
        Location::File { line, column } => (0, line, column),
        Location::Env { .. } => (1, 0, 0),
        Location::Unknown => (2, 0, 0),
    });
    Err(ConfigError::Invalid {
        file: source.file.clone(),
        problems,
    })
}

/// What the configuration needs that this build was compiled without.
fn check_features(c: &mut Checker<'_>, raw: &RawConfig, features: Features<'_>) {
    let built = || {
        if features.enabled.is_empty() {
            "none".to_owned()
        } else {
            features.enabled.join(", ")
        }
    };
    let need = |c: &mut Checker<'_>,
                path: &[Seg],
                pool: Option<&str>,
                what: String,
                feature: &str| {
        if !features.has(feature) {
            c.report(
                path,
                pool,
                format!(
                    "{what} is not built into this capstan (its features: {}); use a build with `--features {feature}` (or `--features full`)",
                    built()
                ),
            );
        }
    };
    let coordinator = match raw.cluster.coordinator {
        CoordinatorKind::Standalone => None,
        CoordinatorKind::Etcd => Some("etcd"),
        CoordinatorKind::Kubernetes => Some("kubernetes"),
    };
    if let Some(name) = coordinator {
        need(
            c,
            &[k("cluster"), k("coordinator")],
            None,
            format!("coordinator \"{name}\""),
            name,
        );
    }
    if raw.cluster.tls.is_some() {
        need(
            c,
            &[k("cluster"), k("tls")],
            None,
            "[cluster.tls] (node reports over mutual TLS)".to_owned(),
            "tls",
        );
    }
    for (i, pool) in raw.pools.iter().enumerate() {
        let kind = pool.provider.kind();
        if kind != "dry-run" {
            need(
                c,
                &[k("pool"), Seg::Index(i), k("provider"), k("type")],
                Some(&pool.name),
                format!("provider type \"{kind}\""),
                kind,
            );
        }
    }
}

fn check_scrapes(c: &mut Checker<'_>, raw: &[raw::ScrapeConfig]) -> Vec<Scrape> {
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let at = |key: &str| [k("scrape"), Seg::Index(i), k(key)];
        c.url(&at("url"), None, &s.url);
        let series_ok = !s.series.is_empty()
            && s.series
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':');
        if !series_ok {
            c.report(
                &at("series"),
                None,
                format!(
                    "\"{}\" is not a Prometheus metric name (letters, digits, '_' and ':')",
                    s.series
                ),
            );
        }
        let name = s.name.clone().unwrap_or_else(|| s.series.clone());
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'));
        if !name_ok {
            c.report(
                &at("name"),
                None,
                format!(
                    "\"{name}\" cannot be a workload metric name (letters, digits, '_', '-', '.')"
                ),
            );
        }
        if let Some(first) = names.insert(name.clone(), i) {
            c.report(
                &at("name"),
                None,
                format!(
                    "scrape[{first}] already makes workload.{name}; give one of them another `name`"
                ),
            );
        }
        let timeout = c.duration(
            &at("timeout"),
            None,
            &s.timeout,
            Duration::from_millis(100),
            Duration::from_secs(60),
        );
        if let (Some(timeout), true, true) = (timeout, series_ok, name_ok) {
            out.push(Scrape {
                url: s.url.clone(),
                series: s.series.clone(),
                labels: s.labels.clone(),
                aggregate: s.aggregate,
                name,
                timeout,
            });
        }
    }
    out
}

fn check_agent(c: &mut Checker<'_>, raw: &RawConfig) -> Option<Agent> {
    let a = &raw.agent;
    if let Some(name) = &a.node_name {
        c.non_empty(&[k("agent"), k("node_name")], None, name);
    }
    let listen = match a.listen.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            c.report(
                &[k("agent"), k("listen")],
                None,
                format!("\"{}\" is not an address; write IP:PORT, e.g. \"0.0.0.0:9464\" or \"127.0.0.1:0\"", a.listen),
            );
            None
        }
    };
    let interval = c.duration(
        &[k("agent"), k("interval")],
        None,
        &a.interval,
        Duration::from_secs(1),
        Duration::from_secs(3600),
    );
    if a.state_dir.as_os_str().is_empty() {
        c.report(&[k("agent"), k("state_dir")], None, "must not be empty");
    }
    let interruptions = match &a.interruptions {
        None => Some(None),
        Some(i) => {
            let at = |key: &str| [k("agent"), k("interruptions"), k(key)];
            let poll = c.duration(
                &at("poll"),
                None,
                &i.poll,
                Duration::from_secs(1),
                Duration::from_secs(60),
            );
            if let Some(url) = &i.endpoint {
                c.url(&at("endpoint"), None, url);
            }
            if i.acknowledge && i.cloud != raw::InterruptionCloud::Azure {
                c.report(
                    &at("acknowledge"),
                    None,
                    "only Azure scheduled events can be acknowledged",
                );
            }
            // Every cloud serves its metadata at the same link-local address.
            let endpoint = i
                .endpoint
                .clone()
                .unwrap_or_else(|| "http://169.254.169.254".to_owned());
            poll.map(|poll| {
                Some(Interruptions {
                    cloud: i.cloud,
                    endpoint: endpoint.trim_end_matches('/').to_owned(),
                    poll,
                    acknowledge: i.acknowledge,
                })
            })
        }
    };
    Some(Agent {
        node_name: a.node_name.clone(),
        pool: a.pool.clone(),
        listen: listen?,
        interval: interval?,
        state_dir: a.state_dir.clone(),
        interruptions: interruptions?,
    })
}

fn check_cluster(c: &mut Checker<'_>, raw: &raw::ClusterConfig) -> Option<Cluster> {
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
            Some(e) => {
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
        },
        CoordinatorKind::Kubernetes => {
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
    };
    if raw.coordinator != CoordinatorKind::Standalone && raw.token_file.is_none() {
        c.report(
            &[k("cluster"), k("token_file")],
            None,
            "is required with an elected leader: agents present the token in it with every report, and the leader refuses reports without it",
        );
    }
    let tls = match &raw.tls {
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
    };
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
        advertise_url: raw.advertise_url.clone(),
        node_expiry: node_expiry?,
        tls: tls?,
    })
}

fn check_budget(c: &mut Checker<'_>, raw: &raw::BudgetConfig) -> Budget {
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

fn valid_pool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'))
}

/// Checks every `[[group]]` against the pools; returns the valid groups and, for each
/// pool named as a member, its (first) group's name.
fn check_groups<'r>(
    c: &mut Checker<'_>,
    raw: &'r RawConfig,
) -> (Vec<Group>, BTreeMap<&'r str, &'r str>) {
    let mut membership: BTreeMap<&str, &str> = BTreeMap::new();
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut groups = Vec::new();
    let pool_names: Vec<&str> = raw.pools.iter().map(|p| p.name.as_str()).collect();
    for (i, g) in raw.groups.iter().enumerate() {
        let at = |rest: &[Seg]| -> Vec<Seg> { [&[k("group"), Seg::Index(i)][..], rest].concat() };
        // The key path names the group; `pool` labels are for pools.
        let name = None;
        let before = c.problems.len();
        if !valid_pool_name(&g.name) {
            c.report(
                &at(&[k("name")]),
                name,
                format!(
                    "\"{}\" is not a valid group name; use 1 to 63 letters, digits, '-', '_' or '.'",
                    g.name
                ),
            );
        }
        if let Some(first) = names.insert(g.name.as_str(), i) {
            c.report(
                &at(&[k("name")]),
                name,
                format!(
                    "duplicate group name; group[{first}] already uses \"{}\"",
                    g.name
                ),
            );
        }
        if pool_names.contains(&g.name.as_str()) {
            c.report(
                &at(&[k("name")]),
                name,
                format!(
                    "\"{}\" is already a pool's name; a group needs a name of its own",
                    g.name
                ),
            );
        }
        if g.members.is_empty() {
            c.report(
                &at(&[k("members")]),
                name,
                "a group needs at least one member pool, e.g. members = [\"web-aws\", \"web-azure\"]",
            );
        }
        for (j, member) in g.members.iter().enumerate() {
            let path = at(&[k("members"), Seg::Index(j)]);
            if g.members[..j].contains(member) {
                c.report(&path, name, format!("\"{member}\" is listed twice"));
                continue;
            }
            if !pool_names.contains(&member.as_str()) {
                c.report(
                    &path,
                    name,
                    format!(
                        "\"{member}\" is not a configured pool; configured: {}",
                        pool_names.join(", ")
                    ),
                );
                continue;
            }
            if let Some(&other) = membership.get(member.as_str()) {
                c.report(
                    &path,
                    name,
                    format!(
                        "pool \"{member}\" is already a member of group \"{other}\"; a pool belongs to one group at most"
                    ),
                );
            } else {
                membership.insert(member.as_str(), g.name.as_str());
            }
        }
        if g.strategy != GroupStrategy::Spread && g.max_skew.is_some() {
            c.report(
                &at(&[k("max_skew")]),
                name,
                format!(
                    "max_skew applies only to strategy = \"spread\" (this group's is \"{}\")",
                    g.strategy.as_str()
                ),
            );
        }
        if g.max_skew == Some(0) {
            c.report(&at(&[k("max_skew")]), name, "must be at least 1 (node)");
        }
        if !(0.0..1.0).contains(&g.tolerance) {
            c.report(
                &at(&[k("tolerance")]),
                name,
                format!(
                    "{} is out of range; allowed: 0 <= tolerance < 1 (HPA's default is 0.1)",
                    g.tolerance
                ),
            );
        }
        let (behavior_name, behavior) = check_behavior(c, &at(&[k("behavior")]), name, &g.behavior);
        if g.targets.is_empty() {
            c.report(
                &at(&[k("targets")]),
                name,
                "a group needs at least one target, e.g. { metric = \"cpu.utilization\", value = 70 }",
            );
        }
        let targets: Vec<Target> = g
            .targets
            .iter()
            .enumerate()
            .filter_map(|(j, t)| check_target(c, &at(&[k("targets"), Seg::Index(j)]), name, t))
            .collect();
        if c.problems.len() != before {
            continue;
        }
        if let Some(behavior) = behavior {
            groups.push(Group {
                name: g.name.clone(),
                members: g.members.clone(),
                strategy: g.strategy,
                max_skew: g.max_skew.unwrap_or(1),
                behavior_name,
                behavior,
                tolerance: g.tolerance,
                targets,
            });
        }
    }
    (groups, membership)
}

fn check_pool(
    c: &mut Checker<'_>,
    i: usize,
    p: &raw::PoolConfig,
    group: Option<&str>,
) -> Option<Pool> {
    let name = Some(p.name.as_str());
    let at = |rest: &[Seg]| -> Vec<Seg> { [&[k("pool"), Seg::Index(i)][..], rest].concat() };
    let before = c.problems.len();

    if !valid_pool_name(&p.name) {
        c.report(
            &at(&[k("name")]),
            name,
            format!(
                "\"{}\" is not a valid pool name; use 1 to 63 letters, digits, '-', '_' or '.'",
                p.name
            ),
        );
    }
    if p.min > p.max {
        c.report(
            &at(&[k("min")]),
            name,
            format!(
                "min ({}) is above max ({}); min must be at most max",
                p.min, p.max
            ),
        );
    }
    if p.max == 0 {
        c.report(&at(&[k("max")]), name, "must be at least 1");
    }
    if let Some(em) = p.emergency_max
        && em < p.max
    {
        c.report(
            &at(&[k("emergency_max")]),
            name,
            format!(
                "emergency_max ({em}) is below max ({}); it must be at least max",
                p.max
            ),
        );
    }
    if let Some(cost) = p.max_hourly_cost
        && (!cost.is_finite() || cost <= 0.0)
    {
        c.report(
            &at(&[k("max_hourly_cost")]),
            name,
            format!("{cost} is not allowed; must be a finite number above 0"),
        );
    }
    if !(0.0..1.0).contains(&p.tolerance) {
        c.report(
            &at(&[k("tolerance")]),
            name,
            format!(
                "{} is out of range; allowed: 0 <= tolerance < 1 (HPA's default is 0.1)",
                p.tolerance
            ),
        );
    }
    check_provider(c, &at(&[k("provider")]), name, &p.provider);
    let (behavior_name, behavior) = check_behavior(c, &at(&[k("behavior")]), name, &p.behavior);

    if let Some(price) = &p.price {
        c.money(&at(&[k("price"), k("on_demand")]), name, price.on_demand);
        if let Some(s) = price.spot {
            c.money(&at(&[k("price"), k("spot")]), name, s);
        }
        for (ty, tp) in &price.by_type {
            c.money(
                &at(&[k("price"), k("by_type"), k(ty), k("on_demand")]),
                name,
                tp.on_demand,
            );
            if let Some(s) = tp.spot {
                c.money(&at(&[k("price"), k("by_type"), k(ty), k("spot")]), name, s);
            }
            if tp.vcpus == Some(0) {
                c.report(
                    &at(&[k("price"), k("by_type"), k(ty), k("vcpus")]),
                    name,
                    "must be at least 1",
                );
            }
            for (key, v) in [
                ("memory_gib", tp.memory_gib),
                ("gpu_memory_gib", tp.gpu_memory_gib),
            ] {
                if let Some(v) = v
                    && (!v.is_finite() || v < 0.0)
                {
                    c.report(
                        &at(&[k("price"), k("by_type"), k(ty), k(key)]),
                        name,
                        format!("{v} is not allowed; must be a finite number >= 0"),
                    );
                }
            }
        }
    }

    let spot = p.spot.as_ref().and_then(|s| {
        if s.on_demand_percent_above_base > 100 {
            c.report(
                &at(&[k("spot"), k("on_demand_percent_above_base")]),
                name,
                format!(
                    "{} is out of range; allowed: 0 to 100",
                    s.on_demand_percent_above_base
                ),
            );
        }
        for (j, t) in s.instance_types.iter().enumerate() {
            c.non_empty(
                &at(&[k("spot"), k("instance_types"), Seg::Index(j)]),
                name,
                t,
            );
        }
        let day = Duration::from_secs(24 * 3600);
        let fallback = c.duration(
            &at(&[k("spot"), k("fallback_after")]),
            name,
            &s.fallback_after,
            Duration::from_secs(10),
            day,
        );
        let retry = c.duration(
            &at(&[k("spot"), k("retry_after")]),
            name,
            &s.retry_after,
            Duration::from_secs(10),
            day,
        );
        Some(Spot {
            on_demand_base: s.on_demand_base,
            on_demand_percent_above_base: s.on_demand_percent_above_base,
            instance_types: s.instance_types.clone(),
            fallback_after: fallback?,
            retry_after: retry?,
        })
    });

    if let Some(group) = group {
        // A member is sized by its group: targets of its own would compete with it.
        if !p.targets.is_empty() {
            c.report(
                &at(&[k("targets")]),
                name,
                format!(
                    "pool \"{}\" is a member of group \"{group}\", which is sized on its targets; move these targets to the group or take the pool out of it",
                    p.name
                ),
            );
        }
        if p.emergency.is_some() {
            c.report(
                &at(&[k("emergency")]),
                name,
                format!(
                    "pool \"{}\" is a member of group \"{group}\" and has no targets to saturate; emergencies apply to pools with their own targets",
                    p.name
                ),
            );
        }
        if p.predictive.mode == raw::PredictiveMode::ForecastAndScale {
            c.report(
                &at(&[k("predictive"), k("mode")]),
                name,
                format!(
                    "pool \"{}\" is a member of group \"{group}\" and has no targets to forecast; predictive scaling applies to pools with their own targets",
                    p.name
                ),
            );
        }
    } else if p.targets.is_empty() && p.schedule.is_empty() {
        c.report(
            &at(&[k("targets")]),
            name,
            "a pool needs at least one target (e.g. { metric = \"cpu.utilization\", value = 70 }) or a schedule",
        );
    }
    let targets: Vec<Target> = p
        .targets
        .iter()
        .enumerate()
        .filter_map(|(j, t)| check_target(c, &at(&[k("targets"), Seg::Index(j)]), name, t))
        .collect();

    let predictive = check_predictive(c, &at(&[k("predictive")]), name, &p.predictive);
    let schedules: Vec<Schedule> = p
        .schedule
        .iter()
        .enumerate()
        .filter_map(|(j, s)| check_schedule(c, &at(&[k("schedule"), Seg::Index(j)]), name, p, s))
        .collect();

    let emergency = p.emergency.as_ref().map(|e| {
        if !e.threshold.is_finite() || e.threshold <= 1.0 {
            c.report(
                &at(&[k("emergency"), k("threshold")]),
                name,
                format!("{} is not allowed; the saturation ratio must be above 1 (e.g. 1.5 = 150 % of target)", e.threshold),
            );
        }
        if e.intervals == 0 {
            c.report(&at(&[k("emergency"), k("intervals")]), name, "must be at least 1");
        }
        Emergency { threshold: e.threshold, intervals: e.intervals }
    });
    if emergency.is_some() && p.emergency_max.is_none() {
        c.report(
            &at(&[k("emergency")]),
            name,
            "an emergency table needs emergency_max, the most nodes an emergency may reach",
        );
    }

    let week = Duration::from_secs(7 * 24 * 3600);
    let flap_window = c.duration(
        &at(&[k("flap"), k("window")]),
        name,
        &p.flap.window,
        Duration::from_secs(10),
        week,
    );
    let flap_cool_off = c.duration(
        &at(&[k("flap"), k("cool_off")]),
        name,
        &p.flap.cool_off,
        Duration::from_secs(10),
        week,
    );
    let circuit_max_backoff = c.duration(
        &at(&[k("circuit"), k("max_backoff")]),
        name,
        &p.circuit.max_backoff,
        Duration::from_secs(1),
        Duration::from_secs(24 * 3600),
    );
    if p.circuit.failures == 0 {
        c.report(
            &at(&[k("circuit"), k("failures")]),
            name,
            "must be at least 1 (the failed calls in a row that open the circuit)",
        );
    }
    if p.flap.max_reversals == 1 {
        c.report(
            &at(&[k("flap"), k("max_reversals")]),
            name,
            "1 would freeze a pool for one ordinary up-and-down; allowed: 0 (off) or at least 2",
        );
    }

    if c.problems.len() != before {
        return None;
    }
    Some(Pool {
        name: p.name.clone(),
        tier: p.tier,
        provider: p.provider.clone(),
        min: p.min,
        max: p.max,
        emergency_max: p.emergency_max.unwrap_or(p.max),
        max_hourly_cost: p.max_hourly_cost,
        replace_faulty_gpu_nodes: p.replace_faulty_gpu_nodes,
        behavior_name,
        behavior: behavior?,
        tolerance: p.tolerance,
        price: p.price.clone(),
        spot,
        targets,
        predictive: predictive?,
        schedules,
        emergency,
        flap: Flap {
            max_reversals: p.flap.max_reversals,
            window: flap_window?,
            cool_off: flap_cool_off?,
        },
        circuit: Circuit {
            failures: p.circuit.failures,
            max_backoff: circuit_max_backoff?,
        },
        group: group.map(str::to_owned),
    })
}

fn check_provider(c: &mut Checker<'_>, at: &[Seg], pool: Option<&str>, p: &raw::ProviderConfig) {
    let f = |key: &str| -> Vec<Seg> { [at, &[k(key)]].concat() };
    match p {
        raw::ProviderConfig::Aws(a) => {
            c.non_empty(&f("region"), pool, &a.region);
            c.non_empty(&f("asg"), pool, &a.asg);
            if let Some(url) = &a.endpoint_url {
                c.url(&f("endpoint_url"), pool, url);
            }
            if let Some(arn) = &a.assume_role_arn
                && (!arn.starts_with("arn:") || !arn.contains(":role/"))
            {
                c.report(
                    &f("assume_role_arn"),
                    pool,
                    format!("\"{arn}\" is not a role ARN (arn:PARTITION:iam::ACCOUNT:role/NAME)"),
                );
            }
        }
        raw::ProviderConfig::Azure(a) => {
            c.non_empty(&f("subscription_id"), pool, &a.subscription_id);
            c.non_empty(&f("resource_group"), pool, &a.resource_group);
            c.non_empty(&f("scale_set"), pool, &a.scale_set);
            if let Some(url) = &a.endpoint {
                c.url(&f("endpoint"), pool, url);
            }
            if let Some(url) = &a.authority_host {
                c.url(&f("authority_host"), pool, url);
            }
            if let Some(id) = &a.managed_identity_client_id {
                c.non_empty(&f("managed_identity_client_id"), pool, id);
            }
            if let Some(file) = &a.ca_file
                && !file.is_file()
            {
                c.report(
                    &f("ca_file"),
                    pool,
                    format!("{} is not a readable file", file.display()),
                );
            }
        }
        raw::ProviderConfig::Gke(g) => {
            c.non_empty(&f("project"), pool, &g.project);
            c.non_empty(&f("location"), pool, &g.location);
            c.non_empty(&f("cluster"), pool, &g.cluster);
            c.non_empty(&f("node_pool"), pool, &g.node_pool);
            if g.spot_node_pool.as_deref() == Some(g.node_pool.as_str()) {
                c.report(&f("spot_node_pool"), pool, "must differ from node_pool");
            }
            if let Some(url) = &g.endpoint {
                c.url(&f("endpoint"), pool, url);
            }
        }
        raw::ProviderConfig::DryRun(_) => {}
    }
}

fn check_rules(
    c: &mut Checker<'_>,
    at: &[Seg],
    pool: Option<&str>,
    base: ScalingRules,
    raw: &raw::RulesConfig,
) -> Option<ScalingRules> {
    let mut rules = base;
    let mut ok = true;
    if let Some(w) = &raw.stabilization_window {
        match c.duration(
            &[at, &[k("stabilization_window")]].concat(),
            pool,
            w,
            Duration::ZERO,
            MAX_WINDOW,
        ) {
            Some(d) => rules.stabilization_window = d,
            None => ok = false,
        }
    }
    if let Some(sel) = raw.select_policy {
        rules.select_policy = sel;
    }
    if let Some(policies) = &raw.policies {
        rules.policies.clear();
        for (j, p) in policies.iter().enumerate() {
            let pat = [at, &[k("policies"), Seg::Index(j)]].concat();
            if p.value == 0 {
                c.report(&[&pat[..], &[k("value")]].concat(), pool, "must be above 0; use select_policy = \"disabled\" to forbid scaling in this direction");
                ok = false;
            }
            match c.duration(
                &[&pat[..], &[k("period")]].concat(),
                pool,
                &p.period,
                Duration::from_secs(1),
                MAX_PERIOD,
            ) {
                Some(period) => rules.policies.push(ScalingPolicy {
                    kind: p.kind,
                    value: p.value,
                    period,
                }),
                None => ok = false,
            }
        }
    }
    if rules.policies.is_empty() && rules.select_policy != SelectPolicy::Disabled {
        c.report(
            &[at, &[k("policies")]].concat(),
            pool,
            "needs at least one policy unless select_policy = \"disabled\"",
        );
        ok = false;
    }
    ok.then_some(rules)
}

fn check_behavior(
    c: &mut Checker<'_>,
    at: &[Seg],
    pool: Option<&str>,
    raw: &raw::BehaviorConfig,
) -> (String, Option<ScalingBehavior>) {
    let preset = |c: &mut Checker<'_>, path: &[Seg], name: &str| {
        let found = presets::by_name(name);
        if found.is_none() {
            c.report(path, pool, format!("unknown behavior preset \"{name}\"; allowed: {}, or a table with scale_up/scale_down", presets::NAMES.join(", ")));
        }
        found
    };
    match raw {
        raw::BehaviorConfig::Preset(name) => (name.clone(), preset(c, at, name)),
        raw::BehaviorConfig::Explicit(e) => {
            let base_name = e.preset.as_deref().unwrap_or("balanced");
            let Some(base) = preset(c, &[at, &[k("preset")]].concat(), base_name) else {
                return ("custom".to_owned(), None);
            };
            let up = match &e.scale_up {
                Some(r) => check_rules(c, &[at, &[k("scale_up")]].concat(), pool, base.scale_up, r),
                None => Some(base.scale_up),
            };
            let down = match &e.scale_down {
                Some(r) => check_rules(
                    c,
                    &[at, &[k("scale_down")]].concat(),
                    pool,
                    base.scale_down,
                    r,
                ),
                None => Some(base.scale_down),
            };
            let behavior = match (up, down) {
                (Some(scale_up), Some(scale_down)) => Some(ScalingBehavior {
                    scale_up,
                    scale_down,
                }),
                _ => None,
            };
            ("custom".to_owned(), behavior)
        }
    }
}

fn check_target(
    c: &mut Checker<'_>,
    at: &[Seg],
    pool: Option<&str>,
    t: &raw::TargetConfig,
) -> Option<Target> {
    let f = |key: &str| -> Vec<Seg> { [at, &[k(key)]].concat() };
    let mut ok = true;
    if !t.value.is_finite() || t.value <= 0.0 {
        c.report(
            &f("value"),
            pool,
            format!(
                "{} is not allowed; a target value must be a finite number above 0",
                t.value
            ),
        );
        ok = false;
    }
    let source = match (&t.metric, &t.promql) {
        (Some(_), Some(_)) => {
            c.report(at, pool, "give either metric or promql, not both");
            None
        }
        (None, None) => {
            c.report(
                at,
                pool,
                "a target needs metric = \"...\" (e.g. \"cpu.utilization\") or promql = \"...\"",
            );
            None
        }
        (Some(m), None) => {
            for key in ["prometheus_url", "timeout"] {
                let set = if key == "timeout" {
                    t.timeout.is_some()
                } else {
                    t.prometheus_url.is_some()
                };
                if set {
                    c.report(
                        &f(key),
                        pool,
                        format!("{key} applies only to promql targets"),
                    );
                    ok = false;
                }
            }
            match Metric::parse(m) {
                Some(metric) => {
                    if metric.is_percent() && t.value > 100.0 {
                        c.report(
                            &f("value"),
                            pool,
                            format!(
                                "{} is above 100; {m} is a percentage, allowed: above 0 up to 100",
                                t.value
                            ),
                        );
                        ok = false;
                    }
                    Some(TargetSource::Metric(metric))
                }
                None => {
                    let names: Vec<&str> = Metric::FIXED.iter().map(|(n, _)| *n).collect();
                    c.report(
                        &f("metric"),
                        pool,
                        format!(
                            "unknown metric \"{m}\"; allowed: {}, or workload.<series>",
                            names.join(", ")
                        ),
                    );
                    None
                }
            }
        }
        (None, Some(q)) => {
            c.non_empty(&f("promql"), pool, q);
            let url = match &t.prometheus_url {
                Some(u) => {
                    c.url(&f("prometheus_url"), pool, u);
                    Some(u.clone())
                }
                None => {
                    c.report(
                        &f("prometheus_url"),
                        pool,
                        "a promql target needs prometheus_url, e.g. \"http://127.0.0.1:9090\"",
                    );
                    None
                }
            };
            let timeout = match &t.timeout {
                Some(s) => c.duration(
                    &f("timeout"),
                    pool,
                    s,
                    Duration::from_millis(100),
                    Duration::from_secs(60),
                ),
                None => Some(Duration::from_secs(5)),
            };
            match (url, timeout) {
                (Some(url), Some(timeout)) => Some(TargetSource::PromQl {
                    query: q.clone(),
                    url,
                    timeout,
                }),
                _ => None,
            }
        }
    };
    let source = source?;
    ok.then_some(Target {
        source,
        value: t.value,
    })
}

fn check_predictive(
    c: &mut Checker<'_>,
    at: &[Seg],
    pool: Option<&str>,
    p: &raw::PredictiveConfig,
) -> Option<Predictive> {
    let f = |key: &str| -> Vec<Seg> { [at, &[k(key)]].concat() };
    let horizon = c.duration(
        &f("horizon"),
        pool,
        &p.horizon,
        Duration::from_secs(60),
        Duration::from_secs(24 * 3600),
    );
    let history = c.duration(
        &f("history"),
        pool,
        &p.history,
        Duration::from_secs(3600),
        MAX_HISTORY,
    );
    let lead_time = c.duration(
        &f("lead_time"),
        pool,
        &p.lead_time,
        Duration::ZERO,
        Duration::from_secs(3600),
    );
    if !p.anomaly_threshold.is_finite() || p.anomaly_threshold <= 0.0 {
        c.report(
            &f("anomaly_threshold"),
            pool,
            format!(
                "{} is not allowed; must be a finite number above 0 (default 2.5)",
                p.anomaly_threshold
            ),
        );
    }
    if let (Some(h), Some(l)) = (horizon, lead_time)
        && l > h
    {
        c.report(
            &f("lead_time"),
            pool,
            "lead_time must be at most horizon: capacity is planned from the forecast, which reaches only horizon ahead",
        );
    }
    if let (Some(h), Some(hist)) = (horizon, history)
        && h * 2 > hist
    {
        c.report(
            &f("history"),
            pool,
            "history must be at least twice the horizon",
        );
    }
    Some(Predictive {
        mode: p.mode,
        horizon: horizon?,
        history: history?,
        lead_time: lead_time?,
        anomaly_threshold: p.anomaly_threshold,
        anomaly_triggers_emergency: p.anomaly_triggers_emergency,
    })
}

fn check_schedule(
    c: &mut Checker<'_>,
    at: &[Seg],
    pool: Option<&str>,
    p: &raw::PoolConfig,
    s: &raw::ScheduleConfig,
) -> Option<Schedule> {
    let f = |key: &str| -> Vec<Seg> { [at, &[k(key)]].concat() };
    let cron = if s.cron.split_whitespace().count() != 5 {
        c.report(&f("cron"), pool, format!("\"{}\" is not a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. \"0 8 * * MON-FRI\"", s.cron));
        None
    } else {
        match s.cron.parse::<croner::Cron>() {
            Ok(cron) => Some(cron),
            Err(e) => {
                c.report(
                    &f("cron"),
                    pool,
                    format!("\"{}\" is not a valid cron expression: {e}", s.cron),
                );
                None
            }
        }
    };
    let timezone = match s.timezone.parse::<chrono_tz::Tz>() {
        Ok(tz) => Some(tz),
        Err(_) => {
            c.report(&f("timezone"), pool, format!("\"{}\" is not an IANA time zone; write e.g. \"UTC\", \"Europe/Stockholm\", \"America/New_York\"", s.timezone));
            None
        }
    };
    let duration = c.duration(
        &f("duration"),
        pool,
        &s.duration,
        Duration::from_secs(60),
        Duration::from_secs(7 * 24 * 3600),
    );
    if s.min.is_none() && s.max.is_none() {
        c.report(at, pool, "a schedule must set min, max or both");
    }
    let eff_max = s.max.unwrap_or(p.max);
    let eff_min = s.min.unwrap_or(p.min);
    if eff_min > eff_max {
        c.report(
            &f(if s.min.is_some() { "min" } else { "max" }),
            pool,
            format!("while active this schedule gives min {eff_min} above max {eff_max}; raise max in the schedule too, or lower min"),
        );
    }
    if let (Some(m), Some(em)) = (s.max, p.emergency_max)
        && m > em
    {
        c.report(
            &f("max"),
            pool,
            format!("schedule max ({m}) is above the pool's emergency_max ({em})"),
        );
    }
    Some(Schedule {
        name: s.name.clone().unwrap_or_else(|| s.cron.clone()),
        cron: cron?,
        timezone: timezone?,
        duration: duration?,
        min: s.min,
        max: s.max,
    })
}
