//! Agents (docs/reference.md §5.3): InvokeAgent
//! (`POST /agents/{agentId}/agentAliases/{aliasId}/sessions/{sessionId}/text`);
//! GetAgentMemory and DeleteAgentMemory, whose rules are in
//! [`super::agent_memory`]; InvokeInlineAgent, whose rules are in
//! [`super::inline_agent`].
//!
//! What is enforced:
//! - `agentId/aliasId` matches one of `agents.allowed` (403 `agent_not_allowed`);
//! - the upstream session id is `SessionKeys::agent_session_id(tenant, user,
//!   client id)`, so no tenant or user can continue another's session; the
//!   body's `memoryId` is namespaced the same way (`agent_memory_id`);
//! - `sessionState.sessionAttributes` (what action-group Lambdas read) gets
//!   every rendered `agents.session_attributes` entry, `userJWT` (the
//!   verified token) when `inject_user_token`, and `accessKeyId`,
//!   `secretAccessKey`, `sessionToken` (the tenant-scoped credentials) when
//!   `inject_scoped_credentials`. Client values under those names are
//!   replaced; when an injection is off, a client-sent key of that name is
//!   removed, so a forged token or key never reaches an action group. Client
//!   keys equal to a protected name ignoring ASCII case (`TenantId`,
//!   `USERJWT`) are removed as lookalikes. Other client keys are kept;
//! - `sessionState.promptSessionAttributes` (text the model sees), when the
//!   client sends it: the same configured attributes are set there too, so
//!   the prompt cannot claim another tenant, and the token and credential
//!   names are removed; secrets are never injected into a prompt;
//! - `sessionState.knowledgeBaseConfigurations[]`: each knowledge base must be
//!   in `knowledge_base.allowed` and gets the forced tenant filter, as in
//!   Retrieve; every knowledge base of `agents.knowledge_bases` (those
//!   attached to the agent) the client did not configure gets an entry of its
//!   own holding just the forced filter, so the agent never queries it
//!   unfiltered;
//! - `sessionState.files[]`: an S3 `source` must be under the rendered
//!   `allowed_source_prefixes` (403 `location_not_allowed`), as for
//!   RetrieveAndGenerate external sources.
//!
//! Before (tenant `acme`, user `alice`, client session id `chat-42`,
//! `session_attributes = { tenantId = "{tenant}", userId = "{user}" }`,
//! `inject_user_token = false`):
//!
//! ```text
//! {"inputText": "refund order 7",
//!  "memoryId": "alice-memory",
//!  "sessionState": {"sessionAttributes": {"tenantId": "globex", "userJWT": "forged", "locale": "de"}}}
//! ```
//!
//! After (path session id `tg-` + 40 hex digits):
//!
//! ```text
//! {"inputText": "refund order 7",
//!  "memoryId": "tgm-5c0f...(40 hex digits)",
//!  "sessionState": {"sessionAttributes": {"tenantId": "acme", "userId": "alice", "locale": "de"}}}
//! ```

use super::agent_memory::rewrite_memory_query;
use super::inline_agent;
use super::knowledge_bases::{check_source, kb_allowed, rewrite_retrieval_configuration, RewriteNote};
use super::{body_object, child_object, missing_claim, opt_object, opt_str, to_bytes, Ctx, Hooks, Notes, PolicyQuestion, RequestBody, ResponseShape};
use crate::decide::cedar::PolicyResource;
use crate::aws::credentials::TenantCredentials;
use crate::error::ProxyError;
use crate::decide::{self, Resource};
use crate::filter::eventstream::StreamShape;
use crate::post::Post;
use crate::route::{Operation, Target};
use crate::usage::UsageSource;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::{Map, Value};

/// The agents family.
pub struct Agents;

/// The response headers that carry the session and memory ids.
const SESSION_HEADER: &str = "x-amz-bedrock-agent-session-id";
const MEMORY_HEADER: &str = "x-amz-bedrock-agent-memory-id";

impl Hooks for Agents {
    fn authorize(ctx: &Ctx<'_>, target: &Target) -> Result<(), ProxyError> {
        match target {
            // Decided in `rewrite`, once the body is validated (a malformed
            // body is 400 whatever it names).
            Target::Agent { .. } => Ok(()),
            // Agent memory has no body: decided from the path at once.
            Target::AgentAlias { agent, alias, .. } => ctx.decide(Resource::Agent { agent, alias }).map(|_| ()),
            // A tenant without an inline agent is refused before its body
            // is read.
            Target::InlineAgent { .. } => inline_agent::definition(ctx).map(|_| ()),
            _ => Err(super::foreign_target(ctx)),
        }
    }

    /// Agent memory: `memoryId` required and namespaced, `sessionId`
    /// namespaced (see `agent_memory`).
    fn rewrite_query(ctx: &Ctx<'_>, target: &mut Target, query: &mut Option<String>) -> Result<(), ProxyError> {
        match target {
            Target::Agent { .. } | Target::InlineAgent { .. } => Ok(()),
            Target::AgentAlias { memory, .. } => {
                let q = rewrite_memory_query(ctx, query.as_deref())?;
                *query = Some(q.query);
                *memory = Some(q.client_memory_id);
                Ok(())
            }
            _ => Err(super::foreign_target(ctx)),
        }
    }

    fn policy_question<'a>(
        ctx: &Ctx<'a>,
        target: &'a Target,
        _headers: &'a HeaderMap,
        _body: &'a RequestBody,
    ) -> Result<PolicyQuestion<'a>, ProxyError> {
        match target {
            Target::Agent { agent, alias, .. } | Target::AgentAlias { agent, alias, .. } => {
                ctx.decide(Resource::Agent { agent, alias })?;
                Ok(PolicyQuestion::of(PolicyResource::Agent { agent, alias }))
            }
            // The inline agent's model, as configured (the resource it
            // reaches; the client names none).
            Target::InlineAgent { .. } => {
                let model = &inline_agent::definition(ctx)?.foundation_model;
                ctx.decide(Resource::Model(model))?;
                Ok(PolicyQuestion::of(PolicyResource::Model(model)))
            }
            _ => Err(super::foreign_target(ctx)),
        }
    }

    fn rewrite(
        ctx: &Ctx<'_>,
        target: &mut Target,
        _headers: &mut HeaderMap,
        body: RequestBody,
        creds: &TenantCredentials,
        notes: &mut Notes,
    ) -> Result<(Bytes, Post), ProxyError> {
        if let Target::InlineAgent { session } = target {
            // The audit record names the configured model, refused or not.
            notes.resource = Some(inline_agent::definition(ctx)?.foundation_model.clone());
            let mut v = body.tree()?;
            let client_session_id = session.clone();
            let inject = ctx.policy.agents.inject_scoped_credentials.then_some(creds);
            let out = inline_agent::rewrite_inline_agent(ctx, &client_session_id, &mut v, inject)?;
            *session = out.upstream_session_id;
            if out.upstream_model != out.model {
                notes.upstream_resource = Some(out.upstream_model);
            }
            let prefixes = decide::source_prefixes(&ctx.request())?;
            return Ok((to_bytes(&v)?, Post::Agent { client_session_id, client_memory_id: None, prefixes }));
        }
        if let Target::AgentAlias { memory, .. } = target {
            // No body goes upstream (the model defines none); the answer is
            // filtered when it lists memory.
            let client = memory.clone().ok_or_else(|| super::foreign_target(ctx))?;
            let post = match ctx.op {
                Operation::GetAgentMemory => Post::AgentMemory {
                    upstream_memory_id: ctx.keys.agent_memory_id(&ctx.principal.tenant, &ctx.principal.user, &client),
                    client_memory_id: client,
                },
                _ => Post::Stream,
            };
            return Ok((Bytes::new(), post));
        }
        let Target::Agent { agent, alias, session } = target else {
            return Err(super::foreign_target(ctx));
        };
        let mut v = body.tree()?;
        let client_session_id = session.clone();
        let client_memory_id = v.get("memoryId").and_then(|m| m.as_str()).map(String::from);
        let inject = ctx.policy.agents.inject_scoped_credentials.then_some(creds);
        let out = rewrite_invoke_agent(ctx, agent, alias, &client_session_id, &mut v, inject)?;
        *session = out.upstream_session_id;
        let prefixes = decide::source_prefixes(&ctx.request())?;
        Ok((to_bytes(&v)?, Post::Agent { client_session_id, client_memory_id, prefixes }))
    }

    /// The app sees its own session id, and its own memory id (or none,
    /// when it sent none): the namespaced ones never go back.
    fn response_headers(_ctx: &Ctx<'_>, post: &Post, headers: &mut HeaderMap) {
        let Post::Agent { client_session_id, client_memory_id, .. } = post else { return };
        if let Ok(v) = HeaderValue::from_str(client_session_id) {
            headers.insert(SESSION_HEADER, v);
        }
        match client_memory_id.as_deref().map(HeaderValue::from_str) {
            Some(Ok(v)) => {
                headers.insert(MEMORY_HEADER, v);
            }
            _ => {
                headers.remove(MEMORY_HEADER);
            }
        }
    }

    fn response_shape(op: Operation) -> ResponseShape {
        match op {
            Operation::InvokeAgent | Operation::InvokeInlineAgent => {
                ResponseShape { usage: UsageSource::Headers, stream: StreamShape::Agent }
            }
            _ => ResponseShape::PLAIN,
        }
    }
}

/// Session attribute carrying the verified token.
pub const USER_JWT: &str = "userJWT";
/// Session attributes carrying the tenant-scoped credentials.
pub const CREDENTIAL_KEYS: [&str; 3] = ["accessKeyId", "secretAccessKey", "sessionToken"];

/// What the InvokeAgent rewrite did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentRewrite {
    /// The session id to put in the upstream path (the response's
    /// `x-amz-bedrock-agent-session-id` goes back as the client's own id).
    pub upstream_session_id: String,
    /// True when the body's `memoryId` was namespaced.
    pub memory_id_namespaced: bool,
    /// Names of the session attributes tenantgate set (never their values).
    pub attributes_set: Vec<String>,
    /// Names of client session attributes removed or replaced (forged
    /// values, lookalike names).
    pub attributes_removed: Vec<String>,
    /// Knowledge bases of `sessionState.knowledgeBaseConfigurations`, each
    /// allowed and filtered.
    pub knowledge_bases: Vec<String>,
    /// Of those, the ones added from `agents.knowledge_bases` (the client
    /// sent no configuration for them).
    pub knowledge_bases_added: Vec<String>,
    /// Models found in those configurations (all allowed).
    pub models: Vec<String>,
    /// Number of S3 input files checked against the prefixes.
    pub s3_files: usize,
}

/// Bedrock's constraint on session and memory ids: 2 to 100 of
/// `[0-9a-zA-Z._:-]`.
pub(super) fn check_bedrock_id(id: &str, what: &str) -> Result<(), ProxyError> {
    let ok = (2..=100).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ProxyError::InvalidParameter(format!("{what} must be 2 to 100 characters of [0-9a-zA-Z._:-]")))
    }
}

/// InvokeAgent request rewrite; see the module doc. `creds` are the
/// tenant-scoped credentials the request will be signed with (required when
/// `inject_scoped_credentials`, else 503 `credentials_unavailable`). On error
/// the body may be partly rewritten and must be discarded.
pub fn rewrite_invoke_agent(
    ctx: &Ctx<'_>,
    agent_id: &str,
    alias_id: &str,
    client_session_id: &str,
    body: &mut Value,
    creds: Option<&TenantCredentials>,
) -> Result<AgentRewrite, ProxyError> {
    let (principal, keys) = (ctx.principal, ctx.keys);
    ctx.decide(Resource::Agent { agent: agent_id, alias: alias_id })?;
    check_bedrock_id(client_session_id, "sessionId")?;
    let obj = body_object(body)?;

    // Everything that can fail on configuration or identity, before the
    // body changes.
    let forced = ForcedAttributes::render(ctx, creds)?;

    let mut out = AgentRewrite {
        upstream_session_id: keys.agent_session_id(&principal.tenant, &principal.user, client_session_id),
        ..AgentRewrite::default()
    };

    if let Some(memory) = opt_str(obj, "memoryId", "memoryId")? {
        check_bedrock_id(memory, "memoryId")?;
        let namespaced = keys.agent_memory_id(&principal.tenant, &principal.user, memory);
        obj.insert("memoryId".into(), Value::String(namespaced));
        out.memory_id_namespaced = true;
    }

    let state = child_object(obj, "sessionState", "sessionState")?;
    (out.attributes_set, out.attributes_removed) = forced.apply(state, "sessionState")?;
    rewrite_knowledge_bases(state, ctx, &mut out)?;
    out.s3_files = check_files(state, "sessionState", ctx)?;
    Ok(out)
}

/// The session attributes tenantgate owns in an agent session (InvokeAgent
/// `sessionState`, InvokeInlineAgent `inlineSessionState`), rendered before
/// the body changes: `agents.session_attributes`, and the verified token and
/// tenant-scoped credentials when their injection is on.
pub(super) struct ForcedAttributes {
    configured: Vec<(String, String)>,
    injected: Vec<(String, String)>,
}

impl ForcedAttributes {
    /// Renders them (403 `missing_claim`; 503 `credentials_unavailable`
    /// when credentials must be injected and there are none).
    pub(super) fn render(ctx: &Ctx<'_>, creds: Option<&TenantCredentials>) -> Result<Self, ProxyError> {
        let (principal, agents) = (ctx.principal, &ctx.policy.agents);
        let mut configured = Vec::with_capacity(agents.session_attributes.len());
        for (k, t) in &agents.session_attributes {
            configured.push((k.clone(), t.render(principal).map_err(missing_claim)?));
        }
        let mut injected: Vec<(String, String)> = Vec::new();
        if agents.inject_user_token {
            if let Some(token) = &principal.token {
                injected.push((USER_JWT.into(), token.expose().clone()));
            }
        }
        if agents.inject_scoped_credentials {
            let c = creds.ok_or_else(|| {
                ProxyError::CredentialsUnavailable("no tenant credentials to inject into the agent session".into())
            })?;
            injected.push((CREDENTIAL_KEYS[0].into(), c.0.access_key_id().to_string()));
            injected.push((CREDENTIAL_KEYS[1].into(), c.0.secret_access_key().to_string()));
            if let Some(t) = c.0.session_token() {
                injected.push((CREDENTIAL_KEYS[2].into(), t.to_string()));
            }
        }
        Ok(ForcedAttributes { configured, injected })
    }

    /// Sets them in `state.sessionAttributes` (created) and the configured
    /// ones in `state.promptSessionAttributes` (when sent), removing client
    /// keys equal to a protected name ignoring ASCII case; `path` names
    /// `state` in errors. Returns the names set and the names removed.
    pub(super) fn apply(&self, state: &mut Map<String, Value>, path: &str) -> Result<(Vec<String>, Vec<String>), ProxyError> {
        let protected: Vec<&str> =
            self.configured.iter().map(|(k, _)| k.as_str()).chain([USER_JWT]).chain(CREDENTIAL_KEYS).collect();
        let (mut set, mut removed) = (Vec::new(), Vec::new());
        let attrs = child_object(state, "sessionAttributes", &format!("{path}.sessionAttributes"))?;
        removed.extend(remove_protected(attrs, &protected));
        for (k, v) in self.configured.iter().chain(&self.injected) {
            attrs.insert(k.clone(), Value::String(v.clone()));
            set.push(k.clone());
        }
        if let Some(prompt) = opt_object(state, "promptSessionAttributes", &format!("{path}.promptSessionAttributes"))? {
            for k in remove_protected(prompt, &protected) {
                removed.push(format!("promptSessionAttributes.{k}"));
            }
            for (k, v) in &self.configured {
                prompt.insert(k.clone(), Value::String(v.clone()));
            }
        }
        Ok((set, removed))
    }
}

/// Removes every key equal to a protected name ignoring ASCII case; returns
/// the names removed.
fn remove_protected(map: &mut Map<String, Value>, protected: &[&str]) -> Vec<String> {
    let doomed: Vec<String> =
        map.keys().filter(|k| protected.iter().any(|p| p.eq_ignore_ascii_case(k))).cloned().collect();
    for k in &doomed {
        map.remove(k);
    }
    doomed
}

fn rewrite_knowledge_bases(
    state: &mut Map<String, Value>,
    ctx: &Ctx<'_>,
    out: &mut AgentRewrite,
) -> Result<(), ProxyError> {
    const PATH: &str = "sessionState.knowledgeBaseConfigurations";
    let attached = &ctx.policy.agents.knowledge_bases;
    let absent = state.get("knowledgeBaseConfigurations").is_none_or(Value::is_null);
    if absent && attached.is_empty() {
        return Ok(());
    }
    let slot = state.entry("knowledgeBaseConfigurations").or_insert(Value::Null);
    if absent {
        *slot = Value::Array(Vec::new());
    }
    let Value::Array(list) = slot else {
        return Err(ProxyError::InvalidParameter(format!("{PATH} must be an array")));
    };
    // The attached knowledge bases the client did not configure: an entry
    // each, filtered below like the client's own.
    for kb in attached {
        if !list.iter().any(|e| e.get("knowledgeBaseId").and_then(Value::as_str) == Some(kb.as_str())) {
            list.push(serde_json::json!({ "knowledgeBaseId": kb }));
            out.knowledge_bases_added.push(kb.clone());
        }
    }
    for (i, entry) in list.iter_mut().enumerate() {
        let path = format!("{PATH}[{i}]");
        let entry =
            entry.as_object_mut().ok_or_else(|| ProxyError::InvalidParameter(format!("{path} must be an object")))?;
        let kb = opt_str(entry, "knowledgeBaseId", &format!("{path}.knowledgeBaseId"))?
            .ok_or_else(|| ProxyError::InvalidParameter(format!("{path}.knowledgeBaseId is required")))?
            .to_string();
        kb_allowed(ctx, &kb)?;
        let mut note = RewriteNote::default();
        rewrite_retrieval_configuration(entry, &path, ctx, &mut note)?;
        out.models.extend(note.models);
        out.knowledge_bases.push(kb);
    }
    Ok(())
}

/// Every file of `state.files` (`state_path` names `state`): an S3 source
/// must be under the tenant's source prefixes. Returns the number of S3
/// files.
pub(super) fn check_files(state: &Map<String, Value>, state_path: &str, ctx: &Ctx<'_>) -> Result<usize, ProxyError> {
    let files = match state.get("files") {
        None | Some(Value::Null) => return Ok(0),
        Some(Value::Array(files)) => files,
        Some(_) => return Err(ProxyError::InvalidParameter(format!("{state_path}.files must be an array"))),
    };
    let mut s3 = 0;
    for (i, file) in files.iter().enumerate() {
        let path = format!("{state_path}.files[{i}]");
        let source = file
            .get("source")
            .filter(|s| !s.is_null())
            .ok_or_else(|| ProxyError::InvalidParameter(format!("{path}.source is required")))?;
        if check_source(ctx, source, &format!("{path}.source"))? {
            s3 += 1;
        }
    }
    Ok(s3)
}

#[cfg(test)]
#[path = "agents_tests.rs"]
mod tests;
