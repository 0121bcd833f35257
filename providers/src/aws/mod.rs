//! AWS Auto Scaling Groups (feature `aws`; spot prices and the instance-type catalogue
//! need `aws-ec2`).
//!
//! - describe: `DescribeAutoScalingGroups` (bounds, desired, instances with lifecycle,
//!   health, zone and type, the `MixedInstancesPolicy`), and with `aws-ec2`
//!   for a pool with spot settings, `DescribeInstances` (by the group's tag) for which
//!   instances are spot.
//! - apply: `UpdateAutoScalingGroup` only when the group's `MaxSize` must rise for an
//!   emergency or, for a pool with spot settings, the on-demand/spot split changes
//!   (the `MixedInstancesPolicy`'s `OnDemandBaseCapacity` = the planned on-demand
//!   nodes, and `OnDemandPercentageAboveBaseCapacity` = 0, or 100 when no spot is
//!   planned), then `SetDesiredCapacity` with the absolute target. The policy update
//!   names only the `InstancesDistribution` (a partial update, as AWS allows), so it
//!   needs no permission on the group's launch template. A pool without spot settings
//!   leaves the group's distribution as it is. An emergency above the group's
//!   `MaxSize` raises it, after recording the old value in the group's tag
//!   [`MAX_BEFORE_EMERGENCY_TAG`]; once a target is back under it, `MaxSize` returns
//!   to it and the tag is deleted (by whichever leader sees that). Where Capstan
//!   chooses the instances that leave (`set_targeted`), the in-service
//!   instances not yet protected are protected from scale-in first
//!   (`SetInstanceProtection`), so a lower desired capacity never lets the group
//!   choose. Each mutating request is checked against the agent's fence right before
//!   it is sent.
//! - remove: `TerminateInstanceInAutoScalingGroup` with
//!   `ShouldDecrementDesiredCapacity=true` for each named instance the group still
//!   holds (protection does not stop it); one already gone counts as removed.
//! - spot price: `DescribeSpotPriceHistory` for the group's types and zones, the latest
//!   price per type and zone, averaged; cached for [`PRICE_TTL`].
//! - instance types: `DescribeInstanceTypes`, cached for the provider's life.
//!
//! Credentials come from the SDK's default chain (environment, profile, web identity,
//! ECS, IMDS), optionally with a role assumed on top; never from config. The SDK's
//! standard retry (3 attempts, exponential backoff with jitter) and timeouts apply to
//! every call. [`OPERATIONS`] lists every API operation this module calls:
//! `packaging/iam/aws-policy.json` grants exactly those.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_autoscaling::types::{InstancesDistribution, LifecycleState, MixedInstancesPolicy};
use tokio::sync::{Mutex, OnceCell};

use crate::{
    CapacityTarget, Health, Instance, InstanceShape, Lifecycle, Market, NodePoolProvider,
    PoolDescription, ProviderError,
};

/// Every AWS API operation this module calls, as IAM names it.
pub const OPERATIONS: &[&str] = &[
    "autoscaling:DescribeAutoScalingGroups",
    "autoscaling:SetDesiredCapacity",
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:CreateOrUpdateTags",
    "autoscaling:DeleteTags",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "autoscaling:SetInstanceProtection",
    #[cfg(feature = "aws-ec2")]
    "ec2:DescribeInstances",
    #[cfg(feature = "aws-ec2")]
    "ec2:DescribeInstanceTypes",
    #[cfg(feature = "aws-ec2")]
    "ec2:DescribeSpotPriceHistory",
];

/// Where the group is and how to reach it (the pool's `provider` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    /// Region of the group.
    pub region: String,
    /// The Auto Scaling Group's name.
    pub asg: String,
    /// Endpoint override (VPC endpoints, LocalStack, moto in tests).
    pub endpoint_url: Option<String>,
    /// A role to assume on top of the default credentials.
    pub assume_role_arn: Option<String>,
    /// Whether Capstan sets the group's on-demand/spot split (the pool has spot
    /// settings); otherwise the group's own `InstancesDistribution` stays as it is.
    pub manage_split: bool,
}

#[derive(Debug)]
struct Clients {
    asg: aws_sdk_autoscaling::Client,
    #[cfg(feature = "aws-ec2")]
    ec2: aws_sdk_ec2::Client,
}

/// The group tag that remembers its `MaxSize` from before an emergency raised it, so
/// that whichever leader sees the pool back under its max lowers it again.
pub const MAX_BEFORE_EMERGENCY_TAG: &str = "capstan.io/max-size-before-emergency";

/// What the last describe saw of the group, which apply and the price lookup reuse.
#[derive(Debug, Clone)]
struct Group {
    max: u32,
    /// [`MAX_BEFORE_EMERGENCY_TAG`], while an emergency's raise stands.
    max_before_emergency: Option<u32>,
    mixed: Option<MixedInstancesPolicy>,
    #[cfg_attr(not(feature = "aws-ec2"), allow(dead_code))]
    types: BTreeSet<String>,
    #[cfg_attr(not(feature = "aws-ec2"), allow(dead_code))]
    zones: BTreeSet<String>,
    /// In-service instances not protected from scale-in.
    unprotected: Vec<String>,
}

/// An Auto Scaling Group as a node pool.
#[derive(Debug)]
pub struct AwsProvider {
    settings: AwsSettings,
    /// Given (tests) or loaded on first use from the SDK's default chain.
    sdk: Option<SdkConfig>,
    clients: OnceCell<Clients>,
    group: Mutex<Option<Group>>,
    #[cfg_attr(not(feature = "aws-ec2"), allow(dead_code))]
    price: Mutex<Option<(tokio::time::Instant, Option<f64>)>>,
    #[cfg_attr(not(feature = "aws-ec2"), allow(dead_code))]
    shapes: Mutex<BTreeMap<String, InstanceShape>>,
    warned_no_mix: std::sync::atomic::AtomicBool,
    /// Whether the agent chooses the instances that leave (targeted scale-in): the
    /// agent says so every pass (`set_targeted`).
    targeted: std::sync::atomic::AtomicBool,
}

impl AwsProvider {
    /// A provider that loads the SDK's configuration (credentials, retry) on first use.
    pub fn new(settings: AwsSettings) -> Self {
        Self::build(settings, None)
    }

    /// A provider over a given SDK configuration (credentials chosen by the caller);
    /// the settings' region and endpoint still apply.
    pub fn with_sdk_config(settings: AwsSettings, sdk: SdkConfig) -> Self {
        Self::build(settings, Some(sdk))
    }

    fn build(settings: AwsSettings, sdk: Option<SdkConfig>) -> Self {
        Self {
            sdk,
            clients: OnceCell::new(),
            group: Mutex::new(None),
            price: Mutex::new(None),
            shapes: Mutex::new(BTreeMap::new()),
            targeted: std::sync::atomic::AtomicBool::new(false),
            warned_no_mix: std::sync::atomic::AtomicBool::new(false),
            settings,
        }
    }

    async fn clients(&self) -> &Clients {
        self.clients
            .get_or_init(|| async {
                let sdk = match &self.sdk {
                    Some(given) => given.clone(),
                    None => load_sdk_config(&self.settings).await,
                };
                let mut builder = sdk
                    .to_builder()
                    .region(Region::new(self.settings.region.clone()))
                    .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(3))
                    .timeout_config(
                        aws_config::timeout::TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(3))
                            .operation_attempt_timeout(Duration::from_secs(10))
                            .operation_timeout(Duration::from_secs(30))
                            .build(),
                    );
                if let Some(url) = &self.settings.endpoint_url {
                    builder = builder.endpoint_url(url.clone());
                }
                let sdk = builder.build();
                Clients {
                    asg: aws_sdk_autoscaling::Client::new(&sdk),
                    #[cfg(feature = "aws-ec2")]
                    ec2: aws_sdk_ec2::Client::new(&sdk),
                }
            })
            .await
    }

    async fn describe_group(&self) -> Result<(PoolDescription, Group), ProviderError> {
        let clients = self.clients().await;
        let out = clients
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(&self.settings.asg)
            .send()
            .await
            .map_err(|e| map_error("DescribeAutoScalingGroups", e))?;
        let Some(g) = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(self.settings.asg.as_str()))
        else {
            return Err(ProviderError::NotFound {
                resource: format!(
                    "Auto Scaling Group \"{}\" in {}",
                    self.settings.asg, self.settings.region
                ),
            });
        };
        let count = |v: Option<i32>| u32::try_from(v.unwrap_or(0)).unwrap_or(0);
        let unprotected = g
            .instances()
            .iter()
            .filter(|i| {
                lifecycle(i.lifecycle_state()) == Lifecycle::InService
                    && i.protected_from_scale_in() != Some(true)
            })
            .filter_map(|i| i.instance_id().map(str::to_owned))
            .collect();
        let mut instances: Vec<Instance> = g
            .instances()
            .iter()
            .map(|i| Instance {
                id: i.instance_id().unwrap_or_default().to_owned(),
                lifecycle: lifecycle(i.lifecycle_state()),
                health: match i.health_status() {
                    Some(h) if h.eq_ignore_ascii_case("healthy") => Health::Healthy,
                    Some(h) if h.eq_ignore_ascii_case("unhealthy") => Health::Unhealthy,
                    _ => Health::Unknown,
                },
                instance_type: i.instance_type().map(str::to_owned),
                zone: i.availability_zone().map(str::to_owned),
                market: Market::OnDemand,
            })
            .collect();
        // Which instances are spot matters only to a pool whose split Capstan sets;
        // other pools save the call every pass.
        #[cfg(feature = "aws-ec2")]
        if self.settings.manage_split {
            let spot = self.spot_instances().await?;
            for i in &mut instances {
                if spot.contains(&i.id) {
                    i.market = Market::Spot;
                }
            }
        }
        let mixed = g.mixed_instances_policy().cloned();
        let mut types: BTreeSet<String> = mixed
            .as_ref()
            .and_then(|m| m.launch_template())
            .map(|lt| {
                lt.overrides()
                    .iter()
                    .filter_map(|o| o.instance_type().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        types.extend(instances.iter().filter_map(|i| i.instance_type.clone()));
        let zones: BTreeSet<String> = g
            .availability_zones()
            .iter()
            .cloned()
            .chain(instances.iter().filter_map(|i| i.zone.clone()))
            .collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        let description = PoolDescription {
            steps: Default::default(),
            min: count(g.min_size()),
            max: count(g.max_size()),
            desired: count(g.desired_capacity()),
            instances,
        };
        let max_before_emergency = g
            .tags()
            .iter()
            .find(|t| t.key() == Some(MAX_BEFORE_EMERGENCY_TAG))
            .and_then(|t| t.value())
            .and_then(|v| v.parse().ok());
        let group = Group {
            max: description.max,
            max_before_emergency,
            mixed,
            types,
            zones,
            unprotected,
        };
        Ok((description, group))
    }

    /// The ids of the group's spot instances. Asked by the group's tag rather than by
    /// instance id, so an instance EC2 has already forgotten cannot fail the call.
    #[cfg(feature = "aws-ec2")]
    async fn spot_instances(&self) -> Result<BTreeSet<String>, ProviderError> {
        let mut spot = BTreeSet::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .clients()
                .await
                .ec2
                .describe_instances()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("tag:aws:autoscaling:groupName")
                        .values(&self.settings.asg)
                        .build(),
                )
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| map_error("DescribeInstances", e))?;
            for i in out.reservations().iter().flat_map(|r| r.instances()) {
                if i.instance_lifecycle() == Some(&aws_sdk_ec2::types::InstanceLifecycleType::Spot)
                    && let Some(id) = i.instance_id()
                {
                    spot.insert(id.to_owned());
                }
            }
            token = out.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(spot);
            }
        }
    }

    /// Sets [`MAX_BEFORE_EMERGENCY_TAG`] to `max`, or deletes it.
    async fn tag_max_before_emergency(&self, max: Option<u32>) -> Result<(), ProviderError> {
        use aws_sdk_autoscaling::types::Tag;
        let tag = Tag::builder()
            .resource_id(&self.settings.asg)
            .resource_type("auto-scaling-group")
            .key(MAX_BEFORE_EMERGENCY_TAG)
            .set_value(max.map(|m| m.to_string()))
            .propagate_at_launch(false)
            .build();
        let clients = self.clients().await;
        match max {
            Some(_) => clients
                .asg
                .create_or_update_tags()
                .tags(tag)
                .send()
                .await
                .map(drop)
                .map_err(|e| map_error("CreateOrUpdateTags", e)),
            None => clients
                .asg
                .delete_tags()
                .tags(tag)
                .send()
                .await
                .map(drop)
                .map_err(|e| map_error("DeleteTags", e)),
        }
    }

    async fn group(&self) -> Result<Group, ProviderError> {
        if let Some(g) = self.group.lock().await.clone() {
            return Ok(g);
        }
        let (_, g) = self.describe_group().await?;
        *self.group.lock().await = Some(g.clone());
        Ok(g)
    }
}

async fn load_sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()));
    if let Some(url) = &settings.endpoint_url {
        loader = loader.endpoint_url(url.clone());
    }
    let base = loader.load().await;
    match &settings.assume_role_arn {
        None => base,
        Some(arn) => {
            let role = aws_config::sts::AssumeRoleProvider::builder(arn.clone())
                .session_name("capstan")
                .configure(&base)
                .build()
                .await;
            base.into_builder()
                .credentials_provider(aws_sdk_autoscaling::config::SharedCredentialsProvider::new(
                    role,
                ))
                .build()
        }
    }
}

fn lifecycle(state: Option<&LifecycleState>) -> Lifecycle {
    let Some(state) = state else {
        return Lifecycle::Pending;
    };
    let s = state.as_str();
    if s == "InService" {
        Lifecycle::InService
    } else if s.contains("Standby") {
        Lifecycle::Standby
    } else if s.starts_with("Terminat") || s.starts_with("Detach") {
        Lifecycle::Terminating
    } else {
        // Pending, Pending:Wait, Pending:Proceed, warm-pool states, and any new state.
        Lifecycle::Pending
    }
}

/// The `MixedInstancesPolicy` distribution that holds exactly `target`'s split:
/// `(OnDemandBaseCapacity, OnDemandPercentageAboveBaseCapacity)`.
pub fn distribution(target: &CapacityTarget) -> (i32, i32) {
    let base = i32::try_from(target.on_demand).unwrap_or(i32::MAX);
    if target.spot() == 0 {
        (base, 100)
    } else {
        (base, 0)
    }
}

impl AwsProvider {
    /// `UpdateAutoScalingGroup` (a raised `MaxSize`, a new spot split) when needed, then
    /// `SetDesiredCapacity`; `fence` is checked right before each of them.
    async fn send_target(
        &self,
        target: &CapacityTarget,
        fence: &dyn crate::Fence,
    ) -> Result<(), ProviderError> {
        let group = self.group().await?;
        let capacity = i32::try_from(target.capacity).map_err(|_| ProviderError::Validation {
            message: format!("capacity {} is out of range", target.capacity),
        })?;
        if target.capacity > group.max && !target.emergency {
            return Err(ProviderError::Validation {
                message: format!(
                    "target {} is above the Auto Scaling Group's MaxSize {}; raise MaxSize or lower the pool's max",
                    target.capacity, group.max
                ),
            });
        }
        let raise_max = target.capacity > group.max;
        // Back under the max it had before an emergency: lower MaxSize to it again.
        let lower_max = group.max_before_emergency.filter(|before| {
            !target.emergency && *before < group.max && target.capacity <= *before
        });
        let new_mix = match &group.mixed {
            _ if !self.settings.manage_split => None,
            Some(mixed) => {
                let want = distribution(target);
                let have = mixed.instances_distribution().map(|d| {
                    (
                        d.on_demand_base_capacity().unwrap_or(0),
                        d.on_demand_percentage_above_base_capacity().unwrap_or(100),
                    )
                });
                // With 100 % on-demand above the base, the base makes no difference.
                let same =
                    have == Some(want) || (want.1 == 100 && have.is_some_and(|h| h.1 == 100));
                (!same).then(|| distribution_update(want))
            }
            None => {
                if target.spot() > 0
                    && !self
                        .warned_no_mix
                        .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    tracing::warn!(
                        asg = %self.settings.asg,
                        "the Auto Scaling Group has no MixedInstancesPolicy: the planned spot share cannot be applied, every node is bought as the launch template says"
                    );
                }
                None
            }
        };
        let clients = self.clients().await;
        if raise_max && group.max_before_emergency.is_none() {
            // Remembered on the group before it is raised, for whichever leader
            // lowers it again.
            fence.admit()?;
            self.tag_max_before_emergency(Some(group.max)).await?;
        }
        if raise_max || lower_max.is_some() || new_mix.is_some() {
            let mut update = clients
                .asg
                .update_auto_scaling_group()
                .auto_scaling_group_name(&self.settings.asg);
            if raise_max {
                update = update.max_size(capacity);
            }
            if let Some(before) = lower_max {
                update = update.max_size(i32::try_from(before).unwrap_or(i32::MAX));
            }
            if let Some(mix) = new_mix {
                update = update.mixed_instances_policy(mix);
            }
            // Whatever happens next, the group is read again before the next apply.
            *self.group.lock().await = None;
            fence.admit()?;
            update
                .send()
                .await
                .map_err(|e| map_error("UpdateAutoScalingGroup", e))?;
        }
        if lower_max.is_some() {
            fence.admit()?;
            self.tag_max_before_emergency(None).await?;
        }
        self.protect(&group.unprotected, fence).await?;
        fence.admit()?;
        clients
            .asg
            .set_desired_capacity()
            .auto_scaling_group_name(&self.settings.asg)
            .desired_capacity(capacity)
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| map_error("SetDesiredCapacity", e))?;
        Ok(())
    }
}

#[async_trait]
impl NodePoolProvider for AwsProvider {
    fn kind(&self) -> &'static str {
        "aws"
    }

    async fn describe(&self) -> Result<PoolDescription, ProviderError> {
        let (description, group) = self.describe_group().await?;
        *self.group.lock().await = Some(group);
        Ok(description)
    }

    async fn apply(&self, target: &CapacityTarget) -> Result<(), ProviderError> {
        self.send_target(target, &crate::Unfenced).await
    }

    async fn submit(
        &self,
        target: &CapacityTarget,
        fence: &dyn crate::Fence,
    ) -> Result<crate::Applied, ProviderError> {
        // An Auto Scaling group takes a new desired capacity at once: nothing to follow.
        self.send_target(target, fence).await?;
        Ok(crate::Applied::Done)
    }

    fn set_targeted(&self, targeted: bool) {
        self.targeted
            .store(targeted, std::sync::atomic::Ordering::Relaxed);
    }

    async fn remove(&self, ids: &[String]) -> Result<(), ProviderError> {
        self.terminate(ids, &crate::Unfenced).await
    }

    async fn submit_remove(
        &self,
        ids: &[String],
        fence: &dyn crate::Fence,
    ) -> Result<crate::Applied, ProviderError> {
        // Each termination is accepted at once; the group then drains the instance
        // (its lifecycle hooks, if any) with the desired capacity already lowered.
        self.terminate(ids, fence).await?;
        Ok(crate::Applied::Done)
    }

    #[cfg(feature = "aws-ec2")]
    async fn spot_price(&self) -> Result<Option<f64>, ProviderError> {
        self.live_spot_price().await
    }

    #[cfg(feature = "aws-ec2")]
    async fn instance_types(&self) -> Result<Vec<InstanceShape>, ProviderError> {
        self.group_shapes().await
    }

    #[cfg(feature = "aws-ec2")]
    async fn instance_family(&self, family: &str) -> Result<Vec<InstanceShape>, ProviderError> {
        self.family_shapes(family).await
    }
}

/// A partial `MixedInstancesPolicy`: only the two fields of the split.
fn distribution_update((base, pct): (i32, i32)) -> MixedInstancesPolicy {
    MixedInstancesPolicy::builder()
        .instances_distribution(
            InstancesDistribution::builder()
                .on_demand_base_capacity(base)
                .on_demand_percentage_above_base_capacity(pct)
                .build(),
        )
        .build()
}

mod catalogue;
mod errors;
mod remove;
#[cfg(test)]
mod tests;

pub use self::catalogue::{PRICE_TTL, SpotRecord, latest_mean_price};
pub use self::errors::{classify, map_error};
