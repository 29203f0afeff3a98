//! Bedrock runtime rewrites (docs/reference.md §5.1, after the model allowlist):
//! the tenant's guardrail is forced into every model call, and
//! `request_metadata` templates are set in Converse `requestMetadata`, so
//! invocation logs attribute every call to its tenant.
//!
//! Converse / ConverseStream, before and after (tenant acme, user alice,
//! `guardrail = { id = "gr-acme", version = "1" }`,
//! `request_metadata = { tenant = "{tenant}", user = "{user}" }`):
//!
//! ```text
//! {"messages":[..],"guardrailConfig":{"guardrailIdentifier":"gr-other","guardrailVersion":"7","trace":"enabled"},
//!  "requestMetadata":{"tenant":"globex","feature":"chat"}}
//! ->
//! {"messages":[..],"guardrailConfig":{"guardrailIdentifier":"gr-acme","guardrailVersion":"1","trace":"enabled"},
//!  "requestMetadata":{"tenant":"acme","feature":"chat","user":"alice"}}
//! ```
//!
//! ConverseStream also gets `"streamProcessingMode"` = the tenant's
//! `guardrail.stream_processing_mode` (default `"sync"`). The client keeps
//! only `trace` in `guardrailConfig` (any other member is 400), and
//! `guardContent` blocks in `messages[].content[]` / `system[]`, which would
//! make AWS evaluate only those blocks, are 400 unless
//! `guardrail.allow_guard_content`.
//!
//! InvokeModel and its stream: `X-Amzn-Bedrock-GuardrailIdentifier: gr-acme`
//! and `X-Amzn-Bedrock-GuardrailVersion: 1` replace whatever the client sent.
//! The body is model-specific and goes byte for byte, unless it is a JSON
//! object with `amazon-bedrock-guardrailConfig` (or the tenant streams
//! asynchronously): then that member is bound like Converse's (see
//! `rewrite_invoke_body`) and the body re-serialised.

use super::{body_object, child_object, missing_claim, parse_json_body, to_bytes, Ctx, Hooks, Notes, PolicyQuestion, RequestBody, ResponseShape};
use crate::decide::cedar::PolicyResource;
use crate::aws::credentials::TenantCredentials;
use crate::config::{Guardrail, StreamProcessingMode, TenantPolicy};
use crate::decide::{model_map, Resource};
use crate::error::ProxyError;
use crate::filter::eventstream::StreamShape;
use crate::post::Post;
use crate::principal::Principal;
use crate::route::{Operation, Target};
use crate::usage::UsageSource;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

/// Model calls: the operations that name a model in the path, and Rerank
/// and OptimizePrompt, which name their model in the body.
pub struct ModelCalls;

impl Hooks for ModelCalls {
    fn authorize(ctx: &Ctx<'_>, target: &Target) -> Result<(), ProxyError> {
        match target {
            Target::Model(model) => ctx.decide(Resource::Model(model)).map(drop),
            // Rerank: the model is in the body (`rewrite`).
            _ => Ok(()),
        }
    }

    fn policy_question<'a>(
        ctx: &Ctx<'_>,
        target: &'a Target,
        headers: &'a HeaderMap,
        body: &'a RequestBody,
    ) -> Result<PolicyQuestion<'a>, ProxyError> {
        let model = match target {
            Target::Model(m) => m.as_str(),
            _ => {
                // Rerank, OptimizePrompt: its model, decided by the
                // allowlist first.
                let v = body.json.as_ref();
                let m = v
                    .and_then(|v| v.pointer(body_model_pointer(ctx.op)))
                    .and_then(Value::as_str)
                    .ok_or_else(|| ProxyError::InvalidParameter(format!("{} names no model", ctx.op.name())))?;
                ctx.decide(Resource::Model(m))?;
                m
            }
        };
        let mut q = PolicyQuestion::of(PolicyResource::Model(model));
        match ctx.op {
            Operation::Converse | Operation::ConverseStream => {
                let v = body.json.as_ref();
                q.max_tokens = converse_max_tokens(v)?;
                q.service_tier = v.and_then(|v| v.pointer("/serviceTier/type")).and_then(Value::as_str).map(String::from);
            }
            Operation::InvokeModel | Operation::InvokeModelWithResponseStream => {
                q.max_tokens = invoke_max_tokens(&body.bytes)?;
                q.service_tier = single_header(headers, SERVICE_TIER_HEADER)?;
            }
            Operation::ChatCompletions => {
                // `max_tokens` or `max_completion_tokens`, stated once.
                q.max_tokens = invoke_max_tokens(&body.bytes)?;
                q.service_tier = body.json.as_ref().and_then(|v| v.get("service_tier")).and_then(Value::as_str).map(String::from);
                q.streaming = Some(super::chat_completions::streams(body));
            }
            _ => {}
        }
        Ok(q)
    }

    fn rewrite(
        ctx: &Ctx<'_>,
        target: &mut Target,
        headers: &mut HeaderMap,
        body: RequestBody,
        _creds: &TenantCredentials,
        notes: &mut Notes,
    ) -> Result<(Bytes, Post), ProxyError> {
        match target {
            Target::Model(model) => {
                // Every spelling of a mapped model is mapped or denied
                // (`decide::model_map`), after the allowlist judged the id
                // the app asked for.
                let upstream = model_map::upstream_model(ctx.policy, ctx.principal, model)?;
                if upstream != *model {
                    notes.upstream_resource = Some(upstream.clone());
                    *model = upstream;
                }
                let out = rewrite_model_call(ctx.op, body.bytes, body.json, headers, ctx.principal, ctx.policy)?;
                Ok((out, Post::Stream))
            }
            _ if ctx.op == Operation::ChatCompletions => {
                let out = super::chat_completions::rewrite(ctx, headers, body, notes)?;
                Ok((out, Post::Stream))
            }
            _ => {
                // Rerank, OptimizePrompt. Forward what was judged:
                // re-serialising collapses duplicate keys, so upstream
                // cannot read a model other than the one checked.
                let v = body.tree()?;
                let model = match ctx.op {
                    Operation::OptimizePrompt => check_optimize_prompt_model(ctx, &v)?,
                    _ => check_rerank_model(ctx, &v)?,
                };
                // The audit record's resource: the path names none.
                notes.resource = Some(model.to_string());
                Ok((to_bytes(&v)?, Post::Stream))
            }
        }
    }

    fn response_shape(op: Operation) -> ResponseShape {
        match op {
            Operation::Converse => ResponseShape { usage: UsageSource::ConverseBody, stream: StreamShape::Other },
            Operation::ConverseStream => ResponseShape { usage: UsageSource::ConverseEvents, stream: StreamShape::Converse },
            Operation::InvokeModelWithResponseStream => {
                ResponseShape { usage: UsageSource::ModelChunks, stream: StreamShape::Model }
            }
            // A JSON answer, or server-sent events whose `data` are model
            // chunks, depending on the body's `stream`.
            Operation::ChatCompletions => {
                ResponseShape { usage: UsageSource::ChatCompletions, stream: StreamShape::ChatCompletions }
            }
            _ => ResponseShape::PLAIN,
        }
    }
}

/// InvokeModel's service tier header.
const SERVICE_TIER_HEADER: &str = "x-amzn-bedrock-service-tier";

/// Where an InvokeModel body states its output token limit, by provider:
/// top-level members (Anthropic, Mistral, Cohere, AI21, DeepSeek
/// `max_tokens`; Claude text completions `max_tokens_to_sample`; Meta
/// `max_gen_len`; OpenAI-style `max_completion_tokens`; `maxTokens`,
/// `max_new_tokens`), and members of one nested object (Nova
/// `inferenceConfig.maxTokens` / `.max_new_tokens`, Titan
/// `textGenerationConfig.maxTokenCount`). Names are compared in ASCII lower
/// case with `_` and `-` removed, so a spelling in other case (which some
/// model servers accept) counts as stating the limit.
pub const INVOKE_MAX_TOKEN_KEYS: [&str; 5] = ["maxtokens", "maxtokenstosample", "maxgenlen", "maxcompletiontokens", "maxnewtokens"];
const INVOKE_MAX_TOKEN_NESTED: [(&str, &[&str]); 2] =
    [("inferenceconfig", &["maxtokens", "maxnewtokens"]), ("textgenerationconfig", &["maxtokencount"])];

fn folded(key: &str) -> String {
    key.chars().filter(|c| *c != '_' && *c != '-').map(|c| c.to_ascii_lowercase()).collect()
}

/// The values of the members named `keys` (folded) in one JSON object; with
/// `nested`, also those inside the nested objects it names. Every copy is
/// kept (a key sent twice yields two values).
struct Limits<'k> {
    keys: &'k [&'k str],
    nested: &'k [(&'k str, &'k [&'k str])],
}

impl<'de> serde::de::DeserializeSeed<'de> for Limits<'_> {
    type Value = Vec<Value>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Vec<Value>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Limits<'_> {
    type Value = Vec<Value>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Vec<Value>, A::Error> {
        let mut found = Vec::new();
        while let Some(k) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let k = folded(&k);
            if self.keys.contains(&k.as_str()) {
                found.push(map.next_value::<Value>()?);
            } else if let Some((_, inner)) = self.nested.iter().find(|(c, _)| *c == k) {
                found.extend(map.next_value_seed(Limits { keys: inner, nested: &[] })?);
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
            }
        }
        Ok(found)
    }
    // Anything but an object states no limit.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(Vec::new())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }
    fn visit_str<E>(self, _: &str) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }
    fn visit_unit<E>(self) -> Result<Vec<Value>, E> {
        Ok(Vec::new())
    }
}

/// The output token limit an InvokeModel body states
/// ([`INVOKE_MAX_TOKEN_KEYS`]). Stated more than once (two of the members,
/// one member twice, or in two spellings: the model may read another copy
/// than the policy) or not as a whole number: 400. A body that opens no
/// JSON object states none; one that opens like an object but that the
/// sidecar cannot read (a byte order mark, trailing text after the object,
/// which other JSON readers accept) is 400: the model might read a limit
/// the policy never saw.
pub fn invoke_max_tokens(body: &[u8]) -> Result<Option<i64>, ProxyError> {
    use serde::de::DeserializeSeed;
    let mut de = serde_json::Deserializer::from_slice(body);
    let limits = Limits { keys: &INVOKE_MAX_TOKEN_KEYS, nested: &INVOKE_MAX_TOKEN_NESTED };
    let found = match limits.deserialize(&mut de).and_then(|f| de.end().map(|()| f)) {
        Ok(found) => found,
        Err(e) if opens_an_object(body) => {
            return Err(ProxyError::InvalidParameter(format!(
                "the body opens a JSON object the sidecar cannot read ({e}): its output token limit is unknown"
            )));
        }
        Err(_) => return Ok(None),
    };
    match found.as_slice() {
        [] => Ok(None),
        [v] => v.as_i64().filter(|n| *n >= 0).map(Some).ok_or_else(|| {
            ProxyError::InvalidParameter("the body's output token limit must be a whole number".into())
        }),
        _ => Err(ProxyError::InvalidParameter(
            "the body states its output token limit more than once (max_tokens, max_tokens_to_sample, max_gen_len, \
             max_completion_tokens, maxTokens, max_new_tokens, inferenceConfig.maxTokens, \
             textGenerationConfig.maxTokenCount, in any case); state it once"
                .into(),
        )),
    }
}

/// The output token limit a Converse body states: `inferenceConfig.maxTokens`,
/// or a model-specific limit in `additionalModelRequestFields` (which the
/// model also reads) spelled as in an InvokeModel body. Both, or the
/// latter twice: 400, as for InvokeModel. (The body was parsed strictly:
/// no key in it is duplicated.)
fn converse_max_tokens(body: Option<&Value>) -> Result<Option<i64>, ProxyError> {
    let mut found: Vec<&Value> = Vec::new();
    if let Some(v) = body.and_then(|v| v.pointer("/inferenceConfig/maxTokens")) {
        found.push(v);
    }
    if let Some(Value::Object(extra)) = body.and_then(|v| v.get("additionalModelRequestFields")) {
        for (k, v) in extra {
            let k = folded(k);
            if INVOKE_MAX_TOKEN_KEYS.contains(&k.as_str()) {
                found.push(v);
            } else if let (Some((_, inner)), Value::Object(o)) = (INVOKE_MAX_TOKEN_NESTED.iter().find(|(c, _)| *c == k), v) {
                found.extend(o.iter().filter(|(k2, _)| inner.contains(&folded(k2).as_str())).map(|(_, v2)| v2));
            }
        }
    }
    match found.as_slice() {
        [] => Ok(None),
        [v] => v.as_i64().filter(|n| *n >= 0).map(Some).ok_or_else(|| {
            ProxyError::InvalidParameter("the body's output token limit must be a whole number".into())
        }),
        _ => Err(ProxyError::InvalidParameter(
            "the body states its output token limit more than once (inferenceConfig.maxTokens, and a limit in \
             additionalModelRequestFields); state it once"
                .into(),
        )),
    }
}

/// The single value of a header, if sent; 400 when repeated or not text.
fn single_header(headers: &HeaderMap, name: &str) -> Result<Option<String>, ProxyError> {
    let mut all = headers.get_all(name).iter();
    let Some(v) = all.next() else { return Ok(None) };
    if all.next().is_some() {
        return Err(ProxyError::InvalidParameter(format!("request header {name} must appear at most once")));
    }
    v.to_str()
        .map(|s| Some(s.to_string()))
        .map_err(|_| ProxyError::InvalidParameter(format!("request header {name} must be visible ASCII")))
}

/// The tenant's guardrail in the headers AWS reads it from (InvokeModel,
/// its stream, and the OpenAI-compatible Chat Completions), replacing the
/// client's.
pub(crate) fn set_guardrail_headers(headers: &mut HeaderMap, g: &crate::config::Guardrail) -> Result<(), ProxyError> {
    let id = HeaderValue::from_str(&g.id)
        .map_err(|_| ProxyError::InvalidParameter("guardrail id is not a valid header value".into()))?;
    let ver = HeaderValue::from_str(&g.version)
        .map_err(|_| ProxyError::InvalidParameter("guardrail version is not a valid header value".into()))?;
    headers.insert(crate::aws::headers::GUARDRAIL_IDENTIFIER, id);
    headers.insert(crate::aws::headers::GUARDRAIL_VERSION, ver);
    Ok(())
}

/// Where a body names the model of an operation whose path names none.
fn body_model_pointer(op: Operation) -> &'static str {
    match op {
        Operation::OptimizePrompt => "/targetModelId",
        Operation::ChatCompletions => "/model",
        _ => "/rerankingConfiguration/bedrockRerankingConfiguration/modelConfiguration/modelArn",
    }
}

/// OptimizePrompt (docs/reference.md §5.1): `targetModelId` is decided by
/// the model allowlist, as requested. `model_map` does not apply: the model
/// is only the one the prompt is written for, and OptimizePrompt takes
/// base model ids (and custom or provisioned model ARNs), not the
/// inference profiles a map usually points to. The answer (an event stream
/// of `analyzePromptEvent` and `optimizedPromptEvent`, each carrying a whole
/// text) is redacted event by event (`StreamShape::Other`).
fn check_optimize_prompt_model<'v>(ctx: &Ctx<'_>, v: &'v Value) -> Result<&'v str, ProxyError> {
    let model = v
        .get("targetModelId")
        .ok_or_else(|| ProxyError::InvalidParameter("targetModelId is required".into()))?
        .as_str()
        .ok_or_else(|| ProxyError::InvalidParameter("targetModelId must be a string".into()))?;
    ctx.decide(Resource::Model(model))?;
    Ok(model)
}

/// Rerank (docs/reference.md §5.1): the reranking model named in the body is
/// decided like a path model.
fn check_rerank_model<'v>(ctx: &Ctx<'_>, v: &'v Value) -> Result<&'v str, ProxyError> {
    let model = v
        .pointer("/rerankingConfiguration/bedrockRerankingConfiguration/modelConfiguration/modelArn")
        .ok_or_else(|| {
            ProxyError::InvalidParameter(
                "rerankingConfiguration.bedrockRerankingConfiguration.modelConfiguration.modelArn is required".into(),
            )
        })?
        .as_str()
        .ok_or_else(|| ProxyError::InvalidParameter("modelArn must be a string".into()))?;
    ctx.decide(Resource::Model(model))?;
    Ok(model)
}

/// Rewrite one Bedrock runtime model call. Returns the body to send (the
/// original bytes when nothing in it had to change).
pub fn rewrite_model_call(
    op: Operation,
    body: Bytes,
    json: Option<Value>,
    headers: &mut HeaderMap,
    principal: &Principal,
    policy: &TenantPolicy,
) -> Result<Bytes, ProxyError> {
    match op {
        Operation::Converse | Operation::ConverseStream => {
            if policy.guardrail.is_none() && policy.request_metadata.is_empty() {
                return Ok(body);
            }
            // The validated tree when the pipeline has one.
            let mut v = json.map_or_else(|| parse_json_body(&body), Ok)?;
            rewrite_converse(op, &mut v, principal, policy)?;
            serde_json::to_vec(&v)
                .map(Bytes::from)
                .map_err(|e| ProxyError::InvalidJson(e.to_string()))
        }
        Operation::InvokeModel | Operation::InvokeModelWithResponseStream => {
            let Some(g) = &policy.guardrail else { return Ok(body) };
            set_guardrail_headers(headers, g)?;
            rewrite_invoke_body(op, body, g)
        }
        _ => Ok(body),
    }
}

/// The body member of InvokeModel(+stream) that configures the guardrail
/// (`tagSuffix` for input tags, `streamProcessingMode`).
const INVOKE_GUARDRAIL_CONFIG: &str = "amazon-bedrock-guardrailConfig";

/// InvokeModel bodies are model-specific and forwarded byte for byte, except
/// for the one member AWS reads for the guardrail itself, in a JSON object
/// body: `amazon-bedrock-guardrailConfig.tagSuffix` (input tags, which
/// narrow what is evaluated) is refused unless `allow_guard_content`; on the
/// stream, `streamProcessingMode` is the tenant's (`SYNCHRONOUS` unless
/// `async`). A body that is not a JSON object carries no such member and
/// goes as sent; one that opens like an object and may name the member but
/// that the sidecar cannot read (nesting past the parser's limit, a lone
/// surrogate escape, which other JSON readers accept) is refused, never
/// forwarded unjudged.
fn rewrite_invoke_body(op: Operation, body: Bytes, g: &Guardrail) -> Result<Bytes, ProxyError> {
    let stream = op == Operation::InvokeModelWithResponseStream;
    let async_mode = stream && g.stream_processing_mode == StreamProcessingMode::Async;
    let may_name = may_name_guardrail_config(&body);
    if !async_mode && !may_name {
        return Ok(body);
    }
    let mut obj = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => return Ok(body),
        Err(e) if may_name && opens_an_object(&body) => {
            return Err(ProxyError::InvalidParameter(format!(
                "the body may carry {INVOKE_GUARDRAIL_CONFIG} but is not JSON the sidecar can read ({e})"
            )));
        }
        Err(_) => return Ok(body),
    };
    // Any case of the name: a lenient reader upstream must not find one the
    // sidecar did not judge.
    let keys: Vec<String> =
        obj.keys().filter(|k| k.eq_ignore_ascii_case(INVOKE_GUARDRAIL_CONFIG)).cloned().collect();
    if keys.is_empty() && !async_mode {
        return Ok(body);
    }
    let mut cfg = Map::new();
    for k in keys {
        if k != INVOKE_GUARDRAIL_CONFIG {
            return Err(ProxyError::InvalidParameter(format!("unknown body member {k:?}")));
        }
        match obj.remove(&k) {
            Some(Value::Object(m)) => cfg = m,
            Some(Value::Null) | None => {}
            Some(_) => return Err(ProxyError::InvalidParameter(format!("{k} must be an object"))),
        }
    }
    for (k, val) in &cfg {
        match k.as_str() {
            "tagSuffix" if !g.allow_guard_content => {
                return Err(ProxyError::InvalidParameter(format!(
                    "{INVOKE_GUARDRAIL_CONFIG}.tagSuffix: input tags narrow what the tenant's guardrail evaluates \
                     and are not allowed for this tenant (guardrail.allow_guard_content)"
                )));
            }
            "tagSuffix" | "streamProcessingMode" if val.is_string() => {}
            _ => return Err(ProxyError::InvalidParameter(format!("{INVOKE_GUARDRAIL_CONFIG}.{k} is not allowed"))),
        }
    }
    if stream {
        let mode = if async_mode { "ASYNCHRONOUS" } else { "SYNCHRONOUS" };
        cfg.insert("streamProcessingMode".into(), Value::String(mode.into()));
    } else {
        cfg.remove("streamProcessingMode");
    }
    obj.insert(INVOKE_GUARDRAIL_CONFIG.into(), Value::Object(cfg));
    serde_json::to_vec(&obj).map(Bytes::from).map_err(|e| ProxyError::InvalidJson(e.to_string()))
}

/// False only when no JSON key in `body` can decode to any case of
/// `amazon-bedrock-guardrailConfig`: the name does not appear (in any case)
/// and there is no `\u` escape that could spell it. Spares parsing large
/// model bodies that cannot carry the member.
/// True when `body`, after an optional UTF-8 byte order mark and JSON
/// whitespace, starts with `{`: a JSON reader upstream could find members
/// in it.
fn opens_an_object(body: &[u8]) -> bool {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    body.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r')) == Some(&b'{')
}

fn may_name_guardrail_config(body: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"guardrailconfig";
    body.windows(2).any(|w| w == b"\\u")
        || body.windows(NEEDLE.len()).any(|w| w.eq_ignore_ascii_case(NEEDLE))
}

/// Members of the client's Converse `guardrailConfig` it may keep: `trace`
/// only changes what the answer reports about the evaluation, never what is
/// evaluated. Identifier, version and (ConverseStream) stream processing
/// mode are the tenant's; any other member is refused.
const CLIENT_GUARDRAIL_MEMBERS: &[&str] = &["trace"];

fn rewrite_converse(
    op: Operation,
    v: &mut Value,
    principal: &Principal,
    policy: &TenantPolicy,
) -> Result<(), ProxyError> {
    let obj = body_object(v)?;
    if let Some(g) = &policy.guardrail {
        if !g.allow_guard_content {
            refuse_guard_content(obj)?;
        }
        let gc = child_object(obj, "guardrailConfig", "guardrailConfig")?;
        let mut forced = Map::new();
        forced.insert("guardrailIdentifier".into(), Value::String(g.id.clone()));
        forced.insert("guardrailVersion".into(), Value::String(g.version.clone()));
        if op == Operation::ConverseStream {
            forced.insert("streamProcessingMode".into(), Value::String(g.stream_processing_mode.as_str().into()));
        }
        for (k, val) in std::mem::take(gc) {
            if forced.contains_key(&k) {
                continue;
            }
            if !CLIENT_GUARDRAIL_MEMBERS.contains(&k.as_str()) {
                return Err(ProxyError::InvalidParameter(format!(
                    "guardrailConfig.{k} is not allowed: the guardrail is set by the sidecar"
                )));
            }
            forced.insert(k, val);
        }
        *gc = forced;
    }
    if !policy.request_metadata.is_empty() {
        // Render everything first: a missing claim must leave nothing half-done.
        let mut rendered = Vec::with_capacity(policy.request_metadata.len());
        for (k, t) in &policy.request_metadata {
            rendered.push((k.clone(), t.render(principal).map_err(missing_claim)?));
        }
        let md = child_object(obj, "requestMetadata", "requestMetadata")?;
        for (k, val) in rendered {
            md.insert(k, Value::String(val));
        }
    }
    Ok(())
}

/// `guardContent` blocks in `messages[].content[]` or `system[]` make the
/// guardrail evaluate only them (the rest of the input is not checked), so
/// under a forced guardrail they are refused unless the tenant allows them.
/// The member name is matched in any case.
fn refuse_guard_content(obj: &Map<String, Value>) -> Result<(), ProxyError> {
    let is_guard = |block: &Value| {
        block.as_object().is_some_and(|b| b.keys().any(|k| k.eq_ignore_ascii_case("guardContent")))
    };
    let refuse = |path: String| {
        Err(ProxyError::InvalidParameter(format!(
            "{path}.guardContent: guardContent blocks narrow what the tenant's guardrail evaluates \
             and are not allowed for this tenant (guardrail.allow_guard_content)"
        )))
    };
    if let Some(Value::Array(system)) = obj.get("system") {
        if let Some(i) = system.iter().position(is_guard) {
            return refuse(format!("system[{i}]"));
        }
    }
    if let Some(Value::Array(messages)) = obj.get("messages") {
        for (m, msg) in messages.iter().enumerate() {
            if let Some(Value::Array(content)) = msg.get("content") {
                if let Some(i) = content.iter().position(is_guard) {
                    return refuse(format!("messages[{m}].content[{i}]"));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "model_calls_tests.rs"]
mod tests;
