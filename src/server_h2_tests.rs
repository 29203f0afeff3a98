//! HTTP/2 on the proxy listener, end to end in process: hyper's HTTP/2
//! client (prior knowledge on the plain listener, ALPN `h2` on the TLS one)
//! through a real `Sidecar` to the simulator, which verifies every SigV4
//! signature with its own verifier and records what arrived; hostile
//! frames written by hand (a client library refuses to send them).

use super::Sidecar;
use crate::audit::{Audit, AuditRecord};
use bytes::{BufMut, Bytes, BytesMut};
use rustls::pki_types::pem::PemObject;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tenantgate_sim::secret::SecretString as SimSecret;
use tenantgate_sim::sim::{Sim, SimOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const AKID: &str = "AKIAH2TESTTENANTACME";
const SECRET: &str = "h2-test-secret-of-tenant-acme-0123456789";
const MODEL: &str = "anthropic.claude-3-haiku-20240307-v1:0";
const DENIED_MODEL: &str = "amazon.nova-pro-v1:0";
const CONVERSE_BODY: &str = r#"{"messages":[{"role":"user","content":[{"text":"hello over h2"}]}]}"#;

struct World {
    sim: Sim,
    sidecar: Option<Sidecar>,
    audit: Arc<Mutex<Vec<AuditRecord>>>,
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

impl World {
    async fn start(tls: bool) -> World {
        World::start_with(tls, None, 10).await
    }

    /// `bedrock_runtime` at `upstream` instead of the simulator, and the
    /// stream idle timeout.
    async fn start_with(tls: bool, upstream: Option<String>, idle_secs: u64) -> World {
        std::env::set_var("TG_H2_TEST_AKID", AKID);
        std::env::set_var("TG_H2_TEST_SECRET", SECRET);
        let sim = Sim::start(SimOptions {
            credentials: vec![(AKID.to_string(), SimSecret::new(SECRET.to_string()))],
            ..SimOptions::default()
        })
        .await
        .unwrap();
        let tls_keys = if tls {
            format!(
                "tls_cert_file = {:?}\ntls_key_file = {:?}\n",
                fixture("localhost.crt").display().to_string(),
                fixture("localhost.key").display().to_string()
            )
        } else {
            String::new()
        };
        let text = format!(
            r#"[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
shutdown_grace_secs = 10
client_write_timeout_secs = {idle_secs}
{tls_keys}
[identity]
mode = "static"
tenant = "acme"

[aws]
region = "us-east-1"
response_timeout_secs = 10
stream_idle_timeout_secs = {idle_secs}
[aws.endpoints]
bedrock_runtime = "{runtime}"
bedrock_agent_runtime = "{sim}"
sagemaker_runtime = "{sim}"

[credentials]
source = "static"

[tenant_defaults.rate_limit]
requests_per_second = 1000
burst = 1000
max_concurrent = 64

[tenants.acme]
models = ["anthropic.claude-3-haiku-*"]
[tenants.acme.static_credentials]
access_key_id_env = "TG_H2_TEST_AKID"
secret_access_key_env = "TG_H2_TEST_SECRET"
"#,
            sim = sim.url(),
            runtime = upstream.unwrap_or_else(|| sim.url()),
        );
        let config = crate::config::parse_str(&text, std::path::Path::new(".")).unwrap_or_else(|e| panic!("{e:?}"));
        let (audit, records) = Audit::memory();
        let sidecar = Sidecar::start_with_audit(config, None, audit).await.unwrap();
        World { sim, sidecar: Some(sidecar), audit: records }
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.sidecar.as_ref().unwrap().proxy_addr
    }

    /// Requests of `ops` that reached the simulator, each checked: signed by
    /// the tenant's key, signature verified, `host` the endpoint's.
    fn upstream(&self, ops: &[&str]) -> usize {
        let records = self.sim.records();
        for r in &records {
            assert!(ops.contains(&r.operation), "{ops:?}: {r:?}");
            assert_eq!(r.signature_ok, Some(true), "{r:?}");
            assert_eq!(r.access_key.as_deref(), Some(AKID), "{r:?}");
            assert_eq!(r.headers.get("host").unwrap(), self.sim.addr.to_string().as_str());
            // Nothing of the client's connection reached upstream.
            for h in ["connection", "te", "transfer-encoding", "upgrade", "keep-alive"] {
                assert!(!r.headers.contains_key(h), "{h} forwarded: {r:?}");
            }
        }
        records.len()
    }

    fn audited(&self) -> Vec<AuditRecord> {
        self.audit.lock().unwrap().clone()
    }
}

type H2Sender = hyper::client::conn::http2::SendRequest<Full<Bytes>>;

async fn h2_over<I>(io: I, stream_window: Option<u32>) -> H2Sender
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut b = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
    if let Some(w) = stream_window {
        b.initial_stream_window_size(w);
    }
    let (sender, conn) = b.handshake(TokioIo::new(io)).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

/// Prior knowledge: the preface straight on the plain TCP connection.
async fn h2c(addr: std::net::SocketAddr) -> H2Sender {
    h2_over(TcpStream::connect(addr).await.unwrap(), None).await
}

/// A Converse (or ConverseStream) of `model` with `:authority` the sidecar
/// and no `host` header (HTTP/2 has none).
fn converse(addr: std::net::SocketAddr, model: &str, stream: bool) -> Request<Full<Bytes>> {
    let op = if stream { "converse-stream" } else { "converse" };
    Request::post(format!("http://{addr}/model/{model}/{op}"))
        .version(Version::HTTP_2)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(CONVERSE_BODY.as_bytes())))
        .unwrap()
}

async fn send(sender: &mut H2Sender, req: Request<Full<Bytes>>) -> (http::response::Parts, Bytes) {
    sender.ready().await.expect("connection usable");
    let resp = sender.send_request(req).await.expect("h2 response");
    let (parts, body) = resp.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(10), body.collect()).await.expect("body in time").unwrap();
    (parts, body.to_bytes())
}

fn text_of(body: &Bytes) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {body:?}"));
    v.pointer("/output/message/content/0/text").and_then(|t| t.as_str()).expect("text").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_converse_is_signed_as_the_tenant_and_a_denial_sends_nothing() {
    let w = World::start(false).await;
    let mut s = h2c(w.addr()).await;
    let (parts, body) = send(&mut s, converse(w.addr(), MODEL, false)).await;
    assert_eq!(parts.status, StatusCode::OK, "{body:?}");
    assert_eq!(parts.version, Version::HTTP_2);
    assert!(!text_of(&body).is_empty());
    assert_eq!(w.upstream(&["Converse"]), 1);
    let r = w.audited();
    assert_eq!((r.len(), r[0].status, r[0].tenant.as_deref()), (1, 200, Some("acme")), "{r:?}");

    // A model outside the allowlist: 403 with the reason, on the same
    // connection, and nothing more upstream.
    w.sim.clear_records();
    let (parts, body) = send(&mut s, converse(w.addr(), DENIED_MODEL, false)).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN, "{body:?}");
    assert_eq!(parts.headers.get("x-tenantgate-reason").unwrap(), "model_not_allowed");
    assert!(!parts.headers.contains_key("connection"), "no Connection header in HTTP/2");
    assert_eq!(w.upstream(&["Converse"]), 0);
    let r = w.audited();
    assert_eq!((r.len(), r[1].status, r[1].reason), (2, 403, Some("model_not_allowed")), "{r:?}");

    // The connection still serves requests after the denial.
    let (parts, _) = send(&mut s, converse(w.addr(), MODEL, false)).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(w.upstream(&["Converse"]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_still_served_on_the_same_plain_listener() {
    let w = World::start(false).await;
    let io = TokioIo::new(TcpStream::connect(w.addr()).await.unwrap());
    let (mut s, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(io).await.unwrap();
    tokio::spawn(conn);
    let mut req = converse(w.addr(), MODEL, false);
    *req.version_mut() = Version::HTTP_11;
    req.headers_mut().insert("host", w.addr().to_string().parse().unwrap());
    let resp = s.send_request(req).await.unwrap();
    assert_eq!((resp.status(), resp.version()), (StatusCode::OK, Version::HTTP_11));
    assert!(!text_of(&resp.into_body().collect().await.unwrap().to_bytes()).is_empty());
    assert_eq!(w.upstream(&["Converse"]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converse_stream_over_h2_arrives_whole_and_framed() {
    let w = World::start(false).await;
    let mut s = h2c(w.addr()).await;
    let (parts, body) = send(&mut s, converse(w.addr(), MODEL, true)).await;
    assert_eq!(parts.status, StatusCode::OK, "{body:?}");
    assert_eq!(parts.headers.get("content-type").unwrap(), "application/vnd.amazon.eventstream");
    let events = decode_event_types(&body);
    assert_eq!(events.first().map(String::as_str), Some("messageStart"), "{events:?}");
    assert!(events.iter().any(|e| e == "contentBlockDelta"), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("metadata"), "{events:?}");
    assert_eq!(w.upstream(&["ConverseStream"]), 1);
}

/// The `:event-type` of each event-stream message, checking each frame's
/// length prefix adds up (a truncated or corrupted stream fails).
fn decode_event_types(mut b: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !b.is_empty() {
        assert!(b.len() >= 16, "truncated frame");
        let total = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
        let headers_len = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
        assert!(total <= b.len() && 12 + headers_len <= total, "bad frame lengths");
        let mut h = &b[12..12 + headers_len];
        while !h.is_empty() {
            let n = h[0] as usize;
            let name = std::str::from_utf8(&h[1..1 + n]).unwrap().to_string();
            assert_eq!(h[1 + n], 7, "string header");
            let len = u16::from_be_bytes([h[2 + n], h[3 + n]]) as usize;
            let value = std::str::from_utf8(&h[4 + n..4 + n + len]).unwrap().to_string();
            if name == ":event-type" {
                out.push(value);
            }
            h = &h[4 + n + len..];
        }
        b = &b[total..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_on_one_connection() {
    let w = World::start(false).await;
    let s = h2c(w.addr()).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut s = s.clone();
        let addr = w.addr();
        tasks.push(tokio::spawn(async move { send(&mut s, converse(addr, MODEL, i % 2 == 1)).await }));
    }
    for t in tasks {
        let (parts, _) = t.await.unwrap();
        assert_eq!(parts.status, StatusCode::OK);
    }
    let records = w.sim.records();
    assert_eq!(records.len(), 20);
    assert!(records.iter().all(|r| r.signature_ok == Some(true) && r.access_key.as_deref() == Some(AKID)));
    assert_eq!(records.iter().filter(|r| r.operation == "ConverseStream").count(), 10);
    let r = w.audited();
    assert_eq!(r.iter().filter(|r| r.status == 200).count(), 20, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_over_tls_by_alpn_and_http1_over_tls_too() {
    let w = World::start(true).await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(fixture("ca.crt")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let connect = |alpn: Vec<Vec<u8>>| {
        let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        cfg.alpn_protocols = alpn;
        let addr = w.addr();
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await
        }
    };
    let tls = connect(vec![b"h2".to_vec(), b"http/1.1".to_vec()]).await.expect("TLS with ALPN h2");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut s = h2_over(tls, None).await;
    let (parts, body) = send(&mut s, converse(w.addr(), MODEL, false)).await;
    assert_eq!((parts.status, parts.version), (StatusCode::OK, Version::HTTP_2), "{body:?}");
    let (parts, _) = send(&mut s, converse(w.addr(), MODEL, true)).await;
    assert_eq!(parts.status, StatusCode::OK);
    let (parts, _) = send(&mut s, converse(w.addr(), DENIED_MODEL, false)).await;
    assert_eq!(parts.status, StatusCode::FORBIDDEN);
    assert_eq!(w.upstream(&["Converse", "ConverseStream"]), 2, "Converse and ConverseStream, not the denied one");

    // A client offering only http/1.1 (or no ALPN at all) speaks HTTP/1.1.
    for alpn in [vec![b"http/1.1".to_vec()], vec![]] {
        let tls = connect(alpn).await.expect("TLS");
        assert_ne!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut s, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(tls)).await.unwrap();
        tokio::spawn(conn);
        let mut req = converse(w.addr(), MODEL, false);
        *req.version_mut() = Version::HTTP_11;
        req.headers_mut().insert("host", "localhost".parse().unwrap());
        let resp = s.send_request(req).await.unwrap();
        assert_eq!((resp.status(), resp.version()), (StatusCode::OK, Version::HTTP_11));
    }
    // A client offering only protocols the sidecar does not speak fails the
    // handshake (no_application_protocol), and sends nothing.
    assert!(connect(vec![b"h2c".to_vec(), b"spdy/3".to_vec()]).await.is_err());
    assert_eq!(w.sim.records().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_an_open_h2_stream_finish_and_refuses_new_ones() {
    let mut w = World::start(false).await;
    // A window of 64 bytes: the stream stays open until this client reads.
    let mut s = h2_over(TcpStream::connect(w.addr()).await.unwrap(), Some(64)).await;
    s.ready().await.unwrap();
    let resp = s.send_request(converse(w.addr(), MODEL, true)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert!(!first.is_empty() && first.len() <= 64);

    // The connection serves another stream beside the open one.
    let (parts, _) = send(&mut s, converse(w.addr(), MODEL, false)).await;
    assert_eq!(parts.status, StatusCode::OK);
    assert_eq!(w.sim.records().len(), 2);

    let sidecar = w.sidecar.take().unwrap();
    let addr = sidecar.proxy_addr;
    let started = tokio::time::Instant::now();
    let shutdown = tokio::spawn(sidecar.shutdown());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!shutdown.is_finished(), "the drain waits for the open stream");
    // New connections are no longer accepted.
    let refused = tokio::time::timeout(Duration::from_secs(2), async {
        match TcpStream::connect(addr).await {
            Err(_) => true,
            Ok(mut c) => {
                let _ = c.write_all(crate::protocol::H2_PREFACE).await;
                let mut b = [0u8; 1];
                matches!(c.read(&mut b).await, Ok(0) | Err(_))
            }
        }
    })
    .await
    .unwrap();
    assert!(refused, "a new connection got served during the drain");
    // A new stream on the draining connection (GOAWAY sent) is not served.
    let more = tokio::time::timeout(Duration::from_secs(2), s.send_request(converse(addr, MODEL, false))).await;
    match more {
        Ok(Err(_)) => {}
        Ok(Ok(r)) => assert_ne!(r.status(), StatusCode::OK, "new stream served while draining"),
        Err(_) => panic!("a new stream on a draining connection hung"),
    }

    let mut rest = first.to_vec();
    while let Some(f) = tokio::time::timeout(Duration::from_secs(5), body.frame()).await.unwrap() {
        if let Ok(d) = f.unwrap().into_data() {
            rest.extend_from_slice(&d);
        }
    }
    let events = decode_event_types(&rest);
    assert_eq!(events.last().map(String::as_str), Some("metadata"), "the stream ended whole: {events:?}");
    tokio::time::timeout(Duration::from_secs(5), shutdown).await.expect("drain ends with the stream").unwrap();
    assert!(started.elapsed() < Duration::from_secs(8), "ended by the stream, not the 10 s grace");
    assert_eq!(w.sim.records().len(), 2, "nothing upstream after the drain began");
}

// ---- hostile HTTP/2, written frame by frame ----

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = BytesMut::new();
    f.put_uint(payload.len() as u64, 3);
    f.put_u8(kind);
    f.put_u8(flags);
    f.put_u32(stream);
    f.put_slice(payload);
    f.to_vec()
}

/// HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block of literal fields without indexing, no Huffman.
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

fn converse_fields(addr: std::net::SocketAddr, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut f = vec![
        (":method".to_string(), "POST".to_string()),
        (":scheme".into(), "http".into()),
        (":authority".into(), addr.to_string()),
        (":path".into(), format!("/model/{MODEL}/converse")),
        ("content-type".into(), "application/json".into()),
    ];
    f.extend(extra.iter().map(|(n, v)| (n.to_string(), v.to_string())));
    f
}

/// A raw HTTP/2 connection: preface and empty SETTINGS sent, the server's
/// SETTINGS received and acknowledged (so its limits are in force); frames
/// read back, answering any later SETTINGS with an ACK.
struct Raw(TcpStream);

impl Raw {
    async fn open(addr: std::net::SocketAddr) -> Raw {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(crate::protocol::H2_PREFACE).await.unwrap();
        c.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
        let mut h = [0u8; 9];
        c.read_exact(&mut h).await.unwrap();
        assert_eq!((h[3], h[4] & 1), (SETTINGS, 0), "the server starts with its SETTINGS");
        let mut payload = vec![0u8; u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize];
        c.read_exact(&mut payload).await.unwrap();
        c.write_all(&frame(SETTINGS, 1, 0, &[])).await.unwrap();
        Raw(c)
    }

    /// One header block, in HEADERS plus CONTINUATION frames of 16 KiB.
    async fn headers(&mut self, stream: u32, fields: &[(String, String)], end_stream: bool) {
        let f: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let block = header_block(&f);
        let chunks: Vec<&[u8]> = block.chunks(16 * 1024).collect();
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            let last = if i + 1 == chunks.len() { END_HEADERS } else { 0 };
            if i == 0 {
                out.extend(frame(HEADERS, last | if end_stream { END_STREAM } else { 0 }, stream, c));
            } else {
                out.extend(frame(0x9, last, stream, c));
            }
        }
        self.0.write_all(&out).await.unwrap();
    }

    async fn body(&mut self, stream: u32) {
        self.0.write_all(&frame(0x0, END_STREAM, stream, CONVERSE_BODY.as_bytes())).await.unwrap();
    }

    /// The next frame (type, flags, stream, payload), `None` at EOF.
    async fn next(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        loop {
            let mut h = [0u8; 9];
            self.0.read_exact(&mut h).await.ok()?;
            let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
            let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            self.0.read_exact(&mut payload).await.ok()?;
            if h[3] == SETTINGS && h[4] & 1 == 0 {
                self.0.write_all(&frame(SETTINGS, 1, 0, &[])).await.ok()?;
                continue;
            }
            return Some((h[3], h[4], stream, payload));
        }
    }

    /// What the server did with `stream`: `Reset(code)`, a response whose
    /// status is 200 (`Ok200`: HPACK static index 8) or not, or the whole
    /// connection ended (GOAWAY or EOF).
    async fn outcome(&mut self, stream: u32) -> Outcome {
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some((kind, _, s, p)) = self.next().await {
                match kind {
                    RST_STREAM if s == stream => return Outcome::Reset(u32::from_be_bytes(p[..4].try_into().unwrap())),
                    HEADERS if s == stream => return if p.first() == Some(&0x88) { Outcome::Ok200 } else { Outcome::NotOk },
                    GOAWAY => return Outcome::Closed,
                    _ => {}
                }
            }
            Outcome::Closed
        });
        got.await.expect("the server answered the stream in time")
    }
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Reset(u32),
    Ok200,
    NotOk,
    Closed,
}

const PROTOCOL_ERROR: u32 = 0x1;
const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_specific_headers_over_h2_are_refused_and_nothing_goes_upstream() {
    let w = World::start(false).await;
    // The hand-written client works: the same request without the
    // illegal header is answered 200 (after its body).
    let mut raw = Raw::open(w.addr()).await;
    raw.headers(1, &converse_fields(w.addr(), &[]), false).await;
    raw.body(1).await;
    assert_eq!(raw.outcome(1).await, Outcome::Ok200);
    assert_eq!(w.sim.records().len(), 1);
    w.sim.clear_records();

    for (name, value) in [
        ("connection", "keep-alive"),
        ("connection", "x-amzn-bedrock-guardrailidentifier"),
        ("te", "gzip"),
        ("transfer-encoding", "chunked"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("upgrade", "h2c"),
        // Upper case names are malformed in HTTP/2 (RFC 9113 §8.2.1).
        ("Content-Type", "application/json"),
    ] {
        let mut raw = Raw::open(w.addr()).await;
        raw.headers(1, &converse_fields(w.addr(), &[(name, value)]), false).await;
        raw.body(1).await;
        let got = raw.outcome(1).await;
        if name == "Content-Type" {
            assert!(matches!(got, Outcome::Reset(PROTOCOL_ERROR) | Outcome::Closed), "{name} -> {got:?}");
        } else {
            assert_eq!(got, Outcome::Reset(PROTOCOL_ERROR), "{name}: {value}");
        }
    }
    // `te: trailers` is the one legal TE: served, and TE is not forwarded.
    let mut raw = Raw::open(w.addr()).await;
    raw.headers(1, &converse_fields(w.addr(), &[("te", "trailers")]), false).await;
    raw.body(1).await;
    assert_eq!(raw.outcome(1).await, Outcome::Ok200);
    assert_eq!(w.upstream(&["Converse"]), 1, "only the te: trailers request went upstream");

    // A `host` header beside `:authority` (or instead of it) decides
    // nothing: upstream gets the endpoint's host, signed.
    w.sim.clear_records();
    let mut fields = converse_fields(w.addr(), &[("host", "bedrock-runtime.attacker.example")]);
    let mut raw = Raw::open(w.addr()).await;
    raw.headers(1, &fields, false).await;
    raw.body(1).await;
    assert_eq!(raw.outcome(1).await, Outcome::Ok200);
    fields.retain(|(n, _)| n != ":authority");
    raw.headers(3, &fields, false).await;
    raw.body(3).await;
    assert_eq!(raw.outcome(3).await, Outcome::Ok200);
    assert_eq!(w.upstream(&["Converse"]), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_header_list_is_refused_before_routing() {
    let w = World::start(false).await;
    let limit = crate::protocol::H2_MAX_HEADER_LIST_SIZE as usize;
    // Over the limit by the other fields: never routed, nothing upstream.
    let mut raw = Raw::open(w.addr()).await;
    raw.headers(1, &converse_fields(w.addr(), &[("user-agent", &"a".repeat(limit))]), false).await;
    raw.body(1).await;
    let got = raw.outcome(1).await;
    assert_eq!(got, Outcome::NotOk, "answered with an error status (431), not served");
    assert_eq!(w.sim.records().len(), 0, "{:?}", w.sim.records());
    assert!(w.audited().is_empty(), "refused by the HTTP/2 layer, before the pipeline");
    // Just under it (user-agent is forwarded): served, so the limit is the
    // one stated.
    let mut raw = Raw::open(w.addr()).await;
    raw.headers(1, &converse_fields(w.addr(), &[("user-agent", &"a".repeat(limit - 1024))]), false).await;
    raw.body(1).await;
    assert_eq!(raw.outcome(1).await, Outcome::Ok200);
    assert_eq!(w.upstream(&["Converse"]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_concurrency_limit_are_refused() {
    let w = World::start(false).await;
    let mut raw = Raw::open(w.addr()).await;
    // Open the allowed streams, each waiting for its body.
    let fields = converse_fields(w.addr(), &[]);
    let limit = crate::protocol::H2_MAX_CONCURRENT_STREAMS;
    for i in 0..limit {
        raw.headers(2 * i + 1, &fields, false).await;
    }
    let over = 2 * limit + 1;
    raw.headers(over, &fields, false).await;
    assert_eq!(raw.outcome(over).await, Outcome::Reset(REFUSED_STREAM));
    // None of them reached upstream (no body yet); then one finishes its
    // body and is served on the same connection.
    assert_eq!(w.sim.records().len(), 0);
    raw.body(1).await;
    assert_eq!(raw.outcome(1).await, Outcome::Ok200);
    assert_eq!(w.upstream(&["Converse"]), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_flood_ends_the_connection() {
    let w = World::start(false).await;
    let mut raw = Raw::open(w.addr()).await;
    let fields = converse_fields(w.addr(), &[]);
    // Open and at once reset many streams (CVE-2023-44487).
    let mut burst = Vec::new();
    for i in 0..2000u32 {
        let f: Vec<(&str, &str)> = fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        burst.extend(frame(HEADERS, END_HEADERS, 2 * i + 1, &header_block(&f)));
        burst.extend(frame(RST_STREAM, 0, 2 * i + 1, &8u32.to_be_bytes()));
    }
    let _ = raw.0.write_all(&burst).await;
    let goaway = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some((kind, _, _, p)) = raw.next().await {
            if kind == GOAWAY {
                return Some(u32::from_be_bytes(p[4..8].try_into().unwrap()));
            }
        }
        None
    })
    .await
    .expect("the connection ends in time");
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM));
    assert_eq!(w.sim.records().len(), 0);
}

// ---- a stream whose client grants it no window ----

fn event_frame(text: &str) -> Bytes {
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
    let payload = serde_json::json!({"contentBlockIndex": 0, "delta": {"text": text}}).to_string();
    let msg = Message::new(payload.into_bytes())
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
        .add_header(Header::new(":event-type", HeaderValue::String("contentBlockDelta".into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
    let mut out = Vec::new();
    write_message_to(&msg, &mut out).unwrap();
    Bytes::from(out)
}

/// An upstream whose ConverseStream never ends (a delta every 20 ms) and
/// whose Converse answers at once; `closed` turns true when the sidecar
/// drops an endless stream.
async fn endless_upstream(closed: Arc<std::sync::atomic::AtomicBool>) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { return };
            let closed = closed.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let closed = closed.clone();
                async move {
                    type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;
                    if !req.uri().path().ends_with("/converse-stream") {
                        // "hi", or 2 MB of text when the model id says "big".
                        let text = if req.uri().path().contains("big") { "y".repeat(2 << 20) } else { "hi".into() };
                        let json = serde_json::json!({
                            "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
                            "stopReason": "end_turn",
                            "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                            "metrics": {"latencyMs": 1}
                        });
                        let body: Body = Full::new(Bytes::from(json.to_string())).boxed();
                        return Ok::<_, std::convert::Infallible>(
                            http::Response::builder().header("content-type", "application/json").body(body).unwrap(),
                        );
                    }
                    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
                    tokio::spawn(async move {
                        loop {
                            if tx.send(event_frame(&"x".repeat(200))).await.is_err() {
                                closed.store(true, std::sync::atomic::Ordering::SeqCst);
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    });
                    let body: Body = ChanBody(rx).boxed();
                    Ok(http::Response::builder().header("content-type", "application/vnd.amazon.eventstream").body(body).unwrap())
                }
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), svc));
        }
    });
    url
}

/// An mpsc receiver of data chunks as a response body.
struct ChanBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChanBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_granted_no_window_is_cut_off_and_its_connection_lives_on() {
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let upstream = endless_upstream(closed.clone()).await;
    let w = World::start_with(false, Some(upstream), 1).await;
    // A 64-byte stream window this client never reopens for the stream
    // (it does not read the body), while it keeps reading the connection.
    let mut s = h2_over(TcpStream::connect(w.addr()).await.unwrap(), Some(64)).await;
    s.ready().await.unwrap();
    let resp = s.send_request(converse(w.addr(), MODEL, true)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let stalled = resp.into_body();

    // Within the 1 s idle timeout (plus a check's slack) the body is dropped:
    // audited client_stalled, the upstream stream closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let cut = w.audited().iter().any(|r| r.stream_error == Some(crate::audit::StreamEnd::ClientStalled));
        if cut && closed.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not cut off: {:?}", w.audited());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = w.audited();
    assert_eq!((r.len(), r[0].status), (1, 200), "{r:?}");

    // The connection (and its pings) lives on: another stream is served.
    let (parts, body) = send(&mut s, converse(w.addr(), MODEL, false)).await;
    assert_eq!(parts.status, StatusCode::OK, "{body:?}");
    assert_eq!(text_of(&body), "hi");

    // Reading the cut stream now ends in an error (a reset), never in what
    // would look like a complete answer.
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.collect()).await.expect("ends in time");
    assert!(read.is_err(), "the cut stream ended cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_reset_for_protocol_errors_past_the_limit_end_the_connection() {
    let w = World::start(false).await;
    let mut raw = Raw::open(w.addr()).await;
    let fields = converse_fields(w.addr(), &[("connection", "keep-alive")]);
    let limit = crate::protocol::H2_MAX_LOCAL_ERROR_RESET_STREAMS as u32;
    // Each of these is reset by the sidecar (malformed); one more than the
    // limit ends the connection.
    let mut resets = 0;
    let mut goaway = None;
    for i in 0..=limit {
        raw.headers(2 * i + 1, &fields, true).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some((kind, _, _, p)) = raw.next().await {
            match kind {
                RST_STREAM => resets += 1,
                GOAWAY => {
                    goaway = Some(u32::from_be_bytes(p[4..8].try_into().unwrap()));
                    return;
                }
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(goaway, Some(ENHANCE_YOUR_CALM), "after {resets} resets");
    assert!(resets <= limit as usize, "{resets} resets before GOAWAY");
    assert_eq!(w.sim.records().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_while_the_body_is_still_coming_is_answered_whole_then_reset_with_no_error() {
    let w = World::start(false).await;
    let mut raw = Raw::open(w.addr()).await;
    let mut fields = converse_fields(w.addr(), &[]);
    fields[3].1 = format!("/model/{DENIED_MODEL}/converse");
    // Headers and part of the body; the rest never comes.
    raw.headers(1, &fields, false).await;
    raw.0.write_all(&frame(0x0, 0, 1, b"{\"messages\": [")).await.unwrap();
    let mut seen = Vec::new();
    let reset = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some((kind, flags, stream, p)) = raw.next().await {
            if stream != 1 {
                continue;
            }
            seen.push((kind, flags & END_STREAM));
            if kind == RST_STREAM {
                return Some(u32::from_be_bytes(p[..4].try_into().unwrap()));
            }
        }
        None
    })
    .await
    .expect("the stream ends in time");
    // The whole 403 (headers, then its body ending the stream), and only
    // then RST_STREAM(NO_ERROR): stop sending, keep the answer (RFC 9113
    // §8.1). A CANCEL, or a reset before the end, may make a client drop it.
    assert_eq!(seen.first(), Some(&(HEADERS, 0)), "{seen:?}");
    assert_eq!(seen[seen.len() - 2], (0x0, END_STREAM), "{seen:?}");
    assert_eq!(reset, Some(0), "{seen:?}");
    let r = w.audited();
    assert_eq!((r.len(), r[0].status, r[0].reason), (1, 403, Some("model_not_allowed")), "{r:?}");
    assert_eq!(w.sim.records().len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_answer_granted_no_window_is_dropped_not_parked_in_the_connection() {
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let upstream = endless_upstream(closed).await;
    let w = World::start_with(false, Some(upstream), 1).await;
    let mut s = h2_over(TcpStream::connect(w.addr()).await.unwrap(), Some(64)).await;
    s.ready().await.unwrap();
    // A 2 MB Converse answer, held whole (redaction is on by default) and
    // audited complete before it is sent.
    let model = "anthropic.claude-3-haiku-big";
    let resp = s.send_request(converse(w.addr(), model, false)).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let stalled = resp.into_body();
    // The 1 s write timeout passes with the client granting nothing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The rest of the answer was dropped, not queued on the connection: the
    // client, reading now, gets a reset instead of the whole answer.
    let read = tokio::time::timeout(Duration::from_secs(5), stalled.collect()).await.expect("ends in time");
    assert!(read.is_err(), "the whole 2 MB answer was still there");
    // The connection lives on.
    let (parts, body) = send(&mut s, converse(w.addr(), MODEL, false)).await;
    assert_eq!((parts.status, text_of(&body).as_str()), (StatusCode::OK, "hi"));
    let r = w.audited();
    assert_eq!(r.iter().filter(|r| r.status == 200).count(), 2, "{r:?}");
}
