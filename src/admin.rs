//! Admin listener (docs/reference.md §9): `/healthz`, `/readyz`, `/metrics`. Never served
//! on the proxy listener.

use crate::body::{full, ProxyBody};
use crate::metrics::Format;
use crate::server::ServerState;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use std::sync::Arc;

pub fn handle<B>(state: &Arc<ServerState>, req: &Request<B>) -> Response<ProxyBody> {
    let (status, content_type, text) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, TEXT, "ok\n".to_string()),
        (&Method::GET | &Method::HEAD, "/readyz") => match state.not_ready_reason() {
            None => (StatusCode::OK, TEXT, "ready\n".to_string()),
            Some(why) => (StatusCode::SERVICE_UNAVAILABLE, TEXT, format!("not ready: {why}\n")),
        },
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok());
            let format = Format::from_accept(accept);
            let snapshot = state.proxy.snapshot.load();
            let metrics = crate::metrics::global();
            metrics.set_verified_tokens_cached(snapshot.authn.cached_tokens());
            metrics.set_buffered_bytes(state.proxy.budget.held());
            (StatusCode::OK, format.content_type(), metrics.render(Some(&snapshot.creds), format))
        }
        _ => (StatusCode::NOT_FOUND, TEXT, "not found\n".to_string()),
    };
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";
