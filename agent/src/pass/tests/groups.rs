//! Pool groups through the pass: spill-over in the same pass, and members beside others.

use super::*;

/// A group of two members on fakes: `web-aws` (cheaper, at most 6) and `web-azure`,
/// which gives capacity back at one node a minute.
fn group_fleet() -> (ValidatedConfig, Arc<FakeProvider>, Arc<FakeProvider>) {
    let text = r#"
        [[pool]]
        name = "web-aws"
        provider = { type = "dry-run" }
        min = 1
        max = 6
        price = { on_demand = 0.10 }

        [[pool]]
        name = "web-azure"
        provider = { type = "dry-run" }
        min = 1
        max = 10
        price = { on_demand = 0.12 }
        behavior = { scale_down = { stabilization_window = "0s", policies = [{ type = "nodes", value = 1, period = "60s" }] } }

        [[group]]
        name = "web"
        strategy = "cheapest"
        members = ["web-aws", "web-azure"]
        behavior = "aggressive"
        targets = [{ metric = "cpu.utilization", value = 50 }]
    "#;
    let cfg = capstan_config::from_str("t.toml".as_ref(), text, std::iter::empty()).unwrap();
    (cfg, fake(2), fake(2))
}

async fn group_pass(
    pools: &mut [PoolRuntime],
    groups: &mut [GroupRuntime],
    cpu: f64,
    now: DateTime<Utc>,
) -> FleetOutcome {
    let a = crate::testutil::cpu_report("a", "web-aws", cpu, now);
    let b = crate::testutil::cpu_report("b", "web-azure", cpu, now);
    fleet_pass(
        pools,
        groups,
        &[&a, &b],
        &no_budget(),
        Turn::new(&leader(), Mode::Act, now, SECOND),
    )
    .await
}

#[tokio::test]
async fn a_refused_member_spills_over_in_the_same_pass_and_gets_it_back_at_the_scale_down_rate() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let (cfg, aws, azure) = group_fleet();
    let mut pools = vec![
        PoolRuntime::new(cfg.pools[0].clone(), aws.clone()),
        PoolRuntime::new(cfg.pools[1].clone(), azure.clone()),
    ];
    let mut groups = build_groups(&cfg, &mut HashMap::new());
    aws.fail_next_apply(ProviderError::InsufficientCapacity {
        message: "InsufficientInstanceCapacity in us-east-1a".into(),
    });
    // 4 nodes at twice the target: the group wants 8; the cheaper member is
    // given all it may hold (6), and refuses the 4 new ones.
    let out = group_pass(&mut pools, &mut groups, 100.0, now).await;
    let g = &out.groups[0];
    assert_eq!((g.current, g.desired, g.granted), (4, 8, 8), "{g:?}");
    assert_eq!(aws.apply_calls(), vec![CapacityTarget::on_demand(6)]);
    assert_eq!(azure.apply_calls(), vec![CapacityTarget::on_demand(6)]);
    let (aws_out, azure_out) = match &out.pools[..] {
        [Ok(a), Ok(b)] => (a, b),
        other => panic!("{other:?}"),
    };
    assert_eq!(aws_out.action, Action::Failed);
    assert!(
        aws_out
            .reasons
            .iter()
            .any(|r| matches!(r, Reason::GroupRefused { nodes: 4, .. })),
        "{:?}",
        aws_out.reasons
    );
    assert_eq!((azure_out.current, azure_out.desired), (2, 6));
    assert!(
        azure_out.reasons.iter().any(|r| r.to_string()
            == "group web: 4 node(s) spilled over from web-aws, whose cloud could not take them"),
        "{:?}",
        azure_out.reasons
    );
    assert_eq!(g.members[0].refused, 4);
    assert_eq!(g.members[1].spilled_in, 4);

    // The cloud has capacity again: each minute one node leaves web-azure (its
    // scale-down rate) and web-aws takes it, the group staying at 8.
    let mut sizes = Vec::new();
    for minute in 1..=6 {
        let at = now + chrono::Duration::seconds(61 * minute);
        let out = group_pass(&mut pools, &mut groups, 50.0, at).await;
        let g = &out.groups[0];
        assert_eq!(g.granted, 8, "{g:?}");
        sizes.push((
            aws.describe().await.unwrap().desired,
            azure.describe().await.unwrap().desired,
        ));
    }
    assert_eq!(sizes, vec![(3, 5), (4, 4), (5, 3), (6, 2), (6, 2), (6, 2)]);
}

#[tokio::test]
async fn members_outside_the_group_are_acted_on_as_before_and_group_lines_explain_the_split() {
    let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let (cfg, aws, azure) = group_fleet();
    let mut pools = vec![
        PoolRuntime::new(cfg.pools[0].clone(), aws.clone()),
        PoolRuntime::new(cfg.pools[1].clone(), azure.clone()),
    ];
    let mut groups = build_groups(&cfg, &mut HashMap::new());
    let out = group_pass(&mut pools, &mut groups, 100.0, now).await;
    let g = &out.groups[0];
    assert_eq!(aws.apply_calls(), vec![CapacityTarget::on_demand(6)]);
    assert!(azure.apply_calls().is_empty());
    assert_eq!(g.members[0].limit, Some(Limit::Max));
    let Ok(o) = &out.pools[0] else { panic!() };
    assert_eq!(o.group.as_deref(), Some("web"));
    assert_eq!(
        o.reasons[0].to_string(),
        "group web (cheapest): 6 of its 8 node(s) here, 0.1000/node-h, held by max"
    );
}
