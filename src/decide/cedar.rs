//! Cedar policies at the policy decision point (docs/reference.md §12).
//!
//! The allowlists decide first and stay the ceiling; when policies apply to
//! a tenant, a request also needs a `permit` and no `forbid`. An evaluation
//! error denies. Policies are compiled when the configuration is loaded
//! (parsed, checked against [`schema_text`], every error with its file and
//! line) and sliced: each tenant gets the global policies plus its own, and
//! within that, per operation, only the policies whose action scope can
//! match it, so a request evaluates a handful of policies however many the
//! fleet has.

use super::cedar_cache::{DecisionCache, Key};
use crate::principal::Principal;
use crate::route::{Family, Operation};
use cedar_policy::{
    ActionConstraint, Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, Policy,
    PolicyId, PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;

/// The namespace of every entity type and action.
pub const NAMESPACE: &str = "TenantGate";

/// The type a configured claim has on the principal (`policy.claim_types`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimType {
    String,
    Long,
    Bool,
    StringSet,
}

impl ClaimType {
    pub fn parse(s: &str) -> Option<ClaimType> {
        Some(match s {
            "String" => ClaimType::String,
            "Long" => ClaimType::Long,
            "Bool" => ClaimType::Bool,
            "Set<String>" => ClaimType::StringSet,
            _ => return None,
        })
    }

    fn schema(self) -> &'static str {
        match self {
            ClaimType::String => "String",
            ClaimType::Long => "Long",
            ClaimType::Bool => "Bool",
            ClaimType::StringSet => "Set<String>",
        }
    }

    /// The claim's value as this type; None when the token holds another.
    fn value(self, v: &Value) -> Option<RestrictedExpression> {
        Some(match (self, v) {
            (ClaimType::String, Value::String(s)) => RestrictedExpression::new_string(s.clone()),
            (ClaimType::Long, Value::Number(n)) => RestrictedExpression::new_long(n.as_i64()?),
            (ClaimType::Bool, Value::Bool(b)) => RestrictedExpression::new_bool(*b),
            (ClaimType::StringSet, Value::Array(items)) => RestrictedExpression::new_set(
                items.iter().map(|i| i.as_str().map(|s| RestrictedExpression::new_string(s.to_string()))).collect::<Option<Vec<_>>>()?,
            ),
            _ => return None,
        })
    }
}

/// One claim exposed on the principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimDecl {
    pub name: String,
    pub ty: ClaimType,
}

/// Cedar text and where it came from (a file as configured, or an inline
/// key), for errors and policy names.
#[derive(Debug, Clone)]
pub struct PolicySource {
    pub origin: String,
    pub text: String,
}

/// A problem in a policy source, with the line it is on when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub origin: String,
    pub line: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// The action group of each family (`Action::"ModelCall"`, ...).
pub fn action_group(family: Family) -> &'static str {
    match family {
        Family::ModelCalls | Family::Guardrails => "ModelCall",
        Family::KnowledgeBases => "KnowledgeBase",
        Family::Agents => "Agent",
        Family::SageMaker => "SageMaker",
        Family::AsyncJobs => "AsyncInvoke",
        Family::Sessions => "Sessions",
        Family::Flows => "Flow",
    }
}

/// The resource types an operation's requests carry.
fn resource_types(op: Operation) -> &'static str {
    use Operation::*;
    match op {
        ApplyGuardrail => "Guardrail",
        InvokeGuardrailChecks => "GuardrailChecks",
        Retrieve | RetrieveAndGenerate | RetrieveAndGenerateStream => "[KnowledgeBase, Model]",
        GetDocumentContent | GenerateQuery | AgenticRetrieveStream => "KnowledgeBase",
        InvokeAgent | GetAgentMemory | DeleteAgentMemory => "Agent",
        // The inline agent's configured model: the client names nothing.
        InvokeInlineAgent => "Model",
        InvokeEndpoint | InvokeEndpointWithResponseStream | InvokeEndpointAsync => "Endpoint",
        InvokeModel | InvokeModelWithResponseStream | Converse | ConverseStream | CountTokens | Rerank
        | OptimizePrompt | StartAsyncInvoke | ChatCompletions => "Model",
        GetAsyncInvoke | ListAsyncInvokes => "AsyncInvocation",
        CreateSession | GetSession | UpdateSession | EndSession | DeleteSession | CreateInvocation | ListInvocations
        | PutInvocationStep | GetInvocationStep | ListInvocationSteps | ListSessions => "Session",
        InvokeFlow | StartFlowExecution | GetFlowExecution | ListFlowExecutions | StopFlowExecution
        | ListFlowExecutionEvents | GetExecutionFlowSnapshot => "Flow",
    }
}

/// The Cedar schema of principals, actions, resources and context, with the
/// configured claims (`tenantgate policy-schema` prints it).
pub fn schema_text(claims: &[ClaimDecl]) -> String {
    let claims = claims
        .iter()
        .map(|c| format!("    {}?: {},\n", serde_json::Value::String(c.name.clone()), c.ty.schema()))
        .collect::<String>();
    let mut actions = String::new();
    for op in Operation::ALL {
        actions.push_str(&format!(
            "  action \"{}\" in [\"{}\"] appliesTo {{ principal: User, resource: {}, context: RequestContext }};\n",
            op.name(),
            action_group(op.family()),
            resource_types(op)
        ));
    }
    format!(
        "// The Cedar schema of tenantgate's policy decisions (docs/policies.md).
namespace {NAMESPACE} {{
  // A token's configured claims; one the token lacks is absent (test with `has`).
  type Claims = {{
{claims}  }};
  entity Tenant;
  // \"<tenant>/<user>\"; in its Tenant.
  entity User in [Tenant] = {{
    tenant: String,
    user: String,
    groups: Set<String>,
    claims: Claims,
  }};
  // A model id, foundation-model ARN or inference profile, as requested.
  entity Model = {{ id: String }};
  entity KnowledgeBase = {{ id: String }};
  // \"<agentId>/<aliasId>\".
  entity Agent = {{ agent: String, alias: String }};
  // A SageMaker endpoint name as requested; the target model when one is sent.
  entity Endpoint = {{ name: String, target_model?: String }};
  entity Guardrail = {{ id: String, version: String }};
  // An async invocation: GetAsyncInvoke's ARN; ListAsyncInvokes names none
  // (its entity id is \"\", without `arn`).
  entity AsyncInvocation = {{ arn?: String }};
  // A session of the Sessions API: Bedrock's session id (once the sealed
  // identifier is verified); CreateSession and ListSessions name none (its
  // entity id is \"\", without `id`).
  entity Session = {{ id?: String }};
  // The kinds of checks one InvokeGuardrailChecks runs (`contentFilter`,
  // `promptAttack`, `sensitiveInformation`); `id` (and the entity id) joins
  // them with `,` in that order.
  entity GuardrailChecks = {{ id: String, kinds: Set<String> }};
  // A flow alias, \"<flowId>/<aliasId>\"; ListFlowExecutions without an
  // alias names the flow alone (its entity id is \"<flowId>\", without `alias`).
  entity Flow = {{ flow: String, alias?: String }};
  type RequestContext = {{
    // The answer is an event stream.
    streaming: Bool,
    // The hour of the day (0-23, UTC) when the request arrived.
    hour_utc: Long,
    // The output token limit the request states, when it states one.
    max_tokens?: Long,
    // The service tier the request asks for, when it asks.
    service_tier?: String,
  }};
  action \"ModelCall\", \"KnowledgeBase\", \"Agent\", \"SageMaker\", \"AsyncInvoke\", \"Sessions\", \"Flow\";
{actions}}}
"
    )
}

/// What the request names, for the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyResource<'a> {
    Model(&'a str),
    KnowledgeBase(&'a str),
    Agent { agent: &'a str, alias: &'a str },
    Endpoint { name: &'a str, target_model: Option<&'a str> },
    Guardrail { id: &'a str, version: &'a str },
    /// GetAsyncInvoke's invocation ARN; `None` for ListAsyncInvokes.
    AsyncInvocation(Option<&'a str>),
    /// Bedrock's session id; `None` for CreateSession and ListSessions.
    Session(Option<&'a str>),
    /// InvokeGuardrailChecks: the kinds of checks asked for, as a set of
    /// bits over `config::GUARDRAIL_CHECK_KINDS`.
    GuardrailChecks(u8),
    /// A flow alias (the flow alone for a listing without an alias).
    Flow { flow: &'a str, alias: Option<&'a str> },
}

/// The kinds of checks of a `PolicyResource::GuardrailChecks` bit set, in
/// `config::GUARDRAIL_CHECK_KINDS` order.
pub fn guardrail_check_kinds(bits: u8) -> Vec<&'static str> {
    crate::config::GUARDRAIL_CHECK_KINDS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, k)| *k)
        .collect()
}

/// Request facts a policy may test (`context`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Facts {
    pub streaming: bool,
    pub hour_utc: i64,
    pub max_tokens: Option<i64>,
    pub service_tier: Option<String>,
}

/// The outcome of the policies for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// The policies that decided (their `@id`, else `origin:index`).
    pub policies: Vec<String>,
    /// Evaluation errors (each denies), for the log.
    pub errors: Vec<String>,
}

/// One tenant's policies, sliced per operation.
struct Slices {
    by_op: HashMap<Operation, PolicySet>,
}

/// Compiled policies of a configuration.
pub struct Policies {
    claims: Vec<ClaimDecl>,
    /// Each operation's action uid and entity (its group is an ancestor;
    /// the group entity itself has no attributes and is left out of the
    /// request's entity store, as is the tenant), built once.
    actions: HashMap<Operation, (EntityUid, Entity)>,
    /// Entity type names, parsed once.
    types: Types,
    /// Display name of every policy.
    names: HashMap<PolicyId, String>,
    /// Tenants without files of their own: the global policies (None when
    /// there are none).
    global: Option<Slices>,
    tenants: HashMap<String, Slices>,
    /// Decisions already made (None: every request is evaluated).
    cache: Option<DecisionCache>,
    /// Number of policies in all, for logs.
    pub count: usize,
}

/// Decisions remembered per compiled policy set unless configured
/// (`policy.decision_cache`).
pub const DEFAULT_DECISION_CACHE: usize = 10_000;

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policies").field("count", &self.count).field("tenants", &self.tenants.len()).finish()
    }
}

/// The entity type names a request uses, parsed once at load.
struct Types {
    tenant: EntityTypeName,
    user: EntityTypeName,
    model: EntityTypeName,
    knowledge_base: EntityTypeName,
    agent: EntityTypeName,
    endpoint: EntityTypeName,
    guardrail: EntityTypeName,
    async_invocation: EntityTypeName,
    session: EntityTypeName,
    guardrail_checks: EntityTypeName,
    flow: EntityTypeName,
}

impl Types {
    fn new() -> Types {
        let t = |ty: &str| EntityTypeName::from_str(&format!("{NAMESPACE}::{ty}")).expect("valid entity type name");
        Types {
            tenant: t("Tenant"),
            user: t("User"),
            model: t("Model"),
            knowledge_base: t("KnowledgeBase"),
            agent: t("Agent"),
            endpoint: t("Endpoint"),
            guardrail: t("Guardrail"),
            async_invocation: t("AsyncInvocation"),
            session: t("Session"),
            guardrail_checks: t("GuardrailChecks"),
            flow: t("Flow"),
        }
    }

    fn uid(ty: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(id))
    }
}

fn uid(ty: &str, id: &str) -> EntityUid {
    // The type names are fixed identifiers: this cannot fail.
    let ty = EntityTypeName::from_str(&format!("{NAMESPACE}::{ty}")).expect("valid entity type name");
    EntityUid::from_type_name_and_id(ty, EntityId::new(id))
}

fn action_uid(name: &str) -> EntityUid {
    uid("Action", name)
}

/// The line of a byte offset in `text` (1-based).
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

fn diag_errors(origin: &str, text: &str, d: &dyn miette::Diagnostic, message: String) -> PolicyError {
    let line = d.labels().and_then(|mut l| l.next()).map(|l| line_of(text, l.offset()));
    let help = d.help().map(|h| format!(" ({h})")).unwrap_or_default();
    PolicyError { origin: origin.to_string(), line, message: format!("{message}{help}") }
}

/// Parses and validates one source against the schema; policy ids become
/// `origin:index` (the display name is `@id` when annotated).
fn compile(schema: &Schema, src: &PolicySource, errors: &mut Vec<PolicyError>) -> Vec<Policy> {
    let set = match PolicySet::from_str(&src.text) {
        Ok(s) => s,
        Err(e) => {
            for err in e.iter() {
                errors.push(diag_errors(&src.origin, &src.text, err, err.to_string()));
            }
            return Vec::new();
        }
    };
    if set.templates().next().is_some() {
        let line = ["?principal", "?resource"].iter().filter_map(|s| src.text.find(s)).min().map(|o| line_of(&src.text, o));
        errors.push(PolicyError {
            origin: src.origin.clone(),
            line,
            message: "policy templates (?principal, ?resource) are not supported; write static policies".into(),
        });
        return Vec::new();
    }
    let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    let mut ok = true;
    for e in result.validation_errors() {
        ok = false;
        errors.push(diag_errors(&src.origin, &src.text, e, e.to_string()));
    }
    if !ok {
        return Vec::new();
    }
    // `from_str` numbers policies in source order (policy0, policy1, ...).
    let mut policies: Vec<&Policy> = set.policies().collect();
    policies.sort_by_key(|p| p.id().to_string().trim_start_matches("policy").parse::<usize>().unwrap_or(usize::MAX));
    policies.into_iter().enumerate().map(|(i, p)| p.new_id(PolicyId::new(format!("{}:{i}", src.origin)))).collect()
}

/// Whether a policy's action scope can match `op`.
fn may_apply(p: &Policy, op: Operation) -> bool {
    let me = action_uid(op.name());
    let group = action_uid(action_group(op.family()));
    match p.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(a) => a == me,
        ActionConstraint::In(list) => list.iter().any(|a| *a == me || *a == group),
    }
}

fn slice(policies: &[Policy]) -> Slices {
    let mut by_op = HashMap::new();
    for op in Operation::ALL {
        let mut set = PolicySet::new();
        for p in policies.iter().filter(|p| may_apply(p, op)) {
            // Ids are unique by construction (origin:index).
            let _ = set.add(p.clone());
        }
        by_op.insert(op, set);
    }
    Slices { by_op }
}

impl Policies {
    /// Compiles the global sources and each tenant's own. `Ok(None)` when
    /// there are no sources at all (policies are off).
    pub fn load(
        claims: Vec<ClaimDecl>,
        global: &[PolicySource],
        tenants: &BTreeMap<String, Vec<PolicySource>>,
    ) -> Result<Option<Policies>, Vec<PolicyError>> {
        if global.is_empty() && tenants.values().all(Vec::is_empty) {
            return Ok(None);
        }
        let schema = Schema::from_cedarschema_str(&schema_text(&claims))
            .map_err(|e| vec![PolicyError { origin: "policy.claims".into(), line: None, message: e.to_string() }])?
            .0;
        let all_actions = schema
            .action_entities()
            .map_err(|e| vec![PolicyError { origin: "policy schema".into(), line: None, message: e.to_string() }])?;
        let mut actions = HashMap::new();
        for op in Operation::ALL {
            let me = action_uid(op.name());
            if let Some(a) = all_actions.get(&me) {
                actions.insert(op, (me, a.clone()));
            }
        }
        let mut errors = Vec::new();
        let mut names = HashMap::new();
        let mut compile_all = |sources: &[PolicySource], errors: &mut Vec<PolicyError>| {
            let mut out = Vec::new();
            for src in sources {
                for p in compile(&schema, src, errors) {
                    let name = p.annotation("id").map_or_else(|| p.id().to_string(), str::to_string);
                    names.insert(p.id().clone(), name);
                    out.push(p);
                }
            }
            out
        };
        let global_policies = compile_all(global, &mut errors);
        let mut own = BTreeMap::new();
        for (tenant, sources) in tenants.iter().filter(|(_, s)| !s.is_empty()) {
            own.insert(tenant.clone(), compile_all(sources, &mut errors));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let count = names.len();
        let tenants = own
            .into_iter()
            .map(|(t, mine)| {
                let all: Vec<Policy> = global_policies.iter().cloned().chain(mine).collect();
                (t, slice(&all))
            })
            .collect();
        let global = (!global.is_empty()).then(|| slice(&global_policies));
        let cache = DecisionCache::new(DEFAULT_DECISION_CACHE);
        Ok(Some(Policies { claims, actions, types: Types::new(), names, global, tenants, cache, count }))
    }

    /// Remember at most `capacity` decisions (0: none; every request is
    /// evaluated).
    pub fn set_decision_cache(&mut self, capacity: usize) {
        self.cache = DecisionCache::new(capacity);
    }

    /// Whether any policy applies to `tenant` (its own files, or global ones).
    pub fn applies_to(&self, tenant: &str) -> bool {
        self.tenants.contains_key(tenant) || self.global.is_some()
    }

    /// The policies' verdict on one request; None when no policy applies to
    /// the tenant.
    pub fn evaluate(&self, principal: &Principal, op: Operation, resource: PolicyResource<'_>, facts: &Facts) -> Option<Verdict> {
        let slices = self.tenants.get(&principal.tenant).or(self.global.as_ref())?;
        let set = slices.by_op.get(&op)?;
        let key = self.cache.as_ref().map(|c| (c, Key::new(&self.claims, principal, op, resource, facts)));
        if let Some(v) = key.as_ref().and_then(|(c, k)| c.get(k)) {
            return Some(v);
        }
        let verdict = match self.ask(set, principal, op, resource, facts) {
            Ok(v) => v,
            Err(e) => Verdict { allowed: false, policies: Vec::new(), errors: vec![e] },
        };
        if let Some((c, k)) = key {
            c.insert(k, verdict.clone());
        }
        Some(verdict)
    }

    fn ask(&self, set: &PolicySet, principal: &Principal, op: Operation, resource: PolicyResource<'_>, facts: &Facts) -> Result<Verdict, String> {
        let s = |v: &str| RestrictedExpression::new_string(v.to_string());
        let ty = &self.types;
        let tenant = Types::uid(&ty.tenant, &principal.tenant);
        let user = Types::uid(&ty.user, &format!("{}/{}", principal.tenant, principal.user));
        let mut claims = Vec::new();
        for c in &self.claims {
            if let Some(v) = principal.claims.get(&c.name) {
                match c.ty.value(v) {
                    Some(x) => claims.push((c.name.clone(), x)),
                    None => tracing::debug!(claim = %c.name, "claim is not of its declared type; absent for policies"),
                }
            }
        }
        let attrs = HashMap::from([
            ("tenant".to_string(), s(&principal.tenant)),
            ("user".to_string(), s(&principal.user)),
            ("groups".to_string(), RestrictedExpression::new_set(principal.groups.iter().map(|g| s(g)))),
            ("claims".to_string(), RestrictedExpression::new_record(claims).map_err(|e| e.to_string())?),
        ]);
        let principal_entity = Entity::new(user.clone(), attrs, HashSet::from([tenant.clone()])).map_err(|e| e.to_string())?;
        let (res_uid, res_attrs) = match resource {
            PolicyResource::Model(id) => (Types::uid(&ty.model, id), vec![("id", s(id))]),
            PolicyResource::KnowledgeBase(id) => (Types::uid(&ty.knowledge_base, id), vec![("id", s(id))]),
            PolicyResource::Agent { agent, alias } => {
                (Types::uid(&ty.agent, &format!("{agent}/{alias}")), vec![("agent", s(agent)), ("alias", s(alias))])
            }
            PolicyResource::Endpoint { name, target_model } => {
                let mut a = vec![("name", s(name))];
                if let Some(t) = target_model {
                    a.push(("target_model", s(t)));
                }
                (Types::uid(&ty.endpoint, name), a)
            }
            PolicyResource::Guardrail { id, version } => {
                (Types::uid(&ty.guardrail, id), vec![("id", s(id)), ("version", s(version))])
            }
            PolicyResource::AsyncInvocation(arn) => {
                (Types::uid(&ty.async_invocation, arn.unwrap_or("")), arn.map(|a| ("arn", s(a))).into_iter().collect())
            }
            PolicyResource::Session(id) => {
                (Types::uid(&ty.session, id.unwrap_or("")), id.map(|i| ("id", s(i))).into_iter().collect())
            }
            PolicyResource::GuardrailChecks(bits) => {
                let kinds = guardrail_check_kinds(bits);
                let set = RestrictedExpression::new_set(kinds.iter().map(|k| s(k)));
                let id = kinds.join(",");
                (Types::uid(&ty.guardrail_checks, &id), vec![("id", s(&id)), ("kinds", set)])
            }
            PolicyResource::Flow { flow, alias } => match alias {
                Some(a) => (Types::uid(&ty.flow, &format!("{flow}/{a}")), vec![("flow", s(flow)), ("alias", s(a))]),
                None => (Types::uid(&ty.flow, flow), vec![("flow", s(flow))]),
            },
        };
        let res_attrs = res_attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        let resource_entity = Entity::new(res_uid.clone(), res_attrs, HashSet::new()).map_err(|e| e.to_string())?;
        let (action_id, action) = self.actions.get(&op).cloned().ok_or("no action entity for the operation")?;
        // Entities without attributes (the tenant, the action group) need
        // not be in the store: `in` reads the ancestors of the entity tested.
        let entities = Entities::from_entities([principal_entity, resource_entity, action], None)
        .map_err(|e| e.to_string())?;
        let mut ctx = vec![
            ("streaming".to_string(), RestrictedExpression::new_bool(facts.streaming)),
            ("hour_utc".to_string(), RestrictedExpression::new_long(facts.hour_utc)),
        ];
        if let Some(m) = facts.max_tokens {
            ctx.push(("max_tokens".to_string(), RestrictedExpression::new_long(m)));
        }
        if let Some(t) = &facts.service_tier {
            ctx.push(("service_tier".to_string(), s(t)));
        }
        let context = Context::from_pairs(ctx).map_err(|e| e.to_string())?;
        // Built to the schema by construction; not validated again per
        // request (a request the policies did not expect can only make them
        // error, and an error denies).
        let request = Request::new(user, action_id, res_uid, context, None).map_err(|e| e.to_string())?;
        let response = Authorizer::new().is_authorized(&request, set, &entities);
        let errors: Vec<String> = response.diagnostics().errors().map(|e| e.to_string()).collect();
        let mut policies: Vec<String> = response
            .diagnostics()
            .reason()
            .map(|id| self.names.get(id).cloned().unwrap_or_else(|| id.to_string()))
            .collect();
        policies.sort();
        Ok(Verdict { allowed: response.decision() == Decision::Allow && errors.is_empty(), policies, errors })
    }
}

/// `Arc` so a configuration and its reloads share nothing mutable.
pub type SharedPolicies = Arc<Policies>;

#[cfg(test)]
#[path = "cedar_tests.rs"]
mod tests;
