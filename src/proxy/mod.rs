//! The request pipeline. `Proxy::handle` runs the stages in order; each stage
//! either passes the request on or ends it with a `ProxyError`, which becomes
//! the response in one place (`error.rs`) and an audit record here.
//!
//! ```text
//! route -> size -> authn -> tenant -> validate -> authz -> limits -> body
//!       -> credentials -> rewrite -> sign -> upstream -> response -> audit
//! ```
//!
//! This file holds the pipeline itself and `respond.rs` the response stage.
//! What differs by operation (decisions, rewrites, response header rules,
//! how answers are read) is asked of the operation's family
//! (`crate::family`), which asks the policy decision point
//! (`crate::decide`).
//!
//! Every request reads one immutable `Snapshot` taken on arrival, so a config
//! reload never changes a request half-way.

use crate::audit::{now_rfc3339, Audit, AuditGuard, AuditRecord, Decision};
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
use crate::route::{self, Operation};
use crate::post::{self, Post};
use crate::validate::{self, is_hop_by_hop};
use crate::ratelimit::{Permit, RateLimiter};
use crate::session::SessionKeys;
use crate::decide;
use crate::family::{self, Ctx, Notes, RequestBody};
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
    policy: Arc<TenantPolicy>,
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
            decision: Decision::Deny,
            ..Default::default()
        };
        // A request refused before its body was read leaves unread bytes on
        // the connection: tell the client not to reuse it.
        // (HTTP/1.x only: an HTTP/2 stream ends on its own, its connection
        // stays usable, and `Connection` is illegal there.)
        let unread_body = !req.body().is_end_stream() && req.version() < http::Version::HTTP_2;
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
                rec.decision = Decision::Deny;
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
        let mut route = route::classify(req.method(), req.uri().path()).inspect_err(|_| {
            rec.operation = route::refused_name(req.method(), req.uri().path());
        })?;
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
        route.query = req.uri().query().map(str::to_string);
        let client_headers = validate::request_headers(route.op, req.headers(), &cfg.identity.header)?;

        // 5. Authorisation of what the path names, before reading the body
        //    (the family asks the policy decision point), then the query
        //    string (ids in it checked or namespaced, and what it names
        //    decided), so the policies below see everything the request
        //    names.
        let ctx = Ctx::new(route.op, &principal, &policy, &self.session_keys);
        family::authorize(&ctx, &route)?;
        family::rewrite_query(&ctx, &mut route)?;

        let (mut parts, body) = req.into_parts();
        parts.headers = client_headers;
        let mut body = Some(body);

        // 5a. Policies (docs/reference.md §12): when any apply to the
        //     tenant, the body is read first (the token limit it states is
        //     context), the resource it names passes the allowlists, then
        //     the tenant's Cedar policies must permit the request, all
        //     before the limits: a denial costs the tenant nothing.
        let mut early = None;
        if let Some(policies) = cfg.policy.policies.as_ref().filter(|p| p.applies_to(&principal.tenant)) {
            let read = self.read_body(cfg, route.op, body.take(), &principal.tenant, body_read).await?;
            let q = family::policy_question(&ctx, &route, &parts.headers, &read.0)?;
            let facts = decide::cedar::Facts {
                streaming: q
                    .streaming
                    .unwrap_or_else(|| family::response_shape(route.op).stream != crate::filter::eventstream::StreamShape::Other),
                hour_utc: hour_utc(SystemTime::now()),
                max_tokens: q.max_tokens,
                service_tier: q.service_tier,
            };
            // Every resource the request reaches must be permitted; the
            // audit record names the policies of every decision.
            for resource in std::iter::once(q.resource).chain(q.more.iter().copied()) {
                if let Some(v) = policies.evaluate(&principal, route.op, resource, &facts) {
                    let named = rec.policies.get_or_insert_with(Vec::new);
                    for p in v.policies {
                        if !named.contains(&p) {
                            named.push(p);
                        }
                    }
                    if !v.allowed {
                        for e in &v.errors {
                            tracing::warn!(tenant = %principal.tenant, error = %e, "policy evaluation error: request denied");
                        }
                        return Err(ProxyError::PolicyDenied { tenant: principal.tenant.clone() });
                    }
                }
            }
            early = Some(read);
        }

        // 5b. Limits, after the allowlists and policies (a denied request
        //     costs the tenant nothing) and before any upstream work. The
        //     permit is held until the response body ends.
        let admission = self.limiter.acquire(&principal.tenant, &principal.user, &policy.rate_limit).await;
        rec.rate_limit_fallback = admission.fallback;
        let permit = admission.result?;
        // 5c. What the family decides from the path and headers alone
        //     (SageMaker routing: bodies there are opaque), before reading
        //     the body or fetching credentials.
        let mut notes = Notes::default();
        family::before_body(&ctx, &mut route, &mut parts.headers, &mut notes)?;
        take_notes(rec, &mut notes);

        // 6. Body (unless read for the policies above): bounded, charged,
        //    validated (`read_body`); its reservation is held until this
        //    returns.
        let (body, mut mem) = match early {
            Some(read) => read,
            None => self.read_body(cfg, route.op, body.take(), &principal.tenant, body_read).await?,
        };

        // 7. Credentials of this tenant and no other (before the rewrite,
        //    which may inject them into agent session attributes).
        let creds = snap.creds.for_tenant(&principal, &policy).await?;

        // 8. Rewrite for this tenant (the family): every resource the body
        //    names decided, then model map, forced guardrail and request
        //    metadata, knowledge-base filters, agent session attributes.
        let rewritten = family::rewrite(&ctx, &mut route, &mut parts.headers, body, &creds, &mut notes);
        take_notes(rec, &mut notes);
        let (body, post) = rewritten?;
        mem.shrink_to(body.len() as u64);

        // 9. Build and sign the upstream request over the exact bytes sent.
        let endpoint = snap.endpoints.for_service(route.op.service());
        let uri = endpoint
            .uri(&route.upstream_path(), route.query.as_deref())
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
        Ok(Forwarded { op: route.op, principal, policy, post, permit, response })
    }
}

/// The hour of the day, UTC.
fn hour_utc(now: SystemTime) -> i64 {
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    ((secs % 86_400) / 3_600) as i64
}

impl Proxy {
    /// The request body, bounded in size and in time (a client that stalls
    /// or drips its body would otherwise hold the task, and any concurrency
    /// slot, forever), charged to the tenant's share of the buffer budget as
    /// it is read; then its JSON structure bounded and charged before any
    /// tree is built, and checked against the operation's input shape
    /// (exact-case members, types, unions, no duplicate keys): parsed once,
    /// here, and the tree handed on. Payload operations are opaque (`None`).
    async fn read_body<B>(
        &self,
        cfg: &Config,
        op: Operation,
        body: Option<B>,
        tenant: &str,
        body_read: &std::sync::atomic::AtomicBool,
    ) -> Result<(RequestBody, crate::budget::Reservation), ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let body = body.ok_or_else(|| ProxyError::InvalidParameter("request body already read".into()))?;
        let timeout = cfg.server.body_timeout;
        let (limits, mut mem) = (cfg.server.buffer_limits(), self.budget.reservation(tenant));
        let read = read_limited(body, cfg.server.max_body_bytes, &mut mem, &limits);
        let bytes = tokio::time::timeout(timeout, read)
            .await
            .map_err(|_| ProxyError::BodyTimeout { secs: timeout.as_secs() })??;
        body_read.store(true, Ordering::Relaxed);
        crate::budget::charge_json_body(op, &bytes, &cfg.server, &mut mem)?;
        let json = validate::validate_body(op, &bytes, json_limits(&cfg.server))?;
        Ok((RequestBody { bytes, json }, mem))
    }
}

/// What a family hook noted, into the audit record.
fn take_notes(rec: &mut AuditRecord, notes: &mut Notes) {
    if let Some(r) = notes.resource.take() {
        rec.resource = Some(r);
    }
    if let Some(r) = notes.upstream_resource.take() {
        rec.upstream_resource = Some(r);
    }
}

mod respond;
mod session_owners;

#[cfg(test)]
mod tests {
    use super::*;

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
