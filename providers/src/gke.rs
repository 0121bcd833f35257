//! GKE node pools (feature `gke`), on Google's official Rust clients
//! (`google-cloud-container-v1`, and `google-cloud-compute-v1` for the managed
//! instance groups behind a node pool).
//!
//! A Capstan pool is one node pool, or two: an on-demand node pool and a spot node
//! pool (a GKE node pool is wholly spot or not), across which the planned split is
//! applied.
//!
//! - describe: `nodePools.get` for each node pool (its managed instance groups, and
//!   whether GKE's own cluster autoscaler is on, which Capstan refuses: two
//!   autoscalers must not fight), then for each group `instanceGroupManagers.get`
//!   (target size) and `listManagedInstances` (the instances and what is happening to
//!   them). The pool's size is the sum over every group.
//! - apply: `nodePools.setSize`, then `operations.get` until the operation is `DONE`
//!   (`submit` returns the operation as an [`OperationHandle`] as soon as GKE accepted
//!   the resize, and `poll` looks at it once; a split pool's second node pool is
//!   resized by the next `submit`, once the first is done).
//!   GKE's size is per zone (each zone's group gets the same size), so a node pool in
//!   `z` zones holds multiples of `z`, and describe says so (`Steps`: a split pool's
//!   on-demand and spot parts each in the steps of its own node pool), so the agent
//!   plans within them. A target that is not a multiple anyway (the tools) is rounded
//!   up per zone, so the pool never holds less than asked. Nothing is sent when every
//!   group already has that size.
//! - remove: `instanceGroupManagers.deleteInstances` on each zone's group that holds
//!   some of the named instances (read fresh; `skipInstancesOnValidationError`, so
//!   one already gone or being deleted is skipped, as removed), which lowers the
//!   group's target size by as many. Compute marks that operation done once the
//!   deletion is scheduled, so the call is done when it is accepted; the instances
//!   then show as deleting in `listManagedInstances`.
//! - errors: HTTP 429 `throttled`; `RESOURCE_EXHAUSTED` (a stockout or quota, also
//!   inside a failed operation) `insufficient_capacity`; 404 `not_found`;
//!   401/403 and credentials that cannot be had `auth`; `FAILED_PRECONDITION` (another
//!   operation on the cluster), 5xx and network errors `transient`.
//!
//! Credentials: Application Default Credentials. [`OPERATIONS`] lists every API
//! method called with the IAM permission it needs: `packaging/iam/gcp-role.yaml`
//! grants exactly those permissions.

use std::time::Duration;

use async_trait::async_trait;
use google_cloud_auth::credentials::Credentials;
use google_cloud_compute_v1::client::InstanceGroupManagers;
use google_cloud_compute_v1::model::managed_instance::{CurrentAction, InstanceStatus};
use google_cloud_container_v1::client::ClusterManager;
use google_cloud_container_v1::model::operation::Status as OperationStatus;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::retry_policy::{Aip194Strict, RetryPolicyExt};
use tokio::sync::{Mutex, OnceCell};

use crate::{
    Applied, CapacityTarget, Fence, Health, Instance, Lifecycle, Market, NodePoolProvider,
    OperationHandle, PoolDescription, ProviderError, Unfenced,
};

/// Every API method this module calls, with the IAM permission it needs.
pub const OPERATIONS: &[(&str, &str)] = &[
    (
        "container.projects.locations.clusters.nodePools.get",
        "container.clusters.get",
    ),
    (
        "container.projects.locations.clusters.nodePools.setSize",
        "container.clusters.update",
    ),
    (
        "container.projects.locations.operations.get",
        "container.operations.get",
    ),
    (
        "compute.instanceGroupManagers.get",
        "compute.instanceGroupManagers.get",
    ),
    (
        "compute.instanceGroupManagers.listManagedInstances",
        "compute.instanceGroupManagers.get",
    ),
    (
        "compute.instanceGroupManagers.deleteInstances",
        "compute.instanceGroupManagers.update",
    ),
];

/// The most nodes GKE runs per zone in one node pool.
pub const MAX_PER_ZONE: u32 = 1000;

/// Pages of managed instances followed at most per group.
const MAX_PAGES: usize = 100;

/// Where the node pools are and how to reach them (the pool's `provider` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GkeSettings {
    /// Project id.
    pub project: String,
    /// Region or zone of the cluster.
    pub location: String,
    /// Cluster name.
    pub cluster: String,
    /// The (on-demand) node pool.
    pub node_pool: String,
    /// The spot node pool, if the pool has one.
    pub spot_node_pool: Option<String>,
    /// Endpoint override for both APIs (`<endpoint>/v1/...`, `<endpoint>/compute/v1/...`).
    pub endpoint: Option<String>,
    /// How often a running operation is asked about.
    pub operation_poll: Duration,
    /// How long an operation is followed before the call gives up.
    pub operation_timeout: Duration,
}

impl GkeSettings {
    fn pool_name(&self, node_pool: &str) -> String {
        format!(
            "projects/{}/locations/{}/clusters/{}/nodePools/{node_pool}",
            self.project, self.location, self.cluster
        )
    }
}

/// One managed instance group of a node pool.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    project: String,
    zone: String,
    name: String,
}

/// A node pool as last described.
#[derive(Debug, Clone)]
struct NodePoolSeen {
    node_pool: String,
    groups: Vec<Group>,
    target_sizes: Vec<u32>,
}

#[derive(Debug)]
struct Clients {
    container: ClusterManager,
    compute: InstanceGroupManagers,
}

/// A GKE node pool (or an on-demand and a spot pair) as a Capstan pool.
#[derive(Debug)]
pub struct GkeProvider {
    settings: GkeSettings,
    credentials: Option<Credentials>,
    clients: OnceCell<Clients>,
    seen: Mutex<Vec<NodePoolSeen>>,
}

impl GkeProvider {
    /// A provider with Application Default Credentials; nothing is contacted until
    /// the first call.
    pub const fn new(settings: GkeSettings) -> Self {
        Self {
            settings,
            credentials: None,
            clients: OnceCell::const_new(),
            seen: Mutex::const_new(Vec::new()),
        }
    }

    /// A provider with the given credentials (tests, embedding).
    pub fn with_credentials(settings: GkeSettings, credentials: Credentials) -> Self {
        Self {
            credentials: Some(credentials),
            ..Self::new(settings)
        }
    }

    async fn clients(&self) -> Result<&Clients, ProviderError> {
        self.clients
            .get_or_try_init(|| async {
                let retry = || Aip194Strict.with_attempt_limit(3);
                let mut container = ClusterManager::builder().with_retry_policy(retry());
                let mut compute = InstanceGroupManagers::builder().with_retry_policy(retry());
                if let Some(e) = &self.settings.endpoint {
                    let e = e.trim_end_matches('/').to_owned();
                    container = container.with_endpoint(e.clone());
                    compute = compute.with_endpoint(e);
                }
                if let Some(c) = &self.credentials {
                    container = container.with_credentials(c.clone());
                    compute = compute.with_credentials(c.clone());
                }
                let auth = |e: &dyn std::fmt::Display| ProviderError::Auth {
                    message: format!("cannot set up the Google Cloud client: {e}"),
                };
                Ok(Clients {
                    container: container.build().await.map_err(|e| auth(&e))?,
                    compute: compute.build().await.map_err(|e| auth(&e))?,
                })
            })
            .await
    }

    /// The node pools of this Capstan pool: `(name, is the spot pool)`.
    fn node_pools(&self) -> Vec<(&str, bool)> {
        let mut v = vec![(self.settings.node_pool.as_str(), false)];
        if let Some(s) = &self.settings.spot_node_pool {
            v.push((s.as_str(), true));
        }
        v
    }

    /// A node pool's groups and their target sizes; with `instances`, also the groups'
    /// instances, added to it.
    async fn read(
        &self,
        node_pool: &str,
        is_spot_pool: bool,
        mut instances: Option<&mut Vec<Instance>>,
    ) -> Result<NodePoolSeen, ProviderError> {
        let (groups, spot) = self.node_pool(node_pool).await?;
        let mut target_sizes = Vec::with_capacity(groups.len());
        for g in &groups {
            target_sizes.push(self.target_size(g).await?);
            if let Some(out) = instances.as_deref_mut() {
                self.managed_instances(g, spot || is_spot_pool, out).await?;
            }
        }
        Ok(NodePoolSeen {
            node_pool: node_pool.to_owned(),
            groups,
            target_sizes,
        })
    }

    /// `nodePools.get`: the groups, whether its nodes are spot; refuses a node pool
    /// that GKE's autoscaler manages.
    async fn node_pool(&self, node_pool: &str) -> Result<(Vec<Group>, bool), ProviderError> {
        let clients = self.clients().await?;
        let name = self.settings.pool_name(node_pool);
        let np = clients
            .container
            .get_node_pool()
            .set_name(&name)
            .send()
            .await
            .map_err(|e| map_error(&e, &name))?;
        if np.autoscaling.as_ref().is_some_and(|a| a.enabled) {
            return Err(ProviderError::Unsupported {
                message: format!(
                    "node pool {node_pool} has GKE's cluster autoscaler enabled; two autoscalers must not fight over it. Turn it off (gcloud container node-pools update {node_pool} --cluster {} --location {} --no-enable-autoscaling) or leave this pool out of Capstan",
                    self.settings.cluster, self.settings.location
                ),
            });
        }
        let spot = np.config.as_ref().is_some_and(|c| c.spot || c.preemptible);
        let groups = np
            .instance_group_urls
            .iter()
            .map(|u| parse_group_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((groups, spot))
    }

    async fn target_size(&self, g: &Group) -> Result<u32, ProviderError> {
        let clients = self.clients().await?;
        let igm = clients
            .compute
            .get()
            .set_project(&g.project)
            .set_zone(&g.zone)
            .set_instance_group_manager(&g.name)
            .send()
            .await
            .map_err(|e| map_error(&e, &g.name))?;
        Ok(igm.target_size.map_or(0, |s| u32::try_from(s).unwrap_or(0)))
    }

    async fn managed_instances(
        &self,
        g: &Group,
        spot: bool,
        out: &mut Vec<Instance>,
    ) -> Result<(), ProviderError> {
        let clients = self.clients().await?;
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut call = clients
                .compute
                .list_managed_instances()
                .set_project(&g.project)
                .set_zone(&g.zone)
                .set_instance_group_manager(&g.name);
            if let Some(t) = &token {
                call = call.set_page_token(t);
            }
            let page = call.send().await.map_err(|e| map_error(&e, &g.name))?;
            for mi in &page.managed_instances {
                out.push(instance(mi, &g.zone, spot));
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => return Ok(()),
            }
        }
        Err(ProviderError::Transient {
            message: format!("more than {MAX_PAGES} pages of instances in {}", g.name),
        })
    }

    /// `deleteInstances` on each group holding some of `ids`, behind `fence`.
    async fn delete_instances(
        &self,
        ids: &[String],
        fence: &dyn Fence,
    ) -> Result<(), ProviderError> {
        let clients = self.clients().await?;
        for (node_pool, is_spot_pool) in self.node_pools() {
            let (groups, spot) = self.node_pool(node_pool).await?;
            for g in &groups {
                let mut members = Vec::new();
                self.managed_instances(g, spot || is_spot_pool, &mut members)
                    .await?;
                let named: Vec<String> = members
                    .iter()
                    .filter(|i| i.lifecycle != Lifecycle::Terminating && ids.contains(&i.id))
                    .map(|i| format!("zones/{}/instances/{}", g.zone, i.id))
                    .collect();
                if named.is_empty() {
                    continue;
                }
                // What was seen is stale from here on, whatever the outcome.
                self.seen.lock().await.clear();
                fence.admit()?;
                let op = clients
                    .compute
                    .delete_instances()
                    .set_project(&g.project)
                    .set_zone(&g.zone)
                    .set_instance_group_manager(&g.name)
                    .set_body(
                        google_cloud_compute_v1::model::InstanceGroupManagersDeleteInstancesRequest::new()
                            .set_instances(named)
                            .set_skip_instances_on_validation_error(true),
                    )
                    .send()
                    .await
                    .map_err(|e| map_error(&e, &g.name))?;
                if let Some(e) = op.error.as_ref().and_then(|e| e.errors.first()) {
                    return Err(ProviderError::Validation {
                        message: format!(
                            "{}: deleteInstances failed: {} {}",
                            g.name,
                            e.code.as_deref().unwrap_or(""),
                            e.message.as_deref().unwrap_or("")
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Where an operation stands: done (or failed, as its error), or still running.
    fn state_of(
        op: &google_cloud_container_v1::model::Operation,
        name: &str,
    ) -> Result<Applied, ProviderError> {
        match op.status {
            OperationStatus::Done => match &op.error {
                Some(e) if e.code != 0 => Err(operation_error(e.code, &e.message)),
                _ => Ok(Applied::Done),
            },
            OperationStatus::Aborting => Err(ProviderError::Transient {
                message: format!("operation {} is aborting", op.name),
            }),
            _ => Ok(Applied::Running(OperationHandle {
                id: name.to_owned(),
                via: String::new(),
            })),
        }
    }

    /// Resizes the first node pool that does not hold its share of `target`, behind
    /// `fence`: `Running` with the resize's operation while GKE carries it out (the
    /// next node pool is resized by a later call, once this one is done), `Done` when
    /// every node pool holds its share.
    async fn send_target(
        &self,
        target: &CapacityTarget,
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        let split = self.settings.spot_node_pool.is_some();
        let mut seen = self.seen.lock().await.clone();
        for (node_pool, is_spot_pool) in self.node_pools() {
            let nodes = match (split, is_spot_pool) {
                (false, _) => target.capacity,
                (true, false) => target.on_demand,
                (true, true) => target.spot(),
            };
            let np = match seen.iter().position(|s| s.node_pool == node_pool) {
                Some(i) => seen.swap_remove(i),
                None => self.read(node_pool, is_spot_pool, None).await?,
            };
            let zones = u32::try_from(np.groups.len()).unwrap_or(u32::MAX).max(1);
            let per_zone = nodes.div_ceil(zones);
            if per_zone > MAX_PER_ZONE {
                return Err(ProviderError::Validation {
                    message: format!(
                        "node pool {node_pool}: {nodes} nodes in {zones} zone(s) is more than GKE's {MAX_PER_ZONE} per zone"
                    ),
                });
            }
            if !np.target_sizes.is_empty() && np.target_sizes.iter().all(|s| *s == per_zone) {
                continue;
            }
            let clients = self.clients().await?;
            let name = self.settings.pool_name(node_pool);
            // What was seen is stale from here on, whatever the outcome.
            self.seen.lock().await.clear();
            fence.admit()?;
            let op = clients
                .container
                .set_node_pool_size()
                .set_name(&name)
                .set_node_count(i32::try_from(per_zone).unwrap_or(i32::MAX))
                .send()
                .await
                .map_err(|e| map_error(&e, &name))?;
            let applied = Self::state_of(&op, &self.operation_name(&op.name))?;
            if applied != Applied::Done {
                return Ok(applied);
            }
        }
        Ok(Applied::Done)
    }

    /// An operation's full resource name, as `operations.get` takes it.
    fn operation_name(&self, op: &str) -> String {
        format!(
            "projects/{}/locations/{}/operations/{op}",
            self.settings.project, self.settings.location
        )
    }

    /// One look at an operation.
    async fn look(&self, op: &OperationHandle) -> Result<Applied, ProviderError> {
        let clients = self.clients().await?;
        let found = clients
            .container
            .get_operation()
            .set_name(&op.id)
            .send()
            .await
            .map_err(|e| map_error(&e, &op.id))?;
        Self::state_of(&found, &op.id)
    }
}

#[async_trait]
impl NodePoolProvider for GkeProvider {
    fn kind(&self) -> &'static str {
        "gke"
    }

    async fn describe(&self) -> Result<PoolDescription, ProviderError> {
        let mut seen = Vec::new();
        let mut instances = Vec::new();
        for (node_pool, is_spot_pool) in self.node_pools() {
            seen.push(
                self.read(node_pool, is_spot_pool, Some(&mut instances))
                    .await?,
            );
        }
        let desired = seen
            .iter()
            .flat_map(|np| &np.target_sizes)
            .fold(0_u32, |sum, s| sum.saturating_add(*s));
        let groups = seen.iter().map(|np| np.groups.len()).sum::<usize>();
        let max = MAX_PER_ZONE.saturating_mul(u32::try_from(groups).unwrap_or(u32::MAX));
        // A node pool moves in steps of its zones (each zone's group gets the same
        // size); a split pool's two node pools are sized apart, each in its own steps.
        let zones = |np: &NodePoolSeen| u32::try_from(np.groups.len()).unwrap_or(1).max(1);
        let steps = match seen.as_slice() {
            [only] => crate::Steps {
                step: zones(only),
                ..Default::default()
            },
            [on_demand, spot] => crate::Steps {
                parts: Some((zones(on_demand), zones(spot))),
                ..Default::default()
            },
            _ => crate::Steps::default(),
        };
        *self.seen.lock().await = seen;
        Ok(PoolDescription {
            steps,
            min: 0,
            max,
            desired,
            instances,
        })
    }

    async fn apply(&self, target: &CapacityTarget) -> Result<(), ProviderError> {
        // Each node pool's resize followed to its end, then the next (the tools; the
        // agent's pass submits and polls instead).
        let mut waited = Duration::ZERO;
        while let Applied::Running(mut op) = self.send_target(target, &Unfenced).await? {
            loop {
                if waited >= self.settings.operation_timeout {
                    return Err(ProviderError::Transient {
                        message: format!(
                            "operation {} was still running after {}s; the next pass sees its outcome",
                            op.id,
                            self.settings.operation_timeout.as_secs()
                        ),
                    });
                }
                tokio::time::sleep(self.settings.operation_poll).await;
                waited += self.settings.operation_poll;
                match self.look(&op).await? {
                    Applied::Done => break,
                    Applied::Running(next) => op = next,
                }
            }
        }
        Ok(())
    }

    async fn submit(
        &self,
        target: &CapacityTarget,
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        self.send_target(target, fence).await
    }

    async fn poll(&self, op: &OperationHandle) -> Result<Applied, ProviderError> {
        self.look(op).await
    }

    async fn remove(&self, ids: &[String]) -> Result<(), ProviderError> {
        self.delete_instances(ids, &Unfenced).await
    }

    async fn submit_remove(
        &self,
        ids: &[String],
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        self.delete_instances(ids, fence).await?;
        Ok(Applied::Done)
    }
}

/// `https://www.googleapis.com/compute/v1/projects/P/zones/Z/instanceGroupManagers/N`
/// (the `instanceGroups/` form GKE also writes names the same group).
fn parse_group_url(url: &str) -> Result<Group, ProviderError> {
    let parts: Vec<&str> = url.trim_end_matches('/').split('/').collect();
    let find = |key: &str| {
        parts
            .iter()
            .position(|p| *p == key)
            .and_then(|i| parts.get(i + 1))
            .map(|s| (*s).to_owned())
    };
    let name = find("instanceGroupManagers").or_else(|| find("instanceGroups"));
    match (find("projects"), find("zones"), name) {
        (Some(project), Some(zone), Some(name)) => Ok(Group {
            project,
            zone,
            name,
        }),
        _ => Err(ProviderError::Unsupported {
            message: format!("not a zonal managed instance group: {url}"),
        }),
    }
}

fn instance(
    mi: &google_cloud_compute_v1::model::ManagedInstance,
    zone: &str,
    spot: bool,
) -> Instance {
    let id = mi
        .name
        .clone()
        .or_else(|| {
            mi.instance
                .as_deref()
                .and_then(|u| u.rsplit('/').next())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let lifecycle = match &mi.current_action {
        Some(
            CurrentAction::Creating
            | CurrentAction::CreatingWithoutRetries
            | CurrentAction::Recreating
            | CurrentAction::Verifying
            | CurrentAction::Starting
            | CurrentAction::Resuming,
        ) => Lifecycle::Pending,
        Some(
            CurrentAction::Deleting
            | CurrentAction::Abandoning
            | CurrentAction::Stopping
            | CurrentAction::Suspending,
        ) => Lifecycle::Terminating,
        _ => match &mi.instance_status {
            Some(InstanceStatus::Running) | None => Lifecycle::InService,
            Some(
                InstanceStatus::Stopping
                | InstanceStatus::Stopped
                | InstanceStatus::Terminated
                | InstanceStatus::Suspending
                | InstanceStatus::Suspended,
            ) => Lifecycle::Terminating,
            Some(_) => Lifecycle::Pending,
        },
    };
    let health = match (&mi.current_action, &mi.instance_status) {
        (Some(CurrentAction::None) | None, Some(InstanceStatus::Running)) => Health::Healthy,
        _ => Health::Unknown,
    };
    Instance {
        id,
        lifecycle,
        health,
        instance_type: None,
        zone: Some(zone.to_owned()),
        market: if spot { Market::Spot } else { Market::OnDemand },
    }
}

fn operation_error(code: i32, message: &str) -> ProviderError {
    let message = format!("the node pool's resize failed (code {code}): {message}");
    let stockout = ["RESOURCE_POOL_EXHAUSTED", "STOCKOUT", "QUOTA_EXCEEDED"]
        .iter()
        .any(|s| message.contains(s));
    if code == Code::ResourceExhausted as i32 || stockout {
        ProviderError::InsufficientCapacity { message }
    } else if code == Code::PermissionDenied as i32 || code == Code::Unauthenticated as i32 {
        ProviderError::Auth { message }
    } else {
        ProviderError::Transient { message }
    }
}

fn map_error(e: &google_cloud_gax::error::Error, resource: &str) -> ProviderError {
    let message = crate::causes(e);
    let http = e.http_status_code();
    let code = e.status().map(|s| s.code);
    if http == Some(429) {
        let retry_after = e
            .http_headers()
            .and_then(|h| h.get("retry-after"))
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return ProviderError::Throttled {
            message,
            retry_after,
        };
    }
    if e.is_authentication()
        || matches!(http, Some(401 | 403))
        || matches!(code, Some(Code::Unauthenticated | Code::PermissionDenied))
    {
        return ProviderError::Auth { message };
    }
    if http == Some(404) || code == Some(Code::NotFound) {
        return ProviderError::NotFound {
            resource: resource.to_owned(),
        };
    }
    match code {
        Some(Code::ResourceExhausted) => ProviderError::InsufficientCapacity { message },
        Some(Code::InvalidArgument | Code::OutOfRange | Code::AlreadyExists) => {
            ProviderError::Validation { message }
        }
        _ if matches!(http, Some(400..=499))
            && !matches!(code, Some(Code::FailedPrecondition | Code::Aborted)) =>
        {
            ProviderError::Validation { message }
        }
        _ => ProviderError::Transient { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_urls() {
        let g = parse_group_url("https://www.googleapis.com/compute/v1/projects/p1/zones/us-central1-a/instanceGroupManagers/gke-c-np-1234-grp").unwrap();
        assert_eq!(
            g,
            Group {
                project: "p1".into(),
                zone: "us-central1-a".into(),
                name: "gke-c-np-1234-grp".into()
            }
        );
        let g = parse_group_url(
            "https://www.googleapis.com/compute/v1/projects/p1/zones/z/instanceGroups/g",
        )
        .unwrap();
        assert_eq!(g.name, "g");
        assert_eq!(
            parse_group_url("https://x/compute/v1/projects/p/regions/r/instanceGroupManagers/g")
                .unwrap_err()
                .kind(),
            "unsupported"
        );
    }

    #[test]
    fn failed_operations() {
        assert_eq!(
            operation_error(8, "ZONE_RESOURCE_POOL_EXHAUSTED").kind(),
            "insufficient_capacity"
        );
        assert_eq!(
            operation_error(13, "GCE_STOCKOUT in us-central1-a").kind(),
            "insufficient_capacity"
        );
        assert_eq!(operation_error(13, "internal").kind(), "transient");
        assert_eq!(operation_error(7, "denied").kind(), "auth");
    }
}
