//! Tests of `aws`.

use super::*;

fn rec(t: &str, z: &str, p: &str, at: f64) -> SpotRecord {
    SpotRecord {
        instance_type: t.into(),
        zone: z.into(),
        price: p.into(),
        at,
    }
}

#[test]
fn the_latest_price_per_type_and_zone_is_averaged() {
    let zones: BTreeSet<String> = ["us-east-1a".into(), "us-east-1b".into()].into();
    let price = latest_mean_price(
        [
            rec("m5.large", "us-east-1a", "0.040000", 10.0),
            rec("m5.large", "us-east-1a", "0.030000", 20.0), // newer: wins
            rec("m5.large", "us-east-1b", "0.050000", 5.0),
            rec("m5.large", "us-east-1c", "9.0", 30.0), // not the group's zone
            rec("m5.xlarge", "us-east-1a", "0.100000", 1.0),
            rec("m5.xlarge", "us-east-1b", "n/a", 2.0), // unreadable: ignored
        ],
        &zones,
    )
    .unwrap();
    assert!((price - (0.03 + 0.05 + 0.1) / 3.0).abs() < 1e-12, "{price}");
    assert_eq!(latest_mean_price([], &zones), None);
}

#[test]
fn the_distribution_holds_the_planned_split_exactly() {
    let t = |capacity, on_demand| CapacityTarget {
        capacity,
        on_demand,
        emergency: false,
    };
    assert_eq!(distribution(&t(10, 3)), (3, 0));
    assert_eq!(distribution(&t(10, 10)), (10, 100));
    assert_eq!(distribution(&t(4, 0)), (0, 0));
}

#[test]
fn aws_error_codes_map_to_typed_errors() {
    let m = || "m".to_owned();
    assert_eq!(classify("Throttling", Some(400), m()).kind(), "throttled");
    assert_eq!(
        classify("InsufficientInstanceCapacity", Some(500), m()).kind(),
        "insufficient_capacity"
    );
    assert_eq!(classify("AccessDenied", Some(403), m()).kind(), "auth");
    assert_eq!(
        classify("InvalidClientTokenId", Some(403), m()).kind(),
        "auth"
    );
    assert_eq!(
        classify("ValidationError", Some(400), m()).kind(),
        "validation"
    );
    assert_eq!(classify("", Some(503), m()).kind(), "transient");
    assert_eq!(classify("", None, m()).kind(), "transient");
    assert_eq!(classify("", Some(403), m()).kind(), "auth");
    assert_eq!(classify("Whatever", Some(429), m()).kind(), "throttled");
    assert_eq!(
        classify("ScalingActivityInProgress", Some(400), m()).kind(),
        "transient"
    );
}

#[test]
fn asg_lifecycle_states_map_onto_ours() {
    let l = |s: &str| lifecycle(Some(&LifecycleState::from(s)));
    assert_eq!(l("InService"), Lifecycle::InService);
    assert_eq!(l("Pending:Wait"), Lifecycle::Pending);
    assert_eq!(l("Terminating:Proceed"), Lifecycle::Terminating);
    assert_eq!(l("EnteringStandby"), Lifecycle::Standby);
    assert_eq!(l("Detaching"), Lifecycle::Terminating);
    assert_eq!(l("Warmed:Pending"), Lifecycle::Pending);
    assert_eq!(lifecycle(None), Lifecycle::Pending);
}
