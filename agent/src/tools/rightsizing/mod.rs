//! `capstan rightsizing`: per pool, what its nodes used over the last days and the
//! instance type of the same family that would serve that use for the least money.
//!
//! The leader writes each pool's usage once a minute (`<state_dir>/usage/<pool>.csv`:
//! nodes, and the mean over reporting nodes of CPU, memory, GPU and GPU memory
//! utilization). Percentiles are nearest-rank over those minutes: p50, p95, max.
//!
//! The model: each minute's demand for a resource is `nodes × utilization × the
//! current type's amount of it` (vCPUs, GiB, GPUs, GPU GiB). A type of the same
//! family serves the p95 of that demand with `ceil(p95 demand / (its amount ×
//! ceiling))` nodes, where the ceiling is the pool's target for that metric (else
//! 80 %), and never fewer than the pool's `min` nor more than its `max`. The type that
//! does it cheapest is recommended when it saves at least 5 % over the current type
//! under the same model; the saving is per month of 730 hours.

use std::collections::BTreeMap;

use serde::Serialize;

use capstan_config::{Metric, Pool, TargetSource, ValidatedConfig};
use capstan_providers::InstanceShape;

use crate::state::demand::Minute;

/// Hours in a month, as cloud price sheets count them.
pub const HOURS_PER_MONTH: f64 = 730.0;
/// A resource's ceiling when the pool has no target on it, percent.
pub const DEFAULT_CEILING: f64 = 80.0;
/// The least saving, as a share of the current cost, worth a change of type.
pub const MIN_SAVING: f64 = 0.05;

/// p50, p95 and max of one series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Median (nearest rank).
    pub p50: f64,
    /// 95th percentile (nearest rank).
    pub p95: f64,
    /// Largest.
    pub max: f64,
}

/// The nearest-rank percentile `p` (0–100] of `sorted` (ascending, not empty).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    sorted[rank.clamp(1, n) - 1]
}

fn stats(mut values: Vec<f64>) -> Option<Stats> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(Stats {
        p50: percentile(&values, 50.0),
        p95: percentile(&values, 95.0),
        max: values[values.len() - 1],
    })
}

/// One resource of an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resource {
    Cpu,
    Memory,
    Gpu,
    GpuMemory,
}

const RESOURCES: [(Resource, Metric, &str, &str); 4] = [
    (Resource::Cpu, Metric::CpuUtilization, "CPU", "vCPU"),
    (Resource::Memory, Metric::MemoryUtilization, "memory", "GiB"),
    (Resource::Gpu, Metric::GpuUtilization, "GPU", "GPU"),
    (
        Resource::GpuMemory,
        Metric::GpuMemoryUtilization,
        "GPU memory",
        "GiB",
    ),
];

/// Nodes over the minutes looked at.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct NodeStats {
    /// Mean.
    pub mean: f64,
    /// Most.
    pub max: f64,
}

/// An instance type with its amounts and price.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypeInfo {
    /// Name, e.g. `m5.xlarge`.
    pub name: String,
    /// Family, e.g. `m5`.
    pub family: String,
    /// vCPUs.
    pub vcpus: f64,
    /// Memory, GiB.
    pub memory_gib: f64,
    /// GPUs.
    pub gpus: f64,
    /// GPU memory, GiB.
    pub gpu_memory_gib: f64,
    /// On-demand money per node-hour.
    pub price: Option<f64>,
    /// `config`, or `estimated` (from the current type's price by vCPUs).
    pub price_source: &'static str,
}

impl TypeInfo {
    fn amount(&self, r: Resource) -> f64 {
        match r {
            Resource::Cpu => self.vcpus,
            Resource::Memory => self.memory_gib,
            Resource::Gpu => self.gpus,
            Resource::GpuMemory => self.gpu_memory_gib,
        }
    }
}

/// The family of a type: `family` from config, else the name up to its first `.`.
pub fn family_of(cfg: &Pool, name: &str) -> String {
    cfg.price
        .as_ref()
        .and_then(|p| p.by_type.get(name))
        .and_then(|t| t.family.clone())
        .unwrap_or_else(|| name.split('.').next().unwrap_or(name).to_owned())
}

/// The types `pool`'s config describes (with at least vCPUs), by name.
pub fn config_types(pool: &Pool) -> BTreeMap<String, TypeInfo> {
    let Some(price) = &pool.price else {
        return BTreeMap::new();
    };
    price
        .by_type
        .iter()
        .filter_map(|(name, t)| {
            Some((
                name.clone(),
                TypeInfo {
                    name: name.clone(),
                    family: family_of(pool, name),
                    vcpus: f64::from(t.vcpus?),
                    memory_gib: t.memory_gib.unwrap_or(0.0),
                    gpus: f64::from(t.gpus.unwrap_or(0)),
                    gpu_memory_gib: t.gpu_memory_gib.unwrap_or(0.0),
                    price: Some(t.on_demand),
                    price_source: "config",
                },
            ))
        })
        .collect()
}

/// A cloud catalogue's shape as a type of `family`, priced from config when it lists
/// the type.
pub fn from_catalogue(pool: &Pool, family: &str, s: &InstanceShape) -> TypeInfo {
    let configured = pool.price.as_ref().and_then(|p| p.by_type.get(&s.name));
    TypeInfo {
        name: s.name.clone(),
        family: family.to_owned(),
        vcpus: f64::from(s.vcpus),
        memory_gib: s.memory_mib as f64 / 1024.0,
        gpus: f64::from(s.gpus),
        gpu_memory_gib: s.gpu_memory_mib as f64 / 1024.0,
        price: configured.map(|t| t.on_demand),
        price_source: "config",
    }
}

/// One size of the family under the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sizing {
    /// The type.
    pub instance_type: String,
    /// Nodes it needs.
    pub nodes: u32,
    /// Money per hour for them.
    pub hourly_cost: Option<f64>,
    /// Its price's source.
    pub price_source: &'static str,
    /// Why it cannot serve, if it cannot.
    pub unfit: Option<String>,
}

/// The recommendation for one pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommendation {
    /// The type the pool runs.
    pub current_type: String,
    /// The type recommended (the current one when no change pays).
    pub instance_type: String,
    /// `smaller`, `larger` or `none`.
    pub change: &'static str,
    /// Nodes of the current type the model needs.
    pub current_nodes: u32,
    /// Nodes of the recommended type the model needs.
    pub nodes: u32,
    /// Money per hour now, under the model.
    pub hourly_cost_now: Option<f64>,
    /// Money per hour with the recommendation.
    pub hourly_cost_then: Option<f64>,
    /// Money per month saved (730 hours).
    pub monthly_saving: Option<f64>,
    /// Every type of the family considered, smallest first.
    pub options: Vec<Sizing>,
}

/// One pool's report. Field names are an interface (`rightsizing --json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolReport {
    /// The pool.
    pub pool: String,
    /// Days looked back.
    pub days: u32,
    /// Minutes of usage found.
    pub minutes: usize,
    /// Nodes: mean and max over those minutes.
    pub nodes: Option<NodeStats>,
    /// CPU utilization, percent.
    pub cpu: Option<Stats>,
    /// Memory utilization, percent.
    pub memory: Option<Stats>,
    /// GPU utilization, percent.
    pub gpu: Option<Stats>,
    /// GPU memory utilization, percent.
    pub gpu_memory: Option<Stats>,
    /// The type the pool runs, where known.
    pub instance_type: Option<String>,
    /// The recommendation, where the figures allow one.
    pub recommendation: Option<Recommendation>,
    /// The evidence, in words.
    pub evidence: Vec<String>,
}

/// The ceiling of a resource for `targets`: the target on its metric, else 80 %.
fn ceiling(targets: &[capstan_config::Target], metric: &Metric) -> f64 {
    targets
        .iter()
        .find_map(|t| match &t.source {
            TargetSource::Metric(m) if m == metric => Some(t.value),
            _ => None,
        })
        .unwrap_or(DEFAULT_CEILING)
}

/// The usage figures and, given the pool's current type and its family, the
/// recommendation. `targets` are the pool's (its group's for a member).
pub fn analyse(
    pool: &Pool,
    targets: &[capstan_config::Target],
    days: u32,
    points: &[Minute],
    current: Option<&TypeInfo>,
    family: &[TypeInfo],
) -> PoolReport {
    let mut report = figures(pool, days, points, current);
    if points.is_empty() {
        report.evidence.push(format!(
            "no usage recorded in the last {days} day(s): the leader writes it each minute while it runs"
        ));
        return report;
    }
    let Some(current) = current else {
        report.evidence.push(
            "the pool's instance type is unknown (its cloud does not say, and config names none): set the dry-run provider's instance_type, spot.instance_types, or one price.by_type entry with vcpus".to_owned(),
        );
        return report;
    };
    let demand = peak_demand(&mut report, targets, points, current);
    if demand.is_empty() {
        report
            .evidence
            .push("no CPU, memory or GPU readings in the reports".to_owned());
        return report;
    }
    let options = sizings(pool, family, current, &demand);
    let Some(now) = options
        .iter()
        .find(|o| o.instance_type == current.name)
        .cloned()
    else {
        report
            .evidence
            .push(format!("{} is not in its family's catalogue", current.name));
        return report;
    };
    recommend(&mut report, current, family, now, options);
    report
}

/// The usage figures of `points`: nodes, and each resource's utilization.
fn figures(pool: &Pool, days: u32, points: &[Minute], current: Option<&TypeInfo>) -> PoolReport {
    let column = |k: usize| -> Vec<f64> {
        points
            .iter()
            .filter_map(|(_, v)| v.get(k).copied().flatten())
            .filter(|v| v.is_finite())
            .collect()
    };
    let nodes = column(0);
    PoolReport {
        pool: pool.name.clone(),
        days,
        minutes: points.len(),
        nodes: (!nodes.is_empty()).then(|| NodeStats {
            mean: nodes.iter().sum::<f64>() / nodes.len() as f64,
            max: nodes.iter().copied().fold(f64::MIN, f64::max),
        }),
        cpu: stats(column(1)),
        memory: stats(column(2)),
        gpu: stats(column(3)),
        gpu_memory: stats(column(4)),
        instance_type: current.map(|c| c.name.clone()),
        recommendation: None,
        evidence: Vec::new(),
    }
}

/// What the pool needs of one resource: the p95 of each minute's demand in the
/// current type's units, and the utilization a node is held at.
struct Need<'a> {
    resource: Resource,
    label: &'a str,
    p95: f64,
    ceiling: f64,
}

/// Per resource the current type has: the pool's p95 demand, said in the evidence.
fn peak_demand(
    report: &mut PoolReport,
    targets: &[capstan_config::Target],
    points: &[Minute],
    current: &TypeInfo,
) -> Vec<Need<'static>> {
    let mut demand = Vec::new();
    for (k, (resource, metric, label, unit)) in RESOURCES.iter().enumerate() {
        let amount = current.amount(*resource);
        if amount <= 0.0 {
            continue;
        }
        let per_minute: Vec<f64> = points
            .iter()
            .filter_map(|(_, v)| {
                let n = v.first().copied().flatten()?;
                let u = v.get(k + 1).copied().flatten()?;
                Some(n * u / 100.0 * amount)
            })
            .collect();
        let Some(s) = stats(per_minute) else { continue };
        let cap = ceiling(targets, metric);
        report.evidence.push(format!(
            "{label}: p95 {:.1} % of {amount} {unit} per node; the pool's busiest minutes (p95) use {:.2} {unit}; a node is held at {cap} %",
            report.stats_of(*resource).map_or(0.0, |s| s.p95),
            s.p95
        ));
        demand.push(Need {
            resource: *resource,
            label,
            p95: s.p95,
            ceiling: cap,
        });
    }
    demand
}

/// Each type of the family sized for `demand`, smallest first.
fn sizings(
    pool: &Pool,
    family: &[TypeInfo],
    current: &TypeInfo,
    demand: &[Need<'_>],
) -> Vec<Sizing> {
    let mut options: Vec<Sizing> = family
        .iter()
        .map(|t| {
            let mut nodes = pool.min.max(1);
            let mut unfit = None;
            for need in demand {
                let amount = t.amount(need.resource);
                if amount <= 0.0 {
                    if need.p95 > 0.0 {
                        unfit = Some(format!("has no {}", need.label));
                    }
                    continue;
                }
                let n = (need.p95 / (amount * need.ceiling / 100.0)).ceil();
                nodes = nodes.max(n.min(f64::from(u32::MAX)) as u32);
            }
            if unfit.is_none() && nodes > pool.max {
                unfit = Some(format!(
                    "needs {nodes} nodes, above the pool's max {}",
                    pool.max
                ));
            }
            // Within a family, prices follow size: estimate by vCPUs where config has
            // no price for the type.
            let (price, price_source) = match (t.price, current.price) {
                (Some(p), _) => (Some(p), t.price_source),
                (None, Some(p)) if current.vcpus > 0.0 => {
                    (Some(p * t.vcpus / current.vcpus), "estimated")
                }
                _ => (None, "unknown"),
            };
            Sizing {
                instance_type: t.name.clone(),
                nodes,
                hourly_cost: price.map(|p| p * f64::from(nodes)),
                price_source,
                unfit,
            }
        })
        .collect();
    options.sort_by(|a, b| {
        let size = |o: &Sizing| {
            family
                .iter()
                .find(|t| t.name == o.instance_type)
                .map_or(0.0, |t| t.vcpus)
        };
        size(a)
            .total_cmp(&size(b))
            .then(a.instance_type.cmp(&b.instance_type))
    });
    options
}

/// The cheapest fitting size when it saves enough over `now` (the current type as
/// sized), else the current type; said in the evidence and set as the recommendation.
fn recommend(
    report: &mut PoolReport,
    current: &TypeInfo,
    family: &[TypeInfo],
    now: Sizing,
    options: Vec<Sizing>,
) {
    let best = options
        .iter()
        .filter(|o| o.unfit.is_none() && o.hourly_cost.is_some())
        .min_by(|a, b| {
            a.hourly_cost
                .unwrap_or(f64::MAX)
                .total_cmp(&b.hourly_cost.unwrap_or(f64::MAX))
                // Ties: the current type, then fewer, larger nodes.
                .then((b.instance_type == current.name).cmp(&(a.instance_type == current.name)))
                .then(a.nodes.cmp(&b.nodes))
        })
        .cloned();
    let pays = |b: &Sizing| match (b.hourly_cost, now.hourly_cost) {
        (Some(then), Some(cost)) => now.unfit.is_some() || cost - then >= MIN_SAVING * cost,
        _ => false,
    };
    let chosen = best.filter(pays).unwrap_or_else(|| now.clone());
    let vcpus = |name: &str| {
        family
            .iter()
            .find(|t| t.name == name)
            .map_or(0.0, |t| t.vcpus)
    };
    let change = match vcpus(&chosen.instance_type).total_cmp(&current.vcpus) {
        _ if chosen.instance_type == current.name => "none",
        std::cmp::Ordering::Less => "smaller",
        _ => "larger",
    };
    let saving = match (now.hourly_cost, chosen.hourly_cost) {
        (Some(a), Some(b)) => Some((a - b) * HOURS_PER_MONTH),
        _ => None,
    };
    report.evidence.push(match change {
        "none" => format!(
            "{} stays: {} node(s) at {}/h; no other size of the family saves {} % or more",
            current.name,
            now.nodes,
            money(now.hourly_cost),
            MIN_SAVING * 100.0
        ),
        _ => format!(
            "{} node(s) of {} ({}/h, price {}) serve the p95 instead of {} of {} ({}/h): {} a month less",
            chosen.nodes,
            chosen.instance_type,
            money(chosen.hourly_cost),
            chosen.price_source,
            now.nodes,
            current.name,
            money(now.hourly_cost),
            money(saving),
        ),
    });
    if let Some(why) = &now.unfit {
        report
            .evidence
            .push(format!("{} today: {why}", current.name));
    }
    report.recommendation = Some(Recommendation {
        current_type: current.name.clone(),
        instance_type: chosen.instance_type.clone(),
        change,
        current_nodes: now.nodes,
        nodes: chosen.nodes,
        hourly_cost_now: now.hourly_cost,
        hourly_cost_then: chosen.hourly_cost,
        monthly_saving: saving,
        options,
    });
}

fn money(v: Option<f64>) -> String {
    v.map_or_else(|| "?".to_owned(), |v| format!("{v:.2}"))
}

impl PoolReport {
    fn stats_of(&self, r: Resource) -> Option<Stats> {
        match r {
            Resource::Cpu => self.cpu,
            Resource::Memory => self.memory,
            Resource::Gpu => self.gpu,
            Resource::GpuMemory => self.gpu_memory,
        }
    }
}

/// The targets that size `pool`: its own, or its group's.
pub fn sizing_targets<'c>(
    cfg: &'c ValidatedConfig,
    pool: &'c Pool,
) -> &'c [capstan_config::Target] {
    pool.group
        .as_deref()
        .and_then(|g| cfg.group(g))
        .map_or(&pool.targets[..], |g| &g.targets[..])
}

/// The type a pool runs from config alone: the dry-run provider's, else the first of
/// `spot.instance_types`, else the only `price.by_type` entry.
pub fn configured_type(pool: &Pool) -> Option<String> {
    if let capstan_config::ProviderConfig::DryRun(d) = &pool.provider
        && let Some(t) = &d.instance_type
    {
        return Some(t.clone());
    }
    if let Some(t) = pool.spot.as_ref().and_then(|s| s.instance_types.first()) {
        return Some(t.clone());
    }
    let by_type = &pool.price.as_ref()?.by_type;
    (by_type.len() == 1)
        .then(|| by_type.keys().next().cloned())
        .flatten()
}

/// One pool's report: its usage since `days` ago (`points`), the type it runs (its
/// cloud's describe, else config), and its family's sizes (the cloud's catalogue and
/// config's `price.by_type` shapes).
pub async fn report(
    cfg: &ValidatedConfig,
    pool: &Pool,
    days: u32,
    points: &[Minute],
) -> PoolReport {
    let mut notes = Vec::new();
    // What the cloud says the pool runs, and its family's catalogue.
    let provider = crate::pass::build_provider(pool)
        .map_err(|e| notes.push(format!("no provider in this build: {e}")))
        .ok();
    let mut running = None;
    if let Some(p) = &provider {
        match p.describe().await {
            Ok(d) => {
                let mut count: std::collections::BTreeMap<&str, usize> = Default::default();
                for t in d
                    .instances
                    .iter()
                    .filter_map(|i| i.instance_type.as_deref())
                {
                    *count.entry(t).or_default() += 1;
                }
                running = count
                    .into_iter()
                    .max_by_key(|(_, n)| *n)
                    .map(|(t, _)| t.to_owned());
            }
            Err(e) => notes.push(format!(
                "could not describe the pool ({e}); config says the rest"
            )),
        }
    }
    let current_name = running.or_else(|| configured_type(pool));
    let mut types = config_types(pool);
    let mut family = Vec::new();
    if let Some(name) = &current_name {
        let fam = family_of(pool, name);
        if let Some(p) = &provider {
            match p.instance_family(&fam).await {
                Ok(shapes) => {
                    for s in &shapes {
                        types
                            .entry(s.name.clone())
                            .or_insert_with(|| from_catalogue(pool, &fam, s));
                    }
                }
                Err(e) => notes.push(format!(
                    "no catalogue of the {fam} family ({e}); config's types only"
                )),
            }
        }
        // The current type's price: by type, else the pool's own.
        if let Some(t) = types.get_mut(name)
            && t.price.is_none()
        {
            t.price = pool.price.as_ref().map(|p| p.on_demand);
        }
        family = types
            .values()
            .filter(|t| t.family == fam)
            .cloned()
            .collect();
    }
    let current = current_name.as_ref().and_then(|n| types.get(n));
    let mut r = analyse(
        pool,
        sizing_targets(cfg, pool),
        days,
        points,
        current,
        &family,
    );
    if r.instance_type.is_none() {
        r.instance_type = current_name.clone();
    }
    if current.is_none()
        && let Some(n) = &current_name
    {
        r.evidence.push(format!(
            "{n}: no vCPUs known (not in the cloud's catalogue; add vcpus and memory_gib to price.by_type.\"{n}\")"
        ));
    }
    r.evidence.extend(notes);
    r
}

#[cfg(test)]
mod tests;
