use super::*;
use crate::test_support::*;

fn reason(r: Result<(), ProxyError>) -> &'static str {
    r.unwrap_err().reason()
}

#[test]
fn every_known_operator_validates() {
    for op in COMPARISON_OPERATORS {
        let f = json!({ *op: {"key": "k", "value": ["v"]} });
        validate_filter(&f, "filter").unwrap_or_else(|e| panic!("{op}: {e}"));
    }
    for op in LOGICAL_OPERATORS {
        let f = json!({ *op: [{"equals": {"key": "a", "value": 1}}, {"startsWith": {"key": "b", "value": "x"}}] });
        validate_filter(&f, "filter").unwrap();
    }
}

#[test]
fn malformed_client_filters_are_invalid_parameter() {
    let cases = [
        json!(null),
        json!("equals"),
        json!([]),
        json!({}),
        json!({"equals": {"key": "a", "value": 1}, "notEquals": {"key": "a", "value": 2}}),
        json!({"matchAll": {"key": "a", "value": 1}}),
        json!({"equals": "tenant_id"}),
        json!({"equals": {"key": "a"}}),
        json!({"equals": {"value": 1}}),
        json!({"equals": {"key": "", "value": 1}}),
        json!({"equals": {"key": 7, "value": 1}}),
        json!({"equals": {"key": "a", "value": null}}),
        json!({"equals": {"key": "a", "value": 1, "extra": true}}),
        json!({"andAll": []}),
        json!({"andAll": [{"equals": {"key": "a", "value": 1}}]}),
        json!({"orAll": {"equals": {"key": "a", "value": 1}}}),
        json!({"orAll": [{"equals": {"key": "a", "value": 1}}, {"bogus": {}}]}),
        json!({"orAll": [{"equals": {"key": "a", "value": 1}}, 5]}),
    ];
    for c in cases {
        assert_eq!(reason(validate_filter(&c, "filter")), "invalid_parameter", "{c}");
    }
}

#[test]
fn deeply_nested_filters_are_rejected_without_overflowing() {
    let mut f = json!({"equals": {"key": "a", "value": 1}});
    for _ in 0..200 {
        f = json!({"orAll": [f, {"equals": {"key": "b", "value": 2}}]});
    }
    assert_eq!(reason(validate_filter(&f, "filter")), "invalid_parameter");
    let mut ok = json!({"equals": {"key": "a", "value": 1}});
    for _ in 0..MAX_FILTER_DEPTH {
        ok = json!({"andAll": [ok, {"equals": {"key": "b", "value": 2}}]});
    }
    validate_filter(&ok, "filter").unwrap();
}

#[test]
fn tenant_clause_alone_when_nothing_else() {
    assert_eq!(compose(acme_clause(), vec![], None), acme_clause());
}

#[test]
fn order_is_tenant_then_extras_then_client() {
    let client = json!({"equals": {"key": "year", "value": 2024}});
    let f = compose(acme_clause(), vec![groups_clause()], Some(client.clone()));
    assert_eq!(f, json!({"andAll": [acme_clause(), groups_clause(), client]}));
}

#[test]
fn client_and_all_is_flattened() {
    let a = json!({"equals": {"key": "x", "value": 1}});
    let b = json!({"equals": {"key": "y", "value": 2}});
    let f = compose(acme_clause(), vec![], Some(json!({"andAll": [a, b]})));
    assert_eq!(f, json!({"andAll": [acme_clause(), a, b]}));
}

#[test]
fn client_or_all_naming_another_tenant_is_still_anded_with_the_tenant_clause() {
    let evil = json!({"orAll": [
        {"equals": {"key": "tenant_id", "value": "globex"}},
        {"notEquals": {"key": "tenant_id", "value": "acme"}},
    ]});
    let f = forced_filter(&policy_without_extras(), &alice(), Some(evil.clone()), "filter").unwrap();
    assert_eq!(f, json!({"andAll": [acme_clause(), evil]}));
}

#[test]
fn client_equals_on_the_tenant_key_cannot_replace_the_tenant_clause() {
    let evil = json!({"equals": {"key": "tenant_id", "value": "globex"}});
    let f = forced_filter(&policy_without_extras(), &alice(), Some(evil.clone()), "filter").unwrap();
    assert_eq!(f["andAll"][0], acme_clause());
    assert_eq!(f["andAll"][1], evil);
}

#[test]
fn null_client_filter_is_absent() {
    let f = forced_filter(&policy_without_extras(), &alice(), Some(Value::Null), "filter").unwrap();
    assert_eq!(f, acme_clause());
}

#[test]
fn extra_filters_render_groups_as_a_list() {
    let f = forced_filter(&policy(), &alice(), None, "filter").unwrap();
    assert_eq!(f, json!({"andAll": [acme_clause(), groups_clause()]}));
}

#[test]
fn empty_groups_in_filter_matches_nothing_instead_of_in_empty_list() {
    let mut p = alice();
    p.groups.clear();
    let f = forced_filter(&policy(), &p, None, "filter").unwrap();
    assert_eq!(f, json!({"andAll": [acme_clause(), unsatisfiable("group")]}));
    assert!(!f.to_string().contains("[]"), "{f}");
}

#[test]
fn empty_in_nested_in_or_all_is_replaced_too() {
    let f = replace_empty_in(json!({"orAll": [
        {"in": {"key": "g", "value": []}},
        {"equals": {"key": "public", "value": true}},
    ]}));
    assert_eq!(f["orAll"][0], unsatisfiable("g"));
    assert_eq!(f["orAll"][1], json!({"equals": {"key": "public", "value": true}}));
}

#[test]
fn extra_filter_naming_a_missing_claim_is_missing_claim() {
    let mut pol = policy();
    pol.knowledge_base.extra_filters =
        vec![crate::template::JsonTemplate::compile(&json!({"equals": {"key": "plan", "value": "{claims.tier}"}}))
            .unwrap()];
    let e = forced_filter(&pol, &alice(), None, "filter").unwrap_err();
    assert_eq!(e, ProxyError::MissingClaim("tier".into()));
}

#[test]
fn invalid_client_filter_is_rejected_before_composition() {
    let e = forced_filter(&policy(), &alice(), Some(json!({"or": []})), "x.filter").unwrap_err();
    assert_eq!(e.reason(), "invalid_parameter");
    assert!(e.message().contains("x.filter"), "{}", e.message());
}
