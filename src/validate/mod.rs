//! Request validation against the AWS service models: nothing the sidecar
//! does not understand reaches AWS.
//!
//! botocore's JSON models of bedrock-runtime, bedrock-agent-runtime and
//! sagemaker-runtime (models/aws, from the botocore release named in
//! [`BOTOCORE_VERSION`]; `scripts/update-models.sh` regenerates them) are
//! embedded in the binary and turned, once per process, into a shape table
//! ([`model`]). A request of a routed [`Operation`] is checked against its
//! model operation's input shape; any refusal is a [`ProxyError`] (400
//! `ValidationException`), so nothing goes upstream.
//!
//! # Use in the pipeline (after routing and reading the body)
//!
//! ```text
//! validate::query(route.op, uri.query())?;
//! let headers = validate::request_headers(route.op, req.headers(), &cfg.identity.header)?;
//! let json = validate::validate_body(route.op, &body, limits)?; // Some(value) or None (opaque payload)
//! ```
//!
//! `headers` is what may be forwarded of the client's headers: the rewrites
//! then set their own (which must not be removable by anything the client
//! sent, `Connection` included: it has already been applied here). `json`
//! is the parsed body for the rewrites, so the body is parsed once.
//! [`check_models`] reports at start-up whether the embedded models load
//! (they are tested; if they did not, every request would be refused).
//!
//! # Body (restJson1)
//!
//! * Payload operations (InvokeModel(WithResponseStream) `body`, the three
//!   SageMaker `Body`s: a blob payload member) are opaque: never parsed.
//! * Otherwise the body is parsed strictly ([`parse_json`]: duplicate keys,
//!   more than [`JsonLimits::max_nodes`] values or deeper than
//!   [`JsonLimits::max_depth`] are refused while parsing, before the tree is
//!   built; trailing bytes, invalid UTF-8 and lone surrogates are syntax
//!   errors, 400 `invalid_json`). An empty body is `{}`; a top level that is
//!   not an object is `invalid_json`.
//! * Every key must be a member of its structure in exact case; a member
//!   bound to the path, a header or the query string must not be in the
//!   body. Types: structure and map = object (map values checked against the
//!   value shape), list = array, string = string (enum values are NOT
//!   checked: AWS adds values often, AWS itself refuses unknown ones, and
//!   none of them widens what a tenant can reach), blob = canonical base64
//!   string, boolean, byte/short/integer/long = integral number in range,
//!   float/double = number, timestamp = number or string. `null` is refused
//!   for every member. A union has exactly one member set. A `document`
//!   member is any JSON (bounded by the same caps). Required members are not
//!   checked: AWS does, and a missing member cannot smuggle anything.
//!
//! * ChatCompletions (OpenAI's Create chat completion, served by
//!   bedrock-runtime) has no botocore model: its body is parsed the same
//!   strict way and checked by its own rules ([`own`]): `model` a string,
//!   `messages` an array, `stream` a boolean, `stream_options` an object,
//!   and no two top-level members, nor a member and one the sidecar judges,
//!   whose names differ only in case. Other members pass (OpenAI's API and
//!   the models' extensions add them often). No header or query parameter
//!   is bound to it: any `x-amz-*`/`x-amzn-*` header or query parameter is
//!   refused.
//!
//! # Headers ([`request_headers`])
//!
//! 1. A header name containing `_` is refused (some servers fold `_` into
//!    `-`; no SDK sends one).
//! 2. A `Content-Encoding` other than `identity` is refused: the sidecar
//!    cannot inspect a compressed body.
//! 3. Names listed in `Connection` are removed with the standard hop-by-hop
//!    set (RFC 9110 7.6.1), before anything else; a `Connection` token that
//!    names a header the sidecar manages (a header the operation's model
//!    defines, any `x-amz-*`/`x-amzn-*`, authorization, host,
//!    content-length, content-type, content-encoding, the identity header)
//!    is refused.
//! 4. Dropped silently: the identity header and what the sidecar always
//!    replaces or strips (authorization, x-amz-date, x-amz-security-token,
//!    x-amz-content-sha256, host, content-length, content-encoding
//!    `identity`, expect, forwarded, via, x-forwarded-*, accept-encoding).
//! 5. Forwarded: headers the model defines for the operation (`location:
//!    header`, and `location: headers` prefixes); each at most once.
//! 6. Forwarded: [`FORWARDED_ALLOWLIST`] (what boto3 and the other AWS SDKs
//!    send); content-type at most once.
//! 7. Refused: any other `x-amz-*` / `x-amzn-*` (e.g. `x-amz-target`,
//!    `x-amz-sagemaker-target-model`), named in the message.
//! 8. Dropped silently: anything else (e.g. `x-custom`).
//!
//! # Query ([`query`])
//!
//! Every query parameter must be one the model defines for the operation
//! (none of the routed operations defines any); anything else is refused,
//! naming it.

mod body;
mod headers;
mod json;
pub mod model;
mod own;

pub use headers::{is_hop_by_hop, is_stripped, query, request_headers, FORWARDED_ALLOWLIST};
pub use json::{parse_json, JsonLimits};
pub use model::{model_operation, OperationModel, BOTOCORE_VERSION};

use crate::error::ProxyError;
use crate::route::Operation;
use bytes::Bytes;
use serde_json::{Map, Value};

/// What was wrong; see [`ValidationError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationErrorKind {
    /// Not JSON (syntax, trailing bytes, invalid UTF-8): 400 `invalid_json`.
    Syntax,
    /// A top-level value that is not an object: 400 `invalid_json`.
    NotAnObject,
    DuplicateKey,
    TooManyNodes,
    TooDeep,
    /// A key the structure does not define (exact case).
    UnknownMember,
    /// A member bound to the path, a header or the query string.
    NotABodyMember,
    WrongType,
    Null,
    /// A union with zero or several members set.
    Union,
}

/// A body refused by [`parse_json`] or the shape check: the JSON path of the
/// offending value (keys and indices, attacker-controlled parts truncated)
/// and what is wrong. Converts into [`ProxyError`]: `Syntax` and
/// `NotAnObject` into `InvalidJson`, everything else into
/// `InvalidParameter` (400 ValidationException, `invalid_parameter`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}{}{message}", if .path.is_empty() { "" } else { ": " })]
pub struct ValidationError {
    pub kind: ValidationErrorKind,
    /// e.g. `retrievalConfiguration.vectorSearchConfiguration.Filter`;
    /// empty for the body as a whole.
    pub path: String,
    pub message: String,
}

/// A segment of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Longest part of a client-supplied name shown in a message.
const SHOWN_CHARS: usize = 64;
/// Longest JSON path shown in a message.
const SHOWN_PATH_CHARS: usize = 512;

/// A client-supplied string fit for a message: at most `SHOWN_CHARS`
/// characters, control characters replaced.
pub(crate) fn shown(s: &str) -> String {
    let mut out: String =
        s.chars().take(SHOWN_CHARS).map(|c| if c.is_control() { '\u{fffd}' } else { c }).collect();
    if s.chars().nth(SHOWN_CHARS).is_some() {
        out.push_str("...");
    }
    out
}

fn render_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        if out.len() > SHOWN_PATH_CHARS {
            out.push_str("...");
            break;
        }
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&shown(k));
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl ValidationError {
    pub(crate) fn new(kind: ValidationErrorKind, path: Vec<Seg>, message: String) -> Self {
        let mut message = message;
        if kind == ValidationErrorKind::UnknownMember {
            message.push_str(&format!(
                " (tenantgate checks requests against the AWS service models of botocore {BOTOCORE_VERSION}; \
                 if your SDK is newer and sends this member, update them with scripts/update-models.sh and rebuild)"
            ));
        }
        ValidationError { kind, path: render_path(&path), message }
    }
}

impl From<ValidationError> for ProxyError {
    fn from(e: ValidationError) -> Self {
        match e.kind {
            ValidationErrorKind::Syntax | ValidationErrorKind::NotAnObject => ProxyError::InvalidJson(e.to_string()),
            _ => ProxyError::InvalidParameter(e.to_string()),
        }
    }
}

/// Whether the embedded models load; call once at start-up to fail fast.
pub fn check_models() -> Result<(), String> {
    model::models().map(|_| ()).map_err(str::to_string)
}

/// The model of a routed operation.
pub fn operation_model(op: Operation) -> Result<&'static OperationModel, ProxyError> {
    let models = model::models().map_err(models_unavailable)?;
    models.operation(op).ok_or_else(|| {
        ProxyError::InvalidParameter(format!("{} has no operation in the embedded service models", op.name()))
    })
}

fn models_unavailable(e: &str) -> ProxyError {
    ProxyError::InvalidParameter(format!("the embedded AWS service models failed to load: {e}"))
}

/// Whether `op`'s request body is a JSON object the sidecar parses (as
/// opposed to an opaque payload). `false` if the models failed to load (the
/// request is then refused by [`validate_body`]).
pub fn has_json_body(op: Operation) -> bool {
    operation_model(op).is_ok_and(|om| matches!(om.body, model::BodyKind::Json(_) | model::BodyKind::Own))
}

/// Validates the body of a request for `op`: `Ok(None)` for an opaque
/// payload operation (the body is not parsed), `Ok(Some(object))` for a JSON
/// body that conforms to the operation's input shape (an empty body is
/// `{}`). See the module doc for the rules.
pub fn validate_body(op: Operation, body: &Bytes, limits: JsonLimits) -> Result<Option<Value>, ProxyError> {
    let om = operation_model(op)?;
    let shape = match om.body {
        model::BodyKind::Opaque => return Ok(None),
        model::BodyKind::Json(shape) => Some(shape),
        model::BodyKind::Own => None,
    };
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        parse_json(body, limits)?
    };
    match shape {
        Some(shape) => check_value(shape, &value)?,
        None => own::check(op, &value)?,
    }
    Ok(Some(value))
}

/// Checks an already parsed body (e.g. one a rewrite produced) against the
/// input shape of `op`. An opaque payload operation accepts anything.
pub fn validate_value(op: Operation, value: &Value) -> Result<(), ProxyError> {
    match operation_model(op)?.body {
        model::BodyKind::Json(shape) => Ok(check_value(shape, value)?),
        model::BodyKind::Own => Ok(own::check(op, value)?),
        model::BodyKind::Opaque => Ok(()),
    }
}

fn check_value(shape: model::ShapeId, value: &Value) -> Result<(), ValidationError> {
    if !value.is_object() {
        return Err(ValidationError::new(
            ValidationErrorKind::NotAnObject,
            Vec::new(),
            "the request body must be a JSON object".into(),
        ));
    }
    let models = model::models().map_err(|e| {
        ValidationError::new(ValidationErrorKind::WrongType, Vec::new(), format!("the embedded AWS service models failed to load: {e}"))
    })?;
    body::check(models, shape, value).map_err(body::Fail::into_error)
}

#[cfg(test)]
mod body_tests;
#[cfg(test)]
mod headers_tests;
#[cfg(test)]
mod json_tests;
#[cfg(test)]
mod model_tests;
