use super::*;
use crate::config::TenantPolicy;
use crate::route::Operation;
use crate::test_support::*;
use aws_smithy_types::event_stream::Header;
use serde_json::json;

const HAIKU: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const RERANK: &str = "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0";
const ACME_DOC: &str = "s3://docs/tenants/acme/pricing.pdf";
const GLOBEX_DOC: &str = "s3://docs/tenants/globex/roadmap.pdf";

fn keys() -> SessionKeys {
    SessionKeys::new(b"agentic-tests-agentic-tests-agen")
}

fn run(policy: &TenantPolicy, body: &mut Value) -> Result<AgenticNote, ProxyError> {
    rewrite(&Ctx::new(Operation::AgenticRetrieveStream, &alice(), policy, &keys()), body)
}

fn kb(id: &str) -> Value {
    json!({"configuration": {"knowledgeBase": {"knowledgeBaseId": id}}})
}

fn model_cfg(model: &str) -> Value {
    json!({"foundationModelConfiguration": {"type": "BEDROCK_FOUNDATION_MODEL",
            "bedrockFoundationModelConfiguration": {"modelConfiguration": {"modelArn": model}}},
           "rerankingModelType": "NONE"})
}

fn body_with(retrievers: Value) -> Value {
    json!({"messages": [{"role": "user", "content": {"text": "refund policy?"}}], "retrievers": retrievers,
           "agenticRetrieveConfiguration": model_cfg(HAIKU)})
}

fn filter_of(body: &Value, i: usize) -> &Value {
    &body["retrievers"][i]["configuration"]["knowledgeBase"]["retrievalOverrides"]["filter"]
}

#[test]
fn every_retriever_gets_the_forced_filter_and_the_client_filter_is_anded() {
    let year = json!({"equals": {"key": "year", "value": 2024}});
    let evil = json!({"orAll": [{"equals": {"key": "tenant_id", "value": "globex"}}, {"equals": {"key": "x", "value": 1}}]});
    let mut second = kb("KBPOOLED01");
    second["configuration"]["knowledgeBase"]["retrievalOverrides"] = json!({"filter": evil.clone(), "maxNumberOfResults": 4});
    second["description"] = json!("the shared pool");
    let mut first = kb("KBPOOLED01");
    first["configuration"]["knowledgeBase"]["retrievalOverrides"] = json!({"filter": year.clone()});
    let mut body = body_with(json!([first, second, kb("KBPOOLED01")]));
    let note = run(&policy(), &mut body).unwrap();
    assert_eq!(*filter_of(&body, 0), json!({"andAll": [acme_clause(), groups_clause(), year]}));
    assert_eq!(*filter_of(&body, 1), json!({"andAll": [acme_clause(), groups_clause(), evil]}));
    assert_eq!(*filter_of(&body, 2), json!({"andAll": [acme_clause(), groups_clause()]}));
    let second = &body["retrievers"][1];
    assert_eq!((second["configuration"]["knowledgeBase"]["retrievalOverrides"]["maxNumberOfResults"].clone(), second["description"].clone()), (json!(4), json!("the shared pool")));
    assert_eq!(note.knowledge_bases, ["KBPOOLED01"; 3]);
    assert_eq!(note.client_filters_kept, 2);
    // Without extra filters a lone tenant clause is the filter itself.
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    run(&policy_without_extras(), &mut body).unwrap();
    assert_eq!(*filter_of(&body, 0), acme_clause());
}

#[test]
fn a_knowledge_base_off_the_allowlist_anywhere_is_refused() {
    for id in ["KBGLOBEX01", "kbpooled01", "arn:aws:bedrock:us-east-1:111122223333:knowledge-base/KBPOOLED01", "KBPOOLED0", ""] {
        let mut body = body_with(json!([kb("KBPOOLED01"), kb(id)]));
        let e = run(&policy(), &mut body).unwrap_err();
        assert_eq!(e.reason(), "knowledge_base_not_allowed", "{id:?}");
    }
}

#[test]
fn retrievers_of_another_kind_or_malformed_are_refused() {
    let mut body = body_with(json!([{"configuration": {"webSearch": {"x": 1}}}]));
    assert_eq!(run(&policy(), &mut body).unwrap_err().reason(), "operation_not_allowed");
    let mut body = body_with(json!([{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBPOOLED01"}, "KnowledgeBase": {}}}]));
    assert_eq!(run(&policy(), &mut body).unwrap_err().reason(), "operation_not_allowed");
    for retrievers in [json!([]), json!("KBPOOLED01"), json!([1]), json!([{}]), json!([{"configuration": {"knowledgeBase": {}}}])] {
        let mut body = body_with(retrievers.clone());
        assert_eq!(run(&policy(), &mut body).unwrap_err().reason(), "invalid_parameter", "{retrievers}");
    }
    let mut body = body_with(json!([{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBPOOLED01",
        "retrievalOverrides": {"filter": {"equals": {"key": "tenant_id"}}}}}}]));
    assert_eq!(run(&policy(), &mut body).unwrap_err().reason(), "invalid_parameter", "a malformed client filter");
}

#[test]
fn every_model_is_decided() {
    // Foundation model off the globs.
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    body["agenticRetrieveConfiguration"] = model_cfg("anthropic.claude-3-opus-20240229-v1:0");
    assert_eq!(run(&policy(), &mut body).unwrap_err().reason(), "model_not_allowed");
    // A Mantle configuration beside the Bedrock one is checked too.
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    body["agenticRetrieveConfiguration"]["foundationModelConfiguration"]["mantleFoundationModelConfiguration"] =
        json!({"modelConfiguration": {"modelArn": "openai.gpt-oss-120b-1:0"}});
    assert_eq!(run(&policy(), &mut body).unwrap_err().reason(), "model_not_allowed");
    // Reranking model off the globs, then on them.
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    let cfg = &mut body["agenticRetrieveConfiguration"];
    cfg["rerankingModelType"] = json!("CUSTOM");
    cfg["rerankingConfiguration"] = json!({"type": "BEDROCK_RERANKING_MODEL",
        "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": "arn:aws:bedrock:us-west-2::foundation-model/cohere.rerank-v3-5:0"}}});
    assert_eq!(run(&policy(), &mut body.clone()).unwrap_err().reason(), "model_not_allowed");
    body["agenticRetrieveConfiguration"]["rerankingConfiguration"]["bedrockRerankingConfiguration"]["modelConfiguration"]["modelArn"] = json!(RERANK);
    let note = run(&policy(), &mut body).unwrap();
    assert_eq!(note.models, [HAIKU, RERANK]);
    // Mantle alone, the default project.
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    body["agenticRetrieveConfiguration"]["foundationModelConfiguration"] = json!({"type": "MANTLE_FOUNDATION_MODEL",
        "mantleFoundationModelConfiguration": {"modelConfiguration": {"modelArn": HAIKU, "projectId": "default"}}});
    assert_eq!(run(&policy(), &mut body.clone()).unwrap().models, [HAIKU]);
    body["agenticRetrieveConfiguration"]["foundationModelConfiguration"]["mantleFoundationModelConfiguration"]["modelConfiguration"]["projectId"] = json!("proj_globex");
    assert_eq!(run(&policy(), &mut body).unwrap_err().reason(), "operation_not_allowed");
}

#[test]
fn models_aws_would_choose_are_refused() {
    for (k, v) in [("foundationModelType", "MANAGED"), ("rerankingModelType", "MANAGED"), ("foundationModelType", "OTHER")] {
        let mut body = body_with(json!([kb("KBPOOLED01")]));
        body["agenticRetrieveConfiguration"][k] = json!(v);
        assert_eq!(run(&policy(), &mut body).unwrap_err().reason(), "model_not_allowed", "{k} {v}");
    }
    // Unnamed: 400.
    for cfg in [
        json!({"rerankingModelType": "NONE"}),
        json!({"foundationModelConfiguration": {"type": "BEDROCK_FOUNDATION_MODEL"}, "rerankingModelType": "NONE"}),
        json!({"foundationModelConfiguration": {"type": "BEDROCK_FOUNDATION_MODEL", "bedrockFoundationModelConfiguration": {}}, "rerankingModelType": "NONE"}),
        json!({"foundationModelConfiguration": model_cfg(HAIKU)["foundationModelConfiguration"]}),
        json!({"foundationModelConfiguration": model_cfg(HAIKU)["foundationModelConfiguration"], "rerankingModelType": "CUSTOM"}),
    ] {
        let mut body = body_with(json!([kb("KBPOOLED01")]));
        body["agenticRetrieveConfiguration"] = cfg.clone();
        assert_eq!(run(&policy(), &mut body).unwrap_err().reason(), "invalid_parameter", "{cfg}");
    }
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    body.as_object_mut().unwrap().remove("agenticRetrieveConfiguration");
    assert_eq!(run(&policy(), &mut body).unwrap_err().reason(), "invalid_parameter");
}

#[test]
fn members_without_an_isolation_rule_are_refused_in_any_case() {
    for (k, v) in [
        ("memoryConfiguration", json!({"memoryId": "mem-shared-0123456789"})),
        ("MemoryConfiguration", json!({"memoryId": "mem-shared-0123456789"})),
        ("retrievalInstructionConfiguration", json!({"retrievalInstructionId": "abc"})),
    ] {
        let mut body = body_with(json!([kb("KBPOOLED01")]));
        body[k] = v;
        let e = run(&policy(), &mut body).unwrap_err();
        assert_eq!(e.reason(), "operation_not_allowed", "{k}");
        assert!(e.message().contains("account-wide"), "{e:?}");
    }
}

#[test]
fn the_tenant_guardrail_replaces_the_clients() {
    let mut p = policy();
    p.guardrail = Some(crate::config::Guardrail::new("gr-acme", "1"));
    let acme = json!({"guardrailId": "gr-acme", "guardrailVersion": "1"});
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    assert!(run(&p, &mut body).unwrap().guardrail_forced);
    assert_eq!(body["policyConfiguration"], json!({"bedrockGuardrailConfiguration": acme}));
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    body["policyConfiguration"] = json!({"bedrockGuardrailConfiguration": {"guardrailId": "grglobex", "guardrailVersion": "9"},
                                         "BedrockGuardrailConfiguration": {"guardrailId": "x"}});
    run(&p, &mut body).unwrap();
    assert_eq!(body["policyConfiguration"], json!({"bedrockGuardrailConfiguration": acme}), "case variant dropped");
    // A tenant without a guardrail: the client's is left as sent.
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    body["policyConfiguration"] = json!({"bedrockGuardrailConfiguration": {"guardrailId": "grown", "guardrailVersion": "2"}});
    let before = body["policyConfiguration"].clone();
    assert!(!run(&policy(), &mut body).unwrap().guardrail_forced);
    assert_eq!(body["policyConfiguration"], before);
}

#[test]
fn user_context_comes_from_the_token_only() {
    let mut p = policy();
    p.knowledge_base.user_context = Some(crate::template::Template::compile("{user}@acme.example").unwrap());
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    body["userContext"] = json!({"userId": "ceo@acme.example"});
    let note = run(&p, &mut body).unwrap();
    assert!(note.client_user_context_dropped && note.user_context_forced);
    assert_eq!(body["userContext"], json!({"userId": "alice@acme.example"}));
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    body["userContext"] = json!({"userId": "ceo@acme.example"});
    run(&policy(), &mut body).unwrap();
    assert!(body.get("userContext").is_none());
}

#[test]
fn next_token_must_be_sealed_for_the_same_tenant_and_user() {
    let k = keys();
    let sealed = k.seal_agentic_token("acme", "alice", "bedrock-token-1");
    let mut body = body_with(json!([kb("KBPOOLED01")]));
    body["nextToken"] = json!(sealed);
    assert!(run(&policy(), &mut body).unwrap().token_unsealed);
    assert_eq!(body["nextToken"], "bedrock-token-1");
    for other in [
        k.seal_agentic_token("acme", "bob", "bedrock-token-1"),
        k.seal_agentic_token("globex", "alice", "bedrock-token-1"),
        k.seal_rag_session("acme", "alice", "bedrock-token-1"),
        "bedrock-token-1".to_string(),
        sealed.to_uppercase(),
    ] {
        let mut body = body_with(json!([kb("KBPOOLED01")]));
        body["nextToken"] = json!(other);
        assert_eq!(run(&policy(), &mut body).unwrap_err().reason(), "cross_tenant", "{other}");
    }
}

#[test]
fn the_policy_question_names_every_knowledge_base() {
    let body = RequestBody { bytes: Bytes::new(), json: Some(body_with(json!([kb("KBPOOLED01"), kb("KBPOOLED01")]))) };
    let (who, p, k) = (alice(), policy(), keys());
    let ctx = Ctx::new(Operation::AgenticRetrieveStream, &who, &p, &k);
    let q = policy_question(&ctx, &body).unwrap();
    assert_eq!((q.resource, q.more), (PolicyResource::KnowledgeBase("KBPOOLED01"), vec![PolicyResource::KnowledgeBase("KBPOOLED01")]));
    let body = RequestBody { bytes: Bytes::new(), json: Some(body_with(json!([kb("KBPOOLED01"), kb("KBGLOBEX01")]))) };
    assert_eq!(policy_question(&ctx, &body).unwrap_err().reason(), "knowledge_base_not_allowed");
    let body = RequestBody { bytes: Bytes::new(), json: Some(body_with(json!([]))) };
    assert_eq!(policy_question(&ctx, &body).unwrap_err().reason(), "invalid_parameter");
}

// ---- the answer ----

fn frame(event: &str, payload: &Value) -> Vec<u8> {
    let msg = Message::new(payload.to_string().into_bytes())
        .add_header(Header::new(":message-type", EsHeaderValue::String("event".into())))
        .add_header(Header::new(":event-type", EsHeaderValue::String(event.to_string().into())))
        .add_header(Header::new(":content-type", EsHeaderValue::String("application/json".into())));
    let mut out = Vec::new();
    write_message_to(&msg, &mut out).unwrap();
    out
}

fn events(body: &[u8]) -> Vec<(String, Value)> {
    let mut rest = body;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let msg = read_message_from(&mut rest).unwrap();
        out.push((header(&msg, ":event-type").unwrap().to_string(), serde_json::from_slice(msg.payload()).unwrap()));
    }
    out
}

fn result_item(uri: &str) -> Value {
    json!({"content": {"mimeType": "text/plain", "text": format!("chunk of {uri}")},
           "metadata": {SOURCE_URI_KEY: uri, "x-amz-bedrock-kb-chunk-id": "c1"},
           "sourceRetriever": {"identifier": "KBPOOLED01"}})
}

fn prefixes() -> Vec<String> {
    vec!["s3://docs/tenants/acme/".into(), "s3://docs/public/".into()]
}

#[test]
fn foreign_results_are_dropped_and_citations_renumbered() {
    let result = json!({"results": [result_item(GLOBEX_DOC), result_item(ACME_DOC), {"content": {"mimeType": "text/plain", "text": "no source"},
                                    "sourceRetriever": {"identifier": "KBPOOLED01"}}, result_item("s3://docs/public/faq.md")],
                        "generatedResponse": {"answer": "refunds take 5 days",
                            "citations": [{"startIndex": 0, "endIndex": 7, "references": [{"resultIndex": 3}, {"resultIndex": 1}]}]}});
    let mut s = frame("responseEvent", &json!({"text": "refunds"}));
    let trace = json!({"id": "t1", "timestamp": 1, "attributes": {"message": "retrieved", "status": "SUCCEEDED", "step": "Retrieval",
                       "retrievalResponse": [result_item(GLOBEX_DOC), result_item(ACME_DOC)]}});
    s.extend(frame("traceEvent", &trace));
    s.extend(frame("result", &result));
    let (out, dropped) = filter_stream(&s, &prefixes(), &alice(), &keys()).unwrap();
    assert_eq!(dropped, 3, "two results and one trace result");
    let ev = events(&out);
    assert_eq!(ev[0], ("responseEvent".to_string(), json!({"text": "refunds"})));
    assert_eq!(ev[1].1["attributes"]["retrievalResponse"], json!([result_item(ACME_DOC)]));
    assert_eq!(ev[2].1["results"], json!([result_item(ACME_DOC), result_item("s3://docs/public/faq.md")]));
    assert_eq!(ev[2].1["generatedResponse"]["citations"][0]["references"], json!([{"resultIndex": 1}, {"resultIndex": 0}]));
    // The look-alike prefix is foreign.
    let only = json!({"results": [result_item("s3://docs/tenants/acme-evil/x.pdf")]});
    let (out, dropped) = filter_stream(&frame("result", &only), &prefixes(), &alice(), &keys()).unwrap();
    assert_eq!((dropped, events(&out)[0].1["results"].clone()), (1, json!([])));
}

#[test]
fn an_answer_citing_a_foreign_result_is_withheld() {
    let cite = |i: Value| json!({"results": [result_item(ACME_DOC), result_item(GLOBEX_DOC)],
        "generatedResponse": {"answer": "a", "citations": [{"startIndex": 0, "endIndex": 1, "references": [{"resultIndex": i}]}]}});
    for i in [json!(1), json!(2), json!(-1), json!("0"), json!(null)] {
        let e = filter_stream(&frame("result", &cite(i.clone())), &prefixes(), &alice(), &keys()).unwrap_err();
        assert_eq!(e.reason(), "unauthorized_source_in_answer", "{i}");
    }
    assert!(filter_stream(&frame("result", &cite(json!(0))), &prefixes(), &alice(), &keys()).is_ok());
    let malformed = json!({"results": [], "generatedResponse": {"answer": "a", "citations": {"x": 1}}});
    let e = filter_stream(&frame("result", &malformed), &prefixes(), &alice(), &keys()).unwrap_err();
    assert_eq!(e.reason(), "unauthorized_source_in_answer");
}

#[test]
fn without_prefixes_nothing_is_dropped_but_the_token_is_sealed() {
    let k = keys();
    let result = json!({"results": [result_item(GLOBEX_DOC)], "nextToken": "page-2"});
    let s = frame("result", &result);
    let (out, dropped) = filter_stream(&s, &[], &alice(), &k).unwrap();
    assert_eq!(dropped, 0);
    let ev = events(&out);
    assert_eq!(ev[0].1["results"], result["results"]);
    let sealed = ev[0].1["nextToken"].as_str().unwrap().to_string();
    assert_eq!(k.open_agentic_token("acme", "alice", &sealed).unwrap(), "page-2");
    assert_eq!(k.open_agentic_token("acme", "bob", &sealed).unwrap_err().reason(), "cross_tenant");
    // Exceptions pass as they are.
    let exception = {
        let msg = Message::new(br#"{"message":"throttled"}"#.to_vec())
            .add_header(Header::new(":message-type", EsHeaderValue::String("exception".into())))
            .add_header(Header::new(":exception-type", EsHeaderValue::String("throttlingException".into())));
        let mut out = Vec::new();
        write_message_to(&msg, &mut out).unwrap();
        out
    };
    assert_eq!(&filter_stream(&exception, &prefixes(), &alice(), &k).unwrap().0[..], &exception[..]);
    // A stream with nothing to change goes out byte for byte.
    let plain = [frame("responseEvent", &json!({"text": "hi"})), frame("result", &json!({"results": [result_item(ACME_DOC)]}))].concat();
    assert_eq!(&filter_stream(&plain, &prefixes(), &alice(), &k).unwrap().0[..], &plain[..]);
}

#[test]
fn streams_that_cannot_be_judged_are_withheld() {
    let good = frame("result", &json!({"results": []}));
    let mut bad_crc = good.clone();
    let n = bad_crc.len();
    bad_crc[n - 1] ^= 0xff;
    let not_json = {
        let msg = Message::new(b"not json".to_vec())
            .add_header(Header::new(":message-type", EsHeaderValue::String("event".into())))
            .add_header(Header::new(":event-type", EsHeaderValue::String("result".into())));
        let mut out = Vec::new();
        write_message_to(&msg, &mut out).unwrap();
        out
    };
    for (what, s) in [
        ("truncated", good[..good.len() - 3].to_vec()),
        ("short", good[..3].to_vec()),
        ("crc", bad_crc),
        ("not json", not_json),
        ("results not a list", frame("result", &json!({"results": {"a": 1}}))),
        ("token not a string", frame("result", &json!({"results": [], "nextToken": 7}))),
        ("trace attributes", frame("traceEvent", &json!({"attributes": [1]}))),
        ("other spelling", frame("Result", &json!({"results": [result_item(GLOBEX_DOC)]}))),
        ("unknown event", frame("chunk", &json!({"bytes": "Z2xvYmV4"}))),
    ] {
        let e = filter_stream(&s, &prefixes(), &alice(), &keys()).unwrap_err();
        assert_eq!(e.reason(), "upstream_error", "{what}");
    }
}

#[test]
fn the_largest_event_tree_is_charged() {
    let small = frame("traceEvent", &json!({"attributes": {"retrievalResponse": [result_item(ACME_DOC)]}}));
    let big_payload = json!({"results": (0..50).map(|_| result_item(ACME_DOC)).collect::<Vec<_>>()});
    let big = frame("result", &big_payload);
    let text = frame("responseEvent", &json!({"text": "x".repeat(10_000)}));
    let s = [small.clone(), big, text.clone()].concat();
    let want = crate::budget::json_scan::scan(big_payload.to_string().as_bytes(), &crate::budget::json_scan::JsonLimits::UNLIMITED)
        .unwrap()
        .tree_bytes(big_payload.to_string().len());
    assert_eq!(largest_event_tree(&s), want);
    assert!(largest_event_tree(&s) > largest_event_tree(&small));
    assert_eq!(largest_event_tree(&text), 0, "response text is not parsed into a tree");
    assert_eq!(largest_event_tree(&s[..5]), 0);
}
