//! Azure Virtual Machine Scale Sets (feature `azure`).
//!
//! The few ARM calls Capstan needs, written against the published REST API
//! (Microsoft.Compute, api-version [`API_VERSION`]) on `azure_core`'s pipeline, with
//! credentials from `azure_identity`:
//!
//! - describe: `GET` the scale set (sku name and capacity, orchestration mode, the
//!   profile's priority, `priorityMixPolicy`), then its instances: for a Uniform set
//!   `GET .../virtualMachineScaleSets/{name}/virtualMachines`, for a Flexible set
//!   `GET .../virtualMachines?$filter='virtualMachineScaleSet/id' eq '{id}'` (each VM
//!   with its own priority). Both follow `nextLink`.
//! - apply: `PATCH` of `sku.capacity` and, for a Flexible set of a pool with spot
//!   settings, `properties.priorityMixPolicy` (`baseRegularPriorityCount` = the planned
//!   on-demand nodes, `regularPriorityPercentageAboveBase` = 0, or 100 with no spot).
//!   The long-running operation is an [`OperationHandle`] (its `Azure-AsyncOperation`,
//!   or `Location`, URL): `submit` returns it as soon as ARM accepted the PATCH, and
//!   `poll` looks at it once; `apply` follows it to its end at the server's
//!   `Retry-After`. Nothing is sent when the set already has the target. The PATCH
//!   carries `If-Match` with the ETag of the read it was planned from: a 412 (the set
//!   changed since) is a conflict, not retried: the next pass reads and plans again.
//! - remove: `POST …/virtualMachineScaleSets/{name}/delete` with the `instanceIds` of
//!   the named VMs the set still holds (read fresh: a Uniform set's VM name maps to
//!   its `instanceId`, a Flexible set's instance ids are its VM names), which deletes
//!   them and lowers `sku.capacity` by as many; a long-running operation followed as
//!   an update's is. A VM already gone or being deleted counts as removed.
//! - errors: 429 is `throttled` with the server's `Retry-After`; `AllocationFailed`,
//!   `SkuNotAvailable` and their kin are `insufficient_capacity`; 404 `not_found`;
//!   401/403 and credentials that cannot be had `auth`; 409 and 5xx `transient`.
//!
//! The pipeline does not retry on its own: a `Retry-After` of twenty minutes must not
//! hold a pass; the agent's backoff and circuit breaker own retries. Every request
//! carries a bearer token for `<endpoint>/.default`; `azure_core` refuses to send one
//! over plain http, so the endpoint is always https (a private CA can be trusted with
//! `ca_file`). [`OPERATIONS`] lists the ARM actions the calls need:
//! `packaging/iam/azure-role.json` grants exactly those.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::error::ErrorKind;
use azure_core::http::headers::HeaderName;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, Method, Pipeline, PipelineSendOptions, RawResponse, Request,
    RetryOptions, Transport, Url,
};
use serde_json::{Value, json};
use tokio::sync::{Mutex, OnceCell};

use crate::{
    Applied, CapacityTarget, Fence, Health, Instance, Lifecycle, Market, NodePoolProvider,
    OperationHandle, PoolDescription, ProviderError, Unfenced,
};

/// The Compute API version every call names.
pub const API_VERSION: &str = "2024-11-01";

/// Azure Resource Manager in the public cloud.
pub const PUBLIC_ENDPOINT: &str = "https://management.azure.com";

/// The most VMs one scale set holds (Uniform and Flexible alike).
pub const MAX_CAPACITY: u32 = 1000;

/// Every ARM action the calls of this module need (the custom role's `Actions`).
pub const OPERATIONS: &[&str] = &[
    "Microsoft.Compute/virtualMachineScaleSets/read",
    "Microsoft.Compute/virtualMachineScaleSets/write",
    "Microsoft.Compute/virtualMachineScaleSets/delete/action",
    "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/read",
    "Microsoft.Compute/virtualMachines/read",
    "Microsoft.Compute/locations/operations/read",
];

/// Error codes that mean "no capacity of this kind now": the planner falls back.
const CAPACITY_CODES: &[&str] = &[
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
    "SkuNotAvailable",
    "SpotMaxPriceTooLow",
    "OperationNotAllowed/QuotaExceeded",
    "QuotaExceeded",
];

/// Pages of instances followed at most (`nextLink`), so a misbehaving server cannot
/// hold a pass forever.
const MAX_PAGES: usize = 100;

/// Where an Azure pool's credentials come from.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum CredentialSource {
    /// A service principal's client secret given here (embedding, tests); config
    /// never holds a secret, it names `Environment`.
    ClientSecret {
        /// Directory (tenant) id.
        tenant_id: String,
        /// Application (client) id.
        client_id: String,
        /// The secret.
        secret: String,
    },
    /// The environment's client secret, else workload identity, else managed identity.
    #[default]
    Auto,
    /// `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`.
    Environment,
    /// AKS workload identity.
    WorkloadIdentity,
    /// The VM's managed identity.
    ManagedIdentity,
    /// The signed-in Azure CLI.
    AzureCli,
}

/// Where the scale set is and how to reach it (the pool's `provider` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSettings {
    /// Subscription id.
    pub subscription_id: String,
    /// Resource group of the scale set.
    pub resource_group: String,
    /// The scale set's name.
    pub scale_set: String,
    /// ARM endpoint; [`PUBLIC_ENDPOINT`] when `None`.
    pub endpoint: Option<String>,
    /// Where credentials come from.
    pub credential: CredentialSource,
    /// A user-assigned managed identity's client id.
    pub managed_identity_client_id: Option<String>,
    /// Microsoft Entra ID endpoint override.
    pub authority_host: Option<String>,
    /// Extra CA certificates (PEM) to trust.
    pub ca_file: Option<PathBuf>,
    /// Whether Capstan sets the on-demand/spot split (the pool has spot settings).
    pub manage_split: bool,
    /// How long a long-running operation is followed before the call gives up (the
    /// operation goes on in Azure; the next pass sees its outcome).
    pub operation_timeout: Duration,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .finish_non_exhaustive(),
            Self::Auto => f.write_str("Auto"),
            Self::Environment => f.write_str("Environment"),
            Self::WorkloadIdentity => f.write_str("WorkloadIdentity"),
            Self::ManagedIdentity => f.write_str("ManagedIdentity"),
            Self::AzureCli => f.write_str("AzureCli"),
        }
    }
}

impl AzureSettings {
    /// The scale set's ARM resource id.
    pub fn resource_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachineScaleSets/{}",
            self.subscription_id, self.resource_group, self.scale_set
        )
    }

    fn endpoint(&self) -> &str {
        self.endpoint
            .as_deref()
            .unwrap_or(PUBLIC_ENDPOINT)
            .trim_end_matches('/')
    }
}

/// The orchestration mode and split of the set as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    capacity: u32,
    flexible: bool,
    spot_profile: bool,
    /// `(baseRegularPriorityCount, regularPriorityPercentageAboveBase)`.
    mix: Option<(u32, u32)>,
    /// The ETag the set was read with: the update planned from it is sent `If-Match`.
    etag: Option<String>,
}

/// A VM Scale Set as a node pool.
#[derive(Debug)]
pub struct AzureProvider {
    settings: AzureSettings,
    pipeline: OnceCell<Pipeline>,
    seen: Mutex<Option<Seen>>,
}

impl AzureProvider {
    /// A provider whose credentials come from `settings.credential`; nothing is
    /// contacted until the first call.
    pub const fn new(settings: AzureSettings) -> Self {
        Self {
            settings,
            pipeline: OnceCell::const_new(),
            seen: Mutex::const_new(None),
        }
    }

    async fn pipeline(&self) -> Result<&Pipeline, ProviderError> {
        self.pipeline
            .get_or_try_init(|| async {
                let options = client_options(&self.settings)?;
                let credential = credential(&self.settings, options.clone())?;
                let scope = format!("{}/.default", self.settings.endpoint());
                let auth: Arc<dyn Policy> =
                    Arc::new(BearerTokenAuthorizationPolicy::new(credential, [scope]));
                Ok(Pipeline::new(
                    Some("capstan"),
                    Some(env!("CARGO_PKG_VERSION")),
                    options,
                    Vec::new(),
                    vec![auth],
                    None,
                ))
            })
            .await
    }

    fn url(&self, path_and_query: &str) -> Result<Url, ProviderError> {
        let raw = format!("{}{path_and_query}", self.settings.endpoint());
        Url::parse(&raw).map_err(|e| ProviderError::Validation {
            message: format!("bad ARM URL {raw}: {e}"),
        })
    }

    /// Sends one request and returns the response whatever its status.
    async fn send(&self, mut request: Request) -> Result<RawResponse, ProviderError> {
        let pipeline = self.pipeline().await?;
        let what = format!("{} {}", request.method(), request.url().path());
        pipeline
            .send(
                &Context::new(),
                &mut request,
                Some(PipelineSendOptions {
                    skip_checks: true,
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| transport_error(&what, &e))
    }

    /// `GET` of a JSON document; non-2xx statuses become typed errors.
    async fn get_json(&self, url: Url) -> Result<Value, ProviderError> {
        let response = self.send(Request::new(url, Method::Get)).await?;
        json_body(&self.success(response)?)
    }

    /// The response if its status is 2xx, else its typed error.
    fn success(&self, response: RawResponse) -> Result<RawResponse, ProviderError> {
        if (200..300).contains(&u16::from(response.status())) {
            Ok(response)
        } else {
            Err(response_error(&response, &self.settings.resource_id()))
        }
    }

    /// The scale set's own URL (GET and PATCH).
    fn scale_set_url(&self) -> Result<Url, ProviderError> {
        self.url(&format!(
            "{}?api-version={API_VERSION}",
            self.settings.resource_id()
        ))
    }

    /// Reads the scale set.
    async fn scale_set(&self) -> Result<Seen, ProviderError> {
        parse_scale_set(&self.get_json(self.scale_set_url()?).await?)
    }

    async fn instances(&self, seen: &Seen) -> Result<Vec<Instance>, ProviderError> {
        Ok(self
            .members(seen)
            .await?
            .into_iter()
            .map(|(instance, _)| instance)
            .collect())
    }

    /// The set's VMs, each with the id the scale set's own calls name it by (a
    /// Uniform set's `instanceId`; a Flexible set's VM name).
    async fn members(&self, seen: &Seen) -> Result<Vec<(Instance, String)>, ProviderError> {
        let s = &self.settings;
        let first = if seen.flexible {
            let mut url = self.url(&format!(
                "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Compute/virtualMachines",
                s.subscription_id, s.resource_group
            ))?;
            url.query_pairs_mut()
                .append_pair("api-version", API_VERSION)
                .append_pair(
                    "$filter",
                    &format!("'virtualMachineScaleSet/id' eq '{}'", s.resource_id()),
                );
            url
        } else {
            self.url(&format!(
                "{}/virtualMachines?api-version={API_VERSION}",
                s.resource_id()
            ))?
        };
        let mut instances = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(ProviderError::Transient {
                    message: format!("more than {MAX_PAGES} pages of instances"),
                });
            }
            let page = self.get_json(url).await?;
            for vm in page["value"].as_array().into_iter().flatten() {
                let instance = parse_vm(vm, seen.spot_profile);
                let member = match vm["instanceId"].as_str() {
                    Some(id) if !seen.flexible => id.to_owned(),
                    _ => instance.id.clone(),
                };
                instances.push((instance, member));
            }
            if let Some(link) = page["nextLink"].as_str().filter(|l| !l.is_empty()) {
                next = Some(Url::parse(link).map_err(|e| ProviderError::Transient {
                    message: format!("bad nextLink {link}: {e}"),
                })?);
            }
        }
        Ok(instances)
    }

    /// The operation a PATCH's answer starts, if any: where to poll it.
    fn operation_of(response: &RawResponse) -> Option<OperationHandle> {
        match (
            header(response, "azure-asyncoperation"),
            header(response, "location"),
        ) {
            (Some(id), _) => Some(OperationHandle {
                id,
                via: VIA_STATUS.to_owned(),
            }),
            (None, Some(id)) => Some(OperationHandle {
                id,
                via: VIA_LOCATION.to_owned(),
            }),
            (None, None) => None,
        }
    }

    /// One look at an operation: whether it is done, and the service's hint for when
    /// to look again.
    async fn look(
        &self,
        op: &OperationHandle,
    ) -> Result<(Applied, Option<Duration>), ProviderError> {
        let url = Url::parse(&op.id).map_err(|e| ProviderError::Transient {
            message: format!("bad operation URL {}: {e}", op.id),
        })?;
        let poll = self.send(Request::new(url, Method::Get)).await?;
        let hint = retry_after(&poll);
        if u16::from(poll.status()) == 202 {
            return Ok((Applied::Running(op.clone()), hint));
        }
        let poll = self.success(poll)?;
        if op.via != VIA_STATUS {
            // A Location URL answers 202 while running and the result once done.
            return Ok((Applied::Done, hint));
        }
        let body = json_body(&poll)?;
        match body["status"].as_str().unwrap_or("") {
            "Succeeded" => Ok((Applied::Done, hint)),
            "Failed" | "Canceled" => Err(operation_error(&body)),
            _ => Ok((Applied::Running(op.clone()), hint)),
        }
    }

    /// The PATCH that sets the scale set's capacity (and spot mix), behind `fence`:
    /// what it started, and the service's hint for when to poll.
    async fn send_target(
        &self,
        target: &CapacityTarget,
        fence: &dyn Fence,
    ) -> Result<(Applied, Option<Duration>), ProviderError> {
        if target.capacity > MAX_CAPACITY {
            return Err(ProviderError::Validation {
                message: format!(
                    "a scale set holds at most {MAX_CAPACITY} VMs; asked for {}",
                    target.capacity
                ),
            });
        }
        let seen = match self.seen.lock().await.clone() {
            Some(s) => s,
            None => self.scale_set().await?,
        };
        let mix = (self.settings.manage_split && seen.flexible).then(|| {
            let above = if target.spot() == 0 { 100 } else { 0 };
            (target.on_demand, above)
        });
        let capacity_changes = seen.capacity != target.capacity;
        let mix_changes = mix.is_some() && mix != seen.mix;
        if !capacity_changes && !mix_changes {
            return Ok((Applied::Done, None));
        }
        if self.settings.manage_split && !seen.flexible && target.spot() > 0 {
            tracing::debug!(
                scale_set = %self.settings.scale_set,
                "a Uniform scale set has one priority for all its VMs; the spot split is not applied"
            );
        }
        let mut body = json!({ "sku": { "capacity": target.capacity } });
        if let Some((base, above)) = mix.filter(|_| mix_changes) {
            body["properties"] = json!({
                "priorityMixPolicy": {
                    "baseRegularPriorityCount": base,
                    "regularPriorityPercentageAboveBase": above,
                }
            });
        }
        let mut request = Request::new(self.scale_set_url()?, Method::Patch);
        request.insert_header("content-type", "application/json");
        if let Some(etag) = &seen.etag {
            // Planned from what was read: refused (412) if the set changed since.
            request.insert_header("if-match", etag.clone());
        }
        request.set_body(body.to_string());
        // What was seen is stale from here on, whatever the outcome.
        *self.seen.lock().await = None;
        fence.admit()?;
        let response = self.send(request).await?;
        if u16::from(response.status()) == 412 {
            // A conflict, not a failure to retry: the next pass reads the set again
            // and plans from what it holds then.
            return Err(ProviderError::Transient {
                message: format!(
                    "{}: the scale set changed since it was read (412 Precondition Failed); read again and planned from it next pass",
                    self.settings.scale_set
                ),
            });
        }
        let response = self.success(response)?;
        Ok(match Self::operation_of(&response) {
            Some(op) => (Applied::Running(op), retry_after(&response)),
            None => (Applied::Done, None),
        })
    }
}

impl AzureProvider {
    /// `POST …/delete` of the named VMs the set still holds, behind `fence`: what it
    /// started, and the service's hint for when to poll. Nothing is sent when none of
    /// them is left.
    async fn send_removal(
        &self,
        ids: &[String],
        fence: &dyn Fence,
    ) -> Result<(Applied, Option<Duration>), ProviderError> {
        let seen = self.scale_set().await?;
        let members: Vec<String> = self
            .members(&seen)
            .await?
            .into_iter()
            .filter(|(vm, _)| vm.lifecycle != Lifecycle::Terminating && ids.contains(&vm.id))
            .map(|(_, member)| member)
            .collect();
        if members.is_empty() {
            return Ok((Applied::Done, None));
        }
        let url = self.url(&format!(
            "{}/delete?api-version={API_VERSION}",
            self.settings.resource_id()
        ))?;
        let mut request = Request::new(url, Method::Post);
        request.insert_header("content-type", "application/json");
        request.set_body(json!({ "instanceIds": members }).to_string());
        // The capacity changes: what was seen is stale, whatever the outcome.
        *self.seen.lock().await = None;
        fence.admit()?;
        let response = self.success(self.send(request).await?)?;
        Ok(match Self::operation_of(&response) {
            Some(op) => (Applied::Running(op), retry_after(&response)),
            None => (Applied::Done, None),
        })
    }

    /// Follows what a submission started to its end, at the server's `Retry-After`,
    /// for at most `operation_timeout` (the tools; the agent's pass polls instead).
    async fn follow(
        &self,
        (mut applied, mut hint): (Applied, Option<Duration>),
        what: &str,
    ) -> Result<(), ProviderError> {
        let mut waited = Duration::ZERO;
        while let Applied::Running(op) = applied {
            let pause = hint.unwrap_or(DEFAULT_POLL).clamp(MIN_POLL, MAX_POLL);
            if waited + pause > self.settings.operation_timeout {
                return Err(ProviderError::Transient {
                    message: format!(
                        "the scale set's {what} was still running after {}s; the next pass sees its outcome",
                        self.settings.operation_timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(pause).await;
            waited += pause;
            (applied, hint) = self.look(&op).await?;
        }
        Ok(())
    }
}

/// How an operation handle is polled: its `Azure-AsyncOperation` status URL, or its
/// `Location` URL.
const VIA_STATUS: &str = "azure-asyncoperation";
const VIA_LOCATION: &str = "location";

const DEFAULT_POLL: Duration = Duration::from_secs(5);
const MIN_POLL: Duration = Duration::from_millis(200);
const MAX_POLL: Duration = Duration::from_secs(60);

#[async_trait]
impl NodePoolProvider for AzureProvider {
    fn kind(&self) -> &'static str {
        "azure"
    }

    async fn describe(&self) -> Result<PoolDescription, ProviderError> {
        let seen = self.scale_set().await?;
        let instances = self.instances(&seen).await?;
        let desired = seen.capacity;
        let steps = crate::Steps {
            no_split: (!seen.flexible)
                .then(|| "a Uniform scale set has one priority for all its VMs".to_owned()),
            ..Default::default()
        };
        *self.seen.lock().await = Some(seen);
        Ok(PoolDescription {
            steps,
            min: 0,
            max: MAX_CAPACITY,
            desired,
            instances,
        })
    }

    async fn apply(&self, target: &CapacityTarget) -> Result<(), ProviderError> {
        // The operation is followed to its end here (the tools); the agent's pass
        // submits and polls instead.
        let started = self.send_target(target, &Unfenced).await?;
        self.follow(started, "update").await
    }

    async fn remove(&self, ids: &[String]) -> Result<(), ProviderError> {
        let started = self.send_removal(ids, &Unfenced).await?;
        self.follow(started, "deletion").await
    }

    async fn submit_remove(
        &self,
        ids: &[String],
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        Ok(self.send_removal(ids, fence).await?.0)
    }

    async fn submit(
        &self,
        target: &CapacityTarget,
        fence: &dyn Fence,
    ) -> Result<Applied, ProviderError> {
        Ok(self.send_target(target, fence).await?.0)
    }

    async fn poll(&self, op: &OperationHandle) -> Result<Applied, ProviderError> {
        Ok(self.look(op).await?.0)
    }
}

fn client_options(s: &AzureSettings) -> Result<ClientOptions, ProviderError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30));
    if let Some(file) = &s.ca_file {
        let pem = std::fs::read(file).map_err(|e| ProviderError::Validation {
            message: format!("ca_file {}: {e}", file.display()),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ProviderError::Validation {
                message: format!("ca_file {}: {e}", file.display()),
            })?;
        builder = builder.tls_certs_merge(certs);
    }
    let client = builder.build().map_err(|e| ProviderError::Validation {
        message: format!("cannot build the HTTP client: {e}"),
    })?;
    let mut options = ClientOptions {
        transport: Some(Transport::new(Arc::new(client))),
        retry: RetryOptions::none(),
        ..Default::default()
    };
    if let Some(host) = &s.authority_host {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = host.trim_end_matches('/').to_owned();
        options.cloud = Some(Arc::new(CloudConfiguration::from(custom)));
    }
    Ok(options)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn credential(
    s: &AzureSettings,
    options: ClientOptions,
) -> Result<Arc<dyn TokenCredential>, ProviderError> {
    let source = match &s.credential {
        CredentialSource::Auto if env("AZURE_CLIENT_SECRET").is_some() => {
            CredentialSource::Environment
        }
        CredentialSource::Auto if env("AZURE_FEDERATED_TOKEN_FILE").is_some() => {
            CredentialSource::WorkloadIdentity
        }
        CredentialSource::Auto => CredentialSource::ManagedIdentity,
        other => other.clone(),
    };
    let auth = |what: &str, e: azure_core::Error| ProviderError::Auth {
        message: format!("{what} credential: {e}"),
    };
    let client_secret = |tenant: &str, client: String, secret: String, options| {
        azure_identity::ClientSecretCredential::new(
            tenant,
            client,
            Secret::new(secret),
            Some(azure_identity::ClientSecretCredentialOptions {
                client_options: options,
            }),
        )
    };
    Ok(match source {
        CredentialSource::ClientSecret {
            tenant_id,
            client_id,
            secret,
        } => client_secret(&tenant_id, client_id, secret, options)
            .map_err(|e| auth("client secret", e))?,
        CredentialSource::Environment => {
            let need = |name: &str| {
                env(name).ok_or_else(|| ProviderError::Auth {
                    message: format!("environment credential: {name} is not set"),
                })
            };
            let (tenant, client, secret) = (
                need("AZURE_TENANT_ID")?,
                need("AZURE_CLIENT_ID")?,
                need("AZURE_CLIENT_SECRET")?,
            );
            client_secret(&tenant, client, secret, options).map_err(|e| auth("environment", e))?
        }
        CredentialSource::WorkloadIdentity => azure_identity::WorkloadIdentityCredential::new(
            Some(azure_identity::WorkloadIdentityCredentialOptions {
                credential_options: azure_identity::ClientAssertionCredentialOptions {
                    client_options: options,
                },
                ..Default::default()
            }),
        )
        .map_err(|e| auth("workload identity", e))?,
        CredentialSource::ManagedIdentity | CredentialSource::Auto => {
            azure_identity::ManagedIdentityCredential::new(Some(
                azure_identity::ManagedIdentityCredentialOptions {
                    user_assigned_id: s
                        .managed_identity_client_id
                        .clone()
                        .map(azure_identity::UserAssignedId::ClientId),
                    client_options: options,
                },
            ))
            .map_err(|e| auth("managed identity", e))?
        }
        CredentialSource::AzureCli => {
            azure_identity::AzureCliCredential::new(None).map_err(|e| auth("Azure CLI", e))?
        }
    })
}

#[cfg(test)]
mod tests;
mod wire;

use self::wire::*;
