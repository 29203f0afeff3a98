//! Which client headers and query parameters may go upstream (module doc of
//! `validate` has the rules).

use super::{operation_model, shown, OperationModel};
use crate::error::ProxyError;
use crate::route::Operation;
use http::{header, HeaderMap, HeaderName};
use percent_encoding::percent_decode_str;

/// Headers forwarded for every operation besides the ones its model defines:
/// what boto3/botocore 1.44 sends on these operations (content-type,
/// user-agent, amz-sdk-invocation-id, amz-sdk-request; x-amzn-trace-id in
/// Lambda), plus what the other AWS SDKs add (accept, x-amz-user-agent).
/// botocore also sends host, authorization, x-amz-date,
/// x-amz-security-token, content-length and accept-encoding, which the
/// sidecar replaces or strips.
pub const FORWARDED_ALLOWLIST: [&str; 7] = [
    "accept",
    "amz-sdk-invocation-id",
    "amz-sdk-request",
    "content-type",
    "user-agent",
    "x-amz-user-agent",
    "x-amzn-trace-id",
];

/// Standard hop-by-hop headers (RFC 9110 7.6.1, plus the legacy ones).
pub fn is_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// What the sidecar replaces (signature, host, length) or never forwards.
pub fn is_stripped(name: &str) -> bool {
    matches!(
        name,
        "authorization"
            | "host"
            | "content-length"
            | "content-encoding"
            | "expect"
            | "forwarded"
            | "via"
            | "accept-encoding"
    ) || name == aws::DATE
        || name == aws::SECURITY_TOKEN
        || name == aws::CONTENT_SHA256
        || name.starts_with("x-forwarded-")
}

use crate::aws::headers::{self as aws, is_aws};

/// Headers a `Connection` token must not name: removing them could remove
/// something the sidecar sets or relies on.
fn is_managed(om: &OperationModel, name: &str, identity: &HeaderName) -> bool {
    om.defines_header(name)
        || is_aws(name)
        || name == identity.as_str()
        || matches!(name, "authorization" | "host" | "content-length" | "content-type" | "content-encoding")
}

fn refuse(msg: String) -> ProxyError {
    ProxyError::InvalidParameter(msg)
}

/// The client headers to forward upstream for `op`, or 400
/// `invalid_parameter`. The result holds only model-defined and allowlisted
/// headers, with `Connection`-listed and hop-by-hop ones removed; the
/// caller adds host, content-length, the signature and its rewrites.
pub fn request_headers(op: Operation, headers: &HeaderMap, identity_header: &HeaderName) -> Result<HeaderMap, ProxyError> {
    let om = operation_model(op)?;
    let op_name = om.name();

    for name in headers.keys() {
        if name.as_str().contains('_') {
            return Err(refuse(format!("header `{}`: names with `_` are not accepted", shown(name.as_str()))));
        }
    }

    for v in headers.get_all(header::CONTENT_ENCODING) {
        let v = v.to_str().map_err(|_| refuse("content-encoding: not a valid value".into()))?;
        for coding in v.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("identity") {
                return Err(refuse(format!(
                    "content-encoding `{}`: the request body must not be encoded",
                    shown(coding)
                )));
            }
        }
    }

    let mut listed: Vec<String> = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        let v = v.to_str().map_err(|_| refuse("connection: not a valid value".into()))?;
        for token in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let token = token.to_ascii_lowercase();
            if is_managed(om, &token, identity_header) {
                return Err(refuse(format!(
                    "connection names `{}`, a header the sidecar manages",
                    shown(&token)
                )));
            }
            listed.push(token);
        }
    }

    let mut out = HeaderMap::with_capacity(headers.keys_len());
    for name in headers.keys() {
        let n = name.as_str();
        if is_hop_by_hop(n) || listed.iter().any(|l| l == n) || name == identity_header || is_stripped(n) {
            continue;
        }
        let model_defined = om.defines_header(n);
        if model_defined || FORWARDED_ALLOWLIST.contains(&n) {
            let values = headers.get_all(name);
            if (model_defined || name == header::CONTENT_TYPE) && values.iter().nth(1).is_some() {
                return Err(refuse(format!("header `{n}` appears more than once")));
            }
            for v in values {
                out.append(name.clone(), v.clone());
            }
        } else if is_aws(n) {
            return Err(refuse(format!(
                "header `{}` is not defined by the AWS model of {op_name}",
                shown(n)
            )));
        }
        // Anything else is dropped.
    }
    Ok(out)
}

/// Checks the raw query string of a request for `op`: every parameter must
/// be one the operation's model defines (`location: querystring`, exact
/// case), or 400 `invalid_parameter` naming it. `None` and `""` pass.
pub fn query(op: Operation, query: Option<&str>) -> Result<(), ProxyError> {
    let Some(q) = query else {
        return Ok(());
    };
    let om = operation_model(op)?;
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let raw = part.split('=').next().unwrap_or_default();
        let plus = raw.replace('+', " ");
        let name = percent_decode_str(&plus).decode_utf8().map_err(|_| {
            refuse(format!("query parameter `{}` is not valid UTF-8", shown(raw)))
        })?;
        if !om.defines_query(&name) {
            return Err(refuse(format!(
                "query parameter `{}` is not defined by the AWS model of {}",
                shown(&name),
                om.name()
            )));
        }
    }
    Ok(())
}
