//! Bedrock runtime rewrites (SPEC §5.1, after the model allowlist):
//! the tenant's guardrail is forced into every model call, and
//! `request_metadata` templates are set in Converse `requestMetadata`, so
//! invocation logs attribute every call to its tenant.
//!
//! Converse / ConverseStream, before and after (tenant acme, user alice,
//! `guardrail = { id = "gr-acme", version = "1" }`,
//! `request_metadata = { tenant = "{tenant}", user = "{user}" }`):
//!
//! ```text
//! {"messages":[..],"guardrailConfig":{"guardrailIdentifier":"gr-other","guardrailVersion":"7","trace":"enabled"},
//!  "requestMetadata":{"tenant":"globex","feature":"chat"}}
//! ->
//! {"messages":[..],"guardrailConfig":{"guardrailIdentifier":"gr-acme","guardrailVersion":"1","trace":"enabled"},
//!  "requestMetadata":{"tenant":"acme","feature":"chat","user":"alice"}}
//! ```
//!
//! InvokeModel and its stream: `X-Amzn-Bedrock-GuardrailIdentifier: gr-acme`
//! and `X-Amzn-Bedrock-GuardrailVersion: 1` replace whatever the client sent;
//! the body is never parsed (it is model-specific) and goes byte for byte.

use super::{body_object, child_object, missing_claim, parse_json_body};
use crate::config::TenantPolicy;
use crate::error::ProxyError;
use crate::principal::Principal;
use crate::route::Operation;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::Value;

/// Rewrite one Bedrock runtime model call. Returns the body to send (the
/// original bytes when nothing in it had to change).
pub fn rewrite_model_call(
    op: Operation,
    body: Bytes,
    headers: &mut HeaderMap,
    principal: &Principal,
    policy: &TenantPolicy,
) -> Result<Bytes, ProxyError> {
    match op {
        Operation::Converse | Operation::ConverseStream => {
            if policy.guardrail.is_none() && policy.request_metadata.is_empty() {
                return Ok(body);
            }
            let mut v = parse_json_body(&body)?;
            rewrite_converse(&mut v, principal, policy)?;
            serde_json::to_vec(&v)
                .map(Bytes::from)
                .map_err(|e| ProxyError::InvalidJson(e.to_string()))
        }
        Operation::InvokeModel | Operation::InvokeModelWithResponseStream => {
            if let Some(g) = &policy.guardrail {
                let id = HeaderValue::from_str(&g.id)
                    .map_err(|_| ProxyError::InvalidParameter("guardrail id is not a valid header value".into()))?;
                let ver = HeaderValue::from_str(&g.version)
                    .map_err(|_| ProxyError::InvalidParameter("guardrail version is not a valid header value".into()))?;
                headers.insert("x-amzn-bedrock-guardrailidentifier", id);
                headers.insert("x-amzn-bedrock-guardrailversion", ver);
            }
            Ok(body)
        }
        _ => Ok(body),
    }
}

fn rewrite_converse(v: &mut Value, principal: &Principal, policy: &TenantPolicy) -> Result<(), ProxyError> {
    let obj = body_object(v)?;
    if let Some(g) = &policy.guardrail {
        let gc = child_object(obj, "guardrailConfig", "guardrailConfig")?;
        gc.insert("guardrailIdentifier".into(), Value::String(g.id.clone()));
        gc.insert("guardrailVersion".into(), Value::String(g.version.clone()));
    }
    if !policy.request_metadata.is_empty() {
        // Render everything first: a missing claim must leave nothing half-done.
        let mut rendered = Vec::with_capacity(policy.request_metadata.len());
        for (k, t) in &policy.request_metadata {
            rendered.push((k.clone(), t.render(principal).map_err(missing_claim)?));
        }
        let md = child_object(obj, "requestMetadata", "requestMetadata")?;
        for (k, val) in rendered {
            md.insert(k, Value::String(val));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Guardrail;
    use crate::template::Template;
    use serde_json::json;

    fn policy(guardrail: bool, md: &[(&str, &str)]) -> TenantPolicy {
        let cfg = crate::config::parse_str(
            "[aws]\nregion='us-east-1'\n[identity]\nmode='static'\ntenant='acme'\n[credentials]\nsource='static'\n[tenants.acme.static_credentials]\naccess_key_id_env='A'\nsecret_access_key_env='B'\n",
            std::path::Path::new("."),
        )
        .unwrap();
        let mut p = (**cfg.tenants.get("acme").unwrap()).clone();
        p.guardrail = guardrail.then(|| Guardrail { id: "gr-acme".into(), version: "1".into() });
        p.request_metadata = md.iter().map(|(k, t)| (k.to_string(), Template::compile(t).unwrap())).collect();
        p
    }

    fn alice() -> Principal {
        let mut p = Principal::static_tenant("acme");
        p.user = "alice".into();
        p
    }

    fn converse(body: Value, p: &TenantPolicy) -> Result<Value, ProxyError> {
        let out = rewrite_model_call(Operation::Converse, Bytes::from(body.to_string()), &mut HeaderMap::new(), &alice(), p)?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn client_guardrail_is_replaced_and_other_fields_kept() {
        let p = policy(true, &[]);
        let out = converse(
            json!({"messages": [{"role": "user"}], "guardrailConfig": {"guardrailIdentifier": "gr-other", "guardrailVersion": "7", "trace": "enabled"}}),
            &p,
        )
        .unwrap();
        assert_eq!(out["guardrailConfig"], json!({"guardrailIdentifier": "gr-acme", "guardrailVersion": "1", "trace": "enabled"}));
        assert_eq!(out["messages"], json!([{"role": "user"}]));
    }

    #[test]
    fn request_metadata_overwrites_same_keys_and_keeps_others() {
        let p = policy(false, &[("tenant", "{tenant}"), ("user", "{user}")]);
        let out = converse(json!({"requestMetadata": {"tenant": "globex", "feature": "chat"}}), &p).unwrap();
        assert_eq!(out["requestMetadata"], json!({"tenant": "acme", "user": "alice", "feature": "chat"}));
        assert!(out.get("guardrailConfig").is_none());
    }

    #[test]
    fn missing_claim_is_403_and_nothing_is_returned() {
        let p = policy(true, &[("plan", "{claims.custom:plan}")]);
        let e = converse(json!({}), &p).unwrap_err();
        assert_eq!(e.reason(), "missing_claim");
    }

    #[test]
    fn without_rewrites_the_body_is_forwarded_byte_for_byte() {
        let p = policy(false, &[]);
        let raw = Bytes::from_static(b"{ \"messages\" : [] ,\"x\":1}");
        let out = rewrite_model_call(Operation::Converse, raw.clone(), &mut HeaderMap::new(), &alice(), &p).unwrap();
        assert_eq!(out, raw);
    }

    #[test]
    fn invoke_model_gets_guardrail_headers_and_untouched_body() {
        let p = policy(true, &[]);
        let mut h = HeaderMap::new();
        h.insert("x-amzn-bedrock-guardrailidentifier", HeaderValue::from_static("gr-other"));
        let raw = Bytes::from_static(b"not json at all");
        let out = rewrite_model_call(Operation::InvokeModel, raw.clone(), &mut h, &alice(), &p).unwrap();
        assert_eq!(out, raw);
        assert_eq!(h["x-amzn-bedrock-guardrailidentifier"], "gr-acme");
        assert_eq!(h["x-amzn-bedrock-guardrailversion"], "1");
        assert_eq!(h.get_all("x-amzn-bedrock-guardrailidentifier").iter().count(), 1);
    }

    #[test]
    fn malformed_converse_body_is_400_when_it_must_be_rewritten() {
        let p = policy(true, &[]);
        let e = rewrite_model_call(Operation::Converse, Bytes::from_static(b"{"), &mut HeaderMap::new(), &alice(), &p).unwrap_err();
        assert_eq!(e.reason(), "invalid_json");
        let e = converse(json!({"guardrailConfig": "x"}), &p).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter");
    }
}
