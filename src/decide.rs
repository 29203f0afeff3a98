//! The policy decision point: every allow/deny decision about a resource a
//! request names — a model (or inference profile), the tenant's guardrail, a
//! knowledge base, an agent alias — is made here, from the verified
//! principal, the tenant's policy and the resource, so the whole allowlist
//! policy reads in one place (docs/reference.md §5). The pipeline's
//! `authorize` step asks about what the path names; the rewrites ask about
//! what they find in a body, before they change anything.
//!
//! SageMaker endpoint and target-model decisions (logical names rendered
//! from templates) and source-location checks still live with their
//! rewrites in `rewrite::sagemaker` and `rewrite::knowledge_base`.

use crate::config::TenantPolicy;
use crate::error::ProxyError;
use crate::principal::Principal;
use crate::rewrite::model_map::foundation_model_id;

/// What a request names, as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// A model id, foundation-model ARN, or inference profile.
    Model(&'a str),
    /// A guardrail identifier and version (ApplyGuardrail's path).
    Guardrail { id: &'a str, version: &'a str },
    KnowledgeBase(&'a str),
    Agent { agent: &'a str, alias: &'a str },
}

/// Allowed, or the 403 the client gets.
pub fn check(principal: &Principal, policy: &TenantPolicy, resource: Resource<'_>) -> Result<(), ProxyError> {
    let tenant = || principal.tenant.clone();
    match resource {
        Resource::Model(model) => {
            if model_allowed(policy, model) {
                Ok(())
            } else {
                Err(ProxyError::ModelNotAllowed { model: model.to_string(), tenant: tenant() })
            }
        }
        Resource::Guardrail { id, version } => {
            // Only the tenant's own guardrail, at its configured version.
            let own = policy.guardrail.as_ref().is_some_and(|g| g.id == id && g.version == version);
            if own {
                Ok(())
            } else {
                Err(ProxyError::GuardrailNotAllowed { tenant: tenant() })
            }
        }
        Resource::KnowledgeBase(kb) => {
            if policy.knowledge_base.allowed.iter().any(|k| k == kb) {
                Ok(())
            } else {
                Err(ProxyError::KnowledgeBaseNotAllowed { kb: kb.to_string(), tenant: tenant() })
            }
        }
        Resource::Agent { agent, alias } => {
            let resource = format!("{agent}/{alias}");
            if policy.agents.allowed.iter().any(|g| g.matches(&resource)) {
                Ok(())
            } else {
                Err(ProxyError::AgentNotAllowed { agent: resource, tenant: tenant() })
            }
        }
    }
}

/// docs/reference.md §5.1: a model id matches the tenant's globs; a
/// foundation-model ARN also matches on its bare model id.
fn model_allowed(policy: &TenantPolicy, model: &str) -> bool {
    let bare = foundation_model_id(model);
    policy.models.iter().any(|g| g.matches(model) || bare.is_some_and(|b| g.matches(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glob::Glob;

    fn policy(models: &[&str]) -> TenantPolicy {
        let mut p = crate::config::parse_str("[aws]\nregion='us-east-1'\n[identity]\nmode='static'\ntenant='t'\n[credentials]\nsource='static'\n[tenant_defaults]\nallow_unlisted=true\n[tenant_defaults.static_credentials]\naccess_key_id_env='A'\nsecret_access_key_env='B'\n", std::path::Path::new("."))
            .map(|c| (**c.unlisted.as_ref().unwrap()).clone())
            .unwrap();
        p.models = models.iter().map(|m| Glob::new(m).unwrap()).collect();
        p
    }

    #[test]
    fn foundation_model_arns_match_on_the_bare_id_too() {
        let p = policy(&["anthropic.claude-3-haiku-*"]);
        assert!(model_allowed(&p, "anthropic.claude-3-haiku-20240307-v1:0"));
        assert!(model_allowed(&p, "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"));
        // Not a foundation-model ARN: the bare-id rule does not apply.
        assert!(!model_allowed(&p, "arn:aws:bedrock:us-east-1:111122223333:inference-profile/anthropic.claude-3-haiku-20240307-v1:0"));
        assert!(!model_allowed(&p, "anthropic.claude-3-sonnet-20240229-v1:0"));
    }

    #[test]
    fn empty_model_list_allows_nothing() {
        let p = policy(&[]);
        assert!(!model_allowed(&p, "anthropic.claude-3-haiku-20240307-v1:0"));
    }

    #[test]
    fn each_resource_kind_is_decided_against_its_own_list() {
        let p = policy(&["m1"]);
        let who = Principal::static_tenant("t");
        assert!(check(&who, &p, Resource::Model("m1")).is_ok());
        assert!(matches!(check(&who, &p, Resource::Model("m2")), Err(ProxyError::ModelNotAllowed { .. })));
        assert!(matches!(check(&who, &p, Resource::KnowledgeBase("KB1")), Err(ProxyError::KnowledgeBaseNotAllowed { .. })));
        assert!(matches!(check(&who, &p, Resource::Agent { agent: "A", alias: "B" }), Err(ProxyError::AgentNotAllowed { .. })));
        assert!(matches!(
            check(&who, &p, Resource::Guardrail { id: "g", version: "1" }),
            Err(ProxyError::GuardrailNotAllowed { .. })
        ));
    }
}
