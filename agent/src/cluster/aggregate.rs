//! Per-pool aggregation of node reports into the planner's [`MetricSample`]s.

use std::collections::{HashMap, HashSet};

use capstan_collectors::{GpuMetrics, NodeReport};
use capstan_config::raw::PoolAggregate;
use capstan_config::{Metric, Pool, TargetSource};
use capstan_providers::{Lifecycle, PoolDescription};

use crate::brain::MetricSample;

/// The value of `metric` in `report`, if the report carries it.
pub fn metric_value(report: &NodeReport, metric: &Metric) -> Option<f64> {
    let host = report.host.as_ref();
    let v = match metric {
        Metric::CpuUtilization => host.map(|h| h.cpu_percent),
        Metric::MemoryUtilization => host.and_then(|h| h.memory_percent()),
        Metric::SwapUtilization => host.map(|h| h.swap_percent()),
        Metric::DiskUtilization => host.and_then(|h| h.disk_percent()),
        Metric::Load1 => host.map(|h| h.load_per_core().one),
        Metric::Load5 => host.map(|h| h.load_per_core().five),
        Metric::Load15 => host.map(|h| h.load_per_core().fifteen),
        Metric::NetworkRxBytesPerSecond => host.map(|h| h.rx_bytes_per_second()),
        Metric::NetworkTxBytesPerSecond => host.map(|h| h.tx_bytes_per_second()),
        // The node's GPUs' mean; `samples` weighs nodes by their GPU count.
        Metric::GpuUtilization | Metric::GpuMemoryUtilization => {
            gpu_reading(metric).and_then(|f| gpu_mean(report, f))
        }
        Metric::Workload(name) => report.workload.get(name).copied(),
    };
    v.filter(|x| x.is_finite())
}

/// The metrics the usage history records of a pool each minute after its nodes, as
/// their mean over the reporting nodes (percent), in this order.
pub const USAGE_METRICS: [Metric; 4] = [
    Metric::CpuUtilization,
    Metric::MemoryUtilization,
    Metric::GpuUtilization,
    Metric::GpuMemoryUtilization,
];

/// This pass's usage of a pool: its nodes, then each of [`USAGE_METRICS`]' means over
/// the reports that carry it.
pub fn usage(nodes: u32, reports: &[&NodeReport]) -> [Option<f64>; 5] {
    let mut out = [Some(f64::from(nodes)), None, None, None, None];
    for (slot, metric) in out[1..].iter_mut().zip(&USAGE_METRICS) {
        let (sum, n) = reports
            .iter()
            .filter_map(|r| metric_value(r, metric))
            .fold((0.0, 0_u32), |(s, n), v| (s + v, n + 1));
        *slot = (n > 0).then(|| sum / f64::from(n));
    }
    out
}

/// The pool's instance ids when at least one report matches one of them (the reports
/// then stand for instances: HPA's per-instance rules apply, and a report from any
/// other id is not a node of this pool); `None` while none matches (a dry-run pool, or
/// agents named otherwise).
pub fn members(description: &PoolDescription, reports: &[&NodeReport]) -> Option<HashSet<String>> {
    let ids: HashSet<String> = description.instances.iter().map(|i| i.id.clone()).collect();
    reports
        .iter()
        .any(|r| ids.contains(&r.node_id))
        .then_some(ids)
}

/// Nodes of the pool whose reports carry an interruption notice: in-service instances
/// with a notice when reports match instances, else every reporting node with one (the
/// same rule as [`samples`]).
pub fn interrupted(description: &PoolDescription, reports: &[&NodeReport]) -> u32 {
    counting(description, reports, |r| r.interruption.is_some())
}

/// Nodes of the pool with a faulty GPU (uncorrected ECC errors or a fatal XID), by the
/// same rule.
pub fn faulty_gpus(description: &PoolDescription, reports: &[&NodeReport]) -> u32 {
    counting(description, reports, |r| {
        r.gpus.iter().any(GpuMetrics::is_faulty)
    })
}

fn counting(
    description: &PoolDescription,
    reports: &[&NodeReport],
    which: impl Fn(&NodeReport) -> bool,
) -> u32 {
    let in_service: HashSet<&str> = description
        .instances
        .iter()
        .filter(|i| i.lifecycle == Lifecycle::InService)
        .map(|i| i.id.as_str())
        .collect();
    let all: HashSet<&str> = description
        .instances
        .iter()
        .map(|i| i.id.as_str())
        .collect();
    let matched = reports.iter().any(|r| all.contains(r.node_id.as_str()));
    let n = reports
        .iter()
        .filter(|r| which(r))
        .filter(|r| !matched || in_service.contains(r.node_id.as_str()))
        .count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// What a GPU metric reads of one GPU; `None` for other metrics.
fn gpu_reading(metric: &Metric) -> Option<fn(&GpuMetrics) -> Option<f64>> {
    match metric {
        Metric::GpuUtilization => Some(|g| g.utilization_percent),
        Metric::GpuMemoryUtilization => Some(GpuMetrics::memory_percent),
        _ => None,
    }
}

/// The mean of `f` over the report's GPUs that have it.
fn gpu_mean(report: &NodeReport, f: impl Fn(&GpuMetrics) -> Option<f64>) -> Option<f64> {
    let (sum, n) = gpu_sum(report, &f);
    (n > 0).then(|| sum / f64::from(n))
}

fn gpu_sum(report: &NodeReport, f: &impl Fn(&GpuMetrics) -> Option<f64>) -> (f64, u32) {
    report
        .gpus
        .iter()
        .filter_map(f)
        .filter(|v| v.is_finite())
        .fold((0.0, 0), |(s, n), v| (s + v, n + 1))
}

/// GPU metrics are averaged over the pool's GPUs, not its nodes: a node with eight GPUs
/// weighs eight times one with one. Rescales `s` (whose sum is over per-node means) to
/// the GPU-weighted mean times its ready nodes.
fn weigh_by_gpus(metric: &Metric, counted: &[(&NodeReport, f64)], s: &mut MetricSample) {
    let Some(f) = gpu_reading(metric) else {
        return;
    };
    let (sum, gpus) = counted
        .iter()
        .map(|(r, _)| gpu_sum(r, &f))
        .fold((0.0, 0_u32), |(a, n), (b, m)| (a + b, n + m));
    if gpus > 0 && s.ready > 0 {
        s.sum = sum / f64::from(gpus) * f64::from(s.ready);
    }
}

/// Builds one sample per target of `pool` from the fresh reports of its nodes.
///
/// Reports are matched to the provider's instances by node id = instance id. When at
/// least one report matches, HPA's rules apply per instance: an in-service instance
/// without a reading is *missing*, a pending one is *unready*. When none matches (a
/// dry-run pool, whose instances are imaginary, or agents named otherwise) the
/// reporting nodes are taken as a sample of the pool: their average stands for every
/// in-service node, and nothing counts as missing. With `aggregate = "trimmed-mean"`
/// the average leaves out the highest and lowest tenth of the nodes ([`trimmed`]).
pub fn samples(
    pool: &Pool,
    description: &PoolDescription,
    reports: &[&NodeReport],
) -> Vec<Option<MetricSample>> {
    samples_for(&pool.targets, pool.aggregate, description, reports)
}

/// How many of `n` values [`PoolAggregate::TrimmedMean`] leaves out at each end: a
/// tenth, and at least one once there are three.
pub fn trimmed(n: usize) -> usize {
    if n < 3 { 0 } else { (n / 10).max(1) }
}

/// [`samples`] for any list of targets (a group's, over one member).
pub fn samples_for(
    targets: &[capstan_config::Target],
    aggregate: PoolAggregate,
    description: &PoolDescription,
    reports: &[&NodeReport],
) -> Vec<Option<MetricSample>> {
    let instance_ids: HashSet<&str> = description
        .instances
        .iter()
        .map(|i| i.id.as_str())
        .collect();
    let by_id: HashMap<&str, &NodeReport> =
        reports.iter().map(|r| (r.node_id.as_str(), *r)).collect();
    let matched = by_id.keys().any(|id| instance_ids.contains(id));

    targets
        .iter()
        .map(|target| {
            let TargetSource::Metric(metric) = &target.source else {
                // PromQL targets are evaluated by the query source, not from reports.
                return None;
            };
            let mut s = MetricSample::default();
            let mut counted: Vec<(&NodeReport, f64)> = Vec::new();
            if matched {
                for inst in &description.instances {
                    match inst.lifecycle {
                        Lifecycle::InService => {
                            let report = by_id.get(inst.id.as_str()).copied();
                            match report.and_then(|r| metric_value(r, metric).map(|v| (r, v))) {
                                Some(rv) => {
                                    s.ready += 1;
                                    s.reporting += 1;
                                    counted.push(rv);
                                }
                                None => s.missing += 1,
                            }
                        }
                        Lifecycle::Pending => s.unready += 1,
                        Lifecycle::Terminating | Lifecycle::Standby => {}
                    }
                }
            } else {
                counted.extend(
                    reports
                        .iter()
                        .filter_map(|r| metric_value(r, metric).map(|v| (*r, v))),
                );
                s.reporting = u32::try_from(counted.len()).unwrap_or(u32::MAX);
                let in_service =
                    u32::try_from(description.in_service().count()).unwrap_or(u32::MAX);
                let represented = if description.instances.is_empty() {
                    description.desired
                } else {
                    in_service
                };
                if s.reporting > 0 && represented > 0 {
                    s.ready = represented;
                }
            }
            // The nodes whose readings count: all of them, or with a trimmed mean all
            // but the highest and lowest tenth.
            if aggregate == PoolAggregate::TrimmedMean {
                counted.sort_by(|a, b| a.1.total_cmp(&b.1));
                let k = trimmed(counted.len());
                counted.truncate(counted.len() - k);
                counted.drain(..k);
            }
            let sum: f64 = counted.iter().map(|(_, v)| v).sum();
            let n = u32::try_from(counted.len()).unwrap_or(u32::MAX);
            s.sum = if n == s.ready {
                sum
            } else if n > 0 {
                sum / f64::from(n) * f64::from(s.ready)
            } else {
                0.0
            };
            weigh_by_gpus(metric, &counted, &mut s);
            (s.ready > 0).then_some(s)
        })
        .collect()
}

/// One group's samples: its members' samples of the group's targets, added up. A
/// member without readings of a target while others have some counts its in-service
/// nodes as missing (HPA's rule for pods without metrics).
pub fn merge(
    members: &[(Vec<Option<MetricSample>>, u32)],
    targets: usize,
) -> Vec<Option<MetricSample>> {
    (0..targets)
        .map(|k| {
            let mut total: Option<MetricSample> = None;
            for (samples, _) in members {
                if let Some(s) = samples.get(k).copied().flatten() {
                    let t = total.get_or_insert_with(MetricSample::default);
                    t.sum += s.sum;
                    t.ready += s.ready;
                    t.missing += s.missing;
                    t.unready += s.unready;
                    t.reporting += s.reporting;
                }
            }
            let mut total = total?;
            for (samples, in_service) in members {
                if samples.get(k).copied().flatten().is_none() {
                    total.missing += in_service;
                }
            }
            Some(total)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_providers::{Health, Instance, Market};
    use chrono::DateTime;

    fn pool() -> Pool {
        let text = r#"
            [[pool]]
            name = "web"
            provider = { type = "dry-run", initial = 3 }
            min = 1
            max = 10
            targets = [{ metric = "cpu.utilization", value = 50 }, { metric = "workload.rps", value = 100 }]
        "#;
        capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty())
            .unwrap()
            .pools
            .remove(0)
    }

    fn report(id: &str, cpu: f64) -> NodeReport {
        crate::testutil::cpu_report(id, "web", cpu, DateTime::UNIX_EPOCH)
    }

    fn instance(id: &str, lifecycle: Lifecycle) -> Instance {
        Instance {
            id: id.into(),
            lifecycle,
            health: Health::Healthy,
            instance_type: None,
            zone: None,
            market: Market::OnDemand,
        }
    }

    #[test]
    fn matched_instances_follow_hpa_missing_and_unready_rules() {
        let d = PoolDescription {
            steps: Default::default(),
            min: 1,
            max: 10,
            desired: 4,
            instances: vec![
                instance("a", Lifecycle::InService),
                instance("b", Lifecycle::InService),
                instance("c", Lifecycle::Pending),
                instance("d", Lifecycle::Terminating),
            ],
        };
        let (ra, rz) = (report("a", 80.0), report("z", 10.0));
        let s = samples(&pool(), &d, &[&ra, &rz]);
        assert_eq!(
            s[0],
            Some(MetricSample {
                sum: 80.0,
                ready: 1,
                missing: 1,
                unready: 1,
                reporting: 1
            })
        );
        assert_eq!(s[1], None, "nobody reports workload.rps");
    }

    /// Under `trimmed-mean` the highest and lowest tenth of the readings (one each of
    /// three) are left out, so one node's huge value does not move the pool's.
    #[test]
    fn a_trimmed_mean_leaves_a_liar_out() {
        let d = PoolDescription {
            steps: Default::default(),
            min: 1,
            max: 10,
            desired: 3,
            instances: vec![
                instance("a", Lifecycle::InService),
                instance("b", Lifecycle::InService),
                instance("c", Lifecycle::InService),
            ],
        };
        let rps = |id: &str, v: f64| {
            let mut r = report(id, 50.0);
            r.workload.insert("rps".into(), v);
            r
        };
        let (a, b, liar) = (rps("a", 90.0), rps("b", 100.0), rps("c", 1e9));
        let mut p = pool();
        let mean = samples(&p, &d, &[&a, &b, &liar])[1].unwrap();
        assert!(mean.sum > 1e8, "{mean:?}");
        p.aggregate = PoolAggregate::TrimmedMean;
        let t = samples(&p, &d, &[&a, &b, &liar])[1].unwrap();
        assert_eq!((t.sum, t.ready, t.reporting), (300.0, 3, 3), "{t:?}");
        assert_eq!(
            (trimmed(2), trimmed(3), trimmed(19), trimmed(20)),
            (0, 1, 1, 2)
        );
    }

    #[test]
    fn unmatched_reports_are_a_sample_of_the_pool() {
        let d = PoolDescription {
            steps: Default::default(),
            min: 1,
            max: 10,
            desired: 3,
            instances: vec![
                instance("dry-run-web-0", Lifecycle::InService),
                instance("dry-run-web-1", Lifecycle::InService),
                instance("dry-run-web-2", Lifecycle::InService),
            ],
        };
        let (r1, r2) = (report("host-1", 30.0), report("host-2", 50.0));
        let s = samples(&pool(), &d, &[&r1, &r2]);
        // Two nodes averaging 40 stand for the pool's three.
        assert_eq!(
            s[0],
            Some(MetricSample {
                sum: 120.0,
                ready: 3,
                missing: 0,
                unready: 0,
                reporting: 2
            })
        );
    }

    #[test]
    fn interruption_notices_count_for_in_service_nodes_of_the_pool() {
        let notice = |mut r: NodeReport| {
            r.interruption = Some(capstan_collectors::Interruption {
                kind: "spot-interruption".into(),
                at: None,
            });
            r
        };
        let d = PoolDescription {
            steps: Default::default(),
            min: 1,
            max: 10,
            desired: 3,
            instances: vec![
                instance("a", Lifecycle::InService),
                instance("b", Lifecycle::InService),
                instance("c", Lifecycle::Terminating),
            ],
        };
        let (a, b, c) = (
            notice(report("a", 10.0)),
            report("b", 10.0),
            notice(report("c", 10.0)),
        );
        // c is already terminating: its replacement is the cloud's business.
        assert_eq!(interrupted(&d, &[&a, &b, &c]), 1);
        // Unmatched reports (a dry-run pool) stand for the pool: every notice counts.
        let (x, y) = (notice(report("x", 1.0)), notice(report("y", 1.0)));
        assert_eq!(interrupted(&d, &[&x, &y]), 2);
        assert_eq!(interrupted(&d, &[&b]), 0);
    }

    #[test]
    fn gpu_utilization_is_averaged_over_gpus_not_nodes() {
        let text = r#"
            [[pool]]
            name = "gpu"
            provider = { type = "dry-run", initial = 2 }
            min = 1
            max = 10
            targets = [{ metric = "gpu.utilization", value = 60 }, { metric = "gpu.memory_utilization", value = 80 }]
        "#;
        let pool = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty())
            .unwrap()
            .pools
            .remove(0);
        let gpu = |util: f64| GpuMetrics {
            utilization_percent: Some(util),
            memory_used_bytes: Some(50),
            memory_total_bytes: Some(100),
            ..GpuMetrics::default()
        };
        let mut one = report("one-gpu", 0.0);
        one.gpus = vec![gpu(90.0)];
        let mut three = report("three-gpus", 0.0);
        three.gpus = vec![gpu(10.0), gpu(10.0), gpu(10.0)];
        let none = report("cpu-only", 0.0);
        let d = PoolDescription {
            steps: Default::default(),
            min: 1,
            max: 10,
            desired: 2,
            instances: vec![
                instance("dry-run-gpu-0", Lifecycle::InService),
                instance("dry-run-gpu-1", Lifecycle::InService),
            ],
        };
        let s = samples(&pool, &d, &[&one, &three, &none]);
        // (90 + 3 × 10) / 4 GPUs = 30 per GPU, not (90 + 10) / 2 = 50 per node.
        let util = s[0].unwrap();
        assert_eq!(
            (util.sum / f64::from(util.ready), util.reporting),
            (30.0, 2)
        );
        assert_eq!(s[1].unwrap().sum / f64::from(s[1].unwrap().ready), 50.0);
    }
}
