//! AWS header names the sidecar reads or writes, in one place. Header names
//! compare in lower case (the `http` crate's form).

use http::HeaderName;

/// SigV4: the signing time, the session token of temporary credentials and
/// the payload hash. Set by the signer, never forwarded from a client.
pub const DATE: HeaderName = HeaderName::from_static("x-amz-date");
pub const SECURITY_TOKEN: HeaderName = HeaderName::from_static("x-amz-security-token");
pub const CONTENT_SHA256: HeaderName = HeaderName::from_static("x-amz-content-sha256");

/// Error answers: the exception type SDKs raise, and the request id.
pub const ERROR_TYPE: HeaderName = HeaderName::from_static("x-amzn-errortype");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-amzn-requestid");

/// InvokeModel(+stream): the guardrail the call is bound to.
pub const GUARDRAIL_IDENTIFIER: HeaderName = HeaderName::from_static("x-amzn-bedrock-guardrailidentifier");
pub const GUARDRAIL_VERSION: HeaderName = HeaderName::from_static("x-amzn-bedrock-guardrailversion");

/// InvokeModel answers report token usage in headers.
pub const INPUT_TOKEN_COUNT: HeaderName = HeaderName::from_static("x-amzn-bedrock-input-token-count");
pub const OUTPUT_TOKEN_COUNT: HeaderName = HeaderName::from_static("x-amzn-bedrock-output-token-count");

/// `x-amz-*` and `x-amzn-*`: AWS's own headers, which a service may act
/// on, so the sidecar signs every one it forwards and forwards only those
/// the operation's model defines.
pub fn is_aws(name: &str) -> bool {
    name.starts_with("x-amz-") || name.starts_with("x-amzn-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_headers_by_prefix() {
        for n in [DATE, SECURITY_TOKEN, CONTENT_SHA256, ERROR_TYPE, REQUEST_ID, GUARDRAIL_IDENTIFIER, INPUT_TOKEN_COUNT] {
            assert!(is_aws(n.as_str()), "{n}");
        }
        for n in ["x-amzdate", "amz-sdk-invocation-id", "x-forwarded-for", "user-agent"] {
            assert!(!is_aws(n), "{n}");
        }
    }
}
