//! The metrics against their exposition and their reference page.

use super::*;

/// Metrics with a sample in every family (a family without one is not encoded).
fn populated() -> Metrics {
    let m = Metrics::new();
    let p = PoolLabel { pool: "web".into() };
    let pm = PoolMetricLabels {
        pool: "web".into(),
        metric: "cpu.utilization".into(),
    };
    m.pool_desired_nodes.get_or_create(&p).set(3);
    m.pool_current_nodes.get_or_create(&p).set(3);
    m.pool_min_nodes.get_or_create(&p).set(1);
    m.pool_max_nodes.get_or_create(&p).set(9);
    m.pool_metric_value.get_or_create(&pm).set(1.0);
    m.forecast_demand.get_or_create(&pm).set(1.0);
    m.pool_demand.get_or_create(&pm).set(1.0);
    m.forecast_mase.get_or_create(&pm).set(1.0);
    m.anomalies.get_or_create(&pm).inc();
    m.pool_metric_target.get_or_create(&pm).set(1.0);
    m.pool_draining_nodes.get_or_create(&p).set(1);
    m.pool_reports_unmatched.get_or_create(&p).set(0);
    m.drains
        .get_or_create(&PoolResultLabels {
            pool: "web".into(),
            result: "drained".into(),
        })
        .inc();
    m.decisions
        .get_or_create(&PoolActionLabels {
            pool: "web".into(),
            action: "none".into(),
        })
        .inc();
    m.provider_errors
        .get_or_create(&PoolErrorLabels {
            pool: "web".into(),
            kind: "auth".into(),
        })
        .inc();
    m.provider_requests
        .get_or_create(&ProviderRequestLabels {
            provider: "aws".into(),
            operation: "apply".into(),
            outcome: "ok".into(),
        })
        .inc();
    m.provider_request_seconds
        .get_or_create(&ProviderOperationLabels {
            provider: "aws".into(),
            operation: "apply".into(),
        })
        .observe(0.1);
    m.operation_seconds
        .get_or_create(&ProviderLabel {
            provider: "azure".into(),
        })
        .observe(42.0);
    m.config_reloads
        .get_or_create(&ResultLabel {
            result: "success".into(),
        })
        .inc();
    m.collection_errors
        .get_or_create(&CollectorLabel {
            collector: "host".into(),
        })
        .inc();
    m.reports_sent
        .get_or_create(&ResultLabel {
            result: "ok".into(),
        })
        .inc();
    m.export_gpus(&[capstan_collectors::GpuMetrics {
        index: 0,
        uuid: "GPU-1".into(),
        name: "test".into(),
        utilization_percent: Some(50.0),
        memory_utilization_percent: Some(20.0),
        memory_used_bytes: Some(1),
        memory_total_bytes: Some(2),
        temperature_celsius: Some(60.0),
        power_watts: Some(300.0),
        power_limit_watts: Some(700.0),
        sm_clock_mhz: Some(1980),
        memory_clock_mhz: Some(2619),
        throttle_reasons: vec![],
        ecc_corrected: Some(0),
        ecc_uncorrected: Some(0),
        xid_errors: vec![79],
    }]);
    for f in [
        &m.pool_on_demand_nodes,
        &m.pool_spot_nodes,
        &m.pool_effective_min_nodes,
        &m.pool_effective_max_nodes,
        &m.pool_emergency,
        &m.pool_flapping,
        &m.pool_spot_fallback,
        &m.pool_circuit_open,
        &m.pool_consecutive_failures,
        &m.pool_predictive_active,
        &m.pool_nodes_reporting,
        &m.pool_nodes_stale,
        &m.pool_operation_in_flight,
    ] {
        f.get_or_create(&p).set(0);
    }
    m.pool_hourly_cost.get_or_create(&p).set(1.5);
    let g = GroupLabel {
        group: "web".into(),
    };
    m.group_current_nodes.get_or_create(&g).set(3);
    m.group_desired_nodes.get_or_create(&g).set(4);
    m.group_spillover_nodes
        .get_or_create(&GroupMemberLabels {
            group: "web".into(),
            pool: "web-aws".into(),
        })
        .inc_by(2);
    m.budget_ceiling.get_or_create(&NoLabels {}).set(10.0);
    m
}

/// `populated` has a series in every family (the test below checks it), so this
/// covers every pool-labelled family, including one added later.
#[test]
fn removing_a_pool_drops_every_series_labelled_with_it_and_only_those() {
    let m = populated();
    m.pool_desired_nodes
        .get_or_create(&PoolLabel { pool: "api".into() })
        .set(2);
    assert!(m.encode().contains("pool=\"web\""));
    m.remove_pool("web");
    let text = m.encode();
    assert!(!text.contains("pool=\"web\""), "{text}");
    assert!(
        text.contains("capstan_pool_desired_nodes{pool=\"api\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("pool=\"web-aws\""),
        "a group member's series go with its group"
    );
    // A pool that comes back starts its series again.
    m.pool_desired_nodes
        .get_or_create(&PoolLabel { pool: "web".into() })
        .set(1);
    assert!(
        m.encode()
            .contains("capstan_pool_desired_nodes{pool=\"web\"} 1")
    );
}

#[test]
fn every_registered_family_is_listed_in_names_and_back() {
    let m = populated();
    let text = m.encode();
    assert!(
        text.contains("capstan_pool_desired_nodes{pool=\"web\"} 3"),
        "{text}"
    );
    let typed: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| {
            let mut it = l.split_whitespace();
            (it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
        })
        .collect();
    for (name, kind) in &typed {
        let exposed = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.clone()
        };
        assert!(
            NAMES.contains(&(exposed.as_str(), kind.as_str())),
            "{exposed} ({kind}) missing from NAMES"
        );
    }
    assert_eq!(
        typed.len(),
        NAMES.len(),
        "NAMES lists a metric that is not registered"
    );
}

#[test]
fn ecc_errors_are_a_counter_that_follows_nvml_and_starts_again_after_a_driver_reload() {
    let m = Metrics::new();
    let gpu = |corrected: u64| capstan_collectors::GpuMetrics {
        index: 0,
        uuid: "GPU-1".into(),
        name: "test".into(),
        utilization_percent: None,
        memory_utilization_percent: None,
        memory_used_bytes: None,
        memory_total_bytes: None,
        temperature_celsius: None,
        power_watts: None,
        power_limit_watts: None,
        sm_clock_mhz: None,
        memory_clock_mhz: None,
        throttle_reasons: vec![],
        ecc_corrected: Some(corrected),
        ecc_uncorrected: None,
        xid_errors: vec![],
    };
    let value = |m: &Metrics| {
        m.encode_prometheus_text()
            .lines()
            .find_map(|l| {
                l.strip_prefix(
                    "capstan_gpu_ecc_errors_total{gpu=\"0\",uuid=\"GPU-1\",type=\"corrected\"} ",
                )
                .map(str::to_owned)
            })
            .unwrap_or_default()
    };
    m.export_gpus(&[gpu(3)]);
    assert_eq!(value(&m), "3");
    m.export_gpus(&[gpu(3)]);
    assert_eq!(value(&m), "3", "the same count adds nothing");
    m.export_gpus(&[gpu(7)]);
    assert_eq!(value(&m), "7");
    m.export_gpus(&[gpu(1)]);
    assert_eq!(
        value(&m),
        "1",
        "after a driver reload the series starts again"
    );
    assert!(
        m.encode_prometheus_text()
            .contains("# TYPE capstan_gpu_ecc_errors_total counter")
    );
}

/// docs/metrics.md, from the declarations: each family's name, type and help as
/// registered, and its labels as the doc comments give them (`Metrics`' fields first, then the label sets).
fn reference() -> String {
    let source = concat!(include_str!("mod.rs"), include_str!("labels.rs"));
    let mut labels = std::collections::BTreeMap::new();
    for piece in source.split("`capstan_").skip(1) {
        let Some(end) = piece.find('`') else { continue };
        let decl = &piece[..end];
        let (name, set) = match decl.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}').replace(',', ", ")),
            None => (decl, String::new()),
        };
        if name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            labels.entry(format!("capstan_{name}")).or_insert(set);
        }
    }
    let text = populated().encode_prometheus_text();
    let mut help = std::collections::BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, h) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name.to_owned(), h.to_owned());
        }
    }
    let mut out = String::from(
        "# Metrics reference\n\n\
         Every series an agent exports on `/metrics` (port 9464), generated from the\n\
         metric declarations in `agent/src/telemetry/metrics/mod.rs` by its test\n\
         `the_metrics_reference_is_complete_and_fresh` (regenerate with\n\
         `CAPSTAN_BLESS=1 cargo test -p capstan --lib metrics_reference`). Pool series\n\
         (`pool` label) are exported by the leader and removed when a reload drops the\n\
         pool; `capstan_host_*`, `capstan_gpu_*`, `capstan_collection_*` and\n\
         `capstan_reports_sent_total` by every agent about its own node. Alerts on them:\n\
         [operations.md](operations.md#alerts).\n\n\
         | metric | type | labels | meaning |\n|---|---|---|---|\n",
    );
    for (name, kind) in NAMES {
        let label_set = labels.get(*name).map_or("", String::as_str);
        let meaning = help.get(*name).map_or("", String::as_str);
        out.push_str(&format!(
            "| `{name}` | {kind} | {label_set} | {meaning} |\n"
        ));
    }
    out
}

#[test]
fn the_metrics_reference_is_complete_and_fresh() {
    let reference = reference();
    for (name, _) in NAMES {
        let row = reference
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("{name} is not in the reference"));
        let cells: Vec<&str> = row.split(" | ").collect();
        assert!(
            cells
                .last()
                .is_some_and(|m| m.trim_end_matches(" |").len() > 3),
            "{name} has no help text: {row}"
        );
    }
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/metrics.md");
    if std::env::var_os("CAPSTAN_BLESS").is_some() {
        std::fs::write(&path, &reference).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == reference,
        "docs/metrics.md is stale or missing: run CAPSTAN_BLESS=1 cargo test -p capstan --lib metrics_reference and commit it"
    );
}
