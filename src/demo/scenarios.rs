//! The demo's scenarios: each one request through the real request path, with
//! what must happen (status, reason, whether it reaches AWS, what AWS must
//! receive). Later features add scenarios here.

use super::setup::DemoEnv;

/// Who is calling, i.e. which token the request carries.
#[derive(Debug, Clone, Copy)]
pub enum Caller {
    Tenant {
        tenant: &'static str,
        user: &'static str,
    },
    NoToken,
    Expired {
        tenant: &'static str,
        user: &'static str,
    },
    Forged {
        tenant: &'static str,
        user: &'static str,
    },
}

impl Caller {
    pub fn label(&self) -> String {
        match self {
            Caller::Tenant { tenant, user } => format!("{tenant}/{user}"),
            Caller::NoToken => "(no token)".into(),
            Caller::Expired { tenant, user } => format!("{tenant}/{user} (expired)"),
            Caller::Forged { tenant, user } => format!("{tenant}/{user} (forged)"),
        }
    }

    /// The tenant whose credentials must sign the request, if allowed.
    pub fn tenant(&self) -> Option<&'static str> {
        match self {
            Caller::Tenant { tenant, .. } => Some(tenant),
            _ => None,
        }
    }

    pub fn token(&self, env: &DemoEnv) -> Option<String> {
        match *self {
            Caller::Tenant { tenant, user } => Some(env.token(tenant, user, 600)),
            Caller::NoToken => None,
            Caller::Expired { tenant, user } => Some(env.token(tenant, user, -3600)),
            Caller::Forged { tenant, user } => Some(env.forged_token(tenant, user)),
        }
    }
}

/// Something the simulator (i.e. AWS) must have received, or the client
/// must have got back, for an allowed request.
#[derive(Debug, Clone)]
pub enum Check {
    /// The model id sent upstream (after `model_map`).
    UpstreamModel(&'static str),
    /// Converse `guardrailConfig` set to the tenant's guardrail.
    Guardrail {
        id: &'static str,
        version: &'static str,
    },
    /// Converse `requestMetadata` entries.
    RequestMetadata(&'static [(&'static str, &'static str)]),
    /// The response body no longer contains this text (redaction).
    NotInResponse(&'static str),
    /// The text streamed in event-stream deltas (joined across events, base64
    /// chunks decoded) no longer contains this text.
    NotInStreamText(&'static str),
    /// The response is an AWS event stream of at least this many valid frames.
    EventStream { min_events: usize },
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub operation: &'static str,
    pub caller: Caller,
    /// Model or other resource, as the application names it.
    pub resource: &'static str,
    pub path: String,
    pub body: String,
    pub status: u16,
    /// `x-tenantgate-reason` expected on a denial.
    pub reason: Option<&'static str>,
    pub checks: Vec<Check>,
    /// One line on why this scenario is here.
    pub note: &'static str,
}

pub const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
pub const HAIKU_PROFILE: &str =
    "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku";
pub const NOVA: &str = "amazon.nova-lite-v1:0";
pub const TITAN_EMBED: &str = "amazon.titan-embed-text-v2:0";

/// Path as an AWS SDK sends it: the model id percent-encoded (`:` -> `%3A`).
fn model_path(model: &str, op: &str) -> String {
    let enc = percent_encoding::utf8_percent_encode(model, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2E", ".")
        .replace("%2D", "-")
        .replace("%5F", "_");
    format!("/model/{enc}/{op}")
}

fn converse_body(text: &str) -> String {
    serde_json::json!({
        "messages": [{ "role": "user", "content": [{ "text": text }] }],
        "inferenceConfig": { "maxTokens": 256 },
    })
    .to_string()
}

fn allowed(
    operation: &'static str,
    caller: Caller,
    resource: &'static str,
    path: String,
    body: String,
    checks: Vec<Check>,
    note: &'static str,
) -> Scenario {
    Scenario {
        operation,
        caller,
        resource,
        path,
        body,
        status: 200,
        reason: None,
        checks,
        note,
    }
}

fn denied(
    operation: &'static str,
    caller: Caller,
    resource: &'static str,
    path: String,
    status: u16,
    reason: &'static str,
    note: &'static str,
) -> Scenario {
    let body = converse_body("Hello");
    Scenario {
        operation,
        caller,
        resource,
        path,
        body,
        status,
        reason: Some(reason),
        checks: vec![],
        note,
    }
}

pub fn all() -> Vec<Scenario> {
    let alice = Caller::Tenant {
        tenant: "acme",
        user: "alice",
    };
    let bob = Caller::Tenant {
        tenant: "globex",
        user: "bob",
    };
    // The application (or an injected prompt) tries to pass as globex in the
    // body; only the verified token decides the tenant.
    let spoofing = serde_json::json!({
        "messages": [{ "role": "user", "content": [{ "text": "What is our refund policy?" }] }],
        "requestMetadata": { "tenant": "globex" },
        "guardrailConfig": { "guardrailIdentifier": "none", "guardrailVersion": "DRAFT" },
    })
    .to_string();
    vec![
        allowed(
            "Converse",
            alice,
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
                Check::NotInResponse("111122223333"),
            ],
            "body claims tenant globex and no guardrail: the token wins",
        ),
        allowed(
            "Converse",
            bob,
            NOVA,
            model_path(NOVA, "converse"),
            converse_body("Summarise Q3."),
            vec![
                Check::UpstreamModel(NOVA),
                Check::RequestMetadata(&[("tenant", "globex"), ("user", "bob")]),
            ],
            "globex's own model, globex's own key",
        ),
        denied(
            "Converse",
            bob,
            HAIKU,
            model_path(HAIKU, "converse"),
            403,
            "model_not_allowed",
            "allowed for acme, not for globex",
        ),
        denied(
            "Converse",
            alice,
            NOVA,
            model_path(NOVA, "converse"),
            403,
            "model_not_allowed",
            "allowed for globex, not for acme",
        ),
        allowed(
            "ConverseStream",
            alice,
            HAIKU,
            model_path(HAIKU, "converse-stream"),
            converse_body("Stream me a haiku about isolation."),
            vec![
                Check::UpstreamModel(HAIKU_PROFILE),
                Check::EventStream { min_events: 5 },
                Check::NotInStreamText("111122223333"),
            ],
            "ARN split across events, redacted all the same",
        ),
        allowed(
            "InvokeModelWithResponseStream",
            alice,
            HAIKU,
            model_path(HAIKU, "invoke-with-response-stream"),
            serde_json::json!({
                "anthropic_version": "bedrock-2023-05-31", "max_tokens": 128,
                "messages": [{ "role": "user", "content": "Name three isolation controls." }],
            })
            .to_string(),
            vec![
                Check::UpstreamModel(HAIKU_PROFILE),
                Check::EventStream { min_events: 5 },
                Check::NotInStreamText("111122223333"),
            ],
            "base64 chunk payloads decoded, redacted, re-encoded",
        ),
        allowed(
            "InvokeModel",
            alice,
            TITAN_EMBED,
            model_path(TITAN_EMBED, "invoke"),
            serde_json::json!({ "inputText": "tenant isolation" }).to_string(),
            vec![Check::UpstreamModel(TITAN_EMBED)],
            "body forwarded byte for byte",
        ),
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
            alice,
            "-",
            "/model/x/frobnicate".into(),
            404,
            "unknown_operation",
            "not a Bedrock/SageMaker operation",
        ),
        denied(
            "StartAsyncInvoke",
            alice,
            "-",
            "/async-invoke".into(),
            403,
            "operation_not_allowed",
            "real operation without isolation rules yet",
        ),
    ]
}
