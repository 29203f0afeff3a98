//! ChatCompletions: OpenAI's Create chat completion, served by bedrock-runtime
//! at `/openai/v1/chat/completions` (docs/openai-compatible.md). One of the
//! model calls: its model is in the body.
//!
//! Before and after (tenant acme, `models = ["openai.gpt-oss-*"]`,
//! `model_map = { "openai.gpt-oss-20b-1:0" = "arn:...:application-inference-profile/acme-oss" }`,
//! `guardrail = { id = "gr-acme", version = "1" }`, `tokens_per_minute` set):
//!
//! ```text
//! {"model":"openai.gpt-oss-20b-1:0","messages":[..],"stream":true}
//! ->
//! {"model":"arn:...:application-inference-profile/acme-oss","messages":[..],"stream":true,
//!  "stream_options":{"include_usage":true}}
//! X-Amzn-Bedrock-GuardrailIdentifier: gr-acme
//! X-Amzn-Bedrock-GuardrailVersion: 1
//! ```
//!
//! - `model` is decided by the `models` allowlist as the client asked for it
//!   (403 `model_not_allowed`), then mapped by `model_map`.
//! - The tenant's guardrail is bound the way AWS documents for this API: the
//!   `X-Amzn-Bedrock-GuardrailIdentifier` and `-Version` headers (a client
//!   cannot send them: the validator refuses `x-amzn-*` headers here). The
//!   body member `amazon-bedrock-guardrailConfig` may only carry `tagSuffix`,
//!   and only with `guardrail.allow_guard_content` (input tags narrow what
//!   the guardrail evaluates); without a tenant guardrail it is refused.
//! - A streamed call of a tenant with `tokens_per_minute` gets
//!   `stream_options.include_usage = true`, so the stream ends with the
//!   chunk that reports usage and the tokens are charged.
//! - The body is forwarded as judged: re-serialised from the validated tree.

use super::{body_object, to_bytes, Ctx, Notes, RequestBody};
use crate::decide::{model_map, Resource};
use crate::error::ProxyError;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value};

/// The body member AWS reads for the guardrail of this API.
const GUARDRAIL_CONFIG: &str = "amazon-bedrock-guardrailConfig";

/// Whether the request asks for a streamed answer.
pub(super) fn streams(body: &RequestBody) -> bool {
    body.json.as_ref().and_then(|v| v.get("stream")).and_then(Value::as_bool) == Some(true)
}

pub(super) fn rewrite(ctx: &Ctx<'_>, headers: &mut HeaderMap, body: RequestBody, notes: &mut Notes) -> Result<Bytes, ProxyError> {
    let mut v = body.tree()?;
    // Validated already; a body from anywhere else is checked the same way.
    crate::validate::validate_value(ctx.op, &v)?;
    let obj = body_object(&mut v)?;
    let requested = obj
        .get("model")
        .and_then(Value::as_str)
        .ok_or_else(|| ProxyError::InvalidParameter("model is required and must be a string".into()))?
        .to_string();
    ctx.decide(Resource::Model(&requested))?;
    notes.resource = Some(requested.clone());
    let upstream = model_map::upstream_model(ctx.policy, ctx.principal, &requested)?;
    if upstream != requested {
        notes.upstream_resource = Some(upstream.clone());
        obj.insert("model".into(), Value::String(upstream));
    }
    bind_guardrail(ctx, obj, headers)?;
    if ctx.policy.rate_limit.tokens_per_minute > 0 && obj.get("stream") == Some(&Value::Bool(true)) {
        let so = obj.entry("stream_options").or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(so) = so {
            so.insert("include_usage".into(), Value::Bool(true));
        } else {
            return Err(ProxyError::InvalidParameter("stream_options must be an object".into()));
        }
    }
    to_bytes(&v)
}

fn bind_guardrail(ctx: &Ctx<'_>, obj: &mut Map<String, Value>, headers: &mut HeaderMap) -> Result<(), ProxyError> {
    let Some(g) = &ctx.policy.guardrail else {
        if obj.contains_key(GUARDRAIL_CONFIG) {
            return Err(ProxyError::InvalidParameter(format!(
                "{GUARDRAIL_CONFIG} configures a guardrail, and this tenant has none"
            )));
        }
        return Ok(());
    };
    match obj.get(GUARDRAIL_CONFIG) {
        None => {}
        Some(Value::Object(cfg)) => {
            for (k, val) in cfg {
                match k.as_str() {
                    "tagSuffix" if !g.allow_guard_content => {
                        return Err(ProxyError::InvalidParameter(format!(
                            "{GUARDRAIL_CONFIG}.tagSuffix: input tags narrow what the tenant's guardrail evaluates \
                             and are not allowed for this tenant (guardrail.allow_guard_content)"
                        )))
                    }
                    "tagSuffix" if val.is_string() => {}
                    _ => return Err(ProxyError::InvalidParameter(format!("{GUARDRAIL_CONFIG}.{k} is not allowed"))),
                }
            }
        }
        Some(_) => return Err(ProxyError::InvalidParameter(format!("{GUARDRAIL_CONFIG} must be an object"))),
    }
    super::model_calls::set_guardrail_headers(headers, g)
}

#[cfg(test)]
#[path = "chat_completions_tests.rs"]
mod tests;
