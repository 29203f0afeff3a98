//! Admin listener (docs/reference.md §9): `/healthz`, `/readyz`, `/metrics`. Never served
//! on the proxy listener.
//!
//! The admin endpoints read the process through `AdminView`, which the
//! server implements for its state; this module does not know the server.

use crate::aws::credentials::CredentialProvider;
use crate::body::{full, ProxyBody};
use crate::metrics::Format;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;

/// What the admin endpoints read from the running process.
pub trait AdminView {
    /// Why `/readyz` is not ready, or None when it is.
    fn not_ready_reason(&self) -> Option<&'static str>;
    /// The scrape-time readings `/metrics` needs, taken from one config
    /// snapshot.
    fn scrape(&self) -> ScrapeView;
}

/// Scrape-time readings of the running process.
pub struct ScrapeView {
    /// Verified JWTs held by the running authenticator.
    pub verified_tokens_cached: usize,
    /// Bytes held against the buffer budget now.
    pub buffered_bytes: u64,
    /// The running credential provider (STS counters, cached sessions).
    pub creds: Arc<CredentialProvider>,
}

pub fn handle<B, V: AdminView + ?Sized>(state: &V, req: &Request<B>) -> Response<ProxyBody> {
    let (status, content_type, text) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, TEXT, "ok\n".to_string()),
        (&Method::GET | &Method::HEAD, "/readyz") => match state.not_ready_reason() {
            None => (StatusCode::OK, TEXT, "ready\n".to_string()),
            Some(why) => (StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("not ready: {why}\n")),
        },
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            let scrape = state.scrape();
            let metrics = crate::metrics::global();
            metrics.set_verified_tokens_cached(scrape.verified_tokens_cached);
            metrics.set_buffered_bytes(scrape.buffered_bytes);
            (StatusCode::OK, format.content_type(), metrics.render(Some(&scrape.creds), format))
        }
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".to_string()),
    };
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";
