//! A minimal STS for the benchmark, in the load generator's process: answers
//! `POST /` `Action=AssumeRole` (AWS Query protocol, form-encoded body) with
//! the XML document real STS sends, issuing fresh credentials on every call.
//! No signature verification: the request must only look signed with the
//! sidecar's base key for service `sts`, carry `Version=2011-06-15`, a role
//! ARN, a session name and a `TenantID` session tag. Anything else is answered
//! 400 and counted as bad.
//!
//! Issued keys are a function of a serial number (`issued`), so the simulator
//! can be told the first few before the sidecar asks for them, and verify the
//! signatures made with them. The session token is `TOKEN_LEN` characters, the
//! size of a real AssumeRole token with a session tag, so the memory figures
//! hold realistic entries.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;

const NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";
const ACCOUNT: &str = "111122223333";
/// Length of an issued session token (real ones with one session tag are
/// roughly 800-1,100 characters).
pub const TOKEN_LEN: usize = 1000;

/// (access key id, secret access key) of the `serial`-th issued session.
pub fn issued(serial: u64) -> (String, String) {
    let akid = format!("ASIABENCH{serial:011}");
    let secret = format!("stsbenchsecret/{serial:012}/abcdefghijklmn");
    (akid, secret)
}

fn session_token(serial: u64, tenant: &str) -> String {
    use base64::Engine as _;
    let mut raw = format!("tenantgate-bench-sts|{serial}|{tenant}|").into_bytes();
    // Filler that differs per serial, so tokens do not share bytes by chance.
    let mut x = serial.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while raw.len() < TOKEN_LEN * 3 / 4 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        raw.push(x as u8);
    }
    let mut t = String::from("IQoJb3JpZ2luX2Vj");
    t.push_str(&base64::engine::general_purpose::STANDARD.encode(raw));
    t.truncate(TOKEN_LEN);
    t
}

#[derive(Default)]
pub struct StsStats {
    /// Every request received (good or bad).
    pub calls: AtomicU64,
    /// Requests answered with credentials.
    pub issued: AtomicU64,
    /// Requests refused (not a well-formed, signed AssumeRole).
    pub bad: AtomicU64,
    pub first_bad: Mutex<Option<String>>,
    /// AssumeRole calls per `TenantID` tag.
    pub per_tenant: Mutex<HashMap<String, u64>>,
}

impl StsStats {
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub fn bad(&self) -> u64 {
        self.bad.load(Ordering::Relaxed)
    }

    pub fn tenants(&self) -> usize {
        self.per_tenant.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Tenants that were assumed more than once.
    pub fn repeated_tenants(&self) -> usize {
        self.per_tenant
            .lock()
            .map(|m| m.values().filter(|&&n| n > 1).count())
            .unwrap_or(0)
    }

    pub fn first_bad(&self) -> Option<String> {
        self.first_bad.lock().ok().and_then(|f| f.clone())
    }
}

struct State {
    stats: Arc<StsStats>,
    base_akid: String,
    next_serial: AtomicU64,
}

pub struct Sts {
    pub addr: SocketAddr,
    pub stats: Arc<StsStats>,
    accept: tokio::task::JoinHandle<()>,
}

impl Sts {
    /// Binds 127.0.0.1:0 on the current runtime. `base_akid` is the key the
    /// sidecar's AssumeRole calls must be signed with; issued serials start at
    /// `first_serial`.
    pub async fn start(base_akid: &str, first_serial: u64) -> Result<Sts, String> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("sts bind: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stats = Arc::new(StsStats::default());
        let state = Arc::new(State {
            stats: stats.clone(),
            base_akid: base_akid.to_string(),
            next_serial: AtomicU64::new(first_serial),
        });
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Ok(Sts {
            addr,
            stats,
            accept,
        })
    }
}

impl Drop for Sts {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let dec = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (dec(k), dec(v))
        })
        .collect()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn reply(status: u16, body: String) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/xml"),
    );
    r
}

async fn handle(state: &State, req: http::Request<Incoming>) -> http::Response<Full<Bytes>> {
    let stats = &state.stats;
    stats.calls.fetch_add(1, Ordering::Relaxed);
    let rid = stats.calls();
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    match assume_role(state, &parts, &body) {
        Ok(xml) => {
            stats.issued.fetch_add(1, Ordering::Relaxed);
            reply(200, xml)
        }
        Err(why) => {
            stats.bad.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut f) = stats.first_bad.lock() {
                f.get_or_insert_with(|| why.clone());
            }
            reply(
                400,
                format!(
                    "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>InvalidParameterValue</Code>\
                     <Message>{}</Message></Error><RequestId>bench-{rid}</RequestId></ErrorResponse>",
                    xml_escape(&why)
                ),
            )
        }
    }
}

fn assume_role(state: &State, parts: &http::request::Parts, body: &[u8]) -> Result<String, String> {
    if parts.method != http::Method::POST || parts.uri.path() != "/" {
        return Err(format!("{} {}: expected POST /", parts.method, parts.uri));
    }
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let scope = format!("Credential={}/", state.base_akid);
    if !auth.starts_with("AWS4-HMAC-SHA256 ")
        || !auth.contains(&scope)
        || !auth.contains("/sts/aws4_request")
    {
        return Err(format!("not signed with the base key for sts: {auth:?}"));
    }
    let p = form(body);
    let get = |k: &str| p.get(k).map(String::as_str).unwrap_or("");
    if get("Action") != "AssumeRole" || get("Version") != "2011-06-15" {
        return Err(format!(
            "Action={:?} Version={:?}",
            get("Action"),
            get("Version")
        ));
    }
    let (role_arn, session) = (get("RoleArn"), get("RoleSessionName"));
    if !role_arn.starts_with("arn:aws:iam::") || session.is_empty() {
        return Err(format!("RoleArn={role_arn:?} RoleSessionName={session:?}"));
    }
    let tenant = (1..=50)
        .map_while(|n| Some((p.get(&format!("Tags.member.{n}.Key"))?, n)))
        .find(|(k, _)| k.as_str() == "TenantID")
        .and_then(|(_, n)| p.get(&format!("Tags.member.{n}.Value")))
        .filter(|v| !v.is_empty())
        .ok_or("no TenantID session tag")?
        .clone();
    let secs: u64 = get("DurationSeconds").parse().unwrap_or(3600);
    let serial = state.next_serial.fetch_add(1, Ordering::Relaxed);
    let (akid, secret) = issued(serial);
    let token = session_token(serial, &tenant);
    let expiration =
        humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(secs));
    let role_name = role_arn.rsplit('/').next().unwrap_or("role");
    if let Ok(mut m) = state.stats.per_tenant.lock() {
        *m.entry(tenant).or_default() += 1;
    }
    Ok(format!(
        "<AssumeRoleResponse xmlns=\"{NS}\">\n  <AssumeRoleResult>\n    <Credentials>\
         <AccessKeyId>{akid}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>\
         <SessionToken>{token}</SessionToken><Expiration>{expiration}</Expiration></Credentials>\n    \
         <AssumedRoleUser><AssumedRoleId>AROABENCHROLE0000001:{s}</AssumedRoleId>\
         <Arn>arn:aws:sts::{ACCOUNT}:assumed-role/{r}/{s}</Arn></AssumedRoleUser>\n    \
         <PackedPolicySize>3</PackedPolicySize>\n  </AssumeRoleResult>\n  \
         <ResponseMetadata><RequestId>00000000-0000-4000-8000-{serial:012x}</RequestId></ResponseMetadata>\n\
         </AssumeRoleResponse>\n",
        s = xml_escape(session),
        r = xml_escape(role_name),
    ))
}
