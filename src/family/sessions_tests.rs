use super::*;
use crate::aws::credentials::TenantCredentials;
use crate::config::TenantPolicy;
use crate::principal::Principal;
use crate::route::{classify, Route};
use crate::session::SessionKeys;
use crate::test_support::principal;
use http::Method;
use serde_json::json;

const CONFIG: &str = r#"
[aws]
region = "us-east-1"
[identity]
mode = "static"
tenant = "acme"
[credentials]
source = "static"
[tenant_defaults.sessions]
tags = { TenantID = "{tenant}" }
[tenants.acme]
models = ["amazon.nova-reel-*"]
[tenants.acme.sessions]
kms_key_arn = "arn:aws:kms:us-east-1:111122223333:key/{tenant}-sessions"
tags = { TenantID = "{tenant}", User = "{user}" }
[tenants.acme.static_credentials]
access_key_id_env = "A"
secret_access_key_env = "B"
[tenants.globex]
models = ["amazon.nova-reel-*"]
[tenants.globex.sessions]
kms_key_arn = "arn:aws:kms:us-east-1:111122223333:key/globex-sessions"
[tenants.globex.static_credentials]
access_key_id_env = "A"
secret_access_key_env = "B"
[tenants.initech]
models = ["amazon.nova-reel-*"]
[tenants.initech.static_credentials]
access_key_id_env = "A"
secret_access_key_env = "B"
"#;

const ID: &str = "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60";
const OTHER: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const INV: &str = "11111111-2222-4333-8444-555555555555";
const STEP: &str = "66666666-7777-4888-9999-aaaaaaaaaaaa";

fn policy(tenant: &str) -> TenantPolicy {
    let cfg = crate::config::parse_str(CONFIG, std::path::Path::new(".")).unwrap_or_else(|e| panic!("{e:?}"));
    (**cfg.tenants.get(tenant).unwrap()).clone()
}

fn keys() -> SessionKeys {
    SessionKeys::new(b"sessions-tests-sessions-tests-se")
}

fn alice() -> Principal {
    principal("acme", "alice")
}

fn sealed(who: &Principal, id: &str) -> String {
    keys().seal_bedrock_session(&who.tenant, &who.user, id)
}

fn creds() -> TenantCredentials {
    crate::aws::credentials::TenantCredentials(aws_credential_types::Credentials::new("AKID", "SECRET", None, None, "test"))
}

/// Runs a request through the family's request hooks as the pipeline does;
/// returns the route as sent, the body sent and the answer plan.
fn run(who: &Principal, method: Method, path: &str, query: Option<&str>, body: Value) -> Result<(Route, Value, Post), ProxyError> {
    let (policy, keys) = (policy(&who.tenant), keys());
    let mut route = classify(&method, path)?;
    route.query = query.map(str::to_string);
    let ctx = Ctx::new(route.op, who, &policy, &keys);
    crate::family::authorize(&ctx, &route)?;
    let mut notes = Notes::default();
    crate::family::before_body(&ctx, &mut route, &mut HeaderMap::new(), &mut notes)?;
    let body = RequestBody { bytes: Bytes::from(body.to_string()), json: Some(body) };
    let (bytes, post) = crate::family::rewrite(&ctx, &mut route, &mut HeaderMap::new(), body, &creds(), &mut notes)?;
    let sent = if bytes.is_empty() { json!(null) } else { serde_json::from_slice(&bytes).unwrap() };
    Ok((route, sent, post))
}

fn reason(r: Result<(Route, Value, Post), ProxyError>) -> &'static str {
    r.map(|_| ()).unwrap_err().reason()
}

#[test]
fn every_operation_is_routed_by_method_and_path() {
    let s = "SEALED.x";
    let cases = [
        (Method::PUT, "/sessions/".to_string(), Operation::CreateSession),
        (Method::POST, "/sessions/".to_string(), Operation::ListSessions),
        (Method::GET, format!("/sessions/{s}/"), Operation::GetSession),
        (Method::PUT, format!("/sessions/{s}/"), Operation::UpdateSession),
        (Method::PATCH, format!("/sessions/{s}"), Operation::EndSession),
        (Method::DELETE, format!("/sessions/{s}/"), Operation::DeleteSession),
        (Method::PUT, format!("/sessions/{s}/invocations/"), Operation::CreateInvocation),
        (Method::POST, format!("/sessions/{s}/invocations/"), Operation::ListInvocations),
        (Method::PUT, format!("/sessions/{s}/invocationSteps/"), Operation::PutInvocationStep),
        (Method::POST, format!("/sessions/{s}/invocationSteps/"), Operation::ListInvocationSteps),
        (Method::POST, format!("/sessions/{s}/invocationSteps/{STEP}"), Operation::GetInvocationStep),
    ];
    for (m, p, op) in cases {
        let r = classify(&m, &p).unwrap_or_else(|e| panic!("{m} {p}: {e:?}"));
        assert_eq!((r.op, r.upstream_path()), (op, p.clone()), "{m} {p}");
        assert_eq!(r.op.family(), crate::route::Family::Sessions);
    }
    // Other methods and shapes are refused.
    for (m, p) in [
        (Method::GET, "/sessions/"),
        (Method::DELETE, "/sessions/"),
        (Method::POST, "/sessions"),
        (Method::POST, "/sessions/x/"),
        (Method::GET, "/sessions/x"),
        (Method::PATCH, "/sessions/x/"),
        (Method::GET, "/sessions/x/invocations/"),
        (Method::DELETE, "/sessions/x/invocationSteps/y"),
        (Method::PUT, "/sessions/x/invocationSteps/y"),
        (Method::POST, "/sessions/x/invocations/y"),
    ] {
        assert_eq!(classify(&m, p).unwrap_err().reason(), "operation_not_allowed", "{m} {p}");
    }
    // Path ids outside AWS's alphabet: 400; an ARN reaches the family.
    for p in ["/sessions/a%20b/", "/sessions/..%2Fx/", "/sessions/a%2F%2Fb/", "/sessions/a/invocationSteps/b%2Fc"] {
        let m = if p.contains("invocationSteps") { Method::POST } else { Method::GET };
        assert_eq!(classify(&m, p).unwrap_err().reason(), "invalid_parameter", "{p}");
    }
    let arn = format!("/sessions/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Asession%2F{ID}/");
    assert!(classify(&Method::GET, &arn).is_ok());
    assert_eq!(classify(&Method::GET, "/sessions//").unwrap_err().reason(), "unknown_operation");
}

#[test]
fn the_sealed_id_opens_to_bedrocks_id_for_its_owner_only() {
    let me = alice();
    let path = format!("/sessions/{}/", sealed(&me, ID));
    let (route, _, post) = run(&me, Method::GET, &path, None, json!({})).unwrap();
    assert_eq!(route.upstream_path(), format!("/sessions/{ID}/"));
    assert!(matches!(post, Post::Session { op: Operation::GetSession, session: Some(ref s), invocation: None } if s == ID));
    let bob = principal("acme", "bob");
    let gary = principal("globex", "alice");
    let arn = format!("arn:aws:bedrock:us-east-1:111122223333:session/{ID}");
    let rag = keys().seal_rag_session("acme", "alice", ID);
    let upper = sealed(&me, ID).to_uppercase();
    let truncated = sealed(&me, ID)[..60].to_string();
    for (who, id) in [
        (&bob, sealed(&me, ID)),
        (&gary, sealed(&me, ID)),
        (&me, sealed(&bob, ID)),
        (&me, ID.to_string()),
        (&me, arn.clone()),
        (&me, format!("{arn}.{}", &sealed(&me, ID)[ID.len() + 1..])),
        (&me, rag),
        (&me, upper),
        (&me, truncated),
        (&me, format!("{}.{}", OTHER, &sealed(&me, ID)[ID.len() + 1..])),
    ] {
        let p = format!("/sessions/{}/", crate::route::encode_label(&id));
        assert_eq!(reason(run(who, Method::GET, &p, None, json!({}))), "cross_tenant", "{id}");
        let p = format!("/sessions/{}/invocationSteps/{STEP}", crate::route::encode_label(&id));
        assert_eq!(reason(run(who, Method::POST, &p, None, json!({"invocationIdentifier": INV}))), "cross_tenant", "{id}");
    }
}

#[test]
fn a_tenant_without_a_sessions_kms_key_is_refused() {
    let who = principal("initech", "ivan");
    assert_eq!(reason(run(&who, Method::PUT, "/sessions/", None, json!({}))), "operation_not_allowed");
    let p = format!("/sessions/{}/", sealed(&who, ID));
    assert_eq!(reason(run(&who, Method::GET, &p, None, json!({}))), "operation_not_allowed");
}

#[test]
fn create_forces_the_key_tags_and_owner_metadata() {
    let body = json!({
        "encryptionKeyArn": "arn:aws:kms:us-east-1:444455556666:key/11111111-2222-3333-4444-555555555555",
        "tags": {"TenantID": "globex", "tenantid": "globex", "USER": "mallory", "app": "x"},
        "sessionMetadata": {"topic": "refunds", "tenantgate.tenant": "globex", "TenantGate.User": "mallory", "TENANTGATE.x": "y"}
    });
    let (_, sent, post) = run(&alice(), Method::PUT, "/sessions/", None, body).unwrap();
    assert_eq!(
        sent,
        json!({
            "encryptionKeyArn": "arn:aws:kms:us-east-1:111122223333:key/acme-sessions",
            "tags": {"TenantID": "acme", "User": "alice", "app": "x"},
            "sessionMetadata": {"topic": "refunds", "tenantgate.tenant": "acme", "tenantgate.user": "alice"}
        })
    );
    assert!(matches!(post, Post::Session { op: Operation::CreateSession, session: None, .. }));
    // Without anything from the client; the defaults' tags for globex.
    let (_, sent, _) = run(&principal("globex", "gary"), Method::PUT, "/sessions/", None, json!({})).unwrap();
    assert_eq!(
        sent,
        json!({
            "encryptionKeyArn": "arn:aws:kms:us-east-1:111122223333:key/globex-sessions",
            "tags": {"TenantID": "globex"},
            "sessionMetadata": {"tenantgate.tenant": "globex", "tenantgate.user": "gary"}
        })
    );
}

#[test]
fn update_sets_the_owner_metadata_again() {
    let me = alice();
    let p = format!("/sessions/{}/", sealed(&me, ID));
    let (route, sent, _) =
        run(&me, Method::PUT, &p, None, json!({"sessionMetadata": {"a": "b", "tenantgate.user": "bob"}})).unwrap();
    assert_eq!(route.upstream_path(), format!("/sessions/{ID}/"));
    assert_eq!(sent, json!({"sessionMetadata": {"a": "b", "tenantgate.tenant": "acme", "tenantgate.user": "alice"}}));
    let (_, sent, _) = run(&me, Method::PUT, &p, None, json!({})).unwrap();
    assert_eq!(sent, json!({"sessionMetadata": {"tenantgate.tenant": "acme", "tenantgate.user": "alice"}}));
    // 48 of the client's fit, 49 do not.
    let many = |n: usize| Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect());
    assert!(run(&me, Method::PUT, &p, None, json!({"sessionMetadata": many(48)})).is_ok());
    assert_eq!(reason(run(&me, Method::PUT, &p, None, json!({"sessionMetadata": many(49)}))), "invalid_parameter");
}

#[test]
fn invocation_and_step_ids_must_be_bedrock_ids() {
    let me = alice();
    let s = sealed(&me, ID);
    let arn = format!("arn:aws:bedrock:us-east-1:111122223333:session/{ID}");
    for (m, p, body) in [
        (Method::PUT, format!("/sessions/{s}/invocations/"), json!({"invocationId": "inv-1"})),
        (Method::PUT, format!("/sessions/{s}/invocations/"), json!({"invocationId": STEP.to_uppercase()})),
        (Method::PUT, format!("/sessions/{s}/invocationSteps/"), json!({"invocationIdentifier": arn, "invocationStepTime": 1, "payload": {}})),
        (Method::PUT, format!("/sessions/{s}/invocationSteps/"), json!({"invocationStepTime": 1, "payload": {}})),
        (Method::PUT, format!("/sessions/{s}/invocationSteps/"), json!({"invocationIdentifier": INV, "invocationStepId": "x", "payload": {}})),
        (Method::POST, format!("/sessions/{s}/invocationSteps/{STEP}"), json!({})),
        (Method::POST, format!("/sessions/{s}/invocationSteps/{STEP}"), json!({"invocationIdentifier": 7})),
        (Method::POST, format!("/sessions/{s}/invocationSteps/not-a-uuid"), json!({"invocationIdentifier": INV})),
        (Method::POST, format!("/sessions/{s}/invocationSteps/"), json!({"invocationIdentifier": "x"})),
    ] {
        let r = run(&me, m.clone(), &p, None, body.clone());
        assert!(r.is_err(), "{m} {p} {body}");
        assert_eq!(reason(r), "invalid_parameter", "{m} {p} {body}");
    }
    let (route, sent, post) =
        run(&me, Method::POST, &format!("/sessions/{s}/invocationSteps/{STEP}"), None, json!({"invocationIdentifier": INV})).unwrap();
    assert_eq!(route.upstream_path(), format!("/sessions/{ID}/invocationSteps/{STEP}"));
    assert_eq!(sent, json!({"invocationIdentifier": INV}));
    assert!(matches!(post, Post::Session { invocation: Some(ref i), .. } if i == INV));
}

#[test]
fn step_images_from_s3_are_refused() {
    let me = alice();
    let p = format!("/sessions/{}/invocationSteps/", sealed(&me, ID));
    let step = |block: Value| json!({"invocationIdentifier": INV, "invocationStepTime": "2026-01-01T00:00:00Z", "payload": {"contentBlocks": [{"text": "hi"}, block]}});
    let s3 = step(json!({"image": {"format": "png", "source": {"s3Location": {"uri": "s3://other-tenant/x.png"}}}}));
    assert_eq!(reason(run(&me, Method::PUT, &p, None, s3)), "location_not_allowed");
    let bytes = step(json!({"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}}));
    let (_, sent, post) = run(&me, Method::PUT, &p, None, bytes.clone()).unwrap();
    assert_eq!((sent, matches!(post, Post::Stream)), (bytes, true));
}

#[test]
fn list_queries_are_checked() {
    let me = alice();
    let p = format!("/sessions/{}/invocations/", sealed(&me, ID));
    for q in ["maxResults=5&nextToken=abc%3D%3D", "maxResults=1000", ""] {
        assert!(run(&me, Method::POST, &p, Some(q), json!({})).is_ok(), "{q}");
    }
    for q in ["maxResults=0", "maxResults=1001", "maxResults=%2B5", "maxResults=5&maxResults=6", "nextToken=", "nextToken=a%20b", "maxResults"] {
        assert_eq!(reason(run(&me, Method::POST, &p, Some(q), json!({}))), "invalid_parameter", "{q}");
    }
}

fn answer(op: Operation, session: Option<&str>, invocation: Option<&str>, who: &Principal, body: Value) -> Result<(Value, u64), ProxyError> {
    let (out, dropped) = filter_answer(op, Asked { session, invocation }, body.to_string().as_bytes(), who, &keys())?;
    Ok((serde_json::from_slice(&out).unwrap(), dropped))
}

#[test]
fn answers_carry_sealed_ids_and_no_arn() {
    let me = alice();
    let arn = format!("arn:aws:bedrock:us-east-1:111122223333:session/{ID}");
    let created = json!({"sessionId": ID, "sessionArn": arn, "SessionArn": arn, "SESSIONID": ID, "sessionStatus": "ACTIVE", "createdAt": "2026-01-01T00:00:00Z"});
    let (v, _) = answer(Operation::CreateSession, None, None, &me, created).unwrap();
    assert_eq!(v, json!({"sessionId": sealed(&me, ID), "sessionStatus": "ACTIVE", "createdAt": "2026-01-01T00:00:00Z"}));
    let meta = json!({"tenantgate.tenant": "acme", "tenantgate.user": "alice", "topic": "x"});
    let got = json!({"sessionId": ID, "sessionArn": arn, "sessionStatus": "ACTIVE", "sessionMetadata": meta, "encryptionKeyArn": "k"});
    let (v, _) = answer(Operation::GetSession, Some(ID), None, &me, got).unwrap();
    assert_eq!(v, json!({"sessionId": sealed(&me, ID), "sessionStatus": "ACTIVE", "sessionMetadata": meta, "encryptionKeyArn": "k"}));
    for op in [Operation::UpdateSession, Operation::EndSession] {
        let (v, _) = answer(op, Some(ID), None, &me, json!({"sessionId": ID, "sessionArn": arn, "sessionStatus": "ENDED"})).unwrap();
        assert_eq!(v, json!({"sessionId": sealed(&me, ID), "sessionStatus": "ENDED"}), "{op:?}");
    }
    let (v, _) = answer(Operation::CreateInvocation, Some(ID), None, &me, json!({"sessionId": ID, "invocationId": INV})).unwrap();
    assert_eq!(v, json!({"sessionId": sealed(&me, ID), "invocationId": INV}));
    let step = json!({"invocationStep": {"sessionId": ID, "invocationId": INV, "invocationStepId": STEP, "payload": {}}});
    let (v, _) = answer(Operation::GetInvocationStep, Some(ID), Some(INV), &me, step).unwrap();
    assert_eq!(v["invocationStep"]["sessionId"], json!(sealed(&me, ID)));
}

#[test]
fn answers_about_another_session_or_owner_are_refused() {
    let me = alice();
    for (op, body) in [
        (Operation::GetSession, json!({"sessionId": ID, "sessionMetadata": {"tenantgate.tenant": "acme", "tenantgate.user": "bob"}})),
        (Operation::GetSession, json!({"sessionId": ID, "sessionMetadata": {"tenantgate.tenant": "globex", "tenantgate.user": "alice"}})),
        (Operation::GetSession, json!({"sessionId": ID, "sessionMetadata": {"topic": "x"}})),
        (Operation::GetSession, json!({"sessionId": ID})),
        (Operation::GetSession, json!({"sessionId": OTHER, "sessionMetadata": {"tenantgate.tenant": "acme", "tenantgate.user": "alice"}})),
        (Operation::UpdateSession, json!({"sessionId": OTHER})),
        (Operation::EndSession, json!({"sessionId": OTHER})),
        (Operation::CreateInvocation, json!({"sessionId": OTHER, "invocationId": INV})),
        (Operation::GetInvocationStep, json!({"invocationStep": {"sessionId": OTHER, "invocationId": INV}})),
        (Operation::GetInvocationStep, json!({"invocationStep": {"sessionId": ID, "invocationId": STEP}})),
    ] {
        let e = answer(op, Some(ID), Some(INV), &me, body.clone()).unwrap_err();
        assert_eq!(e.reason(), "cross_tenant", "{op:?} {body}");
    }
    for (op, body) in [
        (Operation::CreateSession, json!({"sessionArn": "x"})),
        (Operation::CreateSession, json!({"sessionId": "not-a-uuid"})),
        (Operation::GetSession, json!({})),
        (Operation::GetInvocationStep, json!({})),
        (Operation::ListInvocations, json!({"invocationSummaries": {}})),
        (Operation::ListInvocations, json!([])),
    ] {
        let e = answer(op, Some(ID), None, &me, body.clone()).unwrap_err();
        assert_eq!(e.reason(), "upstream_error", "{op:?} {body}");
    }
    let e = filter_answer(Operation::GetSession, Asked { session: Some(ID), invocation: None }, b"nope", &me, &keys()).unwrap_err();
    assert_eq!(e.reason(), "upstream_error");
}

#[test]
fn lists_keep_only_the_session_asked_and_their_next_token() {
    let me = alice();
    let body = json!({"invocationSummaries": [
        {"sessionId": ID, "SessionId": ID, "invocationId": INV, "createdAt": 1},
        {"sessionId": OTHER, "invocationId": STEP, "createdAt": 2},
        {"invocationId": STEP, "createdAt": 3},
        {"sessionId": ID, "invocationId": STEP, "createdAt": 4}
    ], "nextToken": "n1"});
    let (v, dropped) = answer(Operation::ListInvocations, Some(ID), None, &me, body).unwrap();
    let s = sealed(&me, ID);
    assert_eq!(dropped, 2);
    assert_eq!(v, json!({"invocationSummaries": [
        {"sessionId": s, "invocationId": INV, "createdAt": 1},
        {"sessionId": s, "invocationId": STEP, "createdAt": 4}
    ], "nextToken": "n1"}));
    let steps = json!({"invocationStepSummaries": [
        {"sessionId": ID, "invocationId": INV, "invocationStepId": STEP},
        {"sessionId": ID, "invocationId": OTHER, "invocationStepId": STEP},
        {"sessionId": OTHER, "invocationId": INV, "invocationStepId": STEP}
    ]});
    let (v, dropped) = answer(Operation::ListInvocationSteps, Some(ID), Some(INV), &me, steps.clone()).unwrap();
    assert_eq!((v["invocationStepSummaries"].as_array().unwrap().len(), dropped), (1, 2));
    let (v, dropped) = answer(Operation::ListInvocationSteps, Some(ID), None, &me, steps).unwrap();
    assert_eq!((v["invocationStepSummaries"].as_array().unwrap().len(), dropped), (2, 1));
    let (v, dropped) = answer(Operation::ListInvocations, Some(ID), None, &me, json!({"invocationSummaries": []})).unwrap();
    assert_eq!((v, dropped), (json!({"invocationSummaries": []}), 0));
}

#[test]
fn uuids_are_aws_uuids() {
    assert!(is_uuid(ID));
    for bad in ["", "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f6", "3F1C2A9E-5D6B-4C8E-9A0F-1B2C3D4E5F60", "3f1c2a9e5d6b-4c8e-9a0f-1b2c-3d4e5f60", "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60 ", "g f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60"] {
        assert!(!is_uuid(bad), "{bad:?}");
    }
}

#[test]
fn sessions_config_is_checked() {
    let base = CONFIG.replace("key/globex-sessions\"", "key/globex-sessions\"\ntags = { Team = \"{claims.team}\" }");
    assert!(crate::config::parse_str(&base, std::path::Path::new(".")).is_ok());
    for (bad, want) in [
        ("kms_key_arn = \"arn:aws:s3:::bucket/key/x\"", "must be a KMS key ARN"),
        ("kms_key_arn = \"alias/acme\"", "must be a KMS key ARN"),
        ("kms_key_arn = \"arn:aws:kms:us-east-1:111122223333:alias/x\"", "must be a KMS key ARN"),
        ("kms_key_arn = \"arn:aws:kms:us-east-1:111122223333:key/{nope}\"", "nope"),
        ("tags = { \"aws:x\" = \"y\" }", "not a valid tag key"),
        ("tags = { \"a*b\" = \"y\" }", "not a valid tag key"),
        ("encryption = \"x\"", "encryption"),
    ] {
        let text = CONFIG.replace("kms_key_arn = \"arn:aws:kms:us-east-1:111122223333:key/globex-sessions\"", bad);
        let errs = crate::config::parse_str(&text, std::path::Path::new(".")).unwrap_err();
        let all: String = errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n");
        assert!(all.contains(want) && all.contains("tenants.globex.sessions"), "{bad}: {all}");
    }
    let many: String = (0..51).map(|i| format!("k{i} = \"v\"")).collect::<Vec<_>>().join(", ");
    let text = CONFIG.replace("tags = { TenantID = \"{tenant}\", User = \"{user}\" }", &format!("tags = {{ {many} }}"));
    let all: String = crate::config::parse_str(&text, std::path::Path::new(".")).unwrap_err().iter().map(|e| e.to_string()).collect();
    assert!(all.contains("at most 50 tags"), "{all}");
}

#[test]
fn a_claim_the_token_lacks_leaves_nothing_half_done() {
    let text = CONFIG.replace("User = \"{user}\"", "Team = \"{claims.team}\"");
    let cfg = crate::config::parse_str(&text, std::path::Path::new(".")).unwrap();
    let policy = (**cfg.tenants.get("acme").unwrap()).clone();
    let (who, keys) = (alice(), keys());
    let ctx = Ctx::new(Operation::CreateSession, &who, &policy, &keys);
    let mut v = json!({"tags": {"app": "x"}});
    let e = rewrite_create(&ctx, &mut v, "k".into()).unwrap_err();
    assert_eq!(e.reason(), "missing_claim");
    assert_eq!(v, json!({"tags": {"app": "x"}}));
}

#[test]
fn list_sessions_asks_for_small_pages() {
    let me = alice();
    for (q, want) in [
        (None, "maxResults=20"),
        (Some("maxResults=5"), "maxResults=5"),
        (Some("maxResults=1000&nextToken=abc%3D"), "maxResults=20&nextToken=abc%3D"),
        (Some("nextToken=abc&max%52esults=500"), "maxResults=20&nextToken=abc"),
        (Some("nextToken=abc"), "maxResults=20&nextToken=abc"),
    ] {
        let (route, _, post) = run(&me, Method::POST, "/sessions/", q, json!({})).unwrap();
        assert_eq!(route.query.as_deref(), Some(want), "{q:?}");
        assert!(matches!(post, Post::Session { op: Operation::ListSessions, session: None, .. }));
    }
    for q in ["maxResults=0", "maxResults=20&maxResults=1", "nextToken=a%20b", "maxResults=x"] {
        assert_eq!(reason(run(&me, Method::POST, "/sessions/", Some(q), json!({}))), "invalid_parameter", "{q}");
    }
    assert_eq!(reason(run(&principal("initech", "ivan"), Method::POST, "/sessions/", None, json!({}))), "operation_not_allowed");
}

#[test]
fn list_sessions_keeps_only_the_callers_sessions() {
    let me = alice();
    let page = json!({"sessionSummaries": [
        {"sessionId": ID, "sessionArn": format!("arn:aws:bedrock:us-east-1:111122223333:session/{ID}"), "sessionStatus": "ACTIVE"},
        {"sessionId": OTHER, "sessionArn": "x", "sessionStatus": "ENDED"},
        {"sessionId": ID, "sessionArn": "y", "sessionStatus": "ACTIVE"}
    ], "nextToken": "n2"});
    let raw = page.to_string();
    assert_eq!(listed_session_ids(raw.as_bytes()).unwrap(), vec![ID.to_string(), OTHER.to_string()]);
    let (out, dropped) = filter_session_list(raw.as_bytes(), &[ID.to_string()], &me, &keys()).unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(dropped, 1);
    assert_eq!(v, json!({"sessionSummaries": [
        {"sessionId": sealed(&me, ID), "sessionStatus": "ACTIVE"},
        {"sessionId": sealed(&me, ID), "sessionStatus": "ACTIVE"}
    ], "nextToken": "n2"}));
    let (out, dropped) = filter_session_list(raw.as_bytes(), &[], &me, &keys()).unwrap();
    assert_eq!((serde_json::from_slice::<Value>(&out).unwrap()["sessionSummaries"].clone(), dropped), (json!([]), 3));
    for bad in [json!({"sessionSummaries": [{"sessionArn": "x"}]}), json!({"sessionSummaries": [{"sessionId": "S1"}]}), json!({"sessionSummaries": {}})] {
        assert_eq!(listed_session_ids(bad.to_string().as_bytes()).unwrap_err().reason(), "upstream_error", "{bad}");
    }
    assert_eq!(listed_session_ids(b"{}").unwrap(), Vec::<String>::new());
    let many = |n: usize| json!({"sessionSummaries": vec![json!({"sessionId": ID}); n]}).to_string();
    assert_eq!(listed_session_ids(many(20).as_bytes()).unwrap(), vec![ID.to_string()]);
    assert_eq!(listed_session_ids(many(21).as_bytes()).unwrap_err().reason(), "upstream_error");
    // A listing is never shown without its owner look-ups.
    assert_eq!(answer(Operation::ListSessions, None, None, &me, page).unwrap_err().reason(), "upstream_error");
    // The look-up answer decides.
    let got = |meta: Value, id: &str| json!({"sessionId": id, "sessionMetadata": meta}).to_string();
    assert!(answer_is_owned(got(owner_meta(), ID).as_bytes(), ID, &me));
    assert!(!answer_is_owned(got(owner_meta(), OTHER).as_bytes(), ID, &me));
    assert!(!answer_is_owned(got(json!({"tenantgate.tenant": "acme", "tenantgate.user": "bob"}), ID).as_bytes(), ID, &me));
    assert!(!answer_is_owned(got(json!({"tenantgate.tenant": "acme"}), ID).as_bytes(), ID, &me));
    assert!(!answer_is_owned(b"not json", ID, &me));
}

fn owner_meta() -> Value {
    json!({"tenantgate.tenant": "acme", "tenantgate.user": "alice"})
}
