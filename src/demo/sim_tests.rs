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
