//! `jwks_url`: fetching the JWKS over HTTPS, the background refresher
//! (initial fetch with retry and backoff, then every `jwks_refresh`), and the
//! rate-limited refresh on an unknown `kid` (key rotation). A failed fetch
//! never replaces the last good key set and never panics.

use super::keys::KeySet;
use super::JwtAuth;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// An unknown `kid` triggers a JWKS fetch at most this often (docs/reference.md §3).
pub const JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);
/// How long a request with an unknown `kid` waits for the refetch.
const ON_DEMAND_WAIT: Duration = Duration::from_secs(5);
/// Whole-fetch timeout (connect timeout included).
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Retry delays after a failed fetch: doubling from the first, capped.
const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Larger JWKS documents are refused.
const MAX_JWKS_BYTES: usize = 1 << 20;

#[derive(Debug, Clone)]
pub(crate) struct Timing {
    pub(crate) min_refetch: Duration,
    pub(crate) on_demand_wait: Duration,
    pub(crate) fetch_timeout: Duration,
    pub(crate) backoff_initial: Duration,
    pub(crate) backoff_max: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            min_refetch: JWKS_MIN_REFETCH,
            on_demand_wait: ON_DEMAND_WAIT,
            fetch_timeout: FETCH_TIMEOUT,
            backoff_initial: BACKOFF_INITIAL,
            backoff_max: BACKOFF_MAX,
        }
    }
}

type HttpClient = Client<crate::tls::HttpsConnector, Empty<Bytes>>;

pub(crate) struct JwksSource {
    pub(crate) url: http::Uri,
    client: HttpClient,
    refresh: Duration,
    timing: Timing,
    /// One fetch at a time; waiting on it means waiting for the fetch in flight.
    fetch_lock: tokio::sync::Mutex<()>,
    /// When the last fetch started (any kind): the unknown-`kid` rate limit.
    last_fetch: Mutex<Option<Instant>>,
}

impl JwksSource {
    pub(crate) fn new(
        url: &str,
        ca_file: Option<&Path>,
        connect_timeout: Duration,
        refresh: Duration,
        timing: Timing,
    ) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("identity.jwks_url {url:?}: {e}"))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("https"), Some(_)) => {}
            (Some("http"), Some(_)) => {
                tracing::warn!(
                    url,
                    "identity.jwks_url is plain http: signing keys can be forged in transit"
                )
            }
            _ => {
                return Err(format!(
                    "identity.jwks_url {url:?}: not an absolute http(s) URL"
                ))
            }
        }
        let connector = crate::tls::https_connector(ca_file, connect_timeout)
            .map_err(|e| format!("identity.jwks_url: TLS set-up: {e}"))?;
        Ok(JwksSource {
            url: uri,
            client: Client::builder(TokioExecutor::new()).build(connector),
            refresh: refresh.max(Duration::from_secs(1)),
            timing,
            fetch_lock: tokio::sync::Mutex::new(()),
            last_fetch: Mutex::new(None),
        })
    }

    /// GET the JWKS document (2xx, at most 1 MiB, bounded in time).
    async fn fetch(&self) -> Result<Bytes, String> {
        let req = http::Request::get(self.url.clone())
            .header(http::header::ACCEPT, "application/json")
            .header(
                http::header::USER_AGENT,
                concat!("tenantgate/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        let fetch = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| error_chain(&e))?;
            if !resp.status().is_success() {
                return Err(format!("HTTP status {}", resp.status()));
            }
            let body = Limited::new(resp.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading body: {e}"))?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(self.timing.fetch_timeout, fetch)
            .await
            .map_err(|_| format!("timed out after {:?}", self.timing.fetch_timeout))?
    }

    /// True (and the slot taken) when an unknown `kid` may trigger a fetch now.
    fn claim_refetch_slot(&self) -> bool {
        let mut last = self
            .last_fetch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match *last {
            Some(t) if t.elapsed() < self.timing.min_refetch => false,
            _ => {
                *last = Some(Instant::now());
                true
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(cause) = src {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        src = cause.source();
    }
    s
}

/// Fetches the JWKS and installs it. Returns whether the key set changed.
/// A failure leaves the current key set in force.
pub(crate) async fn refresh_now(auth: &JwtAuth) -> Result<bool, String> {
    let Some(src) = &auth.jwks else {
        return Ok(false);
    };
    let _one_at_a_time = src.fetch_lock.lock().await;
    {
        let mut last = src
            .last_fetch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = Some(Instant::now());
    }
    let body = src.fetch().await?;
    let (mut set, notes) = KeySet::from_jwks_json(&body, &auth.cfg.algorithms, false)?;
    for note in notes {
        tracing::debug!(url = %src.url, "JWKS: {note}");
    }
    set.raw = Some(body);
    Ok(auth.install(set))
}

/// An unknown `kid`: refetch (at most once per `min_refetch`, in a task of
/// its own so a dropped request does not cancel it) and wait for it, or for
/// the fetch already in flight, bounded by `on_demand_wait`.
pub(crate) async fn refresh_for_unknown_kid(auth: &Arc<JwtAuth>) {
    let Some(src) = &auth.jwks else { return };
    let wait = src.timing.on_demand_wait;
    if src.claim_refetch_slot() {
        tracing::debug!(url = %src.url, "unknown kid: refetching JWKS");
        let task_auth = Arc::clone(auth);
        let task = tokio::spawn(async move {
            if let Err(e) = refresh_now(&task_auth).await {
                tracing::warn!(url = %task_auth.jwks_url(), error = %e, "JWKS refetch failed; keeping the last good key set");
            }
        });
        let _ = tokio::time::timeout(wait, task).await;
    } else {
        let _ = tokio::time::timeout(wait, src.fetch_lock.lock()).await;
    }
}

/// The background refresher: fetch now, retry with backoff until it works,
/// then refetch every `jwks_refresh`. Ends when the authenticator is dropped.
pub(crate) async fn run_refresher(auth: Weak<JwtAuth>) {
    let mut backoff: Option<Duration> = None;
    loop {
        let delay = {
            let Some(auth) = auth.upgrade() else { return };
            let Some(src) = &auth.jwks else { return };
            match refresh_now(&auth).await {
                Ok(changed) => {
                    backoff = None;
                    if changed {
                        let n = auth.keys.load().as_ref().map_or(0, |k| k.len());
                        tracing::info!(url = %src.url, keys = n, "JWKS loaded");
                    }
                    src.refresh
                }
                Err(e) => {
                    let next = match backoff {
                        None => src.timing.backoff_initial,
                        Some(b) => (b * 2).min(src.timing.backoff_max),
                    };
                    backoff = Some(next);
                    let ready = auth.keys.load().is_some();
                    tracing::warn!(url = %src.url, error = %e, ready, retry_in = ?next, "JWKS fetch failed");
                    jitter(next.min(src.refresh))
                }
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// Up to +20 %, so replicas started together do not retry in lockstep.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 200) / 1000.0)
}
