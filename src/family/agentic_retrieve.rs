//! AgenticRetrieveStream (docs/reference.md §5.2), in the knowledge-base
//! family: `POST /agenticRetrieveStream`, an agent of Bedrock's that plans
//! retrievals over several knowledge bases and may write an answer, its
//! events streamed back (`responseEvent` text, `traceEvent` steps, `result`).
//!
//! What is enforced on the request (nothing is sent on any refusal):
//! - every `retrievers[].configuration.knowledgeBase.knowledgeBaseId` is in
//!   `knowledge_base.allowed` (403 `knowledge_base_not_allowed`); a retriever
//!   of another kind is 403 `operation_not_allowed`;
//! - each gets the forced filter in `retrievalOverrides.filter`, composed
//!   exactly as for Retrieve (tenant clause, extra filters, the client's
//!   filter ANDed last; `retrieval_filter::forced_filter`);
//! - the models: `agenticRetrieveConfiguration.foundationModelConfiguration`
//!   (`bedrock…` and `mantle…FoundationModelConfiguration.modelConfiguration.modelArn`,
//!   every one present) and
//!   `rerankingConfiguration.bedrockRerankingConfiguration.modelConfiguration.modelArn`
//!   pass the tenant's `models` globs and `model_map` (403
//!   `model_not_allowed`). A model AWS would choose (`foundationModelType` or
//!   `rerankingModelType` `MANAGED`) cannot be decided: 403
//!   `model_not_allowed`. The foundation model must be named, and the
//!   reranking model named or `rerankingModelType` `NONE` (400 otherwise);
//!   a Mantle `projectId` other than `default` is 403
//!   `operation_not_allowed` (projects are account-wide);
//! - the tenant's guardrail replaces
//!   `policyConfiguration.bedrockGuardrailConfiguration` (created when
//!   absent; left as sent when the tenant has none), as RetrieveAndGenerate's;
//! - `userContext` is never the client's: set from the verified identity by
//!   `knowledge_base.user_context` (`knowledge_bases::force_user_context`);
//! - `nextToken` must be one tenantgate sealed for this tenant and user (403
//!   `cross_tenant`) and goes upstream without its seal;
//! - `memoryConfiguration` (AgentCore memory ids are account-wide) and
//!   `retrievalInstructionConfiguration` (an account-wide resource) have no
//!   isolation rule: 403 `operation_not_allowed`.
//!
//! The answer is judged whole before any byte goes out, as
//! RetrieveAndGenerateStream's is ([`filter_stream`]): event by event, a
//! `result` event's `results[]` and a `traceEvent`'s
//! `attributes.retrievalResponse[]` whose source
//! (`metadata["x-amz-bedrock-kb-source-uri"]`) is not under the tenant's
//! `allowed_source_prefixes` are dropped and counted; a citation of a
//! dropped result withholds the whole answer (502
//! `unauthorized_source_in_answer`); the citations' `resultIndex` follow
//! the results kept; `nextToken` is sealed for (tenant, user). An event of
//! a type the model does not define cannot be judged: the answer is
//! withheld (502 `upstream_error`); exception messages pass.

use super::knowledge_bases::{force_guardrail_member, force_user_context, kb_allowed, RewriteNote};
use super::retrieval_filter::forced_filter;
use super::{bind_model, body_object, child_object, opt_object, opt_str, Ctx, PolicyQuestion, RequestBody};
use crate::decide::cedar::PolicyResource;
use crate::error::ProxyError;
use crate::filter::chunks::SourceFilter;
use crate::filter::eventstream::MAX_FRAME;
use crate::principal::Principal;
use crate::session::SessionKeys;
use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{HeaderValue as EsHeaderValue, Message};
use bytes::Bytes;
use serde_json::{Map, Value};

const OP: &str = "AgenticRetrieveStream";
const CFG: &str = "agenticRetrieveConfiguration";
/// Where a knowledge-base result names its source document.
pub const SOURCE_URI_KEY: &str = "x-amz-bedrock-kb-source-uri";
/// Request members with no isolation rule, and why.
const REFUSED_MEMBERS: &[(&str, &str)] = &[
    ("memoryConfiguration", "AgentCore memory ids are account-wide"),
    ("retrievalInstructionConfiguration", "retrieval instructions are an account-wide resource"),
];

/// What the rewrite did, for tests and logs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgenticNote {
    /// The knowledge bases of the retrievers (all allowed), in order.
    pub knowledge_bases: Vec<String>,
    /// Every model named (all allowed), as the client named it.
    pub models: Vec<String>,
    /// Retrievers whose client filter was kept inside the forced one.
    pub client_filters_kept: usize,
    /// True when the tenant's guardrail was written.
    pub guardrail_forced: bool,
    /// True when a sealed `nextToken` was verified and unsealed.
    pub token_unsealed: bool,
    pub client_user_context_dropped: bool,
    pub user_context_forced: bool,
}

/// The knowledge bases the body names, decided, for the tenant's policies:
/// the first is the question's resource, the others `more`.
pub(super) fn policy_question<'a>(ctx: &Ctx<'_>, body: &'a RequestBody) -> Result<PolicyQuestion<'a>, ProxyError> {
    let retrievers = body.json.as_ref().and_then(|v| v.get("retrievers")).and_then(Value::as_array);
    let mut kbs = Vec::new();
    for r in retrievers.into_iter().flatten() {
        let kb = r.pointer("/configuration/knowledgeBase/knowledgeBaseId").and_then(Value::as_str);
        let kb = kb.ok_or_else(|| ProxyError::InvalidParameter("every retriever must name a knowledge base".into()))?;
        kb_allowed(ctx, kb)?;
        kbs.push(PolicyResource::KnowledgeBase(kb));
    }
    if kbs.is_empty() {
        return Err(ProxyError::InvalidParameter("retrievers must name at least one knowledge base".into()));
    }
    let first = kbs.remove(0);
    let mut q = PolicyQuestion::of(first);
    q.more = kbs;
    Ok(q)
}

/// The request for this tenant (see the module documentation).
///
/// Before (tenant `acme`, `filter_key = "tenant_id"`, guardrail `gr-acme`
/// version 1):
///
/// ```text
/// {"messages": [{"role": "user", "content": {"text": "refund policy?"}}],
///  "retrievers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBPOOLED01",
///     "retrievalOverrides": {"filter": {"equals": {"key": "year", "value": 2024}}}}}}],
///  "agenticRetrieveConfiguration": {"foundationModelConfiguration": {"type": "BEDROCK_FOUNDATION_MODEL",
///     "bedrockFoundationModelConfiguration": {"modelConfiguration": {"modelArn": "anthropic.claude-3-haiku-20240307-v1:0"}}},
///     "rerankingModelType": "NONE"},
///  "userContext": {"userId": "ceo@acme.example"}}
/// ```
///
/// After (`knowledge_base.user_context = "{claims.email}"`):
///
/// ```text
/// {"messages": [...],
///  "retrievers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBPOOLED01",
///     "retrievalOverrides": {"filter": {"andAll": [{"equals": {"key": "tenant_id", "value": "acme"}},
///                                                  {"equals": {"key": "year", "value": 2024}}]}}}}}],
///  "agenticRetrieveConfiguration": {...as sent...},
///  "policyConfiguration": {"bedrockGuardrailConfiguration": {"guardrailId": "gr-acme", "guardrailVersion": "1"}},
///  "userContext": {"userId": "alice@acme.example"}}
/// ```
pub fn rewrite(ctx: &Ctx<'_>, body: &mut Value) -> Result<AgenticNote, ProxyError> {
    let obj = body_object(body)?;
    for (member, why) in REFUSED_MEMBERS {
        // The validator admits members in exact case only; any spelling is
        // refused here all the same.
        if obj.iter().any(|(k, v)| k.eq_ignore_ascii_case(member) && !v.is_null()) {
            return Err(ProxyError::OperationNotAllowed(format!("{OP} with {member} ({why})")));
        }
    }
    let mut note = AgenticNote::default();
    rewrite_retrievers(obj, ctx, &mut note)?;
    check_models(obj, ctx, &mut note)?;
    if ctx.policy.guardrail.is_some() {
        let pc = child_object(obj, "policyConfiguration", "policyConfiguration")?;
        force_guardrail_member(pc, "bedrockGuardrailConfiguration", ctx.policy);
        note.guardrail_forced = true;
    }
    if let Some(token) = opt_str(obj, "nextToken", "nextToken")? {
        let bedrock = ctx.keys.open_agentic_token(&ctx.principal.tenant, &ctx.principal.user, token)?;
        obj.insert("nextToken".into(), Value::String(bedrock));
        note.token_unsealed = true;
    }
    let mut uc = RewriteNote::default();
    force_user_context(obj, ctx, &mut uc)?;
    note.client_user_context_dropped = uc.client_user_context_dropped;
    note.user_context_forced = uc.user_context_forced;
    Ok(note)
}

fn rewrite_retrievers(obj: &mut Map<String, Value>, ctx: &Ctx<'_>, note: &mut AgenticNote) -> Result<(), ProxyError> {
    let retrievers = match obj.get_mut("retrievers") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => return Err(ProxyError::InvalidParameter("retrievers must be a non-empty array".into())),
    };
    for (i, r) in retrievers.iter_mut().enumerate() {
        let path = format!("retrievers[{i}]");
        let r = r.as_object_mut().ok_or_else(|| ProxyError::InvalidParameter(format!("{path} must be an object")))?;
        let cpath = format!("{path}.configuration");
        let cfg = opt_object(r, "configuration", &cpath)?
            .ok_or_else(|| ProxyError::InvalidParameter(format!("{cpath} is required")))?;
        if let Some(other) = cfg.keys().find(|k| k.as_str() != "knowledgeBase") {
            return Err(ProxyError::OperationNotAllowed(format!(
                "{OP} with a retriever other than a knowledge base ({cpath}.{other})"
            )));
        }
        let kpath = format!("{cpath}.knowledgeBase");
        let kb = opt_object(cfg, "knowledgeBase", &kpath)?
            .ok_or_else(|| ProxyError::InvalidParameter(format!("{kpath} is required")))?;
        let id = opt_str(kb, "knowledgeBaseId", &format!("{kpath}.knowledgeBaseId"))?
            .ok_or_else(|| ProxyError::InvalidParameter(format!("{kpath}.knowledgeBaseId is required")))?
            .to_string();
        kb_allowed(ctx, &id)?;
        let opath = format!("{kpath}.retrievalOverrides");
        let overrides = child_object(kb, "retrievalOverrides", &opath)?;
        let client = overrides.remove("filter");
        if client.as_ref().is_some_and(|c| !c.is_null()) {
            note.client_filters_kept += 1;
        }
        let filter = forced_filter(ctx.policy, ctx.principal, client, &format!("{opath}.filter"))?;
        overrides.insert("filter".into(), filter);
        note.knowledge_bases.push(id);
    }
    Ok(())
}

fn check_models(obj: &mut Map<String, Value>, ctx: &Ctx<'_>, note: &mut AgenticNote) -> Result<(), ProxyError> {
    let cfg = opt_object(obj, CFG, CFG)?.ok_or_else(|| ProxyError::InvalidParameter(format!("{CFG} is required")))?;
    let unnamed = |what: String| ProxyError::ModelNotAllowed { model: what, tenant: ctx.principal.tenant.clone() };
    match opt_str(cfg, "foundationModelType", &format!("{CFG}.foundationModelType"))? {
        None | Some("CUSTOM") => {}
        Some(other) => return Err(unnamed(format!("foundationModelType {other}"))),
    }
    let fpath = format!("{CFG}.foundationModelConfiguration");
    let fm = opt_object(cfg, "foundationModelConfiguration", &fpath)?.ok_or_else(|| {
        ProxyError::InvalidParameter(format!("{fpath} is required: the model is named so that the tenant's models decide it"))
    })?;
    const BEDROCK: &str = "bedrockFoundationModelConfiguration";
    const MANTLE: &str = "mantleFoundationModelConfiguration";
    let required = match opt_str(fm, "type", &format!("{fpath}.type"))? {
        Some("BEDROCK_FOUNDATION_MODEL") => BEDROCK,
        Some("MANTLE_FOUNDATION_MODEL") => MANTLE,
        Some(other) => return Err(ProxyError::InvalidParameter(format!("{fpath}.type {other:?} is not supported"))),
        None => return Err(ProxyError::InvalidParameter(format!("{fpath}.type is required"))),
    };
    if fm.get(required).is_none_or(Value::is_null) {
        return Err(ProxyError::InvalidParameter(format!("{fpath}.{required} is required")));
    }
    // Whatever the type says, every configuration present is checked.
    for member in [BEDROCK, MANTLE] {
        let mpath = format!("{fpath}.{member}.modelConfiguration");
        let Some(m) = opt_object(fm, member, &format!("{fpath}.{member}"))? else { continue };
        let mc = opt_object(m, "modelConfiguration", &mpath)?
            .ok_or_else(|| ProxyError::InvalidParameter(format!("{mpath}.modelArn is required")))?;
        note.models.push(bind_model(mc, "modelArn", &format!("{mpath}.modelArn"), ctx)?);
        if member == MANTLE {
            match opt_str(mc, "projectId", &format!("{mpath}.projectId"))? {
                None | Some("default") => {}
                Some(p) => {
                    return Err(ProxyError::OperationNotAllowed(format!(
                        "{OP} with Mantle project {p:?} (projects are account-wide; only \"default\" is allowed)"
                    )))
                }
            }
        }
    }
    let rtype = opt_str(cfg, "rerankingModelType", &format!("{CFG}.rerankingModelType"))?.map(str::to_string);
    match rtype.as_deref() {
        None | Some("CUSTOM") | Some("NONE") => {}
        Some(other) => return Err(unnamed(format!("rerankingModelType {other}"))),
    }
    let rpath = format!("{CFG}.rerankingConfiguration");
    match opt_object(cfg, "rerankingConfiguration", &rpath)? {
        Some(rr) => {
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
        None if rtype.as_deref() == Some("NONE") => {}
        None => {
            return Err(ProxyError::InvalidParameter(format!(
                "{rpath} is required unless {CFG}.rerankingModelType is NONE: the reranking model is named so that the tenant's models decide it"
            )))
        }
    }
    Ok(())
}

/// The answer as the client may see it (2xx answers only; see the module
/// documentation), with the number of results dropped. Every frame must
/// decode with valid CRCs; an event that cannot be judged withholds the
/// answer (502). With no prefixes nothing is dropped, but `nextToken` is
/// still sealed.
pub fn filter_stream(body: &[u8], prefixes: &[String], principal: &Principal, keys: &SessionKeys) -> Result<(Bytes, u64), ProxyError> {
    let sources = (!prefixes.is_empty()).then(|| SourceFilter::new(prefixes));
    let mut rest = body;
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut dropped = 0u64;
    while !rest.is_empty() {
        let total = match rest {
            [a, b, c, d, ..] => u32::from_be_bytes([*a, *b, *c, *d]) as usize,
            _ => return Err(corrupt("the stream ended mid-frame")),
        };
        if !(16..=MAX_FRAME).contains(&total) {
            return Err(corrupt(&format!("a frame of {total} bytes")));
        }
        if rest.len() < total {
            return Err(corrupt("the stream ended mid-frame"));
        }
        let (raw, tail) = rest.split_at(total);
        rest = tail;
        let msg = read_message_from(&mut &raw[..]).map_err(|e| corrupt(&e.to_string()))?;
        let event = header(&msg, ":message-type").is_none_or(|t| t == "event");
        let changed = match (event, header(&msg, ":event-type")) {
            (true, Some("result")) => {
                let mut v = payload_json(&msg, "result")?;
                let (n, changed) = judge_result(&mut v, sources.as_ref(), principal, keys)?;
                dropped += n;
                changed.then_some(v)
            }
            (true, Some("traceEvent")) => {
                let mut v = payload_json(&msg, "traceEvent")?;
                let n = judge_trace(&mut v, sources.as_ref())?;
                dropped += n;
                (n > 0).then_some(v)
            }
            (true, Some("responseEvent")) | (false, _) => None,
            // An event the model does not define (or another spelling of
            // one) cannot be judged.
            (true, other) => return Err(corrupt(&format!("an event of type {:?}", other.unwrap_or("")))),
        };
        match changed {
            Some(v) => {
                let payload = serde_json::to_vec(&v).map_err(|e| corrupt(&e.to_string()))?;
                let msg = Message::new_from_parts(msg.headers().to_vec(), payload);
                write_message_to(&msg, &mut out).map_err(|e| corrupt(&e.to_string()))?;
            }
            None => out.extend_from_slice(raw),
        }
    }
    Ok((Bytes::from(out), dropped))
}

/// The bytes of the largest JSON tree [`filter_stream`] builds from `raw`
/// (one `result` or `traceEvent` payload at a time), for the buffer budget;
/// frames that do not decode count nothing (`filter_stream` refuses them).
pub fn largest_event_tree(raw: &[u8]) -> u64 {
    use crate::budget::json_scan::{scan, JsonLimits};
    let mut rest = raw;
    let mut largest = 0;
    while let [a, b, c, d, ..] = rest {
        let total = u32::from_be_bytes([*a, *b, *c, *d]) as usize;
        if !(16..=MAX_FRAME).contains(&total) || rest.len() < total {
            break;
        }
        let (frame, tail) = rest.split_at(total);
        rest = tail;
        let Ok(msg) = read_message_from(&mut &frame[..]) else { break };
        if matches!(header(&msg, ":event-type"), Some("result" | "traceEvent")) {
            if let Ok(shape) = scan(msg.payload(), &JsonLimits::UNLIMITED) {
                largest = largest.max(shape.tree_bytes(msg.payload().len()));
            }
        }
    }
    largest
}

fn corrupt(what: &str) -> ProxyError {
    ProxyError::UpstreamError(format!("{OP} answer cannot be judged ({what}); withheld"))
}

fn header<'a>(msg: &'a Message, name: &str) -> Option<&'a str> {
    msg.headers().iter().find(|h| h.name().as_str() == name).and_then(|h| match h.value() {
        EsHeaderValue::String(s) => Some(s.as_str()),
        _ => None,
    })
}

fn payload_json(msg: &Message, event: &str) -> Result<Value, ProxyError> {
    match serde_json::from_slice::<Value>(msg.payload()) {
        Ok(v) if v.is_object() => Ok(v),
        _ => Err(corrupt(&format!("a {event} event that is not a JSON object"))),
    }
}

/// True when a result (or trace result) item's source is under the prefixes.
fn item_allowed(sources: &SourceFilter, item: &Value) -> bool {
    item.pointer("/metadata").and_then(|m| m.get(SOURCE_URI_KEY)).and_then(Value::as_str).is_some_and(|uri| sources.allows_uri(uri))
}

/// Drops the foreign items of `list` (absent or `null`: none); returns, per
/// original index, its index once filtered (None: dropped).
fn retain_allowed(list: Option<&mut Value>, sources: &SourceFilter, what: &str) -> Result<Vec<Option<usize>>, ProxyError> {
    let items = match list {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(corrupt(&format!("{what} is not an array"))),
    };
    let mut map = Vec::with_capacity(items.len());
    let mut kept = 0;
    for item in items.iter() {
        if item_allowed(sources, item) {
            map.push(Some(kept));
            kept += 1;
        } else {
            map.push(None);
        }
    }
    items.retain(|item| item_allowed(sources, item));
    Ok(map)
}

/// One `result` event: foreign results dropped, citations checked and
/// renumbered, `nextToken` sealed. Returns (dropped, changed).
fn judge_result(
    v: &mut Value,
    sources: Option<&SourceFilter>,
    principal: &Principal,
    keys: &SessionKeys,
) -> Result<(u64, bool), ProxyError> {
    let obj = v.as_object_mut().ok_or_else(|| corrupt("a result event that is not an object"))?;
    let mut changed = false;
    let mut dropped = 0;
    if let Some(sources) = sources {
        let map = retain_allowed(obj.get_mut("results"), sources, "results")?;
        dropped = map.iter().filter(|m| m.is_none()).count() as u64;
        renumber_citations(obj.get_mut("generatedResponse"), &map)?;
        changed = dropped > 0;
    }
    match obj.get("nextToken") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) => {
            let sealed = keys.seal_agentic_token(&principal.tenant, &principal.user, t);
            obj.insert("nextToken".into(), Value::String(sealed));
            changed = true;
        }
        Some(_) => return Err(corrupt("nextToken is not a string")),
    }
    Ok((dropped, changed))
}

/// Every citation must reference results that were kept; their indices
/// are rewritten to the kept results' positions. A citation of a dropped
/// result, of no result, or malformed: the answer may hold another
/// tenant's data, 502 `unauthorized_source_in_answer`.
fn renumber_citations(generated: Option<&mut Value>, map: &[Option<usize>]) -> Result<(), ProxyError> {
    let citations = match generated {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(g)) => g.get_mut("citations"),
        Some(_) => return Err(ProxyError::UnauthorizedSourceInAnswer),
    };
    let citations = match citations {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(c)) => c,
        Some(_) => return Err(ProxyError::UnauthorizedSourceInAnswer),
    };
    for c in citations {
        let refs = c.get_mut("references").and_then(Value::as_array_mut).ok_or(ProxyError::UnauthorizedSourceInAnswer)?;
        for r in refs {
            let r = r.as_object_mut().ok_or(ProxyError::UnauthorizedSourceInAnswer)?;
            let old = r.get("resultIndex").and_then(Value::as_u64).ok_or(ProxyError::UnauthorizedSourceInAnswer)?;
            let new = usize::try_from(old)
                .ok()
                .and_then(|i| map.get(i).copied().flatten())
                .ok_or(ProxyError::UnauthorizedSourceInAnswer)?;
            if new as u64 != old {
                r.insert("resultIndex".into(), Value::from(new));
            }
        }
    }
    Ok(())
}

/// One `traceEvent`: foreign items of `attributes.retrievalResponse`
/// dropped. Returns the number dropped.
fn judge_trace(v: &mut Value, sources: Option<&SourceFilter>) -> Result<u64, ProxyError> {
    let Some(sources) = sources else { return Ok(0) };
    let attributes = match v.get_mut("attributes") {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::Object(a)) => a,
        Some(_) => return Err(corrupt("traceEvent attributes is not an object")),
    };
    let map = retain_allowed(attributes.get_mut("retrievalResponse"), sources, "retrievalResponse")?;
    Ok(map.iter().filter(|m| m.is_none()).count() as u64)
}

#[cfg(test)]
#[path = "agentic_retrieve_tests.rs"]
mod tests;
