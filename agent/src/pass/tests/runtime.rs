//! Building pools: reloads keep state, and each cloud is built when its feature is on.

use super::*;

#[test]
fn reload_keeps_state_of_unchanged_pools() {
    let cfg = config();
    let mut pools = build_pools(&cfg, &mut HashMap::new()).unwrap();
    pools[0]
        .memory
        .history
        .record_scale(1, 2, Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
    let mut old: HashMap<_, _> = pools
        .into_iter()
        .map(|p| (p.config.name.clone(), p))
        .collect();
    let again = build_pools(&cfg, &mut old).unwrap();
    assert_eq!(again[0].memory.history.scale_up_events.len(), 1);
}

#[cfg(all(feature = "azure", feature = "gke"))]
#[test]
fn azure_and_gke_pools_are_built_when_their_features_are_on() {
    let text = r#"
        [[pool]]
        name = "gpu"
        provider = { type = "azure", subscription_id = "s", resource_group = "rg", scale_set = "ml" }
        min = 1
        max = 10
        targets = [{ metric = "cpu.utilization", value = 50 }]

        [[pool]]
        name = "web"
        provider = { type = "gke", project = "p", location = "l", cluster = "c", node_pool = "np" }
        min = 1
        max = 10
        targets = [{ metric = "cpu.utilization", value = 50 }]
    "#;
    let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
    let pools = build_pools(&cfg, &mut HashMap::new()).unwrap();
    let kinds: Vec<&str> = pools.iter().map(|p| p.provider.kind()).collect();
    assert_eq!(kinds, ["azure", "gke"]);
    assert!(BUILT_IN_PROVIDERS.contains(&"azure") && BUILT_IN_PROVIDERS.contains(&"gke"));
}

#[cfg(not(feature = "azure"))]
#[test]
fn clouds_not_in_this_build_are_a_clear_error() {
    let text = r#"
        [[pool]]
        name = "gpu"
        provider = { type = "azure", subscription_id = "s", resource_group = "rg", scale_set = "ml" }
        min = 1
        max = 10
        targets = [{ metric = "cpu.utilization", value = 50 }]
    "#;
    let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
    let mut old: HashMap<_, _> = build_pools(&config(), &mut HashMap::new())
        .unwrap()
        .into_iter()
        .map(|p| (p.config.name.clone(), p))
        .collect();
    let err = build_pools(&cfg, &mut old).unwrap_err();
    assert!(err.contains("\"azure\" is not available"), "{err}");
    assert!(err.contains("built with: dry-run"), "{err}");
    assert!(
        old.contains_key("web"),
        "a failed build leaves the old pools in place"
    );
}
