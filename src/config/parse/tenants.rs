//! `[tenant_defaults]` and `[tenants.ID]`: each table is read into a
//! `Partial` (every key optional, remembering where it was written), then
//! `tenant_merge` combines a tenant's partial over the defaults key by key.
//! Reading each table once means an error is reported once, at the key path
//! where the bad value was written.

use super::credentials::template;
use super::filters;
use super::is_valid_tenant_id;
use super::reader::{env_name, Ctx, Loc, Tbl};
use super::tenant_merge::merge;
use super::tenant_types::{Named, Partial, StaticRequirement};
use crate::config::{CredentialsConfig, Guardrail, StreamProcessingMode, TenantPolicy};
use crate::glob::Glob;
use crate::template::Template;
use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) const POLICY_KEYS: &[&str] = &[
    "allow_unlisted",
    "models",
    "model_map",
    "guardrail",
    "request_metadata",
    "rate_limit",
    "knowledge_base",
    "agents",
    "sagemaker",
    "async_invoke",
    "sessions",
    "guardrail_checks",
    "inline_agent",
    "static_credentials",
    "policy",
];
pub(super) const GUARDRAIL_KEYS: &[&str] = &["id", "version", "stream_processing_mode", "allow_guard_content"];
/// Keys of `GUARDRAIL_KEYS` every guardrail table must set.
const GUARDRAIL_REQUIRED: &[&str] = &["id", "version"];
pub(super) const RATE_KEYS: &[&str] =
    &["requests_per_second", "burst", "max_concurrent", "tokens_per_minute", "user_requests_per_second", "user_burst"];
pub(super) const KB_KEYS: &[&str] = &["allowed", "filter_key", "extra_filters", "allowed_source_prefixes", "user_context"];
pub(super) const AGENT_KEYS: &[&str] =
    &["allowed", "session_attributes", "inject_user_token", "inject_scoped_credentials", "knowledge_bases"];
pub(super) const SM_KEYS: &[&str] = &["endpoints", "target_model", "allowed_target_models", "allowed_input_prefixes"];
pub(super) const ASYNC_INVOKE_KEYS: &[&str] = &["output_prefix", "kms_key_id", "bucket_owner", "tags"];
pub(super) const GUARDRAIL_CHECKS_KEYS: &[&str] = &["allowed"];
/// StartAsyncInvoke takes at most 200 tags; the tenant's leave room for the
/// client's.
const MAX_ASYNC_INVOKE_TAGS: usize = 50;
pub(super) const SESSIONS_KEYS: &[&str] = &["kms_key_arn", "tags"];
/// CreateSession takes at most 200 tags; the tenant's leave room for the
/// client's.
const MAX_SESSION_TAGS: usize = 50;
pub(super) const STATIC_KEYS: &[&str] = &["access_key_id_env", "secret_access_key_env", "session_token_env"];
/// Keys of `POLICY_KEYS` valid in `[tenant_defaults]` only.
pub(super) const DEFAULTS_ONLY: &[&str] = &["allow_unlisted"];
/// Keys of `POLICY_KEYS` valid in `[tenants.ID]` only (read by `policy.rs`).
pub(super) const TENANT_ONLY: &[&str] = &["policy"];
/// Sub-tables of a tenant policy with a fixed set of keys (the other
/// table-valued keys, such as `model_map`, are maps with free keys).
pub(super) const POLICY_TABLES: &[(&str, &[&str])] = &[
    ("guardrail", GUARDRAIL_KEYS),
    ("rate_limit", RATE_KEYS),
    ("knowledge_base", KB_KEYS),
    ("agents", AGENT_KEYS),
    ("sagemaker", SM_KEYS),
    ("async_invoke", ASYNC_INVOKE_KEYS),
    ("sessions", SESSIONS_KEYS),
    ("guardrail_checks", GUARDRAIL_CHECKS_KEYS),
    ("inline_agent", super::inline_agent::INLINE_AGENT_KEYS),
    ("static_credentials", STATIC_KEYS),
    ("policy", super::policy::TENANT_KEYS),
];
/// Converse `requestMetadata` allows at most 16 entries.
const MAX_REQUEST_METADATA: usize = 16;

pub(crate) struct Tenants {
    pub tenants: BTreeMap<String, Arc<TenantPolicy>>,
    pub unlisted: Option<Arc<TenantPolicy>>,
}

pub(crate) fn tenants(root: &Tbl<'_>, ctx: &mut Ctx<'_>, creds: Option<&CredentialsConfig>) -> Option<Tenants> {
    let defaults = match root.get("tenant_defaults") {
        Some(v) => Tbl::open(ctx, "tenant_defaults".into(), v, Some(POLICY_KEYS)).map(|t| {
            t.forbid(ctx, TENANT_ONLY, "is only valid in [tenants.ID] (policies for every tenant go in [policy])");
            partial(&t, ctx)
        }),
        None => Some(Partial { origin: "tenant_defaults".into(), ..Partial::default() }),
    }?;
    let mut listed = Vec::new();
    let mut folded: BTreeMap<String, String> = BTreeMap::new();
    if let Some(v) = root.get("tenants") {
        if let Some(t) = Tbl::open(ctx, "tenants".into(), v, None) {
            for (id, key_span, value) in t.entries() {
                if !is_valid_tenant_id(id) {
                    let msg = format!("{id:?} is not a valid tenant id (^[A-Za-z0-9][A-Za-z0-9._-]{{0,63}}$)");
                    ctx.err(&t.key(id), Some(&key_span), msg);
                    continue;
                }
                // AWS compares some names without case (SageMaker endpoints,
                // IAM roles): two tenants must never be one there.
                if let Some(first) = folded.insert(crate::config::fold_tenant_id(id), id.to_string()) {
                    let msg = format!("tenant ids {first:?} and {id:?} differ only in case; tenant ids must differ ignoring case");
                    ctx.err(&t.key(id), Some(&key_span), msg);
                    continue;
                }
                if let Some(tt) = Tbl::open(ctx, t.key(id), value, Some(POLICY_KEYS)) {
                    tt.forbid(ctx, DEFAULTS_ONLY, "is only valid in [tenant_defaults]");
                    listed.push((id.to_string(), partial(&tt, ctx)));
                }
            }
        }
    }
    let requirement = match creds {
        Some(CredentialsConfig::Static) => StaticRequirement::Required,
        Some(CredentialsConfig::AssumeRole(_)) => StaticRequirement::Forbidden,
        None => StaticRequirement::Unknown,
    };
    if requirement == StaticRequirement::Forbidden {
        for p in std::iter::once(&defaults).chain(listed.iter().map(|(_, p)| p)) {
            if let Some(at) = &p.creds.present {
                ctx.err_at(at, "is only valid with credentials.source = \"static\"");
            }
        }
    }
    let mut out = BTreeMap::new();
    for (id, p) in &listed {
        out.insert(id.clone(), Arc::new(merge(ctx, id, Some(p), &defaults, requirement)));
    }
    let allow_unlisted = defaults.allow_unlisted.as_ref().is_some_and(|l| l.value);
    let unlisted = allow_unlisted.then(|| Arc::new(merge(ctx, "(unlisted)", None, &defaults, requirement)));
    Some(Tenants { tenants: out, unlisted })
}

fn partial(t: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Partial {
    let mut p = Partial { origin: t.path.clone(), span: t.span.clone(), ..Partial::default() };
    p.allow_unlisted = t.boolean(ctx, "allow_unlisted");
    p.models = glob_list(t, ctx, "models", |_| None);
    p.model_map = t.string_map(ctx, "model_map").map(|m| {
        let mut map = BTreeMap::new();
        // Keys name models in any spelling (an id or its foundation-model
        // ARN): two keys for one model would make the mapping ambiguous.
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (k, v) in m.value.iter() {
            if k.is_empty() || v.value.trim().is_empty() {
                ctx.err_at(v, "model ids must not be empty");
            }
            let model = crate::model_id::canonical(k);
            if let Some(other) = seen.insert(model, k) {
                ctx.err_at(v, format!("{k:?} and {other:?} name the same model"));
            }
            map.insert(k.clone(), v.value.clone());
        }
        Loc { value: map, key: m.key, span: m.span }
    });
    p.guardrail = guardrail(t, ctx);
    p.request_metadata = template_map(t, ctx, "request_metadata");
    if let Some(m) = &p.request_metadata {
        if m.value.len() > MAX_REQUEST_METADATA {
            ctx.err_at(m, format!("Converse accepts at most {MAX_REQUEST_METADATA} requestMetadata entries"));
        }
    }
    if let Some(r) = t.sub(ctx, "rate_limit", RATE_KEYS) {
        p.rate.rps = r.positive_number(ctx, "requests_per_second");
        p.rate.burst = r.uint(ctx, "burst", 1, u64::from(u32::MAX));
        p.rate.max_concurrent = r.uint(ctx, "max_concurrent", 1, u64::from(u32::MAX));
        p.rate.tokens_per_minute = r.uint(ctx, "tokens_per_minute", 0, u64::MAX);
        p.rate.user_rps = r.positive_number(ctx, "user_requests_per_second");
        p.rate.user_burst = r.uint(ctx, "user_burst", 1, u64::from(u32::MAX));
    }
    if let Some(k) = t.sub(ctx, "knowledge_base", KB_KEYS) {
        p.kb.allowed = k.string_list(ctx, "allowed").map(|l| {
            for id in &l.value {
                if id.value.trim().is_empty() {
                    ctx.err_at(id, "must not be empty");
                }
            }
            l.map(|v| v.into_iter().map(|x| x.value).collect())
        });
        p.kb.filter_key = k.text(ctx, "filter_key");
        p.kb.extra_filters = filters::extra_filters(&k, ctx, "extra_filters");
        p.kb.allowed_source_prefixes = prefix_list(&k, ctx, "allowed_source_prefixes");
        p.kb.user_context = k.text(ctx, "user_context").and_then(|l| template(ctx, &l).map(|tpl| l.map(|_| tpl)));
    }
    if let Some(a) = t.sub(ctx, "agents", AGENT_KEYS) {
        p.agents.allowed = glob_list(&a, ctx, "allowed", |s| {
            (!s.contains('/') && !s.contains('*'))
                .then(|| format!("{s:?} must be `agentId/aliasId` (the alias may be `*`)"))
        });
        p.agents.session_attributes = template_map(&a, ctx, "session_attributes");
        p.agents.inject_user_token = a.boolean(ctx, "inject_user_token");
        p.agents.inject_scoped_credentials = a.boolean(ctx, "inject_scoped_credentials");
        p.agents.knowledge_bases = a.string_list(ctx, "knowledge_bases").map(|l| {
            for id in &l.value {
                if id.value.trim().is_empty() {
                    ctx.err_at(id, "must not be empty");
                }
            }
            l.map(|v| v.into_iter().map(|x| x.value).collect())
        });
    }
    if let Some(s) = t.sub(ctx, "sagemaker", SM_KEYS) {
        p.sm.endpoints = sagemaker_endpoints(&s, ctx);
        p.sm.target_model = s.text(ctx, "target_model").and_then(|l| template(ctx, &l).map(|tpl| l.map(|_| tpl)));
        p.sm.allowed_target_models = template_list(&s, ctx, "allowed_target_models", |_| None);
        p.sm.allowed_input_prefixes = prefix_list(&s, ctx, "allowed_input_prefixes");
    }
    if let Some(a) = t.sub(ctx, "async_invoke", ASYNC_INVOKE_KEYS) {
        p.async_invoke.output_prefix = a.text(ctx, "output_prefix").and_then(|l| {
            let tpl = template(ctx, &l)?;
            let src = tpl.source();
            if !src.starts_with("s3://") || !src.ends_with('/') {
                ctx.err_at(&l, format!("{src:?} must be an S3 prefix ending in `/`, such as \"s3://bucket/{{tenant}}/\""));
                return None;
            }
            Some(l.map(|_| tpl))
        });
        p.async_invoke.kms_key_id = a.text(ctx, "kms_key_id").and_then(|l| template(ctx, &l).map(|tpl| l.map(|_| tpl)));
        p.async_invoke.bucket_owner = a.text(ctx, "bucket_owner").and_then(|l| {
            if l.value.len() == 12 && l.value.bytes().all(|b| b.is_ascii_digit()) {
                Some(l)
            } else {
                ctx.err_at(&l, "must be a 12-digit AWS account id");
                None
            }
        });
        p.async_invoke.tags = template_map(&a, ctx, "tags").inspect(|m| {
            if m.value.len() > MAX_ASYNC_INVOKE_TAGS {
                ctx.err_at(m, format!("at most {MAX_ASYNC_INVOKE_TAGS} tags"));
            }
            for (k, _) in &m.value {
                let valid = k.chars().count() <= 128
                    && !k.to_ascii_lowercase().starts_with("aws:")
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || " ._:/=+@-".contains(c));
                if !valid {
                    ctx.err_at(m, format!("{k:?} is not a valid tag key (1-128 of letters, digits, spaces and ._:/=+@-, not starting with aws:)"));
                }
            }
        });
    }
    if let Some(s) = t.sub(ctx, "sessions", SESSIONS_KEYS) {
        p.sessions.kms_key_arn = s.text(ctx, "kms_key_arn").and_then(|l| {
            let tpl = template(ctx, &l)?;
            let src = tpl.source();
            let kms = src.strip_prefix("arn:").and_then(|r| r.split_once(':')).is_some_and(|(_, r)| r.starts_with("kms:"));
            if !kms || !src.contains(":key/") {
                ctx.err_at(&l, format!("{src:?} must be a KMS key ARN, such as \"arn:aws:kms:us-east-1:111122223333:key/...\""));
                return None;
            }
            Some(l.map(|_| tpl))
        });
        p.sessions.tags = template_map(&s, ctx, "tags").inspect(|m| {
            if m.value.len() > MAX_SESSION_TAGS {
                ctx.err_at(m, format!("at most {MAX_SESSION_TAGS} tags"));
            }
            for (k, _) in &m.value {
                if !valid_tag_key(k) {
                    ctx.err_at(m, format!("{k:?} is not a valid tag key (1-128 of letters, digits, spaces and ._:/=+@-, not starting with aws:)"));
                }
            }
        });
    }
    if let Some(g) = t.sub(ctx, "guardrail_checks", GUARDRAIL_CHECKS_KEYS) {
        p.guardrail_checks.allowed = g.string_list(ctx, "allowed").map(|l| {
            for kind in &l.value {
                if !crate::config::GUARDRAIL_CHECK_KINDS.contains(&kind.value.as_str()) {
                    ctx.err_at(
                        kind,
                        format!(
                            "{:?} is not a kind of guardrail check (one of {})",
                            kind.value,
                            crate::config::GUARDRAIL_CHECK_KINDS.join(", ")
                        ),
                    );
                }
            }
            l.map(|v| v.into_iter().map(|x| x.value).collect())
        });
    }
    p.inline_agent = super::inline_agent::read(t, ctx);
    if let Some(v) = t.get("static_credentials") {
        p.creds.present = Some(Loc { value: (), key: t.key("static_credentials"), span: v.span() });
        if let Some(c) = t.sub(ctx, "static_credentials", STATIC_KEYS) {
            p.creds.access_key_id_env = env_name(&c, ctx, "access_key_id_env");
            p.creds.secret_access_key_env = env_name(&c, ctx, "secret_access_key_env");
            p.creds.session_token_env = env_name(&c, ctx, "session_token_env");
        }
    }
    p
}

fn guardrail(t: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Option<Loc<Guardrail>> {
    let g = t.sub(ctx, "guardrail", GUARDRAIL_KEYS)?;
    let id = g.text(ctx, "id");
    let version = g.text(ctx, "version");
    for k in GUARDRAIL_REQUIRED {
        if !g.has(k) {
            g.missing(ctx, k);
        }
    }
    let mode = match g.string(ctx, "stream_processing_mode") {
        None => Some(StreamProcessingMode::Sync),
        Some(m) => match m.value.as_str() {
            "sync" => Some(StreamProcessingMode::Sync),
            "async" => Some(StreamProcessingMode::Async),
            _ => {
                ctx.err_at(&m, "must be \"sync\" or \"async\"");
                None
            }
        },
    };
    let allow_guard_content = g.boolean(ctx, "allow_guard_content").is_some_and(|b| b.value);
    let span = g.span.clone().unwrap_or_default();
    let value = Guardrail {
        stream_processing_mode: mode?,
        allow_guard_content,
        ..Guardrail::new(id?.value, version?.value)
    };
    Some(Loc { value, key: g.path, span })
}

/// A list of globs; `extra` may reject a syntactically valid pattern.
fn glob_list(
    t: &Tbl<'_>,
    ctx: &mut Ctx<'_>,
    k: &str,
    extra: impl Fn(&str) -> Option<String>,
) -> Option<Loc<Vec<Glob>>> {
    let list = t.string_list(ctx, k)?;
    let mut out = Vec::new();
    for item in &list.value {
        match Glob::new(&item.value) {
            Ok(g) => match extra(&item.value) {
                Some(e) => ctx.err_at(item, e),
                None => out.push(g),
            },
            Err(e) => ctx.err_at(item, format!("invalid glob: {e}")),
        }
    }
    Some(list.map(|_| out))
}

fn template_list(
    t: &Tbl<'_>,
    ctx: &mut Ctx<'_>,
    k: &str,
    extra: impl Fn(&Template) -> Option<String>,
) -> Option<Loc<Vec<Template>>> {
    let list = t.string_list(ctx, k)?;
    let mut out = Vec::new();
    for item in &list.value {
        if item.value.is_empty() {
            ctx.err_at(item, "must not be empty");
            continue;
        }
        if let Some(tpl) = template(ctx, item) {
            match extra(&tpl) {
                Some(e) => ctx.err_at(item, e),
                None => out.push(tpl),
            }
        }
    }
    Some(list.map(|_| out))
}

/// Location prefixes (`s3://bucket/tenants/{tenant}/`). One that contains a
/// placeholder must end in `/`: otherwise tenant `acme`'s prefix would also
/// cover tenant `acme2`'s objects.
fn prefix_list(t: &Tbl<'_>, ctx: &mut Ctx<'_>, k: &str) -> Option<Loc<Vec<Template>>> {
    template_list(t, ctx, k, |tpl| {
        if !tpl.source().contains("://") {
            Some(format!("{:?} must be a URI prefix such as \"s3://bucket/path/\"", tpl.source()))
        } else if !tpl.is_literal() && !tpl.source().ends_with('/') {
            Some(format!(
                "{:?} uses a placeholder and must end with `/` (otherwise tenant \"a\" would also match tenant \"ab\")",
                tpl.source()
            ))
        } else {
            None
        }
    })
}

/// A tag key AWS accepts and does not reserve.
fn valid_tag_key(k: &str) -> bool {
    k.chars().count() <= 128
        && !k.to_ascii_lowercase().starts_with("aws:")
        && k.chars().all(|c| c.is_ascii_alphanumeric() || " ._:/=+@-".contains(c))
}

fn template_map(t: &Tbl<'_>, ctx: &mut Ctx<'_>, k: &str) -> Option<Loc<Named<Template>>> {
    let map = t.string_map(ctx, k)?;
    let mut out = Vec::new();
    for (name, v) in &map.value {
        if name.is_empty() {
            ctx.err_at(v, "keys must not be empty");
            continue;
        }
        if let Some(tpl) = template(ctx, v) {
            out.push((name.clone(), tpl));
        }
    }
    Some(map.map(|_| out))
}

fn is_endpoint_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

fn sagemaker_endpoints(s: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Option<Loc<Named<Template>>> {
    let map = template_map(s, ctx, "endpoints")?;
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for (name, tpl) in &map.value {
        let key = super::reader::join(&map.key, name);
        let span = s.get("endpoints").map(|v| v.span());
        let lower = name.to_ascii_lowercase();
        if !name.chars().all(is_endpoint_char) {
            ctx.err(&key, span.as_ref(), format!("{name:?} is not a SageMaker endpoint name (letters, digits, -)"));
            continue;
        }
        if seen.contains(&lower) {
            ctx.err(
                &key,
                span.as_ref(),
                format!("{name:?} is listed twice (endpoint names compare case-insensitively)"),
            );
            continue;
        }
        if tpl.source().is_empty() || !tpl.literals().all(|l| l.chars().all(is_endpoint_char)) {
            ctx.err(
                &key,
                span.as_ref(),
                format!("{:?} is not a SageMaker endpoint name (letters, digits, -)", tpl.source()),
            );
            continue;
        }
        seen.push(lower);
        out.push((name.clone(), tpl.clone()));
    }
    Some(map.map(|_| out))
}
