use super::*;
use crate::template::Template;
use serde_json::json;

fn policy(guardrail: bool, md: &[(&str, &str)]) -> TenantPolicy {
    let cfg = crate::config::parse_str(
        "[aws]\nregion='us-east-1'\n[identity]\nmode='static'\ntenant='acme'\n[credentials]\nsource='static'\n[tenants.acme.static_credentials]\naccess_key_id_env='A'\nsecret_access_key_env='B'\n",
        std::path::Path::new("."),
    )
    .unwrap();
    let mut p = (**cfg.tenants.get("acme").unwrap()).clone();
    p.guardrail = guardrail.then(|| Guardrail::new("gr-acme", "1"));
    p.request_metadata = md.iter().map(|(k, t)| (k.to_string(), Template::compile(t).unwrap())).collect();
    p
}

fn alice() -> Principal {
    let mut p = Principal::static_tenant("acme");
    p.user = "alice".into();
    p
}

fn converse(body: Value, p: &TenantPolicy) -> Result<Value, ProxyError> {
    let out = rewrite_model_call(Operation::Converse, Bytes::from(body.to_string()), None, &mut HeaderMap::new(), &alice(), p)?;
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
    let out = rewrite_model_call(Operation::Converse, raw.clone(), None, &mut HeaderMap::new(), &alice(), &p).unwrap();
    assert_eq!(out, raw);
}

#[test]
fn invoke_model_gets_guardrail_headers_and_untouched_body() {
    let p = policy(true, &[]);
    let mut h = HeaderMap::new();
    h.insert("x-amzn-bedrock-guardrailidentifier", HeaderValue::from_static("gr-other"));
    let raw = Bytes::from_static(b"not json at all");
    let out = rewrite_model_call(Operation::InvokeModel, raw.clone(), None, &mut h, &alice(), &p).unwrap();
    assert_eq!(out, raw);
    assert_eq!(h["x-amzn-bedrock-guardrailidentifier"], "gr-acme");
    assert_eq!(h["x-amzn-bedrock-guardrailversion"], "1");
    assert_eq!(h.get_all("x-amzn-bedrock-guardrailidentifier").iter().count(), 1);
}

#[test]
fn malformed_converse_body_is_400_when_it_must_be_rewritten() {
    let p = policy(true, &[]);
    let e = rewrite_model_call(Operation::Converse, Bytes::from_static(b"{"), None, &mut HeaderMap::new(), &alice(), &p).unwrap_err();
    assert_eq!(e.reason(), "invalid_json");
    let e = converse(json!({"guardrailConfig": "x"}), &p).unwrap_err();
    assert_eq!(e.reason(), "invalid_parameter");
}

fn with_guardrail(mode: StreamProcessingMode, allow: bool) -> TenantPolicy {
    let mut p = policy(true, &[]);
    let g = p.guardrail.as_mut().unwrap();
    g.stream_processing_mode = mode;
    g.allow_guard_content = allow;
    p
}

fn rewrite(op: Operation, body: Value, p: &TenantPolicy) -> Result<Value, ProxyError> {
    let out = rewrite_model_call(op, Bytes::from(body.to_string()), None, &mut HeaderMap::new(), &alice(), p)?;
    Ok(serde_json::from_slice(&out).unwrap())
}

#[test]
fn converse_stream_mode_is_the_tenants_and_always_set() {
    let client = json!({"guardrailConfig": {"guardrailIdentifier": "x", "guardrailVersion": "2", "streamProcessingMode": "async", "trace": "enabled_full"}});
    let out = rewrite(Operation::ConverseStream, client.clone(), &policy(true, &[])).unwrap();
    assert_eq!(
        out["guardrailConfig"],
        json!({"guardrailIdentifier": "gr-acme", "guardrailVersion": "1", "streamProcessingMode": "sync", "trace": "enabled_full"})
    );
    let out = rewrite(Operation::ConverseStream, json!({}), &with_guardrail(StreamProcessingMode::Async, false)).unwrap();
    assert_eq!(out["guardrailConfig"]["streamProcessingMode"], "async");
    // Converse has no stream mode member: none is added.
    let out = rewrite(Operation::Converse, json!({}), &policy(true, &[])).unwrap();
    assert_eq!(out["guardrailConfig"], json!({"guardrailIdentifier": "gr-acme", "guardrailVersion": "1"}));
}

#[test]
fn unknown_guardrail_config_members_are_refused() {
    for body in [
        json!({"guardrailConfig": {"guardrailidentifier": "gr-other"}}),
        json!({"guardrailConfig": {"future": 1}}),
        json!({"guardrailConfig": {"streamProcessingMode": "async"}}),
    ] {
        let e = rewrite(Operation::Converse, body.clone(), &policy(true, &[])).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{body}");
    }
}

#[test]
fn guard_content_is_refused_unless_allowed() {
    let bodies = [
        json!({"messages": [{"role": "user", "content": [{"text": "a"}, {"guardContent": {"text": {"text": "b"}}}]}]}),
        json!({"messages": [{"role": "user", "content": [{"text": "a"}]}, {"role": "user", "content": [{"GuardContent": {}}]}]}),
        json!({"system": [{"text": "s"}, {"guardContent": {"text": {"text": "b"}}}]}),
    ];
    for body in &bodies {
        for op in [Operation::Converse, Operation::ConverseStream] {
            let e = rewrite(op, body.clone(), &policy(true, &[])).unwrap_err();
            assert_eq!(e.reason(), "invalid_parameter", "{body}");
            let out = rewrite(op, body.clone(), &with_guardrail(StreamProcessingMode::Sync, true)).unwrap();
            for k in ["messages", "system"] {
                assert_eq!(out.get(k), body.get(k), "{body}");
            }
        }
        // Without a forced guardrail there is nothing to narrow.
        rewrite(Operation::Converse, body.clone(), &policy(false, &[("t", "{tenant}")])).unwrap();
    }
    // Odd shapes are left to AWS, never a panic.
    rewrite(Operation::Converse, json!({"messages": "x", "system": {"guardContent": 1}}), &policy(true, &[])).unwrap();
    rewrite(Operation::Converse, json!({"messages": [1, {"content": "x"}, {"content": [null, 2]}]}), &policy(true, &[])).unwrap();
}

fn invoke(op: Operation, raw: &[u8], p: &TenantPolicy) -> Result<Bytes, ProxyError> {
    rewrite_model_call(op, Bytes::copy_from_slice(raw), None, &mut HeaderMap::new(), &alice(), p)
}

#[test]
fn invoke_stream_mode_in_the_body_is_the_tenants() {
    let stream = Operation::InvokeModelWithResponseStream;
    let sent = br#"{"prompt":"x","amazon-bedrock-guardrailConfig":{"streamProcessingMode":"ASYNCHRONOUS"}}"#;
    let out: Value = serde_json::from_slice(&invoke(stream, sent, &policy(true, &[])).unwrap()).unwrap();
    assert_eq!(out, json!({"prompt": "x", "amazon-bedrock-guardrailConfig": {"streamProcessingMode": "SYNCHRONOUS"}}));
    // An async tenant gets the member even when the client sent none.
    let out = invoke(stream, br#"{"prompt":"x"}"#, &with_guardrail(StreamProcessingMode::Async, false)).unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["amazon-bedrock-guardrailConfig"], json!({"streamProcessingMode": "ASYNCHRONOUS"}));
    // A sync tenant's body without the member goes byte for byte.
    let raw = br#"{ "prompt" : "x" }"#;
    assert_eq!(invoke(stream, raw, &policy(true, &[])).unwrap(), Bytes::from_static(raw));
    // A case variant of the member is refused, not forwarded.
    let e = invoke(stream, br#"{"Amazon-Bedrock-GuardrailConfig":{}}"#, &policy(true, &[])).unwrap_err();
    assert_eq!(e.reason(), "invalid_parameter");
    // Spelled with escapes, it is still found.
    let e = invoke(stream, br#"{"amazon-bedrock-\u0067uardrailConfig":{"tagSuffix":"x"}}"#, &policy(true, &[]))
        .unwrap_err();
    assert_eq!(e.reason(), "invalid_parameter");
    assert!(!may_name_guardrail_config(br#"{"prompt":"guardrail config","x":"\n"}"#));
    assert!(may_name_guardrail_config(br#"{"x":"\u0041"}"#));
    assert!(may_name_guardrail_config(b"{\"AMAZON-BEDROCK-GUARDRAILCONFIG\":1}"));
    // InvokeModel: no stream mode is set; the client's one is dropped.
    let out = invoke(Operation::InvokeModel, sent, &policy(true, &[])).unwrap();
    let out: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(out["amazon-bedrock-guardrailConfig"], json!({}));
}

#[test]
fn invoke_input_tags_are_refused_unless_allowed() {
    let sent = br#"{"prompt":"x","amazon-bedrock-guardrailConfig":{"tagSuffix":"abc"}}"#;
    for op in [Operation::InvokeModel, Operation::InvokeModelWithResponseStream] {
        assert_eq!(invoke(op, sent, &policy(true, &[])).unwrap_err().reason(), "invalid_parameter");
        let out = invoke(op, sent, &with_guardrail(StreamProcessingMode::Sync, true)).unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["amazon-bedrock-guardrailConfig"]["tagSuffix"], "abc");
        let e = invoke(op, br#"{"amazon-bedrock-guardrailConfig":{"other":1}}"#, &policy(true, &[])).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter");
        let e = invoke(op, br#"{"amazon-bedrock-guardrailConfig":"x"}"#, &policy(true, &[])).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter");
    }
    // Without a tenant guardrail the body is not looked at.
    assert_eq!(invoke(Operation::InvokeModel, sent, &policy(false, &[])).unwrap(), Bytes::from_static(sent));
}

#[test]
fn invoke_bodies_the_sidecar_cannot_read_are_refused_when_they_may_carry_the_member() {
    // Deeper than serde_json reads, and a lone surrogate escape: other JSON
    // readers accept both, so the input tags would reach AWS unjudged.
    let deep = format!(
        r#"{{"amazon-bedrock-guardrailConfig":{{"tagSuffix":"abc"}},"pad":{}{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let lone = br#"{"messages":[{"content":"\ud800"}],"amazon-bedrock-guardrailConfig":{"tagSuffix":"abc"}}"#;
    let bom = b"\xEF\xBB\xBF {\"amazon-bedrock-guardrailConfig\":{\"tagSuffix\":\"abc\"}}";
    for op in [Operation::InvokeModel, Operation::InvokeModelWithResponseStream] {
        for body in [deep.as_bytes(), &lone[..], &bom[..]] {
            let e = invoke(op, body, &policy(true, &[])).unwrap_err();
            assert_eq!(e.reason(), "invalid_parameter", "{}", String::from_utf8_lossy(body));
            // Even for a tenant that allows input tags: what else the body
            // says is unknown.
            let e = invoke(op, body, &with_guardrail(StreamProcessingMode::Sync, true)).unwrap_err();
            assert_eq!(e.reason(), "invalid_parameter");
        }
        // A body that opens no object carries no member: as sent.
        for body in [&b"\\u0041 raw text"[..], b"[\"\\u0041\"]", b"\x89PNG\\u"] {
            assert_eq!(invoke(op, body, &policy(true, &[])).unwrap(), Bytes::copy_from_slice(body));
        }
    }
    assert!(opens_an_object(b" \r\n\t{"));
    assert!(opens_an_object(b"\xEF\xBB\xBF{"));
    assert!(!opens_an_object(b"x{"));
    assert!(!opens_an_object(b""));
}

#[test]
fn invoke_max_tokens_reads_every_provider_spelling_once() {
    let one = |body: &str| invoke_max_tokens(body.as_bytes());
    for (body, want) in [
        (r#"{"max_tokens": 300, "messages": []}"#, Some(300)),
        (r#"{"max_tokens_to_sample": 301, "prompt": "x"}"#, Some(301)),
        (r#"{"max_gen_len": 302, "prompt": "x"}"#, Some(302)),
        (r#"{"max_completion_tokens": 303}"#, Some(303)),
        (r#"{"maxTokens": 304}"#, Some(304)),
        (r#"{"max_new_tokens": 305}"#, Some(305)),
        (r#"{"schemaVersion": "messages-v1", "inferenceConfig": {"maxTokens": 306, "temperature": 0.2}}"#, Some(306)),
        (r#"{"inferenceConfig": {"max_new_tokens": 307}}"#, Some(307)),
        (r#"{"inputText": "x", "textGenerationConfig": {"maxTokenCount": 308}}"#, Some(308)),
        // Other case and separators count: some model servers accept them.
        (r#"{"MAX_TOKENS": 309}"#, Some(309)),
        (r#"{"Max-Tokens": 310}"#, Some(310)),
        (r#"{"InferenceConfig": {"MaxTokens": 311}}"#, Some(311)),
        // Escapes are decoded before the name is compared.
        (r#"{"max\u005ftokens": 312}"#, Some(312)),
        // Not a limit: deeper, in another object, or no JSON object at all.
        (r#"{"messages": [{"max_tokens": 9}], "tool": {"maxTokens": 9}}"#, None),
        (r#"{"inferenceConfig": {"nested": {"maxTokens": 9}}}"#, None),
        (r#"[{"max_tokens": 9}]"#, None),
        ("not json", None),
        ("", None),
    ] {
        assert_eq!(one(body).unwrap(), want, "{body}");
    }
}

#[test]
fn invoke_max_tokens_stated_twice_or_not_whole_is_refused() {
    for body in [
        r#"{"max_tokens": 100, "max_tokens": 100000}"#,
        r#"{"max_tokens": 100, "MAX_TOKENS": 100000}"#,
        r#"{"max_tokens": 100, "maxTokens": 100000}"#,
        r#"{"max_tokens": 100, "inferenceConfig": {"maxTokens": 100000}}"#,
        r#"{"inferenceConfig": {"maxTokens": 100, "max_new_tokens": 100000}}"#,
        r#"{"inferenceConfig": {"maxTokens": 100, "maxTokens": 100000}}"#,
        r#"{"inferenceConfig": {"maxTokens": 100}, "inferenceConfig": {"maxTokens": 100000}}"#,
        r#"{"textGenerationConfig": {"maxTokenCount": 100}, "max_gen_len": 100000}"#,
        r#"{"max_tokens": "100"}"#,
        r#"{"max_tokens": 100.5}"#,
        r#"{"max_tokens": -1}"#,
        r#"{"max_tokens": null}"#,
        r#"{"inferenceConfig": {"maxTokens": 1e9}}"#,
    ] {
        assert!(matches!(invoke_max_tokens(body.as_bytes()), Err(ProxyError::InvalidParameter(_))), "{body}");
    }
}

#[test]
fn converse_max_tokens_reads_additional_fields_too() {
    let one = |v: Value| converse_max_tokens(Some(&v));
    assert_eq!(one(json!({"inferenceConfig": {"maxTokens": 500}})).unwrap(), Some(500));
    assert_eq!(one(json!({"additionalModelRequestFields": {"max_tokens": 501}})).unwrap(), Some(501));
    assert_eq!(one(json!({"additionalModelRequestFields": {"inferenceConfig": {"max_new_tokens": 502}}})).unwrap(), Some(502));
    assert_eq!(one(json!({"additionalModelRequestFields": {"top_k": 5}})).unwrap(), None);
    assert_eq!(one(json!({"messages": []})).unwrap(), None);
    assert_eq!(converse_max_tokens(None).unwrap(), None);
    for v in [
        json!({"inferenceConfig": {"maxTokens": 100}, "additionalModelRequestFields": {"max_tokens": 100000}}),
        json!({"inferenceConfig": {"maxTokens": 100}, "additionalModelRequestFields": {"MAX_TOKENS": 100000}}),
        json!({"additionalModelRequestFields": {"max_tokens": 100, "max_gen_len": 100000}}),
        json!({"additionalModelRequestFields": {"max_tokens": "many"}}),
    ] {
        assert!(matches!(one(v.clone()), Err(ProxyError::InvalidParameter(_))), "{v}");
    }
}

#[test]
fn invoke_max_tokens_of_an_object_the_sidecar_cannot_read_is_refused() {
    // Other JSON readers take the first object and ignore the rest, or skip
    // a byte order mark: the model could read a limit the policy did not.
    for body in [&b"\xEF\xBB\xBF{\"max_tokens\":100000}"[..], b"{\"max_tokens\":100000} x", b" {\"max_tokens\":1", b"{}{}"]
    {
        let e = invoke_max_tokens(body).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{}", String::from_utf8_lossy(body));
    }
    // What serde_json's ignoring reader takes in its stride is read: deep
    // nesting, lone surrogate escapes.
    let deep = format!(r#"{{"pad":{}{},"max_tokens":100000}}"#, "[".repeat(300), "]".repeat(300));
    assert_eq!(invoke_max_tokens(deep.as_bytes()).unwrap(), Some(100000));
    assert_eq!(invoke_max_tokens(br#"{"m":"\ud800","max_tokens":7}"#).unwrap(), Some(7));
}
