use super::*;
use serde_json::{json, Value};
use Operation::*;

fn validate(op: Operation, body: &Value) -> Result<Option<Value>, ProxyError> {
    validate_body(op, &Bytes::from(body.to_string()), JsonLimits::default())
}

/// The refusal message (400 invalid_parameter).
fn refused(op: Operation, body: Value) -> String {
    let e = validate(op, &body).unwrap_err();
    assert_eq!((e.status().as_u16(), e.reason()), (400, "invalid_parameter"), "{e:?}");
    match e {
        ProxyError::InvalidParameter(m) => m,
        other => panic!("{other:?}"),
    }
}

fn assert_unknown(op: Operation, body: Value, path_and_struct: &str) {
    let m = refused(op, body);
    assert!(m.starts_with(path_and_struct), "{m}");
    assert!(m.contains("botocore 1.44.5") && m.contains("scripts/update-models.sh"), "{m}");
}

const FILTER: &str = r#"{"equals": {"key": "tenant_id", "value": "acme"}}"#;

fn filter() -> Value {
    serde_json::from_str(FILTER).unwrap()
}

#[test]
fn boto3_bodies_of_every_json_operation_validate() {
    // Bodies boto3 1.44.5 serialises for the calls of tests/e2e (and richer
    // ones): src/validate/testdata/gen_boto3_bodies.py.
    let cases: Vec<Value> = serde_json::from_str(include_str!("testdata/boto3_bodies.json")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for c in &cases {
        let op = Operation::ALL.into_iter().find(|o| o.name() == c["operation"]).unwrap();
        let body = Bytes::from(c["body"].as_str().unwrap().to_string());
        let v = validate_body(op, &body, JsonLimits::default()).unwrap_or_else(|e| panic!("{op:?}: {e:?}\n{body:?}"));
        // GET operations (Get/ListAsyncInvokes) send no body: an empty object.
        let sent = if body.is_empty() { Value::Object(Map::new()) } else { serde_json::from_slice::<Value>(&body).unwrap() };
        assert_eq!(v.unwrap(), sent);
        seen.insert(op.name());
    }
    // GetAgentMemory and DeleteAgentMemory have every member in the path
    // or query: boto3 sends no body (checked just below).
    let bodiless = |op| matches!(op, GetAgentMemory | DeleteAgentMemory);
    for op in Operation::ALL {
        assert!(
            seen.contains(op.name()) || operation_model(op).unwrap().opaque_body() || bodiless(op) || !op.has_aws_model(),
            "{op:?} has no boto3 body"
        );
    }
}

#[test]
fn agent_memory_takes_no_body_members() {
    for op in [GetAgentMemory, DeleteAgentMemory] {
        assert_eq!(validate_body(op, &Bytes::new(), JsonLimits::default()).unwrap(), Some(json!({})));
        for b in [r#"{"memoryId": "x"}"#, r#"{"agentId": "A"}"#, r#"{"anything": 1}"#] {
            let e = validate_body(op, &Bytes::from(b), JsonLimits::default()).unwrap_err();
            assert_eq!(e.reason(), "invalid_parameter", "{op:?} {b}");
        }
    }
}

#[test]
fn demo_bodies_validate() {
    for (op, body) in [
        (Converse, json!({"messages": [{"role": "user", "content": [{"text": "Summarise Q3."}]}], "inferenceConfig": {"maxTokens": 256}})),
        (Converse, json!({"messages": [{"role": "user", "content": [{"text": "What is our refund policy?"}]}],
            "requestMetadata": {"tenant": "globex"}, "guardrailConfig": {"guardrailIdentifier": "none", "guardrailVersion": "DRAFT"}})),
        (Retrieve, json!({"retrievalQuery": {"text": "What is the refund policy?"}, "retrievalConfiguration": {"vectorSearchConfiguration": {
            "numberOfResults": 5, "filter": {"in": {"key": "tenant_id", "value": ["acme", "globex"]}}}}})),
        (InvokeAgent, json!({"inputText": "Where is my refund for order 7?", "sessionState": {"sessionAttributes": {"tenantId": "globex", "channel": "web"}}})),
    ] {
        validate(op, &body).unwrap_or_else(|e| panic!("{op:?}: {e:?}"));
    }
}

#[test]
fn empty_body_is_an_empty_object_and_non_objects_are_invalid_json() {
    for b in ["", " \n"] {
        assert_eq!(validate_body(Converse, &Bytes::from(b), JsonLimits::default()).unwrap(), Some(json!({})));
    }
    for b in ["[1]", "\"x\"", "null", "1"] {
        let e = validate_body(Retrieve, &Bytes::from(b), JsonLimits::default()).unwrap_err();
        assert_eq!(e.reason(), "invalid_json", "{b}");
    }
}

#[test]
fn payload_operations_are_never_parsed() {
    for op in [InvokeModel, InvokeModelWithResponseStream, InvokeEndpoint, InvokeEndpointWithResponseStream, InvokeEndpointAsync] {
        for b in [&b"not json"[..], b"{\"a\":1,\"a\":2}", b"\xff\xfe", b""] {
            assert_eq!(validate_body(op, &Bytes::copy_from_slice(b), JsonLimits::default()).unwrap(), None);
        }
        assert!(validate_value(op, &json!({"anything": 1})).is_ok());
    }
}

#[test]
fn retrieve_other_case_members_refused() {
    let vsc = |extra: Value| {
        let mut v = json!({"numberOfResults": 5, "filter": filter()});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json!({"retrievalQuery": {"text": "q"}, "retrievalConfiguration": {"vectorSearchConfiguration": v}})
    };
    assert!(validate(Retrieve, &vsc(json!({}))).is_ok());
    assert_unknown(
        Retrieve,
        vsc(json!({"Filter": filter()})),
        "retrievalConfiguration.vectorSearchConfiguration.Filter: not a member of KnowledgeBaseVectorSearchConfiguration",
    );
    assert_unknown(
        Retrieve,
        json!({"retrievalQuery": {"text": "q"}, "retrievalConfiguration": {"VectorSearchConfiguration": {"filter": filter()},
            "vectorSearchConfiguration": {"filter": filter()}}}),
        "retrievalConfiguration.VectorSearchConfiguration: not a member of KnowledgeBaseRetrievalConfiguration",
    );
    assert_unknown(
        Retrieve,
        json!({"retrievalQuery": {"text": "q"}, "RetrievalConfiguration": {"vectorSearchConfiguration": {}}}),
        "RetrievalConfiguration: not a member of RetrieveRequest",
    );
    // Inside the filter union too.
    assert_unknown(
        Retrieve,
        vsc(json!({"filter": {"Equals": {"key": "a", "value": 1}}})),
        "retrievalConfiguration.vectorSearchConfiguration.filter.Equals: not a member of RetrievalFilter",
    );
}

#[test]
fn retrieve_and_generate_other_case_members_refused() {
    let kb = json!({"knowledgeBaseId": "KBACME0001", "modelArn": "m"});
    let body = |cfg: Value| json!({"input": {"text": "q"}, "retrieveAndGenerateConfiguration": cfg});
    assert!(validate(RetrieveAndGenerate, &body(json!({"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": kb}))).is_ok());
    for op in [RetrieveAndGenerate, RetrieveAndGenerateStream] {
        assert_unknown(
            op,
            body(json!({"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": kb, "KnowledgeBaseConfiguration":
                {"knowledgeBaseId": "KBGLOBEX01", "modelArn": "m"}})),
            "retrieveAndGenerateConfiguration.KnowledgeBaseConfiguration: not a member of RetrieveAndGenerateConfiguration",
        );
        assert_unknown(
            op,
            body(json!({"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration":
                {"knowledgeBaseId": "KBACME0001", "KnowledgeBaseId": "KBGLOBEX01", "modelArn": "m"}})),
            "retrieveAndGenerateConfiguration.knowledgeBaseConfiguration.KnowledgeBaseId: not a member of KnowledgeBaseRetrieveAndGenerateConfiguration",
        );
    }
}

#[test]
fn invoke_agent_other_case_members_refused() {
    let body = |state: Value| json!({"inputText": "hi", "sessionState": state});
    assert_unknown(
        InvokeAgent,
        body(json!({"KnowledgeBaseConfigurations": [{"knowledgeBaseId": "KBGLOBEX01",
            "retrievalConfiguration": {"vectorSearchConfiguration": {}}}]})),
        "sessionState.KnowledgeBaseConfigurations: not a member of SessionState",
    );
    assert_unknown(
        InvokeAgent,
        body(json!({"sessionAttributes": {"tenantId": "acme"}, "SessionAttributes": {"tenantId": "globex"}})),
        "sessionState.SessionAttributes: not a member of SessionState",
    );
    assert_unknown(
        InvokeAgent,
        body(json!({"files": [{"name": "a", "useCase": "CHAT", "source": {"sourceType": "S3",
            "s3Location": {"uri": "s3://acme/a", "URI": "s3://globex/secret"}}}]})),
        "sessionState.files[0].source.s3Location.URI: not a member of S3ObjectFile",
    );
}

#[test]
fn rerank_configuration_variant_refused() {
    let cfg = json!({"type": "BEDROCK_RERANKING_MODEL", "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": "m"}}});
    let body = |extra: Value| {
        let mut b = json!({"queries": [{"type": "TEXT", "textQuery": {"text": "q"}}], "sources": [], "rerankingConfiguration": cfg});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    assert!(validate(Rerank, &body(json!({}))).is_ok());
    assert_unknown(Rerank, body(json!({"RerankingConfiguration": cfg})), "RerankingConfiguration: not a member of RerankRequest");
    let mut inner = cfg.clone();
    inner["BedrockRerankingConfiguration"] = json!({"modelConfiguration": {"modelArn": "other"}});
    assert_unknown(
        Rerank,
        body(json!({"rerankingConfiguration": inner})),
        "rerankingConfiguration.BedrockRerankingConfiguration: not a member of RerankingConfiguration",
    );
}

#[test]
fn members_bound_to_path_header_or_query_are_not_body_members() {
    let m = refused(Retrieve, json!({"retrievalQuery": {"text": "q"}, "knowledgeBaseId": "KBGLOBEX01"}));
    assert!(m.starts_with("knowledgeBaseId: a member of RetrieveRequest that belongs in the request path"), "{m}");
    let m = refused(Converse, json!({"messages": [], "modelId": "other"}));
    assert!(m.starts_with("modelId: a member of ConverseRequest that belongs in the request path"), "{m}");
    let m = refused(InvokeAgent, json!({"inputText": "hi", "sourceArn": "arn:x"}));
    assert!(m.starts_with("sourceArn: a member of InvokeAgentRequest that belongs in a header"), "{m}");
    let m = refused(ApplyGuardrail, json!({"source": "INPUT", "content": [], "guardrailIdentifier": "g"}));
    assert!(m.contains("belongs in the request path"), "{m}");
}

#[test]
fn wrong_types_refused() {
    let msgs = |content: Value| json!({"messages": [{"role": "user", "content": content}]});
    for (op, body, want) in [
        (Converse, json!({"messages": {}}), "messages: expected an array (Messages), found an object"),
        (Converse, msgs(json!([{"text": 1}])), "messages[0].content[0].text: expected a string"),
        (Converse, json!({"messages": [], "inferenceConfig": {"maxTokens": "5"}}), "inferenceConfig.maxTokens: expected an integer"),
        (Converse, json!({"messages": [], "inferenceConfig": {"maxTokens": 1.5}}), "inferenceConfig.maxTokens: expected an integer"),
        (Converse, json!({"messages": [], "inferenceConfig": {"maxTokens": 2_147_483_648u64}}), "inferenceConfig.maxTokens: out of range"),
        (Converse, json!({"messages": [], "inferenceConfig": {"temperature": "hot"}}), "inferenceConfig.temperature: expected a number"),
        (Converse, json!({"messages": [], "requestMetadata": {"k": 1}}), "requestMetadata.k: expected a string"),
        (Converse, json!({"messages": [], "requestMetadata": []}), "requestMetadata: expected an object"),
        (Converse, msgs(json!([{"image": {"format": "png", "source": {"bytes": "not base64!"}}}])), "messages[0].content[0].image.source.bytes: not valid base64"),
        (Converse, msgs(json!([{"image": {"format": "png", "source": {"bytes": "aGk"}}}])), "messages[0].content[0].image.source.bytes: not valid base64"),
        (Converse, msgs(json!([{"image": {"format": "png", "source": {"bytes": 5}}}])), "messages[0].content[0].image.source.bytes: expected a base64 string"),
        (InvokeAgent, json!({"enableTrace": "true"}), "enableTrace: expected a boolean"),
        (Retrieve, json!({"retrievalQuery": "q"}), "retrievalQuery: expected an object"),
    ] {
        let m = refused(op, body.clone());
        assert!(m.starts_with(want), "{body}: {m}");
    }
    // Long and timestamps, on shapes of the same models.
    let m = model::models().unwrap();
    let long = m.shapes.iter().position(|s| s.kind == model::Kind::Integral { min: i64::MIN, max: i64::MAX }).unwrap();
    assert!(body::check(m, long as u32, &json!(-5)).is_ok());
    assert!(body::check(m, long as u32, &json!(u64::MAX)).is_err());
    let ts = m.shapes.iter().position(|s| s.kind == model::Kind::Timestamp).unwrap() as u32;
    assert!(body::check(m, ts, &json!(1700000000)).is_ok());
    assert!(body::check(m, ts, &json!("2024-01-01T00:00:00Z")).is_ok());
    assert!(body::check(m, ts, &json!(true)).is_err());
}

#[test]
fn blob_base64_is_checked_without_limits_on_size() {
    use base64::Engine;
    let big = base64::engine::general_purpose::STANDARD.encode(vec![7u8; 100_000]);
    assert!(body::is_base64(big.as_bytes()));
    assert!(body::is_base64(b""));
    let mut bad = big.clone().into_bytes();
    bad[50_000] = b'=';
    assert!(!body::is_base64(&bad));
    assert!(!body::is_base64(b"aGk=\n"));
    assert!(!body::is_base64(b"aGl="), "non-canonical trailing bits");
}

#[test]
fn null_refused_for_every_member() {
    for (op, body, path) in [
        (Converse, json!({"messages": null}), "messages"),
        (Converse, json!({"messages": [], "additionalModelRequestFields": null}), "additionalModelRequestFields"),
        (Converse, json!({"messages": [null]}), "messages[0]"),
        (Converse, json!({"messages": [], "requestMetadata": {"a": null}}), "requestMetadata.a"),
        (Retrieve, json!({"retrievalConfiguration": {"vectorSearchConfiguration": {"filter": null}}}), "retrievalConfiguration.vectorSearchConfiguration.filter"),
    ] {
        let m = refused(op, body);
        assert_eq!(m, format!("{path}: null is not a valid value"));
    }
}

#[test]
fn unions_need_exactly_one_member() {
    let with_filter = |f: Value| json!({"retrievalConfiguration": {"vectorSearchConfiguration": {"filter": f}}});
    let m = refused(Retrieve, with_filter(json!({})));
    assert_eq!(m, "retrievalConfiguration.vectorSearchConfiguration.filter: RetrievalFilter is a union: exactly one member must be set, none is");
    let m = refused(Retrieve, with_filter(json!({"equals": {"key": "a", "value": 1}, "notEquals": {"key": "a", "value": 2}})));
    assert!(m.ends_with("RetrievalFilter is a union: exactly one member must be set, 2 are: equals, notEquals"), "{m}");
    let m = refused(Converse, json!({"messages": [{"role": "user", "content": [{"text": "a", "image": {"format": "png", "source": {"bytes": ""}}}]}]}));
    assert!(m.starts_with("messages[0].content[0]: ContentBlock is a union"), "{m}");
}

#[test]
fn documents_are_opaque_but_bounded() {
    let doc = json!({"Anything": [1, {"Filter": null, "x": [[], []]}], "top_k": 5});
    assert!(validate(Converse, &json!({"messages": [], "additionalModelRequestFields": doc})).is_ok());
    // Opaque, not unbounded: the caps of the parse apply inside documents.
    let mut body = b"{\"messages\":[],\"additionalModelRequestFields\":{\"x\":[".to_vec();
    for _ in 0..200_000 {
        body.extend_from_slice(b"[],");
    }
    body.extend_from_slice(b"[]]}}");
    let e = validate_body(Converse, &Bytes::from(body), JsonLimits::default()).unwrap_err();
    assert_eq!(e.reason(), "invalid_parameter");
    assert!(format!("{e:?}").contains("more than 100000 JSON values"), "{e:?}");
    let deep = format!("{{\"messages\":[],\"additionalModelRequestFields\":{}{}}}", "[".repeat(70), "]".repeat(70));
    let e = validate_body(Converse, &Bytes::from(deep), JsonLimits::default()).unwrap_err();
    assert!(format!("{e:?}").contains("deeper than 64"), "{e:?}");
}

#[test]
fn duplicate_keys_refused_before_the_shape_check() {
    let body = br#"{"retrievalQuery":{"text":"q"},"retrievalConfiguration":{"vectorSearchConfiguration":{"filter":{"equals":{"key":"t","value":"acme"}},"filter":{"equals":{"key":"t","value":"globex"}}}}}"#;
    let e = validate_body(Retrieve, &Bytes::from_static(body), JsonLimits::default()).unwrap_err();
    assert_eq!(e, ProxyError::InvalidParameter("retrievalConfiguration.vectorSearchConfiguration.filter: duplicate key".into()));
}

#[test]
fn messages_do_not_echo_long_attacker_strings() {
    let key = "K".repeat(100_000);
    let m = refused(Retrieve, json!({ key.clone(): 1 }));
    assert!(m.len() < 600, "{}", m.len());
    assert!(m.starts_with(&format!("{}...: not a member of RetrieveRequest", "K".repeat(64))), "{m}");
    let m = refused(Converse, json!({"messages": [], "requestMetadata": {"a\nb\u{7}": 1}}));
    assert!(m.starts_with("requestMetadata.a\u{fffd}b\u{fffd}: expected a string"), "{m}");
    // A deep path is cut too.
    let mut v = json!({"x": 1});
    for _ in 0..40 {
        v = json!({ "k".repeat(60): v });
    }
    let m = refused(Converse, json!({"messages": [], "additionalModelRequestFields": 1, "requestMetadata": v}));
    assert!(m.len() < 1200, "{}", m.len());
}

#[test]
fn validate_value_checks_rewritten_bodies() {
    assert!(validate_value(Retrieve, &json!({"retrievalQuery": {"text": "q"}})).is_ok());
    assert_eq!(validate_value(Retrieve, &json!({"x": 1})).unwrap_err().reason(), "invalid_parameter");
    assert_eq!(validate_value(Retrieve, &json!([])).unwrap_err().reason(), "invalid_json");
}

#[test]
fn agentic_retrieve_members_in_other_case_or_twice_are_refused() {
    let kb = r#"{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KB1"}}}"#;
    for b in [
        format!(r#"{{"retrievers": [{kb}], "Retrievers": []}}"#),
        format!(r#"{{"retrievers": [{kb}], "retrievers": []}}"#),
        r#"{"retrievers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KB1", "KnowledgeBaseId": "KB2"}}}]}"#.to_string(),
        r#"{"retrievers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KB1", "knowledgeBaseId": "KB2"}}}]}"#.to_string(),
        format!(r#"{{"retrievers": [{kb}], "userContext": {{"userId": "a"}}, "UserContext": {{"userId": "b"}}}}"#),
        format!(r#"{{"retrievers": [{kb}], "NextToken": "x"}}"#),
        format!(r#"{{"retrievers": [{kb}], "policyConfiguration": {{"BedrockGuardrailConfiguration": {{}}}}}}"#),
        r#"{"retrievers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KB1"}, "webSearch": {}}}]}"#.to_string(),
    ] {
        let e = validate_body(AgenticRetrieveStream, &Bytes::from(b.clone()), JsonLimits::default()).unwrap_err();
        assert_eq!(e.status().as_u16(), 400, "{b}: {e:?}");
    }
}
