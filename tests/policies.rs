//! End to end on the dry-run provider: a fleet of three pools of different tiers under
//! a binding budget, through a load surge and back. Drives the leader's pass (the
//! daemon's own code: fleet planning, the dry-run provider, the journal, the metrics)
//! with synthetic node reports and time, then reads the journal back from disk.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;

use capstan::cluster::coordinator::{Coordinator, Standalone};
use capstan::pass;
use capstan::pass::leader::Leader;
use capstan::state::journal::Journal;
use capstan::telemetry::status::Shared;
use capstan_collectors::{HostMetrics, LoadAverage, MemoryStats, NodeReport, SwapStats};

const CEILING: f64 = 40.0;

const CONFIG: &str = r#"
[agent]
interval = "15s"

[budget]
max_hourly_cost = 40.0

[[pool]]
name = "checkout"
tier = "enterprise"
provider = { type = "dry-run", initial = 4 }
min = 2
max = 30
behavior = "aggressive"
price = { on_demand = 2.0 }
targets = [{ metric = "cpu.utilization", value = 50 }]

[[pool]]
name = "api"
tier = "premium"
provider = { type = "dry-run", initial = 4 }
min = 2
max = 30
behavior = "aggressive"
price = { on_demand = 1.0 }
targets = [{ metric = "cpu.utilization", value = 50 }]

[[pool]]
name = "batch"
tier = "basic"
provider = { type = "dry-run", initial = 4 }
min = 1
max = 30
behavior = "aggressive"
price = { on_demand = 0.5, spot = 0.2 }
spot = { on_demand_base = 1, on_demand_percent_above_base = 0 }
targets = [{ metric = "cpu.utilization", value = 50 }]
"#;

/// A node report whose only notable reading is `cpu` percent; one per pool, so the
/// pool's average is taken from this sample.
fn report(pool: &str, cpu: f64, at: DateTime<Utc>) -> NodeReport {
    let mut r = NodeReport::new(format!("probe-{pool}"), Some(pool.to_owned()), at);
    r.host = Some(HostMetrics {
        cpu_percent: cpu,
        cpu_per_core_percent: vec![cpu],
        cores: 1,
        load: LoadAverage {
            one: 0.0,
            five: 0.0,
            fifteen: 0.0,
        },
        memory: MemoryStats {
            total_bytes: 1,
            used_bytes: 0,
            available_bytes: 1,
        },
        swap: SwapStats {
            total_bytes: 0,
            used_bytes: 0,
        },
        disks: vec![],
        network: vec![],
    });
    r
}

fn tier_rank(tier: &str) -> u8 {
    match tier {
        "enterprise" => 0,
        "premium" => 1,
        _ => 2,
    }
}

#[tokio::test]
async fn three_tiers_through_a_surge_stay_under_a_binding_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = capstan_config::from_str("e2e.toml".as_ref(), CONFIG, std::iter::empty()).unwrap();
    let t0 = Utc.with_ymd_and_hms(2026, 11, 27, 12, 0, 0).unwrap();
    let pools = pass::build_pools(&cfg, &mut Default::default()).unwrap();
    let journal = Journal::open(
        dir.path().join("journal"),
        capstan::state::journal::Limits {
            retention_days: 90,
            max_bytes: None,
            stdout: false,
        },
        t0,
    )
    .unwrap();
    let shared = Arc::new(Shared::new(std::time::Duration::from_secs(60)));
    let mut leader = Leader::new("e2e".into(), pools, journal, shared.clone());
    let claim = Standalone::new("e2e", None).claim();

    // Work per pool, in nodes' worth at the 50 % target: steady at 4, a fourfold surge,
    // then quiet. Each node's CPU is the pool's work spread over its nodes.
    let phases = [(4, 4.0), (10, 16.0), (30, 2.0)];
    let mut pass = 0_i64;
    let mut fleet_costs = Vec::new();
    for (passes, work) in phases {
        for _ in 0..passes {
            let now = t0 + Duration::seconds(15 * pass);
            let reports: Vec<NodeReport> = leader
                .pools
                .iter()
                .map(|p| {
                    let nodes = p.last.as_ref().map_or(4, |l| l.desired).max(1);
                    let cpu = (50.0 * work / f64::from(nodes)).min(100.0);
                    report(&p.config.name, cpu, now)
                })
                .collect();
            let refs: Vec<&NodeReport> = reports.iter().collect();
            let summary = leader
                .pass(&refs, &claim, now, cfg.agent.interval, &cfg.budget)
                .await;
            fleet_costs.push(summary.fleet_hourly_cost);
            pass += 1;
        }
    }

    // The metrics say what the last pass planned.
    let text = shared.metrics.encode();
    assert!(text.contains("capstan_budget_ceiling 40.0"), "{text}");
    assert!(
        text.contains("capstan_pool_hourly_cost{pool=\"checkout\"}"),
        "{text}"
    );

    // Read the journal back: each action's `submitted` line (on disk before its
    // request went out) is followed by its outcome in the same pass; the outcomes are
    // one line per pool per pass.
    let file = dir.path().join("journal/decisions-2026-11-27.jsonl");
    let all: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let submitted: Vec<usize> = (0..all.len())
        .filter(|&i| all[i]["action"] == "submitted")
        .collect();
    assert!(!submitted.is_empty());
    for &i in &submitted {
        let line = &all[i];
        assert!(
            all[i + 1..].iter().any(|n| n["pool"] == line["pool"]
                && n["at"] == line["at"]
                && n["action"] != "submitted"),
            "no outcome after {line}"
        );
    }
    let lines: Vec<Value> = all
        .into_iter()
        .filter(|l| l["action"] != "submitted")
        .collect();
    assert_eq!(lines.len(), 3 * usize::try_from(pass).unwrap());

    let mut capped_lines = Vec::new();
    let mut peak = [0_u64; 3];
    for (k, chunk) in lines.chunks(3).enumerate() {
        let fleet = chunk[0]["fleet_hourly_cost"].as_f64().unwrap();
        assert!(fleet <= CEILING + 1e-6, "pass {k}: fleet at {fleet}/h");
        assert_eq!(chunk[0]["budget_ceiling"].as_f64(), Some(CEILING));
        let sum: f64 = chunk
            .iter()
            .map(|l| l["hourly_cost"].as_f64().unwrap())
            .sum();
        assert!(
            (sum - fleet).abs() < 1e-6,
            "pass {k}: pools add up to the fleet"
        );
        assert!((fleet - fleet_costs[k]).abs() < 1e-9);
        // Tier order: while a tier is capped by the budget, no lower tier grows.
        let capped: Vec<u8> = chunk
            .iter()
            .filter(|l| {
                l["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["kind"] == "capped_by_budget")
            })
            .map(|l| tier_rank(l["tier"].as_str().unwrap()))
            .collect();
        if let Some(&top) = capped.iter().min() {
            for l in chunk {
                if tier_rank(l["tier"].as_str().unwrap()) > top {
                    assert!(
                        l["desired"].as_u64() <= l["current"].as_u64(),
                        "pass {k}: {} grew while a higher tier was capped",
                        l["pool"]
                    );
                }
            }
            capped_lines.extend(chunk.iter().filter(|l| {
                l["explain"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e.as_str().unwrap().starts_with("capped by budget: "))
            }));
        }
        for (i, l) in chunk.iter().enumerate() {
            peak[i] = peak[i].max(l["desired"].as_u64().unwrap());
        }
    }

    // The surge made the budget bind, and the journal says how it was allocated.
    assert!(!capped_lines.is_empty(), "the budget never bound");
    let example = capped_lines[0]["explain"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|e| e.as_str().filter(|e| e.starts_with("capped by budget: ")))
        .unwrap();
    assert!(example.ends_with("tier, ceiling 40.00/h)"), "{example}");
    // First surge pass: each pool doubles to 8 (25.90/h, under the ceiling). Second:
    // each wants 16; checkout (enterprise) gets the 14.10/h left, 7 of its 8 nodes, and
    // api and batch get nothing more while it is capped.
    assert_eq!(peak, [15, 8, 8]);
    assert!(
        lines.iter().any(|l| l["pool"] == "checkout"
            && l["explain"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e == "capped by budget: 16 → 15 (enterprise tier, ceiling 40.00/h)")),
        "checkout's cap is journaled"
    );
    // Batch runs on spot above its base, at the spot price.
    let batch = &lines[2];
    assert_eq!(batch["pool"], "batch");
    assert_eq!(batch["on_demand"], 1);
    // After the surge the fleet came back down.
    let last = &lines[lines.len() - 3..];
    let final_cost: f64 = last
        .iter()
        .map(|l| l["hourly_cost"].as_f64().unwrap())
        .sum();
    assert!(
        final_cost < 20.0,
        "fleet still at {final_cost}/h after the surge"
    );
}
