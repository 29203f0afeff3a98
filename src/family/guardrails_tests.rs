use super::*;
use crate::config::TenantPolicy;
use crate::session::SessionKeys;
use crate::test_support::*;
use serde_json::json;

fn keys() -> SessionKeys {
    SessionKeys::new(b"guardrail-tests-guardrail-tests-")
}

fn with_checks(allowed: &[&str]) -> TenantPolicy {
    let mut p = policy();
    p.guardrail_checks.allowed = allowed.iter().map(|s| s.to_string()).collect();
    p
}

fn kinds(policy: &TenantPolicy, checks: Value) -> Result<u8, ProxyError> {
    let (who, keys) = (alice(), keys());
    check_kinds(&Ctx::new(Operation::InvokeGuardrailChecks, &who, policy, &keys), Some(&checks))
}

#[test]
fn allowed_kinds_pass_as_bits() {
    let p = with_checks(&["contentFilter", "sensitiveInformation"]);
    let bits = kinds(&p, json!({"contentFilter": {"categories": []}, "sensitiveInformation": {"entities": []}})).unwrap();
    assert_eq!(crate::decide::cedar::guardrail_check_kinds(bits), ["contentFilter", "sensitiveInformation"]);
}

#[test]
fn a_kind_outside_the_allowlist_is_guardrail_not_allowed() {
    let p = with_checks(&["contentFilter"]);
    let e = kinds(&p, json!({"contentFilter": {"categories": []}, "promptAttack": {"categories": []}})).unwrap_err();
    assert_eq!(e.reason(), "guardrail_not_allowed");
    assert!(e.to_string().contains("promptAttack"), "{e}");
}

#[test]
fn without_guardrail_checks_the_operation_is_refused() {
    let p = with_checks(&[]);
    let e = kinds(&p, json!({"contentFilter": {"categories": []}})).unwrap_err();
    assert_eq!(e.reason(), "operation_not_allowed");
    let (who, keys) = (alice(), keys());
    let ctx = Ctx::new(Operation::InvokeGuardrailChecks, &who, &p, &keys);
    assert_eq!(Guardrails::authorize(&ctx, &Target::Nothing).unwrap_err().reason(), "operation_not_allowed");
}

#[test]
fn malformed_checks_are_400() {
    let p = with_checks(&["contentFilter", "promptAttack", "sensitiveInformation"]);
    for bad in [json!({}), json!([]), json!({"ContentFilter": {}}), json!({"contentFilter": "all"}), json!("x")] {
        assert_eq!(kinds(&p, bad.clone()).unwrap_err().reason(), "invalid_parameter", "{bad}");
    }
    let (who, keys) = (alice(), keys());
    let e = check_kinds(&Ctx::new(Operation::InvokeGuardrailChecks, &who, &p, &keys), None).unwrap_err();
    assert_eq!(e.reason(), "invalid_parameter");
}
