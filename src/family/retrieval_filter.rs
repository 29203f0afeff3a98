//! Bedrock `RetrievalFilter` objects (docs/reference.md §5.2): validation of the filter a
//! client sends, and composition of the filter tenantgate forces:
//!
//! ```text
//! {"andAll": [ {"equals": {"key": FILTER_KEY, "value": TENANT}},
//!              ...rendered extra_filters,
//!              CLIENT_FILTER ]}
//! ```
//!
//! A client `andAll` is flattened into the outer list; any other client
//! filter (including an `orAll`) is one member, so it can only narrow the
//! result, never widen it. With a single member (no extra filters and no
//! client filter) the filter is that member alone, since Bedrock requires an
//! `andAll` to have at least two.
//!
//! Empty lists in configured filters: `in` with an empty list (e.g.
//! `{groups}` for a token without groups) means "matches nothing", which is
//! the right answer, but Bedrock may reject `"in": {"value": []}`. It is
//! therefore replaced by an equivalent filter Bedrock accepts and that no
//! chunk can satisfy:
//! `{"andAll": [{"equals": {"key": K, "value": "tenantgate:none"}},
//!              {"notEquals": {"key": K, "value": "tenantgate:none"}}]}`
//! (`equals` needs the key present with that value, `notEquals` matches
//! everything else, so their conjunction is empty whatever the data). A
//! `notIn` with an empty list ("excludes nothing") is forwarded as rendered;
//! if Bedrock rejects it the request fails, which leaks nothing.

use crate::config::TenantPolicy;
use crate::error::ProxyError;
use crate::principal::Principal;
use serde_json::{json, Map, Value};

pub use crate::config::{COMPARISON_OPERATORS, LOGICAL_OPERATORS};
/// Deepest nesting of `andAll`/`orAll` accepted from a client.
pub const MAX_FILTER_DEPTH: usize = 16;

const NONE_SENTINEL: &str = "tenantgate:none";

/// Checks that `filter` (found at `path`) is a well-formed `RetrievalFilter`:
/// an object with exactly one known operator; a comparison's operand is an
/// object with exactly a non-empty string `key` and a non-null `value`; a
/// logical operator's operand is an array of at least two valid filters,
/// nested at most `MAX_FILTER_DEPTH` deep. Anything else is 400
/// `invalid_parameter`.
pub fn validate_filter(filter: &Value, path: &str) -> Result<(), ProxyError> {
    validate_at(filter, path, 0)
}

fn invalid(path: &str, what: &str) -> ProxyError {
    ProxyError::InvalidParameter(format!("{path}: {what}"))
}

fn validate_at(filter: &Value, path: &str, depth: usize) -> Result<(), ProxyError> {
    if depth > MAX_FILTER_DEPTH {
        return Err(invalid(path, &format!("filter nested deeper than {MAX_FILTER_DEPTH} levels")));
    }
    let Some(map) = filter.as_object() else {
        return Err(invalid(path, "a filter must be an object"));
    };
    let mut entries = map.iter();
    let (op, operand) = match (entries.next(), entries.next()) {
        (Some(e), None) => e,
        (None, _) => return Err(invalid(path, "a filter must name one operator")),
        (Some(_), Some(_)) => return Err(invalid(path, "a filter must name exactly one operator")),
    };
    let here = format!("{path}.{op}");
    if COMPARISON_OPERATORS.contains(&op.as_str()) {
        let Some(attr) = operand.as_object() else {
            return Err(invalid(&here, "must be an object with `key` and `value`"));
        };
        if attr.len() != 2 {
            return Err(invalid(&here, "must have exactly `key` and `value`"));
        }
        match attr.get("key") {
            Some(Value::String(k)) if !k.is_empty() => {}
            _ => return Err(invalid(&here, "`key` must be a non-empty string")),
        }
        match attr.get("value") {
            Some(v) if !v.is_null() => Ok(()),
            _ => Err(invalid(&here, "`value` is required")),
        }
    } else if LOGICAL_OPERATORS.contains(&op.as_str()) {
        let Some(items) = operand.as_array() else {
            return Err(invalid(&here, "must be an array of filters"));
        };
        if items.len() < 2 {
            return Err(invalid(&here, "must hold at least two filters"));
        }
        for (i, item) in items.iter().enumerate() {
            validate_at(item, &format!("{here}[{i}]"), depth + 1)?;
        }
        Ok(())
    } else {
        Err(invalid(path, &format!("unknown filter operator `{op}`")))
    }
}

/// `{"equals": {"key": filter_key, "value": tenant}}`.
pub fn tenant_clause(filter_key: &str, tenant: &str) -> Value {
    json!({"equals": {"key": filter_key, "value": tenant}})
}

/// The configured `extra_filters`, rendered for this principal, with empty
/// `in` lists made explicitly unsatisfiable (see the module doc). A template
/// naming an absent claim is 403 `missing_claim`.
pub fn render_extra_filters(policy: &TenantPolicy, principal: &Principal) -> Result<Vec<Value>, ProxyError> {
    policy
        .knowledge_base
        .extra_filters
        .iter()
        .map(|t| t.render(principal).map(replace_empty_in).map_err(super::missing_claim))
        .collect()
}

fn replace_empty_in(mut filter: Value) -> Value {
    replace_empty_in_at(&mut filter, 0);
    filter
}

fn replace_empty_in_at(filter: &mut Value, depth: usize) {
    if depth > MAX_FILTER_DEPTH {
        return;
    }
    let Some(map) = filter.as_object_mut() else { return };
    let empty_in_key = match map.get("in") {
        Some(Value::Object(attr)) if map.len() == 1 => match (attr.get("key"), attr.get("value")) {
            (Some(Value::String(k)), Some(Value::Array(v))) if v.is_empty() => Some(k.clone()),
            _ => None,
        },
        _ => None,
    };
    if let Some(key) = empty_in_key {
        *filter = unsatisfiable(&key);
        return;
    }
    for op in LOGICAL_OPERATORS {
        if let Some(Value::Array(items)) = map.get_mut(*op) {
            for item in items {
                replace_empty_in_at(item, depth + 1);
            }
        }
    }
}

/// A filter no chunk satisfies, on `key`.
pub fn unsatisfiable(key: &str) -> Value {
    json!({"andAll": [
        {"equals": {"key": key, "value": NONE_SENTINEL}},
        {"notEquals": {"key": key, "value": NONE_SENTINEL}},
    ]})
}

/// Composes the forced filter from its parts, in order: the tenant clause,
/// the extra filters, then the client's filter (an `andAll` flattened).
pub fn compose(tenant: Value, extras: Vec<Value>, client: Option<Value>) -> Value {
    let mut members = Vec::with_capacity(2 + extras.len());
    members.push(tenant);
    members.extend(extras);
    match client {
        Some(Value::Object(mut m)) if m.len() == 1 && matches!(m.get("andAll"), Some(Value::Array(_))) => {
            if let Some(Value::Array(items)) = m.remove("andAll") {
                members.extend(items);
            }
        }
        Some(other) => members.push(other),
        None => {}
    }
    if members.len() == 1 {
        members.pop().unwrap_or(Value::Null)
    } else {
        let mut m = Map::new();
        m.insert("andAll".into(), Value::Array(members));
        Value::Object(m)
    }
}

/// The filter to send for this principal, given the client's filter (taken
/// out of the request; `None` when absent or `null`). The client filter is
/// validated first (400 `invalid_parameter`).
pub fn forced_filter(
    policy: &TenantPolicy,
    principal: &Principal,
    client: Option<Value>,
    path: &str,
) -> Result<Value, ProxyError> {
    let client = client.filter(|v| !v.is_null());
    if let Some(c) = &client {
        validate_filter(c, path)?;
    }
    let extras = render_extra_filters(policy, principal)?;
    Ok(compose(tenant_clause(&policy.knowledge_base.filter_key, &principal.tenant), extras, client))
}

#[cfg(test)]
#[path = "retrieval_filter_tests.rs"]
mod tests;
