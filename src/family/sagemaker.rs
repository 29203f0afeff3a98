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

use super::{missing_claim, Ctx, Hooks, Notes, PolicyQuestion, RequestBody, ResponseShape};
use crate::decide::cedar::PolicyResource;
use crate::decide::{self, EndpointDecision, HostedModel, Resource};
pub use crate::decide::is_valid_endpoint_name;
use crate::decide::{escapes_its_place, truncate};
use crate::error::ProxyError;
use crate::filter::eventstream::StreamShape;
use crate::post::Post;
use crate::principal::Principal;
use crate::route::{Operation, Target};
use crate::session::SessionKeys;
use crate::template::Template;
use crate::usage::UsageSource;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION};

/// The SageMaker runtime family.
pub struct SageMaker;

impl Hooks for SageMaker {
    /// Routing lives in the path and headers only (bodies are opaque): it is
    /// decided before the body is read or credentials are fetched.
    fn before_body(ctx: &Ctx<'_>, target: &mut Target, headers: &mut HeaderMap, notes: &mut Notes) -> Result<(), ProxyError> {
        let Target::Endpoint(endpoint) = target else {
            return Err(super::foreign_target(ctx));
        };
        let rw = rewrite_sagemaker(ctx, endpoint, headers)?;
        if rw.endpoint != *endpoint {
            notes.upstream_resource = Some(rw.endpoint.clone());
        }
        *endpoint = rw.endpoint;
        Ok(())
    }

    /// The endpoint as requested (decided by the allowlist first) and the
    /// target model the client sends, if one.
    fn policy_question<'a>(
        ctx: &Ctx<'_>,
        target: &'a Target,
        headers: &'a HeaderMap,
        _body: &'a RequestBody,
    ) -> Result<PolicyQuestion<'a>, ProxyError> {
        let Target::Endpoint(name) = target else {
            return Err(super::foreign_target(ctx));
        };
        resolve_endpoint(ctx, name, &mut Vec::new())?;
        let target_model = single(headers, TARGET_MODEL)?;
        Ok(PolicyQuestion::of(PolicyResource::Endpoint { name, target_model }))
    }


    fn response_headers(ctx: &Ctx<'_>, _post: &Post, headers: &mut HeaderMap) {
        seal_response_sessions(headers, ctx.principal, ctx.keys);
    }

    fn response_shape(op: Operation) -> ResponseShape {
        let stream = if op == Operation::InvokeEndpointWithResponseStream { StreamShape::SageMaker } else { StreamShape::Other };
        ResponseShape { usage: UsageSource::Headers, stream }
    }
}

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
/// the decoded name from the path; `headers` are the client's request
/// headers, changed in place (only the target model is ever added). The body
/// is not involved. Every allow/deny is asked of `crate::decide`.
///
/// On error nothing must be forwarded.
pub fn rewrite_sagemaker(ctx: &Ctx<'_>, endpoint: &str, headers: &mut HeaderMap) -> Result<SageMakerRewrite, ProxyError> {
    let op = ctx.op;
    if !matches!(
        op,
        Operation::InvokeEndpoint | Operation::InvokeEndpointWithResponseStream | Operation::InvokeEndpointAsync
    ) {
        return Err(ProxyError::OperationNotAllowed(op.name().to_string()));
    }
    let mut notes = Vec::new();
    let real = resolve_endpoint(ctx, endpoint, &mut notes)?;
    check_header_set(op, headers)?;
    open_session(headers, ctx.principal, ctx.keys, &mut notes)?;
    check_model_selectors(ctx, headers, &mut notes)?;
    target_model(ctx, headers, &mut notes)?;
    if op == Operation::InvokeEndpointAsync {
        async_locations(ctx, headers, &mut notes)?;
    }
    Ok(SageMakerRewrite { endpoint: real, notes })
}

fn render(t: &Template, principal: &Principal) -> Result<String, ProxyError> {
    t.render(principal).map_err(missing_claim)
}

fn resolve_endpoint(ctx: &Ctx<'_>, requested: &str, notes: &mut Vec<String>) -> Result<String, ProxyError> {
    if !is_valid_endpoint_name(requested) {
        return Err(ProxyError::InvalidParameter(format!(
            "{:?} is not a SageMaker endpoint name (1 to 63 letters, digits and inner hyphens)",
            truncate(requested, 80)
        )));
    }
    match decide::endpoint(&ctx.request(), requested)? {
        EndpointDecision::Mapped { real, .. } => {
            notes.push(format!("endpoint {requested:?} -> {real:?}"));
            Ok(real)
        }
        EndpointDecision::Own(real) => {
            notes.push(format!("endpoint {real:?} is one of the tenant's endpoints"));
            Ok(real)
        }
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

/// Inference-Component, Target-Container-Hostname (another model on the
/// same endpoint) and Target-Variant (a variant of the same endpoint).
fn check_model_selectors(ctx: &Ctx<'_>, headers: &HeaderMap, notes: &mut Vec<String>) -> Result<(), ProxyError> {
    if let Some(v) = single(headers, TARGET_VARIANT)? {
        if !is_valid_endpoint_name(v) {
            return Err(ProxyError::InvalidParameter(format!("{TARGET_VARIANT} is not a production variant name")));
        }
        notes.push(format!("target variant {v:?} kept (a variant of the authorised endpoint)"));
    }
    for (name, kind, what) in [
        (INFERENCE_COMPONENT, HostedModel::InferenceComponent, "inference component"),
        (TARGET_CONTAINER_HOSTNAME, HostedModel::Container, "container"),
    ] {
        let Some(v) = single(headers, name)? else { continue };
        if !is_valid_endpoint_name(v) {
            return Err(ProxyError::InvalidParameter(format!("{name} is not a valid {what} name")));
        }
        let grant = ctx.decide(Resource::HostedModel { kind, name: v })?;
        notes.push(format!("{what} {v:?} allowed by {:?}", grant.0));
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

fn target_model(ctx: &Ctx<'_>, headers: &mut HeaderMap, notes: &mut Vec<String>) -> Result<(), ProxyError> {
    let (principal, policy) = (ctx.principal, ctx.policy);
    if let Some(v) = single(headers, TARGET_MODEL)? {
        if !is_valid_target_model(v) {
            return Err(ProxyError::InvalidParameter(format!("{TARGET_MODEL} is not a valid target model")));
        }
        let grant = ctx.decide(Resource::TargetModel(v))?;
        if grant.0 == decide::TARGET_MODEL_KEY {
            notes.push(format!("client target model {v:?} is the tenant's target_model"));
        } else {
            notes.push(format!("client target model {v:?} allowed by {:?}", grant.0));
        }
        return Ok(());
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
fn async_locations(ctx: &Ctx<'_>, headers: &HeaderMap, notes: &mut Vec<String>) -> Result<(), ProxyError> {
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
    ctx.decide(Resource::InputLocation(loc))?;
    notes.push(format!("input location {loc:?} is under an allowed prefix"));
    Ok(())
}

#[cfg(test)]
#[path = "sagemaker_tests.rs"]
mod tests;
