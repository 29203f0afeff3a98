//! `[server]`, `[aws]`, `[rate_limit]`, `[redaction]`.
//!
//! An invalid value is reported and replaced by its default so the rest of
//! the file is still checked; `parse_str` returns no `Config` when any error
//! was reported.

use super::reader::{env_name, index, Ctx, Loc, Tbl};
use crate::config::{
    AwsConfig, Endpoints, HeaderMatch, OnBackendError, RateLimitBackend, RateLimitConfig, RedactionConfig,
    ServerConfig, TlsFiles,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

pub(crate) const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
pub(crate) const DEFAULT_ADMIN_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9901);
pub(crate) const DEFAULT_MAX_BODY_BYTES: u64 = 10 * 1024 * 1024;
/// Defaults of the JSON structure caps (`server.max_json_nodes`,
/// `server.max_json_depth`) and of the buffer budget
/// (`server.max_buffered_bytes`; a tenant's share defaults to half).
pub(crate) const DEFAULT_MAX_JSON_NODES: u64 = 100_000;
pub(crate) const DEFAULT_MAX_JSON_DEPTH: u64 = 64;
pub(crate) const DEFAULT_MAX_BUFFERED_BYTES: u64 = 32 * 1024 * 1024;
/// serde_json's own nesting limit: deeper bodies never parse.
pub(crate) const MAX_JSON_DEPTH: u64 = 128;
pub(crate) const MAX_JSON_NODES: u64 = 100_000_000;
pub(crate) const DEFAULT_SESSION_KEY_ENV: &str = "TENANTGATE_SESSION_KEY";
/// The Cognito identity id pattern of docs/reference.md §3 (`REGION:UUID`).
pub(crate) const COGNITO_IDENTITY_ID: &str =
    r"(?:us|eu|ap|sa|ca|me|af|il|mx)(?:-gov)?-[a-z]+-\d:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
pub(crate) const DEFAULT_REPLACEMENT: &str = "[redacted]";
const HOUR: u64 = 3600;

/// Upper bound of `server.metrics_max_tenants` (each tenant label value can
/// add a few dozen series).
pub(crate) const MAX_METRICS_TENANTS: u64 = 100_000;

/// Upper bound of `server.audit_queue_lines` (a line is ~0.5 KB: ~512 MB).
pub(crate) const MAX_AUDIT_QUEUE_LINES: u64 = 1_048_576;

/// Default `server.body_timeout_secs`: the whole request body must arrive
/// within this long of the headers.
pub(crate) const DEFAULT_BODY_TIMEOUT_SECS: u64 = 30;

/// Default `server.client_write_timeout_secs`: longest a write of a whole
/// (non-streamed) response to the client may make no progress.
pub(crate) const DEFAULT_CLIENT_WRITE_TIMEOUT_SECS: u64 = 30;

pub(super) const SERVER_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "max_body_bytes",
    "header_timeout_secs",
    "body_timeout_secs",
    "client_write_timeout_secs",
    "shutdown_grace_secs",
    "session_key_env",
    "tls_cert_file",
    "tls_key_file",
    "metrics_max_tenants",
    "audit_queue_lines",
    "max_json_nodes",
    "max_json_depth",
    "max_buffered_bytes",
    "max_buffered_bytes_per_tenant",
];
pub(super) const AWS_KEYS: &[&str] =
    &["region", "connect_timeout_ms", "response_timeout_secs", "stream_idle_timeout_secs", "ca_file", "endpoints"];
pub(super) const ENDPOINT_KEYS: &[&str] = &["bedrock_runtime", "bedrock_agent_runtime", "sagemaker_runtime", "sts"];
pub(super) const RATE_LIMIT_KEYS: &[&str] = &["backend", "redis_url", "on_backend_error"];
pub(super) const REDACTION_KEYS: &[&str] = &["patterns", "replacement", "strip_response_headers"];

fn socket_addr(t: &Tbl<'_>, ctx: &mut Ctx<'_>, k: &str, default: SocketAddr) -> SocketAddr {
    let Some(s) = t.string(ctx, k) else { return default };
    match s.value.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => {
            ctx.err_at(&s, format!("{:?} is not a socket address (IP:PORT, e.g. \"127.0.0.1:8080\")", s.value));
            default
        }
    }
}

pub(crate) fn server(root: &Tbl<'_>, ctx: &mut Ctx<'_>) -> ServerConfig {
    let t = root.sub_or_empty(ctx, "server", SERVER_KEYS).unwrap_or_else(|| Tbl::absent("server".into()));
    let listen = socket_addr(&t, ctx, "listen", DEFAULT_LISTEN);
    let admin_listen = socket_addr(&t, ctx, "admin_listen", DEFAULT_ADMIN_LISTEN);
    if listen == admin_listen && listen.port() != 0 {
        let k = if t.has("admin_listen") { "admin_listen" } else { "listen" };
        let span = t.get(k).map(|v| v.span());
        ctx.err(
            &t.key("admin_listen"),
            span.as_ref(),
            "admin_listen must differ from listen (the admin endpoints are never served on the proxy listener)",
        );
    }
    let max_body_bytes = t.uint(ctx, "max_body_bytes", 1, u64::MAX).map_or(DEFAULT_MAX_BODY_BYTES, |l| l.value);
    let max_json_nodes =
        t.uint(ctx, "max_json_nodes", 1, MAX_JSON_NODES).map_or(DEFAULT_MAX_JSON_NODES, |l| l.value);
    let max_json_depth =
        t.uint(ctx, "max_json_depth", 1, MAX_JSON_DEPTH).map_or(DEFAULT_MAX_JSON_DEPTH, |l| l.value) as u32;
    let total = t.uint(ctx, "max_buffered_bytes", 1, u64::MAX);
    let max_buffered_bytes = total.as_ref().map_or(DEFAULT_MAX_BUFFERED_BYTES, |l| l.value);
    let share = t.uint(ctx, "max_buffered_bytes_per_tenant", 1, u64::MAX);
    let max_buffered_bytes_per_tenant = share.as_ref().map_or(max_buffered_bytes / 2, |l| l.value);
    if max_buffered_bytes_per_tenant > max_buffered_bytes {
        let msg = format!("{max_buffered_bytes_per_tenant} is more than max_buffered_bytes ({max_buffered_bytes})");
        match (&share, &total) {
            (Some(l), _) => ctx.err_at(l, msg),
            (None, Some(l)) => ctx.err_at(l, msg),
            (None, None) => {}
        }
    }
    if max_buffered_bytes_per_tenant < max_body_bytes {
        // A body of max_body_bytes could never be read: one of the two is a mistake.
        let msg = format!(
            "a tenant's share of the buffer budget ({max_buffered_bytes_per_tenant}) is below max_body_bytes \
             ({max_body_bytes}): raise max_buffered_bytes(_per_tenant) or lower max_body_bytes"
        );
        match (&share, &total) {
            (Some(l), _) => ctx.err_at(l, msg),
            (None, Some(l)) => ctx.err_at(l, msg),
            (None, None) => ctx.err(&t.key("max_body_bytes"), t.get("max_body_bytes").map(|v| v.span()).as_ref(), msg),
        }
    }
    let header_timeout = t.uint(ctx, "header_timeout_secs", 1, HOUR).map_or(10, |l| l.value);
    let body_timeout = t.uint(ctx, "body_timeout_secs", 1, HOUR).map_or(DEFAULT_BODY_TIMEOUT_SECS, |l| l.value);
    let client_write_timeout = t
        .uint(ctx, "client_write_timeout_secs", 1, HOUR)
        .map_or(DEFAULT_CLIENT_WRITE_TIMEOUT_SECS, |l| l.value);
    let grace = t.uint(ctx, "shutdown_grace_secs", 0, HOUR).map_or(30, |l| l.value);
    let session_key_env =
        env_name(&t, ctx, "session_key_env").map_or_else(|| DEFAULT_SESSION_KEY_ENV.to_string(), |l| l.value);
    let metrics_max_tenants = t
        .uint(ctx, "metrics_max_tenants", 1, MAX_METRICS_TENANTS)
        .map_or(crate::metrics::MAX_TENANT_LABELS, |l| l.value as usize);
    let audit_queue_lines = t
        .uint(ctx, "audit_queue_lines", 1, MAX_AUDIT_QUEUE_LINES)
        .map_or(crate::audit::DEFAULT_QUEUE_LINES, |l| l.value as usize);
    let cert = t.string(ctx, "tls_cert_file");
    let key = t.string(ctx, "tls_key_file");
    let tls = match (&cert, &key) {
        (Some(c), Some(k)) => match (ctx.existing_file(c), ctx.existing_file(k)) {
            (Some(cert_file), Some(key_file)) => Some(TlsFiles { cert_file, key_file }),
            _ => None,
        },
        (Some(c), None) if !t.has("tls_key_file") => {
            ctx.err_at(c, "tls_cert_file needs tls_key_file as well");
            None
        }
        (None, Some(k)) if !t.has("tls_cert_file") => {
            ctx.err_at(k, "tls_key_file needs tls_cert_file as well");
            None
        }
        _ => None,
    };
    ServerConfig {
        listen,
        admin_listen,
        max_body_bytes,
        header_timeout: Duration::from_secs(header_timeout),
        body_timeout: Duration::from_secs(body_timeout),
        client_write_timeout: Duration::from_secs(client_write_timeout),
        shutdown_grace: Duration::from_secs(grace),
        session_key_env,
        tls,
        metrics_max_tenants,
        audit_queue_lines,
        max_json_nodes,
        max_json_depth,
        max_buffered_bytes,
        max_buffered_bytes_per_tenant,
    }
}

/// `us-east-1`, `us-gov-west-1`, `cn-north-1`, ...: lower-case letters,
/// digits and inner dashes (also rules out anything that could change the
/// shape of a derived host name).
fn is_region(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && !s.contains("--")
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// An absolute `http(s)://host[:port]` URL with no user info, query or path
/// beyond `/` (requests are signed for the exact host and path).
pub(crate) fn endpoint_uri(ctx: &mut Ctx<'_>, loc: &Loc<String>) -> Option<http::Uri> {
    let uri: http::Uri = match loc.value.parse() {
        Ok(u) => u,
        Err(e) => {
            ctx.err_at(loc, format!("{:?} is not a valid URL: {e}", loc.value));
            return None;
        }
    };
    let problem = match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(a)) if a.as_str().contains('@') => Some("must not contain user info"),
        (Some("http" | "https"), Some(a)) if a.host().is_empty() => Some("has no host"),
        (Some("http" | "https"), Some(_)) if uri.query().is_some() => Some("must not have a query"),
        (Some("http" | "https"), Some(_)) if !matches!(uri.path(), "" | "/") => Some("must not have a path"),
        (Some("http" | "https"), Some(_)) => None,
        _ => Some("must be an absolute http:// or https:// URL"),
    };
    match problem {
        Some(p) => {
            ctx.err_at(loc, format!("{:?} {p}", loc.value));
            None
        }
        None => Some(uri),
    }
}

pub(crate) fn aws(root: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Option<AwsConfig> {
    let Some(v) = root.get("aws") else {
        ctx.err("aws", None, "missing required table [aws] (at least `region`)");
        return None;
    };
    let t = Tbl::open(ctx, "aws".into(), v, Some(AWS_KEYS))?;
    let region = match t.text(ctx, "region") {
        Some(r) if is_region(&r.value) => r.value,
        Some(r) => {
            ctx.err_at(&r, format!("{:?} is not an AWS region name (e.g. \"us-east-1\")", r.value));
            String::new()
        }
        None => {
            if !t.has("region") {
                t.missing(ctx, "region");
            }
            String::new()
        }
    };
    let connect_ms = t.uint(ctx, "connect_timeout_ms", 1, 60_000).map_or(3000, |l| l.value);
    let response = t.uint(ctx, "response_timeout_secs", 1, HOUR).map_or(300, |l| l.value);
    let idle = t.uint(ctx, "stream_idle_timeout_secs", 1, HOUR).map_or(120, |l| l.value);
    let ca_file = t.string(ctx, "ca_file").and_then(|c| ctx.existing_file(&c));
    let mut endpoints = Endpoints::default();
    if let Some(e) = t.sub(ctx, "endpoints", ENDPOINT_KEYS) {
        let mut read = |k: &str| e.text(ctx, k).and_then(|l| endpoint_uri(ctx, &l));
        endpoints.bedrock_runtime = read("bedrock_runtime");
        endpoints.bedrock_agent_runtime = read("bedrock_agent_runtime");
        endpoints.sagemaker_runtime = read("sagemaker_runtime");
        endpoints.sts = read("sts");
    }
    Some(AwsConfig {
        region,
        connect_timeout: Duration::from_millis(connect_ms),
        response_timeout: Duration::from_secs(response),
        stream_idle_timeout: Duration::from_secs(idle),
        ca_file,
        endpoints,
    })
}

pub(crate) fn rate_limit(root: &Tbl<'_>, ctx: &mut Ctx<'_>) -> RateLimitConfig {
    let local = RateLimitConfig { backend: RateLimitBackend::Local };
    let Some(t) = root.sub_or_empty(ctx, "rate_limit", RATE_LIMIT_KEYS) else { return local };
    let backend = t.string(ctx, "backend");
    match backend.as_ref().map(|b| b.value.as_str()) {
        None | Some("local") => {
            t.forbid(ctx, &["redis_url", "on_backend_error"], "is only valid with backend = \"redis\"");
            local
        }
        Some("redis") => {
            let url = match t.text(ctx, "redis_url") {
                Some(u) if u.value.starts_with("redis://") || u.value.starts_with("rediss://") => {
                    match crate::ratelimit::validate_redis_url(&u.value) {
                        Ok(()) => u.value,
                        Err(e) => {
                            ctx.err_at(&u, format!("not a usable Redis URL: {e}"));
                            String::new()
                        }
                    }
                }
                Some(u) => {
                    ctx.err_at(&u, "must be a redis:// or rediss:// URL");
                    String::new()
                }
                None => {
                    if !t.has("redis_url") {
                        t.missing(ctx, "redis_url");
                    }
                    String::new()
                }
            };
            let on_backend_error = match t.string(ctx, "on_backend_error") {
                None => OnBackendError::Local,
                Some(s) => match s.value.as_str() {
                    "local" => OnBackendError::Local,
                    "deny" => OnBackendError::Deny,
                    "allow" => OnBackendError::Allow,
                    other => {
                        ctx.err_at(&s, format!("unknown value {other:?} (expected \"local\", \"deny\" or \"allow\")"));
                        OnBackendError::Local
                    }
                },
            };
            RateLimitConfig { backend: RateLimitBackend::Redis { url, on_backend_error } }
        }
        Some(other) => {
            if let Some(b) = &backend {
                ctx.err_at(b, format!("unknown backend {other:?} (expected \"local\" or \"redis\")"));
            }
            local
        }
    }
}

pub(crate) fn redaction(root: &Tbl<'_>, ctx: &mut Ctx<'_>) -> RedactionConfig {
    let t = root.sub_or_empty(ctx, "redaction", REDACTION_KEYS).unwrap_or_else(|| Tbl::absent("redaction".into()));
    let patterns: Vec<String> = match t.string_list(ctx, "patterns") {
        Some(list) => {
            for p in &list.value {
                match regex::Regex::new(&p.value) {
                    Ok(re) if re.is_match("") => {
                        ctx.err_at(p, "pattern matches the empty string (it would redact between every character)")
                    }
                    Ok(_) => {}
                    Err(e) => ctx.err_at(p, format!("invalid regular expression: {e}")),
                }
            }
            list.value.into_iter().map(|l| l.value).collect()
        }
        None => vec![COGNITO_IDENTITY_ID.to_string()],
    };
    let combined = if patterns.is_empty() {
        None
    } else {
        let alternation = patterns.iter().map(|p| format!("(?:{p})")).collect::<Vec<_>>().join("|");
        match regex::Regex::new(&alternation) {
            Ok(re) => {
                if let Err(e) = crate::filter::redact::check_stream_pattern(&alternation) {
                    let span = t.get("patterns").map(|v| v.span());
                    ctx.err("redaction.patterns", span.as_ref(), e);
                }
                Some(re)
            }
            Err(e) => {
                // Only reachable when the individual patterns are fine but the
                // combination exceeds the regex size limit.
                if ctx.errors.iter().all(|x| !x.key.starts_with("redaction.patterns")) {
                    let span = t.get("patterns").map(|v| v.span());
                    ctx.err("redaction.patterns", span.as_ref(), format!("patterns cannot be combined: {e}"));
                }
                None
            }
        }
    };
    let replacement = t.string(ctx, "replacement").map_or_else(|| DEFAULT_REPLACEMENT.to_string(), |l| l.value);
    let mut strip = Vec::new();
    if let Some(list) = t.string_list(ctx, "strip_response_headers") {
        for (i, h) in list.value.iter().enumerate() {
            match header_match(&h.value) {
                Ok(m) => strip.push(m),
                Err(e) => ctx.err(&index(&list.key, i), Some(&h.span), e),
            }
        }
    }
    RedactionConfig { patterns, combined, replacement, strip_response_headers: strip }
}

fn header_match(name: &str) -> Result<HeaderMatch, String> {
    let lower = name.trim().to_ascii_lowercase();
    let (base, prefix) = match lower.strip_suffix('*') {
        Some(b) => (b.to_string(), true),
        None => (lower, false),
    };
    if base.is_empty() {
        return Err("a header name or prefix must not be empty (`*` alone would strip every header)".into());
    }
    if !base.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'+-.^_`|~".contains(&b)) {
        return Err(format!("{name:?} is not a valid header name (a trailing `*` makes it a prefix)"));
    }
    Ok(if prefix { HeaderMatch::Prefix(base) } else { HeaderMatch::Exact(base) })
}
