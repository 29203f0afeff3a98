//! The shape table: botocore's JSON service models (models/aws, embedded at
//! compile time) turned, once per process, into a compact array of shapes
//! that the body validator walks without allocating.
//!
//! Every operation of the three services gets an [`OperationModel`], not
//! only the ones tenantgate routes: routing a new operation only needs its
//! arm in [`model_operation`].

use crate::route::{Operation, Service};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

/// The botocore release the embedded models come from (models/aws/NOTICE).
pub const BOTOCORE_VERSION: &str = "1.44.5";

const BEDROCK_RUNTIME: &str = include_str!("../../models/aws/bedrock-runtime/service-2.json");
const BEDROCK_AGENT_RUNTIME: &str = include_str!("../../models/aws/bedrock-agent-runtime/service-2.json");
const SAGEMAKER_RUNTIME: &str = include_str!("../../models/aws/sagemaker-runtime/service-2.json");

/// The model operation behind a routed operation: the route table's names
/// are the AWS model's operation names.
pub fn model_operation(op: Operation) -> &'static str {
    op.name()
}

pub(crate) type ShapeId = u32;

/// What a JSON value must be. Checked by `body::check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Structure { members: Box<[Member]>, union: bool },
    List(ShapeId),
    Map(ShapeId),
    Document,
    String,
    Blob,
    Boolean,
    /// Integral number within `[min, max]` (byte, short, integer, long).
    Integral { min: i64, max: i64 },
    /// Any number (float, double, bigInteger, bigDecimal).
    Number,
    Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    pub name: Box<str>,
    pub kind: Kind,
}

/// Where a member of an input structure travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Location {
    Body,
    Uri,
    Header,
    /// A `headers` map: every header starting with the prefix.
    HeaderPrefix,
    Query,
}

impl Location {
    pub fn describe(self) -> &'static str {
        match self {
            Location::Body => "the body",
            Location::Uri => "the request path",
            Location::Header | Location::HeaderPrefix => "a header",
            Location::Query => "the query string",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The JSON key (member name), exact case; members are sorted by it.
    pub name: Box<str>,
    pub shape: ShapeId,
    pub location: Location,
}

/// What the request body of an operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// A blob or string payload member: opaque bytes, never parsed.
    Opaque,
    /// A JSON object validated against this structure.
    Json(ShapeId),
    /// A JSON object checked by the operation's own rules (`validate::own`):
    /// an operation the botocore models do not define (ChatCompletions).
    Own,
}

/// The input side of one model operation: its body and the names the model
/// lets a request carry in headers, query string and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationModel {
    pub(crate) service: &'static str,
    pub(crate) name: Box<str>,
    pub(crate) body: BodyKind,
    headers: Box<[Box<str>]>,
    header_prefixes: Box<[Box<str>]>,
    query: Box<[Box<str>]>,
    labels: Box<[Box<str>]>,
}

impl OperationModel {
    /// The model's operation name, e.g. `Retrieve`.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The botocore service name, e.g. `bedrock-agent-runtime`.
    pub fn service(&self) -> &'static str {
        self.service
    }
    /// True when the body is an opaque payload (InvokeModel `body`,
    /// SageMaker `Body`): it is never parsed.
    pub fn opaque_body(&self) -> bool {
        self.body == BodyKind::Opaque
    }
    /// Header names bound by `location: header`, lowercase, sorted.
    pub fn header_names(&self) -> &[Box<str>] {
        &self.headers
    }
    /// Prefixes of `location: headers` maps, lowercase.
    pub fn header_prefixes(&self) -> &[Box<str>] {
        &self.header_prefixes
    }
    /// Query parameter names (`location: querystring`), exact case, sorted.
    pub fn query_names(&self) -> &[Box<str>] {
        &self.query
    }
    /// Path label names (`location: uri`), sorted.
    pub fn path_labels(&self) -> &[Box<str>] {
        &self.labels
    }
    /// Whether the model binds this (lowercase) header name to the input.
    pub fn defines_header(&self, lower: &str) -> bool {
        self.headers.binary_search_by(|h| h.as_ref().cmp(lower)).is_ok()
            || self.header_prefixes.iter().any(|p| lower.starts_with(p.as_ref()))
    }
    /// Whether the model defines this query parameter (exact case).
    pub fn defines_query(&self, name: &str) -> bool {
        self.query.binary_search_by(|q| q.as_ref().cmp(name)).is_ok()
    }
}

/// All shapes of the three services (ids are global) and their operations.
#[derive(Debug)]
pub(crate) struct Models {
    pub shapes: Vec<Shape>,
    /// service -> model operation name -> its input side.
    operations: HashMap<&'static str, HashMap<Box<str>, OperationModel>>,
}

impl Models {
    pub fn shape(&self, id: ShapeId) -> &Shape {
        &self.shapes[id as usize]
    }

    pub fn operation(&self, op: Operation) -> Option<&OperationModel> {
        if !op.has_aws_model() {
            return Some(&OWN_CHAT_COMPLETIONS);
        }
        self.operation_by_name(service_name(op.service()), model_operation(op))
    }

    pub fn operation_by_name(&self, service: &str, name: &str) -> Option<&OperationModel> {
        self.operations.get(service)?.get(name)
    }

    /// Every model operation, for tests.
    #[cfg(test)]
    pub fn all_operations(&self) -> impl Iterator<Item = &OperationModel> {
        self.operations.values().flat_map(|m| m.values())
    }
}

pub(crate) fn service_name(s: Service) -> &'static str {
    match s {
        Service::BedrockRuntime => "bedrock-runtime",
        Service::BedrockAgentRuntime => "bedrock-agent-runtime",
        Service::SageMakerRuntime => "sagemaker-runtime",
    }
}

const SERVICES: [(&str, &str); 3] = [
    ("bedrock-runtime", BEDROCK_RUNTIME),
    ("bedrock-agent-runtime", BEDROCK_AGENT_RUNTIME),
    ("sagemaker-runtime", SAGEMAKER_RUNTIME),
];

static MODELS: LazyLock<Result<Models, String>> = LazyLock::new(|| build(&SERVICES));

/// ChatCompletions (OpenAI's Create chat completion on bedrock-runtime) has
/// no botocore model: no header, query parameter or path label is bound to
/// its input, and its body is checked by `validate::own`.
static OWN_CHAT_COMPLETIONS: LazyLock<OperationModel> = LazyLock::new(|| OperationModel {
    service: service_name(Operation::ChatCompletions.service()),
    name: Operation::ChatCompletions.name().into(),
    body: BodyKind::Own,
    headers: Box::new([]),
    header_prefixes: Box::new([]),
    query: Box::new([]),
    labels: Box::new([]),
});

/// The table, built on first use. An error means an embedded model could
/// not be read: every request is then refused (fail closed); `check_models`
/// lets start-up report it instead.
pub(crate) fn models() -> Result<&'static Models, &'static str> {
    MODELS.as_ref().map_err(|e| e.as_str())
}

// ---- building ----------------------------------------------------------

#[derive(Deserialize)]
struct RawModel {
    metadata: RawMetadata,
    operations: BTreeMap<String, RawOperation>,
    shapes: BTreeMap<String, RawShape>,
}

#[derive(Deserialize)]
struct RawMetadata {
    protocol: String,
}

#[derive(Deserialize)]
struct RawOperation {
    input: Option<RawRef>,
}

#[derive(Deserialize)]
struct RawRef {
    shape: String,
}

#[derive(Deserialize)]
struct RawShape {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    members: BTreeMap<String, RawMember>,
    member: Option<RawRef>,
    value: Option<RawRef>,
    #[serde(default)]
    union: bool,
    #[serde(default)]
    document: bool,
    payload: Option<String>,
}

#[derive(Deserialize)]
struct RawMember {
    shape: String,
    location: Option<String>,
    #[serde(rename = "locationName")]
    location_name: Option<String>,
}

pub(crate) fn build(services: &[(&'static str, &str)]) -> Result<Models, String> {
    let mut shapes = Vec::new();
    let mut operations = HashMap::new();
    for &(service, text) in services {
        let raw: RawModel = serde_json::from_str(text).map_err(|e| format!("{service} model: {e}"))?;
        if raw.metadata.protocol != "rest-json" {
            return Err(format!("{service} model: protocol {:?}, only rest-json is known", raw.metadata.protocol));
        }
        let base = shapes.len();
        let ids: HashMap<&str, ShapeId> =
            raw.shapes.keys().enumerate().map(|(i, n)| (n.as_str(), (base + i) as ShapeId)).collect();
        let id = |r: &str| ids.get(r).copied().ok_or_else(|| format!("{service} model: unknown shape {r}"));
        let need = |r: &Option<RawRef>, what: &str, owner: &str| -> Result<ShapeId, String> {
            let r = r.as_ref().ok_or_else(|| format!("{service} model: {owner} has no {what}"))?;
            id(&r.shape)
        };
        for (name, s) in &raw.shapes {
            let kind = match s.ty.as_str() {
                "structure" if s.document => Kind::Document,
                "structure" => {
                    let mut members = Vec::with_capacity(s.members.len());
                    for (mname, m) in &s.members {
                        let location = match m.location.as_deref() {
                            None => Location::Body,
                            Some("uri") => Location::Uri,
                            Some("header") => Location::Header,
                            Some("headers") => Location::HeaderPrefix,
                            Some("querystring") => Location::Query,
                            Some(other) => return Err(format!("{service} model: {name}.{mname}: location {other}")),
                        };
                        members.push(Member { name: mname.as_str().into(), shape: id(&m.shape)?, location });
                    }
                    members.sort_by(|a, b| a.name.cmp(&b.name));
                    Kind::Structure { members: members.into(), union: s.union }
                }
                "list" => Kind::List(need(&s.member, "member", name)?),
                "map" => Kind::Map(need(&s.value, "value", name)?),
                "string" => Kind::String,
                "blob" => Kind::Blob,
                "boolean" => Kind::Boolean,
                "byte" => Kind::Integral { min: i8::MIN.into(), max: i8::MAX.into() },
                "short" => Kind::Integral { min: i16::MIN.into(), max: i16::MAX.into() },
                "integer" => Kind::Integral { min: i32::MIN.into(), max: i32::MAX.into() },
                "long" => Kind::Integral { min: i64::MIN, max: i64::MAX },
                "float" | "double" | "bigInteger" | "bigDecimal" => Kind::Number,
                "timestamp" => Kind::Timestamp,
                other => return Err(format!("{service} model: {name}: type {other}")),
            };
            shapes.push(Shape { name: name.as_str().into(), kind });
        }
        for (oname, o) in &raw.operations {
            let model = match &o.input {
                None => OperationModel {
                    service,
                    name: oname.as_str().into(),
                    body: BodyKind::Opaque,
                    headers: Box::new([]),
                    header_prefixes: Box::new([]),
                    query: Box::new([]),
                    labels: Box::new([]),
                },
                Some(input) => operation_model(service, oname, id(&input.shape)?, &raw.shapes[&input.shape], &raw, &shapes)?,
            };
            operations.entry(service).or_insert_with(HashMap::new).insert(oname.as_str().into(), model);
        }
    }
    Ok(Models { shapes, operations })
}

fn operation_model(
    service: &'static str,
    oname: &str,
    input: ShapeId,
    raw_input: &RawShape,
    raw: &RawModel,
    shapes: &[Shape],
) -> Result<OperationModel, String> {
    let (mut headers, mut header_prefixes, mut query, mut labels) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (mname, m) in &raw_input.members {
        let wire = || m.location_name.clone().unwrap_or_else(|| mname.clone());
        match m.location.as_deref() {
            Some("uri") => labels.push(wire().into_boxed_str()),
            Some("header") => headers.push(wire().to_ascii_lowercase().into_boxed_str()),
            Some("headers") => header_prefixes.push(wire().to_ascii_lowercase().into_boxed_str()),
            Some("querystring") => query.push(wire().into_boxed_str()),
            _ => {}
        }
    }
    let body = match &raw_input.payload {
        None => BodyKind::Json(input),
        Some(p) => {
            let m = raw_input.members.get(p).ok_or_else(|| format!("{service} model: {oname}: payload {p} is no member"))?;
            let pid = raw.shapes.keys().position(|k| *k == m.shape).ok_or_else(|| format!("{service} model: unknown shape {}", m.shape))?;
            // The payload shape's global id: this service's shapes are the last pushed.
            let pid = (shapes.len() - raw.shapes.len() + pid) as ShapeId;
            match shapes[pid as usize].kind {
                Kind::Structure { .. } => BodyKind::Json(pid),
                // blob, string (or a document) payload: the bytes are the body.
                _ => BodyKind::Opaque,
            }
        }
    };
    for v in [&mut headers, &mut header_prefixes, &mut query, &mut labels] {
        v.sort();
        v.dedup();
    }
    Ok(OperationModel {
        service,
        name: oname.into(),
        body,
        headers: headers.into(),
        header_prefixes: header_prefixes.into(),
        query: query.into(),
        labels: labels.into(),
    })
}
