//! SigV4 (docs/reference.md §6) with the `aws-sigv4` crate: signing name from the
//! operation's service, region from `aws.region`, the payload hash over the
//! exact bytes sent, `x-amz-security-token` when the credentials have one.
//! The canonical URI is the already SDK-encoded path, double-encoded as AWS
//! requires for every service but S3 (the crate's default).

use crate::error::ProxyError;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::Request;
use std::time::SystemTime;

/// Whether a request header is covered by the signature. The signed set is
/// what AWS needs to bind: host, content type and every `x-amz-*` /
/// `x-amzn-*` header (guardrail, target model, input location). Other
/// forwarded headers (user-agent, accept, amz-sdk-*) are sent unsigned, as
/// the SDKs themselves do for user-agent.
fn is_signed(name: &str) -> bool {
    name == "host" || name == "content-type" || super::headers::is_aws(name)
}

/// Sign `req` in place (adds `authorization`, `x-amz-date` and, with session
/// credentials, `x-amz-security-token`). `req` must carry its final URI
/// (absolute) and `host` header; `body` is the exact payload that will be sent.
pub fn sign_request<B>(
    req: &mut Request<B>,
    body: &[u8],
    creds: &Credentials,
    region: &str,
    signing_name: &str,
    now: SystemTime,
) -> Result<(), ProxyError> {
    let identity: Identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(signing_name)
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| ProxyError::UpstreamError(format!("signing parameters: {e}")))?
        .into();
    let uri = req.uri().to_string();
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(8);
    for (name, value) in req.headers() {
        if is_signed(name.as_str()) {
            let v = value
                .to_str()
                .map_err(|_| ProxyError::InvalidParameter(format!("header {name} is not valid text")))?;
            headers.push((name.as_str(), v));
        }
    }
    let signable = SignableRequest::new(
        req.method().as_str(),
        uri.as_str(),
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| ProxyError::InvalidParameter(format!("request cannot be signed: {e}")))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| ProxyError::InvalidParameter(format!("request cannot be signed: {e}")))?
        .into_parts();
    instructions.apply_to_request_http1x(req);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn creds(token: Option<&str>) -> Credentials {
        Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token.map(String::from), None, "test")
    }

    fn request(path: &str) -> Request<()> {
        Request::post(format!("https://bedrock-runtime.us-east-1.amazonaws.com{path}"))
            .header("host", "bedrock-runtime.us-east-1.amazonaws.com")
            .header("content-type", "application/json")
            .header("user-agent", "Boto3/1.44.5")
            .body(())
            .unwrap()
    }

    #[test]
    fn signs_with_scope_and_signed_headers() {
        let mut req = request("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        sign_request(&mut req, b"{}", &creds(None), "us-east-1", "bedrock", t).unwrap();
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/bedrock/aws4_request"
        ), "{auth}");
        assert!(auth.contains("SignedHeaders=content-type;host;x-amz-date,"), "{auth}");
        assert_eq!(req.headers()["x-amz-date"], "20231114T221320Z");
        assert!(req.headers().get("x-amz-security-token").is_none());
    }

    #[test]
    fn session_token_is_sent_and_signed() {
        let mut req = request("/model/m/converse");
        sign_request(&mut req, b"{}", &creds(Some("TOKEN")), "eu-west-1", "bedrock", SystemTime::now()).unwrap();
        assert_eq!(req.headers()["x-amz-security-token"], "TOKEN");
        let auth = req.headers()["authorization"].to_str().unwrap();
        assert!(auth.contains("x-amz-security-token"), "{auth}");
        assert!(auth.contains("/eu-west-1/bedrock/"), "{auth}");
    }

    #[test]
    fn the_signature_depends_on_the_body() {
        let t = SystemTime::now();
        let mut a = request("/model/m/converse");
        let mut b = request("/model/m/converse");
        sign_request(&mut a, b"{\"a\":1}", &creds(None), "us-east-1", "bedrock", t).unwrap();
        sign_request(&mut b, b"{\"a\":2}", &creds(None), "us-east-1", "bedrock", t).unwrap();
        assert_ne!(a.headers()["authorization"], b.headers()["authorization"]);
    }
}
