use super::*;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const AKID: &str = "AKIASIMTEST000000001";
const SECRET: &str = "simtestsecret/0000000000000000000000000";

async fn sim(verify: bool) -> Sim {
    Sim::start(SimOptions {
        credentials: vec![(AKID.into(), SecretString::new(SECRET.into()))],
        verify_signatures: verify,
        record_limit: 100,
    })
    .await
    .unwrap()
}

fn signed(uri: &str, body: &'static [u8], secret: &str) -> Request<Full<Bytes>> {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    let identity = Credentials::new(AKID, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let host = uri.split('/').nth(2).unwrap().to_string();
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/json"),
    ];
    let signable = SignableRequest::new(
        "POST",
        uri,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = Request::post(uri)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req
}

async fn send(req: Request<Full<Bytes>>) -> (u16, http::HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(Duration::from_secs(5), client.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

const CONVERSE: &[u8] = br#"{"messages":[{"role":"user","content":[{"text":"Hi there"}]}]}"#;

#[tokio::test]
async fn signed_converse_is_answered_and_recorded() {
    let sim = sim(true).await;
    let uri = format!(
        "{}/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse",
        sim.url()
    );
    let (status, headers, body) = send(signed(&uri, CONVERSE, SECRET)).await;
    assert_eq!(status, 200, "{body:?}");
    assert!(headers.contains_key("x-amzn-requestid"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(v["output"]["message"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("anthropic.claude-3-haiku-20240307-v1:0"));
    let recs = sim.records();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].access_key.as_deref(), Some(AKID));
    assert_eq!(recs[0].service.as_deref(), Some("bedrock"));
    assert_eq!(recs[0].signature_ok, Some(true));
    assert_eq!(recs[0].body_len, CONVERSE.len());
    assert!(!recs[0].headers.contains_key("authorization"));
    assert_eq!(sim.stats.signatures_ok.load(Ordering::Relaxed), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_or_missing_signatures_get_403() {
    let sim = sim(true).await;
    let uri = format!("{}/model/m/converse", sim.url());
    let (status, headers, _) = send(signed(&uri, CONVERSE, "wrong-secret")).await;
    assert_eq!(status, 403);
    assert_eq!(headers["x-amzn-errortype"], "InvalidSignatureException");
    let unsigned = Request::post(&uri)
        .body(Full::new(Bytes::from_static(CONVERSE)))
        .unwrap();
    let (status, headers, _) = send(unsigned).await;
    assert_eq!(status, 403);
    assert_eq!(
        headers["x-amzn-errortype"],
        "MissingAuthenticationTokenException"
    );
    assert_eq!(sim.stats.signatures_failed.load(Ordering::Relaxed), 2);
    assert!(sim
        .records()
        .iter()
        .all(|r| r.signature_ok == Some(false) && r.status == 403));
}

#[tokio::test]
async fn verification_off_gives_the_same_answer() {
    let sim = sim(true).await;
    let uri = format!("{}/model/m/converse", sim.url());
    let (_, _, signed_body) = send(signed(&uri, CONVERSE, SECRET)).await;
    sim.set_verify(false);
    let unsigned = Request::post(&uri)
        .body(Full::new(Bytes::from_static(CONVERSE)))
        .unwrap();
    let (status, _, body) = send(unsigned).await;
    assert_eq!(status, 200);
    assert_eq!(body, signed_body);
    assert_eq!(sim.records()[1].signature_ok, None);
}

#[tokio::test]
async fn streams_are_chunked_event_streams_and_unknown_paths_404() {
    let sim = sim(false).await;
    let uri = format!("{}/model/m/converse-stream", sim.url());
    let req = Request::post(&uri)
        .body(Full::new(Bytes::from_static(CONVERSE)))
        .unwrap();
    let (status, headers, body) = send(req).await;
    assert_eq!(status, 200);
    assert_eq!(
        headers["content-type"],
        "application/vnd.amazon.eventstream"
    );
    assert!(!headers.contains_key("content-length"));
    let mut buf = body.clone();
    let mut n = 0;
    while !buf.is_empty() {
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let frame = buf.split_to(len);
        aws_smithy_eventstream::frame::read_message_from(frame).unwrap();
        n += 1;
    }
    assert!(n >= 5);
    let req = Request::post(format!("{}/nope", sim.url()))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let (status, headers, _) = send(req).await;
    assert_eq!(status, 404);
    assert_eq!(headers["x-amzn-errortype"], "UnknownOperationException");
}

#[tokio::test]
async fn garbage_never_breaks_the_simulator() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sim = sim(true).await;
    // Not HTTP at all.
    let mut s = tokio::net::TcpStream::connect(sim.addr).await.unwrap();
    s.write_all(b"\x00\xff garbage \r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    // Malformed Authorization headers of every kind.
    let uri = format!("{}/model/m/converse", sim.url());
    for auth in [
        "AWS4-HMAC-SHA256 Credential=a/b/c/d/aws4_request, SignedHeaders=host;x-amz-date, Signature=zz",
        "AWS4-HMAC-SHA256 Credential=////, SignedHeaders=;;, Signature=",
        "AWS4-HMAC-SHA256 ,,,,",
        "AWS4-HMAC-SHA256 Credential=\u{e9}/20150830/us-east-1/s/aws4_request, SignedHeaders=host;x-amz-date, Signature=0",
    ] {
        let req = Request::post(&uri)
            .header("authorization", auth)
            .header("x-amz-date", "2015083\u{e9}T12360Z")
            .body(Full::new(Bytes::from_static(b"\xff\xfe")))
            .unwrap();
        let (status, _, _) = send(req).await;
        assert_eq!(status, 403, "{auth}");
    }
    // Still serving.
    let (status, _, _) = send(signed(&uri, CONVERSE, SECRET)).await;
    assert_eq!(status, 200);
}

/// A request signed like an AWS SDK with any credentials and signing name.
fn signed_as(
    uri: &str,
    body: &'static [u8],
    creds: &aws_credential_types::Credentials,
    service: &str,
    content_type: &str,
) -> Request<Full<Bytes>> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let host = uri.split('/').nth(2).unwrap().to_string();
    let headers = [("host", host.as_str()), ("content-type", content_type)];
    let signable = SignableRequest::new(
        "POST",
        uri,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = Request::post(uri)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from_static(body)))
        .unwrap();
    instructions.apply_to_request_http1x(&mut req);
    req
}

fn base_creds() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(AKID, SECRET, None, None, "test")
}

/// STS AssumeRole through the real `aws-sdk-sts` client, as the sidecar
/// calls it.
async fn assume_role(
    sim: &Sim,
    creds: aws_credential_types::Credentials,
    tenant: &str,
) -> Result<aws_credential_types::Credentials, String> {
    use aws_sdk_sts::config::{BehaviorVersion, Region};
    let conf = aws_sdk_sts::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(sim.url())
        .build();
    let tag = aws_sdk_sts::types::Tag::builder()
        .key("TenantID")
        .value(tenant)
        .build()
        .unwrap();
    let out = aws_sdk_sts::Client::from_conf(conf)
        .assume_role()
        .role_arn(format!("arn:aws:iam::111122223333:role/tenant-{tenant}"))
        .role_session_name(format!("tenantgate-{tenant}"))
        .tags(tag)
        .duration_seconds(900)
        .send()
        .await
        .map_err(|e| format!("{:?}", e.into_service_error()))?;
    let c = out.credentials().unwrap();
    let user = out.assumed_role_user().unwrap();
    assert_eq!(
        user.arn(),
        format!("arn:aws:sts::111122223333:assumed-role/tenant-{tenant}/tenantgate-{tenant}")
    );
    let expiry = SystemTime::try_from(*c.expiration()).unwrap();
    assert!(expiry > SystemTime::now() + Duration::from_secs(800));
    Ok(aws_credential_types::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_string()),
        Some(expiry),
        "sts",
    ))
}

#[tokio::test]
async fn sts_issues_temporary_keys_the_services_accept() {
    let sim = sim(true).await;
    let acme = assume_role(&sim, base_creds(), "acme").await.unwrap();
    let globex = assume_role(&sim, base_creds(), "globex").await.unwrap();
    assert!(acme.access_key_id().starts_with("ASIA"));
    assert_ne!(acme.access_key_id(), globex.access_key_id());
    assert_eq!(sim.stats.sts_signatures_ok.load(Ordering::Relaxed), 2);
    // STS calls are not service records; the sessions are remembered.
    assert!(sim.records().is_empty());
    let s = sim.sts_session(acme.access_key_id()).unwrap();
    assert_eq!(s.tag("TenantID"), Some("acme"));
    assert_eq!(s.caller, AKID);
    assert_eq!(sim.sts_sessions().len(), 2);

    let uri = format!("{}/model/m/converse", sim.url());
    let json = "application/json";
    let (status, _, body) = send(signed_as(&uri, CONVERSE, &acme, "bedrock", json)).await;
    assert_eq!(status, 200, "{body:?}");
    let rec = sim.records().pop().unwrap();
    assert_eq!(rec.access_key.as_deref(), Some(acme.access_key_id()));
    assert_eq!(rec.operation, "Converse");
    assert!(rec.headers.contains_key("x-amz-security-token"));

    // The temporary key without its token, or with another session's.
    let no_token = aws_credential_types::Credentials::new(
        acme.access_key_id(),
        acme.secret_access_key(),
        None,
        None,
        "t",
    );
    let (status, headers, _) = send(signed_as(&uri, CONVERSE, &no_token, "bedrock", json)).await;
    assert_eq!(
        (status, &headers["x-amzn-errortype"]),
        (
            403,
            &"UnrecognizedClientException"
                .parse::<http::HeaderValue>()
                .unwrap()
        )
    );
    let swapped = aws_credential_types::Credentials::new(
        acme.access_key_id(),
        acme.secret_access_key(),
        globex.session_token().map(String::from),
        None,
        "t",
    );
    let (status, _, _) = send(signed_as(&uri, CONVERSE, &swapped, "bedrock", json)).await;
    assert_eq!(status, 403);
    // A token sent but not signed.
    let mut req = signed_as(&uri, CONVERSE, &no_token, "bedrock", json);
    req.headers_mut().insert(
        "x-amz-security-token",
        acme.session_token().unwrap().parse().unwrap(),
    );
    assert_eq!(send(req).await.0, 403);
    // Scoped to the wrong service.
    let (status, headers, _) = send(signed_as(&uri, CONVERSE, &acme, "sagemaker", json)).await;
    assert_eq!(status, 403);
    assert_eq!(headers["x-amzn-errortype"], "InvalidSignatureException");
    assert_eq!(sim.stats.signatures_failed.load(Ordering::Relaxed), 4);
}

#[tokio::test]
async fn sts_takes_only_valid_long_term_keys() {
    let sim = sim(true).await;
    let acme = assume_role(&sim, base_creds(), "acme").await.unwrap();
    // No role chaining with a temporary key, no unknown or wrong keys.
    let e = assume_role(&sim, acme, "globex").await.unwrap_err();
    assert!(e.contains("AccessDenied"), "{e}");
    let wrong = aws_credential_types::Credentials::new(AKID, "wrong", None, None, "t");
    let e = assume_role(&sim, wrong, "acme").await.unwrap_err();
    assert!(e.contains("SignatureDoesNotMatch"), "{e}");
    let unknown = aws_credential_types::Credentials::new("AKIAUNKNOWN", SECRET, None, None, "t");
    let e = assume_role(&sim, unknown, "acme").await.unwrap_err();
    assert!(e.contains("InvalidClientTokenId"), "{e}");
    assert_eq!(sim.stats.sts_signatures_failed.load(Ordering::Relaxed), 3);
    assert_eq!(sim.sts_sessions().len(), 1);
    // Signed for another service: refused in STS's XML dialect.
    let form = b"Action=AssumeRole&Version=2011-06-15";
    let ct = "application/x-www-form-urlencoded; charset=utf-8";
    let uri = format!("{}/", sim.url());
    let (status, headers, body) = send(signed_as(&uri, form, &base_creds(), "bedrock", ct)).await;
    assert_eq!(status, 403);
    assert_eq!(headers["content-type"], "text/xml");
    assert!(String::from_utf8_lossy(&body).contains("<Code>SignatureDoesNotMatch</Code>"));
}

#[tokio::test]
async fn agent_runtime_and_sagemaker_are_answered_and_recorded() {
    let sim = sim(true).await;
    let creds = assume_role(&sim, base_creds(), "acme").await.unwrap();
    let json = "application/json";
    let retrieve = format!("{}/knowledgebases/KB1/retrieve", sim.url());
    let body = br#"{"retrievalQuery":{"text":"refunds"},"retrievalConfiguration":{"vectorSearchConfiguration":{"filter":{"equals":{"key":"tenant_id","value":"globex"}}}}}"#;
    let (status, _, resp) = send(signed_as(&retrieve, body, &creds, "bedrock", json)).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&resp).unwrap();
    assert_eq!(v["retrievalResults"].as_array().unwrap().len(), 1);
    let rec = sim.records().pop().unwrap();
    assert_eq!(
        (rec.operation, rec.resource.as_deref()),
        ("Retrieve", Some("KB1"))
    );
    assert_eq!(rec.response, resp);

    let agent = format!("{}/agents/A1/agentAliases/B2/sessions/tg-1/text", sim.url());
    let body = br#"{"inputText":"hi","sessionState":{"sessionAttributes":{"tenantId":"acme"}}}"#;
    let (status, headers, _) = send(signed_as(&agent, body, &creds, "bedrock", json)).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-amz-bedrock-agent-session-id"], "tg-1");
    assert_eq!(
        headers["content-type"],
        "application/vnd.amazon.eventstream"
    );
    assert_eq!(
        sim.records().pop().unwrap().resource.as_deref(),
        Some("A1/B2")
    );

    let endpoint = format!("{}/endpoints/shared-classifier/invocations", sim.url());
    let mut req = signed_as(&endpoint, b"1,2,3", &creds, "sagemaker", "text/csv");
    req.headers_mut().insert(
        "x-amzn-sagemaker-target-model",
        "acme.tar.gz".parse().unwrap(),
    );
    // Unsigned header: SageMaker routes on it all the same (the verifier only
    // checks signed headers).
    let (status, headers, resp) = send(req).await;
    assert_eq!(status, 200);
    assert_eq!(resp, Bytes::from_static(b"1,2,3"));
    assert_eq!(headers["content-type"], "text/csv");
    let rec = sim.records().pop().unwrap();
    assert_eq!(rec.operation, "InvokeEndpoint");
    assert_eq!(rec.resource.as_deref(), Some("shared-classifier"));
    assert_eq!(rec.headers["x-amzn-sagemaker-target-model"], "acme.tar.gz");
    // SageMaker signed as Bedrock.
    let req = signed_as(&endpoint, b"1", &creds, "bedrock", "text/csv");
    assert_eq!(send(req).await.0, 403);
}

const BASE_ONLY: &str = "AKIASIMBASEONLY00001";
const BASE_ONLY_SECRET: &str = "simbaseonlysecret/00000000000000000000";

/// A simulator set up like the benchmark's: one configured service key, a
/// base key for STS only, 1,000-character tokens, STS always verified.
async fn load_test_sim() -> Sim {
    Sim::start_with(
        SimOptions {
            credentials: vec![(AKID.into(), SecretString::new(SECRET.into()))],
            verify_signatures: true,
            record_limit: 100,
        },
        StsOptions {
            assume_role_only: vec![(BASE_ONLY.into(), SecretString::new(BASE_ONLY_SECRET.into()))],
            token_len: 1000,
            always_verify: true,
        },
    )
    .await
    .unwrap()
}

fn base_only_creds() -> aws_credential_types::Credentials {
    aws_credential_types::Credentials::new(BASE_ONLY, BASE_ONLY_SECRET, None, None, "test")
}

#[tokio::test]
async fn assume_role_only_keys_get_sessions_but_no_service() {
    let plain = sim(true).await;
    let sim = load_test_sim().await;
    let acme = assume_role(&sim, base_only_creds(), "acme").await.unwrap();
    assert_eq!(acme.session_token().unwrap().len(), 1000);
    assert_eq!(
        sim.sts_session(acme.access_key_id()).unwrap().caller,
        BASE_ONLY
    );
    let uri = format!("{}/model/m/converse", sim.url());
    let json = "application/json";
    let (status, _, body) = send(signed_as(&uri, CONVERSE, &acme, "bedrock", json)).await;
    assert_eq!(status, 200, "{body:?}");
    // The base key itself: a valid signature, but not allowed to call Bedrock.
    let (status, headers, body) = send(signed_as(
        &uri,
        CONVERSE,
        &base_only_creds(),
        "bedrock",
        json,
    ))
    .await;
    assert_eq!(status, 403);
    assert_eq!(headers["x-amzn-errortype"], "AccessDeniedException");
    assert!(String::from_utf8_lossy(&body).contains("sts:AssumeRole only"));
    let rec = sim.records().pop().unwrap();
    assert_eq!(rec.signature_ok, Some(false));
    // The configured service key still may do both.
    assert!(assume_role(&sim, base_creds(), "globex").await.is_ok());
    let (status, _, _) = send(signed(&uri, CONVERSE, SECRET)).await;
    assert_eq!(status, 200);
    assert_eq!(sim.stats.signatures_ok.load(Ordering::Relaxed), 2);
    assert_eq!(sim.stats.signatures_failed.load(Ordering::Relaxed), 1);
    // Default options: no such key.
    let e = assume_role(&plain, base_only_creds(), "acme")
        .await
        .unwrap_err();
    assert!(e.contains("InvalidClientTokenId"), "{e}");
}

#[tokio::test]
async fn sts_calls_are_counted_and_verified_while_services_are_not() {
    let plain = sim(true).await;
    let sim = load_test_sim().await;
    assume_role(&sim, base_only_creds(), "acme").await.unwrap();
    sim.set_verify(false);
    // Service calls: unsigned is fine now.
    let uri = format!("{}/model/m/converse", sim.url());
    let unsigned = Request::post(&uri)
        .body(Full::new(Bytes::from_static(CONVERSE)))
        .unwrap();
    assert_eq!(send(unsigned).await.0, 200);
    // STS calls: still verified.
    assume_role(&sim, base_only_creds(), "globex")
        .await
        .unwrap();
    let wrong = aws_credential_types::Credentials::new(BASE_ONLY, "wrong", None, None, "t");
    let e = assume_role(&sim, wrong, "acme").await.unwrap_err();
    assert!(e.contains("SignatureDoesNotMatch"), "{e}");
    let form = b"Action=AssumeRole&Version=2011-06-15";
    let ct = "application/x-www-form-urlencoded; charset=utf-8";
    let unsigned = Request::post(format!("{}/", sim.url()))
        .header("content-type", ct)
        .body(Full::new(Bytes::from_static(form)))
        .unwrap();
    assert_eq!(send(unsigned).await.0, 403);
    // Signed, but not a valid AssumeRole (no role): refused by STS itself.
    let uri = format!("{}/", sim.url());
    let (status, _, _) = send(signed_as(&uri, form, &base_only_creds(), "sts", ct)).await;
    assert_eq!(status, 400);

    let stats = &sim.stats;
    assert_eq!(stats.sts_requests.load(Ordering::Relaxed), 5);
    assert_eq!(stats.sts_refused.load(Ordering::Relaxed), 3);
    assert_eq!(stats.sts_signatures_ok.load(Ordering::Relaxed), 3);
    assert_eq!(stats.sts_signatures_failed.load(Ordering::Relaxed), 2);
    let first = stats.sts_first_refusal().unwrap();
    assert!(first.starts_with("403 SignatureDoesNotMatch: "), "{first}");
    let tenants: Vec<_> = sim
        .sts_sessions()
        .iter()
        .map(|s| s.tag("TenantID").unwrap().to_string())
        .collect();
    assert_eq!(tenants, ["acme", "globex"]);
    // Without `always_verify`, switching verification off covers STS too.
    plain.set_verify(false);
    let uri = format!("{}/", plain.url());
    let (status, _, _) = send(signed_as(&uri, form, &base_only_creds(), "sts", ct)).await;
    assert_eq!(
        status, 400,
        "not verified: only the missing RoleArn is refused"
    );
    assert_eq!(plain.stats.sts_signatures_failed.load(Ordering::Relaxed), 0);
    assert_eq!(plain.stats.sts_refused.load(Ordering::Relaxed), 1);
}

#[test]
fn async_invocations_and_agent_memory_are_answered_like_bedrock() {
    use crate::{sim_agent, sim_bedrock};
    // StartAsyncInvoke: the same token, the same job.
    let start = br#"{"modelId":"amazon.nova-reel-v1:0","modelInput":{},"outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://media-out/acme/x/"}},"clientRequestToken":"t-1"}"#;
    let (_, op) = sim_bedrock::route("/async-invoke").unwrap();
    let a = sim_bedrock::answer(op, "", start);
    let b = sim_bedrock::answer(op, "", start);
    assert_eq!((a.status, a.frames.concat()), (200, b.frames.concat()));
    let missing = sim_bedrock::answer(op, "", br#"{"modelId":"m","modelInput":{}}"#);
    assert_eq!(missing.status, 400);
    // GetAsyncInvoke: a job of the account, whoever it belongs to.
    let (arn, op) = sim_bedrock::route_get(
        "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aasync-invoke%2Fglobexjob001",
    )
    .unwrap();
    let job = sim_bedrock::answer(op, &arn, b"");
    let v: serde_json::Value = serde_json::from_slice(&job.frames.concat()).unwrap();
    assert_eq!(v["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"], "s3://media-out/globex/board-video/");
    assert_eq!(sim_bedrock::answer(op, "arn:aws:bedrock:us-east-1:111122223333:async-invoke/nosuchjob000", b"").status, 400);
    // GetAgentMemory: the memory asked for and a foreign one.
    let op = sim_agent::route_get("/agents/SUPPORT001/agentAliases/LIVEALIAS1/memories", Some("memoryType=SESSION_SUMMARY&memoryId=tgm-x")).unwrap();
    let m = sim_agent::answer(&op, b"");
    let v: serde_json::Value = serde_json::from_slice(&m.frames.concat()).unwrap();
    let ids: Vec<&str> = v["memoryContents"].as_array().unwrap().iter().map(|c| c["sessionSummary"]["memoryId"].as_str().unwrap()).collect();
    assert_eq!(ids, ["tgm-x", "tgm-0therusersmemory"]);
    let none = sim_agent::route_get("/agents/A/agentAliases/B/memories", None).unwrap();
    assert_eq!(sim_agent::answer(&none, b"").status, 400);
}
