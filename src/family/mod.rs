//! One home per operation family (docs/reference.md §5). The route table
//! (`crate::route`) names each operation's family; the family's module holds
//! everything else about it, behind the same hooks:
//!
//! | hook | when | what |
//! |---|---|---|
//! | `authorize` | before the body is read | what the path names, asked of the policy decision point (`crate::decide`) |
//! | `rewrite_query` | right after `authorize`, before the policies and the limits | the query string to send (ids in it namespaced or checked, what it names decided: ListFlowExecutions' alias) |
//! | `before_body` | after the limits, before the body | changes decided from the path and headers alone (SageMaker routing) |
//! | `rewrite` | after credentials, before signing | the request for this tenant: every resource the body names decided, then the body, path and headers rewritten; returns the response plan ([`Post`]) |
//! | `policy_question` | with policies, after the body is read, before the limits | what the request names (allowlists decided first) and states (token limit, service tier), for the tenant's Cedar policies |
//! | `response_headers` | when upstream answers | the family's header rules (session ids sealed or given back as the client's own) |
//! | `response_shape` | when upstream answers | how token usage is read and how event streams are framed for redaction |
//!
//! | family | operations | module |
//! |---|---|---|
//! | model calls | InvokeModel(+WithResponseStream), Converse(+Stream), CountTokens, Rerank, OptimizePrompt; ChatCompletions | [`model_calls`]; [`chat_completions`] |
//! | guardrails | ApplyGuardrail, InvokeGuardrailChecks | [`guardrails`] |
//! | knowledge bases | Retrieve, RetrieveAndGenerate(+Stream); GetDocumentContent, GenerateQuery; AgenticRetrieveStream | [`knowledge_bases`], [`kb_documents`], [`agentic_retrieve`] |
//! | agents | InvokeAgent; GetAgentMemory, DeleteAgentMemory; InvokeInlineAgent | [`agents`], [`agent_memory`], [`inline_agent`] |
//! | SageMaker | InvokeEndpoint(+WithResponseStream), InvokeEndpointAsync | [`sagemaker`] |
//! | async invocations | StartAsyncInvoke, GetAsyncInvoke, ListAsyncInvokes | [`async_jobs`] |
//! | sessions | CreateSession, GetSession, UpdateSession, EndSession, DeleteSession, CreateInvocation, ListInvocations, PutInvocationStep, GetInvocationStep, ListInvocationSteps, ListSessions | [`sessions`] |
//! | flows | InvokeFlow; StartFlowExecution, GetFlowExecution, ListFlowExecutions, StopFlowExecution, ListFlowExecutionEvents, GetExecutionFlowSnapshot | [`flows`] |
//!
//! Adding an operation: a row in the route table, and its arms in one family
//! module. Every hook is a pure function of the request context ([`Ctx`]),
//! the request and the tenant's policy: no I/O, no clock, no global state
//! (one exception: a StartFlowExecution without a name is given a random
//! one, see [`flows`]).
//! On error nothing is forwarded (a body may be half rewritten).

pub mod agent_memory;
pub mod agentic_retrieve;
pub mod agents;
pub mod async_jobs;
pub mod chat_completions;
pub mod flows;
pub mod guardrails;
pub mod inline_agent;
pub mod kb_documents;
pub mod knowledge_bases;
pub mod model_calls;
mod query;
pub mod retrieval_filter;
pub mod sagemaker;
pub mod sessions;

mod fields;

#[cfg(test)]
#[path = "robustness_tests.rs"]
mod robustness_tests;

pub use fields::parse_json_body;
pub(crate) use fields::{body_object, bind_model, child_object, missing_claim, opt_object, opt_str};

use crate::aws::credentials::TenantCredentials;
use crate::config::TenantPolicy;
use crate::decide::cedar::PolicyResource;
use crate::decide::{self, Grant, Resource};
use crate::error::ProxyError;
use crate::filter::eventstream::StreamShape;
use crate::post::Post;
use crate::principal::Principal;
use crate::route::{Family, Operation, Route, Target};
use crate::session::SessionKeys;
use crate::usage::UsageSource;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

/// One request as the family hooks see it: the operation, who asks (the
/// verified principal and its tenant's policy) and the process's session
/// keys.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub op: Operation,
    pub principal: &'a Principal,
    pub policy: &'a TenantPolicy,
    pub keys: &'a SessionKeys,
}

impl<'a> Ctx<'a> {
    pub fn new(op: Operation, principal: &'a Principal, policy: &'a TenantPolicy, keys: &'a SessionKeys) -> Self {
        Ctx { op, principal, policy, keys }
    }

    /// The question to the policy decision point.
    pub fn request(&self) -> decide::Request<'a> {
        decide::Request { principal: self.principal, policy: self.policy, action: self.op }
    }

    /// Asks the policy decision point about one resource.
    pub fn decide(&self, resource: Resource<'_>) -> Result<Grant, ProxyError> {
        decide::check(&self.request(), resource)
    }
}

/// What a hook records for the audit line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Notes {
    /// The resource the request reached, when the path did not name it
    /// (the knowledge base of a RetrieveAndGenerate body).
    pub resource: Option<String>,
    /// The resource really reached, when a rewrite changed it (a mapped
    /// model, a SageMaker endpoint's real name).
    pub upstream_resource: Option<String>,
}

/// The request body: the bytes as read, and the tree the validator parsed
/// them into (`None` for opaque payloads).
pub struct RequestBody {
    pub bytes: Bytes,
    pub json: Option<Value>,
}

impl RequestBody {
    /// The validated tree, or the bytes parsed as a JSON object.
    fn tree(self) -> Result<Value, ProxyError> {
        match self.json {
            Some(v) => Ok(v),
            None => parse_json_body(&self.bytes),
        }
    }
}

/// A target of another family: the route table never builds one; refused
/// rather than passed if it ever did.
fn foreign_target(ctx: &Ctx<'_>) -> ProxyError {
    ProxyError::OperationNotAllowed(ctx.op.name().to_string())
}

/// A rewritten tree as the bytes to send.
fn to_bytes(v: &Value) -> Result<Bytes, ProxyError> {
    serde_json::to_vec(v).map(Bytes::from).map_err(|e| ProxyError::InvalidJson(e.to_string()))
}

/// What a request names and states, for the tenant's Cedar policies
/// (docs/reference.md §12). The resource has passed the allowlists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyQuestion<'a> {
    pub resource: PolicyResource<'a>,
    /// Further resources the request reaches, each asked about the same
    /// way (AgenticRetrieveStream's knowledge bases after the first).
    pub more: Vec<PolicyResource<'a>>,
    /// The output token limit the request states.
    pub max_tokens: Option<i64>,
    /// The service tier the request asks for.
    pub service_tier: Option<String>,
    /// Whether the answer streams, when the body decides it
    /// (ChatCompletions' `stream`); else the operation's answer shape does.
    pub streaming: Option<bool>,
}

impl<'a> PolicyQuestion<'a> {
    fn of(resource: PolicyResource<'a>) -> Self {
        PolicyQuestion { resource, more: Vec::new(), max_tokens: None, service_tier: None, streaming: None }
    }
}

/// How the response stage reads a family's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseShape {
    /// Where token usage is reported.
    pub usage: UsageSource,
    /// How an event-stream answer's events carry text.
    pub stream: StreamShape,
}

impl ResponseShape {
    /// Usage in headers only (or none), events without known text members.
    pub const PLAIN: ResponseShape = ResponseShape { usage: UsageSource::Headers, stream: StreamShape::Other };
}

/// The hooks every family implements (see the module table).
trait Hooks {
    fn authorize(_ctx: &Ctx<'_>, _target: &Target) -> Result<(), ProxyError> {
        Ok(())
    }

    fn before_body(_ctx: &Ctx<'_>, _target: &mut Target, _headers: &mut HeaderMap, _notes: &mut Notes) -> Result<(), ProxyError> {
        Ok(())
    }

    /// The query string to send (already checked against the operation's
    /// model), with the path's target. Default: as sent.
    fn rewrite_query(_ctx: &Ctx<'_>, _target: &mut Target, _query: &mut Option<String>) -> Result<(), ProxyError> {
        Ok(())
    }

    /// Default: the body goes as sent and the answer streams through.
    fn rewrite(
        _ctx: &Ctx<'_>,
        _target: &mut Target,
        _headers: &mut HeaderMap,
        body: RequestBody,
        _creds: &TenantCredentials,
        _notes: &mut Notes,
    ) -> Result<(Bytes, Post), ProxyError> {
        Ok((body.bytes, Post::Stream))
    }

    /// `ctx` may be borrowed for `'a` (a resource the tenant's
    /// configuration names, such as the inline agent's model).
    fn policy_question<'a>(
        ctx: &Ctx<'a>,
        target: &'a Target,
        headers: &'a HeaderMap,
        body: &'a RequestBody,
    ) -> Result<PolicyQuestion<'a>, ProxyError>;

    fn response_headers(_ctx: &Ctx<'_>, _post: &Post, _headers: &mut HeaderMap) {}

    fn response_shape(_op: Operation) -> ResponseShape {
        ResponseShape::PLAIN
    }
}

macro_rules! dispatch {
    ($family:expr, $hook:ident ( $($arg:expr),* )) => {
        match $family {
            Family::ModelCalls => <model_calls::ModelCalls as Hooks>::$hook($($arg),*),
            Family::Guardrails => <guardrails::Guardrails as Hooks>::$hook($($arg),*),
            Family::KnowledgeBases => <knowledge_bases::KnowledgeBases as Hooks>::$hook($($arg),*),
            Family::Agents => <agents::Agents as Hooks>::$hook($($arg),*),
            Family::SageMaker => <sagemaker::SageMaker as Hooks>::$hook($($arg),*),
            Family::AsyncJobs => <async_jobs::AsyncJobs as Hooks>::$hook($($arg),*),
            Family::Sessions => <sessions::Sessions as Hooks>::$hook($($arg),*),
            Family::Flows => <flows::Flows as Hooks>::$hook($($arg),*),
        }
    };
}

/// The `authorize` stage: what the path names, before the body is read.
pub fn authorize(ctx: &Ctx<'_>, route: &Route) -> Result<(), ProxyError> {
    dispatch!(ctx.op.family(), authorize(ctx, &route.target))
}

/// The query string to send, right after `authorize`: before the policies,
/// so they see what the query names too.
pub fn rewrite_query(ctx: &Ctx<'_>, route: &mut Route) -> Result<(), ProxyError> {
    dispatch!(ctx.op.family(), rewrite_query(ctx, &mut route.target, &mut route.query))
}

/// Decisions and rewrites that need only the path and headers.
pub fn before_body(ctx: &Ctx<'_>, route: &mut Route, headers: &mut HeaderMap, notes: &mut Notes) -> Result<(), ProxyError> {
    dispatch!(ctx.op.family(), before_body(ctx, &mut route.target, headers, notes))
}

/// The `rewrite` stage: the body to send, and what the response needs.
pub fn rewrite(
    ctx: &Ctx<'_>,
    route: &mut Route,
    headers: &mut HeaderMap,
    body: RequestBody,
    creds: &TenantCredentials,
    notes: &mut Notes,
) -> Result<(Bytes, Post), ProxyError> {
    dispatch!(ctx.op.family(), rewrite(ctx, &mut route.target, headers, body, creds, notes))
}

/// What the request names and states, for the tenant's policies.
pub fn policy_question<'a>(
    ctx: &Ctx<'a>,
    route: &'a Route,
    headers: &'a HeaderMap,
    body: &'a RequestBody,
) -> Result<PolicyQuestion<'a>, ProxyError> {
    dispatch!(ctx.op.family(), policy_question(ctx, &route.target, headers, body))
}

/// The family's response header rules.
pub fn response_headers(ctx: &Ctx<'_>, post: &Post, headers: &mut HeaderMap) {
    dispatch!(ctx.op.family(), response_headers(ctx, post, headers))
}

/// How the response stage reads this operation's answers.
pub fn response_shape(op: Operation) -> ResponseShape {
    dispatch!(op.family(), response_shape(op))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How each operation's answers are read: usage from the body or
    /// events of the Converse and InvokeModel streams only; event-stream
    /// text shapes for the five streaming answers.
    #[test]
    fn every_operation_has_its_response_shape() {
        use Operation::*;
        for op in Operation::ALL {
            let (usage, stream) = match op {
                Converse => (UsageSource::ConverseBody, StreamShape::Other),
                ConverseStream => (UsageSource::ConverseEvents, StreamShape::Converse),
                InvokeModelWithResponseStream => (UsageSource::ModelChunks, StreamShape::Model),
                ChatCompletions => (UsageSource::ChatCompletions, StreamShape::ChatCompletions),
                RetrieveAndGenerateStream => (UsageSource::Headers, StreamShape::Rag),
                AgenticRetrieveStream => (UsageSource::Headers, StreamShape::Agentic),
                InvokeAgent | InvokeInlineAgent => (UsageSource::Headers, StreamShape::Agent),
                InvokeEndpointWithResponseStream => (UsageSource::Headers, StreamShape::SageMaker),
                InvokeGuardrailChecks => (UsageSource::GuardrailChecksBody, StreamShape::Other),
                InvokeModel | CountTokens | ApplyGuardrail | Retrieve | RetrieveAndGenerate | Rerank | GetAgentMemory
                | DeleteAgentMemory | OptimizePrompt | InvokeEndpoint | InvokeEndpointAsync | StartAsyncInvoke
                | GetAsyncInvoke | ListAsyncInvokes | GetDocumentContent | GenerateQuery | CreateSession | GetSession
                | UpdateSession | EndSession | DeleteSession | CreateInvocation | ListInvocations | PutInvocationStep
                | GetInvocationStep | ListInvocationSteps | ListSessions | StartFlowExecution | GetFlowExecution
                | ListFlowExecutions | StopFlowExecution | ListFlowExecutionEvents | GetExecutionFlowSnapshot => {
                    (UsageSource::Headers, StreamShape::Other)
                }
                // Every flow event is whole (an output, a trace, a request
                // for input): redacted event by event.
                InvokeFlow => (UsageSource::Headers, StreamShape::Other),
            };
            assert_eq!(response_shape(op), ResponseShape { usage, stream }, "{op:?}");
        }
    }

    /// A family refuses a target of another family instead of passing it
    /// (the route table never builds one; a wrong table fails closed).
    #[test]
    fn a_target_of_another_family_is_refused() {
        let (who, policy, keys) = (crate::test_support::alice(), crate::test_support::policy(), SessionKeys::new(b"0123456789abcdef0123456789abcdef"));
        let model = Route { op: Operation::ApplyGuardrail, target: Target::Model("m".into()), query: None };
        let ctx = Ctx::new(model.op, &who, &policy, &keys);
        assert_eq!(authorize(&ctx, &model).unwrap_err().reason(), "operation_not_allowed");
        let mut kb = Route { op: Operation::InvokeAgent, target: Target::KnowledgeBase("KBPOOLED01".into()), query: None };
        let ctx = Ctx::new(kb.op, &who, &policy, &keys);
        assert_eq!(authorize(&ctx, &kb).unwrap_err().reason(), "operation_not_allowed");
        let mut notes = Notes::default();
        let ctx = Ctx::new(Operation::InvokeEndpoint, &who, &policy, &keys);
        let e = before_body(&ctx, &mut kb, &mut HeaderMap::new(), &mut notes).unwrap_err();
        assert_eq!(e.reason(), "operation_not_allowed");
    }
}
