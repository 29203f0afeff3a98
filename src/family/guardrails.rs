//! ApplyGuardrail (docs/reference.md §5.1): a tenant may apply only its own
//! guardrail, at its configured version, which the path names. The body
//! (the content to check) is forwarded as sent.

use super::{Ctx, Hooks, Notes, PolicyQuestion, RequestBody};
use crate::decide::cedar::PolicyResource;
use crate::aws::credentials::TenantCredentials;
use crate::decide::Resource;
use crate::error::ProxyError;
use crate::post::Post;
use crate::route::Target;
use bytes::Bytes;
use http::HeaderMap;

/// The guardrails family.
pub struct Guardrails;

impl Hooks for Guardrails {
    fn authorize(ctx: &Ctx<'_>, target: &Target) -> Result<(), ProxyError> {
        match target {
            Target::Guardrail { id, version } => ctx.decide(Resource::Guardrail { id, version }).map(drop),
            _ => Err(ProxyError::OperationNotAllowed(ctx.op.name().to_string())),
        }
    }

    fn policy_question<'a>(
        ctx: &Ctx<'_>,
        target: &'a Target,
        _headers: &'a HeaderMap,
        _body: &'a RequestBody,
    ) -> Result<PolicyQuestion<'a>, ProxyError> {
        match target {
            Target::Guardrail { id, version } => Ok(PolicyQuestion::of(PolicyResource::Guardrail { id, version })),
            _ => Err(ProxyError::OperationNotAllowed(ctx.op.name().to_string())),
        }
    }

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
}
