use super::*;
use crate::config::TenantPolicy;
use crate::session::SessionKeys;
use crate::test_support::*;
use serde_json::json;

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const SONNET: &str = "anthropic.claude-3-sonnet-20240229-v1:0";

fn keys() -> SessionKeys {
    SessionKeys::new(b"kb-tests-kb-tests-kb-tests-kb-te")
}

fn filter_of(body: &Value) -> &Value {
    &body["retrievalConfiguration"]["vectorSearchConfiguration"]["filter"]
}

// ---- Retrieve ----

#[test]
fn retrieve_without_configuration_gets_the_tenant_filter() {
    let mut body = json!({"retrievalQuery": {"text": "q"}});
    let note = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy_without_extras(), &keys()), &mut body, "KBPOOLED01").unwrap();
    assert_eq!(
        body,
        json!({"retrievalQuery": {"text": "q"}, "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": acme_clause()}}})
    );
    assert_eq!(note.knowledge_base_id.as_deref(), Some("KBPOOLED01"));
    assert!(note.filter_forced && !note.client_filter_kept);
}

#[test]
fn retrieve_keeps_every_other_field() {
    let mut body = json!({
        "retrievalQuery": {"text": "q"},
        "nextToken": "t",
        "guardrailConfiguration": {"guardrailId": "g", "guardrailVersion": "1"},
        "futureField": [1, 2],
        "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 7, "overrideSearchType": "HYBRID", "x": true}}
    });
    let before = body.clone();
    rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy(), &keys()), &mut body, "KBPOOLED01").unwrap();
    let vsc = &body["retrievalConfiguration"]["vectorSearchConfiguration"];
    assert_eq!(vsc["numberOfResults"], 7);
    assert_eq!(vsc["overrideSearchType"], "HYBRID");
    assert_eq!(vsc["x"], true);
    for k in ["retrievalQuery", "nextToken", "guardrailConfiguration", "futureField"] {
        assert_eq!(body[k], before[k], "{k}");
    }
    assert_eq!(*filter_of(&body), json!({"andAll": [acme_clause(), groups_clause()]}));
}

#[test]
fn client_or_all_naming_another_tenant_is_still_anded_with_the_tenant_clause() {
    let evil = json!({"orAll": [{"equals": {"key": "tenant_id", "value": "globex"}}, {"equals": {"key": "tenant_id", "value": "acme"}}]});
    let mut body = json!({"retrievalQuery": {"text": "q"}, "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": evil.clone()}}});
    let note = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy(), &keys()), &mut body, "KBPOOLED01").unwrap();
    assert!(note.client_filter_kept);
    assert_eq!(*filter_of(&body), json!({"andAll": [acme_clause(), groups_clause(), evil]}));
}

#[test]
fn client_and_all_is_flattened_after_the_tenant_and_extra_filters() {
    let a = json!({"equals": {"key": "year", "value": 2024}});
    let b = json!({"startsWith": {"key": "title", "value": "Q"}});
    let mut body = json!({"retrievalConfiguration": {"vectorSearchConfiguration": {"filter": {"andAll": [a, b]}}}});
    rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy(), &keys()), &mut body, "KBPOOLED01").unwrap();
    assert_eq!(*filter_of(&body), json!({"andAll": [acme_clause(), groups_clause(), a, b]}));
}

#[test]
fn knowledge_base_outside_the_allowlist_is_denied() {
    let mut body = json!({"retrievalQuery": {"text": "q"}});
    let e = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy(), &keys()), &mut body, "KBGLOBEX01").unwrap_err();
    assert_eq!(e, ProxyError::KnowledgeBaseNotAllowed { kb: "KBGLOBEX01".into(), tenant: "acme".into() });
    // Ids are exact: no case folding, no prefix.
    for kb in ["kbpooled01", "KBPOOLED0", "KBPOOLED01 ", ""] {
        let e = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy(), &keys()), &mut json!({}), kb).unwrap_err();
        assert_eq!(e.reason(), "knowledge_base_not_allowed", "{kb:?}");
    }
}

#[test]
fn retrieve_reranking_model_must_be_allowed() {
    let body = |model: &str| {
        json!({"retrievalConfiguration": {"vectorSearchConfiguration": {"rerankingConfiguration": {
            "type": "BEDROCK_RERANKING_MODEL",
            "bedrockRerankingConfiguration": {"numberOfRerankedResults": 3, "modelConfiguration": {"modelArn": model}}
        }}}})
    };
    let ok = "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0";
    let note = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy(), &keys()), &mut body(ok), "KBPOOLED01").unwrap();
    assert_eq!(note.models, vec![ok.to_string()]);
    let bad = "arn:aws:bedrock:us-west-2::foundation-model/cohere.rerank-v3-5:0";
    let e = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy(), &keys()), &mut body(bad), "KBPOOLED01").unwrap_err();
    assert_eq!(e, ProxyError::ModelNotAllowed { model: bad.into(), tenant: "acme".into() });
}

#[test]
fn reranking_without_a_model_or_with_an_unknown_type_is_invalid() {
    for rr in [
        json!({"type": "BEDROCK_RERANKING_MODEL"}),
        json!({"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {"modelConfiguration": {}}}),
        json!({"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": 5}}}),
        json!({"type": "OTHER", "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": "amazon.rerank-v1:0"}}}),
        json!({"bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": "amazon.rerank-v1:0"}}}),
        json!("BEDROCK_RERANKING_MODEL"),
    ] {
        let mut body = json!({"retrievalConfiguration": {"vectorSearchConfiguration": {"rerankingConfiguration": rr}}});
        let e = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy(), &keys()), &mut body, "KBPOOLED01").unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{body}");
    }
}

#[test]
fn implicit_filter_model_must_be_allowed() {
    let mut body = json!({"retrievalConfiguration": {"vectorSearchConfiguration": {
        "implicitFilterConfiguration": {"metadataAttributes": [], "modelArn": SONNET}}}});
    let e = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy(), &keys()), &mut body, "KBPOOLED01").unwrap_err();
    assert_eq!(e.reason(), "model_not_allowed");
    let mut body = json!({"retrievalConfiguration": {"vectorSearchConfiguration": {
        "implicitFilterConfiguration": {"metadataAttributes": [], "modelArn": HAIKU}}}});
    assert_eq!(rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy(), &keys()), &mut body, "KBPOOLED01").unwrap().models, vec![HAIKU]);
}

#[test]
fn malformed_retrieve_bodies_are_rejected_without_panicking() {
    let cases: Vec<(Value, &str)> = vec![
        (json!([]), "invalid_json"),
        (json!("x"), "invalid_json"),
        (json!(null), "invalid_json"),
        (json!({"retrievalConfiguration": 5}), "invalid_parameter"),
        (json!({"retrievalConfiguration": {"vectorSearchConfiguration": []}}), "invalid_parameter"),
        (json!({"retrievalConfiguration": {"vectorSearchConfiguration": {"filter": {"eq": {}}}}}), "invalid_parameter"),
        (
            json!({"retrievalConfiguration": {"vectorSearchConfiguration": {"filter": "tenant_id=acme"}}}),
            "invalid_parameter",
        ),
    ];
    for (mut body, reason) in cases {
        let e = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy(), &keys()), &mut body, "KBPOOLED01").unwrap_err();
        assert_eq!(e.reason(), reason, "{body}");
    }
}

#[test]
fn null_configuration_objects_are_created() {
    let mut body = json!({"retrievalConfiguration": null});
    rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy_without_extras(), &keys()), &mut body, "KBPOOLED01").unwrap();
    assert_eq!(*filter_of(&body), acme_clause());
    let mut body = json!({"retrievalConfiguration": {"vectorSearchConfiguration": {"filter": null}}});
    let note = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &policy_without_extras(), &keys()), &mut body, "KBPOOLED01").unwrap();
    assert!(!note.client_filter_kept);
    assert_eq!(*filter_of(&body), acme_clause());
}

#[test]
fn template_naming_a_missing_claim_denies_with_missing_claim() {
    let mut pol = policy();
    pol.knowledge_base.extra_filters =
        vec![crate::template::JsonTemplate::compile(&json!({"equals": {"key": "dept", "value": "{claims.dept}"}}))
            .unwrap()];
    let e = rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &pol, &keys()), &mut json!({}), "KBPOOLED01").unwrap_err();
    assert_eq!(e, ProxyError::MissingClaim("dept".into()));
}

#[test]
fn other_tenant_principal_gets_its_own_clause() {
    let mut pol = policy_without_extras();
    pol.knowledge_base.allowed.push("KBGLOBEX01".into());
    let mut body = json!({});
    rewrite_retrieve(&Ctx::new(Operation::Retrieve, &principal("globex", "gary"), &pol, &keys()), &mut body, "KBGLOBEX01").unwrap();
    assert_eq!(*filter_of(&body), json!({"equals": {"key": "tenant_id", "value": "globex"}}));
}

// ---- RetrieveAndGenerate ----

fn rag_kb(extra: Value) -> Value {
    let mut kb = json!({"knowledgeBaseId": "KBPOOLED01", "modelArn": HAIKU});
    for (k, v) in extra.as_object().unwrap() {
        kb[k] = v.clone();
    }
    json!({"input": {"text": "q"}, "retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": kb}})
}

fn rag_filter(body: &Value) -> &Value {
    &body["retrieveAndGenerateConfiguration"]["knowledgeBaseConfiguration"]["retrievalConfiguration"]
        ["vectorSearchConfiguration"]["filter"]
}

#[test]
fn rag_knowledge_base_gets_the_forced_filter_and_its_model_checked() {
    let mut body =
        rag_kb(json!({"generationConfiguration": {"promptTemplate": {"textPromptTemplate": "$search_results$"}}}));
    let note = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap();
    assert_eq!(*rag_filter(&body), json!({"andAll": [acme_clause(), groups_clause()]}));
    assert_eq!(note.knowledge_base_id.as_deref(), Some("KBPOOLED01"));
    assert_eq!(note.models, vec![HAIKU.to_string()]);
    assert_eq!(
        body["retrieveAndGenerateConfiguration"]["knowledgeBaseConfiguration"]["generationConfiguration"]
            ["promptTemplate"]["textPromptTemplate"],
        "$search_results$"
    );
}

#[test]
fn rag_client_filter_is_kept_inside_the_and_all() {
    let client =
        json!({"orAll": [{"equals": {"key": "tenant_id", "value": "globex"}}, {"equals": {"key": "x", "value": 1}}]});
    let mut body = rag_kb(
        json!({"retrievalConfiguration": {"vectorSearchConfiguration": {"filter": client.clone(), "numberOfResults": 3}}}),
    );
    rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy_without_extras(), &keys()), &mut body).unwrap();
    assert_eq!(*rag_filter(&body), json!({"andAll": [acme_clause(), client]}));
}

#[test]
fn rag_model_outside_the_globs_is_denied() {
    let mut body = rag_kb(json!({"modelArn": format!("arn:aws:bedrock:us-east-1::foundation-model/{SONNET}")}));
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap_err();
    assert_eq!(e.reason(), "model_not_allowed");
}

#[test]
fn rag_knowledge_base_outside_the_allowlist_is_denied() {
    let mut body = rag_kb(json!({"knowledgeBaseId": "KBGLOBEX01"}));
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap_err();
    assert_eq!(e.reason(), "knowledge_base_not_allowed");
}

#[test]
fn rag_reranking_model_is_checked() {
    let mut body = rag_kb(json!({"retrievalConfiguration": {"vectorSearchConfiguration": {"rerankingConfiguration": {
        "type": "BEDROCK_RERANKING_MODEL",
        "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": "cohere.rerank-v3-5:0"}}}}}}));
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap_err();
    assert_eq!(e, ProxyError::ModelNotAllowed { model: "cohere.rerank-v3-5:0".into(), tenant: "acme".into() });
}

#[test]
fn rag_missing_or_malformed_configuration_is_invalid_parameter() {
    let cases = [
        json!({"input": {"text": "q"}}),
        json!({"retrieveAndGenerateConfiguration": null}),
        json!({"retrieveAndGenerateConfiguration": "KNOWLEDGE_BASE"}),
        json!({"retrieveAndGenerateConfiguration": {}}),
        json!({"retrieveAndGenerateConfiguration": {"type": "WEB"}}),
        json!({"retrieveAndGenerateConfiguration": {"type": 1}}),
        json!({"retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE"}}),
        json!({"retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {"modelArn": HAIKU}}}),
        json!({"retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {"knowledgeBaseId": "KBPOOLED01"}}}),
        json!({"retrieveAndGenerateConfiguration": {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": []}}),
        json!({"retrieveAndGenerateConfiguration": {"type": "EXTERNAL_SOURCES"}}),
        json!({"retrieveAndGenerateConfiguration": {"type": "EXTERNAL_SOURCES", "externalSourcesConfiguration": {"modelArn": HAIKU}}}),
        json!({"retrieveAndGenerateConfiguration": {"type": "EXTERNAL_SOURCES", "externalSourcesConfiguration": {"modelArn": HAIKU, "sources": []}}}),
    ];
    for mut body in cases {
        let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{body}");
    }
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut json!([1])).unwrap_err();
    assert_eq!(e.reason(), "invalid_json");
}

#[test]
fn knowledge_base_configuration_is_checked_even_when_type_says_external() {
    let mut body = json!({"retrieveAndGenerateConfiguration": {
        "type": "EXTERNAL_SOURCES",
        "externalSourcesConfiguration": {"modelArn": HAIKU, "sources": [{"sourceType": "BYTE_CONTENT", "byteContent": {"data": "aGk=", "contentType": "text/plain", "identifier": "x"}}]},
        "knowledgeBaseConfiguration": {"knowledgeBaseId": "KBGLOBEX01", "modelArn": HAIKU}
    }});
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap_err();
    assert_eq!(e.reason(), "knowledge_base_not_allowed");
}

fn external(sources: Value) -> Value {
    json!({"input": {"text": "q"}, "retrieveAndGenerateConfiguration": {"type": "EXTERNAL_SOURCES",
        "externalSourcesConfiguration": {"modelArn": HAIKU, "sources": sources}}})
}

#[test]
fn external_s3_sources_under_the_prefixes_pass_unchanged() {
    let mut body = external(json!([
        {"sourceType": "S3", "s3Location": {"uri": "s3://docs/tenants/acme/contract.pdf"}},
        {"sourceType": "S3", "s3Location": {"uri": "s3://docs/public/terms.pdf"}},
        {"sourceType": "BYTE_CONTENT", "byteContent": {"data": "aGk=", "contentType": "text/plain", "identifier": "note.txt"}}
    ]));
    let before = body.clone();
    let note = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap();
    assert_eq!(body, before);
    assert_eq!(note.external_s3_sources, 2);
    assert_eq!(note.knowledge_base_id, None);
    assert_eq!(note.models, vec![HAIKU.to_string()]);
}

#[test]
fn external_source_of_another_tenant_is_location_not_allowed() {
    for uri in [
        "s3://docs/tenants/globex/contract.pdf",
        "s3://docs/tenants/acme-evil/x.pdf",
        "s3://docs/tenants/acme/../globex/x.pdf",
        "s3://docs/tenants/acme/%2e%2e/globex/x.pdf",
        "s3://other-bucket/tenants/acme/x.pdf",
    ] {
        let mut body = external(json!([{"sourceType": "S3", "s3Location": {"uri": uri}}]));
        let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap_err();
        assert_eq!(e.reason(), "location_not_allowed", "{uri}");
    }
}

#[test]
fn external_s3_sources_are_denied_when_no_prefix_is_configured() {
    let mut pol = policy();
    prefixes(&mut pol, &[]);
    let mut body = external(json!([{"sourceType": "S3", "s3Location": {"uri": "s3://docs/tenants/acme/x.pdf"}}]));
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &pol, &keys()), &mut body).unwrap_err();
    assert_eq!(e.reason(), "location_not_allowed");
}

#[test]
fn external_sources_of_unknown_or_inconsistent_types_are_refused() {
    let cases = [
        (json!([{"sourceType": "WEB", "webLocation": {"url": "https://x"}}]), "location_not_allowed"),
        (json!([{"sourceType": "S3"}]), "invalid_parameter"),
        (json!([{"sourceType": "S3", "s3Location": {}}]), "invalid_parameter"),
        (json!([{"sourceType": "S3", "s3Location": "s3://docs/public/x"}]), "invalid_parameter"),
        (json!([{"s3Location": {"uri": "s3://docs/public/x"}}]), "invalid_parameter"),
        (json!([{"sourceType": "BYTE_CONTENT", "s3Location": {"uri": "s3://docs/public/x"}}]), "invalid_parameter"),
        (
            json!([{"sourceType": "BYTE_CONTENT", "s3Location": {"uri": "s3://docs/tenants/globex/x"}}]),
            "location_not_allowed",
        ),
        (json!([5]), "invalid_parameter"),
        (json!({"sourceType": "S3"}), "invalid_parameter"),
    ];
    for (sources, reason) in cases {
        let mut body = external(sources.clone());
        let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap_err();
        assert_eq!(e.reason(), reason, "{sources}");
    }
}

#[test]
fn external_sources_model_is_checked() {
    let mut body = external(json!([{"sourceType": "BYTE_CONTENT", "byteContent": {}}]));
    body["retrieveAndGenerateConfiguration"]["externalSourcesConfiguration"]["modelArn"] = json!(SONNET);
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap_err();
    assert_eq!(e.reason(), "model_not_allowed");
}

#[test]
fn sealed_session_is_unsealed_for_bedrock() {
    let k = keys();
    let sealed = k.seal_rag_session("acme", "alice", "bedrock-session-1");
    let mut body = rag_kb(json!({}));
    body["sessionId"] = json!(sealed);
    let note = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &k), &mut body).unwrap();
    assert!(note.session_unsealed);
    assert_eq!(body["sessionId"], "bedrock-session-1");
}

#[test]
fn sealed_session_of_other_user_is_cross_tenant() {
    let k = keys();
    let sealed = k.seal_rag_session("acme", "bob", "bedrock-session-1");
    let mut body = rag_kb(json!({}));
    body["sessionId"] = json!(sealed);
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &k), &mut body).unwrap_err();
    assert_eq!(e.reason(), "cross_tenant");
}

#[test]
fn raw_bedrock_session_id_is_cross_tenant() {
    let mut body = rag_kb(json!({}));
    body["sessionId"] = json!("3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60");
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap_err();
    assert_eq!(e.reason(), "cross_tenant");
    let mut body = rag_kb(json!({}));
    body["sessionId"] = json!(42);
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap_err();
    assert_eq!(e.reason(), "invalid_parameter");
}

#[test]
fn no_session_id_means_a_new_session() {
    let mut body = rag_kb(json!({}));
    let note = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap();
    assert!(!note.session_unsealed);
    assert!(body.get("sessionId").is_none());
}

// ---- guardrail and model_map ----

const PROFILE: &str = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku";

fn guarded_mapped() -> TenantPolicy {
    let mut p = policy_without_extras();
    p.guardrail = Some(crate::config::Guardrail::new("gr-acme", "1"));
    p.model_map = [(HAIKU.to_string(), PROFILE.to_string())].into_iter().collect();
    p
}

fn acme_guardrail() -> Value {
    json!({"guardrailId": "gr-acme", "guardrailVersion": "1"})
}

#[test]
fn rag_generation_gets_the_tenant_guardrail_and_the_mapped_model() {
    let ext = json!({"modelArn": format!("arn:aws:bedrock:eu-west-1::foundation-model/{HAIKU}"),
                     "sources": [{"sourceType": "S3", "s3Location": {"uri": "s3://docs/public/a.md"}}],
                     "generationConfiguration": {"guardrailConfiguration": {"guardrailId": "gr-globex", "guardrailVersion": "9"},
                                                 "inferenceConfig": {"textInferenceConfig": {"maxTokens": 5}}}});
    let mut body = json!({"input": {"text": "q"}, "retrieveAndGenerateConfiguration": {"type": "EXTERNAL_SOURCES", "externalSourcesConfiguration": ext}});
    let note = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &guarded_mapped(), &keys()), &mut body).unwrap();
    let e = &body["retrieveAndGenerateConfiguration"]["externalSourcesConfiguration"];
    assert_eq!(e["modelArn"], PROFILE);
    assert_eq!(e["generationConfiguration"]["guardrailConfiguration"], acme_guardrail());
    assert_eq!(e["generationConfiguration"]["inferenceConfig"]["textInferenceConfig"]["maxTokens"], 5);
    assert_eq!(note.models, vec![format!("arn:aws:bedrock:eu-west-1::foundation-model/{HAIKU}")], "the requested id");

    let mut body = rag_kb(json!({"generationConfiguration": {"GuardrailConfiguration": {"guardrailId": "x"}}}));
    rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &guarded_mapped(), &keys()), &mut body).unwrap();
    let kb = &body["retrieveAndGenerateConfiguration"]["knowledgeBaseConfiguration"];
    assert_eq!(kb["modelArn"], PROFILE);
    assert_eq!(kb["generationConfiguration"], json!({"guardrailConfiguration": acme_guardrail()}), "case variant dropped");
}

#[test]
fn rag_without_a_tenant_guardrail_leaves_generation_alone() {
    let mut body = rag_kb(json!({}));
    rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &policy(), &keys()), &mut body).unwrap();
    assert!(body["retrieveAndGenerateConfiguration"]["knowledgeBaseConfiguration"].get("generationConfiguration").is_none());
    let mut body = rag_kb(json!({"generationConfiguration": 3}));
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &guarded_mapped(), &keys()), &mut body).unwrap_err();
    assert_eq!(e.reason(), "invalid_parameter");
}

#[test]
fn rag_uncovered_spelling_of_a_mapped_model_is_denied() {
    let mut body = rag_kb(json!({}));
    body["retrieveAndGenerateConfiguration"]["knowledgeBaseConfiguration"]["modelArn"] = json!(format!("{HAIKU}:200k"));
    let e = rewrite_retrieve_and_generate(&Ctx::new(Operation::RetrieveAndGenerate, &alice(), &guarded_mapped(), &keys()), &mut body).unwrap_err();
    assert_eq!(e.reason(), "model_not_allowed");
}

#[test]
fn retrieve_gets_the_tenant_guardrail() {
    let mut body = json!({"retrievalQuery": {"text": "q"}, "guardrailConfiguration": {"guardrailId": "g", "guardrailVersion": "2"}});
    rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &guarded_mapped(), &keys()), &mut body, "KBPOOLED01").unwrap();
    assert_eq!(body["guardrailConfiguration"], acme_guardrail());
    let mut body = json!({"retrievalQuery": {"text": "q"}});
    rewrite_retrieve(&Ctx::new(Operation::Retrieve, &alice(), &guarded_mapped(), &keys()), &mut body, "KBPOOLED01").unwrap();
    assert_eq!(body["guardrailConfiguration"], acme_guardrail());
}
