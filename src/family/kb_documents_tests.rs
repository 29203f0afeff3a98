use super::*;
use crate::route::Operation;
use crate::session::SessionKeys;
use crate::test_support::*;
use serde_json::json;

const PREFIX: &str = "s3://docs/tenants/acme/";

#[test]
fn s3_urls_in_every_style_become_locations() {
    for (url, want) in [
        ("https://docs.s3.us-east-1.amazonaws.com/tenants/acme/a.pdf?X-Amz-Signature=x", "s3://docs/tenants/acme/a.pdf"),
        ("https://docs.s3.amazonaws.com/tenants/acme/a.pdf", "s3://docs/tenants/acme/a.pdf"),
        ("https://docs.s3-us-west-2.amazonaws.com/tenants/acme/a.pdf", "s3://docs/tenants/acme/a.pdf"),
        ("HTTPS://DOCS.S3.US-EAST-1.AMAZONAWS.COM/tenants/acme/a.pdf", "s3://docs/tenants/acme/a.pdf"),
        ("https://my.docs.s3.dualstack.eu-west-1.amazonaws.com/k", "s3://my.docs/k"),
        ("https://s3.us-east-1.amazonaws.com/docs/tenants/acme/a%20b.pdf", "s3://docs/tenants/acme/a b.pdf"),
        ("https://docs.s3.cn-north-1.amazonaws.com.cn/x/y", "s3://docs/x/y"),
    ] {
        assert_eq!(s3_location_of_url(url).as_deref(), Some(want), "{url}");
    }
    for bad in [
        "http://docs.s3.amazonaws.com/tenants/acme/a.pdf",
        "https://docs.s3.amazonaws.com.evil.example/tenants/acme/a.pdf",
        "https://evil.example/tenants/acme/a.pdf",
        "https://user@docs.s3.amazonaws.com/tenants/acme/a.pdf",
        "https://docs.s3.amazonaws.com:8443/tenants/acme/a.pdf",
        "https://docs.s3.amazonaws.com/",
        "https://s3.amazonaws.com/docs",
        "https://s3.amazonaws.com//tenants/acme/a.pdf",
        "https://amazonaws.com/docs/x",
        "https://docs.s3.amazonaws.com/%ff",
        "s3://docs/tenants/acme/a.pdf",
    ] {
        let got = s3_location_of_url(bad);
        let allowed = got.as_deref().is_some_and(|l| PrefixSet::new(&[PREFIX]).allows_uri(l));
        assert!(!allowed, "{bad} -> {got:?}");
    }
}

#[test]
fn the_answer_passes_only_for_the_tenants_documents() {
    let p = [PREFIX.to_string()];
    let own = json!({"mimeType": "application/pdf", "presignedUrl": "https://docs.s3.us-east-1.amazonaws.com/tenants/acme/a.pdf?X-Amz-Signature=1"});
    let out = filter_document_content(own.to_string().as_bytes(), &p).unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), own);
    for url in [
        "https://docs.s3.us-east-1.amazonaws.com/tenants/globex/a.pdf",
        "https://docs.s3.us-east-1.amazonaws.com/tenants/acme-evil/a.pdf",
        "https://docs.s3.us-east-1.amazonaws.com/tenants/acme/%2e%2e/globex/a.pdf",
        "https://docs.s3.us-east-1.amazonaws.com/tenants/acme/..%2Fglobex/a.pdf",
        "https://other.s3.us-east-1.amazonaws.com/tenants/acme/a.pdf",
        "https://cdn.example/tenants/acme/a.pdf",
    ] {
        let body = json!({"mimeType": "application/pdf", "presignedUrl": url}).to_string();
        assert_eq!(filter_document_content(body.as_bytes(), &p).unwrap_err().reason(), "location_not_allowed", "{url}");
    }
    // The last of duplicated keys is the one judged and the one returned.
    let dup = r#"{"presignedUrl":"https://docs.s3.amazonaws.com/tenants/acme/a","presignedUrl":"https://docs.s3.amazonaws.com/tenants/globex/a"}"#;
    assert_eq!(filter_document_content(dup.as_bytes(), &p).unwrap_err().reason(), "location_not_allowed");
    for broken in [&b"not json"[..], br#"{"mimeType":"x"}"#, br#"{"presignedUrl":7}"#] {
        assert_eq!(filter_document_content(broken, &p).unwrap_err().reason(), "upstream_error");
    }
}

#[test]
fn knowledge_base_arns() {
    assert_eq!(knowledge_base_id_of_arn("arn:aws:bedrock:us-east-1:111122223333:knowledge-base/KBPOOLED01"), Some("KBPOOLED01"));
    for bad in [
        "KBPOOLED01",
        "arn:aws:bedrock:us-east-1:111122223333:agent/KBPOOLED01",
        "arn:aws:bedrock:us-east-1:1111:knowledge-base/KBPOOLED01",
        "arn:aws:s3:us-east-1:111122223333:knowledge-base/KBPOOLED01",
        "arn:aws:bedrock:us-east-1:111122223333:knowledge-base/KB/../X",
        "arn:aws:bedrock:us-east-1:111122223333:knowledge-base/",
    ] {
        assert_eq!(knowledge_base_id_of_arn(bad), None, "{bad}");
    }
}

fn ctx_run<T>(op: Operation, prefixes_list: &[&str], f: impl FnOnce(&Ctx<'_>) -> T) -> T {
    let mut p = policy();
    p.knowledge_base.allowed = vec!["KBPOOLED01".into()];
    prefixes(&mut p, prefixes_list);
    let keys = SessionKeys::new(b"kb-documents-tests-kb-documents-");
    let who = alice();
    f(&Ctx::new(op, &who, &p, &keys))
}

fn body(v: Value) -> RequestBody {
    let bytes = Bytes::from(v.to_string());
    RequestBody { json: Some(v), bytes }
}

#[test]
fn get_document_needs_prefixes_and_an_allowed_knowledge_base() {
    let req = || body(json!({"userContext": {"userId": "someone-else"}, "outputFormat": "RAW"}));
    ctx_run(Operation::GetDocumentContent, &[], |ctx| {
        assert_eq!(rewrite_get_document(ctx, "KBPOOLED01", req()).unwrap_err().reason(), "operation_not_allowed");
    });
    ctx_run(Operation::GetDocumentContent, &[PREFIX], |ctx| {
        assert_eq!(rewrite_get_document(ctx, "KBOTHER001", req()).unwrap_err().reason(), "knowledge_base_not_allowed");
        let (out, post) = rewrite_get_document(ctx, "KBPOOLED01", req()).unwrap();
        // The client's userContext never goes (no user_context configured).
        assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), json!({"outputFormat": "RAW"}));
        assert!(matches!(post, Post::DocumentContent { ref prefixes } if prefixes == &[PREFIX.to_string()]));
    });
}

#[test]
fn generate_query_decides_the_knowledge_base_of_its_arn() {
    let req = |arn: &str| {
        body(json!({
            "queryGenerationInput": {"type": "TEXT", "text": "top customers"},
            "transformationConfiguration": {"mode": "TEXT_TO_SQL", "textToSqlConfiguration": {
                "type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {"knowledgeBaseArn": arn}}}
        }))
    };
    ctx_run(Operation::GenerateQuery, &[], |ctx| {
        let mut kb = None;
        rewrite_generate_query(ctx, req("arn:aws:bedrock:us-east-1:111122223333:knowledge-base/KBPOOLED01"), &mut kb).unwrap();
        assert_eq!(kb.as_deref(), Some("KBPOOLED01"));
        let e = rewrite_generate_query(ctx, req("arn:aws:bedrock:us-east-1:111122223333:knowledge-base/KBOTHER001"), &mut kb).unwrap_err();
        assert_eq!(e.reason(), "knowledge_base_not_allowed");
        // A denial names the knowledge base in the audit record too.
        assert_eq!(kb.as_deref(), Some("KBOTHER001"));
        assert_eq!(rewrite_generate_query(ctx, req("KBPOOLED01"), &mut kb).unwrap_err().reason(), "invalid_parameter");
        let none = body(json!({"queryGenerationInput": {"type": "TEXT", "text": "x"}, "transformationConfiguration": {"mode": "TEXT_TO_SQL"}}));
        assert_eq!(rewrite_generate_query(ctx, none, &mut kb).unwrap_err().reason(), "invalid_parameter");
    });
}
