//! Tests of `rightsizing`.

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
