use super::*;
use crate::config::TenantPolicy;
use crate::principal::Principal;
use crate::session::SessionKeys;
use crate::test_support::*;
use aws_credential_types::Credentials;
use serde_json::json;

fn keys() -> SessionKeys {
    SessionKeys::new(b"agent-tests-agent-tests-agent-te")
}

fn creds(token: Option<&str>) -> TenantCredentials {
    TenantCredentials(Credentials::new("ASIATENANTACME", "tenant-secret", token.map(str::to_string), None, "test"))
}

fn run(body: &mut Value, policy: &TenantPolicy) -> Result<AgentRewrite, ProxyError> {
    rewrite_invoke_agent(&Ctx::new(Operation::InvokeAgent, &alice(), policy, &keys()), "AGENT12345", "ALIAS6789", "chat-42", body, None)
}

fn attrs(body: &Value) -> &Map<String, Value> {
    body["sessionState"]["sessionAttributes"].as_object().expect("sessionAttributes")
}

#[test]
fn agent_outside_the_allowlist_is_denied() {
    let mut body = json!({"inputText": "hi"});
    for (agent, alias) in [("AGENTOTHER", "ALIAS6789"), ("AGENT12345", "ALIASOTHER"), ("agent12345", "ALIAS6789")] {
        let e =
            rewrite_invoke_agent(&Ctx::new(Operation::InvokeAgent, &alice(), &policy(), &keys()), agent, alias, "chat-42", &mut body, None).unwrap_err();
        assert_eq!(e, ProxyError::AgentNotAllowed { agent: format!("{agent}/{alias}"), tenant: "acme".into() });
    }
}

#[test]
fn alias_wildcard_allows_any_alias_of_that_agent() {
    let mut body = json!({});
    rewrite_invoke_agent(&Ctx::new(Operation::InvokeAgent, &alice(), &policy(), &keys()), "AGENTABCDE", "ANYALIAS", "chat-42", &mut body, None).unwrap();
    let e = rewrite_invoke_agent(&Ctx::new(Operation::InvokeAgent, &alice(), &policy(), &keys()), "AGENTABCDEX", "A", "chat-42", &mut body, None);
    assert_eq!(e.unwrap_err().reason(), "agent_not_allowed");
}

#[test]
fn configured_attributes_are_injected_into_an_empty_body() {
    let mut body = json!({"inputText": "hi"});
    let out = run(&mut body, &policy()).unwrap();
    assert_eq!(
        body,
        json!({"inputText": "hi", "sessionState": {"sessionAttributes": {"tenantId": "acme", "userId": "alice"}}})
    );
    assert_eq!(out.attributes_set, vec!["tenantId".to_string(), "userId".to_string()]);
    assert!(out.attributes_removed.is_empty());
}

#[test]
fn forged_tenant_id_in_session_attributes_is_overwritten() {
    let mut body = json!({"inputText": "hi", "sessionState": {"sessionAttributes": {
        "tenantId": "globex", "userId": "gary", "locale": "de"}}});
    let out = run(&mut body, &policy()).unwrap();
    assert_eq!(*attrs(&body), *json!({"tenantId": "acme", "userId": "alice", "locale": "de"}).as_object().unwrap());
    assert!(out.attributes_removed.contains(&"tenantId".to_string()));
}

#[test]
fn lookalike_attribute_names_are_removed() {
    let mut body = json!({"sessionState": {"sessionAttributes": {"TenantId": "globex", "TENANTID": "globex", "USERJWT": "x", "AccessKeyId": "AKIA"}}});
    run(&mut body, &policy()).unwrap();
    assert_eq!(*attrs(&body), *json!({"tenantId": "acme", "userId": "alice"}).as_object().unwrap());
}

#[test]
fn forged_user_token_never_reaches_the_agent() {
    let mut body = json!({"sessionState": {"sessionAttributes": {"userJWT": "eyJhbGciOiJub25lIn0.forged."}}});
    run(&mut body, &policy()).unwrap();
    assert!(attrs(&body).get("userJWT").is_none());
}

#[test]
fn verified_token_is_injected_when_configured() {
    let mut pol = policy();
    pol.agents.inject_user_token = true;
    let mut body = json!({"sessionState": {"sessionAttributes": {"userJWT": "forged"}}});
    let out = run(&mut body, &pol).unwrap();
    assert_eq!(attrs(&body)["userJWT"], "header.payload.signature");
    assert!(out.attributes_set.contains(&"userJWT".to_string()));
    // The note never carries the value.
    assert!(!format!("{out:?}").contains("header.payload.signature"));
}

#[test]
fn static_mode_without_a_token_injects_none_and_still_strips_a_forged_one() {
    let mut pol = policy();
    pol.agents.inject_user_token = true;
    let p = crate::principal::Principal::static_tenant("acme");
    let mut body = json!({"sessionState": {"sessionAttributes": {"userJWT": "forged"}}});
    rewrite_invoke_agent(&Ctx::new(Operation::InvokeAgent, &p, &pol, &keys()), "AGENT12345", "ALIAS6789", "chat-42", &mut body, None).unwrap();
    assert!(attrs(&body).get("userJWT").is_none());
    assert_eq!(attrs(&body)["userId"], "-");
}

#[test]
fn forged_credentials_are_removed_when_injection_is_off() {
    let mut body = json!({"sessionState": {"sessionAttributes": {
        "accessKeyId": "AKIAFORGED", "secretAccessKey": "x", "sessionToken": "y", "keep": "me"}}});
    run(&mut body, &policy()).unwrap();
    let a = attrs(&body);
    for k in CREDENTIAL_KEYS {
        assert!(a.get(k).is_none(), "{k}");
    }
    assert_eq!(a["keep"], "me");
}

#[test]
fn scoped_credentials_are_injected_when_configured() {
    let mut pol = policy();
    pol.agents.inject_scoped_credentials = true;
    let c = creds(Some("tenant-session-token"));
    let mut body = json!({"sessionState": {"sessionAttributes": {"accessKeyId": "AKIAFORGED"}}});
    let out = rewrite_invoke_agent(&Ctx::new(Operation::InvokeAgent, &alice(), &pol, &keys()), "AGENT12345", "ALIAS6789", "chat-42", &mut body, Some(&c))
        .unwrap();
    let a = attrs(&body);
    assert_eq!(a["accessKeyId"], "ASIATENANTACME");
    assert_eq!(a["secretAccessKey"], "tenant-secret");
    assert_eq!(a["sessionToken"], "tenant-session-token");
    assert!(!format!("{out:?}").contains("tenant-secret"));
}

#[test]
fn long_term_keys_without_a_session_token_remove_a_forged_token() {
    let mut pol = policy();
    pol.agents.inject_scoped_credentials = true;
    let c = creds(None);
    let mut body = json!({"sessionState": {"sessionAttributes": {"sessionToken": "forged"}}});
    rewrite_invoke_agent(&Ctx::new(Operation::InvokeAgent, &alice(), &pol, &keys()), "AGENT12345", "ALIAS6789", "chat-42", &mut body, Some(&c)).unwrap();
    assert!(attrs(&body).get("sessionToken").is_none());
    assert_eq!(attrs(&body)["accessKeyId"], "ASIATENANTACME");
}

#[test]
fn credential_injection_without_credentials_fails_closed() {
    let mut pol = policy();
    pol.agents.inject_scoped_credentials = true;
    let e = run(&mut json!({}), &pol).unwrap_err();
    assert_eq!(e.reason(), "credentials_unavailable");
}

#[test]
fn prompt_session_attributes_get_the_tenant_and_never_secrets() {
    let mut pol = policy();
    pol.agents.inject_user_token = true;
    let mut body = json!({"sessionState": {"promptSessionAttributes": {
        "tenantId": "globex", "userJWT": "forged", "topic": "billing"}}});
    run(&mut body, &pol).unwrap();
    let p = body["sessionState"]["promptSessionAttributes"].as_object().unwrap();
    assert_eq!(*p, *json!({"tenantId": "acme", "userId": "alice", "topic": "billing"}).as_object().unwrap());
    assert_eq!(attrs(&body)["userJWT"], "header.payload.signature");
}

#[test]
fn prompt_session_attributes_are_not_created_when_absent() {
    let mut body = json!({});
    run(&mut body, &policy()).unwrap();
    assert!(body["sessionState"].get("promptSessionAttributes").is_none());
}

#[test]
fn session_ids_differ_per_tenant_and_user() {
    let mut pol = policy();
    pol.agents.allowed.push(crate::glob::Glob::new("*").unwrap());
    let id = |p: &Principal| {
        rewrite_invoke_agent(&Ctx::new(Operation::InvokeAgent, p, &pol, &keys()), "AGENT12345", "ALIAS6789", "chat-42", &mut json!({}), None)
            .unwrap()
            .upstream_session_id
    };
    let a = id(&alice());
    assert_eq!(a, id(&alice()));
    assert_ne!(a, id(&principal("acme", "bob")));
    assert_ne!(a, id(&principal("globex", "alice")));
    assert!(a.starts_with("tg-") && a.len() == 43);
    assert_ne!(a, "chat-42");
}

#[test]
fn memory_id_is_namespaced_per_tenant_and_user() {
    let mut body = json!({"memoryId": "mem-1"});
    let out = run(&mut body, &policy()).unwrap();
    assert!(out.memory_id_namespaced);
    let m = body["memoryId"].as_str().unwrap();
    assert_eq!(m, keys().agent_memory_id("acme", "alice", "mem-1"));
    assert_ne!(m, keys().agent_memory_id("acme", "bob", "mem-1"));
    assert_ne!(m, keys().agent_memory_id("globex", "alice", "mem-1"));
}

#[test]
fn invalid_session_or_memory_ids_are_invalid_parameter() {
    for sid in ["", "x", "has space", "a/b", &"x".repeat(101), "é-id"] {
        let e =
            rewrite_invoke_agent(&Ctx::new(Operation::InvokeAgent, &alice(), &policy(), &keys()), "AGENT12345", "ALIAS6789", sid, &mut json!({}), None);
        assert_eq!(e.unwrap_err().reason(), "invalid_parameter", "{sid:?}");
    }
    for mem in [json!(5), json!("a b"), json!("x")] {
        let e = run(&mut json!({"memoryId": mem}), &policy()).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{mem}");
    }
}

#[test]
fn malformed_agent_bodies_are_rejected_without_panicking() {
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "invalid_json"),
        (json!(null), "invalid_json"),
        (json!({"sessionState": 1}), "invalid_parameter"),
        (json!({"sessionState": {"sessionAttributes": []}}), "invalid_parameter"),
        (json!({"sessionState": {"promptSessionAttributes": "x"}}), "invalid_parameter"),
        (json!({"sessionState": {"knowledgeBaseConfigurations": {}}}), "invalid_parameter"),
        (json!({"sessionState": {"knowledgeBaseConfigurations": [1]}}), "invalid_parameter"),
        (json!({"sessionState": {"knowledgeBaseConfigurations": [{}]}}), "invalid_parameter"),
        (json!({"sessionState": {"files": {}}}), "invalid_parameter"),
        (json!({"sessionState": {"files": [{"name": "x"}]}}), "invalid_parameter"),
    ];
    for (mut body, reason) in cases {
        let e = run(&mut body, &policy()).unwrap_err();
        assert_eq!(e.reason(), reason, "{body}");
    }
}

#[test]
fn null_session_state_is_created() {
    let mut body = json!({"sessionState": null});
    run(&mut body, &policy()).unwrap();
    assert_eq!(attrs(&body)["tenantId"], "acme");
}

#[test]
fn session_attribute_template_naming_a_missing_claim_is_missing_claim() {
    let mut pol = policy();
    pol.agents.session_attributes.push(("plan".into(), crate::template::Template::compile("{claims.tier}").unwrap()));
    let mut body = json!({"sessionState": {"sessionAttributes": {"tenantId": "globex"}}});
    let e = run(&mut body, &pol).unwrap_err();
    assert_eq!(e, ProxyError::MissingClaim("tier".into()));
}

#[test]
fn agent_knowledge_base_configurations_get_the_tenant_filter() {
    let client = json!({"equals": {"key": "tenant_id", "value": "globex"}});
    let mut body = json!({"sessionState": {"knowledgeBaseConfigurations": [
        {"knowledgeBaseId": "KBPOOLED01", "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": client.clone(), "numberOfResults": 4}}}
    ]}});
    let out = run(&mut body, &policy()).unwrap();
    let vsc =
        &body["sessionState"]["knowledgeBaseConfigurations"][0]["retrievalConfiguration"]["vectorSearchConfiguration"];
    assert_eq!(vsc["filter"], json!({"andAll": [acme_clause(), groups_clause(), client]}));
    assert_eq!(vsc["numberOfResults"], 4);
    assert_eq!(out.knowledge_bases, vec!["KBPOOLED01".to_string()]);
}

#[test]
fn attached_knowledge_bases_the_client_did_not_configure_get_an_entry_with_the_filter() {
    let mut pol = policy();
    pol.knowledge_base.allowed.push("KBSECOND02".into());
    pol.agents.knowledge_bases = vec!["KBPOOLED01".into(), "KBSECOND02".into()];
    // No sessionState at all: one entry per attached knowledge base.
    let mut body = json!({"inputText": "hi"});
    let out = run(&mut body, &pol).unwrap();
    let forced = json!({"andAll": [acme_clause(), groups_clause()]});
    assert_eq!(body["sessionState"]["knowledgeBaseConfigurations"], json!([
        {"knowledgeBaseId": "KBPOOLED01", "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": forced}}},
        {"knowledgeBaseId": "KBSECOND02", "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": forced}}},
    ]));
    assert_eq!(out.knowledge_bases_added, vec!["KBPOOLED01".to_string(), "KBSECOND02".to_string()]);
    // The client configured one: kept (filter ANDed), the other added; a
    // null list counts as absent.
    let client = json!({"equals": {"key": "year", "value": 2024}});
    let mut body = json!({"sessionState": {"knowledgeBaseConfigurations": [
        {"knowledgeBaseId": "KBSECOND02", "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": client.clone(), "numberOfResults": 3}}}
    ]}});
    let out = run(&mut body, &pol).unwrap();
    let list = body["sessionState"]["knowledgeBaseConfigurations"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["retrievalConfiguration"]["vectorSearchConfiguration"]["filter"],
               json!({"andAll": [acme_clause(), groups_clause(), client]}));
    assert_eq!(list[1]["knowledgeBaseId"], "KBPOOLED01");
    assert_eq!(out.knowledge_bases_added, vec!["KBPOOLED01".to_string()]);
    let mut body = json!({"sessionState": {"knowledgeBaseConfigurations": null}});
    run(&mut body, &pol).unwrap();
    assert_eq!(body["sessionState"]["knowledgeBaseConfigurations"].as_array().unwrap().len(), 2);
    // Without attached knowledge bases nothing is added.
    let mut body = json!({"inputText": "hi"});
    run(&mut body, &policy()).unwrap();
    assert!(body["sessionState"].get("knowledgeBaseConfigurations").is_none());
}

#[test]
fn agent_knowledge_base_outside_the_allowlist_is_denied() {
    let mut body = json!({"sessionState": {"knowledgeBaseConfigurations": [{"knowledgeBaseId": "KBGLOBEX01"}]}});
    assert_eq!(run(&mut body, &policy()).unwrap_err().reason(), "knowledge_base_not_allowed");
}

#[test]
fn agent_s3_files_must_be_under_the_prefixes() {
    let file = |uri: &str| {
        json!({"sessionState": {"files": [{"name": "f", "useCase": "CODE_INTERPRETER",
        "source": {"sourceType": "S3", "s3Location": {"uri": uri}}}]}})
    };
    let out = run(&mut file("s3://docs/tenants/acme/data.csv"), &policy()).unwrap();
    assert_eq!(out.s3_files, 1);
    let e = run(&mut file("s3://docs/tenants/globex/data.csv"), &policy()).unwrap_err();
    assert_eq!(e.reason(), "location_not_allowed");
    let mut bytes = json!({"sessionState": {"files": [{"name": "f", "useCase": "CHAT",
        "source": {"sourceType": "BYTE_CONTENT", "byteContent": {"data": "aGk=", "mediaType": "text/csv"}}}]}});
    assert_eq!(run(&mut bytes, &policy()).unwrap().s3_files, 0);
}

#[test]
fn other_body_fields_are_kept() {
    let mut body = json!({"inputText": "hi", "enableTrace": true, "endSession": false,
        "sessionState": {"invocationId": "inv", "conversationHistory": {"messages": []}, "sessionAttributes": {"a": "b"}},
        "streamingConfigurations": {"streamFinalResponse": true}, "future": 1});
    let before = body.clone();
    run(&mut body, &policy()).unwrap();
    for k in ["inputText", "enableTrace", "endSession", "streamingConfigurations", "future"] {
        assert_eq!(body[k], before[k], "{k}");
    }
    assert_eq!(body["sessionState"]["invocationId"], "inv");
    assert_eq!(body["sessionState"]["conversationHistory"], json!({"messages": []}));
    assert_eq!(attrs(&body)["a"], "b");
}
