use super::*;
use crate::family::{self, Ctx, Notes};
use crate::route::{classify, Route};
use crate::test_support::*;
use http::Method;
use serde_json::json;

const FLOW: &str = "FLOW123456";
const ALIAS: &str = "ALIAS12345";
const OTHER_FLOW: &str = "FLOWABCDEF";

fn keys() -> SessionKeys {
    SessionKeys::new(b"flows-tests-flows-tests-flows-te")
}

fn flows_policy() -> crate::config::TenantPolicy {
    let mut p = policy();
    p.flows.allowed =
        ["FLOW123456/ALIAS12345", "FLOWABCDEF/*"].iter().map(|e| FlowGrant::parse(e).unwrap()).collect();
    p
}

fn bob() -> Principal {
    let mut p = alice();
    p.user = "bob".into();
    p
}

fn globex_alice() -> Principal {
    let mut p = alice();
    p.tenant = "globex".into();
    p
}

/// Classifies, authorizes and runs `rewrite_query` and `before_body`, as
/// the pipeline does before the body is read.
fn front(who: &Principal, method: Method, path: &str, query: Option<&str>) -> Result<Route, ProxyError> {
    let (policy, keys) = (flows_policy(), keys());
    let mut route = classify(&method, path)?;
    route.query = query.map(str::to_string);
    let ctx = Ctx::new(route.op, who, &policy, &keys);
    family::authorize(&ctx, &route)?;
    family::rewrite_query(&ctx, &mut route)?;
    family::before_body(&ctx, &mut route, &mut HeaderMap::new(), &mut Notes::default())?;
    Ok(route)
}

fn own_id(who: &Principal, name: &str) -> String {
    keys().flow_execution_name(&who.tenant, &who.user, name)
}

#[test]
fn grants_parse_as_flow_and_alias_globs() {
    let g = FlowGrant::parse("FLOWABCDEF/*").unwrap();
    assert!(g.flow.matches("FLOWABCDEF") && g.alias.matches("ANYALIAS01"));
    assert_eq!(g.source(), "FLOWABCDEF/*");
    for bad in ["FLOWABCDEF", "FLOW/A/B", "/A", "F/", "arn:aws:bedrock:us-east-1:111122223333:flow/FLOWABCDEF/A", "F-1/A", "F/A B", ""] {
        assert!(FlowGrant::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn allowed_aliases_pass_others_are_flow_not_allowed() {
    for (flow, alias) in [(FLOW, ALIAS), (OTHER_FLOW, "ANYALIAS01"), (OTHER_FLOW, "TSTALIASID")] {
        let r = front(&alice(), Method::POST, &format!("/flows/{flow}/aliases/{alias}"), None).unwrap();
        assert_eq!(r.op, Operation::InvokeFlow);
    }
    for (flow, alias) in [(FLOW, "TSTALIASID"), (FLOW, "ALIAS12346"), ("FLOW999999", ALIAS), ("flow123456", ALIAS)] {
        for path in [format!("/flows/{flow}/aliases/{alias}"), format!("/flows/{flow}/aliases/{alias}/executions")] {
            let e = front(&alice(), Method::POST, &path, None).unwrap_err();
            assert_eq!(e, ProxyError::FlowNotAllowed { flow: format!("{flow}/{alias}"), tenant: "acme".into(), arn: false });
        }
    }
    // A tenant without flows: everything refused.
    let (policy, keys) = (policy(), keys());
    let route = classify(&Method::POST, "/flows/FLOW123456/aliases/ALIAS12345").unwrap();
    let e = family::authorize(&Ctx::new(route.op, &alice(), &policy, &keys), &route).unwrap_err();
    assert_eq!(e.reason(), "flow_not_allowed");
}

#[test]
fn arns_for_flow_or_alias_are_refused_malformed_ids_are_400() {
    let flow_arn = "arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aflow%2FFLOW123456";
    let alias_arn = "arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aflow%2FFLOW123456%2Falias%2FALIAS12345";
    for path in [format!("/flows/{flow_arn}/aliases/{ALIAS}"), format!("/flows/{FLOW}/aliases/{alias_arn}")] {
        let e = front(&alice(), Method::POST, &path, None).unwrap_err();
        assert!(matches!(e, ProxyError::FlowNotAllowed { arn: true, .. }), "{path}: {e:?}");
        assert!(e.message().contains("never by ARN"), "{}", e.message());
    }
    let e = front(&alice(), Method::GET, &format!("/flows/{flow_arn}/executions"), None).unwrap_err();
    assert_eq!(e.reason(), "flow_not_allowed");
    for path in ["/flows/FLOW12345/aliases/ALIAS12345", "/flows/FLOW1234567/aliases/ALIAS12345", "/flows/FLOW12345-/aliases/A", "/flows/FLOW123456/aliases/ALIAS-1"] {
        let e = front(&alice(), Method::POST, path, None).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{path}");
    }
}

#[test]
fn executions_of_the_caller_pass_as_bare_ids() {
    let id = own_id(&alice(), "order-42");
    assert!(id.starts_with("order-42-") && id.len() == 8 + 21, "{id}");
    let arn = format!("arn:aws:bedrock:us-east-1:111122223333:flow/{FLOW}/alias/{ALIAS}/execution/{id}");
    for named in [id.clone(), crate::route::encode_label(&arn)] {
        for (m, tail) in [(Method::GET, ""), (Method::POST, "/stop"), (Method::GET, "/events"), (Method::GET, "/flowsnapshot")] {
            let path = format!("/flows/{FLOW}/aliases/{ALIAS}/executions/{named}{tail}");
            let r = front(&alice(), m.clone(), &path, None).unwrap();
            assert_eq!(r.target, Target::FlowExecution { flow: FLOW.into(), alias: ALIAS.into(), execution: id.clone() });
            assert_eq!(r.upstream_path(), format!("/flows/{FLOW}/aliases/{ALIAS}/executions/{id}{tail}"), "{m} {path}");
        }
    }
}

#[test]
fn executions_of_another_user_or_tenant_are_cross_tenant() {
    for other in [bob(), globex_alice()] {
        let theirs = own_id(&other, "order-42");
        let path = format!("/flows/{FLOW}/aliases/{ALIAS}/executions/{theirs}");
        let e = front(&alice(), Method::GET, &path, None).unwrap_err();
        assert_eq!(e.reason(), "cross_tenant", "{path}");
    }
    let mine = own_id(&alice(), "order-42");
    let (name, tag) = mine.split_at(9);
    for forged in [
        "order-42".to_string(),
        "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60".to_string(),
        format!("{name}{}", tag.to_ascii_uppercase()),
        format!("order-43-{tag}"),
        format!("x{mine}"),
        mine[..mine.len() - 1].to_string(),
        format!("{}{}", &mine[..mine.len() - 1], if mine.ends_with('a') { 'b' } else { 'a' }),
    ] {
        let e = front(&alice(), Method::GET, &format!("/flows/{FLOW}/aliases/{ALIAS}/executions/{forged}"), None).unwrap_err();
        assert_eq!(e.reason(), "cross_tenant", "{forged}");
    }
}

#[test]
fn execution_arns_must_name_the_paths_flow_and_alias() {
    let id = own_id(&alice(), "run");
    let arn = |f: &str, a: &str| {
        crate::route::encode_label(&format!("arn:aws:bedrock:us-east-1:111122223333:flow/{f}/alias/{a}/execution/{id}"))
    };
    for (path_flow, path_alias, named) in [
        (OTHER_FLOW, "ANYALIAS01", arn(FLOW, ALIAS)),
        (FLOW, ALIAS, arn(OTHER_FLOW, ALIAS)),
        (FLOW, ALIAS, arn(FLOW, "ALIAS12346")),
    ] {
        let e = front(&alice(), Method::GET, &format!("/flows/{path_flow}/aliases/{path_alias}/executions/{named}"), None)
            .unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{named}");
    }
    for bad in [
        format!("arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aflow%2F{FLOW}%2Falias%2F{ALIAS}%2Fexecution%2F{id}%2Fx"),
        format!("arn%3Aaws-cn%3Abedrock%3Aus-east-1%3A111122223333%3Aflow%2F{FLOW}%2Falias%2F{ALIAS}%2Fexecution%2F{id}"),
        format!("arn%3Aaws%3Abedrock%3Aus-east-1%3A1111%3Aflow%2F{FLOW}%2Falias%2F{ALIAS}%2Fexecution%2F{id}"),
        "a.b".to_string(),
        "a_b".to_string(),
        "a".repeat(37),
    ] {
        let e = front(&alice(), Method::GET, &format!("/flows/{FLOW}/aliases/{ALIAS}/executions/{bad}"), None).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{bad}");
    }
    // The allowlist is decided before the execution: an alias outside it is
    // flow_not_allowed whoever's execution is named.
    let e = front(&alice(), Method::GET, &format!("/flows/{FLOW}/aliases/TSTALIASID/executions/{id}"), None).unwrap_err();
    assert_eq!(e.reason(), "flow_not_allowed");
}

#[test]
fn list_executions_query_is_checked_and_its_alias_decided() {
    let path = format!("/flows/{FLOW}/executions");
    let r = front(&alice(), Method::GET, &path, Some("flowAliasIdentifier=ALIAS12345&maxResults=5&nextToken=a%2Fb")).unwrap();
    assert_eq!(r.query.as_deref(), Some("flowAliasIdentifier=ALIAS12345&maxResults=5&nextToken=a%2Fb"));
    assert_eq!(r.target, Target::FlowExecutions { flow: FLOW.into(), alias: Some(ALIAS.into()) });
    assert_eq!(r.resource(), format!("{FLOW}/{ALIAS}"));
    assert_eq!(front(&alice(), Method::GET, &path, None).unwrap().target, Target::FlowExecutions { flow: FLOW.into(), alias: None });
    let e = front(&alice(), Method::GET, &path, Some("flowAliasIdentifier=TSTALIASID")).unwrap_err();
    assert_eq!(e.reason(), "flow_not_allowed");
    let e = front(&alice(), Method::GET, "/flows/FLOW999999/executions", None).unwrap_err();
    assert_eq!(e.reason(), "flow_not_allowed");
    let e = front(&alice(), Method::GET, &path, Some("flowAliasIdentifier=arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aflow%2FFLOW123456%2Falias%2FALIAS12345")).unwrap_err();
    assert!(matches!(e, ProxyError::FlowNotAllowed { arn: true, .. }), "{e:?}");
    for q in [
        "maxResults=5&maxResults=6",
        "flowAliasIdentifier=ALIAS12345&flowAliasIdentifier=TSTALIASID",
        "maxResults=0",
        "maxResults=1001",
        "maxResults=%2B5",
        "maxResults=five",
        "nextToken=",
        "nextToken=a+b",
        "flowAliasIdentifier=ALIAS-1",
        "flowAliasIdentifier=",
        "eventType=Node",
        "FlowAliasIdentifier=ALIAS12345",
        "maxResults=%FF",
    ] {
        let e = front(&alice(), Method::GET, &path, Some(q)).unwrap_err();
        assert_eq!(e.reason(), "invalid_parameter", "{q}");
    }
    let events = format!("/flows/{FLOW}/aliases/{ALIAS}/executions/{}/events", own_id(&alice(), "r1"));
    assert!(front(&alice(), Method::GET, &events, Some("eventType=Node&maxResults=10&nextToken=t")).is_ok());
    for q in ["eventType=Node&eventType=Flow", "eventType=node", "eventType=Other", "flowAliasIdentifier=ALIAS12345"] {
        assert_eq!(front(&alice(), Method::GET, &events, Some(q)).unwrap_err().reason(), "invalid_parameter", "{q}");
    }
}

fn ctx_for<'a>(op: Operation, who: &'a Principal, p: &'a crate::config::TenantPolicy, k: &'a SessionKeys) -> Ctx<'a> {
    Ctx::new(op, who, p, k)
}

#[test]
fn start_binds_the_clients_name_or_a_random_one() {
    let (p, k, who) = (flows_policy(), keys(), alice());
    let ctx = ctx_for(Operation::StartFlowExecution, &who, &p, &k);
    let mut v = json!({"flowExecutionName": "order-42", "inputs": [{"nodeName": "FlowInputNode", "content": {"document": "hi"}}]});
    rewrite_start(&ctx, &mut v, || unreachable!("a name was given")).unwrap();
    let sent = v["flowExecutionName"].as_str().unwrap().to_string();
    assert_eq!(sent, k.flow_execution_name("acme", "alice", "order-42"));
    assert!(sent.len() <= 36 && is_execution_id(&sent), "{sent}");
    assert!(k.is_own_flow_execution("acme", "alice", &sent));
    assert!(!k.is_own_flow_execution("acme", "bob", &sent) && !k.is_own_flow_execution("globex", "alice", &sent));
    assert_eq!(v["inputs"][0]["content"]["document"], "hi");
    let mut v = json!({"inputs": []});
    rewrite_start(&ctx, &mut v, || "fixedrandom1".into()).unwrap();
    assert_eq!(v["flowExecutionName"], k.flow_execution_name("acme", "alice", "fixedrandom1"));
    let a = random_name();
    assert!(a.len() == 12 && a.bytes().all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b)), "{a}");
    assert_ne!(a, random_name());
    let longest = "a".repeat(FLOW_NAME_MAX);
    let mut v = json!({"flowExecutionName": longest});
    rewrite_start(&ctx, &mut v, random_name).unwrap();
    assert_eq!(v["flowExecutionName"].as_str().unwrap().len(), 36);
    for bad in [json!("a".repeat(FLOW_NAME_MAX + 1)), json!(""), json!("a b"), json!("a_b"), json!("a.b"), json!(7), json!(["x"])] {
        let mut v = json!({"flowExecutionName": bad});
        assert_eq!(rewrite_start(&ctx, &mut v, random_name).unwrap_err().reason(), "invalid_parameter", "{bad}");
    }
}

#[test]
fn invoke_execution_ids_are_sealed_and_opened() {
    let (p, k, who) = (flows_policy(), keys(), alice());
    let ctx = ctx_for(Operation::InvokeFlow, &who, &p, &k);
    let bedrock = "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60";
    let sealed = k.seal_flow_invocation("acme", "alice", bedrock);
    assert!(sealed.len() <= 100 && sealed.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)));
    let mut v = json!({"executionId": sealed, "inputs": [], "enableTrace": true});
    rewrite_invoke(&ctx, &mut v).unwrap();
    assert_eq!(v, json!({"executionId": bedrock, "inputs": [], "enableTrace": true}));
    let mut v = json!({"inputs": []});
    rewrite_invoke(&ctx, &mut v).unwrap();
    assert_eq!(v, json!({"inputs": []}));
    let rag = k.seal_rag_session("acme", "alice", bedrock);
    for foreign in [
        k.seal_flow_invocation("acme", "bob", bedrock),
        k.seal_flow_invocation("globex", "alice", bedrock),
        bedrock.to_string(),
        rag,
        format!("{bedrock}.{}", "0".repeat(32)),
    ] {
        let mut v = json!({"executionId": foreign, "inputs": []});
        assert_eq!(rewrite_invoke(&ctx, &mut v).unwrap_err().reason(), "cross_tenant", "{foreign}");
    }
    let mut v = json!({"executionId": 5});
    assert_eq!(rewrite_invoke(&ctx, &mut v).unwrap_err().reason(), "invalid_parameter");
}

#[test]
fn the_invoke_response_header_is_sealed_for_the_caller() {
    let (p, k, who) = (flows_policy(), keys(), alice());
    let ctx = ctx_for(Operation::InvokeFlow, &who, &p, &k);
    let mut h = HeaderMap::new();
    h.insert(EXECUTION_HEADER, HeaderValue::from_static("exec-1"));
    family::response_headers(&ctx, &Post::Stream, &mut h);
    assert_eq!(h[EXECUTION_HEADER], k.seal_flow_invocation("acme", "alice", "exec-1").as_str());
    assert_eq!(k.open_flow_invocation("acme", "alice", h[EXECUTION_HEADER].to_str().unwrap()).unwrap(), "exec-1");
    let mut h = HeaderMap::new();
    family::response_headers(&ctx, &Post::Stream, &mut h);
    assert!(h.get(EXECUTION_HEADER).is_none());
    let mut h = HeaderMap::new();
    h.insert(EXECUTION_HEADER, HeaderValue::from_bytes(b"\xffx").unwrap());
    family::response_headers(&ctx, &Post::Stream, &mut h);
    assert!(h.get(EXECUTION_HEADER).is_none());
}

#[test]
fn the_list_page_keeps_only_the_callers_executions_of_allowed_aliases() {
    let k = keys();
    let grants = flows_policy().flows.allowed;
    let arn = |f: &str, a: &str, id: &str| format!("arn:aws:bedrock:us-east-1:111122223333:flow/{f}/alias/{a}/execution/{id}");
    let summary = |arn: String| json!({"executionArn": arn, "flowIdentifier": FLOW, "flowAliasIdentifier": ALIAS, "flowVersion": "1", "status": "Running", "createdAt": "2026-12-04T20:00:00Z"});
    let mine = own_id(&alice(), "a1");
    let mine2 = own_id(&alice(), "a2");
    let body = json!({"flowExecutionSummaries": [
        summary(arn(FLOW, ALIAS, &mine)),
        summary(arn(FLOW, ALIAS, &own_id(&bob(), "a1"))),
        summary(arn(FLOW, ALIAS, &own_id(&globex_alice(), "a1"))),
        summary(arn(FLOW, ALIAS, "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60")),
        summary(arn(FLOW, "TSTALIASID", &mine2)),
        summary(arn(OTHER_FLOW, ALIAS, &mine2)),
        json!({"flowIdentifier": FLOW, "status": "Running"}),
        summary(format!("{}/x", arn(FLOW, ALIAS, &mine2))),
        summary(arn(FLOW, ALIAS, &mine2)),
    ], "nextToken": "n2"});
    let (out, dropped) = filter_executions(body.to_string().as_bytes(), FLOW, None, &grants, &alice(), &k).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(dropped, 7);
    assert_eq!(v, json!({"flowExecutionSummaries": [summary(arn(FLOW, ALIAS, &mine)), summary(arn(FLOW, ALIAS, &mine2))], "nextToken": "n2"}));
    // With an alias asked for, other aliases go too.
    let body = json!({"flowExecutionSummaries": [summary(arn(OTHER_FLOW, "ALIASONE01", &mine)), summary(arn(OTHER_FLOW, "ALIASTWO02", &mine2))]});
    let (out, dropped) = filter_executions(body.to_string().as_bytes(), OTHER_FLOW, Some("ALIASTWO02"), &grants, &alice(), &k).unwrap();
    assert_eq!(dropped, 1);
    assert_eq!(serde_json::from_slice::<Value>(&out).unwrap()["flowExecutionSummaries"][0]["executionArn"], arn(OTHER_FLOW, "ALIASTWO02", &mine2));
    let (out, dropped) = filter_executions(b"{}", FLOW, None, &grants, &alice(), &k).unwrap();
    assert_eq!((&out[..], dropped), (&b"{}"[..], 0));
    for bad in [&b"nope"[..], b"[]", br#"{"flowExecutionSummaries": {}}"#] {
        let e = filter_executions(bad, FLOW, None, &grants, &alice(), &k).unwrap_err();
        assert_eq!(e.reason(), "upstream_error");
    }
}

#[test]
fn policy_questions_name_the_flow_alias() {
    let (p, k, who) = (flows_policy(), keys(), alice());
    let body = RequestBody { bytes: Bytes::new(), json: None };
    let headers = HeaderMap::new();
    let route = front(&who, Method::POST, &format!("/flows/{FLOW}/aliases/{ALIAS}"), None).unwrap();
    let ctx = ctx_for(route.op, &who, &p, &k);
    let q = family::policy_question(&ctx, &route, &headers, &body).unwrap();
    assert_eq!(q.resource, PolicyResource::Flow { flow: FLOW, alias: Some(ALIAS) });
    let route = front(&who, Method::GET, &format!("/flows/{FLOW}/executions"), None).unwrap();
    let ctx = ctx_for(route.op, &who, &p, &k);
    let q = family::policy_question(&ctx, &route, &headers, &body).unwrap();
    assert_eq!(q.resource, PolicyResource::Flow { flow: FLOW, alias: None });
}
