//! Types shared by `tenants` (which reads each `[tenant_defaults]` /
//! `[tenants.ID]` table into a `Partial`) and `tenant_merge` (which combines
//! a tenant's partial over the defaults). Both depend on this module, so the
//! dependency between them runs one way: `tenants` -> `tenant_merge`.

use super::reader::Loc;
use crate::config::Guardrail;
use crate::glob::Glob;
use crate::template::{JsonTemplate, Template};
use std::collections::BTreeMap;
use std::ops::Range;

/// Which `static_credentials` rule applies, decided by `[credentials]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StaticRequirement {
    /// `credentials.source = "static"`: every tenant needs its env var names.
    Required,
    /// `assume_role`: `static_credentials` must not appear at all.
    Forbidden,
    /// `[credentials]` itself is invalid; do not pile on.
    Unknown,
}

pub(crate) type Named<T> = Vec<(String, T)>;

#[derive(Default)]
pub(crate) struct Partial {
    /// `tenant_defaults` or `tenants.ID`.
    pub origin: String,
    pub span: Option<Range<usize>>,
    pub allow_unlisted: Option<Loc<bool>>,
    pub models: Option<Loc<Vec<Glob>>>,
    pub model_map: Option<Loc<BTreeMap<String, String>>>,
    pub guardrail: Option<Loc<Guardrail>>,
    pub request_metadata: Option<Loc<Named<Template>>>,
    pub rate: PartialRate,
    pub kb: PartialKb,
    pub agents: PartialAgents,
    pub sm: PartialSageMaker,
    pub async_invoke: PartialAsyncInvoke,
    pub sessions: PartialSessions,
    pub guardrail_checks: PartialGuardrailChecks,
    pub inline_agent: PartialInlineAgent,
    pub creds: PartialStatic,
}

#[derive(Default)]
pub(crate) struct PartialRate {
    pub rps: Option<Loc<f64>>,
    pub burst: Option<Loc<u64>>,
    pub max_concurrent: Option<Loc<u64>>,
    pub tokens_per_minute: Option<Loc<u64>>,
    pub user_rps: Option<Loc<f64>>,
    pub user_burst: Option<Loc<u64>>,
}

#[derive(Default)]
pub(crate) struct PartialKb {
    pub allowed: Option<Loc<Vec<String>>>,
    pub filter_key: Option<Loc<String>>,
    pub extra_filters: Option<Loc<Vec<JsonTemplate>>>,
    pub allowed_source_prefixes: Option<Loc<Vec<Template>>>,
    pub user_context: Option<Loc<Template>>,
}

#[derive(Default)]
pub(crate) struct PartialAgents {
    pub allowed: Option<Loc<Vec<Glob>>>,
    pub session_attributes: Option<Loc<Named<Template>>>,
    pub inject_user_token: Option<Loc<bool>>,
    pub inject_scoped_credentials: Option<Loc<bool>>,
    pub knowledge_bases: Option<Loc<Vec<String>>>,
}

#[derive(Default)]
pub(crate) struct PartialSageMaker {
    pub endpoints: Option<Loc<Named<Template>>>,
    pub target_model: Option<Loc<Template>>,
    pub allowed_target_models: Option<Loc<Vec<Template>>>,
    pub allowed_input_prefixes: Option<Loc<Vec<Template>>>,
}

#[derive(Default)]
pub(crate) struct PartialGuardrailChecks {
    pub allowed: Option<Loc<Vec<String>>>,
}

#[derive(Default)]
pub(crate) struct PartialAsyncInvoke {
    pub output_prefix: Option<Loc<Template>>,
    pub kms_key_id: Option<Loc<Template>>,
    pub bucket_owner: Option<Loc<String>>,
    pub tags: Option<Loc<Named<Template>>>,
}

#[derive(Default)]
pub(crate) struct PartialSessions {
    pub kms_key_arn: Option<Loc<Template>>,
    pub tags: Option<Loc<Named<Template>>>,
}

#[derive(Default)]
pub(crate) struct PartialInlineAgent {
    /// The keys written in the table, valid or not.
    pub written: Vec<String>,
    pub foundation_model: Option<Loc<String>>,
    pub instruction: Option<Loc<Template>>,
    pub action_groups: Option<Loc<Vec<JsonTemplate>>>,
    pub knowledge_bases: Option<Loc<Named<Template>>>,
    pub idle_session_ttl_secs: Option<Loc<u64>>,
}

#[derive(Default)]
pub(crate) struct PartialStatic {
    /// Where `static_credentials` was written, when it was.
    pub present: Option<Loc<()>>,
    pub access_key_id_env: Option<Loc<String>>,
    pub secret_access_key_env: Option<Loc<String>>,
    pub session_token_env: Option<Loc<String>>,
}
