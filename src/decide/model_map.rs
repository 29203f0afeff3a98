//! `model_map` resolution (docs/reference.md §5.1): the one place that decides which model
//! a request really reaches. Used for the path model of InvokeModel(+stream),
//! Converse(+stream) and CountTokens, and for every model ARN in a
//! RetrieveAndGenerate(Stream) or Retrieve body.
//!
//! The map applies to every spelling of a model, and a spelling of a mapped
//! model that the map does not cover is denied, never forwarded unmapped:
//!
//! | requested (map key `K`)                                    | result |
//! |---|---|
//! | `K`                                                        | mapped |
//! | `arn:<partition>:bedrock:<region>::foundation-model/K`     | mapped (any partition, any region) |
//! | a key written as a foundation-model ARN, requested as `K` or any ARN of it | mapped |
//! | `K:<suffix>` (context-window variants such as `K:200k`)   | 403 `model_not_allowed` |
//! | `K` in another case (`Anthropic.Claude…`)                  | 403 `model_not_allowed` |
//! | `<prefix>.K` (inference profiles `us.K`, `eu.K`, `apac.K`, `global.K`, …), also as an inference-profile ARN | 403 `model_not_allowed` |
//!
//! A denied spelling is let through only when the configuration names it
//! exactly: as a `model_map` key of its own (mapped, possibly to itself), or
//! as a `models` entry without wildcards (forwarded as requested). A glob
//! such as `us.anthropic.*` does not count: it was likely written before the
//! map and cannot be read as consent to route around it.
//!
//! Matching of spellings is ASCII case-insensitive and looks at the last
//! `/`-separated segment of the requested id and at each of its `.`-suffixes,
//! so an ARN of any resource type and any geography prefix are caught without
//! a list of known prefixes that would go stale.

use crate::config::TenantPolicy;
pub use crate::model_id::{canonical, foundation_model_id};

/// What `resolve` decided for one requested model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution<'a> {
    /// Not a spelling of any mapped model: forward as requested.
    Unmapped,
    /// Forward this model instead.
    Mapped(&'a str),
    /// A spelling of the mapped model `key` that the map does not cover.
    Denied { key: &'a str },
}

/// True when `requested` is some spelling of the model `key` (already
/// canonical): equal ignoring ASCII case, or with a `:suffix`, or behind
/// `.`-separated prefixes, in the last `/` segment or the whole string.
fn same_model(requested: &str, key: &str) -> bool {
    let covers = |cand: &str| {
        cand.len() >= key.len()
            && cand.as_bytes()[..key.len()].eq_ignore_ascii_case(key.as_bytes())
            && (cand.len() == key.len() || cand.as_bytes()[key.len()] == b':')
    };
    if covers(requested) {
        return true;
    }
    let tail = requested.rsplit('/').next().unwrap_or(requested);
    if covers(tail) {
        return true;
    }
    tail.match_indices('.').any(|(i, _)| covers(&tail[i + 1..]))
}

/// Resolves `requested` against the tenant's `model_map` (see the module
/// docs). `requested` has already passed the `models` allowlist.
pub fn resolve<'a>(policy: &'a TenantPolicy, requested: &str) -> Resolution<'a> {
    if policy.model_map.is_empty() {
        return Resolution::Unmapped;
    }
    let want = canonical(requested);
    // An exact key wins, in whichever spelling the key or the request uses.
    if let Some(v) = policy.model_map.get(requested) {
        return Resolution::Mapped(v);
    }
    if let Some((_, v)) = policy.model_map.iter().find(|(k, _)| canonical(k) == want) {
        return Resolution::Mapped(v);
    }
    let Some((key, _)) = policy.model_map.iter().find(|(k, _)| same_model(requested, canonical(k))) else {
        return Resolution::Unmapped;
    };
    let named = policy.models.iter().any(|g| !g.has_wildcards() && g.as_str() == requested);
    if named {
        Resolution::Unmapped
    } else {
        Resolution::Denied { key }
    }
}

/// `resolve` as the request pipeline needs it: the model to forward (the
/// requested one when unmapped), or 403 `model_not_allowed`.
pub fn upstream_model(
    policy: &TenantPolicy,
    principal: &crate::principal::Principal,
    requested: &str,
) -> Result<String, crate::error::ProxyError> {
    match resolve(policy, requested) {
        Resolution::Unmapped => Ok(requested.to_string()),
        Resolution::Mapped(m) => Ok(m.to_string()),
        Resolution::Denied { key } => {
            tracing::debug!(requested, key, "unmapped spelling of a mapped model");
            Err(crate::error::ProxyError::ModelNotAllowed {
                model: requested.to_string(),
                tenant: principal.tenant.clone(),
            })
        }
    }
}

#[cfg(test)]
#[path = "model_map_tests.rs"]
mod tests;
