//! The demo's scenarios, in the order they run: Bedrock models, knowledge
//! bases, agents, SageMaker, throttling, identity. Tenants: acme (pooled
//! resources), globex (silo resources), hooli (trial plan, tiny rate limit).

use super::scenarios::{
    allowed, converse_body, denied, model_path, Caller, Check, Scenario, HAIKU, HAIKU_PROFILE,
    NOVA, TITAN_EMBED,
};
use serde_json::json;

const ALICE: Caller = Caller::Tenant {
    tenant: "acme",
    user: "alice",
};
const BOB: Caller = Caller::Tenant {
    tenant: "globex",
    user: "bob",
};
const HANK: Caller = Caller::Tenant {
    tenant: "hooli",
    user: "hank",
};

pub const POOLED_KB: &str = "KBPOOLED01";
pub const GLOBEX_KB: &str = "KBGLOBEX01";
const AGENT: &str = "SUPPORT001/LIVEALIAS1";
const NOVA_REEL: &str = "amazon.nova-reel-v1:0";
/// A Cognito identity id, matched by the default `redaction.patterns`.
const IDENTITY_ID: &str = "us-west-2:12345678-abcd-1234-462b-123456789abc";
const AGENT_PATH: &str = "/agents/SUPPORT001/agentAliases/LIVEALIAS1/sessions/chat-42/text";

pub fn all() -> Vec<Scenario> {
    let mut v = bedrock();
    v.extend(knowledge_bases());
    v.extend(agents());
    v.extend(agent_memory());
    v.extend(async_invocations());
    v.extend(sagemaker());
    v.extend(throttling());
    v.extend(policies());
    v.extend(identity());
    v
}

/// Two decisions of globex's Cedar policies (setup.rs): a permit, and a
/// forbid on the token limit the body states.
fn policies() -> Vec<Scenario> {
    let long = json!({
        "messages": [{ "role": "user", "content": [{ "text": "Write the full annual report." }] }],
        "inferenceConfig": { "maxTokens": 4096 },
    })
    .to_string();
    vec![
        allowed(
            "Converse",
            BOB,
            NOVA,
            model_path(NOVA, "converse"),
            converse_body("Summarise Q4."),
            vec![Check::UpstreamModel(NOVA)],
            "policy permits: maxTokens 256 is a short answer",
        )
        .decided_by(&["globex-may-use-its-resources"]),
        denied(
            "Converse",
            BOB,
            NOVA,
            model_path(NOVA, "converse"),
            403,
            "policy_denied",
            "policy forbids: maxTokens 4096 is over globex's 1,024",
        )
        .body(long)
        .decided_by(&["globex-short-answers-only"]),
    ]
}

fn bedrock() -> Vec<Scenario> {
    // The application (or an injected prompt) tries to pass as globex in the
    // body; only the verified token decides the tenant.
    let spoofing = json!({
        "messages": [{ "role": "user", "content": [{ "text": "What is our refund policy?" }] }],
        "requestMetadata": { "tenant": "globex" },
        "guardrailConfig": { "guardrailIdentifier": "none", "guardrailVersion": "DRAFT" },
    })
    .to_string();
    vec![
        allowed(
            "Converse",
            ALICE,
            HAIKU,
            model_path(HAIKU, "converse"),
            spoofing,
            vec![
                Check::UpstreamModel(HAIKU_PROFILE),
                Check::Guardrail {
                    id: "gr-acme",
                    version: "1",
                },
                Check::RequestMetadata(&[("tenant", "acme"), ("user", "alice")]),
            ],
            "body claims tenant globex and no guardrail: the token wins",
        ),
        allowed(
            "Converse",
            BOB,
            NOVA,
            model_path(NOVA, "converse"),
            converse_body("Summarise Q3."),
            vec![
                Check::UpstreamModel(NOVA),
                Check::RequestMetadata(&[("tenant", "globex"), ("user", "bob")]),
            ],
            "globex's own model, globex's own STS session",
        ),
        denied(
            "Converse",
            BOB,
            HAIKU,
            model_path(HAIKU, "converse"),
            403,
            "model_not_allowed",
            "allowed for acme, not for globex",
        ),
        denied(
            "Converse",
            ALICE,
            NOVA,
            model_path(NOVA, "converse"),
            403,
            "model_not_allowed",
            "allowed for globex, not for acme",
        ),
        allowed(
            "ConverseStream",
            ALICE,
            HAIKU,
            model_path(HAIKU, "converse-stream"),
            converse_body("Stream me a haiku about isolation."),
            vec![
                Check::UpstreamModel(HAIKU_PROFILE),
                Check::EventStream { min_events: 5 },
            ],
            "event stream passed through frame by frame",
        ),
        allowed(
            "ConverseStream",
            ALICE,
            HAIKU,
            model_path(HAIKU, "converse-stream"),
            converse_body(&format!("Who is {IDENTITY_ID}?")),
            vec![Check::Redacted { id: IDENTITY_ID }],
            "the model repeats an internal identity id: redacted mid-stream",
        ),
        allowed(
            "InvokeModelWithResponseStream",
            ALICE,
            HAIKU,
            model_path(HAIKU, "invoke-with-response-stream"),
            json!({
                "anthropic_version": "bedrock-2023-05-31", "max_tokens": 128,
                "messages": [{ "role": "user", "content": "Name three isolation controls." }],
            })
            .to_string(),
            vec![
                Check::UpstreamModel(HAIKU_PROFILE),
                Check::EventStream { min_events: 5 },
            ],
            "base64 chunk events passed through",
        ),
        allowed(
            "InvokeModel",
            ALICE,
            TITAN_EMBED,
            model_path(TITAN_EMBED, "invoke"),
            json!({ "inputText": "tenant isolation" }).to_string(),
            vec![Check::UpstreamModel(TITAN_EMBED)],
            "body forwarded byte for byte",
        ),
    ]
}

fn knowledge_bases() -> Vec<Scenario> {
    // The client tries to widen the search to globex's chunks too.
    let client_filter = json!({ "in": { "key": "tenant_id", "value": ["acme", "globex"] } });
    let body = json!({
        "retrievalQuery": { "text": "What is the refund policy?" },
        "retrievalConfiguration": { "vectorSearchConfiguration": {
            "numberOfResults": 5, "filter": client_filter } },
    })
    .to_string();
    let forced = json!({ "andAll": [
        { "equals": { "key": "tenant_id", "value": "acme" } },
        client_filter,
    ] });
    vec![
        allowed(
            "Retrieve",
            ALICE,
            POOLED_KB,
            format!("/knowledgebases/{POOLED_KB}/retrieve"),
            body.clone(),
            vec![
                Check::RetrievalFilter(forced),
                Check::DroppedResults {
                    dropped: 1,
                    foreign: "s3://docs/tenants/globex/",
                },
            ],
            "shared knowledge base: forced tenant filter, foreign chunk dropped",
        ),
        denied(
            "Retrieve",
            ALICE,
            GLOBEX_KB,
            format!("/knowledgebases/{GLOBEX_KB}/retrieve"),
            403,
            "knowledge_base_not_allowed",
            "globex's own knowledge base",
        )
        .body(body),
    ]
}

fn agents() -> Vec<Scenario> {
    // A forged tenantId session attribute (what an action group would read).
    let body = json!({
        "inputText": "Where is my refund for order 7?",
        "sessionState": { "sessionAttributes": { "tenantId": "globex", "channel": "web" } },
    })
    .to_string();
    vec![
        allowed(
            "InvokeAgent",
            ALICE,
            AGENT,
            AGENT_PATH.into(),
            body.clone(),
            vec![
                Check::AgentSession {
                    client_session: "chat-42",
                    set: &[("tenantId", "acme"), ("userId", "alice")],
                    kept: &[("channel", "web")],
                },
                Check::EventStream { min_events: 2 },
            ],
            "forged tenantId overwritten, session id namespaced",
        ),
        denied(
            "InvokeAgent",
            BOB,
            AGENT,
            AGENT_PATH.into(),
            403,
            "agent_not_allowed",
            "acme's agent, same session id",
        )
        .body(body),
    ]
}

/// Agent memory: one memory store for every tenant's users; ids namespaced
/// like session ids, so a user reads and deletes only their own.
fn agent_memory() -> Vec<Scenario> {
    let memories = "/agents/SUPPORT001/agentAliases/LIVEALIAS1/memories";
    vec![
        allowed(
            "GetAgentMemory",
            ALICE,
            AGENT,
            format!("{memories}?memoryType=SESSION_SUMMARY&memoryId=mem-alice"),
            String::new(),
            vec![Check::AgentMemory { client_memory: "mem-alice" }],
            "memory id namespaced; another memory's summary dropped",
        )
        .method(http::Method::GET),
        denied(
            "DeleteAgentMemory",
            ALICE,
            AGENT,
            memories.into(),
            400,
            "invalid_parameter",
            "a delete without memoryId would clear every user's memory",
        )
        .body(String::new())
        .method(http::Method::DELETE),
    ]
}

/// Async invocations: jobs are the account's, so they are bound to the
/// tenant by where they write (`async_invoke.output_prefix`).
fn async_invocations() -> Vec<Scenario> {
    let start = |uri: &str| {
        json!({
            "modelId": NOVA_REEL,
            "modelInput": { "taskType": "TEXT_VIDEO", "textToVideoParams": { "text": "a product launch" } },
            "outputDataConfig": { "s3OutputDataConfig": {
                "s3Uri": uri, "kmsKeyId": "arn:aws:kms:us-east-1:444455556666:key/attacker" } },
            "clientRequestToken": "launch-1",
            "tags": [{ "key": "TenantID", "value": "globex" }, { "key": "campaign", "value": "q1" }],
        })
        .to_string()
    };
    let job = |id: &str| format!("/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aasync-invoke%2F{id}");
    vec![
        allowed(
            "StartAsyncInvoke",
            ALICE,
            NOVA_REEL,
            "/async-invoke".into(),
            start("s3://media-out/acme/launch/"),
            vec![Check::AsyncInvoke {
                kms_key_id: "arn:aws:kms:us-east-1:111122223333:alias/acme-media",
                tenant_tag: "acme",
            }],
            "output under acme's prefix; KMS key, tag and token forced",
        ),
        denied(
            "StartAsyncInvoke",
            ALICE,
            NOVA_REEL,
            "/async-invoke".into(),
            403,
            "location_not_allowed",
            "output into globex's prefix",
        )
        .body(start("s3://media-out/globex/launch/")),
        allowed(
            "GetAsyncInvoke",
            ALICE,
            "acmejob00001",
            job("acmejob00001"),
            String::new(),
            vec![],
            "acme's own job (writes under s3://media-out/acme/)",
        )
        .method(http::Method::GET),
        denied(
            "GetAsyncInvoke",
            ALICE,
            "globexjob001",
            job("globexjob001"),
            403,
            "location_not_allowed",
            "globex's job: AWS returns any job of the account",
        )
        .body(String::new())
        .method(http::Method::GET)
        .withheld(),
    ]
}

fn sagemaker() -> Vec<Scenario> {
    let path = |name: &str| format!("/endpoints/{name}/invocations");
    let csv = "5.1,3.5,1.4,0.2".to_string();
    vec![
        allowed(
            "InvokeEndpoint",
            ALICE,
            "classifier",
            path("classifier"),
            csv.clone(),
            vec![Check::Endpoint {
                name: "shared-classifier",
                target_model: Some("acme.tar.gz"),
            }],
            "logical name -> shared multi-model endpoint, acme's model",
        )
        .header("content-type", "text/csv"),
        allowed(
            "InvokeEndpoint",
            BOB,
            "classifier",
            path("classifier"),
            csv.clone(),
            vec![Check::Endpoint {
                name: "globex-classifier",
                target_model: None,
            }],
            "same logical name -> globex's own endpoint",
        )
        .header("content-type", "text/csv"),
        denied(
            "InvokeEndpoint",
            BOB,
            "shared-classifier",
            path("shared-classifier"),
            403,
            "endpoint_not_allowed",
            "the pooled endpoint hosting acme's model",
        )
        .body(csv.clone())
        .header("content-type", "text/csv"),
        denied(
            "InvokeEndpoint",
            ALICE,
            "classifier",
            path("classifier"),
            403,
            "cross_tenant",
            "X-Amzn-SageMaker-Target-Model: globex.tar.gz",
        )
        .body(csv)
        .header("content-type", "text/csv")
        .header("x-amzn-sagemaker-target-model", "globex.tar.gz"),
    ]
}

fn throttling() -> Vec<Scenario> {
    let hooli = |note| {
        allowed(
            "Converse",
            HANK,
            NOVA,
            model_path(NOVA, "converse"),
            converse_body("Quick question."),
            vec![Check::UpstreamModel(NOVA)],
            note,
        )
    };
    vec![
        hooli("trial plan: 1 request/s, burst 2 (1st)"),
        hooli("trial plan: 1 request/s, burst 2 (2nd)"),
        denied(
            "Converse",
            HANK,
            NOVA,
            model_path(NOVA, "converse"),
            429,
            "rate_limited",
            "3rd rapid request: over hooli's burst",
        )
        .check(Check::RetryAfter),
        allowed(
            "Converse",
            BOB,
            NOVA,
            model_path(NOVA, "converse"),
            converse_body("And Q4?"),
            vec![Check::UpstreamModel(NOVA)],
            "right after hooli's 429: globex's budget is its own",
        ),
    ]
}

fn identity() -> Vec<Scenario> {
    vec![
        denied(
            "Converse",
            Caller::NoToken,
            HAIKU,
            model_path(HAIKU, "converse"),
            401,
            "missing_token",
            "no identity, no access",
        ),
        denied(
            "Converse",
            Caller::Expired {
                tenant: "acme",
                user: "alice",
            },
            HAIKU,
            model_path(HAIKU, "converse"),
            401,
            "invalid_token",
            "exp is an hour ago",
        ),
        denied(
            "Converse",
            Caller::Forged {
                tenant: "acme",
                user: "mallory",
            },
            HAIKU,
            model_path(HAIKU, "converse"),
            401,
            "invalid_token",
            "signed with a key the IdP never used",
        ),
        denied(
            "Converse",
            Caller::Tenant {
                tenant: "initech",
                user: "peter",
            },
            HAIKU,
            model_path(HAIKU, "converse"),
            403,
            "unknown_tenant",
            "valid token, tenant not configured",
        ),
        denied(
            "(unknown)",
            ALICE,
            "-",
            "/model/x/frobnicate".into(),
            404,
            "unknown_operation",
            "not a Bedrock/SageMaker operation",
        ),
        denied(
            "TagResource",
            ALICE,
            "-",
            "/tags/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aagent-alias%2FSUPPORT001%2FLIVEALIAS1".into(),
            403,
            "operation_not_allowed",
            "refused on purpose: re-tagging would escape IAM ABAC",
        ),
    ]
}
