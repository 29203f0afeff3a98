//! Inline agents (docs/reference.md §5.3; docs/agents.md, "Inline agents"):
//! InvokeInlineAgent (`POST /agents/{sessionId}`), in the agents family.
//!
//! AWS takes the whole agent definition from the caller: instruction,
//! model, action groups (Lambdas), knowledge bases, guardrail. Here it comes
//! from the tenant's `inline_agent` configuration; the client sends only its
//! turn. What is enforced:
//! - a tenant without `inline_agent` is refused (403
//!   `operation_not_allowed`), before the body is read;
//! - the body may hold only [`CLIENT_MEMBERS`], and `inlineSessionState`
//!   only [`STATE_MEMBERS`]: any other member (`instruction`,
//!   `foundationModel`, `actionGroups`, `knowledgeBases`,
//!   `guardrailConfiguration`, `collaborators`, `promptOverrideConfiguration`,
//!   `customerEncryptionKeyArn`, ...) is 400 `invalid_parameter`, naming it.
//!   The validator already refused members outside the AWS model, members in
//!   another case and duplicate keys;
//! - `foundationModel` is the configured model, decided by `models` (403
//!   `model_not_allowed`) and sent as `model_map` maps it;
//! - `instruction` and `actionGroups` are the configured ones, rendered
//!   (string values as text; a claim the token lacks is 403
//!   `missing_claim`);
//! - `knowledgeBases`: each configured one, decided by
//!   `knowledge_base.allowed` (403 `knowledge_base_not_allowed`), with its
//!   configured description and the forced filter at
//!   `retrievalConfiguration.vectorSearchConfiguration.filter`, exactly as
//!   Retrieve gets it (`retrieval_filter`);
//! - `guardrailConfiguration` is the tenant's guardrail (none when it has
//!   none); `idleSessionTTLInSeconds` the configured one (or none);
//! - the session id in the path is namespaced as InvokeAgent's
//!   (`SessionKeys::agent_session_id`), the answer's
//!   `x-amz-bedrock-agent-session-id` is the client's own;
//! - `inlineSessionState.sessionAttributes` and `promptSessionAttributes`
//!   get what InvokeAgent's `sessionState` gets
//!   (`agents.session_attributes`, the token and credential injections);
//!   `files` are checked as InvokeAgent's (S3 sources under
//!   `allowed_source_prefixes`, 403 `location_not_allowed`).
//!
//! The answer is InvokeAgent's event stream and is filtered the same way
//! (`Post::Agent`): redaction, and an event citing a source outside the
//! tenant's prefixes ends the stream.
//!
//! Before (tenant `acme`, user `alice`, client session id `chat-42`):
//!
//! ```text
//! {"inputText": "Where is order 7?", "enableTrace": true,
//!  "inlineSessionState": {"sessionAttributes": {"tenantId": "globex", "locale": "de"}}}
//! ```
//!
//! After (path `/agents/tg-<40 hex>`; `inline_agent` with a model, an
//! instruction, one action group and knowledge base `KBPOOLED01`):
//!
//! ```text
//! {"inputText": "Where is order 7?", "enableTrace": true,
//!  "inlineSessionState": {"sessionAttributes": {"tenantId": "acme", "userId": "alice", "locale": "de"}},
//!  "foundationModel": "anthropic.claude-3-haiku-20240307-v1:0",
//!  "instruction": "You are the order assistant of acme. ...",
//!  "actionGroups": [{"actionGroupName": "orders", "actionGroupExecutor": {"lambda": "arn:..:function:orders-acme"}, ...}],
//!  "knowledgeBases": [{"knowledgeBaseId": "KBPOOLED01", "description": "Product manuals",
//!    "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": {"equals": {"key": "tenant_id", "value": "acme"}}}}}],
//!  "guardrailConfiguration": {"guardrailIdentifier": "gr-acme", "guardrailVersion": "3"}}
//! ```

use super::agents::{check_bedrock_id, check_files, ForcedAttributes};
use super::knowledge_bases::{kb_allowed, rewrite_retrieval_configuration, RewriteNote};
use super::{body_object, child_object, missing_claim, Ctx};
use crate::aws::credentials::TenantCredentials;
use crate::config::InlineAgentPolicy;
use crate::decide::{model_map, Resource};
use crate::error::ProxyError;
use crate::principal::Principal;
use crate::template::{JsonTemplate, MissingClaim};
use serde_json::{Map, Value};

/// What the client may send: its turn, and how it wants the answer.
pub const CLIENT_MEMBERS: &[&str] = &["inputText", "enableTrace", "endSession", "streamingConfigurations", "inlineSessionState"];
/// What the client may send in `inlineSessionState`: the session's
/// attributes (the tenant's are forced), results of actions the app ran
/// itself (`returnControlInvocationResults` with the `invocationId` they
/// answer), earlier turns, and files (S3 sources checked).
pub const STATE_MEMBERS: &[&str] = &[
    "sessionAttributes",
    "promptSessionAttributes",
    "returnControlInvocationResults",
    "invocationId",
    "conversationHistory",
    "files",
];

/// What the InvokeInlineAgent rewrite did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InlineRewrite {
    /// The session id to put in the upstream path.
    pub upstream_session_id: String,
    /// The configured model, and the one sent (after `model_map`).
    pub model: String,
    pub upstream_model: String,
    /// Knowledge bases sent, each with the forced filter.
    pub knowledge_bases: Vec<String>,
    /// Number of action groups sent.
    pub action_groups: usize,
    /// True when the tenant's guardrail was set.
    pub guardrail: bool,
    /// Names of the session attributes tenantgate set, and of client ones
    /// it removed (lookalikes of protected names).
    pub attributes_set: Vec<String>,
    pub attributes_removed: Vec<String>,
    /// Number of S3 input files checked against the prefixes.
    pub s3_files: usize,
}

/// The tenant's inline agent, or 403 `operation_not_allowed`.
pub fn definition<'p>(ctx: &Ctx<'p>) -> Result<&'p InlineAgentPolicy, ProxyError> {
    ctx.policy.inline_agent.as_ref().ok_or_else(|| {
        ProxyError::OperationNotAllowed(format!(
            "{} (tenant {:?} has no inline_agent configuration)",
            ctx.op.name(),
            ctx.principal.tenant
        ))
    })
}

fn not_from_client(member: &str, allowed: &[&str], path: &str) -> ProxyError {
    ProxyError::InvalidParameter(format!(
        "`{path}{}` may not be sent: the inline agent is defined by the tenant's configuration; \
         the client sends only {}",
        crate::validate::shown(member),
        allowed.join(", ")
    ))
}

/// A configured JSON tree with every string template rendered as text.
fn render_text(t: &JsonTemplate, p: &Principal) -> Result<Value, MissingClaim> {
    Ok(match t {
        JsonTemplate::Literal(v) => v.clone(),
        JsonTemplate::String(s) => Value::String(s.render(p)?),
        JsonTemplate::Array(items) => Value::Array(items.iter().map(|i| render_text(i, p)).collect::<Result<_, _>>()?),
        JsonTemplate::Object(entries) => {
            let mut m = Map::with_capacity(entries.len());
            for (k, v) in entries {
                m.insert(k.clone(), render_text(v, p)?);
            }
            Value::Object(m)
        }
    })
}

/// InvokeInlineAgent request rewrite; see the module doc. `creds` as for
/// `rewrite_invoke_agent`. On error the body may be partly rewritten and
/// must be discarded.
pub fn rewrite_inline_agent(
    ctx: &Ctx<'_>,
    client_session_id: &str,
    body: &mut Value,
    creds: Option<&TenantCredentials>,
) -> Result<InlineRewrite, ProxyError> {
    let def = definition(ctx)?;
    let principal = ctx.principal;
    check_bedrock_id(client_session_id, "sessionId")?;
    let obj = body_object(body)?;
    if let Some(k) = obj.keys().find(|k| !CLIENT_MEMBERS.contains(&k.as_str())) {
        return Err(not_from_client(k, CLIENT_MEMBERS, ""));
    }
    if let Some(Value::Object(state)) = obj.get("inlineSessionState") {
        if let Some(k) = state.keys().find(|k| !STATE_MEMBERS.contains(&k.as_str())) {
            return Err(not_from_client(k, STATE_MEMBERS, "inlineSessionState."));
        }
    }

    // Every decision and rendering, before the body changes.
    ctx.decide(Resource::Model(&def.foundation_model))?;
    let upstream_model = model_map::upstream_model(ctx.policy, principal, &def.foundation_model)?;
    let forced = ForcedAttributes::render(ctx, creds)?;
    let instruction = def.instruction.render(principal).map_err(missing_claim)?;
    let groups =
        def.action_groups.iter().map(|g| render_text(g, principal)).collect::<Result<Vec<_>, _>>().map_err(missing_claim)?;
    let mut kbs = Vec::with_capacity(def.knowledge_bases.len());
    let mut out = InlineRewrite {
        upstream_session_id: ctx.keys.agent_session_id(&principal.tenant, &principal.user, client_session_id),
        model: def.foundation_model.clone(),
        upstream_model: upstream_model.clone(),
        action_groups: groups.len(),
        ..InlineRewrite::default()
    };
    for (i, (id, description)) in def.knowledge_bases.iter().enumerate() {
        kb_allowed(ctx, id)?;
        let mut entry = Map::new();
        entry.insert("knowledgeBaseId".into(), Value::String(id.clone()));
        entry.insert("description".into(), Value::String(description.render(principal).map_err(missing_claim)?));
        rewrite_retrieval_configuration(&mut entry, &format!("knowledgeBases[{i}]"), ctx, &mut RewriteNote::default())?;
        kbs.push(Value::Object(entry));
        out.knowledge_bases.push(id.clone());
    }

    let state = child_object(obj, "inlineSessionState", "inlineSessionState")?;
    (out.attributes_set, out.attributes_removed) = forced.apply(state, "inlineSessionState")?;
    out.s3_files = check_files(state, "inlineSessionState", ctx)?;

    obj.insert("foundationModel".into(), Value::String(upstream_model));
    obj.insert("instruction".into(), Value::String(instruction));
    if !groups.is_empty() {
        obj.insert("actionGroups".into(), Value::Array(groups));
    }
    if !kbs.is_empty() {
        obj.insert("knowledgeBases".into(), Value::Array(kbs));
    }
    if let Some(g) = &ctx.policy.guardrail {
        obj.insert(
            "guardrailConfiguration".into(),
            serde_json::json!({ "guardrailIdentifier": g.id, "guardrailVersion": g.version }),
        );
        out.guardrail = true;
    }
    if let Some(ttl) = def.idle_session_ttl_secs {
        obj.insert("idleSessionTTLInSeconds".into(), Value::from(ttl));
    }
    Ok(out)
}

#[cfg(test)]
#[path = "inline_agent_tests.rs"]
mod tests;
