//! TOML text -> validated `Config` (docs/reference.md §3).
//!
//! The document is parsed once into spanned TOML values and then read by
//! hand, section by section, so that every problem is collected (unknown
//! keys, types, ranges, templates, regexes, globs, files, cross-key rules)
//! with its key path and line, instead of stopping at the first one.

mod credentials;
mod filters;
pub use filters::{COMPARISON_OPERATORS, LOGICAL_OPERATORS};
mod identity;
mod inline_agent;
mod policy;
pub use policy::PolicyConfig;
mod reader;
mod sections;
mod tenant_merge;
mod tenant_types;
mod tenants;

use super::{Config, ConfigError};
use reader::{Ctx, Tbl};
use std::path::Path;
use toml::de::DeTable;

const TOP_LEVEL: &[&str] =
    &["server", "identity", "aws", "credentials", "rate_limit", "redaction", "policy", "tenant_defaults", "tenants"];

/// Stands for a tenant id in the key paths of `known_keys`.
const TENANT_ID_PLACEHOLDER: &str = "<id>";

/// Every key the parser accepts, as full dotted paths (`server.listen`,
/// `aws.endpoints.sts`, `tenant_defaults.rate_limit.burst`,
/// `tenants.<id>.models`), in the order of the key lists.
///
/// Built from the very lists the parser checks for unknown keys, so the
/// configuration reference in docs/configuration.md (tests/config_reference.rs) cannot
/// drift from what the parser accepts. Tables with a fixed set of keys are
/// expanded; maps with free keys (`model_map`, `session_tags`, ...) are
/// keys themselves. Keys valid only in one mode (`identity.tenant`,
/// `credentials.role_arn`, `rate_limit.redis_url`, ...) are included.
pub fn known_keys() -> Vec<String> {
    fn walk(path: &str, out: &mut Vec<String>) {
        match table_keys(path) {
            Some(keys) => {
                for k in keys {
                    walk(&if path.is_empty() { k.to_string() } else { format!("{path}.{k}") }, out);
                }
            }
            None => out.push(path.to_string()),
        }
    }
    let mut out = Vec::new();
    walk("", &mut out);
    out
}

/// The keys of the table at `path` that has a fixed set of keys, as the
/// parser reads it; None for a value (or a map with free keys).
fn table_keys(path: &str) -> Option<Vec<&'static str>> {
    let tenant = format!("tenants.{TENANT_ID_PLACEHOLDER}");
    let policy_sub = |prefix: &str| {
        let name = path.strip_prefix(prefix)?.strip_prefix('.')?;
        tenants::POLICY_TABLES.iter().find(|(n, _)| *n == name).map(|(_, keys)| keys.to_vec())
    };
    Some(match path {
        "" => TOP_LEVEL.to_vec(),
        "server" => sections::SERVER_KEYS.to_vec(),
        "identity" => identity::known_keys(),
        "aws" => sections::AWS_KEYS.to_vec(),
        "aws.endpoints" => sections::ENDPOINT_KEYS.to_vec(),
        "credentials" => credentials::KEYS.to_vec(),
        "rate_limit" => sections::RATE_LIMIT_KEYS.to_vec(),
        "redaction" => sections::REDACTION_KEYS.to_vec(),
        "policy" => policy::KEYS.to_vec(),
        "tenant_defaults" => {
            tenants::POLICY_KEYS.iter().copied().filter(|k| !tenants::TENANT_ONLY.contains(k)).collect()
        }
        "tenants" => vec![TENANT_ID_PLACEHOLDER],
        p if p == tenant => {
            tenants::POLICY_KEYS.iter().copied().filter(|k| !tenants::DEFAULTS_ONLY.contains(k)).collect()
        }
        _ => return policy_sub("tenant_defaults").or_else(|| policy_sub(&tenant)),
    })
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`: safe as an S3 key part, ARN part and
/// tag value (docs/reference.md §3).
pub fn is_valid_tenant_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// Parses and validates a configuration. `base_dir` resolves relative file
/// paths (normally the directory of the config file). Returns every error.
pub fn parse_str(text: &str, base_dir: &Path) -> Result<Config, Vec<ConfigError>> {
    let mut ctx = Ctx::new(text, base_dir);
    let (doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let line = e.span().map(|s| ctx.line(s.start));
            ctx.errors.push(ConfigError {
                key: String::new(),
                line,
                message: format!("TOML syntax error: {}", e.message().trim()),
            });
        }
        return Err(ctx.errors);
    }
    let root = Tbl::root(doc.get_ref(), &mut ctx, TOP_LEVEL);

    let server = sections::server(&root, &mut ctx);
    let identity = identity::identity(&root, &mut ctx);
    let aws = sections::aws(&root, &mut ctx);
    let credentials = credentials::credentials(&root, &mut ctx);
    let rate_limit = sections::rate_limit(&root, &mut ctx);
    let redaction = sections::redaction(&root, &mut ctx);
    let policy = policy::policy(&root, &mut ctx);
    let tenants = tenants::tenants(&root, &mut ctx, credentials.as_ref());

    if let (Some(identity), Some(tenants)) = (&identity, &tenants) {
        identity::check_static_tenant_listed(identity, tenants, &mut ctx);
    }

    let mut errors = dedup(ctx.errors);
    // File order reads best in `tenantgate check`; errors without a line
    // (missing top-level tables) come first.
    errors.sort_by_key(|e| e.line.unwrap_or(0));
    match (identity, aws, credentials, tenants) {
        (Some(identity), Some(aws), Some(credentials), Some(t)) if errors.is_empty() => Ok(Config {
            server,
            identity: identity.config,
            aws,
            credentials,
            rate_limit,
            redaction,
            policy,
            folded_tenants: t.tenants.keys().map(|id| super::fold_tenant_id(id)).collect(),
            tenants: t.tenants,
            unlisted: t.unlisted,
        }),
        _ => {
            if errors.is_empty() {
                // Defensive: a section failed without saying why.
                errors.push(ConfigError { key: String::new(), line: None, message: "invalid configuration".into() });
            }
            Err(errors)
        }
    }
}

/// Reads and parses a config file; relative paths in it are resolved against
/// the file's directory. A read failure is one error with key `""`.
pub fn load_file(path: &Path) -> Result<Config, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError { key: String::new(), line: None, message: format!("cannot read {}: {e}", path.display()) }]
    })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    parse_str(&text, base)
}

/// The same default value can be reported once per tenant after merging;
/// keep the first of identical errors.
fn dedup(errors: Vec<ConfigError>) -> Vec<ConfigError> {
    let mut out: Vec<ConfigError> = Vec::with_capacity(errors.len());
    for e in errors {
        if !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

#[cfg(test)]
mod tests;
