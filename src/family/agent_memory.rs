//! Agent memory (docs/reference.md §5.3): GetAgentMemory and
//! DeleteAgentMemory (`GET` / `DELETE
//! /agents/{agentId}/agentAliases/{agentAliasId}/memories`), in the agents
//! family.
//!
//! What is enforced:
//! - `agentId/aliasId` passes the decision InvokeAgent's does (403
//!   `agent_not_allowed`), before anything else;
//! - `memoryId` is required (400 `invalid_parameter`): without it AWS
//!   answers with, or deletes, the memory of every user of the alias. It
//!   must be 2 to 100 of `[0-9a-zA-Z._:-]`, sent once, and goes upstream as
//!   `SessionKeys::agent_memory_id(tenant, user, client id)`, the id
//!   InvokeAgent gives the same client `memoryId`: a user reaches only their
//!   own memory;
//! - DeleteAgentMemory's `sessionId`, when sent, goes upstream as
//!   `agent_session_id(tenant, user, client id)`, InvokeAgent's session id;
//! - every query parameter appears at most once; the others (`memoryType`,
//!   `maxItems`, `nextToken`) are kept as sent;
//! - GetAgentMemory's answer is read whole: every `memoryContents[]` entry
//!   that is not a `sessionSummary` of the namespaced id sent is dropped
//!   (counted in `x-tenantgate-dropped-results` and the audit record), and
//!   the namespaced id is given back as the client's own `memoryId`. The
//!   `sessionId` of each summary stays the upstream one (a one-way MAC of
//!   tenant, user and client session id; it cannot be mapped back). The
//!   summary text is model text: the JSON answer is redacted like any other.

use super::Ctx;
use crate::error::ProxyError;
use bytes::Bytes;
use percent_encoding::percent_decode_str;
use serde_json::Value;

/// The query parameters that carry ids.
const MEMORY_ID: &str = "memoryId";
const SESSION_ID: &str = "sessionId";

/// What the query rewrite decided: the client's memory id and the one sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryQuery {
    pub client_memory_id: String,
    pub upstream_memory_id: String,
    /// The query string to send.
    pub query: String,
}

fn decode(raw: &str, what: &str) -> Result<String, ProxyError> {
    let plus = raw.replace('+', " ");
    percent_decode_str(&plus)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ProxyError::InvalidParameter(format!("query parameter {what} is not valid UTF-8")))
}

/// Rewrites a GetAgentMemory / DeleteAgentMemory query string (already
/// checked against the operation's model): see the module doc.
pub fn rewrite_memory_query(ctx: &Ctx<'_>, query: Option<&str>) -> Result<MemoryQuery, ProxyError> {
    let (tenant, user) = (&ctx.principal.tenant, &ctx.principal.user);
    let mut seen: Vec<String> = Vec::new();
    let mut out: Vec<String> = Vec::new();
    let mut memory: Option<(String, String)> = None;
    for part in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = part.split_once('=').unwrap_or((part, ""));
        let name = decode(raw_name, "name")?;
        if seen.contains(&name) {
            return Err(ProxyError::InvalidParameter(format!("query parameter `{name}` is given more than once")));
        }
        seen.push(name.clone());
        match name.as_str() {
            MEMORY_ID => {
                let id = decode(raw_value, MEMORY_ID)?;
                super::agents::check_bedrock_id(&id, MEMORY_ID)?;
                let up = ctx.keys.agent_memory_id(tenant, user, &id);
                out.push(format!("{MEMORY_ID}={up}"));
                memory = Some((id, up));
            }
            SESSION_ID => {
                let id = decode(raw_value, SESSION_ID)?;
                super::agents::check_bedrock_id(&id, SESSION_ID)?;
                out.push(format!("{SESSION_ID}={}", ctx.keys.agent_session_id(tenant, user, &id)));
            }
            _ => out.push(part.to_string()),
        }
    }
    let (client_memory_id, upstream_memory_id) = memory.ok_or_else(|| {
        ProxyError::InvalidParameter(format!(
            "{} requires the query parameter memoryId: without it AWS would reach the memory of every user of the agent alias",
            ctx.op.name()
        ))
    })?;
    Ok(MemoryQuery { client_memory_id, upstream_memory_id, query: out.join("&") })
}

/// A GetAgentMemory answer as the client may see it: entries of another
/// memory id (or of an unknown kind) dropped, the namespaced id given back
/// as the client's. Returns the body and the number dropped; an answer that
/// is not a JSON object is 502.
pub fn filter_memory_response(body: &Bytes, upstream: &str, client: &str) -> Result<(Bytes, u64), ProxyError> {
    let bad = |m: &str| ProxyError::UpstreamError(format!("GetAgentMemory answer {m}"));
    let mut v: Value = serde_json::from_slice(body).map_err(|e| bad(&format!("is not JSON: {e}")))?;
    let obj = v.as_object_mut().ok_or_else(|| bad("is not a JSON object"))?;
    let mut dropped = 0u64;
    match obj.get_mut("memoryContents") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            let before = list.len();
            list.retain(|m| {
                m.get("sessionSummary").and_then(|s| s.get("memoryId")).and_then(Value::as_str) == Some(upstream)
                    && m.as_object().is_some_and(|o| o.len() == 1)
            });
            dropped = (before - list.len()) as u64;
            for m in list.iter_mut() {
                m["sessionSummary"]["memoryId"] = Value::String(client.to_string());
            }
        }
        Some(_) => return Err(bad("has a memoryContents that is not a list")),
    }
    let out = serde_json::to_vec(&v).map_err(|e| bad(&e.to_string()))?;
    Ok((Bytes::from(out), dropped))
}

#[cfg(test)]
#[path = "agent_memory_tests.rs"]
mod tests;
