//! Merging (docs/reference.md §3): a tenant's value for a key replaces the default's;
//! sub-tables (`rate_limit`, `knowledge_base`, `agents`, `sagemaker`,
//! `async_invoke`, `sessions`, `guardrail_checks`, `inline_agent`) merge
//! key by key; lists and inline maps (`models`, `model_map`, `guardrail`,
//! `session_attributes`, ...) are replaced whole.
//!
//! Tables that name one identity are never merged: a tenant's own replaces
//! the default's whole, so a tenant can never end up with a mix of two
//! identities (its own access key with the defaults' session token). Such
//! tables: `static_credentials` (access key, secret, session token: one AWS
//! identity) and `guardrail` (id and version of one guardrail). AssumeRole
//! settings live in the global `[credentials]` table only, so there is
//! nothing per tenant to merge there.
//! Rules spanning several keys are checked on the merged result and reported
//! where the deciding value was written.

use super::reader::{join, Ctx, Loc};
use super::tenant_types::{Partial, StaticRequirement};
use crate::config::{
    AgentsPolicy, AsyncInvokePolicy, GuardrailChecksPolicy, InlineAgentPolicy, KnowledgeBasePolicy, SageMakerPolicy,
    SessionsPolicy, StaticCredentialsEnv, TenantPolicy, TenantRateLimit,
};

pub(crate) const DEFAULT_RPS: f64 = 20.0;
pub(crate) const DEFAULT_BURST: u32 = 40;
pub(crate) const DEFAULT_MAX_CONCURRENT: u32 = 16;
pub(crate) const DEFAULT_TOKENS_PER_MINUTE: u64 = 200_000;
pub(crate) const DEFAULT_FILTER_KEY: &str = "tenant_id";

/// The tenant's value if it set one, else the default's.
fn pick<'a, T>(t: Option<&'a Option<Loc<T>>>, d: &'a Option<Loc<T>>) -> Option<&'a Loc<T>> {
    t.and_then(Option::as_ref).or(d.as_ref())
}

fn u32_of(v: Option<&Loc<u64>>, default: u32) -> u32 {
    v.map_or(default, |l| u32::try_from(l.value).unwrap_or(u32::MAX))
}

/// Merges `t` (None for an unlisted tenant) over the defaults `d`.
pub(crate) fn merge(
    ctx: &mut Ctx<'_>,
    id: &str,
    t: Option<&Partial>,
    d: &Partial,
    creds: StaticRequirement,
) -> TenantPolicy {
    macro_rules! get {
        ($($f:ident).+) => {
            pick(t.map(|t| &t.$($f).+), &d.$($f).+)
        };
    }
    let rate = rate_limit(ctx, t, d);
    let static_credentials = static_credentials(ctx, id, t, d, creds);
    // Knowledge bases forced into agent sessions must be ones the tenant may
    // query, else every InvokeAgent of the tenant would be refused.
    if let Some(kbs) = get!(agents.knowledge_bases) {
        let allowed = get!(kb.allowed).map(|l| l.value.as_slice()).unwrap_or_default();
        for kb in kbs.value.iter().filter(|kb| !allowed.contains(kb)) {
            let whom = if t.is_some() { format!("tenant {id:?}") } else { "unlisted tenants (allow_unlisted)".into() };
            ctx.err_at(kbs, format!("knowledge base {kb:?} is not in knowledge_base.allowed of {whom}"));
        }
    }
    let inline_agent = inline_agent(ctx, id, t, d);
    TenantPolicy {
        models: get!(models).map(|l| l.value.clone()).unwrap_or_default(),
        model_map: get!(model_map).map(|l| l.value.clone()).unwrap_or_default(),
        guardrail: get!(guardrail).map(|l| l.value.clone()),
        request_metadata: get!(request_metadata).map(|l| l.value.clone()).unwrap_or_default(),
        rate_limit: rate,
        knowledge_base: KnowledgeBasePolicy {
            allowed: get!(kb.allowed).map(|l| l.value.clone()).unwrap_or_default(),
            filter_key: get!(kb.filter_key).map_or_else(|| DEFAULT_FILTER_KEY.to_string(), |l| l.value.clone()),
            extra_filters: get!(kb.extra_filters).map(|l| l.value.clone()).unwrap_or_default(),
            allowed_source_prefixes: get!(kb.allowed_source_prefixes).map(|l| l.value.clone()).unwrap_or_default(),
            user_context: get!(kb.user_context).map(|l| l.value.clone()),
        },
        agents: AgentsPolicy {
            allowed: get!(agents.allowed).map(|l| l.value.clone()).unwrap_or_default(),
            session_attributes: get!(agents.session_attributes).map(|l| l.value.clone()).unwrap_or_default(),
            inject_user_token: get!(agents.inject_user_token).is_some_and(|l| l.value),
            inject_scoped_credentials: get!(agents.inject_scoped_credentials).is_some_and(|l| l.value),
            knowledge_bases: get!(agents.knowledge_bases).map(|l| l.value.clone()).unwrap_or_default(),
        },
        sagemaker: SageMakerPolicy {
            endpoints: get!(sm.endpoints).map(|l| l.value.clone()).unwrap_or_default(),
            target_model: get!(sm.target_model).map(|l| l.value.clone()),
            allowed_target_models: get!(sm.allowed_target_models).map(|l| l.value.clone()).unwrap_or_default(),
            allowed_input_prefixes: get!(sm.allowed_input_prefixes).map(|l| l.value.clone()).unwrap_or_default(),
        },
        async_invoke: AsyncInvokePolicy {
            output_prefix: get!(async_invoke.output_prefix).map(|l| l.value.clone()),
            kms_key_id: get!(async_invoke.kms_key_id).map(|l| l.value.clone()),
            bucket_owner: get!(async_invoke.bucket_owner).map(|l| l.value.clone()),
            tags: get!(async_invoke.tags).map(|l| l.value.clone()).unwrap_or_default(),
        },
        sessions: SessionsPolicy {
            kms_key_arn: get!(sessions.kms_key_arn).map(|l| l.value.clone()),
            tags: get!(sessions.tags).map(|l| l.value.clone()).unwrap_or_default(),
        },
        guardrail_checks: GuardrailChecksPolicy {
            allowed: get!(guardrail_checks.allowed).map(|l| l.value.clone()).unwrap_or_default(),
        },
        inline_agent,
        static_credentials,
    }
}

/// `inline_agent`, merged key by key: None when neither table sets a key.
/// Once any key is written, `foundation_model` and `instruction` are
/// required; the model must pass the tenant's `models` and each knowledge
/// base be in its `knowledge_base.allowed`, else every InvokeInlineAgent of
/// the tenant would be refused. A key written with an invalid value was
/// reported where it was read; the table then gives no inline agent.
fn inline_agent(ctx: &mut Ctx<'_>, id: &str, t: Option<&Partial>, d: &Partial) -> Option<InlineAgentPolicy> {
    macro_rules! get {
        ($($f:ident).+) => {
            pick(t.map(|t| &t.$($f).+), &d.$($f).+)
        };
    }
    let whom = || if t.is_some() { format!("tenant {id:?}") } else { "unlisted tenants (allow_unlisted)".into() };
    let written = |k: &str| t.is_some_and(|t| t.inline_agent.written.iter().any(|w| w == k)) || d.inline_agent.written.iter().any(|w| w == k);
    let table = match t {
        Some(t) if !t.inline_agent.written.is_empty() => join(&t.origin, "inline_agent"),
        _ if !d.inline_agent.written.is_empty() => join(&d.origin, "inline_agent"),
        _ => return None,
    };
    let (model, instruction) = (get!(inline_agent.foundation_model), get!(inline_agent.instruction));
    let (groups, kbs, ttl) =
        (get!(inline_agent.action_groups), get!(inline_agent.knowledge_bases), get!(inline_agent.idle_session_ttl_secs));
    for k in super::inline_agent::INLINE_AGENT_REQUIRED {
        if !written(k) {
            ctx.err(&join(&table, k), None, format!("is required for {}: an inline agent needs `foundation_model` and `instruction`", whom()));
        }
    }
    let globs = get!(models).map(|l| l.value.as_slice()).unwrap_or_default();
    if let Some(model) = model {
        let bare = crate::model_id::foundation_model_id(&model.value);
        if !globs.iter().any(|g| g.matches(&model.value) || bare.is_some_and(|b| g.matches(b))) {
            ctx.err_at(model, format!("{:?} does not match a `models` glob of {}", model.value, whom()));
        }
    }
    let allowed = get!(kb.allowed).map(|l| l.value.as_slice()).unwrap_or_default();
    if let Some(kbs) = kbs {
        for (kb, _) in kbs.value.iter().filter(|(kb, _)| !allowed.contains(kb)) {
            ctx.err_at(kbs, format!("knowledge base {kb:?} is not in knowledge_base.allowed of {}", whom()));
        }
    }
    let (model, instruction) = (model?, instruction?);
    Some(InlineAgentPolicy {
        foundation_model: model.value.clone(),
        instruction: instruction.value.clone(),
        action_groups: groups.map(|l| l.value.clone()).unwrap_or_default(),
        knowledge_bases: kbs.map(|l| l.value.clone()).unwrap_or_default(),
        idle_session_ttl_secs: ttl.map(|l| u32::try_from(l.value).unwrap_or(u32::MAX)),
    })
}

fn rate_limit(ctx: &mut Ctx<'_>, t: Option<&Partial>, d: &Partial) -> TenantRateLimit {
    let get = |f: fn(&Partial) -> &Option<Loc<u64>>| pick(t.map(f), f(d));
    let rps = pick(t.map(|t| &t.rate.rps), &d.rate.rps);
    let user_rps = pick(t.map(|t| &t.rate.user_rps), &d.rate.user_rps);
    let user_burst = get(|p| &p.rate.user_burst);
    if let (Some(b), None) = (user_burst, user_rps) {
        ctx.err_at(b, "user_burst needs user_requests_per_second");
    }
    TenantRateLimit {
        requests_per_second: rps.map_or(DEFAULT_RPS, |l| l.value),
        burst: u32_of(get(|p| &p.rate.burst), DEFAULT_BURST),
        max_concurrent: u32_of(get(|p| &p.rate.max_concurrent), DEFAULT_MAX_CONCURRENT),
        tokens_per_minute: get(|p| &p.rate.tokens_per_minute).map_or(DEFAULT_TOKENS_PER_MINUTE, |l| l.value),
        user_requests_per_second: user_rps.map(|l| l.value),
        // Default per-user burst: two seconds' worth, like the tenant default.
        user_burst: user_rps.map(|r| u32_of(user_burst, (r.value * 2.0).ceil().clamp(1.0, f64::from(u32::MAX)) as u32)),
    }
}

fn static_credentials(
    ctx: &mut Ctx<'_>,
    id: &str,
    t: Option<&Partial>,
    d: &Partial,
    creds: StaticRequirement,
) -> Option<StaticCredentialsEnv> {
    // One identity: the tenant's own table when it wrote one, else the
    // defaults' table; never key by key.
    let table = match t {
        Some(t) if t.creds.present.is_some() => &t.creds,
        _ => &d.creds,
    };
    let akid = table.access_key_id_env.as_ref();
    let secret = table.secret_access_key_env.as_ref();
    let token = table.session_token_env.as_ref();
    if creds == StaticRequirement::Required {
        let owner = t.unwrap_or(d);
        let key = join(&owner.origin, "static_credentials");
        let span = owner.creds.present.as_ref().map(|p| p.span.clone()).or_else(|| owner.span.clone());
        for (name, v) in [("access_key_id_env", akid), ("secret_access_key_env", secret)] {
            if v.is_none() {
                let whom =
                    if t.is_some() { format!("tenant {id:?}") } else { "unlisted tenants (allow_unlisted)".into() };
                ctx.err(&key, span.as_ref(), format!("credentials.source = \"static\" needs `{name}` for {whom}"));
            }
        }
    }
    Some(StaticCredentialsEnv {
        access_key_id_env: akid?.value.clone(),
        secret_access_key_env: secret?.value.clone(),
        session_token_env: token.map(|l| l.value.clone()),
    })
    .filter(|_| creds != StaticRequirement::Forbidden)
}
