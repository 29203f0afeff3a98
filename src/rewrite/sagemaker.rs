//! SageMaker runtime (docs/reference.md §5.4): InvokeEndpoint,
//! InvokeEndpointWithResponseStream and InvokeEndpointAsync
//! (`POST /endpoints/{name}/invocations`, `.../invocations-response-stream`,
//! `.../async-invocations`).
//!
//! Only the endpoint name (path) and request headers are looked at; the body
//! is opaque bytes (CSV, images, protobuf...) and is never parsed or changed.
//!
//! # Endpoint
//!
//! The requested name must be a SageMaker endpoint name (`^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`,
//! at most 63 characters), else 400 `invalid_parameter`. Then, comparing
//! ASCII case-insensitively as SageMaker does:
//! - a key of `sagemaker.endpoints` is rewritten to its rendered value
//!   (`classifier` -> `acme-classifier`);
//! - a name equal to one of the rendered values passes (and is sent in the
//!   configured spelling);
//! - anything else is 403 `endpoint_not_allowed`.
//!
//! A rendered value that is not a valid endpoint name (e.g. `{tenant}` gave
//! `acme.eu`, or a claim held odd characters) matches nothing: 403, fail
//! closed. Every template the decision needs must render, else 403
//! `missing_claim`.
//!
//! # Routing headers
//!
//! The endpoint is the unit of authorisation. Headers that pick something
//! *inside* an endpoint are decided one by one (names compare
//! case-insensitively; each of the headers below may appear at most once,
//! else 400 `invalid_parameter`, so a client cannot have one copy checked
//! and another acted on):
//!
//! | header | decision |
//! |---|---|
//! | `X-Amzn-SageMaker-Target-Model` | docs/reference.md §5.4: must match a rendered `allowed_target_models` glob (or equal the rendered `target_model`), else 403 `cross_tenant`; absent and `target_model` set: the rendered value is injected (all three operations). `.`/`..`/empty path segments, `\` and `%XX` escapes are 403 `cross_tenant` whatever the globs say: `{tenant}/*` must not admit `acme/../globex/model.tar.gz`. |
//! | `X-Amzn-SageMaker-Inference-Component` | selects another model hosted on the same (shared) endpoint: 403 `cross_tenant` unless the name matches a rendered `allowed_target_models` glob (the tenant's own models on a shared endpoint, whatever the mechanism). |
//! | `X-Amzn-SageMaker-Target-Container-Hostname` | selects another container (model) of a multi-container endpoint with direct invocation: same rule as Inference-Component. |
//! | `X-Amzn-SageMaker-Target-Variant` | selects a production variant of the *same*, already authorised endpoint: passes (format-checked). Variants are not an isolation boundary: never put different tenants' models on variants of one endpoint. |
//! | `X-Amzn-SageMaker-Session-Id` | stateful sessions: the model container issues the id and SageMaker routes later requests carrying it to the instance holding that session's state, so an id is bound to (tenant, user) like a RetrieveAndGenerate session: `NEW_SESSION` passes; any other value must be an id the sidecar gave this tenant and user (`id.MAC`, see the response headers below), else 403 `cross_tenant`; the MAC suffix is removed before forwarding. InvokeEndpointAsync has no sessions: 403 `operation_not_allowed`. In the response, the id in `X-Amzn-SageMaker-New-Session-Id` (`ID; Expires=...`) and `X-Amzn-SageMaker-Closed-Session-Id` is replaced by the sealed `ID.MAC`. |
//! | `X-Amzn-SageMaker-Enable-Explanations` | Clarify explanations of the same model: passes. |
//! | `X-Amzn-SageMaker-Custom-Attributes` | opaque to SageMaker, forwarded verbatim: passes. A model must never take a tenant from it (the client writes it). |
//! | `X-Amzn-SageMaker-Prefix-Aware-Id` | a routing hint between instances of the same endpoint: passes. |
//! | `X-Amzn-SageMaker-Inference-Id` | InvokeEndpoint(WithResponseStream): a data-capture tag, passes. InvokeEndpointAsync: SageMaker names the output object after it, so on a shared endpoint a chosen id could overwrite another tenant's result: 403 `location_not_allowed` (SageMaker then generates one). |
//! | `X-Amzn-SageMaker-S3OutputPathExtension`, `X-Amzn-SageMaker-Filename` | choose where an async result is written under the endpoint's shared output path: 403 `location_not_allowed` (no configuration key authorises output locations). |
//! | `X-Amzn-SageMaker-InputLocation` | InvokeEndpointAsync: required (400 `invalid_parameter`), must be under a rendered `allowed_input_prefixes` entry (403 `location_not_allowed`; no prefixes: nothing is allowed). Exact prefix semantics on canonical URIs (`crate::filter::uri`): `s3://async-in/acme/` never admits `s3://async-in/acme-evil/x`, and `..`, `.`, `%2e%2e`, `%2F` segments are foreign. On the other operations it means nothing to SageMaker and is refused (400) rather than forwarded unchecked. |
//! | `Content-Type`, `Accept`, `X-Amzn-SageMaker-Content-Type`, `-Accept`, `-RequestTTLSeconds`, `-InvocationTimeoutSeconds` | formats and timeouts: pass. |
//! | any other `X-Amzn-SageMaker-*` | unknown to tenantgate (a future routing header could select another tenant's model): 403 `operation_not_allowed`. |
//!
//! A `Connection` header naming an `X-Amzn-SageMaker-*` header is 400: a
//! hop-by-hop copy would be dropped after it was checked (or after the target
//! model was injected).
//!
//! Example (tenant `acme`, `endpoints = { classifier = "acme-classifier" }`,
//! `target_model = "{tenant}.tar.gz"`):
//!
//! ```text
//! POST /endpoints/classifier/invocations            POST /endpoints/acme-classifier/invocations
//! Content-Type: application/octet-stream      ->    Content-Type: application/octet-stream
//! X-Amzn-SageMaker-Target-Variant: blue             X-Amzn-SageMaker-Target-Variant: blue
//!                                                   X-Amzn-SageMaker-Target-Model: acme.tar.gz
//! ```

use super::missing_claim;
use crate::config::TenantPolicy;
use crate::error::ProxyError;
use crate::filter::uri::PrefixSet;
use crate::glob::Glob;
use crate::principal::Principal;
use crate::route::Operation;
use crate::rewrite::session::SessionKeys;
use crate::template::Template;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};

/// What the SageMaker rewrite decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SageMakerRewrite {
    /// The real endpoint name to put in the upstream path.
    pub endpoint: String,
    /// Human-readable notes of what was checked and rewritten (demo, audit,
    /// logs). They hold names and locations, never tokens or keys.
    pub notes: Vec<String>,
}

pub const TARGET_MODEL: &str = "x-amzn-sagemaker-target-model";
pub const TARGET_VARIANT: &str = "x-amzn-sagemaker-target-variant";
pub const TARGET_CONTAINER_HOSTNAME: &str = "x-amzn-sagemaker-target-container-hostname";
pub const INFERENCE_COMPONENT: &str = "x-amzn-sagemaker-inference-component";
pub const SESSION_ID: &str = "x-amzn-sagemaker-session-id";
pub const INFERENCE_ID: &str = "x-amzn-sagemaker-inference-id";
pub const INPUT_LOCATION: &str = "x-amzn-sagemaker-inputlocation";
pub const S3_OUTPUT_PATH_EXTENSION: &str = "x-amzn-sagemaker-s3outputpathextension";
pub const FILENAME: &str = "x-amzn-sagemaker-filename";

/// Prefix of every SageMaker-specific request header.
const SAGEMAKER_PREFIX: &str = "x-amzn-sagemaker-";

/// `X-Amzn-SageMaker-*` request headers that pass unchanged (after the
/// single-value check).
const PASSING: &[&str] = &[
    "x-amzn-sagemaker-custom-attributes",
    "x-amzn-sagemaker-enable-explanations",
    "x-amzn-sagemaker-prefix-aware-id",
    "x-amzn-sagemaker-content-type",
    "x-amzn-sagemaker-accept",
    "x-amzn-sagemaker-requestttlseconds",
    "x-amzn-sagemaker-invocationtimeoutseconds",
];

/// Headers this module decides on (each may appear once).
const DECIDED: &[&str] = &[
    TARGET_MODEL,
    TARGET_VARIANT,
    TARGET_CONTAINER_HOSTNAME,
    INFERENCE_COMPONENT,
    SESSION_ID,
    INFERENCE_ID,
    INPUT_LOCATION,
    S3_OUTPUT_PATH_EXTENSION,
    FILENAME,
];

/// docs/reference.md §5.4 for one SageMaker request: authorises and rewrites the endpoint
/// name, decides the routing headers (see the module doc), injects the
/// tenant's target model and checks the async input location. `endpoint` is
/// the decoded name from the path (`Route::ids[0]`); `headers` are the
/// client's request headers, changed in place (only the target model is ever
/// added). The body is not involved.
///
/// On error nothing must be forwarded.
pub fn rewrite_sagemaker(
    op: Operation,
    endpoint: &str,
    headers: &mut HeaderMap,
    principal: &Principal,
    policy: &TenantPolicy,
    keys: &SessionKeys,
) -> Result<SageMakerRewrite, ProxyError> {
    if !matches!(
        op,
        Operation::InvokeEndpoint | Operation::InvokeEndpointWithResponseStream | Operation::InvokeEndpointAsync
    ) {
        return Err(ProxyError::OperationNotAllowed(op.name().to_string()));
    }
    let mut notes = Vec::new();
    let real = resolve_endpoint(endpoint, principal, policy, &mut notes)?;
    check_header_set(op, headers)?;
    open_session(headers, principal, keys, &mut notes)?;
    check_model_selectors(headers, principal, policy, &mut notes)?;
    target_model(headers, principal, policy, &mut notes)?;
    if op == Operation::InvokeEndpointAsync {
        async_locations(headers, principal, policy, &mut notes)?;
    }
    Ok(SageMakerRewrite { endpoint: real, notes })
}

/// `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`, at most 63 characters: SageMaker's rule
/// for endpoint names (and, with the same shape, variant and container
/// host names).
pub fn is_valid_endpoint_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

fn render(t: &Template, principal: &Principal) -> Result<String, ProxyError> {
    t.render(principal).map_err(missing_claim)
}

fn resolve_endpoint(
    requested: &str,
    principal: &Principal,
    policy: &TenantPolicy,
    notes: &mut Vec<String>,
) -> Result<String, ProxyError> {
    if !is_valid_endpoint_name(requested) {
        return Err(ProxyError::InvalidParameter(format!(
            "{:?} is not a SageMaker endpoint name (1 to 63 letters, digits and inner hyphens)",
            truncate(requested, 80)
        )));
    }
    let denied =
        || ProxyError::EndpointNotAllowed { endpoint: requested.to_string(), tenant: principal.tenant.clone() };
    let endpoints = &policy.sagemaker.endpoints;
    // A logical name (the configuration keeps keys unique ignoring case).
    if let Some((key, tpl)) = endpoints.iter().find(|(k, _)| k.eq_ignore_ascii_case(requested)) {
        let real = render(tpl, principal)?;
        if !is_valid_endpoint_name(&real) {
            tracing::warn!(
                tenant = %principal.tenant,
                key = %key,
                "sagemaker.endpoints value renders to an invalid endpoint name; request denied"
            );
            return Err(denied());
        }
        notes.push(format!("endpoint {requested:?} -> {real:?}"));
        return Ok(real);
    }
    // A real name, as configured for this tenant.
    let rendered = endpoints.iter().map(|(_, t)| render(t, principal)).collect::<Result<Vec<_>, _>>()?;
    match rendered.into_iter().find(|r| is_valid_endpoint_name(r) && r.eq_ignore_ascii_case(requested)) {
        Some(real) => {
            notes.push(format!("endpoint {real:?} is one of the tenant's endpoints"));
            Ok(real)
        }
        None => Err(denied()),
    }
}

/// The single value of `name`: `Ok(None)` when absent; 400 when repeated
/// or not visible ASCII.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ProxyError> {
    let mut values = headers.get_all(name).iter();
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ProxyError::InvalidParameter(format!("request header {name} must appear at most once")));
    }
    match first.to_str() {
        Ok(v) if !v.is_empty() => Ok(Some(v)),
        _ => Err(ProxyError::InvalidParameter(format!("request header {name} must be non-empty visible ASCII"))),
    }
}

/// Every `X-Amzn-SageMaker-*` header is known and present at most once;
/// stateful sessions and unknown headers are refused; `Connection` names
/// none of them.
fn check_header_set(op: Operation, headers: &HeaderMap) -> Result<(), ProxyError> {
    for v in headers.get_all(CONNECTION) {
        let listed = v.to_str().unwrap_or("");
        if listed.split(',').any(|n| n.trim().to_ascii_lowercase().starts_with(SAGEMAKER_PREFIX)) {
            return Err(ProxyError::InvalidParameter(
                "the Connection header must not name X-Amzn-SageMaker-* headers".into(),
            ));
        }
    }
    for name in headers.keys() {
        let n = name.as_str();
        if !n.starts_with(SAGEMAKER_PREFIX) {
            continue;
        }
        if PASSING.contains(&n) || DECIDED.contains(&n) {
            single(headers, n)?;
            continue;
        }
        return Err(ProxyError::OperationNotAllowed(format!(
            "{} with request header {n} (not supported by tenantgate)",
            op.name()
        )));
    }
    if op == Operation::InvokeEndpointAsync && headers.contains_key(SESSION_ID) {
        return Err(ProxyError::OperationNotAllowed(format!("{} with a stateful session ({SESSION_ID})", op.name())));
    }
    if op != Operation::InvokeEndpointAsync {
        for n in [INPUT_LOCATION, S3_OUTPUT_PATH_EXTENSION, FILENAME] {
            if headers.contains_key(n) {
                return Err(ProxyError::InvalidParameter(format!(
                    "request header {n} applies to InvokeEndpointAsync only"
                )));
            }
        }
    }
    Ok(())
}

/// The value that asks SageMaker to start a stateful session.
pub const NEW_SESSION: &str = "NEW_SESSION";
/// Response headers naming a session id (`ID; Expires=...` and `ID`).
pub const NEW_SESSION_ID: &str = "x-amzn-sagemaker-new-session-id";
pub const CLOSED_SESSION_ID: &str = "x-amzn-sagemaker-closed-session-id";

/// `X-Amzn-SageMaker-Session-Id`: `NEW_SESSION` passes; any other value must
/// be a session id sealed for this tenant and user, and is forwarded as the
/// container's own id.
fn open_session(
    headers: &mut HeaderMap,
    principal: &Principal,
    keys: &SessionKeys,
    notes: &mut Vec<String>,
) -> Result<(), ProxyError> {
    let Some(v) = single(headers, SESSION_ID)? else { return Ok(()) };
    if v == NEW_SESSION {
        notes.push("new stateful session requested".into());
        return Ok(());
    }
    let id = keys.open_sagemaker_session(&principal.tenant, &principal.user, v)?;
    let value = HeaderValue::from_str(&id)
        .map_err(|_| ProxyError::InvalidParameter(format!("{SESSION_ID} is not a valid header value")))?;
    headers.insert(SESSION_ID, value);
    notes.push("stateful session id verified for the tenant and user".into());
    Ok(())
}

/// The session ids in a SageMaker response, sealed for (tenant, user) so
/// the client can send them back (and no one else can). A value that is not
/// visible ASCII is removed: an id the client could not present anyway.
pub fn seal_response_sessions(headers: &mut HeaderMap, principal: &Principal, keys: &SessionKeys) {
    for name in [NEW_SESSION_ID, CLOSED_SESSION_ID] {
        let Some(v) = headers.get(name) else { continue };
        let sealed = v.to_str().ok().and_then(|v| {
            // `ID; Expires=...`: the id is the part before the first `;`,
            // the rest (with its `;`, if any) is kept as it is.
            let (id, rest) = v.split_at(v.find(';').unwrap_or(v.len()));
            let id = id.trim();
            if id.is_empty() {
                return None;
            }
            let sealed = keys.seal_sagemaker_session(&principal.tenant, &principal.user, id);
            HeaderValue::from_str(&format!("{sealed}{rest}")).ok()
        });
        match sealed {
            Some(v) => {
                headers.insert(name, v);
            }
            None => {
                tracing::warn!(header = name, "SageMaker session id in the response is not usable; removed");
                headers.remove(name);
            }
        }
    }
}

/// The rendered `allowed_target_models` as globs. A rendered pattern with
/// more wildcards than its template's literal text was widened by a
/// substituted value (a claim holding `*`) and matches nothing.
fn target_globs(principal: &Principal, policy: &TenantPolicy) -> Result<Vec<Glob>, ProxyError> {
    let mut out = Vec::new();
    for t in &policy.sagemaker.allowed_target_models {
        let rendered = render(t, principal)?;
        let wild = |s: &str| s.chars().filter(|c| matches!(c, '*' | '?')).count();
        if wild(&rendered) != t.literals().map(wild).sum::<usize>() {
            tracing::warn!(
                tenant = %principal.tenant,
                template = %t.source(),
                "allowed_target_models entry rendered with wildcards from a substituted value; ignored"
            );
            continue;
        }
        if let Ok(g) = Glob::new(&rendered) {
            out.push(g);
        }
    }
    Ok(out)
}

/// Inference-Component, Target-Container-Hostname (another model on the
/// same endpoint) and Target-Variant (a variant of the same endpoint).
fn check_model_selectors(
    headers: &HeaderMap,
    principal: &Principal,
    policy: &TenantPolicy,
    notes: &mut Vec<String>,
) -> Result<(), ProxyError> {
    if let Some(v) = single(headers, TARGET_VARIANT)? {
        if !is_valid_endpoint_name(v) {
            return Err(ProxyError::InvalidParameter(format!("{TARGET_VARIANT} is not a production variant name")));
        }
        notes.push(format!("target variant {v:?} kept (a variant of the authorised endpoint)"));
    }
    for (name, what) in [(INFERENCE_COMPONENT, "inference component"), (TARGET_CONTAINER_HOSTNAME, "container")] {
        let Some(v) = single(headers, name)? else { continue };
        if !is_valid_endpoint_name(v) {
            return Err(ProxyError::InvalidParameter(format!("{name} is not a valid {what} name")));
        }
        let globs = target_globs(principal, policy)?;
        match globs.iter().find(|g| g.matches(v)) {
            Some(g) => notes.push(format!("{what} {v:?} allowed by {:?}", g.as_str())),
            None => {
                return Err(ProxyError::CrossTenant(format!(
                    "{what} {v:?} is not one of the models of tenant {:?}",
                    principal.tenant
                )))
            }
        }
    }
    Ok(())
}

/// SageMaker's TargetModel shape: 1 to 1024 characters, no leading space,
/// printable.
fn is_valid_target_model(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 1024
        && !v.starts_with([' ', '\t'])
        && v.chars().all(|c| c == ' ' || c.is_ascii_graphic())
}

/// True when a target model (a path relative to the multi-model endpoint's
/// S3 prefix) could step out of where its glob put it: a `.`, `..` or empty
/// segment, a backslash, or a percent-escape.
fn escapes_its_place(v: &str) -> bool {
    let b = v.as_bytes();
    v.contains('\\')
        || b.windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
        || crate::route::has_dot_or_empty_segment(v)
}

fn target_model(
    headers: &mut HeaderMap,
    principal: &Principal,
    policy: &TenantPolicy,
    notes: &mut Vec<String>,
) -> Result<(), ProxyError> {
    let foreign = |v: &str| {
        ProxyError::CrossTenant(format!(
            "target model {:?} is not a model of tenant {:?}",
            truncate(v, 200),
            principal.tenant
        ))
    };
    if let Some(v) = single(headers, TARGET_MODEL)? {
        if !is_valid_target_model(v) {
            return Err(ProxyError::InvalidParameter(format!("{TARGET_MODEL} is not a valid target model")));
        }
        if escapes_its_place(v) {
            return Err(foreign(v));
        }
        if let Some(g) = target_globs(principal, policy)?.iter().find(|g| g.matches(v)) {
            notes.push(format!("client target model {v:?} allowed by {:?}", g.as_str()));
            return Ok(());
        }
        // The value tenantgate would inject is the tenant's by definition.
        if let Some(t) = &policy.sagemaker.target_model {
            if render(t, principal)? == v {
                notes.push(format!("client target model {v:?} is the tenant's target_model"));
                return Ok(());
            }
        }
        return Err(foreign(v));
    }
    let Some(t) = &policy.sagemaker.target_model else { return Ok(()) };
    let v = render(t, principal)?;
    let value = HeaderValue::from_str(&v).ok().filter(|_| is_valid_target_model(&v) && !escapes_its_place(&v));
    let Some(value) = value else {
        tracing::warn!(
            tenant = %principal.tenant,
            template = %t.source(),
            "sagemaker.target_model renders to an unusable target model; request denied"
        );
        return Err(ProxyError::CrossTenant(format!(
            "the target model configured for tenant {:?} is not usable",
            principal.tenant
        )));
    };
    headers.insert(HeaderName::from_static(TARGET_MODEL), value);
    notes.push(format!("target model {v:?} injected"));
    Ok(())
}

/// InvokeEndpointAsync: the input location is required and under an
/// allowed prefix; the output location cannot be steered.
fn async_locations(
    headers: &HeaderMap,
    principal: &Principal,
    policy: &TenantPolicy,
    notes: &mut Vec<String>,
) -> Result<(), ProxyError> {
    for (name, what) in [
        (S3_OUTPUT_PATH_EXTENSION, "the output path"),
        (FILENAME, "the output object name"),
        (INFERENCE_ID, "the output object name"),
    ] {
        if headers.contains_key(name) {
            return Err(ProxyError::LocationNotAllowed(format!(
                "{name} chooses {what} of an asynchronous inference on a shared output location; \
                 tenantgate does not allow it (omit it and SageMaker chooses)"
            )));
        }
    }
    let Some(loc) = single(headers, INPUT_LOCATION)? else {
        return Err(ProxyError::InvalidParameter(format!("{INPUT_LOCATION} is required for InvokeEndpointAsync")));
    };
    if loc.len() > 1024 {
        return Err(ProxyError::InvalidParameter(format!("{INPUT_LOCATION} is longer than 1024 characters")));
    }
    let prefixes =
        policy.sagemaker.allowed_input_prefixes.iter().map(|t| render(t, principal)).collect::<Result<Vec<_>, _>>()?;
    if !PrefixSet::new(&prefixes).allows_uri(loc) {
        return Err(ProxyError::LocationNotAllowed(format!(
            "input location {:?} is not under an allowed prefix of tenant {:?}",
            truncate(loc, 200),
            principal.tenant
        )));
    }
    notes.push(format!("input location {loc:?} is under an allowed prefix"));
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
#[path = "sagemaker_tests.rs"]
mod tests;
