//! ApplyGuardrail (docs/reference.md §5.1): a tenant may apply only its own
//! guardrail, at its configured version, which the path names. The body
//! (the content to check) is forwarded as sent.

use super::{Ctx, Hooks, PolicyQuestion, RequestBody};
use crate::decide::cedar::PolicyResource;
use crate::decide::Resource;
use crate::error::ProxyError;
use crate::route::Target;
use http::HeaderMap;

/// The guardrails family.
pub struct Guardrails;

impl Hooks for Guardrails {
    fn authorize(ctx: &Ctx<'_>, target: &Target) -> Result<(), ProxyError> {
        match target {
            Target::Guardrail { id, version } => ctx.decide(Resource::Guardrail { id, version }).map(drop),
            _ => Err(super::foreign_target(ctx)),
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
            _ => Err(super::foreign_target(ctx)),
        }
    }

}
