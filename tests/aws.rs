//! AWS through the real SDK against moto_server (scripts/test-deps.sh installs it):
//! the Auto Scaling Group lifecycle, `capstan run` end to end, faults injected by a
//! proxy in front of moto, and spot interruption notices from an in-test IMDSv2.
//!
//! Known moto limits, which these tests do not mistake for our bugs: spot instances are
//! not modelled (every instance is on-demand, so the spot split is checked on the
//! MixedInstancesPolicy, not on instances); the spot price is a fixed dummy; desired
//! capacity above max is accepted (so the provider's own refusal is what is tested);
//! concurrent calls occasionally fail (each test drives one moto with sequential calls).

#[cfg(feature = "etcd")]
#[path = "support/etcd.rs"]
mod etcd;
#[path = "support/moto.rs"]
mod moto;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_autoscaling::types::{
    InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification,
    MixedInstancesPolicy,
};
use capstan_providers::aws::{AwsProvider, AwsSettings};
use capstan_providers::{CapacityTarget, Lifecycle, Market, NodePoolProvider, ProviderError};
use moto::{Fault, Moto, Proxy};
use support::*;

const REGION: &str = "us-east-1";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The SDK's configuration for moto: fixed test credentials, nothing read from the
/// environment or ~/.aws.
fn sdk(url: &str) -> aws_config::SdkConfig {
    let creds = aws_sdk_autoscaling::config::Credentials::new(
        "testing",
        "testing",
        None,
        None,
        "capstan-tests",
    );
    aws_config::SdkConfig::builder()
        .region(aws_config::Region::new(REGION))
        .endpoint_url(url)
        .credentials_provider(aws_sdk_autoscaling::config::SharedCredentialsProvider::new(
            creds,
        ))
        .behavior_version(aws_config::BehaviorVersion::latest())
        .build()
}

/// A launch template and an ASG, made with the SDK itself: with a MixedInstancesPolicy
/// over `types` when `mixed`, else on the launch template alone (moto launches one
/// instance fewer than desired for a mixed group; the end-to-end tests need as many
/// in-service instances as the desired capacity).
async fn create_group(
    url: &str,
    name: &str,
    (min, max, desired): (i32, i32, i32),
    types: &[&str],
    mixed: bool,
) {
    let conf = sdk(url);
    let ec2 = aws_sdk_ec2::Client::new(&conf);
    let asg = aws_sdk_autoscaling::Client::new(&conf);
    ec2.create_launch_template()
        .launch_template_name(name)
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id("ami-12c6146b")
                .instance_type(aws_sdk_ec2::types::InstanceType::from(types[0]))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let overrides: Vec<LaunchTemplateOverrides> = types
        .iter()
        .map(|t| LaunchTemplateOverrides::builder().instance_type(*t).build())
        .collect();
    let create = asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(min)
        .max_size(max)
        .desired_capacity(desired)
        .availability_zones("us-east-1a");
    if !mixed {
        create
            .launch_template(
                LaunchTemplateSpecification::builder()
                    .launch_template_name(name)
                    .version("$Latest")
                    .build(),
            )
            .send()
            .await
            .unwrap();
        return;
    }
    create
        .mixed_instances_policy(
            MixedInstancesPolicy::builder()
                .launch_template(
                    LaunchTemplate::builder()
                        .launch_template_specification(
                            LaunchTemplateSpecification::builder()
                                .launch_template_name(name)
                                .version("$Latest")
                                .build(),
                        )
                        .set_overrides(Some(overrides))
                        .build(),
                )
                .instances_distribution(
                    InstancesDistribution::builder()
                        .on_demand_base_capacity(1)
                        .on_demand_percentage_above_base_capacity(50)
                        .spot_allocation_strategy("price-capacity-optimized")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
}

/// `(desired, max, (OnDemandBaseCapacity, OnDemandPercentageAboveBaseCapacity))` as the
/// SDK reads them back.
async fn read_group(url: &str, name: &str) -> (i32, i32, Option<(i32, i32)>) {
    let asg = aws_sdk_autoscaling::Client::new(&sdk(url));
    let out = asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .unwrap();
    let g = &out.auto_scaling_groups()[0];
    let dist = g
        .mixed_instances_policy()
        .and_then(|m| m.instances_distribution())
        .map(|d| {
            (
                d.on_demand_base_capacity().unwrap_or(-1),
                d.on_demand_percentage_above_base_capacity().unwrap_or(-1),
            )
        });
    (g.desired_capacity().unwrap(), g.max_size().unwrap(), dist)
}

fn provider(url: &str, asg: &str) -> AwsProvider {
    split_provider(url, asg, false)
}

/// A provider that sets the group's on-demand/spot split (a pool with spot settings).
fn split_provider(url: &str, asg: &str, manage_split: bool) -> AwsProvider {
    AwsProvider::with_sdk_config(
        AwsSettings {
            region: REGION.into(),
            asg: asg.into(),
            endpoint_url: Some(url.into()),
            assume_role_arn: None,
            manage_split,
        },
        sdk(url),
    )
}

#[test]
fn asg_lifecycle_through_the_real_sdk() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(&dir.path().join("moto.log"));
    runtime().block_on(async {
        create_group(
            &moto.url,
            "web",
            (1, 6, 2),
            &["m5.large", "g5.xlarge"],
            true,
        )
        .await;
        let p = provider(&moto.url, "web");

        let d = p.describe().await.unwrap();
        assert_eq!((d.min, d.max, d.desired), (1, 6, 2));
        assert!(!d.instances.is_empty(), "{d:?}");
        for i in &d.instances {
            assert!(i.id.starts_with("i-"), "{i:?}");
            assert_eq!(i.lifecycle, Lifecycle::InService);
            assert_eq!(i.zone.as_deref(), Some("us-east-1a"));
            assert!(i.instance_type.is_some(), "{i:?}");
            assert_eq!(i.market, Market::OnDemand, "moto models no spot instances");
        }

        // Instance types from the EC2 catalogue.
        let shapes = p.instance_types().await.unwrap();
        let m5 = shapes.iter().find(|s| s.name == "m5.large").unwrap();
        assert_eq!((m5.vcpus, m5.memory_mib, m5.gpus), (2, 8192, 0));
        let g5 = shapes.iter().find(|s| s.name == "g5.xlarge").unwrap();
        assert_eq!(
            (g5.vcpus, g5.gpus, g5.gpu_memory_mib),
            (4, 1, 22888),
            "{g5:?}"
        );
        // Every size of a family, for rightsizing, smallest first.
        let family = p.instance_family("m5").await.unwrap();
        let sizes: Vec<(&str, u32)> = family.iter().map(|s| (s.name.as_str(), s.vcpus)).collect();
        assert_eq!(sizes.first(), Some(&("m5.large", 2)), "{sizes:?}");
        assert!(sizes.contains(&("m5.2xlarge", 8)), "{sizes:?}");
        assert!(
            family.iter().all(|s| s.name.starts_with("m5.")),
            "{sizes:?}"
        );
        assert!(sizes.windows(2).all(|w| w[0].1 <= w[1].1), "{sizes:?}");

        // The MixedInstancesPolicy made with the SDK reads back through the provider's
        // describe, and a pool without spot settings leaves it as it is.
        p.apply(&CapacityTarget::on_demand(4)).await.unwrap();
        assert_eq!(read_group(&moto.url, "web").await, (4, 6, Some((1, 50))));
        assert_eq!(p.describe().await.unwrap().desired, 4);
        let split = CapacityTarget {
            capacity: 3,
            on_demand: 1,
            emergency: false,
        };
        p.apply(&split).await.unwrap();
        assert_eq!(read_group(&moto.url, "web").await, (3, 6, Some((1, 50))));
        p.describe().await.unwrap();
        p.apply(&CapacityTarget {
            capacity: 2,
            ..split
        })
        .await
        .unwrap();
        assert_eq!(read_group(&moto.url, "web").await, (2, 6, Some((1, 50))));

        // A pool with spot settings sets the split: a partial update that names only
        // the InstancesDistribution (no launch template, so no permission on it is
        // needed). AWS accepts it; moto answers it with a 500 (a KeyError in moto's
        // update_auto_scaling_group), so here the request itself is checked, and the
        // failure must come back as a retryable error with nothing applied.
        let proxy = Proxy::start(&moto.url);
        let s = split_provider(&proxy.url, "web", true);
        s.describe().await.unwrap();
        // 1 on-demand and 1 spot while the group buys 1 + 50 %: 1 + 0 % is asked for.
        let err = s
            .apply(&CapacityTarget {
                capacity: 2,
                on_demand: 1,
                emergency: false,
            })
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "transient", "{err}");
        let update = proxy
            .seen()
            .into_iter()
            .find(|s| s.action == "UpdateAutoScalingGroup")
            .expect("an UpdateAutoScalingGroup request");
        let p = &update.params;
        assert_eq!(
            p.get("MixedInstancesPolicy.InstancesDistribution.OnDemandBaseCapacity")
                .map(String::as_str),
            Some("1"),
            "{p:?}"
        );
        assert_eq!(
            p.get("MixedInstancesPolicy.InstancesDistribution.OnDemandPercentageAboveBaseCapacity")
                .map(String::as_str),
            Some("0"),
            "{p:?}"
        );
        assert!(
            !p.keys()
                .any(|k| k.contains("LaunchTemplate") || k == "MaxSize"),
            "{p:?}"
        );
        assert!(
            !proxy
                .seen()
                .iter()
                .any(|s| s.action == "SetDesiredCapacity"),
            "no capacity is set when the split could not be"
        );
        // (moto has changed its copy of the distribution before failing.)
        assert_eq!(read_group(&moto.url, "web").await.0, 2);
        let p = provider(&moto.url, "web");
        // Above the group's max only as an emergency, which raises MaxSize.
        p.describe().await.unwrap();
        let err = p.apply(&CapacityTarget::on_demand(8)).await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::Validation { message } if message.contains("MaxSize 6")),
            "{err}"
        );
        assert_eq!(read_group(&moto.url, "web").await.0, 2, "nothing applied");
        let emergency = CapacityTarget {
            emergency: true,
            ..CapacityTarget::on_demand(8)
        };
        p.apply(&emergency).await.unwrap();
        // (moto forgets the MixedInstancesPolicy on any update; AWS keeps it.)
        let (desired, max, _) = read_group(&moto.url, "web").await;
        assert_eq!((desired, max), (8, 8));
        // Back under the pool's max, MaxSize returns to what it was: the group's tag
        // remembers it, so another provider (a new leader) lowers it as well.
        let next = provider(&moto.url, "web");
        next.describe().await.unwrap();
        next.apply(&CapacityTarget::on_demand(5)).await.unwrap();
        let (desired, max, _) = read_group(&moto.url, "web").await;
        assert_eq!(
            (desired, max),
            (5, 6),
            "MaxSize stays raised after the emergency"
        );
        next.describe().await.unwrap();
        next.apply(&CapacityTarget::on_demand(4)).await.unwrap();
        assert_eq!(read_group(&moto.url, "web").await.1, 6);

        // The spot price: moto's is a fixed dummy, but it comes through the real parser.
        let price = p.spot_price().await.unwrap().expect("a spot price");
        assert!(price > 0.0 && price < 100.0, "{price}");

        // A group that does not exist.
        let err = provider(&moto.url, "nope").describe().await.unwrap_err();
        assert!(
            matches!(&err, ProviderError::NotFound { resource } if resource.contains("\"nope\"")),
            "{err}"
        );
    });
    // Credentials that cannot be loaded are an auth error, said plainly, not a
    // transient one to retry.
    let no_creds = AwsProvider::with_sdk_config(
        AwsSettings {
            region: REGION.into(),
            asg: "web".into(),
            endpoint_url: Some(moto.url.clone()),
            assume_role_arn: None,
            manage_split: false,
        },
        aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build(),
    );
    let err = runtime().block_on(no_creds.describe()).unwrap_err();
    assert_eq!(err.kind(), "auth", "{err}");
    assert!(err.to_string().contains("credential"), "{err}");
    moto.reset();
    let err = runtime()
        .block_on(provider(&moto.url, "web").describe())
        .unwrap_err();
    assert_eq!(err.kind(), "not_found", "the reset emptied moto");
}

/// Targeted scale-in through the real SDK: in-service instances are protected before a
/// lower desired capacity goes out (so the group chooses none of them), and `remove`
/// terminates exactly the named ones with the desired capacity lowered by as many,
/// idempotently.
#[test]
fn remove_terminates_exactly_the_named_instances_and_protection_keeps_the_group_from_choosing() {
    let dir = tempfile::tempdir().unwrap();
    let moto = Moto::start(&dir.path().join("moto.log"));
    runtime().block_on(async {
        create_group(&moto.url, "web", (0, 6, 4), &["m5.large"], false).await;
        let p = AwsProvider::with_sdk_config(
            AwsSettings {
                region: REGION.into(),
                asg: "web".into(),
                endpoint_url: Some(moto.url.clone()),
                assume_role_arn: None,
                manage_split: false,
            },
            sdk(&moto.url),
        );
        // The agent chooses which instances leave.
        p.set_targeted(true);
        let ids = |d: &capstan_providers::PoolDescription| {
            d.instances.iter().map(|i| i.id.clone()).collect::<Vec<_>>()
        };
        let before = ids(&p.describe().await.unwrap());
        assert_eq!(before.len(), 4, "{before:?}");
        // Lowering the desired capacity protects the in-service instances first: the
        // group keeps every one of them (moto, like AWS, leaves protected instances).
        p.apply(&CapacityTarget::on_demand(3)).await.unwrap();
        let asg = aws_sdk_autoscaling::Client::new(&sdk(&moto.url));
        let out = asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names("web")
            .send()
            .await
            .unwrap();
        let g = &out.auto_scaling_groups()[0];
        assert!(
            g.instances()
                .iter()
                .all(|i| i.protected_from_scale_in() == Some(true)),
            "{g:?}"
        );
        assert_eq!(ids(&p.describe().await.unwrap()), before);
        p.apply(&CapacityTarget::on_demand(4)).await.unwrap();

        // Remove two by name, and one the group never had.
        let asked = vec![
            before[1].clone(),
            before[3].clone(),
            "i-0000000000000000f".into(),
        ];
        p.remove(&asked).await.unwrap();
        let d = p.describe().await.unwrap();
        assert_eq!(d.desired, 2, "lowered by exactly the two removed");
        assert_eq!(ids(&d), vec![before[0].clone(), before[2].clone()]);
        // Again (a retry, a new leader finishing it): nothing more goes.
        p.remove(&asked).await.unwrap();
        let d = p.describe().await.unwrap();
        assert_eq!(
            (d.desired, ids(&d)),
            (2, vec![before[0].clone(), before[2].clone()])
        );
        // Behind a fence that refuses, nothing is sent.
        struct Closed;
        impl capstan_providers::Fence for Closed {
            fn check(&self) -> Result<(), String> {
                Err("not the leader".into())
            }
        }
        let err = p
            .submit_remove(&[before[0].clone()], &Closed)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "fenced");
        assert_eq!(p.describe().await.unwrap().desired, 2);
    });
}

/// An agent config with one aws pool; the workload metric `demand` comes from a local
/// endpoint the test controls.
fn write_config(dir: &Path, endpoint: &str, demand_port: u16, extra: &str) -> std::path::PathBuf {
    let path = dir.join("capstan.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[[scrape]]
url = "http://127.0.0.1:{demand_port}/metrics"
series = "test_demand"
name = "demand"

[[pool]]
name = "web"
provider = {{ type = "aws", region = "{REGION}", asg = "web", endpoint_url = "{endpoint}" }}
min = 1
max = 6
targets = [{{ metric = "workload.demand", value = 30 }}]
behavior = {{ preset = "balanced", scale_up = {{ stabilization_window = "0s" }}, scale_down = {{ stabilization_window = "0s", select_policy = "max", policies = [{{ type = "nodes", value = 1, period = "2s" }}] }} }}
circuit = {{ failures = 2, max_backoff = "2s" }}
{extra}
"#
        ),
    )
    .unwrap();
    path
}

/// The environment of an agent that talks to moto: test credentials, and no lookups
/// of real ones (IMDS, ~/.aws).
fn moto_env(dir: &Path) -> Vec<(String, String)> {
    let none = dir.join("no-such-file").display().to_string();
    vec![
        ("AWS_ACCESS_KEY_ID".into(), "testing".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "testing".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("AWS_CONFIG_FILE".into(), none.clone()),
        ("AWS_SHARED_CREDENTIALS_FILE".into(), none),
    ]
}

fn start_agent(config: &Path, state: &Path, env: &[(String, String)]) -> Agent {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Agent::start_with(config, state, &env)
}

/// moto, the fault proxy in front of it, and a plain ASG "web" (min 1, max 6) at
/// `desired` nodes.
fn plain_group(dir: &Path, desired: i32) -> (Moto, Proxy) {
    let moto = Moto::start(&dir.join("moto.log"));
    let proxy = Proxy::start(&moto.url);
    runtime().block_on(create_group(
        &moto.url,
        "web",
        (1, 6, desired),
        &["m5.large"],
        false,
    ));
    (moto, proxy)
}

/// The ids of group `asg`'s instances.
fn instance_ids(url: &str, asg: &str) -> Vec<String> {
    runtime()
        .block_on(provider(url, asg).describe())
        .unwrap()
        .instances
        .iter()
        .map(|i| i.id.clone())
        .collect()
}

fn desired(url: &str) -> i32 {
    runtime().block_on(read_group(url, "web")).0
}

/// Serves `test_demand`: the total in `total` spread over the group's desired nodes,
/// as a load balancer would spread it.
fn spread_demand(moto: &str, total: Arc<AtomicU64>) -> u16 {
    let moto = moto.to_owned();
    demand_endpoint(move || {
        f64::from_bits(total.load(Ordering::Relaxed)) / f64::from(desired(&moto).max(1))
    })
}

#[test]
fn capstan_run_scales_an_asg_on_moto_and_journals_each_call() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, proxy) = plain_group(dir.path(), 2);
    // A total demand of 90 spread over the group's nodes, against a target of 30 per
    // node: 3 nodes.
    let demand = Arc::new(AtomicU64::new(90.0_f64.to_bits()));
    let port = spread_demand(&moto.url, demand.clone());
    let config = write_config(dir.path(), &proxy.url, port, "");
    let agent = start_agent(&config, &dir.path().join("state"), &moto_env(dir.path()));

    agent.wait_for("the ASG at 3 nodes", |_| {
        (desired(&moto.url) == 3).then_some(())
    });
    // Demand falls to 30: 1 node, one step per 2 s. (Within 2 s of the step up, HPA's
    // rule counts the period from 2 nodes, which would allow 1 at once: wait it out.)
    std::thread::sleep(Duration::from_millis(2500));
    demand.store(30.0_f64.to_bits(), Ordering::Relaxed);
    // Moto at 1, and the call journaled done (by the next pass, where moto answered
    // after the pass's grace).
    agent.wait_for("the ASG at 1 node, journaled", |a| {
        (desired(&moto.url) == 1
            && a.journal_lines()
                .iter()
                .any(|l| l["action"] == "scaled" && l["desired"] == 1))
        .then_some(())
    });
    let calls = proxy.desired_calls();
    assert_eq!(
        calls,
        [3, 2, 1],
        "one step at a time on the way down: {calls:?}\n{}",
        agent
            .journal_lines()
            .iter()
            .map(|l| format!(
                "{} → {} {}: {}",
                l["current"], l["desired"], l["action"], l["explain"]
            ))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Every call is journaled, with its inputs and reasons: from the size it was sent
    // from (`from`: a call that moto answers after the pass's grace is journaled by the
    // next pass, whose `current` is the new size).
    let lines = |action: &str| -> Vec<serde_json::Value> {
        agent
            .journal_lines()
            .into_iter()
            .filter(|l| l["action"] == action)
            .collect()
    };
    // (the size a line starts from, as `key` says it; its desired size)
    let sizes = |lines: &[serde_json::Value], key: &str| -> Vec<(u64, u64)> {
        lines
            .iter()
            .map(|l| (l[key].as_u64().unwrap(), l["desired"].as_u64().unwrap()))
            .collect()
    };
    let scaled = lines("scaled");
    let steps = sizes(&scaled, "from");
    assert_eq!(steps, [(2, 3), (3, 2), (2, 1)], "{scaled:#?}");
    // Each call's `submitted` line, written by the pass that sent it before it went
    // out, carries that pass's reasons.
    let submitted = lines("submitted");
    assert_eq!(sizes(&submitted, "current"), steps, "{submitted:#?}");
    assert!(
        submitted[1]["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "rate_limited"),
        "{:#}",
        submitted[1]
    );
    // The group's instance type, from the EC2 catalogue, is in the status.
    let status = agent.status();
    assert_eq!(
        status["pools"][0]["instance_types"][0]["name"], "m5.large",
        "{status:#}"
    );
    assert_eq!(status["pools"][0]["instance_types"][0]["vcpus"], 2);
    // The provider's calls are counted and timed.
    let (_, metrics) = agent.get("/metrics");
    assert!(
        metric(
            &metrics,
            r#"capstan_provider_requests_total{provider="aws",operation="apply",outcome="ok"}"#
        ) == Some(3.0),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"capstan_provider_request_duration_seconds_count{provider="aws",operation="describe"}"#),
        "{metrics}"
    );
    // Only operations the IAM policy grants reached AWS.
    let policy = iam_actions();
    for seen in proxy.seen() {
        let action = if [
            "DescribeInstances",
            "DescribeInstanceTypes",
            "DescribeSpotPriceHistory",
        ]
        .contains(&seen.action.as_str())
        {
            format!("ec2:{}", seen.action)
        } else {
            format!("autoscaling:{}", seen.action)
        };
        assert!(
            policy.contains(&action),
            "{action} is not in the IAM policy"
        );
    }
}

#[test]
fn faults_throttling_errors_and_dropped_connections_converge_without_overshoot() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, proxy) = plain_group(dir.path(), 2);
    // Everything throttled: the SDK retries each call, the calls fail, and after 2
    // failed calls in a row the circuit opens.
    proxy.set_rule(|_, _| Some(Fault::Throttle));
    // 120 over the nodes against 30 per node: 4 nodes.
    let demand = spread_demand(&moto.url, Arc::new(AtomicU64::new(120.0_f64.to_bits())));
    let config = write_config(dir.path(), &proxy.url, demand, "");
    let agent = start_agent(&config, &dir.path().join("state"), &moto_env(dir.path()));
    let open = agent.wait_for("the circuit open", |a| {
        let s = a.status();
        (s["pools"][0]["circuit"] == "open").then_some(s)
    });
    assert!(
        open["pools"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("Throttling")),
        "{open:#}"
    );
    let (_, m) = agent.get("/metrics");
    assert_eq!(
        metric(&m, r#"capstan_pool_circuit_open{pool="web"}"#),
        Some(1.0),
        "{m}"
    );
    assert!(
        metric(
            &m,
            r#"capstan_provider_requests_total{provider="aws",operation="describe",outcome="throttled"}"#
        )
        .is_some_and(|n| n >= 2.0),
        "{m}"
    );
    assert!(desired(&moto.url) == 2, "nothing reached moto");

    // A flaky cloud: every 2nd request fails, in turn throttled, a 500, dropped, or
    // slow. The SDK's retries and the half-open circuit get the target through.
    proxy.set_rule(|n, _| match n % 8 {
        1 => Some(Fault::Throttle),
        3 => Some(Fault::ServerError),
        5 => Some(Fault::Drop),
        7 => Some(Fault::Delay(Duration::from_millis(300))),
        _ => None,
    });
    agent.wait_for("the ASG at 4 nodes", |_| {
        (desired(&moto.url) == 4).then_some(())
    });
    agent.wait_for("the circuit closed", |a| {
        (a.status()["pools"][0]["circuit"] == "closed").then_some(())
    });
    // Hold a few passes: it stays there, and no call ever asked for more.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(desired(&moto.url), 4);
    let calls = proxy.desired_calls();
    assert!(
        !calls.is_empty() && calls.iter().all(|&c| c <= 4),
        "{calls:?}"
    );
    let faults = proxy.faults();
    for kind in [
        Fault::Throttle,
        Fault::ServerError,
        Fault::Drop,
        Fault::Delay(Duration::from_millis(300)),
    ] {
        assert!(
            faults.iter().any(|(_, f)| *f == kind),
            "{kind:?} never injected: {faults:?}"
        );
    }
    let (_, m) = agent.get("/metrics");
    assert_eq!(
        metric(&m, r#"capstan_pool_circuit_open{pool="web"}"#),
        Some(0.0),
        "{m}"
    );
}

#[test]
fn a_spot_interruption_notice_is_replaced_once_and_not_overshot() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, proxy) = plain_group(dir.path(), 1);
    let instance = runtime()
        .block_on(provider(&moto.url, "web").describe())
        .unwrap()
        .instances[0]
        .id
        .clone();
    let imds = imds::Imds::start(&instance);
    let demand = demand_endpoint(|| 30.0); // on target
    let config = write_config(
        dir.path(),
        &proxy.url,
        demand,
        &format!(
            "\n[agent.interruptions]\ncloud = \"aws\"\nendpoint = \"{}\"\npoll = \"1s\"\n",
            imds.url
        ),
    );
    // [agent.interruptions] must come before [[pool]] in TOML: move it to the top.
    let text = std::fs::read_to_string(&config).unwrap();
    let (body, table) = text.split_at(text.find("\n[agent.interruptions]").unwrap());
    std::fs::write(&config, format!("{table}\n{body}")).unwrap();

    let secret = dir.path().join("secret");
    std::fs::write(&secret, "aws-test-secret\n").unwrap();
    let mut env = moto_env(dir.path());
    env.push((
        "CAPSTAN_CLUSTER__TOKEN_FILE".to_owned(),
        secret.display().to_string(),
    ));
    let agent = start_agent(&config, &dir.path().join("state"), &env);
    // The node is named by its instance id, so its report matches the ASG's instance.
    agent.wait_for("the node named by its instance id", |a| {
        (a.status()["node_id"] == instance.as_str()).then_some(())
    });
    agent.wait_for("a pass on target", |a| {
        a.journal_lines()
            .iter()
            .any(|l| l["pool"] == "web")
            .then_some(())
    });
    assert_eq!(desired(&moto.url), 1);
    // The pool's reports match its instances: a report from an id the ASG does not
    // hold is refused (with a valid token for that id), the instance's own is taken.
    let body = |node: &str| {
        format!(r#"{{"version":1,"node_id":"{node}","pool":"web","at":"2026-01-01T00:00:00Z"}}"#)
            .into_bytes()
    };
    let made_up = "i-0000000000made0up";
    // The instances are known from the end of the first pass (the journal line comes
    // a little before): until then a made-up id is still taken.
    let text = agent.wait_for("a made-up id refused", |a| {
        let (code, text) = a.report_as(
            made_up,
            &node_token("aws-test-secret", made_up),
            body(made_up),
        );
        (code == 422).then_some(text)
    });
    assert!(
        text.contains("unknown_node") && text.contains("node_id"),
        "{text}"
    );
    let (code, text) = agent.report_as(
        &instance,
        &node_token("aws-test-secret", &instance),
        body(&instance),
    );
    assert_eq!(code, 202, "{text}");

    imds.notice(Some(
        r#"{"action": "terminate", "time": "2026-11-28T08:24:00Z"}"#,
    ));
    // The pass that asks for it: `scaled`, or `in_flight` where moto answers after the
    // pass's grace (the next pass then journals it done).
    let line = agent.wait_for("the replacement journaled", |a| {
        a.journal_lines().into_iter().find(|l| {
            (l["action"] == "scaled" || l["action"] == "in_flight")
                && l["reasons"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r["kind"] == "replacing_interrupted"))
        })
    });
    assert_eq!(
        (line["current"].as_u64(), line["desired"].as_u64()),
        (Some(1), Some(2)),
        "{line:#}"
    );
    agent.wait_for("the ASG at 2 nodes", |_| {
        (desired(&moto.url) == 2).then_some(())
    });
    // The notice stays up for several passes: the replacement is asked for once.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(desired(&moto.url), 2);
    // The node is gone (moto keeps it; the notice clears): no overshoot after it.
    imds.notice(None);
    std::thread::sleep(Duration::from_secs(4));
    let calls = proxy.desired_calls();
    assert!(calls.iter().all(|&c| c <= 2), "{calls:?}");
    assert!(desired(&moto.url) <= 2);
}

/// A DaemonSet-style agent: its Kubernetes node name set (as the shipped DaemonSets set
/// `CAPSTAN_AGENT__DRAIN__KUBERNETES_NODE`), no `node_name`. With
/// `[agent.interruptions] cloud = "aws"` it reports under its instance id, read from an
/// in-test IMDS, and its pool leaves sample mode; without, it is named by its node and
/// the leader warns that the pool's reports match none of its instances.
#[test]
fn a_daemonset_agent_reports_under_its_instance_id_and_its_pool_leaves_sample_mode() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, proxy) = plain_group(dir.path(), 1);
    let instance = runtime()
        .block_on(provider(&moto.url, "web").describe())
        .unwrap()
        .instances[0]
        .id
        .clone();
    let imds = imds::Imds::start(&instance);
    let demand = demand_endpoint(|| 30.0);
    let mut env = moto_env(dir.path());
    env.push((
        "CAPSTAN_AGENT__DRAIN__KUBERNETES_NODE".to_owned(),
        "ip-10-0-0-1.ec2.internal".to_owned(),
    ));
    let pool_status = |a: &Agent| a.status()["pools"][0].clone();
    for with_imds in [true, false] {
        let config = write_config(dir.path(), &proxy.url, demand, "");
        if with_imds {
            let text = std::fs::read_to_string(&config).unwrap();
            std::fs::write(
                &config,
                format!(
                    "[agent.interruptions]\ncloud = \"aws\"\nendpoint = \"{}\"\npoll = \"1s\"\n{text}",
                    imds.url
                ),
            )
            .unwrap();
        }
        let agent = start_agent(
            &config,
            &dir.path().join(format!("state-{with_imds}")),
            &env,
        );
        let p = agent.wait_for("a pass with the node's report", |a| {
            let p = pool_status(a);
            (p["nodes"]["reporting"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
                && p["last_decision"].is_object())
            .then_some(p)
        });
        let named = agent.status()["node_id"].as_str().unwrap().to_owned();
        if with_imds {
            assert_eq!(named, instance);
            assert_eq!(p["reports_unmatched"], serde_json::Value::Null, "{p:#}");
            let (_, metrics) = agent.get("/metrics");
            assert_eq!(
                metric(&metrics, "capstan_pool_reports_unmatched{pool=\"web\"}"),
                Some(0.0)
            );
        } else {
            assert_eq!(named, "ip-10-0-0-1.ec2.internal");
            assert_eq!(p["reports_unmatched"], true, "{p:#}");
            let (_, metrics) = agent.get("/metrics");
            assert_eq!(
                metric(&metrics, "capstan_pool_reports_unmatched{pool=\"web\"}"),
                Some(1.0)
            );
            assert!(
                agent
                    .log
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|l| l.contains("no report of this pool comes from one of its instances")),
                "the leader warns in its log"
            );
        }
    }
}

/// The actions `packaging/iam/aws-policy.json` allows.
fn iam_actions() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("packaging/iam/aws-policy.json")).unwrap();
    let policy: serde_json::Value = serde_json::from_str(&text).unwrap();
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            assert_eq!(s["Effect"], "Allow");
            match &s["Action"] {
                serde_json::Value::String(a) => vec![a.clone()],
                serde_json::Value::Array(a) => {
                    a.iter().map(|a| a.as_str().unwrap().to_owned()).collect()
                }
                other => panic!("Action {other}"),
            }
        })
        .collect()
}

#[test]
fn the_iam_policy_grants_exactly_the_operations_the_code_calls() {
    let mut granted = iam_actions();
    granted.sort();
    let mut called: Vec<String> = capstan_providers::aws::OPERATIONS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    called.sort();
    assert_eq!(
        granted, called,
        "packaging/iam/aws-policy.json vs aws::OPERATIONS"
    );
    // And OPERATIONS is what the source calls: every SDK operation in providers/src/aws/.
    let mut source = String::new();
    for entry in std::fs::read_dir(repo().join("providers/src/aws")).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n != "tests.rs") {
            source += &std::fs::read_to_string(&path).unwrap();
        }
    }
    let mut in_source: Vec<String> = Vec::new();
    for (client, service) in [(".asg\n", "autoscaling"), (".ec2\n", "ec2")] {
        for (i, _) in source.match_indices(client) {
            let rest = source[i + client.len()..].trim_start();
            let Some(call) = rest.strip_prefix('.') else {
                continue;
            };
            let name: String = call
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let pascal: String = name
                .split('_')
                .map(|w| {
                    let mut c = w.chars();
                    c.next()
                        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                        .unwrap_or_default()
                })
                .collect();
            in_source.push(format!("{service}:{pascal}"));
        }
    }
    in_source.sort();
    in_source.dedup();
    assert_eq!(
        in_source, called,
        "SDK calls in providers/src/aws/ vs aws::OPERATIONS"
    );
}

/// An IMDSv2 double on 127.0.0.1: a token flow, the instance id, and a spot
/// instance-action the test sets.
mod imds {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, put};

    #[derive(Default)]
    struct Inner {
        instance: String,
        notice: Option<String>,
    }

    pub struct Imds {
        pub url: String,
        inner: Arc<Mutex<Inner>>,
        _runtime: tokio::runtime::Runtime,
    }

    const TOKEN: &str = "imds-test-token";

    fn ok(headers: &HeaderMap) -> bool {
        headers
            .get("x-aws-ec2-metadata-token")
            .and_then(|v| v.to_str().ok())
            == Some(TOKEN)
    }

    impl Imds {
        pub fn start(instance: &str) -> Imds {
            let inner = Arc::new(Mutex::new(Inner {
                instance: instance.to_owned(),
                notice: None,
            }));
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let app = Router::new()
                .route(
                    "/latest/api/token",
                    put(|headers: HeaderMap| async move {
                        if headers.contains_key("x-aws-ec2-metadata-token-ttl-seconds") {
                            (StatusCode::OK, TOKEN.to_owned())
                        } else {
                            (StatusCode::BAD_REQUEST, String::new())
                        }
                    }),
                )
                .route(
                    "/latest/meta-data/instance-id",
                    get(
                        |State(s): State<Arc<Mutex<Inner>>>, headers: HeaderMap| async move {
                            if !ok(&headers) {
                                return (StatusCode::UNAUTHORIZED, String::new());
                            }
                            (StatusCode::OK, s.lock().unwrap().instance.clone())
                        },
                    ),
                )
                .route(
                    "/latest/meta-data/spot/instance-action",
                    get(
                        |State(s): State<Arc<Mutex<Inner>>>, headers: HeaderMap| async move {
                            if !ok(&headers) {
                                return (StatusCode::UNAUTHORIZED, String::new());
                            }
                            match s.lock().unwrap().notice.clone() {
                                Some(n) => (StatusCode::OK, n),
                                None => (StatusCode::NOT_FOUND, String::new()),
                            }
                        },
                    ),
                )
                .route(
                    "/latest/meta-data/events/recommendations/rebalance",
                    get(|| async { (StatusCode::NOT_FOUND, String::new()) }),
                )
                .with_state(inner.clone());
            let listener = rt
                .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                .unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            rt.spawn(async move { axum::serve(listener, app).await });
            Imds {
                url,
                inner,
                _runtime: rt,
            }
        }

        pub fn notice(&self, body: Option<&str>) {
            self.inner.lock().unwrap().notice = body.map(str::to_owned);
        }
    }
}

/// A slow AWS: the proxy holds every `SetDesiredCapacity` for 40 s. The held call
/// holds only its own pool: the dry-run pool beside it is decided every interval, the
/// ASG pool is journaled `in_flight` and sent nothing more, and SIGTERM ends the agent
/// within 2 s with the call still held.
#[test]
fn a_held_aws_call_holds_only_its_pool_and_sigterm_ends_the_agent_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (moto, proxy) = plain_group(dir.path(), 1);
    proxy.set_rule(|_, action| {
        (action == "SetDesiredCapacity").then_some(Fault::Delay(Duration::from_secs(40)))
    });
    // 120 over the nodes against 30 per node: 4 nodes wanted.
    let demand = spread_demand(&moto.url, Arc::new(AtomicU64::new(120.0_f64.to_bits())));
    let config = write_config(
        dir.path(),
        &proxy.url,
        demand,
        r#"
[agent]
pool = "web"

[[pool]]
name = "steady"
provider = { type = "dry-run", initial = 2 }
min = 1
max = 5
targets = [{ metric = "cpu.utilization", value = 50 }]
"#,
    );
    let mut agent = start_agent(&config, &dir.path().join("state"), &moto_env(dir.path()));
    let lines = |a: &Agent, pool: &str, action: &str| {
        a.journal_lines()
            .iter()
            .filter(|l| l["pool"] == pool && (action.is_empty() || l["action"] == action))
            .count()
    };
    agent.wait_for("the ASG pool in flight", |a| {
        (lines(a, "web", "in_flight") >= 2).then_some(())
    });
    let steady = lines(&agent, "steady", "");
    std::thread::sleep(Duration::from_secs(4));
    let decided = lines(&agent, "steady", "") - steady;
    assert!(
        decided >= 3,
        "the other pool was decided {decided} times in 4 s"
    );
    let held: Vec<(String, Fault)> = proxy
        .faults()
        .into_iter()
        .filter(|(a, _)| a == "SetDesiredCapacity")
        .collect();
    assert_eq!(held.len(), 1, "a second call while one is held: {held:?}");
    assert_eq!(lines(&agent, "web", "submitted"), 1);
    assert_eq!(desired(&moto.url), 1, "the held call reached moto");

    #[allow(clippy::disallowed_methods)]
    let stopping = std::time::Instant::now();
    agent.signal("TERM");
    assert!(agent.wait_exit().success());
    let took = stopping.elapsed();
    assert!(took < Duration::from_secs(2), "SIGTERM took {took:?}");
}

/// Sets the group's desired capacity behind the agents' backs (straight to moto).
#[cfg(feature = "etcd")]
fn set_desired(url: &str, n: i32) {
    runtime().block_on(async {
        aws_sdk_autoscaling::Client::new(&sdk(url))
            .set_desired_capacity()
            .auto_scaling_group_name("web")
            .desired_capacity(n)
            .send()
            .await
            .unwrap();
    });
}

/// A request that changes the group (not a Describe).
#[cfg(feature = "etcd")]
fn mutating(action: &str) -> bool {
    !action.is_empty() && !action.starts_with("Describe")
}

/// Paused leader, on moto: real etcd, two agents, one ASG; each agent reaches moto
/// through its own counting proxy, so every request is attributed to its sender. The
/// leader is SIGSTOPped; once the other agent leads and has acted, the group is moved
/// again (so both want to act) and the old one gets SIGCONT. It must send no mutating
/// request after it wakes, and step down. Five rounds; then two more in which the
/// leader is stopped while its `SetDesiredCapacity` is held in its proxy (the network
/// delivers it late): nothing more leaves it after its deadline either.
#[cfg(feature = "etcd")]
#[test]
fn a_paused_leader_sends_no_request_after_it_wakes_and_steps_down() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd::Etcd::start(1, dir.path());
    let moto = Moto::start(&dir.path().join("moto.log"));
    runtime().block_on(create_group(
        &moto.url,
        "web",
        (1, 6, 3),
        &["m5.large"],
        false,
    ));
    let token = dir.path().join("token");
    std::fs::write(&token, "paused-leader-token\n").unwrap();
    let proxies = [Proxy::start(&moto.url), Proxy::start(&moto.url)];
    let env = moto_env(dir.path());
    let agents: Vec<Agent> = proxies
        .iter()
        .enumerate()
        .map(|(i, proxy)| {
            let config = dir.path().join(format!("agent-{i}.toml"));
            std::fs::write(
                &config,
                format!(
                    r#"
[agent]
node_name = "agent-{i}"
pool = "web"

[cluster]
coordinator = "etcd"
token_file = {token:?}

[cluster.etcd]
endpoints = {endpoints:?}
allow_plaintext = true
prefix = "/capstan-paused"
lease_ttl = "2s"

[[pool]]
name = "web"
provider = {{ type = "aws", region = "{REGION}", asg = "web", endpoint_url = "{url}" }}
min = 3
max = 6
targets = [{{ metric = "cpu.utilization", value = 100 }}]
"#,
                    token = token.display().to_string(),
                    endpoints = etcd.endpoints(),
                    url = proxy.url,
                ),
            )
            .unwrap();
            start_agent(&config, &dir.path().join(format!("state-{i}")), &env)
        })
        .collect();
    let leader = || {
        etcd::wait("exactly one leader", || {
            let leaders: Vec<usize> = (0..agents.len())
                .filter(|&i| agents[i].status()["role"] == "leader")
                .collect();
            (leaders.len() == 1).then(|| leaders[0])
        })
    };
    let sent = |i: usize| {
        proxies[i]
            .arrivals()
            .into_iter()
            .filter(|(_, a)| mutating(a))
            .collect::<Vec<_>>()
    };
    // Waits as etcd::wait does, and on a timeout says what each agent logged.
    let until = |what: &str, f: &mut dyn FnMut() -> bool| {
        for _ in 0..PATIENCE.as_millis() / STEP.as_millis() {
            if f() {
                return;
            }
            std::thread::sleep(STEP);
        }
        let logs: Vec<String> = agents
            .iter()
            .map(|a| a.log.lock().unwrap().join("\n"))
            .collect();
        panic!("timed out waiting for {what}\n{}", logs.join("\n----\n"));
    };
    let restored = |what: &str, by: usize, before: usize| {
        until(what, &mut || {
            sent(by).len() > before && desired(&moto.url) == 3
        });
    };

    let mut after_deadline = Vec::new();
    let mut steps_down = Vec::new();
    let mut held_late = 0;
    for round in 0..7 {
        let held = round >= 5;
        let what = |w: &str| format!("round {round}: {w}");
        let old = leader();
        let other = 1 - old;
        // The leader puts the group back to its min…
        let before = sent(old).len();
        if held {
            let mut once = false;
            proxies[old].set_rule(move |_, action| {
                (action == "SetDesiredCapacity" && !std::mem::replace(&mut once, true))
                    .then_some(Fault::Hold)
            });
            let faults = proxies[old].faults().len();
            set_desired(&moto.url, 1);
            until(&what("the leader's request held in its proxy"), &mut || {
                proxies[old].faults().len() > faults
            });
        } else {
            set_desired(&moto.url, 1);
            restored(&what("the leader to restore the group"), old, before);
        }
        // …and is stopped (with its request held in the network, in the last rounds).
        agents[old].signal("STOP");
        let stopped = etcd::now();
        set_desired(&moto.url, 1);
        let before = sent(other).len();
        restored(&what("the other agent to lead and act"), other, before);
        // Both want to act now; the old one wakes into an expired lease.
        set_desired(&moto.url, 1);
        let before = sent(other).len();
        agents[old].signal("CONT");
        let woke = etcd::now();
        agents[old].wait_for("the woken leader to step down", |a| {
            (a.status()["role"] == "follower").then_some(())
        });
        steps_down.push(woke.elapsed());
        restored(&what("the new leader to restore the group"), other, before);
        std::thread::sleep(Duration::from_secs(2));
        let late: Vec<String> = sent(old)
            .into_iter()
            .filter(|(at, _)| *at > stopped)
            .map(|(_, a)| a)
            .collect();
        assert!(
            late.is_empty(),
            "round {round}: the woken leader sent {late:?}\n{}",
            agents[old].log.lock().unwrap().join("\n")
        );
        after_deadline.push(late.len());
        if held {
            // The network delivers the held request at last (moto holds 3 already).
            let delivered = proxies[old].seen().len();
            proxies[old].release();
            until(&what("the held request delivered"), &mut || {
                proxies[old].seen().len() > delivered
            });
            held_late += 1;
            proxies[old].set_rule(|_, _| None);
            until(&what("the group at 3"), &mut || desired(&moto.url) == 3);
        }
    }
    steps_down.sort();
    let requests = sent(0).len() + sent(1).len();
    eprintln!(
        "paused leader on moto (SIGSTOP until the other agent acted, then SIGCONT), lease_ttl 2s, interval 1s, 7 rounds (2 with its SetDesiredCapacity held in its proxy until the round's end): {} mutating requests from a woken leader after its deadline, of {requests} in all; {held_late} held requests delivered late by the proxy; stepped down after SIGCONT in median {:.2}s, worst {:.2}s",
        after_deadline.iter().sum::<usize>(),
        steps_down[steps_down.len() / 2].as_secs_f64(),
        steps_down[steps_down.len() - 1].as_secs_f64()
    );
}

/// Three scale-in agents started by `start(0..3)`, the two busier (1 and 2) first so
/// one of them leads and the least busy (0) is the one a leader would choose; in index
/// order.
#[cfg(feature = "etcd")]
fn busier_first(start: impl Fn(usize) -> Agent) -> Vec<Agent> {
    let mut agents = vec![start(1), start(2)];
    etcd::wait("a leader", || {
        agents
            .iter()
            .any(|a| a.status()["role"] == "leader")
            .then_some(())
    });
    agents.insert(0, start(0));
    agents
}

/// Holds a scale-in test's pool at its size until every node's agent reports: demand
/// endpoints made with [`Gate::demand`] read a full node each (30, the target) until
/// [`Gate::open`], then their own value. Without it, an agent that starts late (a busy
/// machine) is silent when the leader first plans a shrink, and a node with no agent is
/// chosen first and removed without a drain, which is not what these tests look at.
#[cfg(feature = "etcd")]
#[derive(Clone, Default)]
struct Gate(Arc<AtomicBool>);

#[cfg(feature = "etcd")]
impl Gate {
    fn demand(&self, value: f64) -> u16 {
        let open = self.0.clone();
        demand_endpoint(move || {
            if open.load(Ordering::Relaxed) {
                value
            } else {
                30.0
            }
        })
    }

    /// Opens once the leader among `agents` has planned a pass from the readings of
    /// all `n` nodes, none missing.
    fn open(&self, agents: &[Agent], n: usize) {
        etcd::wait("a pass planned from every node's report", || {
            agents.iter().find_map(|a| {
                let s = a.status();
                let reasons = s["pools"][0]["last_decision"]["reasons"].as_array()?;
                (s["role"] == "leader"
                    && reasons
                        .iter()
                        .any(|r| r["kind"] == "target" && r["ready"] == n && r["missing"] == 0))
                .then_some(())
            })
        });
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Every reason of `kind` in the agents' journals.
#[cfg(feature = "etcd")]
fn journaled(agents: &[Agent], kind: &str) -> Vec<serde_json::Value> {
    agents
        .iter()
        .flat_map(Agent::journal_lines)
        .flat_map(|l| l["reasons"].as_array().cloned().unwrap_or_default())
        .filter(|r| r["kind"] == kind)
        .collect()
}

/// One agent of a targeted scale-in test on moto with real etcd: named `name` (an
/// instance id, or an agent outside the pool), in pool "web" over group `asg` at `url`,
/// `max` nodes at most; `drain` is the `[agent.drain]` table's body; with `port` it
/// reads its workload demand there; `scale_in` is the pool's `scale_in` table's body.
#[cfg(feature = "etcd")]
struct ScaleInAgents<'a> {
    dir: &'a Path,
    etcd: &'a etcd::Etcd,
    token: &'a Path,
    url: &'a str,
    asg: &'a str,
    max: u32,
    prefix: &'a str,
    scale_in: &'a str,
}

#[cfg(feature = "etcd")]
impl ScaleInAgents<'_> {
    fn start(&self, name: &str, drain: &str, port: Option<u16>) -> Agent {
        let path = self.dir.join(format!("{name}.toml"));
        let scrape = port.map_or(String::new(), |port| {
            format!(
                "[[scrape]]\nurl = \"http://127.0.0.1:{port}/metrics\"\nseries = \"test_demand\"\nname = \"demand\"\n"
            )
        });
        std::fs::write(
            &path,
            format!(
                r#"
[agent]
node_name = "{name}"
pool = "web"

[agent.drain]
{drain}

[cluster]
coordinator = "etcd"
token_file = {token:?}

[cluster.etcd]
endpoints = {endpoints:?}
allow_plaintext = true
prefix = "{prefix}"
lease_ttl = "2s"

{scrape}
[[pool]]
name = "web"
provider = {{ type = "aws", region = "{REGION}", asg = "{asg}", endpoint_url = "{url}" }}
min = 1
max = {max}
targets = [{{ metric = "workload.demand", value = 30 }}]
behavior = {{ preset = "balanced", scale_down = {{ stabilization_window = "0s" }} }}
scale_in = {{ {scale_in} }}
"#,
                token = self.token.display().to_string(),
                endpoints = self.etcd.endpoints(),
                prefix = self.prefix,
                asg = self.asg,
                url = self.url,
                max = self.max,
                scale_in = self.scale_in,
            ),
        )
        .unwrap();
        start_agent(
            &path,
            &self.dir.join(format!("state-{name}")),
            &moto_env(self.dir),
        )
    }
}

/// Targeted scale-in end to end, on moto with real etcd: three agents named by the
/// ASG's three instance ids, each scraping its own workload endpoint (5, 12 and 20
/// against a target of 30: the pool needs 2), each draining with a command that
/// records its environment and sleeps; two agents outside the pool lead first. The
/// least-busy node is chosen and drains; mid-drain the leader is SIGKILLed; the next
/// leader carries on the same drain, and only after the node says it drained is
/// exactly that instance terminated, with the desired capacity decremented, once. The
/// other two stay in service.
#[cfg(feature = "etcd")]
#[test]
fn targeted_scale_in_drains_the_least_busy_node_and_terminates_exactly_it_across_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd::Etcd::start(1, dir.path());
    let (moto, proxy) = plain_group(dir.path(), 3);
    let ids: Vec<String> = instance_ids(&moto.url, "web");
    assert_eq!(ids.len(), 3);
    let token = dir.path().join("token");
    std::fs::write(&token, "scale-in-token\n").unwrap();
    // The drain: its environment and when it started and ended, then exit 0.
    let script = dir.path().join("drain.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nlog={}/drain-$CAPSTAN_NODE.log\necho \"$CAPSTAN_NODE $CAPSTAN_POOL $CAPSTAN_DRAIN_DEADLINE\" > $log\necho \"start $(date +%s.%N)\" >> $log\nsleep 4\necho \"end $(date +%s.%N)\" >> $log\n",
            dir.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let wall = |at: std::time::Instant, base: (std::time::Instant, f64)| {
        base.1 + at.saturating_duration_since(base.0).as_secs_f64()
            - base.0.saturating_duration_since(at).as_secs_f64()
    };
    #[allow(clippy::disallowed_methods)] // the test's own clock, to compare with date(1)
    let base = (
        std::time::Instant::now(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64(),
    );
    let members = ScaleInAgents {
        dir: dir.path(),
        etcd: &etcd,
        token: &token,
        url: &proxy.url,
        asg: "web",
        max: 6,
        prefix: "/capstan-scale-in",
        scale_in: "drain_timeout = \"2m\"",
    };
    let drain = format!(
        "method = \"command\"\ncommand = [{:?}]",
        script.display().to_string()
    );
    let config = |name: &str, port: Option<u16>| members.start(name, &drain, port);
    // Two agents outside the pool start first: one of them leads.
    let mut agents = vec![config("control-a", None), config("control-b", None)];
    let leader = |agents: &[Agent]| {
        etcd::wait("exactly one leader", || {
            let leaders: Vec<usize> = (0..agents.len())
                .filter(|&i| agents[i].status()["role"] == "leader")
                .collect();
            (leaders.len() == 1).then(|| leaders[0])
        })
    };
    let first = leader(&agents);
    let gate = Gate::default();
    for (id, value) in ids.iter().zip([5.0, 12.0, 20.0]) {
        agents.push(config(id, Some(gate.demand(value))));
    }
    gate.open(&agents, ids.len());
    let least_busy = &ids[0];
    let log = dir.path().join(format!("drain-{least_busy}.log"));
    etcd::wait("the least-busy node draining", || {
        std::fs::read_to_string(&log)
            .ok()
            .filter(|t| t.contains("start"))
    });
    // Mid-drain, the leader dies.
    agents[first].signal("KILL");
    // Which agents journaled `kind` for the least-busy node.
    let journaled_by = |kind: &str| -> Vec<usize> {
        (0..agents.len())
            .filter(|&i| {
                agents[i].journal_lines().iter().any(|l| {
                    l["reasons"].as_array().is_some_and(|r| {
                        r.iter().any(|r| {
                            r["kind"] == kind
                                && (r["node"] == least_busy.as_str()
                                    || r["nodes"][0] == least_busy.as_str())
                        })
                    })
                })
            })
            .collect()
    };
    // Moto shows the instance gone as soon as it has terminated it; the leader journals
    // the removal once moto's answer is back: wait for both.
    let text = etcd::wait("the drain finished and the instance terminated", || {
        let done = desired(&moto.url) == 2 && !journaled_by("removed").is_empty();
        done.then(|| std::fs::read_to_string(&log).unwrap())
    });
    let lines: Vec<&str> = text.lines().collect();
    let env_line: Vec<&str> = lines[0].split(' ').collect();
    assert_eq!(env_line[..2], [least_busy.as_str(), "web"], "{text}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(env_line[2]).is_ok(),
        "{text}"
    );
    let ended: f64 = lines
        .iter()
        .find_map(|l| l.strip_prefix("end "))
        .expect("the drain ran to its end")
        .parse()
        .unwrap();
    // Exactly one termination, of exactly that instance, with the decrement, and only
    // after its drain ended; no desired capacity was set.
    let terminations: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.action == "TerminateInstanceInAutoScalingGroup")
        .collect();
    assert_eq!(terminations.len(), 1, "{terminations:?}");
    assert_eq!(
        terminations[0].params.get("InstanceId"),
        Some(least_busy),
        "{terminations:?}"
    );
    assert_eq!(
        terminations[0]
            .params
            .get("ShouldDecrementDesiredCapacity")
            .map(String::as_str),
        Some("true")
    );
    let arrived = proxy
        .arrivals()
        .into_iter()
        .find(|(_, a)| a == "TerminateInstanceInAutoScalingGroup")
        .unwrap()
        .0;
    assert!(
        wall(arrived, base) >= ended - 0.05,
        "terminated at {} before the drain ended at {ended}",
        wall(arrived, base)
    );
    assert!(
        proxy.desired_calls().is_empty(),
        "{:?}",
        proxy.desired_calls()
    );
    let left: Vec<String> = runtime()
        .block_on(provider(&moto.url, "web").describe())
        .unwrap()
        .in_service()
        .map(|i| i.id.clone())
        .collect();
    assert_eq!(left, ids[1..].to_vec());
    // The journal says who was chosen and why, and that it was removed: chosen by the
    // first leader, finished by the next.
    assert_eq!(journaled_by("chosen_for_scale_in"), [first]);
    let finisher = journaled_by("removed");
    assert_eq!(finisher.len(), 1);
    assert_ne!(finisher[0], first);
    assert_eq!(journaled_by("drained"), finisher);
    // Stable at two: nothing more is chosen.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(desired(&moto.url), 2);
}

/// Targeted scale-in's safety rules end to end, on moto with real etcd and three agents
/// named by instance id: the least-busy node reports `protected` (its `protect_file`
/// exists) and is passed over; the node chosen instead cannot drain in time
/// (`on_timeout = "keep"`): its `undo_command` runs and nothing is terminated; one node
/// drains at a time (`max_draining`, 10 % of 3). Once the protection is lifted and
/// drains finish, exactly one instance is terminated, after its drain.
#[cfg(feature = "etcd")]
#[test]
fn scale_in_on_moto_passes_over_a_protected_node_and_keeps_one_whose_drain_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd::Etcd::start(1, dir.path());
    let (moto, proxy) = plain_group(dir.path(), 3);
    let ids: Vec<String> = instance_ids(&moto.url, "web");
    let token = dir.path().join("token");
    std::fs::write(&token, "scale-in-rules\n").unwrap();
    let d = dir.path().display().to_string();
    // Drains finish only once the test says so; the undo leaves a mark.
    let drain = dir.path().join("drain.sh");
    std::fs::write(
        &drain,
        format!("#!/bin/sh\nwhile [ ! -f {d}/fast ]; do sleep 0.2; done\necho done > {d}/drained-$CAPSTAN_NODE\n"),
    )
    .unwrap();
    let undo = dir.path().join("undo.sh");
    std::fs::write(
        &undo,
        format!("#!/bin/sh\necho undo > {d}/undo-$CAPSTAN_NODE\n"),
    )
    .unwrap();
    for f in [&drain, &undo] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let protect = dir.path().join("protect");
    std::fs::write(&protect, "").unwrap();
    let members = ScaleInAgents {
        dir: dir.path(),
        etcd: &etcd,
        token: &token,
        url: &proxy.url,
        asg: "web",
        max: 6,
        prefix: "/capstan-scale-in-rules",
        scale_in: "drain_timeout = \"10s\", on_timeout = \"keep\"",
    };
    let gate = Gate::default();
    let start = |i: usize| {
        let value = [5.0, 12.0, 20.0][i];
        let port = gate.demand(value);
        let mut table = format!(
            "method = \"command\"\ncommand = [{:?}]\nundo_command = [{:?}]",
            drain.display().to_string(),
            undo.display().to_string()
        );
        // Only the least busy node has the protect file.
        if i == 0 {
            table.push_str(&format!(
                "\nprotect_file = {:?}",
                protect.display().to_string()
            ));
        }
        members.start(&ids[i], &table, Some(port))
    };
    // The two busier nodes first, so one of them leads: the protected node is the one
    // the leader would choose.
    let agents = busier_first(start);
    gate.open(&agents, ids.len());
    let reasons = |kind: &str| journaled(&agents, kind);
    let draining_now = || -> usize {
        agents
            .iter()
            .filter(|a| a.status()["role"] == "leader")
            .map(|a| {
                a.status()["pools"][0]["draining"]
                    .as_array()
                    .map_or(0, |d| d.iter().filter(|n| n["phase"] != "keep").count())
            })
            .sum()
    };
    // The protected node is passed over; another is chosen.
    let chosen = etcd::wait("a node chosen", || {
        reasons("chosen_for_scale_in")
            .first()
            .and_then(|r| r["node"].as_str().map(str::to_owned))
    });
    assert_ne!(chosen, ids[0], "the protected node was chosen");
    // `capstan status` on the leader lists it.
    etcd::wait("capstan status listing the node leaving", || {
        let leader = agents.iter().find(|a| a.status()["role"] == "leader")?;
        let out = std::process::Command::new(BIN)
            .args(["status", "--url", &leader.base])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines()
            .any(|l| l.starts_with(&format!("leaving web: {chosen} draining since")))
            .then_some(())
    });
    assert!(
        reasons("protected_node_skipped")
            .iter()
            .any(|r| r["node"] == ids[0].as_str()),
        "the protected node's skip is journaled"
    );
    // Its drain runs out: kept, undone, nothing terminated; one drains at a time.
    let mut most = 0;
    etcd::wait("the drain timed out and was undone", || {
        most = most.max(draining_now());
        let undone = dir.path().join(format!("undo-{chosen}")).exists();
        // The leader's deadline, or the node's own command stopped at it: kept either
        // way.
        let timed_out = reasons("drain_timed_out")
            .into_iter()
            .chain(reasons("drain_failed"))
            .any(|r| r["node"] == chosen.as_str() && r["then"] == "keep");
        (undone && timed_out).then_some(())
    });
    assert!(most <= 1, "{most} nodes drained at once");
    assert!(
        !proxy
            .seen()
            .iter()
            .any(|s| s.action == "TerminateInstanceInAutoScalingGroup"),
        "a kept node was terminated"
    );
    assert_eq!(desired(&moto.url), 3);
    // Protection lifted, drains finish: exactly one instance goes, after its drain.
    std::fs::remove_file(&protect).unwrap();
    std::fs::write(dir.path().join("fast"), "").unwrap();
    etcd::wait("one instance removed", || {
        (desired(&moto.url) == 2).then_some(())
    });
    let terminated: Vec<String> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.action == "TerminateInstanceInAutoScalingGroup")
        .filter_map(|s| s.params.get("InstanceId").cloned())
        .collect();
    assert_eq!(terminated.len(), 1, "{terminated:?}");
    assert!(
        dir.path()
            .join(format!("drained-{}", terminated[0]))
            .exists(),
        "{} was terminated without its drain",
        terminated[0]
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(desired(&moto.url), 2);
}

/// Two of the safety rules end to end, on moto with real etcd and three agents named by
/// instance id: while two of the three instances are unhealthy at the cloud (more than
/// `halt_when_unready`, 45 %), no node is chosen (`scale_in_halted_unready`) and
/// nothing is terminated; once they are healthy, the least-busy node is chosen, its
/// drain never finishes, and at its deadline it is removed anyway
/// (`on_timeout = "remove"`): exactly that instance, once.
#[cfg(feature = "etcd")]
#[test]
fn scale_in_on_moto_halts_while_too_many_are_unready_and_removes_a_node_whose_drain_runs_out() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd::Etcd::start(1, dir.path());
    let (moto, proxy) = plain_group(dir.path(), 3);
    let ids = instance_ids(&moto.url, "web");
    let token = dir.path().join("token");
    std::fs::write(&token, "scale-in-halt\n").unwrap();
    let drain = dir.path().join("drain.sh");
    std::fs::write(&drain, "#!/bin/sh\nsleep 600\n").unwrap();
    std::fs::set_permissions(&drain, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let asg = aws_sdk_autoscaling::Client::new(&sdk(&moto.url));
    let health = |id: &str, status: &str| {
        runtime()
            .block_on(
                asg.set_instance_health()
                    .instance_id(id)
                    .health_status(status)
                    .send(),
            )
            .unwrap();
    };
    // Two unhealthy before any agent starts: the first shrink meets them.
    health(&ids[1], "Unhealthy");
    health(&ids[2], "Unhealthy");
    let members = ScaleInAgents {
        dir: dir.path(),
        etcd: &etcd,
        token: &token,
        url: &proxy.url,
        asg: "web",
        max: 6,
        prefix: "/capstan-scale-in-halt",
        scale_in: "drain_timeout = \"10s\", on_timeout = \"remove\"",
    };
    let table = format!(
        "method = \"command\"\ncommand = [{:?}]",
        drain.display().to_string()
    );
    let gate = Gate::default();
    let start = |i: usize| {
        let value = [5.0, 12.0, 20.0][i];
        members.start(&ids[i], &table, Some(gate.demand(value)))
    };
    // The busier nodes first, so one of them leads and the least busy is chosen.
    let agents = busier_first(start);
    gate.open(&agents, ids.len());
    let reasons = |kind: &str| journaled(&agents, kind);
    etcd::wait("the shrink halted", || {
        (!reasons("scale_in_halted_unready").is_empty()).then_some(())
    });
    assert!(reasons("chosen_for_scale_in").is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        reasons("chosen_for_scale_in").is_empty(),
        "chosen while halted"
    );
    health(&ids[1], "Healthy");
    health(&ids[2], "Healthy");
    let chosen = etcd::wait("a node chosen", || {
        reasons("chosen_for_scale_in")
            .first()
            .and_then(|r| r["node"].as_str().map(str::to_owned))
    });
    assert_eq!(chosen, ids[0]);
    etcd::wait("the node removed at its deadline", || {
        (desired(&moto.url) == 2).then_some(())
    });
    let ended = reasons("drain_timed_out")
        .into_iter()
        .chain(reasons("drain_failed"))
        .any(|r| r["node"] == chosen.as_str() && r["then"] == "remove");
    assert!(ended, "the drain's end is journaled with what followed");
    let terminated: Vec<String> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.action == "TerminateInstanceInAutoScalingGroup")
        .filter_map(|s| s.params.get("InstanceId").cloned())
        .collect();
    assert_eq!(terminated, [chosen]);
}

/// A large shrink on moto with real etcd: four agents named by instance id whose demand
/// needs one node; with `max_draining = 1` the three nodes that go drain one at a time:
/// each termination comes after the previous one, and the leader never has more than
/// one node draining.
#[cfg(feature = "etcd")]
#[test]
fn a_large_shrink_on_moto_drains_at_most_max_draining_nodes_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd::Etcd::start(1, dir.path());
    let (moto, proxy) = plain_group(dir.path(), 4);
    let ids = instance_ids(&moto.url, "web");
    assert_eq!(ids.len(), 4);
    let token = dir.path().join("token");
    std::fs::write(&token, "scale-in-budget\n").unwrap();
    let drain = dir.path().join("drain.sh");
    std::fs::write(&drain, "#!/bin/sh\nsleep 1\n").unwrap();
    std::fs::set_permissions(&drain, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let members = ScaleInAgents {
        dir: dir.path(),
        etcd: &etcd,
        token: &token,
        url: &proxy.url,
        asg: "web",
        max: 6,
        prefix: "/capstan-scale-in-budget",
        scale_in: "max_draining = 1",
    };
    let table = format!(
        "method = \"command\"\ncommand = [{:?}]",
        drain.display().to_string()
    );
    let gate = Gate::default();
    let agents: Vec<Agent> = ids
        .iter()
        .map(|id| members.start(id, &table, Some(gate.demand(1.0))))
        .collect();
    gate.open(&agents, ids.len());
    let mut most = 0;
    etcd::wait("the pool down to one node", || {
        for a in &agents {
            let s = a.status();
            if s["role"] == "leader" {
                let n = s["pools"][0]["draining"]
                    .as_array()
                    .map_or(0, |d| d.iter().filter(|n| n["phase"] != "keep").count());
                most = most.max(n);
            }
        }
        // Moto shows the last one gone before the leader, given moto's answer,
        // journals its removal.
        (desired(&moto.url) == 1 && journaled(&agents, "removed").len() >= 3).then_some(())
    });
    assert!(most <= 1, "{most} nodes drained at once");
    let terminated: Vec<String> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.action == "TerminateInstanceInAutoScalingGroup")
        .filter_map(|s| s.params.get("InstanceId").cloned())
        .collect();
    assert_eq!(terminated.len(), 3, "{terminated:?}");
    let mut unique = terminated.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        3,
        "an instance terminated twice: {terminated:?}"
    );
    // One at a time: each removal is its own operation, in its own pass.
    let removals = journaled(&agents, "removed");
    assert!(
        removals
            .iter()
            .all(|r| r["nodes"].as_array().is_some_and(|n| n.len() == 1)),
        "{removals:?}"
    );
}

/// docs/performance.md's decision-to-gone figure (`bench/scale_in.sh`, which runs it
/// with `--ignored` on the release build through `CAPSTAN_BENCH_BIN`): ten rounds, each
/// a fresh two-instance group with an agent on each instance (real etcd), demand that
/// needs one node, a 2 s drain command; the time from the pass that chose the node (its
/// journal line's `at`) until moto no longer lists the instance, polled every 25 ms.
#[cfg(feature = "etcd")]
#[test]
#[ignore = "a benchmark: bench/scale_in.sh"]
fn scale_in_decision_to_instance_gone_with_a_2s_drain() {
    let dir = tempfile::tempdir().unwrap();
    let etcd = etcd::Etcd::start(1, dir.path());
    let moto = Moto::start(&dir.path().join("moto.log"));
    let token = dir.path().join("token");
    std::fs::write(&token, "scale-in-bench\n").unwrap();
    let script = dir.path().join("drain.sh");
    std::fs::write(&script, "#!/bin/sh\nsleep 2\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut took = Vec::new();
    for round in 0..10 {
        let asg = format!("web{round}");
        runtime().block_on(create_group(
            &moto.url,
            &asg,
            (1, 4, 2),
            &["m5.large"],
            false,
        ));
        let ids: Vec<String> = instance_ids(&moto.url, &asg);
        let prefix = format!("/capstan-bench-{round}");
        let members = ScaleInAgents {
            dir: dir.path(),
            etcd: &etcd,
            token: &token,
            url: &moto.url,
            asg: &asg,
            max: 4,
            prefix: &prefix,
            scale_in: "",
        };
        let drain = format!(
            "method = \"command\"\ncommand = [{:?}]",
            script.display().to_string()
        );
        let agents: Vec<Agent> = ids
            .iter()
            .zip([5.0, 20.0])
            .map(|(id, value)| members.start(id, &drain, Some(demand_endpoint(move || value))))
            .collect();
        let chosen = etcd::wait("a node chosen", || {
            agents.iter().find_map(|a| {
                a.journal_lines().into_iter().find_map(|l| {
                    let r = l["reasons"]
                        .as_array()?
                        .iter()
                        .find(|r| r["kind"] == "chosen_for_scale_in")?
                        .clone();
                    let at = chrono::DateTime::parse_from_rfc3339(l["at"].as_str()?).ok()?;
                    Some((r["node"].as_str()?.to_owned(), at))
                })
            })
        });
        #[allow(clippy::disallowed_methods)] // the wall clock the journal's `at` is on
        let gone = etcd::wait("the chosen instance gone", || {
            let left = runtime()
                .block_on(provider(&moto.url, &asg).describe())
                .ok()?;
            (!left.instances.iter().any(|i| i.id == chosen.0)).then(chrono::Utc::now)
        });
        let seconds = (gone - chosen.1.with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or_default()
            .as_secs_f64();
        took.push(seconds);
        drop(agents);
    }
    let mut sorted = took.clone();
    sorted.sort_by(f64::total_cmp);
    eprintln!(
        "targeted scale-in on moto, 2 s drain command, interval 1s, 10 rounds: decision to instance gone median {:.2} s, max {:.2} s (each: {})",
        (sorted[4] + sorted[5]) / 2.0,
        sorted[9],
        took.iter()
            .map(|t| format!("{t:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // A drain of 2 s with one pass a second: never more than the drain and a few passes.
    assert!(sorted[9] < 15.0, "{took:?}");
}
