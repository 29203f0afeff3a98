use super::*;
use serde_json::json;

fn principal() -> Principal {
    let mut p = Principal::static_tenant("acme");
    p.user = "alice".into();
    p.groups = vec!["eng".into(), "ops".into()];
    let claims = json!({
        "custom:plan": "gold",
        "org-id": 42,
        "admin": true,
        "roles": ["reader", "writer"],
        "nested": {"a": 1},
        "empty": "",
        "nothing": null,
        "mixed": ["x", {"y": 1}],
        "a.b": "dotted",
    });
    if let Value::Object(map) = claims {
        p.claims = map;
    }
    p
}

fn render(src: &str) -> Result<String, MissingClaim> {
    Template::compile(src).expect("valid template").render(&principal())
}

#[test]
fn renders_every_placeholder() {
    assert_eq!(render("{tenant}").as_deref(), Ok("acme"));
    assert_eq!(render("tenantgate-{tenant}-{user}").as_deref(), Ok("tenantgate-acme-alice"));
    assert_eq!(render("{groups}").as_deref(), Ok("eng,ops"));
    assert_eq!(render("plan={claims.custom:plan}").as_deref(), Ok("plan=gold"));
    assert_eq!(render("{claims.org-id}").as_deref(), Ok("42"));
    assert_eq!(render("{claims.admin}").as_deref(), Ok("true"));
    assert_eq!(render("r:{claims.roles}").as_deref(), Ok("r:reader,writer"));
    assert_eq!(render("{claims.a.b}").as_deref(), Ok("dotted"));
}

#[test]
fn literal_braces_are_escaped_by_doubling() {
    assert_eq!(render("{{tenant}}").as_deref(), Ok("{tenant}"));
    assert_eq!(render("{{{tenant}}}").as_deref(), Ok("{acme}"));
    let t = Template::compile("a{{b}}c").expect("valid");
    assert!(t.is_literal());
    assert_eq!(t.literals().collect::<String>(), "a{b}c");
}

#[test]
fn missing_or_unusable_claims_fail_closed() {
    for name in ["absent", "nested", "empty", "nothing", "mixed"] {
        assert_eq!(render(&format!("x-{{claims.{name}}}")), Err(MissingClaim(name.to_string())), "{name}");
        let t = Template::compile(&format!("{{claims.{name}}}")).expect("valid");
        assert_eq!(t.render_value(&principal()), Err(MissingClaim(name.to_string())));
    }
}

#[test]
fn static_principal_has_no_claims_but_renders_tenant_and_user() {
    let p = Principal::static_tenant("globex");
    let t = Template::compile("{tenant}/{user}/{groups}").expect("valid");
    assert_eq!(t.render(&p).as_deref(), Ok("globex/-/"));
    let c = Template::compile("{claims.sub}").expect("valid");
    assert_eq!(c.render(&p), Err(MissingClaim("sub".into())));
}

#[test]
fn render_value_gives_lists_only_for_a_lone_list_placeholder() {
    let p = principal();
    let v = |s: &str| Template::compile(s).expect("valid").render_value(&p);
    assert_eq!(v("{groups}"), Ok(json!(["eng", "ops"])));
    assert_eq!(v("{claims.roles}"), Ok(json!(["reader", "writer"])));
    assert_eq!(v("{claims.custom:plan}"), Ok(json!("gold")));
    assert_eq!(v("g={groups}"), Ok(json!("g=eng,ops")));
    assert_eq!(v("{tenant}"), Ok(json!("acme")));
    let empty = Principal::static_tenant("acme");
    assert_eq!(Template::compile("{groups}").expect("valid").render_value(&empty), Ok(json!([])));
}

#[test]
fn compile_errors_name_the_problem() {
    let err = |s: &str| Template::compile(s).expect_err(s);
    assert!(err("{tenat}").contains("unknown placeholder `{tenat}`"));
    assert!(err("s3://x/{tenant").contains("unclosed"));
    assert!(err("{claims.}").contains("names no claim"));
    assert!(err("a}b").contains("unmatched `}`"));
    assert!(err("{}").contains("unknown placeholder"));
    assert!(err("{ tenant }").contains("unknown placeholder"));
    assert!(err("{a{tenant}}").contains("unclosed"));
    assert!(err("{").contains("unclosed"));
}

#[test]
fn introspection() {
    let t = Template::compile("arn:{tenant}").expect("valid");
    assert_eq!(t.source(), "arn:{tenant}");
    assert!(!t.is_literal());
    assert!(!t.uses_user());
    for s in ["{user}", "{groups}", "x{claims.plan}"] {
        assert!(Template::compile(s).expect("valid").uses_user(), "{s}");
    }
    assert!(Template::compile("plain").expect("valid").is_literal());
    assert!(Template::compile("").expect("valid").is_literal());
    let c = Template::compile("{claims.a}{claims.b}").expect("valid");
    assert_eq!(c.claim_names().collect::<Vec<_>>(), vec!["a", "b"]);
    assert!(Template::compile("{groups}").expect("valid").is_single_list_placeholder());
    assert!(!Template::compile("x{groups}").expect("valid").is_single_list_placeholder());
}

#[test]
fn literal_constructor_never_interprets_braces() {
    let t = Template::literal("{tenant}");
    assert_eq!(t.render(&principal()).as_deref(), Ok("{tenant}"));
    assert_eq!(Template::compile(t.source()).expect("round trip").render(&principal()).as_deref(), Ok("{tenant}"));
}

#[test]
fn unicode_text_survives() {
    assert_eq!(render("ü-{tenant}-😀").as_deref(), Ok("ü-acme-😀"));
}

#[test]
fn json_document_templates_escape_substitutions() {
    let doc = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject",
        "Resource":"arn:aws:s3:::docs/{tenant}/{user}/*","Condition":{"n":1,"b":true,"z":null}}]}"#;
    let t = Template::compile_json_document(doc).expect("valid policy");
    assert!(t.uses_user());
    let mut p = principal();
    p.user = "evil\",\"Effect\":\"Allow".into();
    let out = t.render(&p).expect("renders");
    let v: Value = serde_json::from_str(&out).expect("still valid JSON");
    assert_eq!(v["Statement"][0]["Resource"], json!("arn:aws:s3:::docs/acme/evil\",\"Effect\":\"Allow/*"));
    assert_eq!(v["Statement"][0]["Effect"], json!("Allow"));
    assert_eq!(v["Statement"][0]["Condition"], json!({"n": 1, "b": true, "z": null}));
    assert_eq!(t.source(), doc);
}

#[test]
fn json_document_errors() {
    assert!(Template::compile_json_document("{not json").expect_err("bad").contains("invalid JSON"));
    let e = Template::compile_json_document(r#"{"a":[{"b":"{tenat}"}]}"#).expect_err("bad placeholder");
    assert!(e.contains("a[0].b"), "{e}");
    let lit = Template::compile_json_document(r#"{"k":"{{x}}"}"#).expect("escaped braces");
    assert!(lit.is_literal());
    let v: Value = serde_json::from_str(&lit.render(&principal()).expect("renders")).expect("json");
    assert_eq!(v, json!({"k": "{x}"}));
}

#[test]
fn json_template_renders_lists_and_precomputes_literals() {
    let filter = json!({"andAll": [
        {"in": {"key": "group", "value": "{groups}"}},
        {"equals": {"key": "plan", "value": "{claims.custom:plan}"}},
        {"greaterThan": {"key": "n", "value": 3}}
    ]});
    let t = JsonTemplate::compile(&filter).expect("valid");
    assert!(t.uses_user());
    assert_eq!(
        t.render(&principal()),
        Ok(json!({"andAll": [
            {"in": {"key": "group", "value": ["eng", "ops"]}},
            {"equals": {"key": "plan", "value": "gold"}},
            {"greaterThan": {"key": "n", "value": 3}}
        ]}))
    );
    let lit = JsonTemplate::compile(&json!({"equals": {"key": "k", "value": "{{v}}"}})).expect("valid");
    assert_eq!(lit.as_literal(), Some(&json!({"equals": {"key": "k", "value": "{v}"}})));
    assert!(!lit.uses_user());
    let missing = JsonTemplate::compile(&json!({"equals": {"key": "k", "value": "{claims.nope}"}})).expect("valid");
    assert_eq!(missing.render(&principal()), Err(MissingClaim("nope".into())));
}

#[test]
fn json_template_errors_name_the_path() {
    let e = JsonTemplate::compile(&json!({"in": {"key": "g", "value": ["ok", "{grups}"]}})).expect_err("bad");
    assert!(e.starts_with("in.value[1]: "), "{e}");
}

#[test]
fn never_panics_on_odd_input() {
    for s in ["{", "}", "{{", "}}", "{{{", "}}}", "{claims.", "{claims.}}", "é{", "{é}", "\u{0}{tenant}", "{}}"] {
        if let Ok(t) = Template::compile(s) {
            let _ = t.render(&principal());
            let _ = t.render_value(&principal());
        }
    }
}

#[test]
fn uses_tenant_only_for_the_tenant_placeholder() {
    for (src, want) in [("role/t-{tenant}", true), ("{tenant}", true), ("role/{user}", false), ("role/x", false), ("{{tenant}}", false)] {
        assert_eq!(Template::compile(src).expect("valid").uses_tenant(), want, "{src}");
    }
}
