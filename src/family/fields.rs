//! JSON helpers shared by the family modules: typed access to body members
//! with errors that name their path, and binding a model named in a body.

use super::Ctx;
use crate::decide::Resource;
use crate::error::ProxyError;
use crate::template::MissingClaim;
use serde_json::{Map, Value};

/// Parses a request body that the rewrite functions will inspect. An empty
/// (or all-whitespace) body is `{}`, as AWS SDKs may send no body when every
/// member is unset; anything else must be a JSON object (400 `invalid_json`).
pub fn parse_json_body(bytes: &[u8]) -> Result<Value, ProxyError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Object(Map::new()));
    }
    let v: Value = serde_json::from_slice(bytes).map_err(|e| ProxyError::InvalidJson(e.to_string()))?;
    if !v.is_object() {
        return Err(ProxyError::InvalidJson("the request body must be a JSON object".into()));
    }
    Ok(v)
}

pub(crate) fn missing_claim(e: MissingClaim) -> ProxyError {
    ProxyError::MissingClaim(e.0)
}

/// The body as an object, or 400 `invalid_json`.
pub(crate) fn body_object(body: &mut Value) -> Result<&mut Map<String, Value>, ProxyError> {
    body.as_object_mut().ok_or_else(|| ProxyError::InvalidJson("the request body must be a JSON object".into()))
}

/// `map[key]` as an object, created when absent or `null`; any other type is
/// 400 `invalid_parameter` naming `path`.
pub(crate) fn child_object<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut Map<String, Value>, ProxyError> {
    let slot = map.entry(key.to_string()).or_insert(Value::Null);
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().ok_or_else(|| ProxyError::InvalidParameter(format!("{path} must be an object")))
}

/// `map[key]` as an existing object: `Ok(None)` when absent or `null`, 400
/// `invalid_parameter` when of another type.
pub(crate) fn opt_object<'a>(
    map: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a mut Map<String, Value>>, ProxyError> {
    match map.get_mut(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(ProxyError::InvalidParameter(format!("{path} must be an object"))),
    }
}

/// `map[key]` as a string: `Ok(None)` when absent or `null`, 400
/// `invalid_parameter` when of another type.
pub(crate) fn opt_str<'a>(map: &'a Map<String, Value>, key: &str, path: &str) -> Result<Option<&'a str>, ProxyError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ProxyError::InvalidParameter(format!("{path} must be a string"))),
    }
}

/// Checks one model id found in a request body against the tenant's `models`
/// globs (docs/reference.md §5.1, decided by `decide::check`), then resolves it through
/// `model_map` (`model_map::upstream_model`). Returns the model to forward.
fn check_model(ctx: &Ctx<'_>, model: &str) -> Result<String, ProxyError> {
    ctx.decide(Resource::Model(model))?;
    crate::decide::model_map::upstream_model(ctx.policy, ctx.principal, model)
}

/// The model id string at `map[key]` (required; `path` names it in errors),
/// checked and resolved by `check_model` and replaced in place by the model
/// to forward. Returns the id the client asked for.
pub(crate) fn bind_model(
    map: &mut Map<String, Value>,
    key: &str,
    path: &str,
    ctx: &Ctx<'_>,
) -> Result<String, ProxyError> {
    let requested = opt_str(map, key, path)?
        .ok_or_else(|| ProxyError::InvalidParameter(format!("{path} is required")))?
        .to_string();
    let upstream = check_model(ctx, &requested)?;
    if upstream != requested {
        map.insert(key.to_string(), Value::String(upstream));
    }
    Ok(requested)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_body_is_an_empty_object() {
        assert_eq!(parse_json_body(b"").unwrap(), serde_json::json!({}));
        assert_eq!(parse_json_body(b" \n").unwrap(), serde_json::json!({}));
    }

    #[test]
    fn non_object_or_broken_body_is_invalid_json() {
        for b in [&b"[1]"[..], b"\"x\"", b"{", b"null", b"\xff"] {
            assert_eq!(parse_json_body(b).unwrap_err().reason(), "invalid_json", "{b:?}");
        }
    }

    #[test]
    fn child_object_replaces_null_and_rejects_other_types() {
        let mut m = serde_json::json!({"a": null, "b": 1}).as_object().unwrap().clone();
        assert!(child_object(&mut m, "a", "a").unwrap().is_empty());
        assert!(child_object(&mut m, "new", "new").unwrap().is_empty());
        assert_eq!(child_object(&mut m, "b", "b").unwrap_err().reason(), "invalid_parameter");
    }
}
