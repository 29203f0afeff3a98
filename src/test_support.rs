//! Fixtures shared by the rewrite and filter tests: a policy parsed from a
//! real configuration (so templates and globs are compiled as in
//! production) and principals.

use crate::config::TenantPolicy;
use crate::principal::Principal;
use crate::secret::SecretString;
use crate::template::Template;
use serde_json::{json, Map, Value};

const CONFIG: &str = r#"
[aws]
region = "us-east-1"

[identity]
mode = "static"
tenant = "acme"

[credentials]
source = "static"

[tenants.acme]
models = ["anthropic.claude-3-haiku-*", "amazon.rerank-v1:0"]

[tenants.acme.static_credentials]
access_key_id_env = "TG_TEST_UNUSED_AKID"
secret_access_key_env = "TG_TEST_UNUSED_SECRET"

[tenants.acme.knowledge_base]
allowed = ["KBPOOLED01"]
filter_key = "tenant_id"
extra_filters = [ { in = { key = "group", value = "{groups}" } } ]
allowed_source_prefixes = ["s3://docs/tenants/{tenant}/", "s3://docs/public/"]

[tenants.acme.agents]
allowed = ["AGENT12345/ALIAS6789", "AGENTABCDE/*"]
session_attributes = { tenantId = "{tenant}", userId = "{user}" }
"#;

/// The merged policy of tenant `acme` from the configuration above.
pub(crate) fn policy() -> TenantPolicy {
    let cfg = crate::config::parse_str(CONFIG, std::path::Path::new(".")).unwrap_or_else(|e| panic!("{e:?}"));
    (**cfg.tenants.get("acme").expect("acme")).clone()
}

/// `policy()` without extra filters.
pub(crate) fn policy_without_extras() -> TenantPolicy {
    let mut p = policy();
    p.knowledge_base.extra_filters.clear();
    p
}

pub(crate) fn prefixes(p: &mut TenantPolicy, list: &[&str]) {
    p.knowledge_base.allowed_source_prefixes = list.iter().map(|s| Template::compile(s).unwrap()).collect();
}

/// A JWT-mode principal of `tenant` with groups `eng`, `ops`.
pub(crate) fn principal(tenant: &str, user: &str) -> Principal {
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(user));
    claims.insert("custom:plan".into(), json!("gold"));
    Principal {
        tenant: tenant.into(),
        user: user.into(),
        groups: vec!["eng".into(), "ops".into()],
        claims,
        token: Some(SecretString::new("header.payload.signature".into())),
    }
}

pub(crate) fn alice() -> Principal {
    principal("acme", "alice")
}

/// The tenant clause for `acme`.
pub(crate) fn acme_clause() -> Value {
    json!({"equals": {"key": "tenant_id", "value": "acme"}})
}

/// The rendered `{groups}` extra filter for `principal()`.
pub(crate) fn groups_clause() -> Value {
    json!({"in": {"key": "group", "value": ["eng", "ops"]}})
}
