use super::*;
use serde_json::json;

fn prefixes() -> Vec<String> {
    vec!["s3://docs/tenants/acme/".into(), "s3://docs/public/".into(), "https://wiki.example.com/spaces/ACME/".into()]
}

fn s3(uri: &str) -> Value {
    json!({"type": "S3", "s3Location": {"uri": uri}})
}

fn result(uri: &str, text: &str) -> Value {
    json!({"content": {"text": text}, "location": s3(uri), "score": 0.5, "metadata": {"x-amz-bedrock-kb-source-uri": uri}})
}

#[test]
fn foreign_retrieve_results_are_dropped_and_counted() {
    let body = json!({
        "retrievalResults": [
            result("s3://docs/tenants/acme/a.pdf", "mine"),
            result("s3://docs/tenants/globex/b.pdf", "theirs"),
            result("s3://docs/public/faq.md", "public"),
            result("s3://docs/tenants/acme-evil/c.pdf", "lookalike"),
        ],
        "nextToken": "tok",
        "guardrailAction": "NONE",
        "someFutureField": {"kept": true}
    });
    let (out, dropped) = filter_retrieve_response(body.to_string().as_bytes(), &prefixes()).unwrap();
    assert_eq!(dropped, 2);
    let out: Value = serde_json::from_slice(&out).unwrap();
    let texts: Vec<_> =
        out["retrievalResults"].as_array().unwrap().iter().map(|r| r["content"]["text"].clone()).collect();
    assert_eq!(texts, vec![json!("mine"), json!("public")]);
    assert_eq!(out["nextToken"], "tok");
    assert_eq!(out["someFutureField"], json!({"kept": true}));
    assert_eq!(out["retrievalResults"][0]["metadata"], body["retrievalResults"][0]["metadata"]);
}

#[test]
fn nothing_dropped_returns_the_original_bytes() {
    let raw = br#"{"retrievalResults":[{"content":{"text":"x"},"location":{"type":"S3","s3Location":{"uri":"s3://docs/public/a"}},"score":0.123456789012345678}],"z":1,"a":2}"#;
    let (out, dropped) = filter_retrieve_response(raw, &prefixes()).unwrap();
    assert_eq!(dropped, 0);
    assert_eq!(out, raw.to_vec());
}

#[test]
fn empty_prefixes_mean_no_post_filter() {
    let raw = br#"{"retrievalResults":[{"location":{"type":"S3","s3Location":{"uri":"s3://anything/x"}}}]}"#;
    assert_eq!(filter_retrieve_response(raw, &[]).unwrap(), (raw.to_vec(), 0));
    // Even a body that is not JSON: nothing is inspected.
    assert_eq!(filter_retrieve_response(b"not json", &[]).unwrap(), (b"not json".to_vec(), 0));
    assert!(rag_answer_is_clean(&json!({"citations": [{"retrievedReferences": [{"location": s3("s3://x/y")}]}]}), &[]));
    assert!(citation_event_payload_is_clean(b"garbage", &[]));
}

#[test]
fn results_without_a_location_are_dropped() {
    let body = json!({"retrievalResults": [{"content": {"text": "?"}}, {"content": {}, "location": null}, 7]});
    let (out, dropped) = filter_retrieve_response(body.to_string().as_bytes(), &prefixes()).unwrap();
    assert_eq!(dropped, 3);
    assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), json!({"retrievalResults": []}));
}

#[test]
fn unfilterable_retrieve_responses_are_withheld() {
    for raw in [&b"not json"[..], b"[1,2]", br#"{"retrievalResults": {"a": 1}}"#, b"", br#"{"retrievalResults": "x"}"#]
    {
        let e = filter_retrieve_response(raw, &prefixes()).unwrap_err();
        assert_eq!(e.reason(), "upstream_error", "{raw:?}");
    }
    // No results at all is fine.
    assert_eq!(filter_retrieve_response(br#"{"nextToken":null}"#, &prefixes()).unwrap().1, 0);
}

#[test]
fn every_location_kind_is_checked_by_its_own_field() {
    let f = SourceFilter::new(&prefixes());
    let allowed = [
        json!({"type": "WEB", "webLocation": {"url": "https://wiki.example.com/spaces/ACME/p1"}}),
        json!({"type": "CONFLUENCE", "confluenceLocation": {"url": "https://wiki.example.com/spaces/ACME/p2"}}),
        json!({"type": "SALESFORCE", "salesforceLocation": {"url": "https://wiki.example.com/spaces/ACME/sf"}}),
        json!({"type": "SHAREPOINT", "sharePointLocation": {"url": "https://wiki.example.com/spaces/ACME/sp"}}),
        json!({"type": "ONEDRIVE", "oneDriveLocation": {"url": "https://wiki.example.com/spaces/ACME/od"}}),
        json!({"type": "GOOGLEDRIVE", "googleDriveLocation": {"url": "https://wiki.example.com/spaces/ACME/gd"}}),
        json!({"type": "KENDRA", "kendraDocumentLocation": {"uri": "s3://docs/tenants/acme/k"}}),
        s3("s3://docs/tenants/acme/x"),
    ];
    for loc in allowed {
        assert!(f.allows_location(&loc), "{loc}");
    }
    let foreign = [
        json!({"type": "WEB", "webLocation": {"url": "https://wiki.example.com/spaces/GLOBEX/p1"}}),
        json!({"type": "CONFLUENCE", "confluenceLocation": {"url": "https://evil.example/spaces/ACME/p"}}),
        json!({"type": "SALESFORCE", "salesforceLocation": {"url": "https://acme.my.salesforce.com/x"}}),
        json!({"type": "SHAREPOINT", "sharePointLocation": {"url": "https://wiki.example.com/spaces/ACMEX/"}}),
        json!({"type": "KENDRA", "kendraDocumentLocation": {"uri": "s3://docs/tenants/globex/k"}}),
        // Wrong member name for the declared type.
        json!({"type": "WEB", "webLocation": {"uri": "https://wiki.example.com/spaces/ACME/p1"}}),
        // Declared type does not match the field present.
        json!({"type": "WEB", "s3Location": {"uri": "s3://docs/tenants/acme/x"}}),
        // Allowed declared field plus a foreign second location.
        json!({"type": "S3", "s3Location": {"uri": "s3://docs/tenants/acme/x"}, "webLocation": {"url": "https://evil.example/"}}),
        // Unknown extra location member.
        json!({"type": "S3", "s3Location": {"uri": "s3://docs/tenants/acme/x"}, "ftpLocation": {"url": "ftp://x"}}),
    ];
    for loc in foreign {
        assert!(!f.allows_location(&loc), "{loc}");
    }
}

#[test]
fn sql_and_unknown_location_types_are_foreign() {
    let f = SourceFilter::new(&prefixes());
    for loc in [
        json!({"type": "SQL", "sqlLocation": {"query": "SELECT * FROM docs WHERE tenant = 'acme'"}}),
        json!({"type": "FTP", "ftpLocation": {"url": "s3://docs/tenants/acme/x"}}),
        json!({"s3Location": {"uri": "s3://docs/tenants/acme/x"}}),
        json!({"type": 3, "s3Location": {"uri": "s3://docs/tenants/acme/x"}}),
        json!({"type": "s3", "s3Location": {"uri": "s3://docs/tenants/acme/x"}}),
        json!({"type": "S3"}),
        json!({"type": "S3", "s3Location": {"uri": 5}}),
        json!({"type": "S3", "s3Location": "s3://docs/tenants/acme/x"}),
        json!("s3://docs/tenants/acme/x"),
        json!(null),
    ] {
        assert!(!f.allows_location(&loc), "{loc}");
    }
}

#[test]
fn custom_document_ids_are_foreign_unless_under_a_prefix() {
    let f = SourceFilter::new(&["custom/acme/".to_string()]);
    assert!(f.allows_location(&json!({"type": "CUSTOM", "customDocumentLocation": {"id": "custom/acme/doc-1"}})));
    assert!(!f.allows_location(&json!({"type": "CUSTOM", "customDocumentLocation": {"id": "doc-1"}})));
    assert!(!f.allows_location(&json!({"type": "CUSTOM", "customDocumentLocation": {"id": "custom/acme-evil/doc"}})));
    let f = SourceFilter::new(&prefixes());
    assert!(!f.allows_location(&json!({"type": "CUSTOM", "customDocumentLocation": {"id": "acme-doc-1"}})));
}

#[test]
fn null_companion_fields_are_ignored() {
    let f = SourceFilter::new(&prefixes());
    let loc = json!({"type": "S3", "s3Location": {"uri": "s3://docs/public/a"}, "webLocation": null});
    assert!(f.allows_location(&loc));
}

fn rag(uris: &[&str]) -> Value {
    json!({
        "output": {"text": "answer"},
        "sessionId": "s",
        "citations": [{
            "generatedResponsePart": {"textResponsePart": {"text": "answer", "span": {"start": 0, "end": 6}}},
            "retrievedReferences": uris.iter().map(|u| json!({"content": {"text": "c"}, "location": s3(u)})).collect::<Vec<_>>()
        }]
    })
}

#[test]
fn rag_answer_citing_only_allowed_sources_is_clean() {
    assert!(rag_answer_is_clean(&rag(&["s3://docs/tenants/acme/a", "s3://docs/public/b"]), &prefixes()));
    assert!(rag_answer_is_clean(&json!({"output": {"text": "no citations"}}), &prefixes()));
    assert!(rag_answer_is_clean(&json!({"citations": [{"retrievedReferences": []}], "x": 1}), &prefixes()));
}

#[test]
fn rag_answer_citing_another_tenant_is_unclean() {
    assert!(!rag_answer_is_clean(&rag(&["s3://docs/tenants/acme/a", "s3://docs/tenants/globex/b"]), &prefixes()));
    assert!(!rag_answer_is_clean(&rag(&["s3://docs/tenants/acme/../globex/b"]), &prefixes()));
}

#[test]
fn malformed_rag_answers_are_unclean() {
    for body in [
        json!([1]),
        json!("x"),
        json!({"citations": {"retrievedReferences": []}}),
        json!({"citations": [5]}),
        json!({"citations": [{"retrievedReferences": {"location": {}}}]}),
        json!({"citations": [{"retrievedReferences": [{"content": {"text": "no location"}}]}]}),
    ] {
        assert!(!rag_answer_is_clean(&body, &prefixes()), "{body}");
    }
}

#[test]
fn stream_citation_event_checks_both_reference_lists() {
    let ok = |u: &str| json!([{"content": {"text": "c"}, "location": s3(u)}]);
    let good = json!({
        "citation": {"retrievedReferences": ok("s3://docs/public/a")},
        "generatedResponsePart": {"textResponsePart": {"text": "t"}},
        "retrievedReferences": ok("s3://docs/tenants/acme/b")
    });
    assert!(citation_event_is_clean(&good, &prefixes()));
    assert!(citation_event_payload_is_clean(good.to_string().as_bytes(), &prefixes()));

    let bad_nested = json!({"citation": {"retrievedReferences": ok("s3://docs/tenants/globex/a")}, "retrievedReferences": ok("s3://docs/public/b")});
    assert!(!citation_event_is_clean(&bad_nested, &prefixes()));
    let bad_top = json!({"citation": {"retrievedReferences": ok("s3://docs/public/a")}, "retrievedReferences": ok("s3://docs/tenants/globex/b")});
    assert!(!citation_event_is_clean(&bad_top, &prefixes()));
    let only_top = json!({"retrievedReferences": ok("s3://docs/public/b")});
    assert!(citation_event_is_clean(&only_top, &prefixes()));
}

#[test]
fn malformed_citation_events_are_unclean() {
    for raw in [&b"{"[..], b"[]", b"\"x\"", br#"{"citation": 5}"#, br#"{"retrievedReferences": {}}"#, b""] {
        assert!(!citation_event_payload_is_clean(raw, &prefixes()), "{raw:?}");
    }
}

#[test]
fn agent_attribution_citations_use_the_same_check() {
    let f = SourceFilter::new(&prefixes());
    let chunk = rag(&["s3://docs/tenants/globex/x"]);
    assert!(!f.citations_are_clean(chunk.get("citations")));
    assert!(f.citations_are_clean(None));
}

#[test]
fn helpers_match_the_source_filter() {
    assert!(uri_allowed("s3://docs/public/x", &prefixes()));
    assert!(!uri_allowed("s3://docs/private/x", &prefixes()));
    assert!(location_allowed(&s3("s3://docs/public/x"), &prefixes()));
    assert!(!location_allowed(&s3("s3://docs/public/x"), &[]));
}
