use super::*;
use crate::route::Operation;
use crate::session::SessionKeys;
use crate::test_support::{alice, policy};
use serde_json::json;

fn keys() -> SessionKeys {
    SessionKeys::new(b"0123456789abcdef0123456789abcdef")
}

fn body(v: Value) -> RequestBody {
    let bytes = Bytes::from(serde_json::to_vec(&v).unwrap());
    let json = crate::validate::validate_body(Operation::ChatCompletions, &bytes, Default::default()).unwrap();
    RequestBody { bytes, json }
}

#[test]
fn allowed_model_is_mapped_and_the_body_forwarded_as_judged() {
    let (who, mut p, k) = (alice(), policy(), keys());
    p.models = vec![crate::glob::Glob::new("openai.gpt-oss-*").unwrap()];
    p.model_map = [(
        "openai.gpt-oss-20b-1:0".to_string(),
        "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-oss".to_string(),
    )]
    .into_iter()
    .collect();
    let ctx = Ctx::new(Operation::ChatCompletions, &who, &p, &k);
    let mut h = HeaderMap::new();
    let mut notes = Notes::default();
    let out = rewrite(&ctx, &mut h, body(json!({"model": "openai.gpt-oss-20b-1:0", "messages": [], "n": 1})), &mut notes).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["model"], "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-oss");
    assert_eq!(v["n"], 1);
    assert_eq!(notes.resource.as_deref(), Some("openai.gpt-oss-20b-1:0"));
    assert!(notes.upstream_resource.is_some());
    assert!(h.is_empty());
}

#[test]
fn a_model_outside_the_allowlist_is_refused() {
    let (who, mut p, k) = (alice(), policy(), keys());
    p.models = vec![crate::glob::Glob::new("openai.gpt-oss-*").unwrap()];
    let ctx = Ctx::new(Operation::ChatCompletions, &who, &p, &k);
    let e = rewrite(&ctx, &mut HeaderMap::new(), body(json!({"model": "deepseek.v3-v1:0", "messages": []})), &mut Notes::default()).unwrap_err();
    assert_eq!(e.reason(), "model_not_allowed");
}

#[test]
fn the_guardrail_is_bound_in_headers_and_tags_need_allow_guard_content() {
    let (who, mut p, k) = (alice(), policy(), keys());
    p.models = vec![crate::glob::Glob::new("*").unwrap()];
    p.guardrail = Some(crate::config::Guardrail::new("gr-acme", "3"));
    let ctx = Ctx::new(Operation::ChatCompletions, &who, &p, &k);
    let mut h = HeaderMap::new();
    rewrite(&ctx, &mut h, body(json!({"model": "m", "messages": []})), &mut Notes::default()).unwrap();
    assert_eq!(h[crate::aws::headers::GUARDRAIL_IDENTIFIER], "gr-acme");
    assert_eq!(h[crate::aws::headers::GUARDRAIL_VERSION], "3");
    for cfg in [json!({"tagSuffix": "x"}), json!({"other": 1}), json!("x")] {
        let e = rewrite(&ctx, &mut HeaderMap::new(), body(json!({"model": "m", "messages": [], "amazon-bedrock-guardrailConfig": cfg})), &mut Notes::default())
            .unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{cfg}");
    }
    p.guardrail.as_mut().unwrap().allow_guard_content = true;
    let ctx = Ctx::new(Operation::ChatCompletions, &who, &p, &k);
    rewrite(&ctx, &mut HeaderMap::new(), body(json!({"model": "m", "messages": [], "amazon-bedrock-guardrailConfig": {"tagSuffix": "x"}})), &mut Notes::default()).unwrap();
    // Without a tenant guardrail the member configures nothing: refused.
    p.guardrail = None;
    let ctx = Ctx::new(Operation::ChatCompletions, &who, &p, &k);
    let e = rewrite(&ctx, &mut HeaderMap::new(), body(json!({"model": "m", "messages": [], "amazon-bedrock-guardrailConfig": {}})), &mut Notes::default()).unwrap_err();
    assert_eq!(e.reason(), "invalid_parameter");
}

#[test]
fn streams_of_a_tenant_with_a_token_budget_report_usage() {
    let (who, mut p, k) = (alice(), policy(), keys());
    p.models = vec![crate::glob::Glob::new("*").unwrap()];
    p.rate_limit.tokens_per_minute = 1000;
    let ctx = Ctx::new(Operation::ChatCompletions, &who, &p, &k);
    let run = |b: Value| -> Value {
        serde_json::from_slice(&rewrite(&ctx, &mut HeaderMap::new(), body(b), &mut Notes::default()).unwrap()).unwrap()
    };
    let v = run(json!({"model": "m", "messages": [], "stream": true}));
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
    let v = run(json!({"model": "m", "messages": [], "stream": true, "stream_options": {"include_usage": false}}));
    assert_eq!(v["stream_options"], json!({"include_usage": true}));
    let v = run(json!({"model": "m", "messages": [], "stream": false}));
    assert!(v.get("stream_options").is_none());
    p.rate_limit.tokens_per_minute = 0;
    let ctx = Ctx::new(Operation::ChatCompletions, &who, &p, &k);
    let out = rewrite(&ctx, &mut HeaderMap::new(), body(json!({"model": "m", "messages": [], "stream": true})), &mut Notes::default()).unwrap();
    assert!(serde_json::from_slice::<Value>(&out).unwrap().get("stream_options").is_none());
}

#[test]
fn hostile_bodies_are_refused_by_the_validator() {
    let check = |b: &[u8]| crate::validate::validate_body(Operation::ChatCompletions, &Bytes::copy_from_slice(b), Default::default());
    for b in [
        &br#"{"model":"a","model":"b","messages":[]}"#[..],
        br#"{"model":"a","mod\u0065l":"b","messages":[]}"#,
        br#"{"Model":"b","messages":[]}"#,
        br#"{"model":"a","Model":"b","messages":[]}"#,
        br#"{"model":"a","MESSAGES":[],"messages":[]}"#,
        br#"{"model":["a"],"messages":[]}"#,
        br#"{"model":null,"messages":[]}"#,
        br#"{"model":7,"messages":[]}"#,
        br#"{"messages":[]}"#,
        br#"{"model":"a"}"#,
        br#"{"model":"a","messages":{}}"#,
        br#"{"model":"a","messages":[],"stream":"true"}"#,
        br#"{"model":"a","messages":[],"Stream":true}"#,
        br#"{"model":"a","messages":[],"stream_options":[]}"#,
        br#"{"model":"a","messages":[],"stream_options":{"include_usage":1}}"#,
        br#"{"model":"a","messages":[],"AMAZON-BEDROCK-GUARDRAILCONFIG":{}}"#,
        br#"{"model":"a","messages":[],"x":1,"X":2}"#,
        br#"[{"model":"a","messages":[]}]"#,
        br#"{"model":"a","messages":[]} {}"#,
        b"",
    ] {
        assert!(check(b).is_err(), "{}", String::from_utf8_lossy(b));
    }
    // Deeply nested or huge bodies stop at the validator's caps.
    let deep = format!(r#"{{"model":"a","messages":[{}1{}]}}"#, "[".repeat(200), "]".repeat(200));
    assert!(check(deep.as_bytes()).is_err());
    let wide = format!(r#"{{"model":"a","messages":[{}]}}"#, vec!["1"; 200_000].join(","));
    assert!(check(wide.as_bytes()).is_err());
    // Members other than the judged ones pass as sent.
    let ok = check(br#"{"model":"a","messages":[{"role":"user","content":"hi"}],"temperature":0.2,"reasoning_effort":"low"}"#).unwrap().unwrap();
    assert_eq!(ok["reasoning_effort"], "low");
}
