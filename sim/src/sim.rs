//! A built-in AWS simulator: an HTTP/1.1 server on 127.0.0.1 that answers
//! like the real services: STS AssumeRole (`sim_sts`), the Bedrock runtime
//! (`sim_bedrock`), the Bedrock agent runtime's Retrieve and InvokeAgent
//! (`sim_agent`) and SageMaker InvokeEndpoint (`sim_sagemaker`). It verifies
//! SigV4 on every request with an independent verifier (the signing name
//! must be the service's: `sts`, `bedrock`, `sagemaker`), and records what
//! it received. It is the upstream of `tenantgate demo` and of the benchmark.
//!
//! Keys: the configured keys may call every service, STS included (with or
//! without a session token, which is not checked for them); keys given as
//! `StsOptions::assume_role_only` may call STS only. Each AssumeRole issues
//! a temporary key that is accepted from then on, with its own session token
//! only (`x-amz-security-token`, signed), and never for STS itself. Service
//! calls are recorded in `records`; STS calls are not (they are not what a
//! scenario sent), the sessions they issued are (`sts_sessions`), and they
//! are counted (`SimStats::sts_requests`, `sts_refused`).
//!
//! Verification can be switched off at run time (`set_verify`) for unsigned
//! traffic such as the benchmark's direct baseline; answers are the same
//! bytes either way. With `StsOptions::always_verify`, STS calls are still
//! verified then.

use super::sigv4_check::SigV4Verifier;
use super::sim_bedrock::{self, Answer};
use super::sim_route::{check_signature, Target};
use super::sim_sts::{self, Sessions};
pub use super::sim_sts::{StsOptions, StsSession, DEFAULT_TOKEN_LEN};
use super::{sim_agent, sim_sagemaker};
use crate::secret::SecretString;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::watch;

const MAX_BODY: usize = 16 * 1024 * 1024;
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Request and answer bodies kept in a record (for showing what the proxy
/// rewrote and what it filtered out of the answer).
const RECORD_BODY_LIMIT: usize = 64 * 1024;

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Access key id -> secret access key: the keys the "account" knows.
    pub credentials: Vec<(String, SecretString)>,
    pub verify_signatures: bool,
    /// Records kept (counters go on past it); 0 keeps none.
    pub record_limit: usize,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            credentials: Vec::new(),
            verify_signatures: true,
            record_limit: 10_000,
        }
    }
}

/// One request as the simulator saw it.
#[derive(Debug, Clone)]
pub struct SimRecord {
    pub method: String,
    /// Path and query as received (still percent-encoded).
    pub path: String,
    /// Access key id of the `Authorization` header, whether or not it verified.
    pub access_key: Option<String>,
    /// Signing name from the credential scope (`bedrock`, `sagemaker`).
    pub service: Option<String>,
    /// The operation the path names (`Converse`, `Retrieve`, `InvokeAgent`,
    /// `InvokeEndpoint`, ...), `unknown` for any other path.
    pub operation: &'static str,
    /// What the path names, decoded: model id, knowledge base id,
    /// `agentId/aliasId` or endpoint name.
    pub resource: Option<String>,
    /// `Some(true|false)` when verification is on, `None` when it is off.
    pub signature_ok: Option<bool>,
    pub body_len: usize,
    /// The first 64 KiB of the body.
    pub body: Bytes,
    /// Request headers, `authorization` removed.
    pub headers: http::HeaderMap,
    pub status: u16,
    /// The first 64 KiB of the answer's body (all its frames).
    pub response: Bytes,
}

/// Counters over every request, kept even past `record_limit`.
#[derive(Debug, Default)]
pub struct SimStats {
    /// Every request, STS included.
    pub requests: AtomicU64,
    /// Service calls (everything but STS).
    pub signatures_ok: AtomicU64,
    pub signatures_failed: AtomicU64,
    /// STS calls.
    pub sts_signatures_ok: AtomicU64,
    pub sts_signatures_failed: AtomicU64,
    /// Every STS call, verified or not.
    pub sts_requests: AtomicU64,
    /// STS calls answered with an error (credentials, or not a valid
    /// AssumeRole).
    pub sts_refused: AtomicU64,
    sts_first_refusal: Mutex<Option<String>>,
}

impl SimStats {
    /// `STATUS CODE: message` of the first refused STS call.
    pub fn sts_first_refusal(&self) -> Option<String> {
        self.sts_first_refusal.lock().ok().and_then(|f| f.clone())
    }

    fn count_sts(&self, answer: &Answer) {
        self.sts_requests.fetch_add(1, Ordering::Relaxed);
        if answer.status != 200 {
            self.sts_refused.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut f) = self.sts_first_refusal.lock() {
                f.get_or_insert_with(|| sim_sts::error_summary(answer));
            }
        }
    }
}

struct State {
    /// Long-term keys plus every temporary key STS issued.
    verifier: RwLock<SigV4Verifier>,
    sts: Sessions,
    verify: AtomicBool,
    always_verify_sts: bool,
    record_limit: usize,
    records: Arc<Mutex<Vec<SimRecord>>>,
    stats: Arc<SimStats>,
    next_id: AtomicU64,
}

/// A running simulator. Dropping it without `shutdown` stops accepting too.
pub struct Sim {
    pub addr: SocketAddr,
    pub records: Arc<Mutex<Vec<SimRecord>>>,
    pub stats: Arc<SimStats>,
    state: Arc<State>,
    stop: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Sim {
    /// Binds 127.0.0.1:0 and starts serving on the current tokio runtime.
    pub async fn start(opts: SimOptions) -> std::io::Result<Sim> {
        Self::start_on(opts, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    pub async fn start_on(opts: SimOptions, bind: SocketAddr) -> std::io::Result<Sim> {
        Self::start_on_with(opts, StsOptions::default(), bind).await
    }

    /// [`Sim::start`] with STS settings other than the defaults.
    pub async fn start_with(opts: SimOptions, sts: StsOptions) -> std::io::Result<Sim> {
        Self::start_on_with(opts, sts, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    async fn start_on_with(
        opts: SimOptions,
        sts: StsOptions,
        bind: SocketAddr,
    ) -> std::io::Result<Sim> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let records = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(SimStats::default());
        let keys = opts
            .credentials
            .into_iter()
            .chain(sts.assume_role_only.iter().cloned());
        let state = Arc::new(State {
            verifier: RwLock::new(SigV4Verifier::new(keys)),
            sts: Sessions::new(&sts),
            verify: AtomicBool::new(opts.verify_signatures),
            always_verify_sts: sts.always_verify,
            record_limit: opts.record_limit,
            records: records.clone(),
            stats: stats.clone(),
            next_id: AtomicU64::new(1),
        });
        let (stop, stop_rx) = watch::channel(false);
        let accept = tokio::spawn(accept_loop(listener, state.clone(), stop_rx));
        Ok(Sim {
            addr,
            records,
            stats,
            state,
            stop,
            accept,
        })
    }

    /// `http://127.0.0.1:PORT`, for endpoint configuration.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_verify(&self, on: bool) {
        self.state.verify.store(on, Ordering::Relaxed);
    }

    /// A copy of the records so far.
    pub fn records(&self) -> Vec<SimRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The STS sessions issued so far (no secrets).
    pub fn sts_sessions(&self) -> Vec<StsSession> {
        self.state.sts.all()
    }

    /// The STS session a temporary access key belongs to.
    pub fn sts_session(&self, access_key_id: &str) -> Option<StsSession> {
        self.state.sts.get(access_key_id)
    }

    /// The session tokens handed out, so a caller's tests can check none is
    /// ever printed.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.sts.issued_tokens()
    }

    pub fn clear_records(&self) {
        if let Ok(mut r) = self.records.lock() {
            r.clear();
        }
    }

    /// Stops accepting and asks open connections to close after their
    /// current request.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.accept.abort();
        let _ = (&mut self.accept).await;
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, state: Arc<State>, stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(error = %e, "sim accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(handle(&state, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            let stopped = tokio::select! {
                _ = conn.as_mut() => false,
                r = stop.wait_for(|s| *s) => r.is_ok(),
            };
            if stopped {
                conn.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
            }
        });
    }
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<FramesBody> {
    let request_id = format!(
        "00000000-0000-4000-8000-{:012x}",
        state.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let body =
        match tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(_)) => {
                let a = Answer::error(413, "ValidationException", "body too large or broken");
                return respond(&request_id, a);
            }
            Err(_) => {
                let a = Answer::error(408, "RequestTimeoutException", "body timeout");
                return respond(&request_id, a);
            }
        };
    state.stats.requests.fetch_add(1, Ordering::Relaxed);
    let target = Target::classify(&parts.method, parts.uri.path(), parts.uri.query(), &parts.headers);
    let is_sts = matches!(target, Target::Sts);
    let now = SystemTime::now();

    let (access_key, service) = credential_of(&parts.headers);
    let mut signature_ok = None;
    let mut answer = None;
    if state.verify.load(Ordering::Relaxed) || (is_sts && state.always_verify_sts) {
        let res = check_signature(
            &state.verifier,
            &state.sts,
            &parts,
            &path,
            &body,
            &target,
            now,
        );
        signature_ok = Some(res.is_ok());
        let (ok, failed) = if is_sts {
            (
                &state.stats.sts_signatures_ok,
                &state.stats.sts_signatures_failed,
            )
        } else {
            (&state.stats.signatures_ok, &state.stats.signatures_failed)
        };
        match res {
            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
            Err(r) => {
                tracing::debug!(message = %r.message, path, "sim rejected the request's credentials");
                answer = Some(if is_sts {
                    sim_sts::error(r.status, r.sts_code, &r.message, &request_id)
                } else {
                    Answer::error(r.status, r.aws_type, &r.message)
                });
                failed.fetch_add(1, Ordering::Relaxed)
            }
        };
    }
    let answer = answer.unwrap_or_else(|| match &target {
        Target::Sts => {
            let caller = access_key.as_deref().unwrap_or("-");
            let form = sim_sts::parse_form(&body);
            let (a, key) = sim_sts::answer(&state.sts, &form, caller, now, &request_id);
            if let (Some(k), Ok(mut v)) = (key, state.verifier.write()) {
                v.add_key(k.access_key_id, k.secret);
            }
            a
        }
        Target::Bedrock(model, op) => sim_bedrock::answer(*op, model, &body),
        Target::Agent(op) => sim_agent::answer(op, &body),
        Target::SageMaker(name) => sim_sagemaker::answer(name, &parts.headers, &body),
        Target::Unknown => Answer::error(404, "UnknownOperationException", "Unknown operation"),
    });
    if is_sts {
        state.stats.count_sts(&answer);
    }

    if state.record_limit > 0 && !is_sts {
        let mut headers = parts.headers.clone();
        headers.remove(http::header::AUTHORIZATION);
        let rec = SimRecord {
            method: parts.method.to_string(),
            path,
            access_key,
            service,
            operation: target.operation(),
            resource: target.resource(),
            signature_ok,
            body_len: body.len(),
            body: body.slice(..body.len().min(RECORD_BODY_LIMIT)),
            headers,
            status: answer.status,
            response: answer_prefix(&answer.frames),
        };
        if let Ok(mut r) = state.records.lock() {
            if r.len() < state.record_limit {
                r.push(rec);
            }
        }
    }
    respond(&request_id, answer)
}

fn answer_prefix(frames: &[Bytes]) -> Bytes {
    let mut out = Vec::new();
    for f in frames {
        let room = RECORD_BODY_LIMIT - out.len();
        out.extend_from_slice(&f[..f.len().min(room)]);
        if out.len() == RECORD_BODY_LIMIT {
            break;
        }
    }
    Bytes::from(out)
}

/// Access key id and service of the `Authorization` credential scope.
fn credential_of(headers: &http::HeaderMap) -> (Option<String>, Option<String>) {
    let Some(auth) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return (None, None);
    };
    let Some(cred) = auth.split("Credential=").nth(1) else {
        return (None, None);
    };
    let scope: Vec<&str> = cred
        .split([',', ' '])
        .next()
        .unwrap_or("")
        .split('/')
        .collect();
    (
        scope.first().map(|s| s.to_string()),
        scope.get(3).map(|s| s.to_string()),
    )
}

fn respond(request_id: &str, answer: Answer) -> Response<FramesBody> {
    let mut resp = Response::new(FramesBody::new(answer.frames, answer.streaming));
    *resp.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    for (k, v) in answer.headers {
        if let Ok(v) = http::HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

/// A body made of ready frames: one for JSON (with a content-length), one
/// per event for event streams (chunked, as AWS sends them).
pub struct FramesBody {
    frames: VecDeque<Bytes>,
    streaming: bool,
}

impl FramesBody {
    fn new(frames: Vec<Bytes>, streaming: bool) -> Self {
        FramesBody {
            frames: frames.into(),
            streaming,
        }
    }
}

impl Body for FramesBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(
            self.get_mut()
                .frames
                .pop_front()
                .map(|b| Ok(Frame::data(b))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        if self.streaming {
            return SizeHint::default();
        }
        SizeHint::with_exact(self.frames.iter().map(|f| f.len() as u64).sum())
    }
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
