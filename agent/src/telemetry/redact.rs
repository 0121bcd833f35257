//! What `/v1/status` leaves out for a caller without `cluster.status_token_file`'s
//! token: the cloud accounts and principals in providers' error messages. An AWS
//! AccessDenied names the account and the role (`arn:aws:sts::123456789012:assumed-role/
//! …`), an Azure AuthorizationFailed the tenant, the principal's object id and the
//! subscription (`/subscriptions/<guid>/…`), a GCP permission error the project and the
//! service account. The rest of each message stays, so the status still says which
//! call failed and which permission is missing.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex_lite::Regex;

/// What each kind of identifier becomes.
const ARN: &str = "arn:<redacted>";
const ACCOUNT: &str = "<account>";
const ID: &str = "<id>";
const PROJECT: &str = "projects/<project>";
const PRINCIPAL: &str = "<principal>";

/// The patterns, most specific first: an ARN (up to a quote, space or bracket), an
/// e-mail-like principal (service accounts, user principals), a GUID, a GCP project
/// path, a bare 12-digit AWS account id.
static PATTERNS: LazyLock<[(Regex, &'static str); 5]> = LazyLock::new(|| {
    let re = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("pattern {p}: {e}"));
    [
        (re(r#"\barn:aws[a-z-]*:[^\s"'`,;()\[\]{}<>]*"#), ARN),
        (
            re(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
            PRINCIPAL,
        ),
        (
            re(r"\b[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\b"),
            ID,
        ),
        (re(r"\bprojects/[a-z][a-z0-9.:-]*[a-z0-9]"), PROJECT),
        // Not inside a longer word (an instance id, a longer number).
        (re(r"\b[0-9]{4}-?[0-9]{4}-?[0-9]{4}\b"), ACCOUNT),
    ]
});

/// `text` without the accounts and principals it names.
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    for (re, with) in PATTERNS.iter() {
        // Borrowed back when nothing matched: no copy.
        let replaced = re.replace_all(&out, *with);
        if let Cow::Owned(s) = replaced {
            out = Cow::Owned(s);
        }
    }
    out
}

/// Every string in `value`, redacted.
pub fn redact_json(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::String(s) => {
            if let Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_json),
        serde_json::Value::Object(map) => map.values_mut().for_each(redact_json),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aws_access_denied_keeps_the_action_and_loses_the_account_and_role() {
        let m = "AccessDenied: User: arn:aws:sts::123456789012:assumed-role/capstan-node/i-0abc12345678 \
                 is not authorized to perform: autoscaling:SetDesiredCapacity on resource: \
                 arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:7f1c2d3e-aaaa-bbbb-cccc-0123456789ab:autoScalingGroupName/web \
                 because no identity-based policy allows the autoscaling:SetDesiredCapacity action";
        let r = redact(m);
        assert_eq!(
            r,
            "AccessDenied: User: arn:<redacted> is not authorized to perform: \
             autoscaling:SetDesiredCapacity on resource: arn:<redacted> because no \
             identity-based policy allows the autoscaling:SetDesiredCapacity action"
        );
        // A bare account id, in either of AWS's spellings.
        assert_eq!(
            redact("account 123456789012 (1234-5678-9012) is over its limit"),
            "account <account> (<account>) is over its limit"
        );
        // Side by side, each one (one character apart).
        assert_eq!(
            redact("accounts 123456789012 210987654321,111122223333"),
            "accounts <account> <account>,<account>"
        );
        let quoted = redact("role \"arn:aws-us-gov:iam::123456789012:role/x\", then");
        assert_eq!(quoted, "role \"arn:<redacted>\", then");
    }

    #[test]
    fn an_azure_authorization_failure_loses_its_ids_and_subscription() {
        let m = "AuthorizationFailed: The client '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0' with object id \
                 '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0' does not have authorization to perform action \
                 'Microsoft.Compute/virtualMachineScaleSets/write' over scope \
                 '/subscriptions/11111111-2222-3333-4444-555555555555/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/web' \
                 or the scope is invalid.";
        let r = redact(m);
        assert!(!r.contains("0b1c2d3e") && !r.contains("11111111"), "{r}");
        assert!(
            r.contains("'Microsoft.Compute/virtualMachineScaleSets/write' over scope '/subscriptions/<id>/resourceGroups/rg/"),
            "{r}"
        );
    }

    #[test]
    fn a_gcp_permission_error_loses_the_project_and_service_account() {
        let m = "Required 'compute.instanceGroupManagers.update' permission for \
                 'projects/acme-prod-123/zones/us-central1-a/instanceGroupManagers/gke-web' \
                 (caller capstan@acme-prod-123.iam.gserviceaccount.com)";
        assert_eq!(
            redact(m),
            "Required 'compute.instanceGroupManagers.update' permission for \
             'projects/<project>/zones/us-central1-a/instanceGroupManagers/gke-web' \
             (caller <principal>)"
        );
    }

    #[test]
    fn ordinary_text_is_left_as_it_is() {
        for m in [
            "throttled: Rate exceeded (retry in 2s)",
            "i-0abc123456789012f is unhealthy",
            "capacity 1234 is above max 1000",
            "timestamp 1700000000123",
            "",
        ] {
            assert!(matches!(redact(m), Cow::Borrowed(_)), "{m}");
        }
    }

    #[test]
    fn json_strings_are_redacted_and_numbers_kept() {
        let mut v = serde_json::json!({
            "pools": [{"error": "arn:aws:iam::123456789012:role/r denied", "desired": 123456789012_u64}],
        });
        redact_json(&mut v);
        assert_eq!(v["pools"][0]["error"], "arn:<redacted> denied");
        assert_eq!(v["pools"][0]["desired"], 123456789012_u64);
    }
}
