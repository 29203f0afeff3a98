//! Guardrails (docs/reference.md §5.1).
//!
//! - **ApplyGuardrail**: a tenant may apply only its own guardrail, at its
//!   configured version, which the path names. The body (the content to
//!   check) is forwarded as sent.
//! - **InvokeGuardrailChecks** (`POST /guardrail-checks/invoke`): runs
//!   Bedrock's built-in checks (content filter, prompt attack, sensitive
//!   information) on messages, without a guardrail resource. The kinds of
//!   checks a tenant may run are `guardrail_checks.allowed`; without it the
//!   operation is refused for the tenant (403 `operation_not_allowed`); a
//!   kind outside it is 403 `guardrail_not_allowed`, nothing sent. The body
//!   goes upstream as judged (re-serialised: a duplicated `checks` key
//!   cannot name another kind upstream). The answer's text units are
//!   metered: in the audit record (`guardrail_text_units`) and in
//!   `tenantgate_guardrail_text_units_total{tenant}`.

use super::{body_object, to_bytes, Ctx, Hooks, Notes, PolicyQuestion, RequestBody, ResponseShape};
use crate::aws::credentials::TenantCredentials;
use crate::config::GUARDRAIL_CHECK_KINDS;
use crate::decide::cedar::PolicyResource;
use crate::decide::Resource;
use crate::error::ProxyError;
use crate::filter::eventstream::StreamShape;
use crate::post::Post;
use crate::route::{Operation, Target};
use crate::usage::UsageSource;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;

/// The guardrails family.
pub struct Guardrails;

impl Hooks for Guardrails {
    fn authorize(ctx: &Ctx<'_>, target: &Target) -> Result<(), ProxyError> {
        match (ctx.op, target) {
            (Operation::ApplyGuardrail, Target::Guardrail { id, version }) => {
                ctx.decide(Resource::Guardrail { id, version }).map(drop)
            }
            (Operation::InvokeGuardrailChecks, Target::Nothing) => checks_configured(ctx),
            _ => Err(super::foreign_target(ctx)),
        }
    }

    fn rewrite(
        ctx: &Ctx<'_>,
        _target: &mut Target,
        _headers: &mut HeaderMap,
        body: RequestBody,
        _creds: &TenantCredentials,
        notes: &mut Notes,
    ) -> Result<(Bytes, Post), ProxyError> {
        if ctx.op != Operation::InvokeGuardrailChecks {
            return Ok((body.bytes, Post::Stream));
        }
        let mut v = body.tree()?;
        let bits = check_kinds(ctx, body_object(&mut v)?.get("checks"))?;
        notes.resource = Some(crate::decide::cedar::guardrail_check_kinds(bits).join(","));
        Ok((to_bytes(&v)?, Post::Stream))
    }

    fn policy_question<'a>(
        ctx: &Ctx<'_>,
        target: &'a Target,
        _headers: &'a HeaderMap,
        body: &'a RequestBody,
    ) -> Result<PolicyQuestion<'a>, ProxyError> {
        match (ctx.op, target) {
            (Operation::ApplyGuardrail, Target::Guardrail { id, version }) => {
                Ok(PolicyQuestion::of(PolicyResource::Guardrail { id, version }))
            }
            (Operation::InvokeGuardrailChecks, Target::Nothing) => {
                let checks = body.json.as_ref().and_then(|v| v.get("checks"));
                Ok(PolicyQuestion::of(PolicyResource::GuardrailChecks(check_kinds(ctx, checks)?)))
            }
            _ => Err(super::foreign_target(ctx)),
        }
    }

    fn response_shape(op: Operation) -> ResponseShape {
        match op {
            Operation::InvokeGuardrailChecks => {
                ResponseShape { usage: UsageSource::GuardrailChecksBody, stream: StreamShape::Other }
            }
            _ => ResponseShape::PLAIN,
        }
    }
}

/// The tenant may run some kind of check at all.
fn checks_configured(ctx: &Ctx<'_>) -> Result<(), ProxyError> {
    if ctx.policy.guardrail_checks.allowed.is_empty() {
        return Err(ProxyError::OperationNotAllowed(format!(
            "InvokeGuardrailChecks (tenant {:?} has no guardrail_checks.allowed)",
            ctx.principal.tenant
        )));
    }
    Ok(())
}

/// The kinds of checks `checks` asks for, each one the tenant may run, as
/// bits over `GUARDRAIL_CHECK_KINDS`. At least one is required; a member
/// that is no kind of check (the validator refuses those first) or is not
/// an object is 400.
pub(crate) fn check_kinds(ctx: &Ctx<'_>, checks: Option<&Value>) -> Result<u8, ProxyError> {
    checks_configured(ctx)?;
    let checks = match checks {
        Some(Value::Object(m)) => m,
        Some(_) => return Err(ProxyError::InvalidParameter("checks must be an object".into())),
        None => return Err(ProxyError::InvalidParameter("checks is required".into())),
    };
    let mut bits = 0u8;
    for (kind, cfg) in checks {
        let Some(i) = GUARDRAIL_CHECK_KINDS.iter().position(|k| k == kind) else {
            return Err(ProxyError::InvalidParameter(format!(
                "checks.{kind} is not a kind of guardrail check (one of {})",
                GUARDRAIL_CHECK_KINDS.join(", ")
            )));
        };
        if !cfg.is_object() {
            return Err(ProxyError::InvalidParameter(format!("checks.{kind} must be an object")));
        }
        if !ctx.policy.guardrail_checks.allowed.iter().any(|a| a == kind) {
            return Err(ProxyError::GuardrailCheckNotAllowed {
                check: kind.clone(),
                tenant: ctx.principal.tenant.clone(),
            });
        }
        bits |= 1 << i;
    }
    if bits == 0 {
        return Err(ProxyError::InvalidParameter("checks must name at least one kind of check".into()));
    }
    Ok(bits)
}

#[cfg(test)]
#[path = "guardrails_tests.rs"]
mod tests;
