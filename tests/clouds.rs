//! Azure VM Scale Sets and GKE node pools through their real SDK clients (azure_core
//! and azure_identity; google-cloud-container-v1 and google-cloud-compute-v1 with
//! google-cloud-auth) against in-test fakes that serve the published payloads and
//! check every request (tests/support/arm.rs, tests/support/gcp.rs). No emulator
//! exists for either API.
//!
//! Covered: describe, scale up and down, the spot split, long-running operations that
//! take several polls, 429 with Retry-After, insufficient capacity (and the planner's
//! on-demand fallback it leads to), auth failures, GKE's autoscaler-enabled refusal,
//! the IAM roles against the calls made, and `capstan run` scaling an Azure pool and a
//! GKE pool from one process.

#[path = "support/arm.rs"]
mod arm;
#[path = "support/gcp.rs"]
mod gcp;
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arm::{FakeArm, PatchFault};
use capstan_providers::azure::{AzureProvider, AzureSettings, CredentialSource};
use capstan_providers::gke::{GkeProvider, GkeSettings};
use capstan_providers::{CapacityTarget, Market, NodePoolProvider, ProviderError};
use gcp::{FakeGcp, NodePool, SizeFault};
use support::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn azure(fake: &FakeArm, name: &str, secret: &str, manage_split: bool) -> AzureProvider {
    AzureProvider::new(AzureSettings {
        scale_set: name.into(),
        credential: CredentialSource::ClientSecret {
            tenant_id: arm::TENANT.into(),
            client_id: arm::CLIENT_ID.into(),
            secret: secret.into(),
        },
        manage_split,
        ..settings_of(fake)
    })
}

fn spot_count(d: &capstan_providers::PoolDescription) -> usize {
    d.instances
        .iter()
        .filter(|i| i.market == Market::Spot)
        .count()
}

fn split(capacity: u32, on_demand: u32) -> CapacityTarget {
    CapacityTarget {
        capacity,
        on_demand,
        emergency: false,
    }
}

#[test]
fn azure_flexible_scale_set_describe_scale_and_spot_split() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeArm::start(dir.path(), "gpu", 2, true, true);
    fake.state.lock().unwrap().polls = 3;
    let p = azure(&fake, "gpu", arm::CLIENT_SECRET, true);
    let rt = runtime();
    rt.block_on(async {
        let d = p.describe().await.unwrap();
        assert_eq!((d.min, d.max, d.desired), (0, 1000, 2));
        assert_eq!(d.instances.len(), 2);
        assert!(d.instances.iter().all(|i| i.market == Market::OnDemand));
        assert!(d.instances[0].id.starts_with("gpu_"));
        assert_eq!(
            d.instances[0].instance_type.as_deref(),
            Some("Standard_D2s_v3")
        );

        // Up to 5: 2 on demand, 3 spot, through an operation that takes 3 polls.
        p.apply(&split(5, 2)).await.unwrap();
        assert_eq!(fake.capacity(), 5);
        let d = p.describe().await.unwrap();
        let spot = spot_count(&d);
        assert_eq!((d.desired, spot), (5, 3), "{d:#?}");
        // Down to 1, all on demand.
        p.apply(&CapacityTarget::on_demand(1)).await.unwrap();
        let d = p.describe().await.unwrap();
        assert_eq!(d.desired, 1);
        assert_eq!(d.instances[0].market, Market::OnDemand);
        // Asked again for what it has: nothing is sent.
        p.apply(&CapacityTarget::on_demand(1)).await.unwrap();
    });
    assert_eq!(
        fake.patches(),
        [
            serde_json::json!({"sku": {"capacity": 5}, "properties": {"priorityMixPolicy": {"baseRegularPriorityCount": 2, "regularPriorityPercentageAboveBase": 0}}}),
            serde_json::json!({"sku": {"capacity": 1}, "properties": {"priorityMixPolicy": {"baseRegularPriorityCount": 1, "regularPriorityPercentageAboveBase": 100}}}),
        ]
    );
    let seen = fake.seen();
    // Each operation was polled until it ended (3 InProgress, then Succeeded).
    let polls = seen
        .iter()
        .filter(|s| s.path.contains("/locations/westus/operations/"))
        .count();
    assert_eq!(polls, 8, "{seen:#?}");
    // One token for every call; every ARM call names the api-version.
    assert_eq!(fake.state.lock().unwrap().tokens_issued, 1);
    assert!(
        seen.iter()
            .filter(|s| !s.path.ends_with("/token"))
            .all(|s| s.query.get("api-version").map(String::as_str) == Some(arm::API_VERSION))
    );
    assert!(seen.iter().all(|s| s.status == 200), "{seen:#?}");
}

#[test]
fn azure_uniform_scale_set_pages_its_vms_and_leaves_the_split_alone() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeArm::start(dir.path(), "web", 5, false, false);
    let p = azure(&fake, "web", arm::CLIENT_SECRET, true);
    runtime().block_on(async {
        let d = p.describe().await.unwrap();
        assert_eq!(d.desired, 5);
        let ids: BTreeSet<String> = d.instances.iter().map(|i| i.id.clone()).collect();
        assert_eq!(
            ids.len(),
            5,
            "three pages of VMs, joined by nextLink: {d:#?}"
        );
        p.apply(&split(3, 1)).await.unwrap();
        assert_eq!(p.describe().await.unwrap().desired, 3);
    });
    // A Uniform set has one priority: only the capacity is sent.
    assert_eq!(
        fake.patches(),
        [serde_json::json!({"sku": {"capacity": 3}})]
    );
    assert!(fake.seen().iter().all(|s| s.status == 200));
}

/// Targeted scale-in: the named VMs, and only those, are deleted through the scale set's
/// `…/delete` (a Uniform set by `instanceId`, a Flexible one by VM name), its capacity
/// drops by as many, and a name already gone (or never the set's) asks for nothing.
#[test]
fn azure_remove_deletes_exactly_the_named_vms() {
    let dir = tempfile::tempdir().unwrap();
    for flexible in [false, true] {
        let fake = FakeArm::start(dir.path(), "web", 4, flexible, false);
        let p = azure(&fake, "web", arm::CLIENT_SECRET, false);
        runtime().block_on(async {
            let names: Vec<String> = p
                .describe()
                .await
                .unwrap()
                .instances
                .iter()
                .map(|i| i.id.clone())
                .collect();
            assert_eq!(names.len(), 4);
            let asked = vec![names[0].clone(), names[2].clone(), "web_elsewhere".into()];
            p.remove(&asked).await.unwrap();
            let d = p.describe().await.unwrap();
            let left: Vec<&str> = d.instances.iter().map(|i| i.id.as_str()).collect();
            assert_eq!(d.desired, 2);
            assert_eq!(left, [names[1].as_str(), names[3].as_str()]);
            // Again: every one is gone already, nothing is sent.
            p.remove(&asked).await.unwrap();
            let deletes: Vec<serde_json::Value> = fake
                .seen()
                .into_iter()
                .filter(|s| s.method == "POST" && s.path.ends_with("/delete"))
                .map(|s| {
                    assert_eq!(s.status, 202);
                    s.body
                })
                .collect();
            let named = |n: &String| {
                if flexible {
                    n.clone()
                } else {
                    arm::instance_id(n)
                }
            };
            assert_eq!(
                deletes,
                [serde_json::json!({"instanceIds": [named(&names[0]), named(&names[2])]})],
                "flexible: {flexible}"
            );
        });
    }
}

#[test]
fn azure_location_polling_is_followed_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeArm::start(dir.path(), "web", 2, false, false);
    {
        let mut s = fake.state.lock().unwrap();
        s.location_polling = true;
        s.polls = 3;
    }
    let p = azure(&fake, "web", arm::CLIENT_SECRET, false);
    runtime().block_on(async {
        p.describe().await.unwrap();
        p.apply(&CapacityTarget::on_demand(4)).await.unwrap();
    });
    assert_eq!(fake.capacity(), 4);
    let statuses: Vec<u16> = fake
        .seen()
        .iter()
        .filter(|s| s.path.contains("/operations/") || s.method == "PATCH")
        .map(|s| s.status)
        .collect();
    assert_eq!(
        statuses,
        [202, 202, 202, 202, 200],
        "PATCH, 3 polls running, done"
    );
}

/// An update names the ETag of the read it was planned from; if the set changed in
/// between, ARM refuses it (412) and nothing is retried blindly: the next call reads
/// the set again and plans from what it holds.
#[test]
fn azure_updates_are_conditional_on_the_read_they_were_planned_from() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeArm::start(dir.path(), "web", 2, false, false);
    fake.state.lock().unwrap().polls = 0;
    let p = azure(&fake, "web", arm::CLIENT_SECRET, false);
    runtime().block_on(async {
        p.describe().await.unwrap();
        // Someone else updates the set after Capstan read it.
        fake.touch();
        let e = p.apply(&CapacityTarget::on_demand(4)).await.unwrap_err();
        assert!(
            matches!(&e, ProviderError::Transient { message } if message.contains("412")),
            "{e}"
        );
        assert_eq!(fake.capacity(), 2, "a conflicting update went through");
        assert_eq!(fake.patches().len(), 0);
        // Read again, planned again: it goes through.
        p.describe().await.unwrap();
        p.apply(&CapacityTarget::on_demand(4)).await.unwrap();
    });
    assert_eq!(fake.capacity(), 4);
    let if_match = fake.state.lock().unwrap().if_match.clone();
    assert_eq!(
        if_match,
        [Some("\"1\"".to_owned()), Some("\"2\"".to_owned())],
        "each PATCH names the ETag it was planned from"
    );
}

#[test]
fn azure_errors_are_typed() {
    let dir = tempfile::tempdir().unwrap();
    let fake = FakeArm::start(dir.path(), "web", 2, true, false);
    let p = azure(&fake, "web", arm::CLIENT_SECRET, false);
    runtime().block_on(async {
        p.describe().await.unwrap();
        // 429 with the documented twenty-minute Retry-After: returned at once, with
        // the hint, for the agent's backoff (the pipeline does not sleep on it).
        fake.set_fault(Some(PatchFault::Throttle(1200)));
        match p.apply(&CapacityTarget::on_demand(3)).await {
            Err(ProviderError::Throttled {
                retry_after,
                message,
            }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(1200)));
                assert!(message.contains("TooManyRequests"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // The operation runs, then fails for want of capacity.
        fake.set_fault(Some(PatchFault::FailOperation("AllocationFailed")));
        let e = p.apply(&CapacityTarget::on_demand(3)).await.unwrap_err();
        assert_eq!(e.kind(), "insufficient_capacity", "{e}");
        assert!(e.to_string().contains("AllocationFailed"), "{e}");
        fake.set_fault(Some(PatchFault::Refuse("SkuNotAvailable")));
        let e = p.apply(&CapacityTarget::on_demand(3)).await.unwrap_err();
        assert_eq!(e.kind(), "insufficient_capacity", "{e}");
        fake.set_fault(Some(PatchFault::Forbidden));
        let e = p.apply(&CapacityTarget::on_demand(3)).await.unwrap_err();
        assert_eq!(e.kind(), "auth", "{e}");
        assert!(e.to_string().contains("AuthorizationFailed"), "{e}");
        // Nothing changed through all that.
        assert_eq!(fake.capacity(), 2);
        p.apply(&CapacityTarget::on_demand(3)).await.unwrap();
        assert_eq!(fake.capacity(), 3);
    });
    // A scale set that is not there.
    let missing = azure(&fake, "nope", arm::CLIENT_SECRET, false);
    let e = runtime().block_on(missing.describe()).unwrap_err();
    assert!(
        matches!(&e, ProviderError::NotFound { resource } if resource.ends_with("/virtualMachineScaleSets/nope")),
        "{e:?}"
    );
    // A wrong client secret: Entra ID's refusal, named.
    let wrong = azure(&fake, "web", "wrong", false);
    let e = runtime().block_on(wrong.describe()).unwrap_err();
    assert_eq!(e.kind(), "auth", "{e}");
    assert!(e.to_string().contains("AADSTS7000215"), "{e}");
    // An endpoint whose certificate is not trusted.
    let untrusted = AzureProvider::new(AzureSettings {
        ca_file: None,
        ..settings_of(&fake)
    });
    let e = runtime().block_on(untrusted.describe()).unwrap_err();
    assert!(e.to_string().contains("127.0.0.1"), "{e}");
}

fn settings_of(fake: &FakeArm) -> AzureSettings {
    AzureSettings {
        subscription_id: arm::SUBSCRIPTION.into(),
        resource_group: arm::RESOURCE_GROUP.into(),
        scale_set: "web".into(),
        endpoint: Some(fake.url.clone()),
        credential: CredentialSource::ClientSecret {
            tenant_id: arm::TENANT.into(),
            client_id: arm::CLIENT_ID.into(),
            secret: arm::CLIENT_SECRET.into(),
        },
        managed_identity_client_id: None,
        authority_host: Some(fake.url.clone()),
        ca_file: Some(fake.ca.clone()),
        manage_split: false,
        operation_timeout: Duration::from_secs(30),
    }
}

/// The ARM action each request of the fake's log needs.
fn arm_action(s: &arm::Seen) -> Option<&'static str> {
    let p = &s.path;
    if p.ends_with("/oauth2/v2.0/token") {
        return None;
    }
    Some(match s.method.as_str() {
        "PATCH" => "Microsoft.Compute/virtualMachineScaleSets/write",
        "POST" if p.ends_with("/delete") => {
            "Microsoft.Compute/virtualMachineScaleSets/delete/action"
        }
        _ if p.contains("/locations/") && p.contains("/operations/") => {
            "Microsoft.Compute/locations/operations/read"
        }
        _ if p.contains("/virtualMachineScaleSets/") && p.ends_with("/virtualMachines") => {
            "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read"
        }
        _ if p.contains("/virtualMachineScaleSets/") => {
            "Microsoft.Compute/virtualMachineScaleSets/read"
        }
        _ if p.ends_with("/providers/Microsoft.Compute/virtualMachines") => {
            "Microsoft.Compute/virtualMachines/read"
        }
        _ => panic!("no action known for {} {p}", s.method),
    })
}

#[test]
fn the_azure_role_grants_exactly_the_actions_the_calls_need() {
    let role: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("packaging/iam/azure-role.json")).unwrap(),
    )
    .unwrap();
    let granted: BTreeSet<String> = role["permissions"][0]["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let code: BTreeSet<String> = capstan_providers::azure::OPERATIONS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    assert_eq!(granted, code, "the role and azure::OPERATIONS differ");
    assert!(
        role["permissions"][0]["notActions"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        role["assignableScopes"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );

    // Every call the provider makes (both orchestration modes) needs only those.
    let dir = tempfile::tempdir().unwrap();
    let mut used = BTreeSet::new();
    for flexible in [true, false] {
        let fake = FakeArm::start(dir.path(), "web", 1, flexible, false);
        let p = azure(&fake, "web", arm::CLIENT_SECRET, true);
        runtime().block_on(async {
            p.describe().await.unwrap();
            p.apply(&split(2, 1)).await.unwrap();
            let first = p.describe().await.unwrap().instances[0].id.clone();
            p.remove(&[first]).await.unwrap();
        });
        for s in fake.seen() {
            assert!(s.status == 200 || s.status == 202, "{s:?}");
            if let Some(a) = arm_action(&s) {
                used.insert(a.to_owned());
            }
        }
    }
    assert_eq!(used, granted, "calls made vs actions granted");
}

// ---------------------------------------------------------------- GKE

fn pool(name: &str, spot: bool, zones: &[&str], per_zone: u32) -> NodePool {
    NodePool {
        name: name.into(),
        spot,
        autoscaling: false,
        zones: zones.iter().map(|z| (*z).to_owned()).collect(),
        per_zone,
    }
}

fn gke_settings(fake: &FakeGcp, node_pool: &str, spot_node_pool: Option<&str>) -> GkeSettings {
    GkeSettings {
        project: gcp::PROJECT.into(),
        location: gcp::LOCATION.into(),
        cluster: gcp::CLUSTER.into(),
        node_pool: node_pool.into(),
        spot_node_pool: spot_node_pool.map(str::to_owned),
        endpoint: Some(fake.url.clone()),
        operation_poll: Duration::from_millis(50),
        operation_timeout: Duration::from_secs(30),
    }
}

/// A provider whose `authorized_user` credentials refresh at the fake. (The
/// credentials start a token task: they are built inside `rt`.)
fn gke(
    rt: &tokio::runtime::Runtime,
    fake: &FakeGcp,
    node_pool: &str,
    spot_node_pool: Option<&str>,
    refresh: &str,
) -> GkeProvider {
    let _in = rt.enter();
    let credentials =
        google_cloud_auth::credentials::user_account::Builder::new(fake.credentials_json(refresh))
            .build()
            .unwrap();
    GkeProvider::with_credentials(gke_settings(fake, node_pool, spot_node_pool), credentials)
}

const ZONES: [&str; 2] = ["us-central1-a", "us-central1-b"];

#[test]
fn gke_node_pools_describe_scale_and_spot_split() {
    let fake = FakeGcp::start(vec![
        pool("od", false, &ZONES, 1),
        pool("spot", true, &ZONES, 0),
    ]);
    fake.state.lock().unwrap().polls = 3;
    let rt = runtime();
    let p = gke(&rt, &fake, "od", Some("spot"), gcp::REFRESH_TOKEN);
    rt.block_on(async {
        let d = p.describe().await.unwrap();
        assert_eq!((d.desired, d.max), (2, 4000));
        // Each node pool in 2 zones: each part moves in steps of 2.
        assert_eq!((d.steps.step, d.steps.parts), (1, Some((2, 2))));
        assert_eq!(d.instances.len(), 2);
        assert!(d.instances.iter().all(|i| i.market == Market::OnDemand));
        assert_eq!(d.instances[0].zone.as_deref(), Some("us-central1-a"));
        assert!(d.instances[0].id.starts_with("gke-prod-od-a-grp-"));

        // 2 on demand and 4 spot: one per zone in "od", two per zone in "spot".
        p.apply(&split(6, 2)).await.unwrap();
        let d = p.describe().await.unwrap();
        let spot = spot_count(&d);
        assert_eq!((d.desired, spot), (6, 4), "{d:#?}");
        // 5 on demand across 2 zones is 3 per zone: never less than planned.
        p.apply(&CapacityTarget::on_demand(5)).await.unwrap();
        assert_eq!(p.describe().await.unwrap().desired, 6);
        // Asked again: every group already has its size; nothing is sent.
        p.apply(&CapacityTarget::on_demand(5)).await.unwrap();
    });
    assert_eq!(
        fake.set_sizes(),
        [
            ("spot".to_owned(), 2),
            ("od".to_owned(), 3),
            ("spot".to_owned(), 0)
        ]
    );
    let seen = fake.seen();
    let polls = seen
        .iter()
        .filter(|s| s.rpc == "container.projects.locations.operations.get")
        .count();
    assert_eq!(polls, 12, "3 operations, 3 RUNNING then DONE: {seen:#?}");
    assert!(seen.iter().all(|s| s.status == 200), "{seen:#?}");
    assert_eq!(fake.nodes("od"), 6);
}

#[test]
fn gke_refuses_a_node_pool_with_its_autoscaler_on() {
    let mut auto = pool("auto", false, &ZONES[..1], 3);
    auto.autoscaling = true;
    let fake = FakeGcp::start(vec![auto]);
    let rt = runtime();
    let p = gke(&rt, &fake, "auto", None, gcp::REFRESH_TOKEN);
    let e = rt.block_on(p.describe()).unwrap_err();
    assert_eq!(e.kind(), "unsupported", "{e}");
    assert!(e.to_string().contains("cluster autoscaler enabled"), "{e}");
    let e = rt
        .block_on(p.apply(&CapacityTarget::on_demand(4)))
        .unwrap_err();
    assert_eq!(e.kind(), "unsupported", "{e}");
    assert!(fake.set_sizes().is_empty());
}

#[test]
fn gke_errors_are_typed() {
    let fake = FakeGcp::start(vec![pool("od", false, &ZONES[..1], 2)]);
    let rt = runtime();
    let p = gke(&rt, &fake, "od", None, gcp::REFRESH_TOKEN);
    rt.block_on(async {
        p.describe().await.unwrap();
        fake.set_fault(Some(SizeFault::Throttle));
        let e = p.apply(&CapacityTarget::on_demand(3)).await.unwrap_err();
        assert_eq!(e.kind(), "throttled", "{e}");
        fake.set_fault(Some(SizeFault::Stockout));
        let e = p.apply(&CapacityTarget::on_demand(3)).await.unwrap_err();
        assert_eq!(e.kind(), "insufficient_capacity", "{e}");
        assert!(
            e.to_string().contains("ZONE_RESOURCE_POOL_EXHAUSTED"),
            "{e}"
        );
        assert_eq!(fake.nodes("od"), 2);
        p.apply(&CapacityTarget::on_demand(3)).await.unwrap();
        assert_eq!(fake.nodes("od"), 3);
    });
    let missing = gke(&rt, &fake, "nope", None, gcp::REFRESH_TOKEN);
    let e = rt.block_on(missing.describe()).unwrap_err();
    assert_eq!(e.kind(), "not_found", "{e}");
    // A revoked refresh token.
    let revoked = gke(&rt, &fake, "od", None, "revoked");
    let e = rt.block_on(revoked.describe()).unwrap_err();
    assert_eq!(e.kind(), "auth", "{e}");
    assert!(e.to_string().contains("invalid_grant"), "{e}");
}

/// Targeted scale-in: `deleteInstances` on the group of each named instance's zone,
/// naming exactly those (skipping, not failing on, any already gone); each group's
/// target size drops by as many; a removal repeated asks for nothing.
#[test]
fn gke_remove_deletes_exactly_the_named_instances_from_their_zones_groups() {
    let fake = FakeGcp::start(vec![
        pool("od", false, &ZONES, 2),
        pool("spot", true, &ZONES, 1),
    ]);
    let rt = runtime();
    let p = gke(&rt, &fake, "od", Some("spot"), gcp::REFRESH_TOKEN);
    let od_a = gcp::group_name("od", ZONES[0]);
    let od_b = gcp::group_name("od", ZONES[1]);
    let spot_b = gcp::group_name("spot", ZONES[1]);
    rt.block_on(async {
        assert_eq!(p.describe().await.unwrap().desired, 6);
        let asked = vec![
            gcp::instance_name(&od_a, 1),
            gcp::instance_name(&spot_b, 0),
            "gke-prod-od-gone".to_owned(),
        ];
        p.remove(&asked).await.unwrap();
        let d = p.describe().await.unwrap();
        assert_eq!(d.desired, 4);
        let mut left: Vec<String> = d.instances.iter().map(|i| i.id.clone()).collect();
        left.sort();
        let mut want = vec![
            gcp::instance_name(&od_a, 0),
            gcp::instance_name(&od_b, 0),
            gcp::instance_name(&od_b, 1),
            gcp::instance_name(&gcp::group_name("spot", ZONES[0]), 0),
        ];
        want.sort();
        assert_eq!(left, want);
        p.remove(&asked).await.unwrap();
        assert_eq!(p.describe().await.unwrap().desired, 4);
    });
    let deletes: Vec<serde_json::Value> = fake
        .seen()
        .into_iter()
        .filter(|s| s.rpc == "compute.instanceGroupManagers.deleteInstances")
        .map(|s| {
            assert_eq!(s.status, 200, "{s:?}");
            s.body
        })
        .collect();
    assert_eq!(
        deletes,
        [
            serde_json::json!({"instances": [format!("zones/{}/instances/{}", ZONES[0], gcp::instance_name(&od_a, 1))], "skipInstancesOnValidationError": true}),
            serde_json::json!({"instances": [format!("zones/{}/instances/{}", ZONES[1], gcp::instance_name(&spot_b, 0))], "skipInstancesOnValidationError": true}),
        ]
    );
}

#[test]
fn the_gcp_role_grants_exactly_the_permissions_the_calls_need() {
    let text = std::fs::read_to_string(repo().join("packaging/iam/gcp-role.yaml")).unwrap();
    // The file is a flat YAML document: `includedPermissions:` then `- name` lines.
    let mut granted = BTreeSet::new();
    let mut in_list = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || t.is_empty() {
            continue;
        }
        if !line.starts_with(' ') && !line.starts_with('-') {
            in_list = t == "includedPermissions:";
            continue;
        }
        if in_list && let Some(p) = t.strip_prefix("- ") {
            granted.insert(p.trim().to_owned());
        }
    }
    assert!(text.contains("\nstage: GA"), "{text}");
    let code: BTreeSet<String> = capstan_providers::gke::OPERATIONS
        .iter()
        .map(|(_, p)| (*p).to_owned())
        .collect();
    assert_eq!(granted, code, "the role and gke::OPERATIONS differ");

    // Every RPC the provider makes is one of OPERATIONS.
    let fake = FakeGcp::start(vec![
        pool("od", false, &ZONES, 1),
        pool("spot", true, &ZONES, 0),
    ]);
    let rt = runtime();
    let p = gke(&rt, &fake, "od", Some("spot"), gcp::REFRESH_TOKEN);
    rt.block_on(async {
        p.describe().await.unwrap();
        p.apply(&split(4, 2)).await.unwrap();
        let first = p.describe().await.unwrap().instances[0].id.clone();
        p.remove(&[first]).await.unwrap();
    });
    let mut used = BTreeSet::new();
    for s in fake.seen() {
        assert_eq!(s.status, 200, "{s:?}");
        if s.rpc == "token" {
            continue;
        }
        let rpc = if s.rpc.starts_with("setSize ") {
            "container.projects.locations.clusters.nodePools.setSize"
        } else {
            s.rpc.as_str()
        };
        let (_, permission) = capstan_providers::gke::OPERATIONS
            .iter()
            .find(|(r, _)| *r == rpc)
            .unwrap_or_else(|| panic!("{rpc} is not in gke::OPERATIONS"));
        used.insert((*permission).to_owned());
    }
    assert_eq!(used, granted, "calls made vs permissions granted");
}

// ---------------------------------------------------------------- end to end

/// A Prometheus `/api/v1/query` that answers every query with `value()` as a scalar.
fn prometheus_endpoint(value: impl Fn() -> f64 + Send + 'static) -> u16 {
    http_endpoint("application/json", move || {
        serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [1_764_316_800.0, value().to_string()]}}).to_string()
    })
}

fn write_config(
    dir: &Path,
    arm: &FakeArm,
    gcp: &FakeGcp,
    demand_port: u16,
    prometheus_port: u16,
) -> std::path::PathBuf {
    let path = dir.join("capstan.toml");
    let behavior = r#"behavior = { preset = "balanced", scale_up = { stabilization_window = "0s" }, scale_down = { stabilization_window = "0s", select_policy = "max", policies = [{ type = "nodes", value = 1, period = "1s" }] } }"#;
    std::fs::write(
        &path,
        format!(
            r#"
[agent]
pool = "azure-gpu"

[[scrape]]
url = "http://127.0.0.1:{demand_port}/metrics"
series = "test_demand"
name = "demand"

[[pool]]
name = "azure-gpu"
provider = {{ type = "azure", subscription_id = "{sub}", resource_group = "{rg}", scale_set = "gpu", endpoint = "{arm}", credential = "environment", authority_host = "{arm}", ca_file = "{ca}" }}
min = 1
max = 8
targets = [{{ metric = "workload.demand", value = 30 }}]
spot = {{ on_demand_base = 1, on_demand_percent_above_base = 0, retry_after = "10m" }}
price = {{ on_demand = 3.0, spot = 1.0 }}
{behavior}

[[pool]]
name = "gke-web"
provider = {{ type = "gke", project = "{project}", location = "{location}", cluster = "{cluster}", node_pool = "od", endpoint = "{gcp}" }}
min = 1
max = 8
targets = [{{ promql = "avg(demand)", prometheus_url = "http://127.0.0.1:{prometheus_port}", value = 30 }}]
{behavior}
"#,
            sub = arm::SUBSCRIPTION,
            rg = arm::RESOURCE_GROUP,
            arm = arm.url,
            ca = arm.ca.display(),
            project = gcp::PROJECT,
            location = gcp::LOCATION,
            cluster = gcp::CLUSTER,
            gcp = gcp.url,
        ),
    )
    .unwrap();
    path
}

#[test]
fn capstan_run_scales_an_azure_pool_and_a_gke_pool_from_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let arm = FakeArm::start(dir.path(), "gpu", 1, true, true);
    let gcp = FakeGcp::start(vec![pool("od", false, &ZONES[..1], 1)]);
    let adc = dir.path().join("adc.json");
    std::fs::write(&adc, gcp.credentials_json(gcp::REFRESH_TOKEN).to_string()).unwrap();
    // A total demand, spread over each pool's nodes as a load balancer would: the
    // Azure pool reads it from this node's scrape, the GKE pool from PromQL. Each
    // pool wants total / 30 nodes.
    let demand = Arc::new(AtomicU64::new(90.0_f64.to_bits()));
    let (d, state) = (demand.clone(), arm.state.clone());
    let port = demand_endpoint(move || {
        f64::from_bits(d.load(Ordering::Relaxed))
            / f64::from(state.lock().unwrap().set.capacity.max(1))
    });
    let (d, state) = (demand.clone(), gcp.state.clone());
    let prometheus = prometheus_endpoint(move || {
        let nodes: u32 = state
            .lock()
            .unwrap()
            .pools
            .iter()
            .map(|p| p.per_zone * p.zones.len() as u32)
            .sum();
        f64::from_bits(d.load(Ordering::Relaxed)) / f64::from(nodes.max(1))
    });
    let config = write_config(dir.path(), &arm, &gcp, port, prometheus);
    let adc_path = adc.display().to_string();
    let agent = Agent::start_with(
        &config,
        &dir.path().join("state"),
        &[
            ("AZURE_TENANT_ID", arm::TENANT),
            ("AZURE_CLIENT_ID", arm::CLIENT_ID),
            ("AZURE_CLIENT_SECRET", arm::CLIENT_SECRET),
            ("GOOGLE_APPLICATION_CREDENTIALS", &adc_path),
        ],
    );
    let journal = |agent: &Agent| {
        agent
            .journal_lines()
            .iter()
            .map(|l| {
                format!(
                    "{} {} → {} {}: {}",
                    l["pool"], l["current"], l["desired"], l["action"], l["explain"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    // 90 demand on a node whose target is 30: both pools go to 3.
    agent.wait_for("both pools at 3 nodes", |a| {
        let _ = a;
        (arm.capacity() == 3 && gcp.nodes("od") == 3).then_some(())
    });
    // The Azure pool's split: 1 on demand, 2 spot.
    assert_eq!(
        arm.patches().last().unwrap()["properties"]["priorityMixPolicy"],
        serde_json::json!({"baseRegularPriorityCount": 1, "regularPriorityPercentageAboveBase": 0}),
        "{}",
        journal(&agent)
    );

    // Azure has no spot capacity for the next step: the update fails with
    // AllocationFailed, and the planner moves the refused spot node to on demand.
    arm.set_fault(Some(PatchFault::FailOperation("AllocationFailed")));
    demand.store(120.0_f64.to_bits(), Ordering::Relaxed);
    agent.wait_for("the Azure pool at 4 nodes", |_| {
        (arm.capacity() == 4).then_some(())
    });
    let patches = arm.patches();
    assert_eq!(
        patches.last().unwrap()["properties"]["priorityMixPolicy"],
        serde_json::json!({"baseRegularPriorityCount": 2, "regularPriorityPercentageAboveBase": 0}),
        "the refused node on demand: {patches:#?}\n{}",
        journal(&agent)
    );
    agent.wait_for("the GKE pool at 4 nodes", |_| {
        (gcp.nodes("od") == 4).then_some(())
    });
    let lines = agent.journal_lines();
    assert!(
        lines.iter().any(|l| l["pool"] == "azure-gpu"
            && l["action"] == "failed"
            && l["explain"].to_string().contains("spot refused")
            && l["explain"].to_string().contains("AllocationFailed")),
        "{}",
        journal(&agent)
    );

    // Demand falls: both pools come down one node per second.
    demand.store(30.0_f64.to_bits(), Ordering::Relaxed);
    agent.wait_for("both pools at 1 node", |_| {
        (arm.capacity() == 1 && gcp.nodes("od") == 1).then_some(())
    });
    // Status and metrics name both providers.
    let status = agent.status();
    let kinds: BTreeSet<String> = status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["azure-gpu".to_owned(), "gke-web".to_owned()])
    );
    let (_, metrics) = agent.get("/metrics");
    for provider in ["azure", "gke"] {
        let series = format!(
            r#"capstan_provider_requests_total{{provider="{provider}",operation="apply",outcome="ok"}}"#
        );
        assert!(
            metric(&metrics, &series).is_some_and(|v| v >= 3.0),
            "{series}\n{metrics}"
        );
    }
    // No call ever went past the pools' bounds.
    assert!(
        arm.patches()
            .iter()
            .all(|p| p["sku"]["capacity"].as_u64().unwrap() <= 8)
    );
    assert!(gcp.set_sizes().iter().all(|(_, n)| *n <= 8));
    assert!(
        arm.seen().iter().all(|s| s.status != 400),
        "{:#?}",
        arm.seen()
    );
    assert!(
        gcp.seen().iter().all(|s| s.status == 200),
        "{:#?}",
        gcp.seen()
    );
}

/// Slow clouds, end to end: an Azure scale-set update and a GKE resize that the
/// clouds keep "running" (for the whole test, over a minute) hold only their own pools.
/// The agent (interval 1 s, systemd's watchdog at 3 s on a test socket) keeps deciding
/// its other pool every interval for 60 s, keeps pinging the watchdog, stays healthy,
/// journals the slow pools `in_flight` and sends them nothing more; SIGTERM ends it
/// within 2 s. A new process polls the same operations instead of submitting others,
/// and records their ends.
#[test]
fn a_slow_cloud_operation_holds_only_its_pool_and_outlives_a_restart() {
    use std::os::unix::net::UnixDatagram;

    let dir = tempfile::tempdir().unwrap();
    let arm = FakeArm::start(dir.path(), "gpu", 1, true, false);
    let gcp = FakeGcp::start(vec![pool("od", false, &ZONES[..1], 1)]);
    // Running until the test ends them.
    arm.state.lock().unwrap().polls = u32::MAX;
    gcp.state.lock().unwrap().polls = u32::MAX;
    let adc = dir.path().join("adc.json");
    std::fs::write(&adc, gcp.credentials_json(gcp::REFRESH_TOKEN).to_string()).unwrap();
    let config = dir.path().join("capstan.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[pool]]
name = "azure-gpu"
provider = {{ type = "azure", subscription_id = "{sub}", resource_group = "{rg}", scale_set = "gpu", endpoint = "{arm}", credential = "environment", authority_host = "{arm}", ca_file = "{ca}" }}
min = 3
max = 8
targets = [{{ metric = "cpu.utilization", value = 50 }}]

[[pool]]
name = "gke-web"
provider = {{ type = "gke", project = "{project}", location = "{location}", cluster = "{cluster}", node_pool = "od", endpoint = "{gcp}" }}
min = 2
max = 8
targets = [{{ metric = "cpu.utilization", value = 50 }}]

[[pool]]
name = "steady"
provider = {{ type = "dry-run", initial = 2 }}
min = 1
max = 5
targets = [{{ metric = "cpu.utilization", value = 50 }}]
"#,
            sub = arm::SUBSCRIPTION,
            rg = arm::RESOURCE_GROUP,
            arm = arm.url,
            ca = arm.ca.display(),
            project = gcp::PROJECT,
            location = gcp::LOCATION,
            cluster = gcp::CLUSTER,
            gcp = gcp.url,
        ),
    )
    .unwrap();
    let notify = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&notify).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let notify_path = notify.display().to_string();
    let adc_path = adc.display().to_string();
    let env = [
        ("AZURE_TENANT_ID", arm::TENANT),
        ("AZURE_CLIENT_ID", arm::CLIENT_ID),
        ("AZURE_CLIENT_SECRET", arm::CLIENT_SECRET),
        ("GOOGLE_APPLICATION_CREDENTIALS", adc_path.as_str()),
        ("NOTIFY_SOCKET", notify_path.as_str()),
        ("WATCHDOG_USEC", "3000000"),
    ];
    let state = dir.path().join("state");
    let lines_of = |agent: &Agent, pool: &str, action: &str| {
        agent
            .journal_lines()
            .iter()
            .filter(|l| l["pool"] == pool && (action.is_empty() || l["action"] == action))
            .count()
    };
    let mut agent = Agent::start_with(&config, &state, &env);
    // Below their mins, the Azure pool is sent 3 nodes and the GKE pool 2, once each;
    // the clouds keep at it.
    agent.wait_for("both slow pools in flight", |a| {
        (lines_of(a, "azure-gpu", "in_flight") >= 2 && lines_of(a, "gke-web", "in_flight") >= 2)
            .then_some(())
    });
    assert_eq!(lines_of(&agent, "azure-gpu", "submitted"), 1);
    assert_eq!(lines_of(&agent, "gke-web", "submitted"), 1);

    // A minute of slow clouds: longer than the watchdog (3 s) and `/healthz`'s
    // tolerance (3 intervals + 10 s) many times over.
    let steady_before = lines_of(&agent, "steady", "");
    let mut pings = 0;
    let mut healthy = 0;
    #[allow(clippy::disallowed_methods)]
    let window = std::time::Instant::now();
    while window.elapsed() < Duration::from_secs(60) {
        let mut buf = [0_u8; 256];
        if let Ok(n) = socket.recv(&mut buf)
            && String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1")
        {
            pings += 1;
        }
        if agent.get("/healthz").0 == 200 {
            healthy += 1;
        } else {
            panic!("/healthz failed {:?} into the operations", window.elapsed());
        }
    }
    let steady = lines_of(&agent, "steady", "") - steady_before;
    eprintln!(
        "slow clouds (Azure and GKE operations running, interval 1 s), 60 s: the other pool decided {steady} times, {pings} watchdog pings, /healthz 200 {healthy} times"
    );
    assert!(
        steady >= 50,
        "the other pool was decided {steady} times in 60 s"
    );
    assert!(
        pings >= 30,
        "{pings} watchdog pings in 60 s (every 1.5 s expected)"
    );
    assert!(healthy > 0);
    assert_eq!(
        arm.patches().len(),
        1,
        "a second Azure target while in flight"
    );
    assert_eq!(
        gcp.set_sizes(),
        [("od".to_owned(), 2)],
        "a second GKE resize while in flight"
    );
    assert!(lines_of(&agent, "gke-web", "in_flight") >= 50);
    let status = agent.status();
    let pools = status["pools"].as_array().unwrap();
    let by_name = |name: &str| pools.iter().find(|p| p["name"] == name).unwrap();
    let op = &by_name("azure-gpu")["operation"];
    assert!(
        op["id"].as_str().unwrap_or("").contains("/operations/"),
        "{status:#}"
    );
    assert_eq!(op["target"], 3);
    let op = &by_name("gke-web")["operation"];
    assert!(
        op["id"]
            .as_str()
            .unwrap_or("")
            .contains("/operations/operation-"),
        "{status:#}"
    );
    assert_eq!(op["target"], 2);
    assert!(by_name("steady")["operation"].is_null());
    let (_, metrics) = agent.get("/metrics");
    for pool in ["azure-gpu", "gke-web"] {
        assert_eq!(
            metric(
                &metrics,
                &format!(r#"capstan_pool_operation_in_flight{{pool="{pool}"}}"#)
            ),
            Some(1.0)
        );
    }

    // SIGTERM with the operations in flight: out within 2 s.
    #[allow(clippy::disallowed_methods)]
    let stopping = std::time::Instant::now();
    agent.signal("TERM");
    assert!(agent.wait_exit().success());
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");

    // A new process picks the operations up from the decision state: it polls them,
    // and submits nothing.
    let (azure_polls, gke_polls) = (arm.polls_answered(), gcp.polls_answered());
    let agent = Agent::start_with(&config, &state, &env);
    agent.wait_for("the new process polling both operations", |_| {
        (arm.polls_answered() > azure_polls + 1 && gcp.polls_answered() > gke_polls + 1)
            .then_some(())
    });
    assert_eq!(arm.patches().len(), 1, "the new process submitted again");
    assert_eq!(gcp.set_sizes().len(), 1, "the new process resized again");
    // The clouds finish; each end is recorded with its operation's target.
    arm.finish_operations();
    gcp.finish_operations();
    agent.wait_for("both operations' ends in the journal", |a| {
        let lines = a.journal_lines();
        let done = |pool: &str| {
            lines.iter().any(|l| {
                l["pool"] == pool
                    && l["action"] == "scaled"
                    && l["detail"].as_str().unwrap_or("").contains("done after")
            })
        };
        (done("azure-gpu") && done("gke-web")).then_some(())
    });
    assert_eq!(arm.capacity(), 3);
    assert_eq!(gcp.nodes("od"), 2);
    assert_eq!(arm.patches().len(), 1);
    assert_eq!(gcp.set_sizes().len(), 1);
    let (_, metrics) = agent.get("/metrics");
    for (pool, provider) in [("azure-gpu", "azure"), ("gke-web", "gke")] {
        assert_eq!(
            metric(
                &metrics,
                &format!(r#"capstan_pool_operation_in_flight{{pool="{pool}"}}"#)
            ),
            Some(0.0)
        );
        assert!(
            metric(
                &metrics,
                &format!(r#"capstan_operation_duration_seconds_count{{provider="{provider}"}}"#)
            )
            .is_some_and(|n| n >= 1.0),
            "{metrics}"
        );
    }
}
