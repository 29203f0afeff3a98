//! The policy decision point: every allow/deny decision about a resource a
//! request names is made here, from who asks (the verified principal and
//! the tenant's policy), the action (the operation) and the resource, so
//! the whole allowlist policy reads in one place (docs/reference.md §5).
//!
//! | resource | decided against | denial |
//! |---|---|---|
//! | model, inference profile (path or body) | `models` globs; a foundation-model ARN also on its bare id | `model_not_allowed` |
//! | which model is really reached | `model_map` ([`model_map`]) | `model_not_allowed` |
//! | guardrail (ApplyGuardrail) | the tenant's own guardrail at its version | `guardrail_not_allowed` |
//! | knowledge base | `knowledge_base.allowed` | `knowledge_base_not_allowed` |
//! | document source in S3 (RetrieveAndGenerate external sources, InvokeAgent files) | rendered `knowledge_base.allowed_source_prefixes` | `location_not_allowed` |
//! | agent alias | `agents.allowed` globs on `agent/alias` | `agent_not_allowed` |
//! | SageMaker endpoint | rendered `sagemaker.endpoints` (keys map, values pass) | `endpoint_not_allowed` |
//! | target model, inference component, container | rendered `sagemaker.allowed_target_models` (and `target_model`) | `cross_tenant` |
//! | async input location | rendered `sagemaker.allowed_input_prefixes` | `location_not_allowed` |
//! | the Sessions API (every operation) | rendered `sessions.kms_key_arn` must be set; the session identifier must open for (tenant, user) (`family::sessions`) | `operation_not_allowed`, `cross_tenant` |
//! | async invocation output location (StartAsyncInvoke, and the jobs Get/ListAsyncInvokes return) | rendered `async_invoke.output_prefix`; unset: the operations are refused | `location_not_allowed` (`operation_not_allowed`) |
//!
//! The family modules (`crate::family`) ask here before they change
//! anything; a template naming a claim the token lacks is 403
//! `missing_claim`. A policy engine plugs in at [`check`].

pub mod cedar;
mod cedar_cache;
pub mod model_map;

use crate::config::TenantPolicy;
use crate::error::ProxyError;
use crate::filter::uri::PrefixSet;
use crate::glob::Glob;
use crate::model_id::foundation_model_id;
use crate::principal::Principal;
use crate::route::Operation;
use crate::template::Template;

/// Who asks and for which action: the verified principal, its tenant's
/// policy and the operation.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    pub principal: &'a Principal,
    pub policy: &'a TenantPolicy,
    pub action: Operation,
}

/// What a request names, as the decision sees it.
#[derive(Debug, Clone, Copy)]
pub enum Resource<'a> {
    /// A model id, foundation-model ARN, or inference profile.
    Model(&'a str),
    /// A guardrail identifier and version (ApplyGuardrail's path).
    Guardrail { id: &'a str, version: &'a str },
    KnowledgeBase(&'a str),
    /// An `s3://` document source named in a request body.
    SourceLocation(&'a str),
    Agent { agent: &'a str, alias: &'a str },
    /// A SageMaker endpoint by its real name (see [`endpoint`] for logical
    /// names).
    Endpoint(&'a str),
    /// `X-Amzn-SageMaker-Target-Model`: a model path on a multi-model endpoint.
    TargetModel(&'a str),
    /// Another model on the same endpoint, chosen by
    /// `X-Amzn-SageMaker-Inference-Component` or `-Target-Container-Hostname`.
    HostedModel { kind: HostedModel, name: &'a str },
    /// InvokeEndpointAsync's `X-Amzn-SageMaker-InputLocation`.
    InputLocation(&'a str),
    /// An async invocation's output `s3Uri` (StartAsyncInvoke's request,
    /// Get/ListAsyncInvokes' answers).
    OutputLocation(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostedModel {
    InferenceComponent,
    Container,
}

impl HostedModel {
    fn what(self) -> &'static str {
        match self {
            HostedModel::InferenceComponent => "inference component",
            HostedModel::Container => "container",
        }
    }
}

/// Why a request was allowed: the configuration entry that granted it
/// (for notes and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant(pub String);

impl Request<'_> {
    fn tenant(&self) -> String {
        self.principal.tenant.clone()
    }

    fn render(&self, t: &Template) -> Result<String, ProxyError> {
        t.render(self.principal).map_err(|e| ProxyError::MissingClaim(e.0))
    }
}

/// Allowed (and by what), or the 403 the client gets.
pub fn check(req: &Request<'_>, resource: Resource<'_>) -> Result<Grant, ProxyError> {
    let policy = req.policy;
    match resource {
        Resource::Model(model) => match model_grant(policy, model) {
            Some(g) => Ok(Grant(g.as_str().to_string())),
            None => Err(ProxyError::ModelNotAllowed { model: model.to_string(), tenant: req.tenant() }),
        },
        Resource::Guardrail { id, version } => {
            // Only the tenant's own guardrail, at its configured version.
            let own = policy.guardrail.as_ref().is_some_and(|g| g.id == id && g.version == version);
            if own {
                Ok(Grant("guardrail".into()))
            } else {
                Err(ProxyError::GuardrailNotAllowed { tenant: req.tenant() })
            }
        }
        Resource::KnowledgeBase(kb) => {
            if policy.knowledge_base.allowed.iter().any(|k| k == kb) {
                Ok(Grant(kb.to_string()))
            } else {
                Err(ProxyError::KnowledgeBaseNotAllowed { kb: kb.to_string(), tenant: req.tenant() })
            }
        }
        Resource::SourceLocation(uri) => {
            if PrefixSet::new(&source_prefixes(req)?).allows_uri(uri) {
                Ok(Grant("allowed_source_prefixes".into()))
            } else {
                Err(ProxyError::LocationNotAllowed(format!(
                    "source {uri:?} is not under an allowed source prefix of tenant \"{}\"",
                    req.principal.tenant
                )))
            }
        }
        Resource::Agent { agent, alias } => {
            let resource = format!("{agent}/{alias}");
            match policy.agents.allowed.iter().find(|g| g.matches(&resource)) {
                Some(g) => Ok(Grant(g.as_str().to_string())),
                None => Err(ProxyError::AgentNotAllowed { agent: resource, tenant: req.tenant() }),
            }
        }
        Resource::Endpoint(name) => match endpoint(req, name)? {
            EndpointDecision::Own(real) if real == name => Ok(Grant(real)),
            _ => Err(ProxyError::EndpointNotAllowed { endpoint: name.to_string(), tenant: req.tenant() }),
        },
        Resource::TargetModel(v) => target_model(req, v),
        Resource::HostedModel { kind, name } => {
            let globs = target_globs(req)?;
            match globs.iter().find(|g| g.matches(name)) {
                Some(g) => Ok(Grant(g.as_str().to_string())),
                None => Err(ProxyError::CrossTenant(format!(
                    "{} {name:?} is not one of the models of tenant {:?}",
                    kind.what(),
                    req.principal.tenant
                ))),
            }
        }
        Resource::InputLocation(loc) => {
            let prefixes =
                policy.sagemaker.allowed_input_prefixes.iter().map(|t| req.render(t)).collect::<Result<Vec<_>, _>>()?;
            if PrefixSet::new(&prefixes).allows_uri(loc) {
                Ok(Grant("allowed_input_prefixes".into()))
            } else {
                Err(ProxyError::LocationNotAllowed(format!(
                    "input location {:?} is not under an allowed prefix of tenant {:?}",
                    truncate(loc, 200),
                    req.principal.tenant
                )))
            }
        }
        Resource::OutputLocation(uri) => {
            // An empty key segment (`acme//x`) is never the tenant's.
            let doubled = uri.strip_prefix("s3://").is_none_or(|rest| rest.contains("//"));
            if !doubled && PrefixSet::new(&output_prefix(req)?).allows_uri(uri) {
                Ok(Grant("async_invoke.output_prefix".into()))
            } else {
                Err(ProxyError::LocationNotAllowed(format!(
                    "output location {:?} is not under the async_invoke.output_prefix of tenant {:?}",
                    truncate(uri, 200),
                    req.principal.tenant
                )))
            }
        }
    }
}

/// The rendered `sessions.kms_key_arn` of this principal: the key every
/// session of the tenant is encrypted with. Unset: the Sessions API is
/// refused for the tenant (403 `operation_not_allowed`); a template naming
/// a claim the token lacks is 403 `missing_claim`.
pub fn sessions_key(req: &Request<'_>) -> Result<String, ProxyError> {
    match &req.policy.sessions.kms_key_arn {
        Some(t) => req.render(t),
        None => Err(ProxyError::OperationNotAllowed(format!(
            "{} (tenant {:?} has no sessions.kms_key_arn)",
            req.action.name(),
            req.principal.tenant
        ))),
    }
}

/// The rendered `async_invoke.output_prefix` of this principal (one entry):
/// what StartAsyncInvoke's output and the jobs Get/ListAsyncInvokes return
/// are judged against. Unset: the async-invoke operations are refused for
/// the tenant (403 `operation_not_allowed`).
pub fn output_prefix(req: &Request<'_>) -> Result<Vec<String>, ProxyError> {
    match &req.policy.async_invoke.output_prefix {
        Some(t) => Ok(vec![req.render(t)?]),
        None => Err(ProxyError::OperationNotAllowed(format!(
            "{} (tenant {:?} has no async_invoke.output_prefix)",
            req.action.name(),
            req.principal.tenant
        ))),
    }
}

/// The `models` glob that admits a model id; a foundation-model ARN also
/// matches on its bare model id (docs/reference.md §5.1).
fn model_grant<'p>(policy: &'p TenantPolicy, model: &str) -> Option<&'p Glob> {
    let bare = foundation_model_id(model);
    policy.models.iter().find(|g| g.matches(model) || bare.is_some_and(|b| g.matches(b)))
}

#[cfg(test)]
fn model_allowed(policy: &TenantPolicy, model: &str) -> bool {
    model_grant(policy, model).is_some()
}

/// The rendered `knowledge_base.allowed_source_prefixes` of this principal,
/// in configuration order: what document sources in requests and retrieved
/// chunks in answers are judged against.
pub fn source_prefixes(req: &Request<'_>) -> Result<Vec<String>, ProxyError> {
    req.policy.knowledge_base.allowed_source_prefixes.iter().map(|t| req.render(t)).collect()
}

/// How a requested SageMaker endpoint name was admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointDecision {
    /// A key of `sagemaker.endpoints` (`key`, as configured), mapped to its
    /// rendered value.
    Mapped { key: String, real: String },
    /// One of the rendered values itself, in the configured spelling.
    Own(String),
}

impl EndpointDecision {
    pub fn real(&self) -> &str {
        match self {
            EndpointDecision::Mapped { real, .. } | EndpointDecision::Own(real) => real,
        }
    }
}

/// `sagemaker.endpoints` for a requested name (a valid endpoint name),
/// comparing ASCII case-insensitively as SageMaker does: a key maps to its
/// rendered value, a rendered value passes; anything else, and a rendered
/// value that is not a valid endpoint name, is 403 `endpoint_not_allowed`.
pub fn endpoint(req: &Request<'_>, requested: &str) -> Result<EndpointDecision, ProxyError> {
    let denied = || ProxyError::EndpointNotAllowed { endpoint: requested.to_string(), tenant: req.tenant() };
    let endpoints = &req.policy.sagemaker.endpoints;
    // A logical name (the configuration keeps keys unique ignoring case).
    if let Some((key, tpl)) = endpoints.iter().find(|(k, _)| k.eq_ignore_ascii_case(requested)) {
        let real = req.render(tpl)?;
        if !is_valid_endpoint_name(&real) {
            tracing::warn!(
                tenant = %req.principal.tenant,
                key = %key,
                "sagemaker.endpoints value renders to an invalid endpoint name; request denied"
            );
            return Err(denied());
        }
        return Ok(EndpointDecision::Mapped { key: key.clone(), real });
    }
    // A real name, as configured for this tenant.
    let rendered = endpoints.iter().map(|(_, t)| req.render(t)).collect::<Result<Vec<_>, _>>()?;
    match rendered.into_iter().find(|r| is_valid_endpoint_name(r) && r.eq_ignore_ascii_case(requested)) {
        Some(real) => Ok(EndpointDecision::Own(real)),
        None => Err(denied()),
    }
}

/// `^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`, at most 63 characters: SageMaker's rule
/// for endpoint names (and, with the same shape, variant and container
/// host names).
pub fn is_valid_endpoint_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// The rendered `allowed_target_models` as globs. A rendered pattern with
/// more wildcards than its template's literal text was widened by a
/// substituted value (a claim holding `*`) and matches nothing.
fn target_globs(req: &Request<'_>) -> Result<Vec<Glob>, ProxyError> {
    let mut out = Vec::new();
    for t in &req.policy.sagemaker.allowed_target_models {
        let rendered = req.render(t)?;
        let wild = |s: &str| s.chars().filter(|c| matches!(c, '*' | '?')).count();
        if wild(&rendered) != t.literals().map(wild).sum::<usize>() {
            tracing::warn!(
                tenant = %req.principal.tenant,
                template = %t.source(),
                "allowed_target_models entry rendered with wildcards from a substituted value; ignored"
            );
            continue;
        }
        if let Ok(g) = Glob::new(&rendered) {
            out.push(g);
        }
    }
    Ok(out)
}

/// True when a target model (a path relative to the multi-model endpoint's
/// S3 prefix) could step out of where its glob put it: a `.`, `..` or empty
/// segment, a backslash, or a percent-escape. Such a value is never the
/// tenant's, whatever the globs say: `{tenant}/*` must not admit
/// `acme/../globex/model.tar.gz`.
pub fn escapes_its_place(v: &str) -> bool {
    let b = v.as_bytes();
    v.contains('\\')
        || b.windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
        || crate::route::has_dot_or_empty_segment(v)
}

/// The grant of a target model equal to the tenant's rendered
/// `sagemaker.target_model`.
pub const TARGET_MODEL_KEY: &str = "sagemaker.target_model";

fn target_model(req: &Request<'_>, v: &str) -> Result<Grant, ProxyError> {
    let foreign = || {
        ProxyError::CrossTenant(format!(
            "target model {:?} is not a model of tenant {:?}",
            truncate(v, 200),
            req.principal.tenant
        ))
    };
    if escapes_its_place(v) {
        return Err(foreign());
    }
    if let Some(g) = target_globs(req)?.iter().find(|g| g.matches(v)) {
        return Ok(Grant(g.as_str().to_string()));
    }
    // The value tenantgate would inject is the tenant's by definition.
    if let Some(t) = &req.policy.sagemaker.target_model {
        if req.render(t)? == v {
            return Ok(Grant(TARGET_MODEL_KEY.into()));
        }
    }
    Err(foreign())
}

/// At most `n` characters of `s`, marked when cut (for error messages).
pub(crate) fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
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
        let req = Request { principal: &who, policy: &p, action: Operation::Converse };
        assert!(check(&req, Resource::Model("m1")).is_ok());
        assert!(matches!(check(&req, Resource::Model("m2")), Err(ProxyError::ModelNotAllowed { .. })));
        assert!(matches!(check(&req, Resource::KnowledgeBase("KB1")), Err(ProxyError::KnowledgeBaseNotAllowed { .. })));
        assert!(matches!(check(&req, Resource::Agent { agent: "A", alias: "B" }), Err(ProxyError::AgentNotAllowed { .. })));
        assert!(matches!(
            check(&req, Resource::Guardrail { id: "g", version: "1" }),
            Err(ProxyError::GuardrailNotAllowed { .. })
        ));
    }

    fn sagemaker_policy() -> TenantPolicy {
        let tpl = |s: &str| Template::compile(s).unwrap();
        let mut p = crate::test_support::policy();
        p.sagemaker.endpoints = vec![("classifier".into(), tpl("{tenant}-classifier"))];
        p.sagemaker.target_model = Some(tpl("{tenant}.tar.gz"));
        p.sagemaker.allowed_target_models = vec![tpl("{tenant}/*")];
        p.sagemaker.allowed_input_prefixes = vec![tpl("s3://async-in/{tenant}/")];
        p
    }

    #[test]
    fn sagemaker_resources_are_decided_against_the_rendered_templates() {
        let p = sagemaker_policy();
        let who = crate::test_support::alice();
        let req = Request { principal: &who, policy: &p, action: Operation::InvokeEndpoint };
        // Endpoints: a key maps, a rendered value is the tenant's own.
        assert_eq!(
            endpoint(&req, "CLASSIFIER").unwrap(),
            EndpointDecision::Mapped { key: "classifier".into(), real: "acme-classifier".into() }
        );
        assert_eq!(endpoint(&req, "Acme-Classifier").unwrap(), EndpointDecision::Own("acme-classifier".into()));
        assert!(check(&req, Resource::Endpoint("acme-classifier")).is_ok());
        for foreign in ["globex-classifier", "classifier", "acme-classifier-2"] {
            let e = check(&req, Resource::Endpoint(foreign)).unwrap_err();
            assert_eq!(e.reason(), "endpoint_not_allowed", "{foreign}");
        }
        // Target models: the globs, the tenant's own target_model, never a
        // path that steps out of its place.
        assert_eq!(check(&req, Resource::TargetModel("acme/m.tar.gz")).unwrap(), Grant("acme/*".into()));
        assert_eq!(check(&req, Resource::TargetModel("acme.tar.gz")).unwrap(), Grant(TARGET_MODEL_KEY.into()));
        for foreign in ["globex/m.tar.gz", "acme/../globex/m.tar.gz", "acme/%2e%2e/globex/m", "acme\\..\\globex", "acme//m"] {
            let e = check(&req, Resource::TargetModel(foreign)).unwrap_err();
            assert_eq!(e.reason(), "cross_tenant", "{foreign}");
        }
        let hosted = |name| Resource::HostedModel { kind: HostedModel::InferenceComponent, name };
        assert!(check(&req, hosted("acme/ic-1")).is_ok());
        assert_eq!(check(&req, hosted("globex/ic-1")).unwrap_err().reason(), "cross_tenant");
        // Async input: exact prefixes.
        assert!(check(&req, Resource::InputLocation("s3://async-in/acme/x.json")).is_ok());
        for foreign in ["s3://async-in/acme-evil/x", "s3://async-in/acme/../globex/x", "s3://async-in/globex/x"] {
            let e = check(&req, Resource::InputLocation(foreign)).unwrap_err();
            assert_eq!(e.reason(), "location_not_allowed", "{foreign}");
        }
    }

    #[test]
    fn source_locations_and_missing_claims() {
        let mut p = crate::test_support::policy();
        let who = crate::test_support::alice();
        let req = Request { principal: &who, policy: &p, action: Operation::RetrieveAndGenerate };
        assert!(check(&req, Resource::SourceLocation("s3://docs/tenants/acme/a.pdf")).is_ok());
        assert!(check(&req, Resource::SourceLocation("s3://docs/public/a.pdf")).is_ok());
        for foreign in ["s3://docs/tenants/globex/a.pdf", "s3://docs/tenants/acme-x/a.pdf", "s3://docs/tenants/acme/../globex/a"] {
            let e = check(&req, Resource::SourceLocation(foreign)).unwrap_err();
            assert_eq!(e.reason(), "location_not_allowed", "{foreign}");
        }
        // A template naming a claim the token lacks denies.
        crate::test_support::prefixes(&mut p, &["s3://docs/{claims.dept}/"]);
        let req = Request { principal: &who, policy: &p, action: Operation::RetrieveAndGenerate };
        let e = check(&req, Resource::SourceLocation("s3://docs/x/a.pdf")).unwrap_err();
        assert_eq!(e.reason(), "missing_claim");
    }
}
