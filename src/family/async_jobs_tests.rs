use super::*;
use crate::config::TenantPolicy;
use crate::principal::Principal;
use crate::session::SessionKeys;
use serde_json::json;

const CONFIG: &str = r#"
[aws]
region = "us-east-1"
[identity]
mode = "static"
tenant = "acme"
[credentials]
source = "static"
[tenant_defaults.async_invoke]
output_prefix = "s3://media-out/{tenant}/"
tags = { TenantID = "{tenant}", User = "{user}" }
[tenants.acme]
models = ["amazon.nova-reel-*"]
model_map = { "amazon.nova-reel-v1:0" = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acmereel" }
[tenants.acme.async_invoke]
kms_key_id = "arn:aws:kms:us-east-1:111122223333:alias/{tenant}-out"
bucket_owner = "111122223333"
[tenants.acme.static_credentials]
access_key_id_env = "A"
secret_access_key_env = "B"
[tenants.globex]
models = ["amazon.nova-reel-*"]
[tenants.globex.static_credentials]
access_key_id_env = "A"
secret_access_key_env = "B"
[tenants.initech]
models = ["amazon.nova-reel-*"]
[tenants.initech.async_invoke]
tags = {}
[tenants.initech.static_credentials]
access_key_id_env = "A"
secret_access_key_env = "B"
"#;

fn policies() -> (TenantPolicy, TenantPolicy) {
    let cfg = crate::config::parse_str(CONFIG, std::path::Path::new(".")).unwrap_or_else(|e| panic!("{e:?}"));
    ((**cfg.tenants.get("acme").unwrap()).clone(), (**cfg.tenants.get("globex").unwrap()).clone())
}

fn who(tenant: &str, user: &str) -> Principal {
    let mut p = Principal::static_tenant(tenant);
    p.user = user.into();
    p
}

fn keys() -> SessionKeys {
    SessionKeys::new(b"0123456789abcdef0123456789abcdef")
}

fn start(policy: &TenantPolicy, principal: &Principal, body: Value) -> Result<(Value, String, Option<String>), ProxyError> {
    let k = keys();
    let ctx = Ctx::new(Operation::StartAsyncInvoke, principal, policy, &k);
    AsyncJobs::authorize(&ctx, &Target::Nothing)?;
    let mut v = body;
    let (m, up) = rewrite_start(&ctx, &mut v)?;
    Ok((v, m, up))
}

fn body(uri: &str) -> Value {
    json!({
        "modelId": "amazon.nova-reel-v1:0",
        "modelInput": {"taskType": "TEXT_VIDEO"},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": uri, "kmsKeyId": "arn:aws:kms:us-east-1:444455556666:key/x", "bucketOwner": "444455556666"}},
        "clientRequestToken": "t-1",
        "tags": [{"key": "TenantID", "value": "globex"}, {"key": "app", "value": "x"}]
    })
}

#[test]
fn start_maps_the_model_forces_the_output_and_namespaces_the_token() {
    let (acme, _) = policies();
    let (out, model, up) = start(&acme, &who("acme", "alice"), body("s3://media-out/acme/v1/")).unwrap();
    assert_eq!(model, "amazon.nova-reel-v1:0");
    let arn = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acmereel";
    assert_eq!(up.as_deref(), Some(arn));
    assert_eq!(out["modelId"], arn);
    assert_eq!(
        out["outputDataConfig"],
        json!({"s3OutputDataConfig": {"s3Uri": "s3://media-out/acme/v1/", "kmsKeyId": "arn:aws:kms:us-east-1:111122223333:alias/acme-out", "bucketOwner": "111122223333"}})
    );
    assert_eq!(
        out["tags"],
        json!([{"key": "app", "value": "x"}, {"key": "TenantID", "value": "acme"}, {"key": "User", "value": "alice"}])
    );
    let token = out["clientRequestToken"].as_str().unwrap();
    assert_eq!(token, keys().async_invoke_token("acme", "alice", "t-1"));
    assert!(token.starts_with("tga-") && token.len() == 44);
    assert_eq!(out["modelInput"], json!({"taskType": "TEXT_VIDEO"}));
}

#[test]
fn the_same_token_differs_per_tenant_and_user() {
    let k = keys();
    let a = k.async_invoke_token("acme", "alice", "t-1");
    assert_ne!(a, k.async_invoke_token("globex", "alice", "t-1"));
    assert_ne!(a, k.async_invoke_token("acme", "bob", "t-1"));
    assert_ne!(a, k.async_invoke_token("acme", "alice", "t-2"));
    assert_eq!(a, k.async_invoke_token("acme", "alice", "t-1"));
}

#[test]
fn without_tenant_kms_or_owner_the_clients_are_removed() {
    let cfg = crate::config::parse_str(CONFIG, std::path::Path::new(".")).unwrap();
    let initech = (**cfg.tenants.get("initech").unwrap()).clone();
    let (out, _, up) = start(&initech, &who("initech", "u"), body("s3://media-out/initech/")).unwrap();
    assert_eq!(up, None);
    assert_eq!(out["outputDataConfig"], json!({"s3OutputDataConfig": {"s3Uri": "s3://media-out/initech/"}}));
    // `tags = {}` replaces the defaults' tags: the client's go as sent.
    assert_eq!(out["tags"], json!([{"key": "TenantID", "value": "globex"}, {"key": "app", "value": "x"}]));
}

#[test]
fn output_outside_the_prefix_is_location_not_allowed() {
    let (acme, _) = policies();
    for uri in [
        "s3://media-out/globex/v1/",
        "s3://media-out/acme-evil/x",
        "s3://media-out/acme",
        "s3://media-out/acme/../globex/x",
        "s3://media-out/acme/%2e%2e/globex/x",
        "s3://media-out/acme/a%2F..%2F..%2Fglobex/",
        "s3://media-out/ACME/x",
        "s3://Media-Out/acme/x",
        "s3://media-out/acme//x",
        "s3://other/acme/x",
        "https://media-out/acme/x",
        "s3://media-out/acme/./x",
    ] {
        let e = start(&acme, &who("acme", "alice"), body(uri)).unwrap_err();
        assert_eq!(e.reason(), "location_not_allowed", "{uri}");
    }
}

#[test]
fn model_not_allowed_and_no_prefix_are_refused() {
    let (acme, globex) = policies();
    let mut b = body("s3://media-out/acme/");
    b["modelId"] = json!("anthropic.claude-3-haiku-20240307-v1:0");
    assert_eq!(start(&acme, &who("acme", "alice"), b).unwrap_err().reason(), "model_not_allowed");
    // A mapped model's other spelling is mapped too, never sent unmapped.
    let mut b = body("s3://media-out/acme/");
    b["modelId"] = json!("arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-reel-v1:0");
    let (out, _, _) = start(&acme, &who("acme", "alice"), b).unwrap();
    assert_eq!(out["modelId"], "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acmereel");
    // globex: the defaults give it a prefix.
    assert!(start(&globex, &who("globex", "g"), body("s3://media-out/globex/")).is_ok());
    let mut none = globex.clone();
    none.async_invoke.output_prefix = None;
    let k = keys();
    let g = who("globex", "g");
    for (op, target) in [
        (Operation::StartAsyncInvoke, Target::Nothing),
        (Operation::ListAsyncInvokes, Target::Nothing),
        (Operation::GetAsyncInvoke, Target::AsyncInvocation("arn:aws:bedrock:us-east-1:111122223333:async-invoke/abcdef012345".into())),
    ] {
        let ctx = Ctx::new(op, &g, &none, &k);
        assert_eq!(AsyncJobs::authorize(&ctx, &target).unwrap_err().reason(), "operation_not_allowed", "{op:?}");
    }
}

#[test]
fn invocation_arns_follow_the_aws_pattern() {
    assert!(is_invocation_arn("arn:aws:bedrock:us-east-1:111122223333:async-invoke/abcdef012345"));
    assert!(is_invocation_arn("arn:aws-us-gov:bedrock:us-gov-west-1:111122223333:async-invoke/abcdef012345"));
    for bad in [
        "arn:aws:bedrock:us-east-1:111122223333:async-invoke/abcdef01234",
        "arn:aws:bedrock:us-east-1:111122223333:async-invoke/ABCDEF012345",
        "arn:aws:bedrock:us-east-1:11112222333:async-invoke/abcdef012345",
        "arn:aws:s3:us-east-1:111122223333:async-invoke/abcdef012345",
        "arn:aws:bedrock:us-east-1:111122223333:model/abcdef012345",
        "arn:aws:bedrock:us-east-1:111122223333:async-invoke/abcdef012345:x",
        "abcdef012345",
    ] {
        assert!(!is_invocation_arn(bad), "{bad}");
    }
}

#[test]
fn list_query_values_are_checked_and_never_repeated() {
    for ok in [
        "maxResults=10",
        "maxResults=1000&nextToken=abc%3D%3D&sortBy=SubmissionTime&sortOrder=Descending",
        "statusEquals=Completed&submitTimeAfter=2026-01-01T00%3A00%3A00Z&submitTimeBefore=2026-12-31T00%3A00%3A00.5%2B00%3A00",
    ] {
        assert!(check_list_query(ok).is_ok(), "{ok}");
    }
    for bad in [
        "maxResults=0",
        "maxResults=1001",
        "maxResults=-1",
        "maxResults=%2B5",
        "maxResults=1&maxResults=2",
        "nextToken=a&nextToken=b",
        "nextToken=",
        "nextToken=a%20b",
        "sortOrder=descending",
        "statusEquals=Running",
        "sortBy=Name",
        "submitTimeAfter=now()",
        "nextToken=%FF",
    ] {
        assert_eq!(check_list_query(bad).unwrap_err().reason(), "invalid_parameter", "{bad}");
    }
}

fn job(uri: &str) -> Value {
    json!({"invocationArn": "arn:aws:bedrock:us-east-1:111122223333:async-invoke/abcdef012345",
           "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-reel-v1:0",
           "submitTime": "2026-01-01T00:00:00Z", "status": "Completed",
           "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": uri}}})
}

#[test]
fn answers_show_only_the_tenants_jobs() {
    let p = vec!["s3://media-out/acme/".to_string()];
    let own = job("s3://media-out/acme/v1/");
    assert_eq!(serde_json::from_slice::<Value>(&filter_job(own.to_string().as_bytes(), &p).unwrap()).unwrap(), own);
    for foreign in [job("s3://media-out/globex/"), job("s3://media-out/acme-evil/"), json!({"invocationArn": "x"})] {
        let e = filter_job(foreign.to_string().as_bytes(), &p).unwrap_err();
        assert_eq!(e.reason(), "location_not_allowed");
    }
    // A duplicated key: the tree judged is the tree returned.
    let dup = br#"{"outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://media-out/globex/"}},"outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://media-out/acme/"}}}"#;
    let out: Value = serde_json::from_slice(&filter_job(dup, &p).unwrap()).unwrap();
    assert_eq!(out["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"], "s3://media-out/acme/");
    let page = json!({"asyncInvokeSummaries": [job("s3://media-out/globex/"), own.clone(), job("s3://media-out/acme/../globex/")], "nextToken": "n2"});
    let (out, dropped) = filter_jobs(page.to_string().as_bytes(), &p).unwrap();
    assert_eq!(dropped, 2);
    assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), json!({"asyncInvokeSummaries": [own], "nextToken": "n2"}));
    // A summary that is not an object names no output: left out.
    let (out, dropped) = filter_jobs(br#"{"asyncInvokeSummaries":[1,"x",null]}"#, &p).unwrap();
    assert_eq!((serde_json::from_slice::<Value>(&out).unwrap(), dropped), (json!({"asyncInvokeSummaries": []}), 3));
    assert!(filter_jobs(b"not json", &p).is_err());
    assert!(filter_jobs(b"[]", &p).is_err());
    assert!(filter_jobs(br#"{"asyncInvokeSummaries":{}}"#, &p).is_err());
}
