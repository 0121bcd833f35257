//! AWS errors as the provider's typed errors: by error code, then by HTTP status.

use aws_sdk_autoscaling::error::{ProvideErrorMetadata, SdkError};

use crate::ProviderError;

/// Maps an SDK error to the provider's typed error, naming the operation.
pub fn map_error<E>(
    operation: &str,
    err: SdkError<E, aws_smithy_runtime_api::http::Response>,
) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let code = err.code().unwrap_or_default().to_owned();
    let detail = err.message().map(str::to_owned);
    let status = err.raw_response().map(|r| r.status().as_u16());
    let message = match (&detail, code.is_empty()) {
        (Some(m), false) => format!("{operation}: {code}: {m}"),
        (Some(m), true) => format!("{operation}: {m}"),
        (None, false) => format!("{operation}: {code}"),
        (None, true) => format!("{operation}: {}", crate::causes(&err)),
    };
    // No credentials in the chain (or none that load) fails before any request is
    // sent; retrying will not help until someone provides them.
    if code.is_empty() && status.is_none() && message.contains("credential") {
        return ProviderError::Auth { message };
    }
    classify(&code, status, message)
}

/// The typed error for an AWS error code and HTTP status.
pub fn classify(code: &str, status: Option<u16>, message: String) -> ProviderError {
    match code {
        "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "RequestThrottled"
        | "SlowDown"
        | "ResourceContention" => ProviderError::Throttled {
            message,
            retry_after: None,
        },
        "InsufficientInstanceCapacity"
        | "InsufficientCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientReservedInstanceCapacity"
        | "SpotMaxPriceTooLow"
        | "MaxSpotInstanceCountExceeded" => ProviderError::InsufficientCapacity { message },
        "AccessDenied"
        | "AccessDeniedException"
        | "UnauthorizedOperation"
        | "InvalidClientTokenId"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "SignatureDoesNotMatch"
        | "UnrecognizedClientException"
        | "AuthFailure"
        | "MissingAuthenticationToken"
        | "OptInRequired" => ProviderError::Auth { message },
        "ValidationError"
        | "ValidationException"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "InvalidParameter"
        | "MissingParameter"
        | "LimitExceeded" => ProviderError::Validation { message },
        "InvalidInstanceID.NotFound" | "ResourceNotFound" | "NotFound" => {
            ProviderError::NotFound { resource: message }
        }
        // ScalingActivityInProgress, ServiceUnavailable, InternalFailure, timeouts,
        // connection errors and every 5xx pass; an unknown 4xx is the request's fault.
        _ => match status {
            Some(401 | 403) => ProviderError::Auth { message },
            Some(429) => ProviderError::Throttled {
                message,
                retry_after: None,
            },
            Some(s) if (400..500).contains(&s) && code != "ScalingActivityInProgress" => {
                ProviderError::Validation { message }
            }
            _ => ProviderError::Transient { message },
        },
    }
}
