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
    let column = |k: usize| -> Vec<f64> {
        points
            .iter()
            .filter_map(|(_, v)| v.get(k).copied().flatten())
            .filter(|v| v.is_finite())
            .collect()
    };
    let nodes = column(0);
    let mut report = PoolReport {
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
    };
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
    // Per resource: the p95 of each minute's demand in the current type's units.
    let mut demand: Vec<(Resource, &str, f64, f64)> = Vec::new();
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
        demand.push((*resource, label, s.p95, cap));
    }
    if demand.is_empty() {
        report
            .evidence
            .push("no CPU, memory or GPU readings in the reports".to_owned());
        return report;
    }
    let current_price = current.price;
    let mut options: Vec<Sizing> = family
        .iter()
        .map(|t| {
            let mut nodes = pool.min.max(1);
            let mut unfit = None;
            for (resource, label, need, cap) in &demand {
                let amount = t.amount(*resource);
                if amount <= 0.0 {
                    if *need > 0.0 {
                        unfit = Some(format!("has no {label}"));
                    }
                    continue;
                }
                let n = (need / (amount * cap / 100.0)).ceil();
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
            let (price, price_source) = match (t.price, current_price) {
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
    report
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
mod tests {
    use super::*;

    fn pool() -> (ValidatedConfig, Pool) {
        let text = r#"
            [[pool]]
            name = "web"
            provider = { type = "dry-run", initial = 4, instance_type = "m5.2xlarge" }
            min = 4
            max = 20
            targets = [{ metric = "cpu.utilization", value = 60 }]
            [pool.price]
            on_demand = 0.384
            by_type."m5.large" = { on_demand = 0.096, vcpus = 2, memory_gib = 8 }
            by_type."m5.xlarge" = { on_demand = 0.192, vcpus = 4, memory_gib = 16 }
            by_type."m5.2xlarge" = { on_demand = 0.384, vcpus = 8, memory_gib = 32 }
            by_type."c5.large" = { on_demand = 0.085, vcpus = 2, memory_gib = 4 }
        "#;
        let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty())
            .unwrap_or_else(|e| panic!("{}", e.lines().join("\n")));
        let p = cfg.pools[0].clone();
        (cfg, p)
    }

    /// 100 minutes at 4 nodes: CPU 1 … 100 % (a known spread), memory 30 %.
    fn history() -> Vec<Minute> {
        (0..100)
            .map(|m| {
                let cpu = if m < 95 {
                    f64::from(m % 20 + 1)
                } else {
                    f64::from(m + 1)
                };
                (
                    28_000_000 + i64::from(m),
                    vec![Some(4.0), Some(cpu), Some(30.0), None, None],
                )
            })
            .collect()
    }

    #[test]
    fn nearest_rank_percentiles_are_values_of_the_series() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[7.0], 95.0), 7.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
    }

    #[test]
    fn an_oversized_pool_held_at_min_is_told_the_smaller_size_and_the_saving() {
        let (cfg, p) = pool();
        let types = config_types(&p);
        let family: Vec<TypeInfo> = types
            .values()
            .filter(|t| t.family == "m5")
            .cloned()
            .collect();
        assert_eq!(family.len(), 3, "c5 is another family");
        let r = analyse(
            &p,
            sizing_targets(&cfg, &p),
            7,
            &history(),
            types.get("m5.2xlarge"),
            &family,
        );
        // CPU: 95 minutes cycle through 1..=20 %, then 96..=100 %.
        let cpu = r.cpu.unwrap();
        assert_eq!((cpu.p50, cpu.p95, cpu.max), (10.0, 20.0, 100.0));
        let mem = r.memory.unwrap();
        assert_eq!((mem.p50, mem.p95, mem.max), (30.0, 30.0, 30.0));
        assert_eq!(r.gpu, None);
        assert_eq!(r.nodes.unwrap().max, 4.0);
        let rec = r.recommendation.unwrap();
        // CPU demand p95: 4 × 8 × 20 % = 6.4 vCPU, held at 60 %: m5.large (2) needs
        // 6, m5.xlarge (4) 3 → min 4, m5.2xlarge 2 → min 4. Memory: 4 × 32 × 30 % =
        // 38.4 GiB at 80 %: m5.large 6. Cheapest: 6 × 0.096 = 0.576/h against
        // 4 × 0.384 = 1.536/h.
        let nodes: Vec<(String, u32)> = rec
            .options
            .iter()
            .map(|o| (o.instance_type.clone(), o.nodes))
            .collect();
        assert_eq!(
            nodes,
            vec![
                ("m5.large".into(), 6),
                ("m5.xlarge".into(), 4),
                ("m5.2xlarge".into(), 4)
            ]
        );
        assert_eq!(rec.instance_type, "m5.large");
        assert_eq!(rec.change, "smaller");
        assert_eq!((rec.current_nodes, rec.nodes), (4, 6));
        let saving = rec.monthly_saving.unwrap();
        assert!((saving - (1.536 - 0.576) * 730.0).abs() < 1e-9, "{saving}");
        assert!(
            r.evidence.iter().any(|e| e.starts_with(
                "CPU: p95 20.0 % of 8 vCPU per node; the pool's busiest minutes (p95) use 6.40 vCPU"
            )),
            "{:?}",
            r.evidence
        );
    }

    #[test]
    fn a_busy_pool_is_told_to_keep_its_type_or_go_larger() {
        let (cfg, mut p) = pool();
        p.min = 1;
        let types = config_types(&p);
        let family: Vec<TypeInfo> = types
            .values()
            .filter(|t| t.family == "m5")
            .cloned()
            .collect();
        // Prices linear in size and demand that divides evenly: no size saves 5 %.
        let busy: Vec<Minute> = (0..60)
            .map(|m| {
                (
                    i64::from(m),
                    vec![Some(6.0), Some(60.0), Some(50.0), None, None],
                )
            })
            .collect();
        let r = analyse(
            &p,
            sizing_targets(&cfg, &p),
            7,
            &busy,
            types.get("m5.xlarge"),
            &family,
        );
        let rec = r.recommendation.unwrap();
        assert_eq!(rec.change, "none", "{rec:?}");
        assert_eq!(rec.instance_type, "m5.xlarge");
        // CPU: 6 × 4 × 60 % = 14.4 vCPU at 60 % → 12 large, 6 xlarge, 3 2xlarge;
        // memory (48 GiB at 80 %) needs fewer of each: every size costs 1.152/h.
        assert_eq!(rec.current_nodes, 6);
        let costs: Vec<f64> = rec.options.iter().map(|o| o.hourly_cost.unwrap()).collect();
        assert!(costs.iter().all(|c| (c - 1.152).abs() < 1e-9), "{costs:?}");
        // A pool of m5.large that would need more nodes than its max: larger.
        p.max = 10;
        let hot: Vec<Minute> = (0..60)
            .map(|m| {
                (
                    i64::from(m),
                    vec![Some(8.0), Some(90.0), Some(40.0), None, None],
                )
            })
            .collect();
        let r = analyse(
            &p,
            sizing_targets(&cfg, &p),
            7,
            &hot,
            types.get("m5.large"),
            &family,
        );
        let rec = r.recommendation.unwrap();
        assert_eq!(
            rec.options[0].unfit.as_deref(),
            Some("needs 12 nodes, above the pool's max 10")
        );
        assert_eq!(
            (rec.change, rec.instance_type.as_str(), rec.nodes),
            ("larger", "m5.2xlarge", 3)
        );
        // Nothing recorded: no recommendation, and it says why.
        let r = analyse(&p, &p.targets, 7, &[], types.get("m5.xlarge"), &family);
        assert!(r.recommendation.is_none());
        assert!(
            r.evidence[0].starts_with("no usage recorded"),
            "{:?}",
            r.evidence
        );
    }
}
