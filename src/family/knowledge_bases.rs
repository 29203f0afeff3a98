//! Knowledge bases (docs/reference.md §5.2): Retrieve, RetrieveAndGenerate and
//! RetrieveAndGenerateStream (the two share a request shape);
//! AgenticRetrieveStream's rules are in `super::agentic_retrieve`.
//!
//! What is enforced on the request:
//! - the knowledge base id (path, or
//!   `retrieveAndGenerateConfiguration.knowledgeBaseConfiguration.knowledgeBaseId`)
//!   is in `knowledge_base.allowed` (403 `knowledge_base_not_allowed`);
//! - `...vectorSearchConfiguration.filter` is replaced by the forced filter
//!   (tenant clause, extra filters, client filter; see `retrieval_filter`),
//!   creating the objects on the way when absent;
//! - every model in the body passes the tenant's `models` globs (403
//!   `model_not_allowed`): `knowledgeBaseConfiguration.modelArn`,
//!   `externalSourcesConfiguration.modelArn`, the reranking model
//!   (`rerankingConfiguration.bedrockRerankingConfiguration.modelConfiguration.modelArn`)
//!   and the implicit-filter model (`implicitFilterConfiguration.modelArn`,
//!   whose generated filter Bedrock applies in addition to the explicit one,
//!   so it can narrow but not widen);
//! - external sources: every `sources[].s3Location.uri` is under the rendered
//!   `allowed_source_prefixes` (403 `location_not_allowed`; with no prefixes
//!   no S3 source is allowed). `BYTE_CONTENT` sources are allowed: the client
//!   sends the document itself, so they reach no one else's data. Any other
//!   source type is `location_not_allowed`;
//! - `model_map` applies to every model ARN in the body
//!   (`model_map::upstream_model`: mapped, or 403 for an uncovered spelling
//!   of a mapped model);
//! - the tenant's guardrail replaces the client's in Retrieve
//!   `guardrailConfiguration` and in
//!   `{knowledgeBase,externalSources}Configuration.generationConfiguration.guardrailConfiguration`;
//! - a client `sessionId` must be one tenantgate sealed for this tenant and
//!   user (403 `cross_tenant`) and is replaced by Bedrock's id.
//!
//! * `userContext` (ACL-aware retrieval) is dropped and, with
//!   `knowledge_base.user_context`, set from the verified identity.
//!
//! Every other field is left as sent, unknown ones included. On error the
//! body may be partly rewritten and must be discarded.

use super::retrieval_filter::forced_filter;
use super::{
    bind_model, body_object, child_object, missing_claim, opt_object, opt_str, to_bytes, Ctx, Hooks, Notes, PolicyQuestion, RequestBody,
    ResponseShape,
};
use crate::decide::cedar::PolicyResource;
use crate::aws::credentials::TenantCredentials;
use crate::config::TenantPolicy;
use crate::decide::{self, Resource};
use crate::error::ProxyError;
use crate::filter::eventstream::StreamShape;
use crate::post::Post;
use crate::route::{Operation, Target};
use crate::usage::UsageSource;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

/// The knowledge-base family.
pub struct KnowledgeBases;

/// RetrieveAndGenerateStream's session id, sealed for (tenant, user) on the
/// way back like the non-stream answer's `sessionId` member.
const RAG_SESSION_HEADER: &str = "x-amzn-bedrock-knowledge-base-session-id";
/// The number of Retrieve results outside the tenant's prefixes that were
/// dropped.
pub const DROPPED_RESULTS_HEADER: &str = "x-tenantgate-dropped-results";

impl Hooks for KnowledgeBases {
    // `authorize` passes: the knowledge base in Retrieve's path is decided
    // in `rewrite`, once the body is validated (a malformed body is 400
    // whatever it names), like those RetrieveAndGenerate names in its body.

    /// Retrieve: the knowledge base of the path. RetrieveAndGenerate: the
    /// knowledge base of its body, else (external sources) its model.
    fn policy_question<'a>(
        ctx: &Ctx<'_>,
        target: &'a Target,
        _headers: &'a HeaderMap,
        body: &'a RequestBody,
    ) -> Result<PolicyQuestion<'a>, ProxyError> {
        match (ctx.op, target) {
            (Operation::AgenticRetrieveStream, _) => return super::agentic_retrieve::policy_question(ctx, body),
            (Operation::GetDocumentContent, Target::Document { kb, .. }) => {
                kb_allowed(ctx, kb)?;
                return Ok(PolicyQuestion::of(PolicyResource::KnowledgeBase(kb)));
            }
            (Operation::GenerateQuery, _) => {
                let kb = super::kb_documents::generate_query_kb(ctx, body.json.as_ref())?;
                return Ok(PolicyQuestion::of(PolicyResource::KnowledgeBase(kb)));
            }
            (Operation::GetDocumentContent, _) => return Err(super::foreign_target(ctx)),
            _ => {}
        }
        if let Target::KnowledgeBase(kb) = target {
            kb_allowed(ctx, kb)?;
            return Ok(PolicyQuestion::of(PolicyResource::KnowledgeBase(kb)));
        }
        let cfg = body.json.as_ref().and_then(|v| v.get("retrieveAndGenerateConfiguration"));
        let kb = cfg.and_then(|c| c.pointer("/knowledgeBaseConfiguration/knowledgeBaseId")).and_then(Value::as_str);
        if let Some(kb) = kb {
            kb_allowed(ctx, kb)?;
            return Ok(PolicyQuestion::of(PolicyResource::KnowledgeBase(kb)));
        }
        match cfg.and_then(|c| c.pointer("/externalSourcesConfiguration/modelArn")).and_then(Value::as_str) {
            Some(model) => {
                ctx.decide(Resource::Model(model))?;
                Ok(PolicyQuestion::of(PolicyResource::Model(model)))
            }
            None => Err(ProxyError::InvalidParameter(
                "retrieveAndGenerateConfiguration names neither a knowledge base nor a model".into(),
            )),
        }
    }

    fn rewrite(
        ctx: &Ctx<'_>,
        target: &mut Target,
        _headers: &mut HeaderMap,
        body: RequestBody,
        _creds: &TenantCredentials,
        notes: &mut Notes,
    ) -> Result<(Bytes, Post), ProxyError> {
        match (ctx.op, &*target) {
            (Operation::GetDocumentContent, Target::Document { kb, .. }) => {
                return super::kb_documents::rewrite_get_document(ctx, kb, body);
            }
            (Operation::GenerateQuery, _) => {
                let out = super::kb_documents::rewrite_generate_query(ctx, body, &mut notes.resource)?;
                return Ok((out, Post::Stream));
            }
            (Operation::GetDocumentContent, _) => return Err(super::foreign_target(ctx)),
            _ => {}
        }
        let mut v = body.tree()?;
        let prefixes = decide::source_prefixes(&ctx.request());
        if ctx.op == Operation::AgenticRetrieveStream {
            let note = super::agentic_retrieve::rewrite(ctx, &mut v)?;
            // The audit names each knowledge base once, in request order.
            let mut kbs: Vec<&str> = Vec::new();
            for kb in &note.knowledge_bases {
                if !kbs.contains(&kb.as_str()) {
                    kbs.push(kb);
                }
            }
            notes.resource = Some(kbs.join(","));
            return Ok((to_bytes(&v)?, Post::AgenticStream { prefixes: prefixes? }));
        }
        if let Target::KnowledgeBase(kb) = target {
            rewrite_retrieve(ctx, &mut v, kb)?;
            return Ok((to_bytes(&v)?, Post::Retrieve { prefixes: prefixes? }));
        }
        let note = rewrite_retrieve_and_generate(ctx, &mut v)?;
        if let Some(kb) = note.knowledge_base_id {
            notes.resource = Some(kb);
        }
        let prefixes = prefixes?;
        let post = if ctx.op == Operation::RetrieveAndGenerate { Post::Rag { prefixes } } else { Post::RagStream { prefixes } };
        Ok((to_bytes(&v)?, post))
    }

    fn response_headers(ctx: &Ctx<'_>, post: &Post, headers: &mut HeaderMap) {
        match post {
            Post::RagStream { .. } => {
                let sealed = headers
                    .get(RAG_SESSION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .map(|id| ctx.keys.seal_rag_session(&ctx.principal.tenant, &ctx.principal.user, id));
                if let Some(v) = sealed.and_then(|s| HeaderValue::from_str(&s).ok()) {
                    headers.insert(RAG_SESSION_HEADER, v);
                }
            }
            Post::Retrieve { .. } => {
                headers.insert(DROPPED_RESULTS_HEADER, HeaderValue::from(0u64));
            }
            _ => {}
        }
    }

    fn response_shape(op: Operation) -> ResponseShape {
        match op {
            Operation::RetrieveAndGenerateStream => ResponseShape { usage: UsageSource::Headers, stream: StreamShape::Rag },
            Operation::AgenticRetrieveStream => ResponseShape { usage: UsageSource::Headers, stream: StreamShape::Agentic },
            _ => ResponseShape::PLAIN,
        }
    }
}

/// What a knowledge-base rewrite did, for the audit record and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RewriteNote {
    /// The knowledge base authorised (None for external sources only).
    pub knowledge_base_id: Option<String>,
    /// Every model id found in the body (all allowed), in the order checked.
    pub models: Vec<String>,
    /// True when the tenant filter was written into the body.
    pub filter_forced: bool,
    /// True when the client sent a filter (kept, ANDed after the tenant's).
    pub client_filter_kept: bool,
    /// Number of external S3 sources checked against the prefixes.
    pub external_s3_sources: usize,
    /// True when a sealed `sessionId` was verified and replaced by Bedrock's.
    pub session_unsealed: bool,
    /// True when the client sent a `userContext` (never forwarded).
    pub client_user_context_dropped: bool,
    /// True when `userContext.userId` was set from the verified identity.
    pub user_context_forced: bool,
}

/// The knowledge base is on the tenant's allowlist (`decide::check`).
pub(crate) fn kb_allowed(ctx: &Ctx<'_>, kb_id: &str) -> Result<(), ProxyError> {
    ctx.decide(Resource::KnowledgeBase(kb_id)).map(drop)
}

/// Retrieve (`POST /knowledgebases/{kb_id}/retrieve`).
///
/// Before (tenant `acme`, `filter_key = "tenant_id"`, extra filter
/// `{ in = { key = "group", value = "{groups}" } }`, user in groups `eng`, `ops`):
///
/// ```text
/// {"retrievalQuery": {"text": "pricing"},
///  "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 5,
///     "filter": {"orAll": [{"equals": {"key": "tenant_id", "value": "globex"}},
///                          {"equals": {"key": "year", "value": 2024}}]}}}}
/// ```
///
/// After:
///
/// ```text
/// {"retrievalQuery": {"text": "pricing"},
///  "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 5,
///     "filter": {"andAll": [
///        {"equals": {"key": "tenant_id", "value": "acme"}},
///        {"in": {"key": "group", "value": ["eng", "ops"]}},
///        {"orAll": [{"equals": {"key": "tenant_id", "value": "globex"}},
///                   {"equals": {"key": "year", "value": 2024}}]}]}}}}
/// ```
///
/// A body with no `retrievalConfiguration` gets one holding just the filter.
pub fn rewrite_retrieve(ctx: &Ctx<'_>, body: &mut Value, kb_id: &str) -> Result<RewriteNote, ProxyError> {
    let obj = body_object(body)?;
    kb_allowed(ctx, kb_id)?;
    let mut note = RewriteNote { knowledge_base_id: Some(kb_id.to_string()), ..RewriteNote::default() };
    rewrite_retrieval_configuration(obj, "", ctx, &mut note)?;
    force_guardrail(obj, ctx.policy);
    force_user_context(obj, ctx, &mut note)?;
    Ok(note)
}

/// ACL-aware retrieval: `userContext.userId` (whose documents a data source
/// with access lists returns) comes from the verified identity
/// (`knowledge_base.user_context`, a template such as `"{claims.email}"`),
/// never from the client. The client's `userContext` is always dropped;
/// without the key none is sent, and ACL-aware data sources return nothing
/// (AWS's behaviour for a request without one). A claim the template needs
/// and the token lacks: 403 `missing_claim`.
pub(crate) fn force_user_context(obj: &mut Map<String, Value>, ctx: &Ctx<'_>, note: &mut RewriteNote) -> Result<(), ProxyError> {
    let user_id = match &ctx.policy.knowledge_base.user_context {
        Some(t) => Some(t.render(ctx.principal).map_err(missing_claim)?),
        None => None,
    };
    // The validator admits the member in exact case only; any spelling is
    // dropped all the same.
    let before = obj.len();
    obj.retain(|k, _| !k.eq_ignore_ascii_case("userContext"));
    note.client_user_context_dropped = obj.len() != before;
    if let Some(id) = user_id {
        obj.insert("userContext".into(), serde_json::json!({ "userId": id }));
        note.user_context_forced = true;
    }
    Ok(())
}

/// Forces the filter and checks the models of `parent.retrievalConfiguration`
/// (created when absent); `parent_path` names `parent` in error messages
/// (empty for the body itself). Shared with
/// InvokeAgent `sessionState.knowledgeBaseConfigurations`.
pub(crate) fn rewrite_retrieval_configuration(
    parent: &mut Map<String, Value>,
    parent_path: &str,
    ctx: &Ctx<'_>,
    note: &mut RewriteNote,
) -> Result<(), ProxyError> {
    const KEY: &str = "retrievalConfiguration";
    let path = if parent_path.is_empty() { KEY.to_string() } else { format!("{parent_path}.{KEY}") };
    let rc = child_object(parent, KEY, &path)?;
    let vpath = format!("{path}.vectorSearchConfiguration");
    let vsc = child_object(rc, "vectorSearchConfiguration", &vpath)?;
    check_vector_search_models(vsc, &vpath, ctx, note)?;
    let client = vsc.remove("filter");
    note.client_filter_kept = client.as_ref().is_some_and(|c| !c.is_null());
    let filter = forced_filter(ctx.policy, ctx.principal, client, &format!("{vpath}.filter"))?;
    vsc.insert("filter".into(), filter);
    note.filter_forced = true;
    Ok(())
}

fn check_vector_search_models(
    vsc: &mut Map<String, Value>,
    path: &str,
    ctx: &Ctx<'_>,
    note: &mut RewriteNote,
) -> Result<(), ProxyError> {
    let rpath = format!("{path}.rerankingConfiguration");
    if let Some(rr) = opt_object(vsc, "rerankingConfiguration", &rpath)? {
        match opt_str(rr, "type", &format!("{rpath}.type"))? {
            Some("BEDROCK_RERANKING_MODEL") => {}
            _ => return Err(ProxyError::InvalidParameter(format!("{rpath}.type must be BEDROCK_RERANKING_MODEL"))),
        }
        let bpath = format!("{rpath}.bedrockRerankingConfiguration");
        let mpath = format!("{bpath}.modelConfiguration");
        let m = opt_object(rr, "bedrockRerankingConfiguration", &bpath)?
            .map(|b| opt_object(b, "modelConfiguration", &mpath))
            .transpose()?
            .flatten()
            .ok_or_else(|| ProxyError::InvalidParameter(format!("{mpath}.modelArn is required")))?;
        note.models.push(bind_model(m, "modelArn", &format!("{mpath}.modelArn"), ctx)?);
    }
    let ipath = format!("{path}.implicitFilterConfiguration");
    if let Some(imp) = opt_object(vsc, "implicitFilterConfiguration", &ipath)? {
        note.models.push(bind_model(imp, "modelArn", &format!("{ipath}.modelArn"), ctx)?);
    }
    Ok(())
}

/// RetrieveAndGenerate and RetrieveAndGenerateStream
/// (`POST /retrieveAndGenerate`, `/retrieveAndGenerateStream`).
///
/// Before (same tenant as `rewrite_retrieve`, no extra filters):
///
/// ```text
/// {"input": {"text": "What is our refund policy?"},
///  "sessionId": "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60.9b1e0c6f5a7d4e2b8c3f1a0d9e8b7c6a",
///  "retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE",
///    "knowledgeBaseConfiguration": {"knowledgeBaseId": "KBPOOLED01",
///      "modelArn": "anthropic.claude-3-haiku-20240307-v1:0"}}}
/// ```
///
/// After:
///
/// ```text
/// {"input": {"text": "What is our refund policy?"},
///  "sessionId": "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60",
///  "retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE",
///    "knowledgeBaseConfiguration": {"knowledgeBaseId": "KBPOOLED01",
///      "modelArn": "anthropic.claude-3-haiku-20240307-v1:0",
///      "retrievalConfiguration": {"vectorSearchConfiguration": {
///        "filter": {"equals": {"key": "tenant_id", "value": "acme"}}}}}}}
/// ```
///
/// `EXTERNAL_SOURCES` requests are checked, not rewritten (apart from the
/// session id): `externalSourcesConfiguration.modelArn` against `models`, each
/// S3 source URI against the prefixes.
pub fn rewrite_retrieve_and_generate(ctx: &Ctx<'_>, body: &mut Value) -> Result<RewriteNote, ProxyError> {
    let obj = body_object(body)?;
    let mut note = RewriteNote::default();
    {
        const CFG: &str = "retrieveAndGenerateConfiguration";
        let cfg =
            opt_object(obj, CFG, CFG)?.ok_or_else(|| ProxyError::InvalidParameter(format!("{CFG} is required")))?;
        let required = match opt_str(cfg, "type", &format!("{CFG}.type"))? {
            Some("KNOWLEDGE_BASE") => "knowledgeBaseConfiguration",
            Some("EXTERNAL_SOURCES") => "externalSourcesConfiguration",
            Some(other) => {
                return Err(ProxyError::InvalidParameter(format!("{CFG}.type {other:?} is not supported")));
            }
            None => return Err(ProxyError::InvalidParameter(format!("{CFG}.type is required"))),
        };
        if cfg.get(required).is_none_or(Value::is_null) {
            return Err(ProxyError::InvalidParameter(format!("{CFG}.{required} is required")));
        }
        // Whatever the type says, every configuration present is checked.
        let kpath = format!("{CFG}.knowledgeBaseConfiguration");
        if let Some(kb) = opt_object(cfg, "knowledgeBaseConfiguration", &kpath)? {
            rewrite_kb_configuration(kb, &kpath, ctx, &mut note)?;
            force_generation_guardrail(kb, &kpath, ctx.policy)?;
        }
        let epath = format!("{CFG}.externalSourcesConfiguration");
        if let Some(ext) = opt_object(cfg, "externalSourcesConfiguration", &epath)? {
            check_external_sources(ext, &epath, ctx, &mut note)?;
            force_generation_guardrail(ext, &epath, ctx.policy)?;
        }
    }
    if let Some(client_id) = opt_str(obj, "sessionId", "sessionId")? {
        let bedrock_id = ctx.keys.open_rag_session(&ctx.principal.tenant, &ctx.principal.user, client_id)?;
        obj.insert("sessionId".into(), Value::String(bedrock_id));
        note.session_unsealed = true;
    }
    force_user_context(obj, ctx, &mut note)?;
    Ok(note)
}

/// The tenant's guardrail as a bedrock-agent-runtime `GuardrailConfiguration`
/// (`{guardrailId, guardrailVersion}`, its only members), replacing the
/// client's whole; nothing when the tenant has no guardrail.
fn force_guardrail(parent: &mut Map<String, Value>, policy: &TenantPolicy) {
    force_guardrail_member(parent, "guardrailConfiguration", policy)
}

/// `force_guardrail` at another member of the same shape
/// (AgenticRetrieveStream's `policyConfiguration.bedrockGuardrailConfiguration`).
pub(crate) fn force_guardrail_member(parent: &mut Map<String, Value>, key: &str, policy: &TenantPolicy) {
    let Some(g) = &policy.guardrail else { return };
    // Drop any case variant so that no reader upstream finds another one.
    parent.retain(|k, _| !k.eq_ignore_ascii_case(key));
    let mut gc = Map::new();
    gc.insert("guardrailId".into(), Value::String(g.id.clone()));
    gc.insert("guardrailVersion".into(), Value::String(g.version.clone()));
    parent.insert(key.into(), Value::Object(gc));
}

/// RetrieveAndGenerate(Stream): the model that writes the answer gets the
/// tenant's guardrail in `generationConfiguration.guardrailConfiguration`
/// (created when absent). `orchestrationConfiguration` (query decomposition)
/// has no guardrail member in AWS's model; the guardrail on generation
/// still judges the input and the answer.
fn force_generation_guardrail(
    cfg: &mut Map<String, Value>,
    path: &str,
    policy: &TenantPolicy,
) -> Result<(), ProxyError> {
    if policy.guardrail.is_none() {
        return Ok(());
    }
    let generation = child_object(cfg, "generationConfiguration", &format!("{path}.generationConfiguration"))?;
    force_guardrail(generation, policy);
    Ok(())
}

fn rewrite_kb_configuration(
    kb: &mut Map<String, Value>,
    path: &str,
    ctx: &Ctx<'_>,
    note: &mut RewriteNote,
) -> Result<(), ProxyError> {
    let kb_id = opt_str(kb, "knowledgeBaseId", &format!("{path}.knowledgeBaseId"))?
        .ok_or_else(|| ProxyError::InvalidParameter(format!("{path}.knowledgeBaseId is required")))?
        .to_string();
    kb_allowed(ctx, &kb_id)?;
    note.knowledge_base_id = Some(kb_id);
    note.models.push(bind_model(kb, "modelArn", &format!("{path}.modelArn"), ctx)?);
    rewrite_retrieval_configuration(kb, path, ctx, note)
}

fn check_external_sources(
    ext: &mut Map<String, Value>,
    path: &str,
    ctx: &Ctx<'_>,
    note: &mut RewriteNote,
) -> Result<(), ProxyError> {
    note.models.push(bind_model(ext, "modelArn", &format!("{path}.modelArn"), ctx)?);
    let sources = match ext.get("sources") {
        Some(Value::Array(s)) if !s.is_empty() => s,
        _ => return Err(ProxyError::InvalidParameter(format!("{path}.sources must be a non-empty array"))),
    };
    for (i, src) in sources.iter().enumerate() {
        if check_source(ctx, src, &format!("{path}.sources[{i}]"))? {
            note.external_s3_sources += 1;
        }
    }
    Ok(())
}

/// Checks one document source (`ExternalSource` of RetrieveAndGenerate, or
/// the `source` of an InvokeAgent `InputFile`): an `S3` source's
/// `s3Location.uri` must be under the tenant's source prefixes (decided by
/// `crate::decide`, 403 `location_not_allowed`); `BYTE_CONTENT` is allowed;
/// any other type is `location_not_allowed`. Returns true for an S3 source.
pub(crate) fn check_source(ctx: &Ctx<'_>, src: &Value, spath: &str) -> Result<bool, ProxyError> {
    let src = src.as_object().ok_or_else(|| ProxyError::InvalidParameter(format!("{spath} must be an object")))?;
    let ty = opt_str(src, "sourceType", &format!("{spath}.sourceType"))?;
    let s3 = match src.get("s3Location") {
        None | Some(Value::Null) => None,
        Some(Value::Object(l)) => Some(
            opt_str(l, "uri", &format!("{spath}.s3Location.uri"))?
                .ok_or_else(|| ProxyError::InvalidParameter(format!("{spath}.s3Location.uri is required")))?,
        ),
        Some(_) => return Err(ProxyError::InvalidParameter(format!("{spath}.s3Location must be an object"))),
    };
    if let Some(uri) = s3 {
        ctx.decide(Resource::SourceLocation(uri))?;
    }
    match (ty, s3) {
        (Some("S3"), Some(_)) => Ok(true),
        (Some("BYTE_CONTENT"), None) => Ok(false),
        (Some("S3"), None) => Err(ProxyError::InvalidParameter(format!("{spath}.s3Location is required for S3"))),
        (Some("BYTE_CONTENT"), Some(_)) => {
            Err(ProxyError::InvalidParameter(format!("{spath}: a BYTE_CONTENT source has no s3Location")))
        }
        (Some(other), _) => Err(ProxyError::LocationNotAllowed(format!("source type {other:?} is not allowed"))),
        (None, _) => Err(ProxyError::InvalidParameter(format!("{spath}.sourceType is required"))),
    }
}

#[cfg(test)]
#[path = "knowledge_bases_tests.rs"]
mod tests;
