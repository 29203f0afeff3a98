//! What a demo scenario is: one request through the real request path, with
//! what must happen (status, reason, whether it reaches AWS, what AWS must
//! receive and what the client must get back). The list is in
//! `scenario_list.rs`.

use super::setup::DemoEnv;
use serde_json::Value;

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

    /// The tenant whose STS session must sign the request, if allowed.
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
/// must have got back.
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
    /// The response is an AWS event stream of at least this many valid frames.
    EventStream { min_events: usize },
    /// Retrieve: the metadata filter AWS received, exactly.
    RetrievalFilter(Value),
    /// Retrieve: AWS answered with `dropped` result(s) under `foreign`; the
    /// client got none of them, the rest, and `x-tenantgate-dropped-results`.
    DroppedResults {
        dropped: usize,
        foreign: &'static str,
    },
    /// InvokeAgent: session attributes AWS received (`set` by the sidecar,
    /// `kept` from the client), the session id namespaced upstream and the
    /// client's own id in the response.
    AgentSession {
        client_session: &'static str,
        set: &'static [(&'static str, &'static str)],
        kept: &'static [(&'static str, &'static str)],
    },
    /// SageMaker: the endpoint AWS was asked for, the target model header it
    /// got (None: none), and the body echoed back untouched.
    Endpoint {
        name: &'static str,
        target_model: Option<&'static str>,
    },
    /// A throttled answer carries `Retry-After` (whole seconds, >= 1).
    RetryAfter,
    /// ConverseStream: the model echoed an identity id split across deltas;
    /// the client's text has it replaced, the id appears in no frame.
    Redacted { id: &'static str },
    /// StartAsyncInvoke: AWS got the tenant's KMS key and `TenantID` tag
    /// (whatever the client sent) and an idempotency token namespaced to
    /// tenant and user, not the client's.
    AsyncInvoke {
        kms_key_id: &'static str,
        tenant_tag: &'static str,
    },
    /// GetAgentMemory: AWS was asked for a namespaced memory id, not the
    /// client's; the client got only that memory's summaries (another
    /// memory's dropped and counted), under its own id.
    AgentMemory { client_memory: &'static str },
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub operation: &'static str,
    pub caller: Caller,
    /// Model or other resource, as the application names it.
    pub resource: &'static str,
    pub path: String,
    pub body: String,
    /// Request headers besides the token (`content-type` defaults to JSON).
    pub headers: Vec<(&'static str, &'static str)>,
    pub status: u16,
    /// `x-tenantgate-reason` expected on a denial.
    pub reason: Option<&'static str>,
    pub checks: Vec<Check>,
    /// One line on why this scenario is here.
    pub note: &'static str,
    /// The Cedar policies its audit record must name (None: not checked).
    pub policies: Option<&'static [&'static str]>,
    /// The HTTP method (POST unless `.method()` says otherwise).
    pub method: http::Method,
    /// A denial the sidecar can only make on AWS's answer (the answer names
    /// where a job or document lives): the request reaches AWS once and the
    /// answer is withheld.
    pub withheld: bool,
}

impl Scenario {
    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn method(mut self, method: http::Method) -> Self {
        self.method = method;
        self
    }

    /// The refusal is made on AWS's answer (see `withheld`).
    pub fn withheld(mut self) -> Self {
        self.withheld = true;
        self
    }

    pub fn body(mut self, body: String) -> Self {
        self.body = body;
        self
    }

    pub fn check(mut self, c: Check) -> Self {
        self.checks.push(c);
        self
    }

    /// The Cedar policies that must decide this request (its audit record
    /// names them).
    pub fn decided_by(mut self, policies: &'static [&'static str]) -> Self {
        self.policies = Some(policies);
        self
    }
}

pub const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
pub const HAIKU_PROFILE: &str =
    "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku";
pub const NOVA: &str = "amazon.nova-lite-v1:0";
pub const TITAN_EMBED: &str = "amazon.titan-embed-text-v2:0";

/// Path as an AWS SDK sends it: the model id percent-encoded (`:` -> `%3A`).
pub fn model_path(model: &str, op: &str) -> String {
    let enc = percent_encoding::utf8_percent_encode(model, percent_encoding::NON_ALPHANUMERIC)
        .to_string()
        .replace("%2E", ".")
        .replace("%2D", "-")
        .replace("%5F", "_");
    format!("/model/{enc}/{op}")
}

pub fn converse_body(text: &str) -> String {
    serde_json::json!({
        "messages": [{ "role": "user", "content": [{ "text": text }] }],
        "inferenceConfig": { "maxTokens": 256 },
    })
    .to_string()
}

pub fn allowed(
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
        headers: Vec::new(),
        status: 200,
        reason: None,
        checks,
        note,
        policies: None,
        method: http::Method::POST,
        withheld: false,
    }
}

/// A request that must be refused (with a Converse body unless `.body()`
/// says otherwise) and never reach AWS.
pub fn denied(
    operation: &'static str,
    caller: Caller,
    resource: &'static str,
    path: String,
    status: u16,
    reason: &'static str,
    note: &'static str,
) -> Scenario {
    Scenario {
        operation,
        caller,
        resource,
        path,
        body: converse_body("Hello"),
        headers: Vec::new(),
        status,
        reason: Some(reason),
        checks: vec![],
        note,
        policies: None,
        method: http::Method::POST,
        withheld: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_paths_are_encoded_like_sdks() {
        assert_eq!(
            model_path(HAIKU, "converse"),
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        assert_eq!(
            model_path(HAIKU_PROFILE, "invoke"),
            "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aapplication-inference-profile%2Facme-haiku/invoke"
        );
    }

    #[test]
    fn every_scenario_is_consistent() {
        let all = super::super::scenario_list::all();
        assert!(all.len() >= 20);
        for s in &all {
            assert_eq!(s.status >= 400, s.reason.is_some(), "{s:?}");
            if s.status >= 400 {
                assert!(
                    s.checks.iter().all(|c| matches!(c, Check::RetryAfter)),
                    "{s:?}"
                );
            } else {
                assert!(s.caller.tenant().is_some(), "{s:?}");
            }
        }
    }
}
