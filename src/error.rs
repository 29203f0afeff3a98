//! The one error type of the request path, and the only place errors become
//! HTTP responses (docs/reference.md §8). `status`, `aws_type` and `reason` are exhaustive
//! matches with no `_` arm: a new variant forces a decision.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {}", self.reason(), self.message())]
pub enum ProxyError {
    // 400
    InvalidJson(String),
    InvalidParameter(String),
    // 401
    MissingToken,
    /// The detail goes to the log only; it never contains the token.
    InvalidToken(String),
    // 403
    UnknownTenant(String),
    ModelNotAllowed { model: String, tenant: String },
    KnowledgeBaseNotAllowed { kb: String, tenant: String },
    AgentNotAllowed { agent: String, tenant: String },
    EndpointNotAllowed { endpoint: String, tenant: String },
    CrossTenant(String),
    LocationNotAllowed(String),
    OperationNotAllowed(String),
    GuardrailNotAllowed { tenant: String },
    /// InvokeGuardrailChecks asked for a kind of check outside
    /// `guardrail_checks.allowed`.
    GuardrailCheckNotAllowed { check: String, tenant: String },
    MissingClaim(String),
    /// The tenant's Cedar policies did not permit the request (no permit,
    /// a forbid, or an evaluation error); docs/reference.md §12.
    PolicyDenied { tenant: String },
    // 404
    UnknownOperation { method: String, path: String },
    /// The request body did not arrive within `server.body_timeout_secs`.
    BodyTimeout { secs: u64 },
    // 413
    BodyTooLarge { limit: u64 },
    // 429
    RateLimited { retry_after: Duration },
    ConcurrencyLimited,
    TokenBudgetExhausted { retry_after: Duration },
    /// The tenant's requests hold their share of the buffer budget
    /// (`server.max_buffered_bytes_per_tenant`).
    MemoryLimited,
    // 502
    UpstreamError(String),
    UnauthorizedSourceInAnswer,
    // 503
    CredentialsUnavailable(String),
    JwksUnavailable,
    RateLimitUnavailable,
    /// The process's buffer budget (`server.max_buffered_bytes`) is taken.
    Overloaded,
    // 504
    UpstreamTimeout,
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        use ProxyError::*;
        match self {
            InvalidJson(_) | InvalidParameter(_) | BodyTimeout { .. } => StatusCode::BAD_REQUEST,
            MissingToken | InvalidToken(_) => StatusCode::UNAUTHORIZED,
            UnknownTenant(_)
            | ModelNotAllowed { .. }
            | KnowledgeBaseNotAllowed { .. }
            | AgentNotAllowed { .. }
            | EndpointNotAllowed { .. }
            | CrossTenant(_)
            | LocationNotAllowed(_)
            | OperationNotAllowed(_)
            | GuardrailNotAllowed { .. }
            | GuardrailCheckNotAllowed { .. }
            | MissingClaim(_)
            | PolicyDenied { .. } => StatusCode::FORBIDDEN,
            UnknownOperation { .. } => StatusCode::NOT_FOUND,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RateLimited { .. } | ConcurrencyLimited | TokenBudgetExhausted { .. } | MemoryLimited => {
                StatusCode::TOO_MANY_REQUESTS
            }
            UpstreamError(_) | UnauthorizedSourceInAnswer => StatusCode::BAD_GATEWAY,
            CredentialsUnavailable(_) | JwksUnavailable | RateLimitUnavailable | Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    /// The `x-amzn-ErrorType` value, so AWS SDKs raise their usual exceptions.
    pub fn aws_type(&self) -> &'static str {
        use ProxyError::*;
        match self {
            InvalidJson(_) | InvalidParameter(_) | BodyTimeout { .. } | BodyTooLarge { .. } => {
                "ValidationException"
            }
            MissingToken | InvalidToken(_) => "UnrecognizedClientException",
            UnknownTenant(_)
            | ModelNotAllowed { .. }
            | KnowledgeBaseNotAllowed { .. }
            | AgentNotAllowed { .. }
            | EndpointNotAllowed { .. }
            | CrossTenant(_)
            | LocationNotAllowed(_)
            | OperationNotAllowed(_)
            | GuardrailNotAllowed { .. }
            | GuardrailCheckNotAllowed { .. }
            | MissingClaim(_)
            | PolicyDenied { .. } => "AccessDeniedException",
            UnknownOperation { .. } => "UnknownOperationException",
            RateLimited { .. } | ConcurrencyLimited | TokenBudgetExhausted { .. } | MemoryLimited => {
                "ThrottlingException"
            }
            UpstreamError(_)
            | UnauthorizedSourceInAnswer
            | CredentialsUnavailable(_)
            | JwksUnavailable
            | RateLimitUnavailable
            | Overloaded
            | UpstreamTimeout => "ServiceUnavailableException",
        }
    }

    pub fn reason(&self) -> &'static str {
        use ProxyError::*;
        match self {
            InvalidJson(_) => "invalid_json",
            InvalidParameter(_) => "invalid_parameter",
            BodyTimeout { .. } => "body_timeout",
            MissingToken => "missing_token",
            InvalidToken(_) => "invalid_token",
            UnknownTenant(_) => "unknown_tenant",
            ModelNotAllowed { .. } => "model_not_allowed",
            KnowledgeBaseNotAllowed { .. } => "knowledge_base_not_allowed",
            AgentNotAllowed { .. } => "agent_not_allowed",
            EndpointNotAllowed { .. } => "endpoint_not_allowed",
            CrossTenant(_) => "cross_tenant",
            LocationNotAllowed(_) => "location_not_allowed",
            OperationNotAllowed(_) => "operation_not_allowed",
            GuardrailNotAllowed { .. } | GuardrailCheckNotAllowed { .. } => "guardrail_not_allowed",
            MissingClaim(_) => "missing_claim",
            PolicyDenied { .. } => "policy_denied",
            UnknownOperation { .. } => "unknown_operation",
            BodyTooLarge { .. } => "body_too_large",
            RateLimited { .. } => "rate_limited",
            ConcurrencyLimited => "concurrency_limited",
            TokenBudgetExhausted { .. } => "token_budget_exhausted",
            MemoryLimited => "memory_limited",
            UpstreamError(_) => "upstream_error",
            UnauthorizedSourceInAnswer => "unauthorized_source_in_answer",
            CredentialsUnavailable(_) => "credentials_unavailable",
            JwksUnavailable => "jwks_unavailable",
            RateLimitUnavailable => "rate_limit_unavailable",
            Overloaded => "overloaded",
            UpstreamTimeout => "upstream_timeout",
        }
    }

    /// The message the client sees. 4xx messages help the operator; 5xx
    /// messages say little (the detail is logged, see `log_detail`).
    pub fn message(&self) -> String {
        use ProxyError::*;
        match self {
            InvalidJson(d) => format!("request body is not valid JSON: {d}"),
            InvalidParameter(d) => d.clone(),
            BodyTimeout { secs } => format!("request body not received within {secs} s"),
            MissingToken => "missing identity token".into(),
            InvalidToken(_) => "identity token is not valid".into(),
            UnknownTenant(t) => format!("tenant \"{t}\" is not known"),
            ModelNotAllowed { model, tenant } => {
                format!("model \"{model}\" is not allowed for tenant \"{tenant}\"")
            }
            KnowledgeBaseNotAllowed { kb, tenant } => {
                format!("knowledge base \"{kb}\" is not allowed for tenant \"{tenant}\"")
            }
            AgentNotAllowed { agent, tenant } => {
                format!("agent \"{agent}\" is not allowed for tenant \"{tenant}\"")
            }
            EndpointNotAllowed { endpoint, tenant } => {
                format!("endpoint \"{endpoint}\" is not allowed for tenant \"{tenant}\"")
            }
            CrossTenant(d) => d.clone(),
            LocationNotAllowed(d) => d.clone(),
            OperationNotAllowed(op) => format!("operation {op} is not allowed through tenantgate"),
            GuardrailNotAllowed { tenant } => {
                format!("guardrail is not the guardrail of tenant \"{tenant}\"")
            }
            GuardrailCheckNotAllowed { check, tenant } => {
                format!("guardrail check {check:?} is not in guardrail_checks.allowed of tenant {tenant:?}")
            }
            MissingClaim(c) => format!("identity token lacks claim \"{c}\" required by policy"),
            PolicyDenied { tenant } => format!("the policies of tenant \"{tenant}\" do not permit this request"),
            UnknownOperation { method, path } => format!("unknown operation {method} {path}"),
            BodyTooLarge { limit } => format!("request body exceeds {limit} bytes"),
            RateLimited { .. } => "rate limit exceeded".into(),
            ConcurrencyLimited => "too many requests in flight".into(),
            TokenBudgetExhausted { .. } => "token budget exhausted".into(),
            MemoryLimited => "the tenant's requests in flight hold their share of the sidecar's buffer memory".into(),
            UpstreamError(_) => "upstream request failed".into(),
            UnauthorizedSourceInAnswer => {
                "answer cites a source outside the tenant's allowed locations".into()
            }
            CredentialsUnavailable(_) => "credentials for this tenant are unavailable".into(),
            JwksUnavailable => "token signing keys are unavailable".into(),
            RateLimitUnavailable => "rate limit backend unavailable".into(),
            Overloaded => "the sidecar's buffer memory is in use".into(),
            UpstreamTimeout => "upstream did not answer in time".into(),
        }
    }

    /// Operator-facing detail for the log (never a token or key).
    pub fn log_detail(&self) -> Option<&str> {
        use ProxyError::*;
        match self {
            InvalidToken(d) | UpstreamError(d) | CredentialsUnavailable(d) => Some(d),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        use ProxyError::*;
        match self {
            RateLimited { retry_after } | TokenBudgetExhausted { retry_after } => Some(*retry_after),
            ConcurrencyLimited | MemoryLimited | Overloaded => Some(Duration::from_secs(1)),
            _ => None,
        }
    }

    pub fn to_response<B: From<Bytes>>(&self, request_id: &str) -> Response<B> {
        let body = serde_json::json!({ "message": self.message(), "reason": self.reason() });
        let mut resp = Response::new(B::from(Bytes::from(body.to_string())));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(crate::aws::headers::ERROR_TYPE, HeaderValue::from_static(self.aws_type()));
        h.insert("x-tenantgate-reason", HeaderValue::from_static(self.reason()));
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("x-tenantgate-request-id", v.clone());
            h.insert(crate::aws::headers::REQUEST_ID, v);
        }
        if let Some(d) = self.retry_after() {
            // Whole seconds, rounded up, at least 1 (docs/reference.md §8).
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            h.insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        resp
    }
}

/// An error and all its sources, `: `-joined, for log lines.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    #[tokio::test]
    async fn error_shape_matches_spec_section_8() {
        let e = ProxyError::ModelNotAllowed { model: "x".into(), tenant: "acme".into() };
        let r: Response<Full<Bytes>> = e.to_response("rid-1");
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()["x-amzn-errortype"], "AccessDeniedException");
        assert_eq!(r.headers()["x-tenantgate-reason"], "model_not_allowed");
        assert_eq!(r.headers()["x-tenantgate-request-id"], "rid-1");
        let b = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["reason"], "model_not_allowed");
        assert_eq!(v["message"], "model \"x\" is not allowed for tenant \"acme\"");
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        let e = ProxyError::RateLimited { retry_after: Duration::from_millis(20) };
        let r: Response<Full<Bytes>> = e.to_response("r");
        assert_eq!(r.headers()["retry-after"], "1");
        let e = ProxyError::RateLimited { retry_after: Duration::from_millis(2100) };
        let r: Response<Full<Bytes>> = e.to_response("r");
        assert_eq!(r.headers()["retry-after"], "3");
    }

    #[test]
    fn server_errors_do_not_echo_detail() {
        let e = ProxyError::UpstreamError("connect to 10.0.0.1:443: refused".into());
        assert!(!e.message().contains("10.0.0.1"));
        let e = ProxyError::InvalidToken("signature mismatch".into());
        assert!(!e.message().contains("signature"));
    }
}
