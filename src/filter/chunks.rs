//! Chunk authorization (docs/reference.md §5.2 post-filter): knowledge-base results and
//! citations whose source location is not under the tenant's rendered
//! `allowed_source_prefixes` are foreign. URI rules are in `super::uri`.
//!
//! Location kinds (`RetrievalResultLocation.type` and the field read):
//!
//! | type | field | rule |
//! |---|---|---|
//! | `S3` | `s3Location.uri` | URI prefix |
//! | `WEB` | `webLocation.url` | URI prefix |
//! | `CONFLUENCE` | `confluenceLocation.url` | URI prefix |
//! | `SALESFORCE` | `salesforceLocation.url` | URI prefix |
//! | `SHAREPOINT` | `sharePointLocation.url` | URI prefix |
//! | `ONEDRIVE` | `oneDriveLocation.url` | URI prefix |
//! | `GOOGLEDRIVE` | `googleDriveLocation.url` | URI prefix |
//! | `KENDRA` | `kendraDocumentLocation.uri` | URI prefix |
//! | `CUSTOM` | `customDocumentLocation.id` | foreign unless the id is literally under a prefix |
//! | `SQL` | `sqlLocation.query` | always foreign: a query is not a location a prefix can authorize |
//! | anything else | | foreign |
//!
//! The declared type's field must be present and allowed, and every other
//! location field present must be a known one and allowed too (a location
//! carrying an unknown `...Location` member is foreign).
//!
//! Example, prefixes `["s3://docs/tenants/acme/", "s3://docs/public/"]`, a
//! Retrieve response before and after (`x-tenantgate-dropped-results: 1`):
//!
//! ```text
//! {"retrievalResults": [
//!   {"content": {"text": "acme pricing"}, "location": {"type": "S3", "s3Location": {"uri": "s3://docs/tenants/acme/pricing.pdf"}}, "score": 0.91},
//!   {"content": {"text": "globex roadmap"}, "location": {"type": "S3", "s3Location": {"uri": "s3://docs/tenants/globex/roadmap.pdf"}}, "score": 0.88},
//!   {"content": {"text": "faq"}, "location": {"type": "S3", "s3Location": {"uri": "s3://docs/public/faq.md"}}, "score": 0.52}]}
//! ->
//! {"retrievalResults": [
//!   {"content": {"text": "acme pricing"}, "location": {"type": "S3", "s3Location": {"uri": "s3://docs/tenants/acme/pricing.pdf"}}, "score": 0.91},
//!   {"content": {"text": "faq"}, "location": {"type": "S3", "s3Location": {"uri": "s3://docs/public/faq.md"}}, "score": 0.52}]}
//! ```

use super::uri::PrefixSet;
use crate::error::ProxyError;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Uri,
    Id,
    Never,
}

/// (type, location field, member holding the address, rule).
const KINDS: &[(&str, &str, &str, Rule)] = &[
    ("S3", "s3Location", "uri", Rule::Uri),
    ("WEB", "webLocation", "url", Rule::Uri),
    ("CONFLUENCE", "confluenceLocation", "url", Rule::Uri),
    ("SALESFORCE", "salesforceLocation", "url", Rule::Uri),
    ("SHAREPOINT", "sharePointLocation", "url", Rule::Uri),
    ("ONEDRIVE", "oneDriveLocation", "url", Rule::Uri),
    ("GOOGLEDRIVE", "googleDriveLocation", "url", Rule::Uri),
    ("KENDRA", "kendraDocumentLocation", "uri", Rule::Uri),
    ("CUSTOM", "customDocumentLocation", "id", Rule::Id),
    ("SQL", "sqlLocation", "query", Rule::Never),
];

/// Decides whether source locations belong to the tenant. Build it once per
/// response from the rendered prefixes.
#[derive(Debug, Clone)]
pub struct SourceFilter {
    prefixes: PrefixSet,
}

impl SourceFilter {
    pub fn new<S: AsRef<str>>(prefixes: &[S]) -> SourceFilter {
        SourceFilter { prefixes: PrefixSet::new(prefixes) }
    }

    /// True when no prefix is configured: there is no post-filter and
    /// everything passes.
    pub fn is_disabled(&self) -> bool {
        self.prefixes.is_unconfigured()
    }

    /// True when the URI is under an allowed prefix.
    pub fn allows_uri(&self, uri: &str) -> bool {
        self.prefixes.allows_uri(uri)
    }

    /// True when a `RetrievalResultLocation` object is allowed (see the
    /// module table). Not short-circuited by `is_disabled`.
    pub fn allows_location(&self, location: &Value) -> bool {
        let Some(loc) = location.as_object() else { return false };
        let Some(Value::String(ty)) = loc.get("type") else { return false };
        let Some(&(_, declared, _, _)) = KINDS.iter().find(|k| k.0 == ty) else { return false };
        if loc.get(declared).is_none_or(Value::is_null) {
            return false;
        }
        loc.iter().filter(|(k, v)| k.as_str() != "type" && !v.is_null()).all(|(k, v)| {
            match KINDS.iter().find(|kind| kind.1 == k) {
                Some(&(_, _, member, rule)) => self.allows_member(v, member, rule),
                None => false,
            }
        })
    }

    fn allows_member(&self, v: &Value, member: &str, rule: Rule) -> bool {
        let Some(Value::String(addr)) = v.get(member) else { return false };
        match rule {
            Rule::Uri => self.prefixes.allows_uri(addr),
            Rule::Id => self.prefixes.allows_id(addr),
            Rule::Never => false,
        }
    }

    /// True when every entry of a `retrievedReferences` value (absent or
    /// `null`: none) has an allowed `location`. Anything malformed is
    /// unclean.
    pub fn references_are_clean(&self, refs: Option<&Value>) -> bool {
        match refs {
            None | Some(Value::Null) => true,
            Some(Value::Array(items)) => {
                items.iter().all(|r| r.get("location").is_some_and(|l| self.allows_location(l)))
            }
            Some(_) => false,
        }
    }

    /// True when every `retrievedReferences` list anywhere inside `v` is
    /// clean (InvokeAgent events carry them in `chunk` citations and in
    /// `trace` knowledge-base lookups). Nesting deeper than any AWS shape
    /// is unclean.
    pub fn nested_references_are_clean(&self, v: &Value) -> bool {
        const MAX_DEPTH: usize = 64;
        fn walk(f: &SourceFilter, v: &Value, depth: usize) -> bool {
            match v {
                _ if depth > MAX_DEPTH => false,
                Value::Object(o) => o.iter().all(|(k, v)| {
                    (k != "retrievedReferences" || f.references_are_clean(Some(v))) && walk(f, v, depth + 1)
                }),
                Value::Array(a) => a.iter().all(|v| walk(f, v, depth + 1)),
                _ => true,
            }
        }
        walk(self, v, 0)
    }

    /// True when every citation of a `citations` value (absent or `null`:
    /// none) cites only allowed locations. Also fits InvokeAgent chunk
    /// `attribution.citations`.
    pub fn citations_are_clean(&self, citations: Option<&Value>) -> bool {
        match citations {
            None | Some(Value::Null) => true,
            Some(Value::Array(items)) => items
                .iter()
                .all(|c| c.as_object().is_some_and(|c| self.references_are_clean(c.get("retrievedReferences")))),
            Some(_) => false,
        }
    }
}

/// True when `location` (a `RetrievalResultLocation`) is under one of
/// `prefixes`. With no prefixes nothing is under one: callers that mean "no
/// post-filter" check for an empty list first (the functions below do).
pub fn location_allowed(location: &Value, prefixes: &[String]) -> bool {
    SourceFilter::new(prefixes).allows_location(location)
}

/// True when `uri` is under one of `prefixes` (see `super::uri`).
pub fn uri_allowed(uri: &str, prefixes: &[String]) -> bool {
    PrefixSet::new(prefixes).allows_uri(uri)
}

fn malformed(what: &str) -> ProxyError {
    ProxyError::UpstreamError(format!("{what}; response withheld because it cannot be filtered"))
}

/// Retrieve response post-filter: drops every `retrievalResults[]` entry
/// whose `location` is foreign and returns the body to send with the number
/// dropped (for `x-tenantgate-dropped-results` and the audit). Call it for
/// 2xx responses only.
///
/// With no prefixes the body is returned unchanged with 0. When nothing is
/// dropped the original bytes are returned as they are; otherwise the body is
/// re-serialised with every other field kept. A body that is not a JSON
/// object, or whose `retrievalResults` is not an array, cannot be filtered
/// and is 502 `upstream_error` (withheld, never passed through).
pub fn filter_retrieve_response(body: &[u8], prefixes: &[String]) -> Result<(Vec<u8>, u64), ProxyError> {
    if prefixes.is_empty() {
        return Ok((body.to_vec(), 0));
    }
    let filter = SourceFilter::new(prefixes);
    let mut v: Value = serde_json::from_slice(body).map_err(|_| malformed("Retrieve response is not JSON"))?;
    let obj = v.as_object_mut().ok_or_else(|| malformed("Retrieve response is not a JSON object"))?;
    let dropped = match obj.get_mut("retrievalResults") {
        None | Some(Value::Null) => 0,
        Some(Value::Array(items)) => {
            let before = items.len();
            items.retain(|r| r.get("location").is_some_and(|l| filter.allows_location(l)));
            before - items.len()
        }
        Some(_) => return Err(malformed("Retrieve response retrievalResults is not an array")),
    };
    if dropped == 0 {
        return Ok((body.to_vec(), 0));
    }
    let out = serde_json::to_vec(&v).map_err(|e| malformed(&format!("re-serialising the Retrieve response: {e}")))?;
    Ok((out, dropped as u64))
}

/// RetrieveAndGenerate (non-stream) response check: true when every
/// `citations[].retrievedReferences[].location` is allowed (or there are no
/// prefixes). False means the answer may contain another tenant's data: the
/// caller withholds it with 502 `unauthorized_source_in_answer`. A body that
/// is not an object, or malformed citations, are unclean.
pub fn rag_answer_is_clean(body: &Value, prefixes: &[String]) -> bool {
    if prefixes.is_empty() {
        return true;
    }
    let Some(obj) = body.as_object() else { return false };
    SourceFilter::new(prefixes).citations_are_clean(obj.get("citations"))
}

/// RetrieveAndGenerateStream `citation` event payload check (the JSON of an
/// event with `:event-type` `citation`): its `retrievedReferences` and its
/// (deprecated) `citation.retrievedReferences` must all be allowed. Other
/// event types (`output`, `guardrail`) carry no locations and need no check.
///
/// ```text
/// {"citation": {"generatedResponsePart": {...}, "retrievedReferences": [{"content": {...}, "location": {...}}]},
///  "generatedResponsePart": {"textResponsePart": {"text": "...", "span": {"start": 0, "end": 42}}},
///  "retrievedReferences": [{"content": {"text": "..."}, "location": {"type": "S3", "s3Location": {"uri": "s3://..."}}}]}
/// ```
pub fn citation_event_is_clean(payload: &Value, prefixes: &[String]) -> bool {
    if prefixes.is_empty() {
        return true;
    }
    let Some(obj) = payload.as_object() else { return false };
    let filter = SourceFilter::new(prefixes);
    let nested = match obj.get("citation") {
        None | Some(Value::Null) => true,
        Some(Value::Object(c)) => filter.references_are_clean(c.get("retrievedReferences")),
        Some(_) => false,
    };
    nested && filter.references_are_clean(obj.get("retrievedReferences"))
}

/// `citation_event_is_clean` over the raw event payload bytes; a payload
/// that is not JSON is unclean (with prefixes configured).
pub fn citation_event_payload_is_clean(payload: &[u8], prefixes: &[String]) -> bool {
    if prefixes.is_empty() {
        return true;
    }
    match serde_json::from_slice::<Value>(payload) {
        Ok(v) => citation_event_is_clean(&v, prefixes),
        Err(_) => false,
    }
}

#[cfg(test)]
#[path = "chunks_tests.rs"]
mod tests;
