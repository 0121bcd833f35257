//! Semantic validation: raw config in, [`ValidatedConfig`] out, or every problem at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::Features;
use crate::error::{ConfigError, Location, Problem, Seg, render_path};
use crate::load::Source;
use crate::model::*;
use crate::raw::{self, CoordinatorKind, RawConfig};

mod cluster;
mod group;
mod node;
mod pool;
mod scaling;

use self::{cluster::*, group::*, node::*, pool::*, scaling::*};

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
    if raw.agent.drain.method == raw::DrainMethod::Kubernetes {
        need(
            c,
            &[k("agent"), k("drain"), k("method")],
            None,
            "drain method \"kubernetes\"".to_owned(),
            "kubernetes",
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
