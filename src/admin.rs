//! Admin listener (SPEC §9): `/healthz`, `/readyz`. Never served on the
//! proxy listener.

use crate::body::{full, ProxyBody};
use crate::server::ServerState;
use http::{Method, Request, Response, StatusCode};
use std::sync::Arc;

pub fn handle<B>(state: &Arc<ServerState>, req: &Request<B>) -> Response<ProxyBody> {
    let (status, text) = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/healthz") => (StatusCode::OK, "ok\n".to_string()),
        (&Method::GET | &Method::HEAD, "/readyz") => match state.not_ready_reason() {
            None => (StatusCode::OK, "ready\n".to_string()),
            Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
        },
        _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
    };
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}
