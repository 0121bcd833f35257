//! Tests of `azure`.

use super::*;

const EXAMPLES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/data/cloud-api/azure/compute-2024-11-01/examples"
);

fn example(name: &str) -> Option<Value> {
    let text = std::fs::read_to_string(format!("{EXAMPLES}/{name}")).ok()?;
    serde_json::from_str(&text).ok()
}

#[test]
fn reads_the_published_get_example() {
    // The published example, where the shared data is checked out beside the repo;
    // the same shape inline otherwise.
    let body = example("VirtualMachineScaleSet_Get.json")
        .map(|e| e["responses"]["200"]["body"].clone())
        .unwrap_or_else(|| {
            json!({"sku": {"name": "Standard_D2s_v3", "tier": "Standard", "capacity": 4},
                   "properties": {"virtualMachineProfile": {}}})
        });
    let seen = parse_scale_set(&body).unwrap();
    assert_eq!(seen.capacity, 4);
    assert!(!seen.flexible);
    assert!(!seen.spot_profile);
    assert_eq!(seen.mix, None);
}

#[test]
fn reads_a_flexible_spot_set_with_a_mix() {
    let body = json!({
        "sku": {"name": "Standard_A8m_v2", "capacity": 10},
        "properties": {
            "orchestrationMode": "Flexible",
            "priorityMixPolicy": {"baseRegularPriorityCount": 10, "regularPriorityPercentageAboveBase": 50},
            "virtualMachineProfile": {"priority": "Spot"}
        }
    });
    let seen = parse_scale_set(&body).unwrap();
    assert!(seen.flexible && seen.spot_profile);
    assert_eq!(seen.mix, Some((10, 50)));
}

#[test]
fn vm_priority_and_state() {
    let vm = json!({"name": "vmss_1", "properties": {"priority": "Spot", "provisioningState": "Creating"}, "zones": ["2"]});
    let i = parse_vm(&vm, false);
    assert_eq!(i.id, "vmss_1");
    assert_eq!(i.market, Market::Spot);
    assert_eq!(i.lifecycle, Lifecycle::Pending);
    assert_eq!(i.zone.as_deref(), Some("2"));
    let vm = json!({"name": "u_0", "sku": {"name": "Standard_D2s_v3"}, "properties": {"provisioningState": "Succeeded"}});
    let i = parse_vm(&vm, true);
    assert_eq!(
        i.market,
        Market::Spot,
        "a Uniform VM has the profile's priority"
    );
    assert_eq!(i.lifecycle, Lifecycle::InService);
    assert_eq!(i.instance_type.as_deref(), Some("Standard_D2s_v3"));
}

#[test]
fn capacity_codes_match_whole_parts() {
    assert!(is_capacity_code("AllocationFailed"));
    assert!(is_capacity_code("OperationNotAllowed/SkuNotAvailable"));
    assert!(!is_capacity_code("OperationNotAllowed/TooManyRequests"));
    let failed =
        json!({"status": "Failed", "error": {"code": "ZonalAllocationFailed", "message": "no"}});
    assert_eq!(operation_error(&failed).kind(), "insufficient_capacity");
    let failed = json!({"status": "Failed", "error": {"code": "InternalError", "message": "no"}});
    assert_eq!(operation_error(&failed).kind(), "transient");
}
