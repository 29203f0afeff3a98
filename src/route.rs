//! Routing (docs/reference.md §5): method + raw path -> `Route` (operation and its decoded
//! resource ids). One listener serves all three services, so the path alone
//! decides the service. Paths are matched on percent-decoded segments; the
//! upstream path is rebuilt from the (possibly rewritten) ids and encoded the
//! way AWS SDKs encode URI labels, so a signature over it verifies upstream.

use crate::error::ProxyError;
use http::Method;

mod refused;
pub use refused::{Refused, Why, REFUSED};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Service of an operation: decides the endpoint and the SigV4 signing name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    BedrockRuntime,
    BedrockAgentRuntime,
    SageMakerRuntime,
}

impl Service {
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::BedrockRuntime | Service::BedrockAgentRuntime => "bedrock",
            Service::SageMakerRuntime => "sagemaker",
        }
    }
}

/// Operation families, each with one module in `crate::family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    ModelCalls,
    Guardrails,
    KnowledgeBases,
    Agents,
    SageMaker,
    AsyncJobs,
    Sessions,
    Flows,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    InvokeModel,
    InvokeModelWithResponseStream,
    Converse,
    ConverseStream,
    CountTokens,
    ApplyGuardrail,
    Retrieve,
    RetrieveAndGenerate,
    RetrieveAndGenerateStream,
    AgenticRetrieveStream,
    InvokeAgent,
    GetAgentMemory,
    DeleteAgentMemory,
    InvokeInlineAgent,
    OptimizePrompt,
    Rerank,
    GetDocumentContent,
    GenerateQuery,
    InvokeGuardrailChecks,
    InvokeEndpoint,
    InvokeEndpointWithResponseStream,
    InvokeEndpointAsync,
    StartAsyncInvoke,
    GetAsyncInvoke,
    ListAsyncInvokes,
    CreateSession,
    GetSession,
    UpdateSession,
    EndSession,
    DeleteSession,
    CreateInvocation,
    ListInvocations,
    PutInvocationStep,
    GetInvocationStep,
    ListInvocationSteps,
    ListSessions,
    InvokeFlow,
    StartFlowExecution,
    GetFlowExecution,
    ListFlowExecutions,
    StopFlowExecution,
    ListFlowExecutionEvents,
    GetExecutionFlowSnapshot,
    /// POST `/openai/v1/chat/completions` on bedrock-runtime: OpenAI's
    /// Create chat completion. Not in the botocore models (see
    /// [`Operation::has_aws_model`]).
    ChatCompletions,
}

impl Operation {
    /// Every operation tenantgate routes (docs/reference.md §5).
    pub const ALL: [Operation; 44] = {
        use Operation::*;
        [
            InvokeModel,
            InvokeModelWithResponseStream,
            Converse,
            ConverseStream,
            CountTokens,
            ApplyGuardrail,
            Retrieve,
            RetrieveAndGenerate,
            RetrieveAndGenerateStream,
            InvokeAgent,
            Rerank,
            InvokeEndpoint,
            InvokeEndpointWithResponseStream,
            InvokeEndpointAsync,
            GetAgentMemory,
            DeleteAgentMemory,
            StartAsyncInvoke,
            GetAsyncInvoke,
            ListAsyncInvokes,
            OptimizePrompt,
            GetDocumentContent,
            GenerateQuery,
            InvokeGuardrailChecks,
            AgenticRetrieveStream,
            InvokeInlineAgent,
            CreateSession,
            GetSession,
            UpdateSession,
            EndSession,
            DeleteSession,
            CreateInvocation,
            ListInvocations,
            PutInvocationStep,
            GetInvocationStep,
            ListInvocationSteps,
            ListSessions,
            InvokeFlow,
            StartFlowExecution,
            GetFlowExecution,
            ListFlowExecutions,
            StopFlowExecution,
            ListFlowExecutionEvents,
            GetExecutionFlowSnapshot,
            ChatCompletions,
        ]
    };

    /// Whether the vendored botocore models define the operation. Only
    /// ChatCompletions (OpenAI's API served by bedrock-runtime) has no
    /// botocore model: `validate` checks its headers, query and body by its
    /// own rules.
    pub fn has_aws_model(self) -> bool {
        self != Operation::ChatCompletions
    }

    /// The docs/reference.md §5 name, used in audit records and metric
    /// labels; also the operation's name in the AWS service model.
    pub fn name(self) -> &'static str {
        use Operation::*;
        match self {
            InvokeModel => "InvokeModel",
            InvokeModelWithResponseStream => "InvokeModelWithResponseStream",
            Converse => "Converse",
            ConverseStream => "ConverseStream",
            CountTokens => "CountTokens",
            ApplyGuardrail => "ApplyGuardrail",
            Retrieve => "Retrieve",
            RetrieveAndGenerate => "RetrieveAndGenerate",
            RetrieveAndGenerateStream => "RetrieveAndGenerateStream",
            AgenticRetrieveStream => "AgenticRetrieveStream",
            InvokeAgent => "InvokeAgent",
            GetAgentMemory => "GetAgentMemory",
            DeleteAgentMemory => "DeleteAgentMemory",
            InvokeInlineAgent => "InvokeInlineAgent",
            OptimizePrompt => "OptimizePrompt",
            Rerank => "Rerank",
            GetDocumentContent => "GetDocumentContent",
            GenerateQuery => "GenerateQuery",
            InvokeGuardrailChecks => "InvokeGuardrailChecks",
            InvokeEndpoint => "InvokeEndpoint",
            InvokeEndpointWithResponseStream => "InvokeEndpointWithResponseStream",
            InvokeEndpointAsync => "InvokeEndpointAsync",
            StartAsyncInvoke => "StartAsyncInvoke",
            GetAsyncInvoke => "GetAsyncInvoke",
            ListAsyncInvokes => "ListAsyncInvokes",
            CreateSession => "CreateSession",
            GetSession => "GetSession",
            UpdateSession => "UpdateSession",
            EndSession => "EndSession",
            DeleteSession => "DeleteSession",
            CreateInvocation => "CreateInvocation",
            ListInvocations => "ListInvocations",
            PutInvocationStep => "PutInvocationStep",
            GetInvocationStep => "GetInvocationStep",
            ListInvocationSteps => "ListInvocationSteps",
            ListSessions => "ListSessions",
            InvokeFlow => "InvokeFlow",
            StartFlowExecution => "StartFlowExecution",
            GetFlowExecution => "GetFlowExecution",
            ListFlowExecutions => "ListFlowExecutions",
            StopFlowExecution => "StopFlowExecution",
            ListFlowExecutionEvents => "ListFlowExecutionEvents",
            GetExecutionFlowSnapshot => "GetExecutionFlowSnapshot",
            ChatCompletions => "ChatCompletions",
        }
    }

    pub fn service(self) -> Service {
        use Operation::*;
        match self {
            InvokeModel | InvokeModelWithResponseStream | Converse | ConverseStream
            | CountTokens | ApplyGuardrail | StartAsyncInvoke | GetAsyncInvoke | ListAsyncInvokes
            | InvokeGuardrailChecks | ChatCompletions => {
                Service::BedrockRuntime
            }
            Retrieve | RetrieveAndGenerate | RetrieveAndGenerateStream | AgenticRetrieveStream | InvokeAgent
            | GetAgentMemory | DeleteAgentMemory | InvokeInlineAgent | OptimizePrompt | Rerank | GetDocumentContent
            | GenerateQuery | CreateSession | GetSession | UpdateSession | EndSession | DeleteSession | CreateInvocation
            | ListInvocations | PutInvocationStep | GetInvocationStep | ListInvocationSteps | ListSessions
            | InvokeFlow | StartFlowExecution | GetFlowExecution | ListFlowExecutions | StopFlowExecution
            | ListFlowExecutionEvents | GetExecutionFlowSnapshot => {
                Service::BedrockAgentRuntime
            }
            InvokeEndpoint | InvokeEndpointWithResponseStream | InvokeEndpointAsync => {
                Service::SageMakerRuntime
            }
        }
    }

    /// The family whose module (`crate::family`) holds the operation's
    /// decisions, rewrites and response rules.
    pub fn family(self) -> Family {
        use Operation::*;
        match self {
            InvokeModel | InvokeModelWithResponseStream | Converse | ConverseStream | CountTokens | Rerank
            | OptimizePrompt | ChatCompletions => {
                Family::ModelCalls
            }
            ApplyGuardrail | InvokeGuardrailChecks => Family::Guardrails,
            Retrieve | RetrieveAndGenerate | RetrieveAndGenerateStream | AgenticRetrieveStream | GetDocumentContent
            | GenerateQuery => Family::KnowledgeBases,
            InvokeAgent | GetAgentMemory | DeleteAgentMemory | InvokeInlineAgent => Family::Agents,
            InvokeEndpoint | InvokeEndpointWithResponseStream | InvokeEndpointAsync => Family::SageMaker,
            StartAsyncInvoke | GetAsyncInvoke | ListAsyncInvokes => Family::AsyncJobs,
            CreateSession | GetSession | UpdateSession | EndSession | DeleteSession | CreateInvocation
            | ListInvocations | PutInvocationStep | GetInvocationStep | ListInvocationSteps | ListSessions => Family::Sessions,
            InvokeFlow | StartFlowExecution | GetFlowExecution | ListFlowExecutions | StopFlowExecution
            | ListFlowExecutionEvents | GetExecutionFlowSnapshot => Family::Flows,
        }
    }
}

/// A recognised request: the operation and what its path names, decoded.
/// Rewrites change the target; `upstream_path` re-encodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub op: Operation,
    /// What the path names, decoded.
    pub target: Target,
    /// The query string to send upstream: the client's, once checked
    /// against the operation's model, as the family rewrote it.
    pub query: Option<String>,
}

/// What a request's path names, by operation family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Model calls: the model id, ARN or inference profile (the rewrite
    /// replaces it by the mapped one before forwarding).
    Model(String),
    Guardrail { id: String, version: String },
    KnowledgeBase(String),
    /// GetDocumentContent: a document of one data source of a knowledge
    /// base.
    Document { kb: String, data_source: String, document: String },
    Agent { agent: String, alias: String, session: String },
    /// An agent alias without a session (GetAgentMemory,
    /// DeleteAgentMemory); `memory` is the client's `memoryId` from the
    /// query string once the family's query rewrite has checked it.
    AgentAlias { agent: String, alias: String, memory: Option<String> },
    /// InvokeInlineAgent: the client's session id (the agent itself is the
    /// tenant's `inline_agent` configuration).
    InlineAgent { session: String },
    Endpoint(String),
    /// GetAsyncInvoke: the invocation ARN.
    AsyncInvocation(String),
    /// The Sessions API under `/sessions/{sessionIdentifier}`: the session
    /// identifier as the client sent it (sealed, `family::sessions`; the
    /// family puts Bedrock's id in its place once it verifies), and
    /// GetInvocationStep's `invocationStepId`.
    Session { session: String, step: Option<String> },
    /// A flow alias (InvokeFlow, StartFlowExecution).
    Flow { flow: String, alias: String },
    /// One execution of a flow alias (GetFlowExecution, StopFlowExecution,
    /// ListFlowExecutionEvents, GetExecutionFlowSnapshot): `execution` as
    /// the path names it (an id or an execution ARN) until the family has
    /// checked it and put the bare id in its place.
    FlowExecution { flow: String, alias: String, execution: String },
    /// ListFlowExecutions: the flow, and the alias of its
    /// `flowAliasIdentifier` query parameter once the family's query
    /// rewrite has checked it.
    FlowExecutions { flow: String, alias: Option<String> },
    /// Operations whose path names nothing (RetrieveAndGenerate(Stream),
    /// AgenticRetrieveStream, Rerank, OptimizePrompt, StartAsyncInvoke,
    /// ListAsyncInvokes): what
    /// they reach is in the body, or in the answer.
    Nothing,
}

impl Target {
    /// The path labels in the order the path carries them.
    pub fn labels(&self) -> Vec<&str> {
        match self {
            Target::Model(m) | Target::KnowledgeBase(m) | Target::Endpoint(m) | Target::AsyncInvocation(m) => vec![m],
            Target::Guardrail { id, version } => vec![id, version],
            Target::Document { kb, data_source, document } => vec![kb, data_source, document],
            Target::Agent { agent, alias, session } => vec![agent, alias, session],
            Target::AgentAlias { agent, alias, .. } => vec![agent, alias],
            Target::Session { session, step } => std::iter::once(session.as_str()).chain(step.as_deref()).collect(),
            Target::Flow { flow, alias } => vec![flow, alias],
            Target::FlowExecution { flow, alias, execution } => vec![flow, alias, execution],
            Target::FlowExecutions { flow, .. } => vec![flow],
            Target::InlineAgent { session } => vec![session],
            Target::Nothing => vec![],
        }
    }

    fn from_labels(op: Operation, mut ids: Vec<String>) -> Target {
        use Operation::*;
        let mut next = || if ids.is_empty() { String::new() } else { ids.remove(0) };
        match op {
            InvokeModel | InvokeModelWithResponseStream | Converse | ConverseStream | CountTokens => Target::Model(next()),
            ApplyGuardrail => Target::Guardrail { id: next(), version: next() },
            Retrieve => Target::KnowledgeBase(next()),
            GetDocumentContent => Target::Document { kb: next(), data_source: next(), document: next() },
            InvokeAgent => Target::Agent { agent: next(), alias: next(), session: next() },
            GetAgentMemory | DeleteAgentMemory => Target::AgentAlias { agent: next(), alias: next(), memory: None },
            InvokeInlineAgent => Target::InlineAgent { session: next() },
            InvokeEndpoint | InvokeEndpointWithResponseStream | InvokeEndpointAsync => Target::Endpoint(next()),
            GetAsyncInvoke => Target::AsyncInvocation(next()),
            GetSession | UpdateSession | EndSession | DeleteSession | CreateInvocation | ListInvocations
            | PutInvocationStep | ListInvocationSteps => Target::Session { session: next(), step: None },
            GetInvocationStep => Target::Session { session: next(), step: Some(next()) },
            InvokeFlow | StartFlowExecution => Target::Flow { flow: next(), alias: next() },
            GetFlowExecution | StopFlowExecution | ListFlowExecutionEvents | GetExecutionFlowSnapshot => {
                Target::FlowExecution { flow: next(), alias: next(), execution: next() }
            }
            ListFlowExecutions => Target::FlowExecutions { flow: next(), alias: None },
            RetrieveAndGenerate | RetrieveAndGenerateStream | AgenticRetrieveStream | Rerank | OptimizePrompt
            | StartAsyncInvoke | ListAsyncInvokes | GenerateQuery | InvokeGuardrailChecks | CreateSession
            | ListSessions | ChatCompletions => Target::Nothing,
        }
    }
}

impl Route {
    /// The resource named in audit records: model id, KB id,
    /// `agentId/aliasId` or endpoint name, as requested (InvokeInlineAgent
    /// names none in its path: its family notes the configured model).
    pub fn resource(&self) -> String {
        match &self.target {
            Target::Guardrail { id, version } => format!("{id}:{version}"),
            Target::Agent { agent, alias, .. } | Target::AgentAlias { agent, alias, .. } => format!("{agent}/{alias}"),
            Target::Model(m) | Target::KnowledgeBase(m) | Target::Endpoint(m) | Target::AsyncInvocation(m) => m.clone(),
            Target::Session { session, .. } => session.clone(),
            // The knowledge base decides; the document is named in the audit record too.
            Target::Document { kb, data_source, document } => format!("{kb}/{data_source}/{document}"),
            Target::Flow { flow, alias } | Target::FlowExecution { flow, alias, .. } => format!("{flow}/{alias}"),
            Target::FlowExecutions { flow, alias: Some(alias) } => format!("{flow}/{alias}"),
            Target::FlowExecutions { flow, alias: None } => flow.clone(),
            Target::InlineAgent { .. } | Target::Nothing => String::new(),
        }
    }

    /// The path to send upstream, each label encoded as AWS SDKs do.
    pub fn upstream_path(&self) -> String {
        use Operation::*;
        let labels = self.target.labels();
        let e = |i: usize| encode_label(labels[i]);
        match self.op {
            InvokeModel => format!("/model/{}/invoke", e(0)),
            InvokeModelWithResponseStream => format!("/model/{}/invoke-with-response-stream", e(0)),
            Converse => format!("/model/{}/converse", e(0)),
            ConverseStream => format!("/model/{}/converse-stream", e(0)),
            CountTokens => format!("/model/{}/count-tokens", e(0)),
            ApplyGuardrail => format!("/guardrail/{}/version/{}/apply", e(0), e(1)),
            Retrieve => format!("/knowledgebases/{}/retrieve", e(0)),
            RetrieveAndGenerate => "/retrieveAndGenerate".to_string(),
            RetrieveAndGenerateStream => "/retrieveAndGenerateStream".to_string(),
            AgenticRetrieveStream => "/agenticRetrieveStream".to_string(),
            InvokeAgent => format!(
                "/agents/{}/agentAliases/{}/sessions/{}/text",
                e(0),
                e(1),
                e(2)
            ),
            GetAgentMemory | DeleteAgentMemory => format!("/agents/{}/agentAliases/{}/memories", e(0), e(1)),
            InvokeInlineAgent => format!("/agents/{}", e(0)),
            Rerank => "/rerank".to_string(),
            OptimizePrompt => "/optimize-prompt".to_string(),
            GetDocumentContent => format!("/knowledgebases/{}/datasources/{}/documents/{}/content", e(0), e(1), e(2)),
            GenerateQuery => "/generateQuery".to_string(),
            InvokeGuardrailChecks => "/guardrail-checks/invoke".to_string(),
            InvokeFlow => format!("/flows/{}/aliases/{}", e(0), e(1)),
            StartFlowExecution => format!("/flows/{}/aliases/{}/executions", e(0), e(1)),
            GetFlowExecution => format!("/flows/{}/aliases/{}/executions/{}", e(0), e(1), e(2)),
            ListFlowExecutions => format!("/flows/{}/executions", e(0)),
            StopFlowExecution => format!("/flows/{}/aliases/{}/executions/{}/stop", e(0), e(1), e(2)),
            ListFlowExecutionEvents => format!("/flows/{}/aliases/{}/executions/{}/events", e(0), e(1), e(2)),
            GetExecutionFlowSnapshot => format!("/flows/{}/aliases/{}/executions/{}/flowsnapshot", e(0), e(1), e(2)),
            InvokeEndpoint => format!("/endpoints/{}/invocations", e(0)),
            InvokeEndpointWithResponseStream => {
                format!("/endpoints/{}/invocations-response-stream", e(0))
            }
            InvokeEndpointAsync => format!("/endpoints/{}/async-invocations", e(0)),
            StartAsyncInvoke | ListAsyncInvokes => "/async-invoke".to_string(),
            GetAsyncInvoke => format!("/async-invoke/{}", e(0)),
            CreateSession | ListSessions => "/sessions/".to_string(),
            GetSession | UpdateSession | DeleteSession => format!("/sessions/{}/", e(0)),
            EndSession => format!("/sessions/{}", e(0)),
            CreateInvocation | ListInvocations => format!("/sessions/{}/invocations/", e(0)),
            PutInvocationStep | ListInvocationSteps => format!("/sessions/{}/invocationSteps/", e(0)),
            GetInvocationStep => format!("/sessions/{}/invocationSteps/{}", e(0), e(1)),
            ChatCompletions => "/openai/v1/chat/completions".to_string(),
        }
    }
}

/// Characters left as they are in a URI label: RFC 3986 unreserved, which is
/// what botocore (`percent_encode(value, safe='-._~')`) and the other SDKs
/// leave alone. `:` and `/` in ARNs become `%3A` and `%2F`.
const LABEL: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub fn encode_label(s: &str) -> String {
    utf8_percent_encode(s, LABEL).to_string()
}

fn decode(seg: &str) -> Result<String, ProxyError> {
    percent_decode_str(seg)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| ProxyError::InvalidParameter("path segment is not valid UTF-8".into()))
}

/// Classify a request. Unknown -> 404 `unknown_operation`; a known operation
/// of these services that has no isolation rules -> 403 `operation_not_allowed`.
pub fn classify(method: &Method, raw_path: &str) -> Result<Route, ProxyError> {
    let unknown = || ProxyError::UnknownOperation {
        method: method.to_string(),
        path: truncate(raw_path, 200),
    };
    if !raw_path.starts_with('/') {
        return Err(unknown());
    }
    let raw: Vec<&str> = raw_path[1..].split('/').collect();
    use Operation::*;
    // The async-invoke operations share a path and differ by method; the
    // flow operations are GETs and POSTs under `/flows`.
    let by_method: Option<(Operation, &[usize])> = match (method.as_str(), raw.as_slice()) {
        ("POST", ["async-invoke"]) => Some((StartAsyncInvoke, &[])),
        ("GET", ["async-invoke"]) => Some((ListAsyncInvokes, &[])),
        ("GET", ["async-invoke", _]) => Some((GetAsyncInvoke, &[1])),
        // The Sessions API (`family::sessions`): one path, several methods.
        ("PUT", ["sessions", ""]) => Some((CreateSession, &[])),
        ("POST", ["sessions", ""]) => Some((ListSessions, &[])),
        ("GET", ["sessions", _, ""]) => Some((GetSession, &[1])),
        ("PUT", ["sessions", _, ""]) => Some((UpdateSession, &[1])),
        ("PATCH", ["sessions", _]) => Some((EndSession, &[1])),
        ("DELETE", ["sessions", _, ""]) => Some((DeleteSession, &[1])),
        ("PUT", ["sessions", _, "invocations", ""]) => Some((CreateInvocation, &[1])),
        ("POST", ["sessions", _, "invocations", ""]) => Some((ListInvocations, &[1])),
        ("PUT", ["sessions", _, "invocationSteps", ""]) => Some((PutInvocationStep, &[1])),
        ("POST", ["sessions", _, "invocationSteps", ""]) => Some((ListInvocationSteps, &[1])),
        ("POST", ["sessions", _, "invocationSteps", _]) => Some((GetInvocationStep, &[1, 3])),
        ("POST", ["flows", _, "aliases", _]) => Some((InvokeFlow, &[1, 3])),
        ("POST", ["flows", _, "aliases", _, "executions"]) => Some((StartFlowExecution, &[1, 3])),
        ("GET", ["flows", _, "aliases", _, "executions", _]) => Some((GetFlowExecution, &[1, 3, 5])),
        ("GET", ["flows", _, "executions"]) => Some((ListFlowExecutions, &[1])),
        ("POST", ["flows", _, "aliases", _, "executions", _, "stop"]) => Some((StopFlowExecution, &[1, 3, 5])),
        ("GET", ["flows", _, "aliases", _, "executions", _, "events"]) => Some((ListFlowExecutionEvents, &[1, 3, 5])),
        ("GET", ["flows", _, "aliases", _, "executions", _, "flowsnapshot"]) => {
            Some((GetExecutionFlowSnapshot, &[1, 3, 5]))
        }
        _ => None,
    };
    if let Some((op, idx)) = by_method {
        return route_of(op, &raw, idx, unknown);
    }
    if let Some(r) = refused::find(method, &raw) {
        return Err(ProxyError::OperationNotAllowed(format!("{} ({})", r.name, r.reason)));
    }
    if let Some(name) = denied_operation(method, &raw) {
        return Err(ProxyError::OperationNotAllowed(name.to_string()));
    }
    let (op, idx): (Operation, &[usize]) = match raw.as_slice() {
        ["agents", _, "agentAliases", _, "memories"] if method == Method::GET => (GetAgentMemory, &[1, 3]),
        ["agents", _, "agentAliases", _, "memories"] if method == Method::DELETE => (DeleteAgentMemory, &[1, 3]),
        _ if method != Method::POST => return Err(unknown()),
        ["model", _, "invoke"] => (InvokeModel, &[1]),
        ["model", _, "invoke-with-response-stream"] => (InvokeModelWithResponseStream, &[1]),
        ["model", _, "converse"] => (Converse, &[1]),
        ["model", _, "converse-stream"] => (ConverseStream, &[1]),
        ["model", _, "count-tokens"] => (CountTokens, &[1]),
        ["guardrail", _, "version", _, "apply"] => (ApplyGuardrail, &[1, 3]),
        ["knowledgebases", _, "retrieve"] => (Retrieve, &[1]),
        ["retrieveAndGenerate"] => (RetrieveAndGenerate, &[]),
        ["retrieveAndGenerateStream"] => (RetrieveAndGenerateStream, &[]),
        ["agenticRetrieveStream"] => (AgenticRetrieveStream, &[]),
        ["agents", _, "agentAliases", _, "sessions", _, "text"] => (InvokeAgent, &[1, 3, 5]),
        ["agents", _] => (InvokeInlineAgent, &[1]),
        ["rerank"] => (Rerank, &[]),
        ["optimize-prompt"] => (OptimizePrompt, &[]),
        ["knowledgebases", _, "datasources", _, "documents", _, "content"] => (GetDocumentContent, &[1, 3, 5]),
        ["generateQuery"] => (GenerateQuery, &[]),
        ["guardrail-checks", "invoke"] => (InvokeGuardrailChecks, &[]),
        ["openai", "v1", "chat", "completions"] => (ChatCompletions, &[]),
        ["endpoints", _, "invocations"] => (InvokeEndpoint, &[1]),
        ["endpoints", _, "invocations-response-stream"] => {
            (InvokeEndpointWithResponseStream, &[1])
        }
        ["endpoints", _, "async-invocations"] => (InvokeEndpointAsync, &[1]),
        _ => return Err(unknown()),
    };
    route_of(op, &raw, idx, unknown)
}

/// The route of `op`, its path ids (at `idx` in `raw`) decoded and checked.
fn route_of(op: Operation, raw: &[&str], idx: &[usize], unknown: impl Fn() -> ProxyError) -> Result<Route, ProxyError> {
    let mut ids = Vec::with_capacity(idx.len());
    for &i in idx {
        let id = decode(raw[i])?;
        if id.is_empty() {
            return Err(unknown());
        }
        check_id(op, i, &id)?;
        ids.push(id);
    }
    Ok(Route { op, target: Target::from_labels(op, ids), query: None })
}

/// True when a `/`-separated value has an empty, `.` or `..` segment: one
/// that a path resolver could collapse or climb out of.
pub(crate) fn has_dot_or_empty_segment(v: &str) -> bool {
    v.split('/').any(|seg| matches!(seg, "" | "." | ".."))
}

/// Longest path identifier accepted (Bedrock ARNs stay far below it).
const MAX_ID_LEN: usize = 2048;

/// A decoded path identifier must be one AWS could accept: the characters
/// of AWS's own patterns for these ids (letters, digits, `.`, `_`, `:`, `-`,
/// and `/` only inside model and guardrail ARNs) and no `.`, `..` or empty
/// `/`-segment. Anything else (a space, a control character, `?`, `%`,
/// `\`, a dot-segment) is a mistake or a trick, refused with 400 before any
/// policy is consulted and before anything is sent. SageMaker endpoint
/// names get this check too, and AWS's stricter pattern in
/// `family::sagemaker`.
fn check_id(op: Operation, index: usize, id: &str) -> Result<(), ProxyError> {
    use Operation::*;
    let (what, slash) = match (op, index) {
        // The rewrite checks AWS's stricter endpoint-name pattern; this one
        // already keeps `/` and dot segments out of every routed id.
        (InvokeEndpoint | InvokeEndpointWithResponseStream | InvokeEndpointAsync, _) => ("endpoint name", false),
        (InvokeModel | InvokeModelWithResponseStream | Converse | ConverseStream | CountTokens, _) => {
            ("model id", true)
        }
        (ApplyGuardrail, 1) => ("guardrail identifier", true),
        (ApplyGuardrail, _) => ("guardrail version", false),
        (Retrieve, _) => ("knowledge base id", false),
        (InvokeAgent, 1) => ("agent id", false),
        (InvokeAgent, 3) => ("agent alias id", false),
        (InvokeAgent, _) => ("session id", false),
        (GetAgentMemory | DeleteAgentMemory, 1) => ("agent id", false),
        (GetAgentMemory | DeleteAgentMemory, _) => ("agent alias id", false),
        (InvokeInlineAgent, _) => ("session id", false),
        // AWS's pattern (`family::async_jobs`) is checked by `authorize`.
        (GetAsyncInvoke, _) => ("invocation ARN", true),
        // A session ARN passes here to be refused as unsealed (403
        // `cross_tenant`) by `family::sessions`, like any id it cannot open.
        (GetInvocationStep, 3) => ("invocation step id", false),
        (
            GetSession | UpdateSession | EndSession | DeleteSession | CreateInvocation | ListInvocations
            | PutInvocationStep | GetInvocationStep | ListInvocationSteps,
            _,
        ) => ("session identifier", true),
        (GetDocumentContent, 1) => ("knowledge base id", false),
        (GetDocumentContent, 3) => ("data source id", false),
        (GetDocumentContent, _) => return check_document_id(id),
        // AWS's patterns (ids, or ARNs naming the flow, alias or execution)
        // are checked by `family::flows`.
        (
            InvokeFlow | StartFlowExecution | GetFlowExecution | ListFlowExecutions | StopFlowExecution
            | ListFlowExecutionEvents | GetExecutionFlowSnapshot,
            1,
        ) => ("flow identifier", true),
        (
            InvokeFlow | StartFlowExecution | GetFlowExecution | StopFlowExecution | ListFlowExecutionEvents
            | GetExecutionFlowSnapshot,
            3,
        ) => ("flow alias identifier", true),
        (GetFlowExecution | StopFlowExecution | ListFlowExecutionEvents | GetExecutionFlowSnapshot, _) => {
            ("execution identifier", true)
        }
        (
            RetrieveAndGenerate | RetrieveAndGenerateStream | AgenticRetrieveStream | Rerank | OptimizePrompt
            | StartAsyncInvoke | ListAsyncInvokes | GenerateQuery | InvokeGuardrailChecks | CreateSession | ListSessions
            | InvokeFlow | StartFlowExecution | ListFlowExecutions | ChatCompletions,
            _,
        ) => {
            ("path id", false)
        }
    };
    // `/` only inside an ARN: AWS's plain model ids, inference-profile ids
    // and guardrail ids never hold one.
    let slash = slash && id.starts_with("arn:");
    let chars_ok = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-') || (slash && b == b'/'));
    if id.len() <= MAX_ID_LEN && chars_ok && !has_dot_or_empty_segment(id) {
        return Ok(());
    }
    let allowed = if slash {
        "letters, digits, '.', '_', ':', '-' and '/'"
    } else {
        "letters, digits, '.', '_', ':' and '-' ('/' only inside an ARN)"
    };
    Err(ProxyError::InvalidParameter(format!(
        "{what} {:?} is not valid: it may hold only {allowed} (no empty, '.' or '..' segments, at most {MAX_ID_LEN} characters)",
        truncate(id, 200)
    )))
}

/// A document id (GetDocumentContent): AWS allows 1 to 1,825 characters
/// without control characters, `/` included (custom data sources name
/// documents freely). It travels as one encoded path label, so no character
/// can change the path upstream; control characters are refused.
fn check_document_id(id: &str) -> Result<(), ProxyError> {
    if id.chars().count() <= 1825 && !id.chars().any(char::is_control) {
        return Ok(());
    }
    Err(ProxyError::InvalidParameter(format!(
        "document id {:?} is not valid: at most 1825 characters, no control characters",
        truncate(id, 200)
    )))
}

/// Operations of these services that exist upstream but have no isolation
/// rules here: denied whatever the method (docs/reference.md §5). The
/// memories path is routed for GET and DELETE only, `/optimize-prompt`
/// and `/agents/{sessionId}` (InvokeInlineAgent) for POST only.
fn denied_operation(method: &Method, raw: &[&str]) -> Option<&'static str> {
    match raw {
        [first, ..] if first.starts_with("async-invoke") => Some("AsyncInvoke"),
        ["model", _, "invoke-with-bidirectional-stream", ..] => {
            Some("InvokeModelWithBidirectionalStream")
        }
        ["agents", _, "agentAliases", _, "sessions", _, "text"] => None,
        ["agents", _, "agentAliases", _, "memories"] if method == Method::GET || method == Method::DELETE => None,
        ["agents", _, "agentAliases", _, "memories", ..] => Some("AgentMemory"),
        ["agents", _] if method == Method::POST => None,
        ["agents", ..] => Some("InvokeInlineAgent"),
        ["flows", ..] => Some("Flows"),
        [first, ..] if first.starts_with("sessions") => Some("Sessions"),
        ["optimize-prompt"] if method == Method::POST => None,
        ["optimize-prompt", ..] => Some("OptimizePrompt"),
        ["guardrail", _, "version", _, "apply"] => None,
        ["guardrail", ..] => Some("Guardrail"),
        _ => None,
    }
}

/// The name of the refused operation (docs/operations.md) a request is,
/// for its audit record.
pub fn refused_name(method: &Method, raw_path: &str) -> Option<&'static str> {
    let raw: Vec<&str> = raw_path.strip_prefix('/')?.split('/').collect();
    refused::find(method, &raw).map(|r| r.name)
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(p: &str) -> Result<Route, ProxyError> {
        classify(&Method::POST, p)
    }

    #[test]
    fn every_spec_section_5_operation_is_recognised() {
        let cases = [
            ("/model/m/invoke", Operation::InvokeModel),
            ("/model/m/invoke-with-response-stream", Operation::InvokeModelWithResponseStream),
            ("/model/m/converse", Operation::Converse),
            ("/model/m/converse-stream", Operation::ConverseStream),
            ("/model/m/count-tokens", Operation::CountTokens),
            ("/guardrail/g/version/1/apply", Operation::ApplyGuardrail),
            ("/knowledgebases/KB1/retrieve", Operation::Retrieve),
            ("/retrieveAndGenerate", Operation::RetrieveAndGenerate),
            ("/retrieveAndGenerateStream", Operation::RetrieveAndGenerateStream),
            ("/agenticRetrieveStream", Operation::AgenticRetrieveStream),
            ("/agents/A/agentAliases/B/sessions/S/text", Operation::InvokeAgent),
            ("/rerank", Operation::Rerank),
            ("/optimize-prompt", Operation::OptimizePrompt),
            ("/endpoints/e/invocations", Operation::InvokeEndpoint),
            ("/endpoints/e/invocations-response-stream", Operation::InvokeEndpointWithResponseStream),
            ("/endpoints/e/async-invocations", Operation::InvokeEndpointAsync),
            ("/openai/v1/chat/completions", Operation::ChatCompletions),
        ];
        for (path, op) in cases {
            let r = post(path).unwrap();
            assert_eq!(r.op, op, "{path}");
            assert_eq!(r.upstream_path(), path, "round trip {path}");
        }
    }

    #[test]
    fn agent_memory_is_routed_by_method() {
        let p = "/agents/AGENT12345/agentAliases/ALIAS6789/memories";
        let r = classify(&Method::GET, p).unwrap();
        assert_eq!(r.op, Operation::GetAgentMemory);
        assert_eq!(r.target, Target::AgentAlias { agent: "AGENT12345".into(), alias: "ALIAS6789".into(), memory: None });
        assert_eq!((r.upstream_path(), r.resource()), (p.to_string(), "AGENT12345/ALIAS6789".to_string()));
        assert_eq!(classify(&Method::DELETE, p).unwrap().op, Operation::DeleteAgentMemory);
        for m in [Method::POST, Method::PUT, Method::PATCH] {
            assert_eq!(classify(&m, p).unwrap_err().reason(), "operation_not_allowed", "{m}");
        }
        for bad in ["/agents/A%2FX/agentAliases/B/memories", "/agents/A/agentAliases/B%20C/memories", "/agents/A/agentAliases/../memories"] {
            assert_eq!(classify(&Method::GET, bad).unwrap_err().reason(), "invalid_parameter", "{bad}");
        }
        assert_eq!(classify(&Method::GET, "/agents//agentAliases/B/memories").unwrap_err().reason(), "unknown_operation");
    }

    #[test]
    fn async_invoke_operations_are_told_apart_by_method() {
        assert_eq!(post("/async-invoke").unwrap().op, Operation::StartAsyncInvoke);
        let list = classify(&Method::GET, "/async-invoke").unwrap();
        assert_eq!((list.op, list.upstream_path()), (Operation::ListAsyncInvokes, "/async-invoke".to_string()));
        // The ARN arrives percent-encoded in one segment, as botocore sends it.
        let raw = "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aasync-invoke%2Fabcdef012345";
        let get = classify(&Method::GET, raw).unwrap();
        assert_eq!(get.op, Operation::GetAsyncInvoke);
        assert_eq!(get.target, Target::AsyncInvocation("arn:aws:bedrock:us-east-1:111122223333:async-invoke/abcdef012345".into()));
        assert_eq!(get.upstream_path(), raw);
        for bad in [
            "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aasync-invoke%2F..%2Fx",
            "/async-invoke/arn%3Aaws%2F%2Fx",
            "/async-invoke/a%20b",
            "/async-invoke/a%3Fb",
        ] {
            let e = classify(&Method::GET, bad).unwrap_err();
            assert_eq!(e.reason(), "invalid_parameter", "{bad}");
        }
        assert_eq!(classify(&Method::GET, "/async-invoke/").unwrap_err().reason(), "unknown_operation");
    }

    #[test]
    fn flow_operations_are_told_apart_by_method_and_path() {
        let cases = [
            (Method::POST, "/flows/FLOW123456/aliases/ALIAS12345", Operation::InvokeFlow),
            (Method::POST, "/flows/FLOW123456/aliases/ALIAS12345/executions", Operation::StartFlowExecution),
            (Method::GET, "/flows/FLOW123456/aliases/ALIAS12345/executions/run-1", Operation::GetFlowExecution),
            (Method::GET, "/flows/FLOW123456/executions", Operation::ListFlowExecutions),
            (Method::POST, "/flows/FLOW123456/aliases/ALIAS12345/executions/run-1/stop", Operation::StopFlowExecution),
            (Method::GET, "/flows/FLOW123456/aliases/ALIAS12345/executions/run-1/events", Operation::ListFlowExecutionEvents),
            (Method::GET, "/flows/FLOW123456/aliases/ALIAS12345/executions/run-1/flowsnapshot", Operation::GetExecutionFlowSnapshot),
        ];
        for (m, p, op) in cases {
            let r = classify(&m, p).unwrap();
            assert_eq!((r.op, r.upstream_path()), (op, p.to_string()), "{m} {p}");
        }
        let r = classify(&Method::GET, "/flows/FLOW123456/aliases/ALIAS12345/executions/run-1").unwrap();
        assert_eq!(
            r.target,
            Target::FlowExecution { flow: "FLOW123456".into(), alias: "ALIAS12345".into(), execution: "run-1".into() }
        );
        assert_eq!(r.resource(), "FLOW123456/ALIAS12345");
        assert_eq!(classify(&Method::GET, "/flows/FLOW123456/executions").unwrap().resource(), "FLOW123456");
        // An execution ARN arrives percent-encoded in one segment.
        let arn = "/flows/F/aliases/A/executions/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aflow%2FF%2Falias%2FA%2Fexecution%2Fx";
        let r = classify(&Method::GET, arn).unwrap();
        assert_eq!(r.upstream_path(), arn);
        // The same paths with another method, or other paths under /flows.
        for (m, p) in [
            (Method::GET, "/flows/F/aliases/A"),
            (Method::DELETE, "/flows/F/aliases/A"),
            (Method::GET, "/flows/F/aliases/A/executions"),
            (Method::POST, "/flows/F/aliases/A/executions/x"),
            (Method::DELETE, "/flows/F/aliases/A/executions/x"),
            (Method::POST, "/flows/F/executions"),
            (Method::GET, "/flows/F/aliases/A/executions/x/stop"),
            (Method::POST, "/flows/F/aliases/A/executions/x/events"),
            (Method::GET, "/flows/F/aliases/A/executions/x/other"),
        ] {
            assert_eq!(classify(&m, p).unwrap_err().reason(), "operation_not_allowed", "{m} {p}");
        }
        for bad in [
            "/flows/F%2F..%2FG/aliases/A",
            "/flows/F/aliases/A%20B",
            "/flows/F/aliases/..",
            "/flows/arn%3Aaws%2F%2Fx/aliases/A",
        ] {
            assert_eq!(post(bad).unwrap_err().reason(), "invalid_parameter", "{bad}");
        }
        assert_eq!(post("/flows//aliases/A").unwrap_err().reason(), "unknown_operation");
    }

    #[test]
    fn optimize_prompt_is_post_only() {
        for m in [Method::GET, Method::PUT, Method::DELETE] {
            assert_eq!(classify(&m, "/optimize-prompt").unwrap_err().reason(), "operation_not_allowed", "{m}");
        }
    }

    #[test]
    fn inline_agent_is_routed_for_post_only() {
        let r = post("/agents/chat-42:x.y_z").unwrap();
        assert_eq!(r.op, Operation::InvokeInlineAgent);
        assert_eq!(r.target, Target::InlineAgent { session: "chat-42:x.y_z".into() });
        // `:` encoded as the SDKs encode it, whether the client did or not.
        assert_eq!((r.upstream_path(), r.resource()), ("/agents/chat-42%3Ax.y_z".to_string(), String::new()));
        assert_eq!(post("/agents/a%3Ab").unwrap().upstream_path(), "/agents/a%3Ab");
        for m in [Method::GET, Method::PUT, Method::DELETE, Method::PATCH] {
            assert_eq!(classify(&m, "/agents/SESSION1").unwrap_err().reason(), "operation_not_allowed", "{m}");
        }
        for bad in ["/agents/a%2Fb", "/agents/..", "/agents/a%20b", "/agents/%2E%2E", "/agents/a%3Fb"] {
            assert_eq!(post(bad).unwrap_err().reason(), "invalid_parameter", "{bad}");
        }
        assert_eq!(post("/agents/").unwrap_err().reason(), "unknown_operation");
    }

    #[test]
    fn arn_model_ids_are_decoded_and_reencoded_like_the_sdks() {
        let raw = "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fanthropic.claude-3-haiku-20240307-v1%3A0/converse";
        let r = post(raw).unwrap();
        assert_eq!(
            r.target.labels()[0],
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0"
        );
        assert_eq!(r.upstream_path(), raw);
        // A client that did not encode `:` still gets the SDK encoding upstream.
        let r = post("/model/anthropic.claude-v2:1/invoke").unwrap();
        assert_eq!(r.upstream_path(), "/model/anthropic.claude-v2%3A1/invoke");
    }

    #[test]
    fn path_ids_outside_the_aws_alphabet_are_400() {
        let bad = [
            "/model/anthropic.claude-3-haiku-x%2F..%2Famazon.nova-pro-v1%3A0/converse",
            "/model/a%2F.%2Fb/invoke",
            "/model/a%2Fb/invoke",
            "/model/xu2F..%2Fy/invoke",
            "/model/anthropic.claude-3-haiku%2Farn%3Aaws/converse",
            "/guardrail/gr-1%2Fx/version/1/apply",
            "/model/a%2F%2Fb/invoke",
            "/model/%2Fa/invoke",
            "/model/a%2F/invoke",
            "/model/../converse",
            "/model/anthropic.claude%20v2/invoke",
            "/model/anthropic.claude%0Av2/invoke",
            "/model/a%3Fb/invoke",
            "/model/a%25b/invoke",
            "/model/a%5Cb/invoke",
            "/model/caf%C3%A9/invoke",
            "/guardrail/g%2F..%2Fh/version/1/apply",
            "/guardrail/g/version/1%2F2/apply",
            "/knowledgebases/KB%2F1/retrieve",
            "/knowledgebases/../retrieve",
            "/agents/A%2FX/agentAliases/B/sessions/S/text",
            "/agents/A/agentAliases/B%20C/sessions/S/text",
            "/agents/A/agentAliases/B/sessions/S%2F..%2FT/text",
            "/agents/A/agentAliases/B/sessions/./text",
            "/endpoints/a%2Fb/invocations",
            "/endpoints/..%2Fx/invocations-response-stream",
        ];
        for p in bad {
            match post(p) {
                Err(ProxyError::InvalidParameter(m)) => assert!(m.contains("is not valid"), "{p}: {m}"),
                other => panic!("{p}: {other:?}"),
            }
        }
        let long = format!("/model/{}/invoke", "a".repeat(MAX_ID_LEN + 1));
        assert!(matches!(post(&long), Err(ProxyError::InvalidParameter(_))));
        let good = [
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Ainference-profile%2Fus.anthropic.claude-3-haiku-20240307-v1%3A0/converse",
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Acustom-model%2Famazon.titan-text-express-v1%3A0%3A8k%2Fabcdefghijkl/invoke",
            "/model/meta.llama3-8b-instruct-v1:0/invoke",
            "/model/a..b/invoke",
            "/guardrail/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aguardrail%2Fabc123/version/DRAFT/apply",
            "/agents/AGENT00001/agentAliases/TSTALIASID/sessions/chat-42:x.y_z/text",
        ];
        for p in good {
            assert!(post(p).is_ok(), "{p}");
        }
        let max = format!("/model/{}/invoke", "a".repeat(MAX_ID_LEN));
        assert!(post(&max).is_ok());
        // SageMaker endpoint names: the same alphabet here (AWS's stricter
        // pattern is checked by the rewrite).
        assert!(post("/endpoints/e%20x/invocations").is_err());
        assert!(post("/endpoints/acme-classifier/invocations").is_ok());
    }

    /// Every operation of the vendored models is routed (`Operation::ALL`)
    /// or refused on purpose (`REFUSED`), never both, with the model's own
    /// method and URI; and docs/operations.md has a row for each, saying
    /// which.
    #[test]
    fn every_model_operation_is_decided() {
        let docs = include_str!("../docs/operations.md");
        let mut seen = std::collections::BTreeSet::new();
        for text in [
            include_str!("../models/aws/bedrock-runtime/service-2.json"),
            include_str!("../models/aws/bedrock-agent-runtime/service-2.json"),
            include_str!("../models/aws/sagemaker-runtime/service-2.json"),
        ] {
            let model: serde_json::Value = serde_json::from_str(text).unwrap();
            for (name, op) in model["operations"].as_object().unwrap() {
                let method: Method = op["http"]["method"].as_str().unwrap().parse().unwrap();
                let uri = op["http"]["requestUri"].as_str().unwrap();
                // A request as an SDK builds it: every label filled in.
                let path: String = uri
                    .split('/')
                    .map(|seg| if seg.starts_with('{') { "x1" } else { seg })
                    .collect::<Vec<_>>()
                    .join("/");
                let routed = Operation::ALL.iter().find(|o| o.name() == name);
                let refused = REFUSED.iter().find(|r| r.name == name);
                match (routed, refused) {
                    (Some(o), None) => {
                        let r = classify(&method, &path).unwrap_or_else(|e| panic!("{name}: {method} {path}: {e:?}"));
                        assert_eq!(r.op, *o, "{name}");
                    }
                    (None, Some(r)) => {
                        assert_eq!((r.method, r.uri), (method.as_str(), uri), "{name}");
                        let e = classify(&method, &path).unwrap_err();
                        assert_eq!(e.reason(), "operation_not_allowed", "{name}");
                        assert_eq!(refused_name(&method, &path), Some(r.name), "{name}");
                    }
                    (Some(_), Some(_)) => panic!("{name} is both routed and refused"),
                    (None, None) => panic!("{name} ({method} {uri}) is neither routed nor refused: decide it"),
                }
                let decision = if routed.is_some() { "routed" } else { "refused" };
                assert!(
                    docs.lines().any(|l| l.starts_with(&format!("| {name} |")) && l.contains(&format!("| {decision} |"))),
                    "docs/operations.md: no row `| {name} | ... | {decision} | ...`"
                );
                seen.insert(name.clone());
            }
        }
        // Operations without a botocore model are routed on purpose, and
        // documented the same way.
        let own: Vec<&Operation> = Operation::ALL.iter().filter(|o| !o.has_aws_model()).collect();
        assert_eq!(own, [&Operation::ChatCompletions], "only ChatCompletions has no AWS model");
        for o in &own {
            assert!(!seen.contains(o.name()), "{} is in the AWS models after all", o.name());
            assert!(
                docs.lines().any(|l| l.starts_with(&format!("| {} |", o.name())) && l.contains("| routed |")),
                "docs/operations.md: no row `| {} | ... | routed | ...`",
                o.name()
            );
        }
        assert_eq!(seen.len() + own.len(), Operation::ALL.len() + REFUSED.len(), "an entry names no model operation");
    }

    #[test]
    fn denied_operations_are_403_whatever_the_method() {
        // The async-invoke operations' paths with another method, or
        // another path under the prefix.
        for (m, p) in [
            (Method::DELETE, "/async-invoke"),
            (Method::PUT, "/async-invoke"),
            (Method::DELETE, "/async-invoke/abc"),
            (Method::POST, "/async-invoke/abc"),
            (Method::GET, "/async-invoke/a/b"),
            (Method::GET, "/async-invokes"),
            (Method::POST, "/async-invoke/"),
        ] {
            let e = classify(&m, p).unwrap_err();
            assert_eq!(e.reason(), "operation_not_allowed", "{m} {p}");
        }
        for p in [
            "/model/m/invoke-with-bidirectional-stream",
            "/agents/SESSION1/x",
            "/agents/A/agentAliases/B/memories/x",
            "/flows/F/aliases/A/other",
            "/flows/F",
            "/sessions",
            "/sessions/abc/invocations",
            "/optimize-prompt/x",
            "/guardrail/g",
            "/guardrail/g/version/1/other",
        ] {
            for m in [Method::GET, Method::POST, Method::DELETE] {
                let e = classify(&m, p).unwrap_err();
                assert_eq!(e.reason(), "operation_not_allowed", "{m} {p}");
            }
        }
    }

    #[test]
    fn anything_else_is_404() {
        for (m, p) in [
            (Method::GET, "/model/m/converse"),
            (Method::POST, "/model/m"),
            (Method::POST, "/"),
            (Method::POST, "/healthz"),
            (Method::GET, "/metrics"),
            (Method::POST, "/model//converse"),
            (Method::POST, "/model/m/converse/extra"),
            (Method::PUT, "/rerank"),
            // Only the Chat Completions create call of the OpenAI API.
            (Method::GET, "/openai/v1/chat/completions"),
            (Method::POST, "/openai/v1/chat/completions/"),
            (Method::POST, "/openai/v1/chat/completions/x"),
            (Method::POST, "/openai/v1/responses"),
            (Method::GET, "/openai/v1/models"),
            (Method::POST, "/v1/chat/completions"),
            (Method::POST, "/openai/v1/chat/Completions"),
            (Method::POST, "/openai/v1/chat/completions%2F"),
        ] {
            let e = classify(&m, p).unwrap_err();
            assert_eq!(e.reason(), "unknown_operation", "{m} {p}");
        }
    }

    #[test]
    fn invalid_utf8_in_a_label_is_a_400() {
        let e = post("/model/%FF/converse").unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter");
    }
}
