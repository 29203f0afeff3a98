//! The request pipeline. `Proxy::handle` runs the stages in order; each stage
//! either passes the request on or ends it with a `ProxyError`, which becomes
//! the response in one place (`error.rs`) and an audit record here.
//!
//! ```text
//! route -> body limit -> authn -> tenant -> authz -> read body -> rewrite
//!       -> credentials -> sign -> upstream -> response filter -> audit
//! ```
//!
//! Every request reads one immutable `Snapshot` taken on arrival, so a config
//! reload never changes a request half-way.

use crate::audit::{now_rfc3339, Audit, AuditGuard, AuditRecord};
use crate::authn::Authenticator;
use crate::aws::credentials::CredentialProvider;
use crate::aws::sign::sign_request;
use crate::body::{read_limited, ProxyBody, UpstreamBody};
use crate::filter::chunks::SourceFilter;
use crate::filter::eventstream::StreamRedactor;
use crate::config::{Config, TenantPolicy};
use crate::conn::ClientConn;
use crate::error::{error_chain, ProxyError};
use crate::principal::Principal;
use crate::route::{self, Operation, Route};
use crate::post::{self, Post};
use crate::decide::{self, Resource};
use crate::validate::{self, is_hop_by_hop};
use crate::ratelimit::{Permit, RateLimiter};
use crate::rewrite::session::SessionKeys;
use crate::rewrite::{self, parse_json_body};
use crate::upstream::{Endpoints, HttpClient};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// Everything a request needs from the configuration, swapped as one unit.
pub struct Snapshot {
    pub config: Arc<Config>,
    /// `[redaction]` compiled once; None when there are no patterns.
    pub redactor: Option<Arc<crate::filter::redact::Redactor>>,
    pub authn: Authenticator,
    pub creds: Arc<CredentialProvider>,
    pub endpoints: Endpoints,
}

pub struct Proxy {
    pub snapshot: ArcSwap<Snapshot>,
    pub client: HttpClient,
    pub audit: Arc<Audit>,
    /// MAC keys binding RAG sessions and namespacing agent sessions; one per
    /// process, from `server.session_key_env` (the same on every replica).
    pub session_keys: SessionKeys,
    /// Per-tenant request, concurrency and token limits; one per process,
    /// so state survives config reloads.
    pub limiter: Arc<RateLimiter>,
    /// Bytes buffered for requests and answers, per tenant and in all; one
    /// per process, so what is held survives config reloads.
    pub budget: Arc<crate::budget::Budget>,
    request_ids: RequestIds,
}

struct RequestIds {
    prefix: u64,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        RequestIds { prefix: u64::from_le_bytes(b) >> 16, next: AtomicU64::new(1) }
    }
    /// The next request's sequence number (never 0) and id.
    fn next(&self) -> (u64, String) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        (n, self.format(n))
    }
    fn format(&self, n: u64) -> String {
        format!("{:012x}-{:08x}", self.prefix, n)
    }
}

/// What the pipeline hands back for an allowed request.
struct Forwarded {
    op: Operation,
    principal: Principal,
    post: Post,
    permit: Permit,
    response: Response<hyper::body::Incoming>,
}

/// Request headers never forwarded (docs/reference.md §4.2): the client's own signature
/// and identity, hop-by-hop headers, proxy headers and `host`. The same
/// rule `validate::request_headers` applies to the client's headers, checked
/// again on what goes upstream after the rewrites.
fn strip_request_header(name: &str) -> bool {
    validate::is_stripped(name) || is_hop_by_hop(name)
}

/// Header names listed in `Connection` are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Redacts every header value in place; returns the number of matches. A
/// value that is no longer a valid header value after redaction (only if
/// the replacement itself is not) is removed.
fn redact_headers(r: &crate::filter::redact::Redactor, headers: &mut HeaderMap) -> u64 {
    let mut total = 0;
    let mut invalid: Vec<HeaderName> = Vec::new();
    for (name, value) in headers.iter_mut() {
        let (red, n) = r.redact_bytes(value.as_bytes());
        if n == 0 {
            continue;
        }
        total += n;
        match HeaderValue::from_bytes(&red) {
            Ok(v) => *value = v,
            Err(_) => invalid.push(name.clone()),
        }
    }
    for name in invalid {
        headers.remove(&name);
    }
    total
}

/// `server.max_json_nodes` / `server.max_json_depth` for the validator's parse.
fn json_limits(server: &crate::config::ServerConfig) -> validate::JsonLimits {
    let clamp = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    validate::JsonLimits { max_nodes: clamp(server.max_json_nodes), max_depth: clamp(u64::from(server.max_json_depth)) }
}

impl Proxy {
    pub fn new(snapshot: Snapshot, client: HttpClient, audit: Arc<Audit>) -> Arc<Proxy> {
        let session_keys = SessionKeys::from_env(&snapshot.config.server.session_key_env);
        Arc::new(Proxy {
            session_keys,
            limiter: RateLimiter::new(),
            budget: crate::budget::Budget::new(),
            snapshot: ArcSwap::from_pointee(snapshot),
            client,
            audit,
            request_ids: RequestIds::new(),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.snapshot.load().authn.is_ready()
    }

    /// The request id of request number `seq` (see `ClientConn`); "-" for 0.
    pub fn request_id_of(&self, seq: u64) -> String {
        if seq == 0 {
            return "-".into();
        }
        self.request_ids.format(seq)
    }

    pub async fn handle<B>(&self, req: Request<B>) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        self.handle_on(req, None).await
    }

    /// `handle` for a request that arrived on a client connection whose
    /// writes are watched (`conn`): the response sets the write timeout in
    /// force, and a streamed body learns whether the client stalled.
    pub async fn handle_on<B>(&self, req: Request<B>, conn: Option<&Arc<ClientConn>>) -> Response<ProxyBody>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let started = Instant::now();
        let (seq, request_id) = self.request_ids.next();
        let snap = self.snapshot.load_full();
        if let Some(c) = conn {
            c.begin_request(seq, snap.config.server.client_write_timeout);
        }
        let mut rec = AuditRecord {
            ts: now_rfc3339(),
            request_id: request_id.clone(),
            decision: "deny",
            ..Default::default()
        };
        // A request refused before its body was read leaves unread bytes on
        // the connection: tell the client not to reuse it.
        let unread_body = !req.body().is_end_stream();
        let body_read = std::sync::atomic::AtomicBool::new(false);
        let result = match self.pipeline(&snap, req, &mut rec, &body_read).await {
            Ok(fwd) => self.respond(&snap, fwd, &mut rec, started, &request_id, conn).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(resp) => resp,
            Err(err) => {
                let status = err.status();
                rec.status = status.as_u16();
                rec.reason = Some(err.reason());
                rec.decision = "deny";
                match err.log_detail() {
                    Some(d) if status.is_server_error() => {
                        tracing::warn!(request_id, tenant = rec.tenant.as_deref(), reason = err.reason(), "{d}")
                    }
                    Some(d) => tracing::info!(request_id, reason = err.reason(), "{d}"),
                    None => tracing::debug!(request_id, reason = err.reason(), "request refused"),
                }
                AuditGuard::new(self.audit.clone(), rec, started).finish();
                let mut resp = err.to_response::<Bytes>(&request_id).map(crate::body::full);
                if unread_body && !body_read.load(Ordering::Relaxed) {
                    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                resp
            }
        }
    }

    async fn pipeline<B>(
        &self,
        snap: &Snapshot,
        req: Request<B>,
        rec: &mut AuditRecord,
        body_read: &std::sync::atomic::AtomicBool,
    ) -> Result<Forwarded, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let cfg = &snap.config;
        // 1. Route first: it needs no secret and no body, and decides the
        //    service, the signing name and what is authorised.
        let mut route = route::classify(req.method(), req.uri().path())?;
        rec.operation = Some(route.op.name());
        rec.resource = Some(route.resource());

        // 2. A declared body over the limit is refused before any work, and
        //    before reading it.
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        {
            if len > cfg.server.max_body_bytes {
                return Err(ProxyError::BodyTooLarge { limit: cfg.server.max_body_bytes });
            }
        }

        // 3. Identity: the verified token (or the pod's static tenant) is the
        //    only source of tenant and user.
        let principal = snap.authn.authenticate(req.headers()).await?;
        rec.tenant = Some(principal.tenant.clone());
        rec.user = Some(principal.user.clone());

        // 4. Tenant policy: listed, or admitted by `allow_unlisted`.
        let policy = cfg
            .policy_for(&principal.tenant)
            .ok_or_else(|| ProxyError::UnknownTenant(principal.tenant.clone()))?
            .clone();
        // 4b. AWS compares some names without case: SageMaker endpoint names
        //     and IAM role names. Rendered from an unlisted tenant `FOO`,
        //     `{tenant}-clf` or `role/tenant-{tenant}` could name unlisted
        //     `foo`'s endpoint or role. Tenants admitted by `allow_unlisted`
        //     reach those only with a lower-case id (listed ids never collide:
        //     the configuration refuses ids that differ only in case, and a
        //     case variant of a listed id is refused above).
        if !cfg.is_listed(&principal.tenant) && crate::config::fold_tenant_id(&principal.tenant) != principal.tenant {
            let sagemaker = route.op.service() == crate::route::Service::SageMakerRuntime;
            let role = matches!(&cfg.credentials, crate::config::CredentialsConfig::AssumeRole(ar) if ar.role_arn.uses_tenant());
            if sagemaker || role {
                tracing::warn!(
                    tenant = %principal.tenant,
                    "unlisted tenant id is not lower case: refused, it would be rendered into a {} that AWS compares without case",
                    if sagemaker { "SageMaker endpoint name" } else { "role ARN (credentials.role_arn uses {tenant})" }
                );
                return Err(ProxyError::UnknownTenant(principal.tenant.clone()));
            }
        }

        // 4c. Headers and query string against the operation's AWS model
        //     (`validate`): `Connection`-listed names are removed first and
        //     may not name a header the sidecar manages, `_` names, encoded
        //     bodies and undefined x-amz-*/x-amzn-* headers or query
        //     parameters are refused, anything else unknown is dropped. What
        //     is left is all of the client's headers the rewrites and the
        //     forwarding ever see.
        validate::query(route.op, req.uri().query())?;
        let client_headers = validate::request_headers(route.op, req.headers(), &cfg.identity.header)?;

        // 5. Authorisation of what the path names, before reading the body.
        authorize(&route, &principal, &policy)?;

        // 5b. Limits, after the allowlists (a denied request costs the tenant
        //     nothing) and before any upstream work. The permit is held until
        //     the response body ends.
        let admission = self.limiter.acquire(&principal.tenant, &principal.user, &policy.rate_limit).await;
        rec.rate_limit_fallback = admission.fallback;
        let permit = admission.result?;
        let (mut parts, body) = req.into_parts();
        parts.headers = client_headers;
        if route.op.service() == crate::route::Service::SageMakerRuntime {
            // SageMaker routing lives in the path and headers only (bodies
            // are opaque): decide it before reading the body or fetching
            // credentials.
            let rw = rewrite::sagemaker::rewrite_sagemaker(
                route.op,
                &route.ids[0],
                &mut parts.headers,
                &principal,
                &policy,
                &self.session_keys,
            )?;
            if !rw.endpoint.eq(&route.ids[0]) {
                rec.upstream_resource = Some(rw.endpoint.clone());
            }
            route.ids[0] = rw.endpoint;
        }

        // 6. Body, bounded in size and in time (a client that stalls or
        //    drips its body would otherwise hold the task, and any
        //    concurrency slot, forever), and charged to the tenant's share
        //    of the buffer budget as it is read; held until this returns.
        let timeout = cfg.server.body_timeout;
        let (limits, mut mem) = (cfg.server.buffer_limits(), self.budget.reservation(&principal.tenant));
        let read = read_limited(body, cfg.server.max_body_bytes, &mut mem, &limits);
        let body = tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| ProxyError::BodyTimeout { secs: timeout.as_secs() })??;
        body_read.store(true, Ordering::Relaxed);
        // 6b. A JSON body's structure is bounded, and its tree charged,
        //     before any tree is built.
        crate::budget::charge_json_body(route.op, &body, &cfg.server, &mut mem)?;
        // 6c. The body against the operation's input shape (exact-case
        //     members, types, unions, no duplicate keys): parsed once, here,
        //     and the tree handed to the rewrite. Payload operations are
        //     opaque (`None`).
        let json = validate::validate_body(route.op, &body, json_limits(&cfg.server))?;

        // 7. Credentials of this tenant and no other (before the rewrite,
        //    which may inject them into agent session attributes).
        let creds = snap.creds.for_tenant(&principal, &policy).await?;

        // 8. Rewrite for this tenant: model map (after the allowlist, which
        //    judged the id the app asked for), forced guardrail and request
        //    metadata, knowledge-base filters, agent session attributes.
        let (body, post) = self.rewrite(&mut route, &mut parts.headers, body, json, &principal, &policy, &creds, rec)?;
        mem.shrink_to(body.len() as u64);

        // 9. Build and sign the upstream request over the exact bytes sent.
        let endpoint = snap.endpoints.for_service(route.op.service());
        let uri = endpoint
            .uri(&route.upstream_path(), parts.uri.query())
            .map_err(|e| ProxyError::InvalidParameter(format!("request URI: {e}")))?;
        let mut up = Request::builder().method(parts.method.clone()).uri(uri);
        let identity_header = &cfg.identity.header;
        if let Some(h) = up.headers_mut() {
            // `parts.headers` is what `validate::request_headers` kept plus
            // what the rewrites set: `Connection` was applied to the
            // client's headers before any rewrite, never after.
            for (name, value) in parts.headers.iter() {
                if name == identity_header || strip_request_header(name.as_str()) {
                    continue;
                }
                h.append(name.clone(), value.clone());
            }
            h.insert(header::HOST, endpoint.host.clone());
            // Answers must be inspectable: ask for them uncoded.
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let mut up = up
            .body(())
            .map_err(|e| ProxyError::InvalidParameter(format!("request: {e}")))?;
        sign_request(
            &mut up,
            &body,
            &creds.0,
            &cfg.aws.region,
            route.op.service().signing_name(),
            SystemTime::now(),
        )?;
        let up = up.map(|()| Full::new(body));

        // 10. Upstream, bounded by the response timeout (to headers).
        let response = match tokio::time::timeout(cfg.aws.response_timeout, self.client.request(up)).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout),
            Ok(Err(e)) => {
                let detail = error_chain(&e);
                return Err(ProxyError::UpstreamError(format!("upstream request failed: {detail}")));
            }
            Ok(Ok(r)) => r,
        };
        Ok(Forwarded { op: route.op, principal, post, permit, response })
    }

    /// Rewrite the request for this tenant (docs/reference.md §5.1–§5.3). Returns the body
    /// to send and what the response needs.
    #[allow(clippy::too_many_arguments)]
    fn rewrite(
        &self,
        route: &mut Route,
        headers: &mut HeaderMap,
        body: Bytes,
        mut json: Option<serde_json::Value>,
        principal: &Principal,
        policy: &TenantPolicy,
        creds: &crate::aws::credentials::TenantCredentials,
        rec: &mut AuditRecord,
    ) -> Result<(Bytes, Post), ProxyError> {
        use Operation::*;
        // The validated tree of a JSON-body operation (`validate_body`);
        // parsed here only if there is none (never, for a routed operation
        // with a JSON body).
        let tree = |json: Option<serde_json::Value>, body: &[u8]| json.map_or_else(|| parse_json_body(body), Ok);
        let to_bytes = |v: &serde_json::Value| {
            serde_json::to_vec(v).map(Bytes::from).map_err(|e| ProxyError::InvalidJson(e.to_string()))
        };
        match route.op {
            InvokeModel | InvokeModelWithResponseStream | Converse | ConverseStream | CountTokens => {
                // Every spelling of a mapped model is mapped or denied
                // (`rewrite::model_map`).
                let upstream = rewrite::model_map::upstream_model(policy, principal, &route.ids[0])?;
                if upstream != route.ids[0] {
                    rec.upstream_resource = Some(upstream.clone());
                    route.ids[0] = upstream;
                }
                let body = rewrite::bedrock::rewrite_model_call(route.op, body, json.take(), headers, principal, policy)?;
                Ok((body, Post::Stream))
            }
            ApplyGuardrail => Ok((body, Post::Stream)),
            Retrieve => {
                let mut v = tree(json.take(), &body)?;
                rewrite::knowledge_base::rewrite_retrieve(&mut v, &route.ids[0], principal, policy)?;
                let prefixes = rewrite::render_source_prefixes(policy, principal)?;
                Ok((to_bytes(&v)?, Post::Retrieve { prefixes }))
            }
            RetrieveAndGenerate | RetrieveAndGenerateStream => {
                let mut v = tree(json.take(), &body)?;
                let note = rewrite::knowledge_base::rewrite_retrieve_and_generate(
                    &mut v,
                    principal,
                    policy,
                    &self.session_keys,
                )?;
                if let Some(kb) = note.knowledge_base_id {
                    rec.resource = Some(kb);
                }
                let prefixes = rewrite::render_source_prefixes(policy, principal)?;
                let post = if route.op == RetrieveAndGenerate {
                    Post::Rag { prefixes }
                } else {
                    Post::RagStream { prefixes }
                };
                Ok((to_bytes(&v)?, post))
            }
            InvokeAgent => {
                let mut v = tree(json.take(), &body)?;
                let client_session_id = route.ids[2].clone();
                let client_memory_id = v.get("memoryId").and_then(|m| m.as_str()).map(String::from);
                let inject = policy.agents.inject_scoped_credentials.then_some(creds);
                let out = rewrite::agent::rewrite_invoke_agent(
                    &route.ids[0],
                    &route.ids[1],
                    &client_session_id,
                    &mut v,
                    principal,
                    policy,
                    &self.session_keys,
                    inject,
                )?;
                route.ids[2] = out.upstream_session_id;
                let prefixes = rewrite::render_source_prefixes(policy, principal)?;
                Ok((to_bytes(&v)?, Post::Agent { client_session_id, client_memory_id, prefixes }))
            }
            Rerank => {
                // Forward what was judged: re-serialising collapses duplicate
                // keys, so upstream cannot read a model other than the one
                // checked.
                let v = tree(json.take(), &body)?;
                check_rerank_models(&v, principal, policy)?;
                Ok((to_bytes(&v)?, Post::Stream))
            }
            // Rewritten before the body was read (see `pipeline`).
            InvokeEndpoint | InvokeEndpointWithResponseStream | InvokeEndpointAsync => Ok((body, Post::Stream)),
        }
    }

    async fn respond(
        &self,
        snap: &Snapshot,
        fwd: Forwarded,
        rec: &mut AuditRecord,
        started: Instant,
        request_id: &str,
        conn: Option<&Arc<ClientConn>>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let cfg = &snap.config;
        let (mut parts, body) = fwd.response.into_parts();
        rec.decision = "allow";
        rec.status = parts.status.as_u16();
        rec.upstream_status = Some(parts.status.as_u16());
        if parts.status.is_client_error() || parts.status.is_server_error() {
            rec.reason = Some("upstream_status");
        }
        let header_u64 = |h: &HeaderMap, n: &str| {
            h.get(n).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        };
        rec.input_tokens = header_u64(&parts.headers, "x-amzn-bedrock-input-token-count");
        rec.output_tokens = header_u64(&parts.headers, "x-amzn-bedrock-output-token-count");

        let listed = connection_listed(&parts.headers);
        let strip = &cfg.redaction.strip_response_headers;
        let names: Vec<HeaderName> = parts.headers.keys().cloned().collect();
        for name in names {
            let n = name.as_str();
            if is_hop_by_hop(n) || listed.iter().any(|l| l == n) || strip.iter().any(|m| m.matches(n)) {
                parts.headers.remove(&name);
            }
        }
        // Every header upstream sent that reaches the app is redacted like a
        // body (SageMaker custom attributes, the invoked variant, error
        // messages); a value that would not be a valid header once redacted
        // is dropped. The sidecar's own headers, set below, carry no
        // identity ids.
        let header_redactions = snap.redactor.as_deref().map_or(0, |r| redact_headers(r, &mut parts.headers));
        rec.redactions = header_redactions;
        if let Ok(v) = HeaderValue::from_str(request_id) {
            parts.headers.insert("x-tenantgate-request-id", v);
        }
        match &fwd.post {
            Post::Agent { client_session_id, client_memory_id, .. } => {
                if let Ok(v) = HeaderValue::from_str(client_session_id) {
                    parts.headers.insert("x-amz-bedrock-agent-session-id", v);
                }
                // The namespaced memory id never goes back to the app: the
                // app sees its own id (or none, when it sent none).
                match client_memory_id.as_deref().map(HeaderValue::from_str) {
                    Some(Ok(v)) => {
                        parts.headers.insert("x-amz-bedrock-agent-memory-id", v);
                    }
                    _ => {
                        parts.headers.remove("x-amz-bedrock-agent-memory-id");
                    }
                }
            }
            Post::RagStream { .. } => {
                let sealed = parts
                    .headers
                    .get("x-amzn-bedrock-knowledge-base-session-id")
                    .and_then(|v| v.to_str().ok())
                    .map(|id| self.session_keys.seal_rag_session(&fwd.principal.tenant, &fwd.principal.user, id));
                if let Some(v) = sealed.and_then(|s| HeaderValue::from_str(&s).ok()) {
                    parts.headers.insert("x-amzn-bedrock-knowledge-base-session-id", v);
                }
            }
            _ => {}
        }
        if matches!(fwd.post, Post::Retrieve { .. }) {
            parts.headers.insert("x-tenantgate-dropped-results", HeaderValue::from(0u64));
        }
        if fwd.op.service() == crate::route::Service::SageMakerRuntime {
            rewrite::sagemaker::seal_response_sessions(&mut parts.headers, &fwd.principal, &self.session_keys);
        }

        let is_event_stream = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/vnd.amazon.eventstream"));
        let redactor = snap.redactor.clone();
        let buffer_to_redact = redactor.is_some() && !is_event_stream;

        // An answer in a content coding is decoded before anything judges,
        // redacts or counts it, or refused (security model: encodings).
        let encodings: Vec<&str> =
            parts.headers.get_all(header::CONTENT_ENCODING).iter().filter_map(|v| v.to_str().ok()).collect();
        let coding = if parts.headers.get_all(header::CONTENT_ENCODING).iter().count() != encodings.len() {
            None
        } else {
            crate::filter::encoding::coding_of(&encodings)
        };
        let coding = match coding {
            Some(crate::filter::encoding::Coding::Identity) => None,
            Some(c) if !is_event_stream => Some(c),
            _ => {
                return Err(ProxyError::UpstreamError(format!(
                    "upstream answer in content coding {:?} cannot be inspected",
                    encodings.join(",")
                )))
            }
        };

        if (fwd.post.buffers() && parts.status.is_success()) || buffer_to_redact || coding.is_some() {
            // The whole answer is needed before deciding what the client may
            // see: nothing is sent until it is judged.
            // (Or: a non-stream body to redact, which needs the whole JSON.)
            let limits = cfg.server.buffer_limits();
            let mut mem = self.budget.reservation(&fwd.principal.tenant);
            let raw = post::collect(body, cfg.aws.stream_idle_timeout, post::MAX_FILTERED_RESPONSE, &mut mem, &limits).await?;
            let raw = match coding {
                Some(c) => {
                    // The decoded copy is charged with the tree (below) on top of the compressed bytes.
                    let plain = crate::filter::encoding::decode(c, &raw, post::MAX_FILTERED_RESPONSE)?;
                    parts.headers.remove(header::CONTENT_ENCODING);
                    Bytes::from(plain)
                }
                None => raw,
            };
            post::charge(&fwd.post, &raw, &mut mem, &limits)?;
            let mut tap = crate::usage::UsageTap::for_operation(fwd.op, parts.status.is_success());
            tap.observe(&raw);
            let usage = tap.finish();
            if usage.input.is_some() || usage.output.is_some() {
                rec.input_tokens = usage.input;
                rec.output_tokens = usage.output;
            }
            fwd.permit.charge_tokens(rec.input_tokens.unwrap_or(0) + rec.output_tokens.unwrap_or(0));
            let (out, dropped) = if parts.status.is_success() {
                post::apply(&fwd.post, raw, &fwd.principal, &self.session_keys)?
            } else {
                (raw, 0)
            };
            let out = match &redactor {
                Some(r) if is_event_stream => {
                    // A judged event stream (RetrieveAndGenerateStream):
                    // frame by frame like any stream, just all at once.
                    let mut s = StreamRedactor::new(fwd.op, r.clone());
                    let red = s.push(&out).and_then(|a| Ok((a, s.finish()?)));
                    rec.redactions = header_redactions + s.redactions();
                    match red {
                        Ok((a, b)) => [a, b].concat().into(),
                        Err(e) => {
                            tracing::warn!("upstream event stream cannot be redacted: {e}");
                            return Err(ProxyError::UpstreamError(format!("malformed event stream from upstream: {e}")));
                        }
                    }
                }
                Some(r) => {
                    let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                    let (red, n) = r.redact_body(&out, ct);
                    rec.redactions = header_redactions + n;
                    red
                }
                None => out,
            };
            rec.dropped_results = dropped;
            if matches!(fwd.post, Post::Retrieve { .. }) {
                parts.headers.insert("x-tenantgate-dropped-results", HeaderValue::from(dropped));
            }
            parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
            AuditGuard::new(self.audit.clone(), std::mem::take(rec), started).finish();
            drop(fwd.permit);
            return Ok(Response::from_parts(parts, crate::body::full(out)));
        }

        let tap = crate::usage::UsageTap::for_operation(fwd.op, parts.status.is_success());
        let guard = AuditGuard::new(self.audit.clone(), std::mem::take(rec), started);
        // Event streams are redacted frame by frame as they arrive
        // (`filter::eventstream`); their length may change.
        // InvokeAgent answers are checked event by event for knowledge-base
        // sources outside the tenant's prefixes (a foreign one ends the
        // stream); only successful streams carry answers.
        let sources = match &fwd.post {
            Post::Agent { prefixes, .. } if parts.status.is_success() => Some(SourceFilter::new(prefixes)),
            _ => None,
        };
        let stream_redactor = if is_event_stream {
            StreamRedactor::for_response(fwd.op, redactor.clone(), sources)
        } else {
            None
        };
        if stream_redactor.is_some() {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        if let Some(c) = conn {
            c.streaming(cfg.aws.stream_idle_timeout);
        }
        let body = UpstreamBody::new(body, cfg.aws.stream_idle_timeout, guard, tap)
            .with_permit(fwd.permit)
            .with_redactor(stream_redactor)
            .with_client(conn.cloned());
        Ok(Response::from_parts(parts, body.boxed_unsync()))
    }
}

/// Rerank (docs/reference.md §5.1): every model named in the body is checked.
fn check_rerank_models(v: &serde_json::Value, principal: &Principal, policy: &TenantPolicy) -> Result<(), ProxyError> {
    let model = v
        .pointer("/rerankingConfiguration/bedrockRerankingConfiguration/modelConfiguration/modelArn")
        .ok_or_else(|| {
            ProxyError::InvalidParameter(
                "rerankingConfiguration.bedrockRerankingConfiguration.modelConfiguration.modelArn is required".into(),
            )
        })?
        .as_str()
        .ok_or_else(|| ProxyError::InvalidParameter("modelArn must be a string".into()))?;
    decide::check(principal, policy, Resource::Model(model))
}

/// Allowlists on what the path names (docs/reference.md §5.1), decided by
/// the policy decision point.
fn authorize(route: &Route, principal: &Principal, policy: &TenantPolicy) -> Result<(), ProxyError> {
    if route.op.is_model_call() {
        decide::check(principal, policy, Resource::Model(&route.ids[0]))?;
    }
    if route.op == Operation::ApplyGuardrail {
        decide::check(principal, policy, Resource::Guardrail { id: &route.ids[0], version: &route.ids[1] })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_headers_are_redacted_and_counted() {
        let cfg = crate::config::RedactionConfig {
            patterns: vec!["id-[0-9]+".into()],
            combined: Some(regex::Regex::new("(?:id-[0-9]+)").unwrap()),
            replacement: "[redacted]".into(),
            strip_response_headers: vec![],
        };
        let r = crate::filter::redact::Redactor::new(&cfg).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-amzn-errormessage", HeaderValue::from_static("user id-1 and id-22"));
        h.append("x-multi", HeaderValue::from_static("id-3"));
        h.append("x-multi", HeaderValue::from_static("clean"));
        h.insert("x-plain", HeaderValue::from_static("nothing here"));
        assert_eq!(redact_headers(&r, &mut h), 3);
        assert_eq!(h["x-amzn-errormessage"], "user [redacted] and [redacted]");
        let multi: Vec<_> = h.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["[redacted]", "clean"]);
        assert_eq!(h["x-plain"], "nothing here");
    }
    #[test]
    fn request_headers_that_never_reach_upstream() {
        for h in ["authorization", "x-amz-date", "x-amz-security-token", "x-amz-content-sha256", "host", "connection", "transfer-encoding", "x-forwarded-for", "te", "upgrade"] {
            assert!(strip_request_header(h), "{h}");
        }
        for h in ["content-type", "accept", "x-amzn-bedrock-guardrailidentifier", "user-agent"] {
            assert!(!strip_request_header(h), "{h}");
        }
    }
}
