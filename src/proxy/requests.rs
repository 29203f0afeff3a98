//! The `rewrite` stage and the allowlist questions of the `authorize` stage:
//! what the request is changed into for its tenant, and which resources it
//! names are asked of the policy decision point (`crate::decide`).

use super::*;

impl Proxy {
    /// Rewrite the request for this tenant (docs/reference.md §5.1–§5.3). Returns the body
    /// to send and what the response needs.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rewrite(
        &self,
        route: &mut Route,
        headers: &mut HeaderMap,
        body: Bytes,
        mut json: Option<serde_json::Value>,
        principal: &Principal,
        policy: &TenantPolicy,
        creds: &crate::aws::credentials::TenantCredentials,
        rec: &mut AuditRecord,
    ) -> Result<(Bytes, Post), ProxyError> {
        use Operation::*;
        // The validated tree of a JSON-body operation (`validate_body`);
        // parsed here only if there is none (never, for a routed operation
        // with a JSON body).
        let tree = |json: Option<serde_json::Value>, body: &[u8]| json.map_or_else(|| parse_json_body(body), Ok);
        let to_bytes = |v: &serde_json::Value| {
            serde_json::to_vec(v).map(Bytes::from).map_err(|e| ProxyError::InvalidJson(e.to_string()))
        };
        let op = route.op;
        match &mut route.target {
            Target::Model(model) => {
                // Every spelling of a mapped model is mapped or denied
                // (`rewrite::model_map`).
                let upstream = rewrite::model_map::upstream_model(policy, principal, model)?;
                if upstream != *model {
                    rec.upstream_resource = Some(upstream.clone());
                    *model = upstream;
                }
                let body = rewrite::bedrock::rewrite_model_call(op, body, json.take(), headers, principal, policy)?;
                Ok((body, Post::Stream))
            }
            Target::Guardrail { .. } => Ok((body, Post::Stream)),
            Target::KnowledgeBase(kb) => {
                let mut v = tree(json.take(), &body)?;
                rewrite::knowledge_base::rewrite_retrieve(&mut v, kb, principal, policy)?;
                let prefixes = rewrite::render_source_prefixes(policy, principal)?;
                Ok((to_bytes(&v)?, Post::Retrieve { prefixes }))
            }
            Target::Nothing if op != Rerank => {
                let mut v = tree(json.take(), &body)?;
                let note = rewrite::knowledge_base::rewrite_retrieve_and_generate(
                    &mut v,
                    principal,
                    policy,
                    &self.session_keys,
                )?;
                if let Some(kb) = note.knowledge_base_id {
                    rec.resource = Some(kb);
                }
                let prefixes = rewrite::render_source_prefixes(policy, principal)?;
                let post = if op == RetrieveAndGenerate {
                    Post::Rag { prefixes }
                } else {
                    Post::RagStream { prefixes }
                };
                Ok((to_bytes(&v)?, post))
            }
            Target::Agent { agent, alias, session } => {
                let mut v = tree(json.take(), &body)?;
                let client_session_id = session.clone();
                let client_memory_id = v.get("memoryId").and_then(|m| m.as_str()).map(String::from);
                let inject = policy.agents.inject_scoped_credentials.then_some(creds);
                let out = rewrite::agent::rewrite_invoke_agent(
                    agent,
                    alias,
                    &client_session_id,
                    &mut v,
                    principal,
                    policy,
                    &self.session_keys,
                    inject,
                )?;
                *session = out.upstream_session_id;
                let prefixes = rewrite::render_source_prefixes(policy, principal)?;
                Ok((to_bytes(&v)?, Post::Agent { client_session_id, client_memory_id, prefixes }))
            }
            Target::Nothing => {
                // Forward what was judged: re-serialising collapses duplicate
                // keys, so upstream cannot read a model other than the one
                // checked.
                let v = tree(json.take(), &body)?;
                check_rerank_models(&v, principal, policy)?;
                Ok((to_bytes(&v)?, Post::Stream))
            }
            // Rewritten before the body was read (see `pipeline`).
            Target::Endpoint(_) => Ok((body, Post::Stream)),
        }
    }
}

/// Rerank (docs/reference.md §5.1): every model named in the body is checked.
pub(super) fn check_rerank_models(v: &serde_json::Value, principal: &Principal, policy: &TenantPolicy) -> Result<(), ProxyError> {
    let model = v
        .pointer("/rerankingConfiguration/bedrockRerankingConfiguration/modelConfiguration/modelArn")
        .ok_or_else(|| {
            ProxyError::InvalidParameter(
                "rerankingConfiguration.bedrockRerankingConfiguration.modelConfiguration.modelArn is required".into(),
            )
        })?
        .as_str()
        .ok_or_else(|| ProxyError::InvalidParameter("modelArn must be a string".into()))?;
    decide::check(principal, policy, Resource::Model(model))
}

/// Allowlists on what the path names (docs/reference.md §5.1), decided by
/// the policy decision point.
pub(super) fn authorize(route: &Route, principal: &Principal, policy: &TenantPolicy) -> Result<(), ProxyError> {
    match &route.target {
        Target::Model(model) => decide::check(principal, policy, Resource::Model(model)),
        Target::Guardrail { id, version } => decide::check(principal, policy, Resource::Guardrail { id, version }),
        _ => Ok(()),
    }
}
