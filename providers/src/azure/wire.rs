//! Reading ARM's answers: headers, JSON bodies, error codes (which of them mean no
//! capacity), the scale set and its VMs.

use super::*;

pub(super) fn header(response: &RawResponse, name: &'static str) -> Option<String> {
    response
        .headers()
        .get_optional_string(&HeaderName::from_static(name))
}

pub(super) fn retry_after(response: &RawResponse) -> Option<Duration> {
    header(response, "retry-after")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

pub(super) fn json_body(response: &RawResponse) -> Result<Value, ProviderError> {
    serde_json::from_slice(response.body().as_ref()).map_err(|e| ProviderError::Transient {
        message: format!("unreadable ARM response: {e}"),
    })
}

/// `error.code` and `error.message` of an ARM error body, and the first detail's code.
pub(super) fn error_fields(body: &Value) -> (String, String) {
    let error = if body["error"].is_object() {
        &body["error"]
    } else {
        body
    };
    let mut code = error["code"].as_str().unwrap_or("").to_owned();
    let message = error["message"].as_str().unwrap_or("").to_owned();
    if let Some(detail) = error["details"]
        .as_array()
        .and_then(|d| d.first())
        .and_then(|d| d["code"].as_str())
    {
        code = format!("{code}/{detail}");
    }
    (code, message)
}

pub(super) fn is_capacity_code(code: &str) -> bool {
    CAPACITY_CODES
        .iter()
        .any(|c| code == *c || code.split('/').any(|part| part == *c))
}

pub(super) fn response_error(response: &RawResponse, resource: &str) -> ProviderError {
    let status = u16::from(response.status());
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
    let (code, message) = error_fields(&body);
    let message = if code.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} {code}: {message}")
    };
    match status {
        429 => ProviderError::Throttled {
            message,
            retry_after: retry_after(response),
        },
        401 | 403 => ProviderError::Auth { message },
        404 => ProviderError::NotFound {
            resource: resource.to_owned(),
        },
        _ if is_capacity_code(&code) => ProviderError::InsufficientCapacity { message },
        409 | 408 | 500..=599 => ProviderError::Transient { message },
        _ => ProviderError::Validation { message },
    }
}

/// A long-running operation that ended `Failed` or `Canceled`.
pub(super) fn operation_error(body: &Value) -> ProviderError {
    let (code, message) = error_fields(body);
    let message = format!(
        "the scale set's update ended {}: {code}: {message}",
        body["status"].as_str().unwrap_or("?")
    );
    if is_capacity_code(&code) {
        ProviderError::InsufficientCapacity { message }
    } else {
        ProviderError::Transient { message }
    }
}

pub(super) fn transport_error(what: &str, e: &azure_core::Error) -> ProviderError {
    let message = format!("{what}: {}", crate::causes(e));
    match e.kind() {
        ErrorKind::Credential => ProviderError::Auth { message },
        ErrorKind::Other if message.contains("non-TLS") => ProviderError::Validation { message },
        _ => ProviderError::Transient { message },
    }
}

pub(super) fn parse_scale_set(body: &Value) -> Result<Seen, ProviderError> {
    let capacity = body["sku"]["capacity"]
        .as_u64()
        .ok_or_else(|| ProviderError::Transient {
            message: "the scale set has no sku.capacity".to_owned(),
        })?;
    let props = &body["properties"];
    let mix = &props["priorityMixPolicy"];
    let mix = mix.is_object().then(|| {
        let n = |k: &str| {
            mix[k]
                .as_u64()
                .map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX))
        };
        (
            n("baseRegularPriorityCount"),
            n("regularPriorityPercentageAboveBase"),
        )
    });
    Ok(Seen {
        capacity: u32::try_from(capacity).unwrap_or(u32::MAX),
        flexible: props["orchestrationMode"].as_str() == Some("Flexible"),
        spot_profile: is_spot(props["virtualMachineProfile"]["priority"].as_str()),
        mix,
        etag: body["etag"].as_str().map(str::to_owned),
    })
}

pub(super) fn is_spot(priority: Option<&str>) -> bool {
    matches!(priority, Some("Spot" | "Low"))
}

pub(super) fn parse_vm(vm: &Value, spot_profile: bool) -> Instance {
    let props = &vm["properties"];
    let state = props["provisioningState"].as_str().unwrap_or("");
    let lifecycle = match state {
        "Creating" | "Migrating" => Lifecycle::Pending,
        "Deleting" => Lifecycle::Terminating,
        _ => Lifecycle::InService,
    };
    let health = match state {
        "Failed" => Health::Unhealthy,
        "Succeeded" => Health::Healthy,
        _ => Health::Unknown,
    };
    let spot = match props["priority"].as_str() {
        Some(p) => is_spot(Some(p)),
        None => spot_profile,
    };
    Instance {
        id: vm["name"].as_str().unwrap_or_default().to_owned(),
        lifecycle,
        health,
        instance_type: vm["sku"]["name"]
            .as_str()
            .or_else(|| props["hardwareProfile"]["vmSize"].as_str())
            .map(str::to_owned),
        zone: vm["zones"]
            .as_array()
            .and_then(|z| z.first())
            .and_then(Value::as_str)
            .map(str::to_owned),
        market: if spot { Market::Spot } else { Market::OnDemand },
    }
}
