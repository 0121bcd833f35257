//! What the group's capacity costs and offers: the live spot price
//! (`DescribeSpotPriceHistory`, the latest price per type and zone, averaged; cached
//! for [`PRICE_TTL`]) and the instance-type catalogue (`DescribeInstanceTypes`, cached
//! for the provider's life), both with the `aws-ec2` feature.

use super::*;

/// How long a spot price is reused before it is asked for again.
pub const PRICE_TTL: Duration = Duration::from_secs(300);

#[cfg(feature = "aws-ec2")]
impl AwsProvider {
    #[cfg(feature = "aws-ec2")]
    /// The live spot price (`NodePoolProvider::spot_price`).
    pub(super) async fn live_spot_price(&self) -> Result<Option<f64>, ProviderError> {
        let mut cached = self.price.lock().await;
        if let Some((at, price)) = *cached
            && at.elapsed() < PRICE_TTL
        {
            return Ok(price);
        }
        let group = self.group().await?;
        if group.types.is_empty() {
            return Ok(None);
        }
        #[allow(clippy::disallowed_methods)] // a query parameter, not a decision input
        let now = std::time::SystemTime::now();
        let out = self
            .clients()
            .await
            .ec2
            .describe_spot_price_history()
            .set_instance_types(Some(
                group
                    .types
                    .iter()
                    .map(|t| aws_sdk_ec2::types::InstanceType::from(t.as_str()))
                    .collect(),
            ))
            .product_descriptions("Linux/UNIX")
            .start_time(aws_smithy_types::DateTime::from(now))
            .send()
            .await
            .map_err(|e| map_error("DescribeSpotPriceHistory", e))?;
        let records = out.spot_price_history().iter().filter_map(|p| {
            Some(SpotRecord {
                instance_type: p.instance_type()?.as_str().to_owned(),
                zone: p.availability_zone()?.to_owned(),
                price: p.spot_price()?.to_owned(),
                at: p
                    .timestamp()
                    .map_or(0.0, aws_smithy_types::DateTime::as_secs_f64),
            })
        });
        let price = latest_mean_price(records, &group.zones);
        *cached = Some((tokio::time::Instant::now(), price));
        Ok(price)
    }

    #[cfg(feature = "aws-ec2")]
    /// The group's types' shapes (`NodePoolProvider::instance_types`).
    pub(super) async fn group_shapes(&self) -> Result<Vec<InstanceShape>, ProviderError> {
        let group = self.group().await?;
        let mut shapes = self.shapes.lock().await;
        let missing: Vec<aws_sdk_ec2::types::InstanceType> = group
            .types
            .iter()
            .filter(|t| !shapes.contains_key(*t))
            .map(|t| aws_sdk_ec2::types::InstanceType::from(t.as_str()))
            .collect();
        if !missing.is_empty() {
            let out = self
                .clients()
                .await
                .ec2
                .describe_instance_types()
                .set_instance_types(Some(missing))
                .send()
                .await
                .map_err(|e| map_error("DescribeInstanceTypes", e))?;
            for shape in out.instance_types().iter().filter_map(shape_of) {
                shapes.insert(shape.name.clone(), shape);
            }
        }
        Ok(group
            .types
            .iter()
            .filter_map(|t| shapes.get(t).cloned())
            .collect())
    }

    #[cfg(feature = "aws-ec2")]
    /// Every size of `family` (`NodePoolProvider::instance_family`).
    pub(super) async fn family_shapes(
        &self,
        family: &str,
    ) -> Result<Vec<InstanceShape>, ProviderError> {
        let ec2 = &self.clients().await.ec2;
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        // Bounded: a family has tens of sizes; a page holds up to 100.
        for _ in 0..20 {
            let out = ec2
                .describe_instance_types()
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("instance-type")
                        .values(format!("{family}.*"))
                        .build(),
                )
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| map_error("DescribeInstanceTypes", e))?;
            found.extend(out.instance_types().iter().filter_map(shape_of));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
        found.sort_by_key(|s| (s.vcpus, s.memory_mib, s.name.clone()));
        Ok(found)
    }
}

/// What an EC2 instance type offers.
#[cfg(feature = "aws-ec2")]
fn shape_of(t: &aws_sdk_ec2::types::InstanceTypeInfo) -> Option<InstanceShape> {
    let name = t.instance_type()?;
    let gpus = t.gpu_info();
    Some(InstanceShape {
        name: name.as_str().to_owned(),
        vcpus: t
            .v_cpu_info()
            .and_then(|v| v.default_v_cpus())
            .and_then(|v| u32::try_from(v).ok())
            .unwrap_or(0),
        memory_mib: t
            .memory_info()
            .and_then(|m| m.size_in_mib())
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(0),
        gpus: gpus
            .map(|g| {
                g.gpus()
                    .iter()
                    .filter_map(|d| d.count())
                    .map(|c| u32::try_from(c).unwrap_or(0))
                    .sum()
            })
            .unwrap_or(0),
        gpu_memory_mib: gpus
            .and_then(|g| g.total_gpu_memory_in_mib())
            .and_then(|m| u64::try_from(m).ok())
            .unwrap_or(0),
    })
}

/// One spot price record, as `DescribeSpotPriceHistory` gives it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotRecord {
    /// Instance type.
    pub instance_type: String,
    /// Availability zone.
    pub zone: String,
    /// Price per hour, as the API writes it (a decimal string).
    pub price: String,
    /// When the price took effect, seconds since the epoch.
    pub at: f64,
}

/// The latest price per instance type and zone, averaged over the types and zones
/// (only `zones`, when given); `None` when there is no usable record.
pub fn latest_mean_price(
    records: impl IntoIterator<Item = SpotRecord>,
    zones: &BTreeSet<String>,
) -> Option<f64> {
    let mut latest: HashMap<(String, String), (f64, f64)> = HashMap::new();
    for r in records {
        if !zones.is_empty() && !zones.contains(&r.zone) {
            continue;
        }
        let Ok(price) = r.price.trim().parse::<f64>() else {
            tracing::warn!(price = %r.price, "unreadable spot price; ignored");
            continue;
        };
        if !price.is_finite() || price < 0.0 {
            continue;
        }
        let slot = latest
            .entry((r.instance_type, r.zone))
            .or_insert((f64::NEG_INFINITY, price));
        if r.at >= slot.0 {
            *slot = (r.at, price);
        }
    }
    if latest.is_empty() {
        return None;
    }
    let n = latest.len() as f64;
    Some(latest.values().map(|(_, p)| p).sum::<f64>() / n)
}
