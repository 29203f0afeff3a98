//! Every operation of the three runtime APIs that tenantgate does not route,
//! each refused on purpose with 403 `operation_not_allowed` and the reason
//! docs/operations.md gives. With `Operation::ALL` this covers every
//! operation of the vendored service models (`models/aws/`), which a test
//! checks: an operation AWS adds is neither routed nor refused until it is
//! decided here.

use http::Method;

/// Why an operation is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Never: the operation would let a tenant step outside its isolation
    /// (re-tagging resources escapes IAM ABAC) or is administrative.
    Never,
    /// Not brought in yet: its isolation rules are not built.
    NotYet,
}

/// An operation refused at routing.
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    /// Its name in the AWS model (and in audit records).
    pub name: &'static str,
    pub method: &'static str,
    /// The model's `requestUri`: `{label}` matches one non-empty segment.
    pub uri: &'static str,
    pub why: Why,
    /// One line for docs/operations.md and the error message.
    pub reason: &'static str,
}

const fn never(name: &'static str, method: &'static str, uri: &'static str, reason: &'static str) -> Refused {
    Refused { name, method, uri, why: Why::Never, reason }
}

const fn not_yet(name: &'static str, method: &'static str, uri: &'static str, reason: &'static str) -> Refused {
    Refused { name, method, uri, why: Why::NotYet, reason }
}

/// Every refused operation, by service, in the models' order.
pub const REFUSED: &[Refused] = &[
    // bedrock-runtime
    not_yet(
        "InvokeModelWithBidirectionalStream",
        "POST",
        "/model/{modelId}/invoke-with-bidirectional-stream",
        "an HTTP/2 bidirectional event stream whose every input event must be re-signed",
    ),
    // bedrock-agent-runtime
    never(
        "CheckIngestedDocumentAcl",
        "POST",
        "/knowledgebases/{knowledgeBaseId}/datasources/{dataSourceId}/check-ingested-document-acl",
        "administrative: reads the access lists of ingested documents",
    ),
    never(
        "GetIngestedDocumentAcl",
        "POST",
        "/knowledgebases/{knowledgeBaseId}/datasources/{dataSourceId}/get-ingested-document-acl",
        "administrative: reads the access lists of ingested documents",
    ),
    never(
        "ListTagsForResource",
        "GET",
        "/tags/{resourceArn}",
        "tags carry the TenantID that IAM ABAC decides on; a tenant reads no resource's tags",
    ),
    never(
        "TagResource",
        "POST",
        "/tags/{resourceArn}",
        "a tenant that re-tags a resource could move it into its own IAM ABAC scope",
    ),
    never(
        "UntagResource",
        "DELETE",
        "/tags/{resourceArn}",
        "a tenant that removes a TenantID tag could move a resource out of another tenant's IAM ABAC scope",
    ),
];

/// Whether `raw_path` (its `/`-separated raw segments after the first `/`)
/// matches the model URI `uri`: literal segments equal, `{label}` any
/// non-empty segment.
fn matches(uri: &str, raw: &[&str]) -> bool {
    let want: Vec<&str> = uri[1..].split('/').collect();
    want.len() == raw.len()
        && want.iter().zip(raw).all(|(w, r)| if w.starts_with('{') { !r.is_empty() } else { w == r })
}

/// The refused operation a request is, when it is one.
pub fn find(method: &Method, raw: &[&str]) -> Option<&'static Refused> {
    REFUSED.iter().find(|r| r.method == method.as_str() && matches(r.uri, raw))
}
