//! Identity (docs/reference.md §4): request headers -> verified `Principal`.
//!
//! JWT mode: the token from `identity.header` is verified against the
//! configured keys (JWKS URL or file, one PEM public key, or an HS256
//! secret) and the allowed algorithms, then `exp`/`nbf` (with leeway), `iss`
//! and the audience are checked and tenant, user and groups are taken from
//! the claims. Static mode: every request is the pod's tenant.
//!
//! Verified tokens are cached (see `cache.rs`) so the hot path is a SHA-256
//! and a map look-up. Nothing here logs a token or key material.

mod cache;
mod jwks;
mod keys;
mod token;

#[cfg(test)]
mod tests;

pub use jwks::JWKS_MIN_REFETCH;

use crate::config::{IdentityConfig, IdentityMode, JwtConfig, KeySource};
use crate::error::ProxyError;
use crate::principal::Principal;
use arc_swap::ArcSwapOption;
use cache::{Entry, TokenCache, TokenDigest};
use keys::{KeySet, Selected};
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Verified tokens kept (SHA-256 -> principal); see `cache.rs`.
const TOKEN_CACHE_CAPACITY: usize = 10_000;

/// Turns request headers into a verified `Principal`. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Static(Arc<Principal>),
    Jwt(Arc<JwtAuth>),
}

pub(crate) struct JwtAuth {
    header: http::HeaderName,
    cfg: JwtConfig,
    /// None until a JWKS has been loaded from `jwks_url` (never None otherwise).
    keys: ArcSwapOption<KeySet>,
    /// Serialises key-set installs (generation numbering, cache clearing).
    install_lock: Mutex<()>,
    cache: TokenCache,
    jwks: Option<jwks::JwksSource>,
    started: AtomicBool,
    /// Added to the wall clock; tests move time with it. Zero in production.
    clock_offset: AtomicI64,
}

impl Authenticator {
    /// Loads `jwks_file` / `pem_file` / the HS256 secret (env var or file)
    /// now. An error is a start-up error; it names the key, never a secret.
    pub fn new(
        cfg: &IdentityConfig,
        ca_file: Option<&Path>,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        Self::with_timing(cfg, ca_file, connect_timeout, jwks::Timing::default())
    }

    fn with_timing(
        cfg: &IdentityConfig,
        ca_file: Option<&Path>,
        connect_timeout: Duration,
        timing: jwks::Timing,
    ) -> Result<Self, String> {
        let jwt = match &cfg.mode {
            IdentityMode::Static { tenant } => {
                return Ok(Authenticator {
                    inner: Inner::Static(Arc::new(Principal::static_tenant(tenant))),
                })
            }
            IdentityMode::Jwt(jwt) => jwt,
        };
        let algs = &jwt.algorithms;
        if algs.is_empty() {
            return Err("identity.algorithms: no algorithm allowed".into());
        }
        if jwt.audiences.is_empty() {
            return Err("identity.audiences: must not be empty".into());
        }
        let (keys, source) = match &jwt.key_source {
            KeySource::JwksUrl(url) => {
                let src =
                    jwks::JwksSource::new(url, ca_file, connect_timeout, jwt.jwks_refresh, timing)?;
                (None, Some(src))
            }
            KeySource::JwksFile(path) => {
                let doc = read(path, "identity.jwks_file")?;
                let (set, notes) = KeySet::from_jwks_json(&doc, algs, true)
                    .map_err(|e| format!("identity.jwks_file {}: {e}", path.display()))?;
                for note in notes {
                    tracing::warn!(file = %path.display(), "identity.jwks_file: {note}");
                }
                (Some(set), None)
            }
            KeySource::PemFile(path) => {
                let pem = read(path, "identity.pem_file")?;
                let set = KeySet::from_pem(&pem, algs)
                    .map_err(|e| format!("identity.pem_file {}: {e}", path.display()))?;
                (Some(set), None)
            }
            KeySource::Hs256SecretEnv(var) => {
                let secret = std::env::var(var).map_err(|_| {
                    format!("identity.hs256_secret_env: environment variable {var} is not set (or not UTF-8)")
                })?;
                let set = hmac_key_set(secret.as_bytes(), algs)
                    .map_err(|e| format!("identity.hs256_secret_env {var}: {e}"))?;
                (Some(set), None)
            }
            KeySource::Hs256SecretFile(path) => {
                let mut secret = read(path, "identity.hs256_secret_file")?;
                if secret.last() == Some(&b'\n') {
                    secret.pop();
                    if secret.last() == Some(&b'\r') {
                        secret.pop();
                    }
                }
                let set = hmac_key_set(&secret, algs)
                    .map_err(|e| format!("identity.hs256_secret_file {}: {e}", path.display()))?;
                (Some(set), None)
            }
        };
        let auth = JwtAuth {
            header: cfg.header.clone(),
            cfg: jwt.clone(),
            keys: ArcSwapOption::empty(),
            install_lock: Mutex::new(()),
            cache: TokenCache::new(TOKEN_CACHE_CAPACITY),
            jwks: source,
            started: AtomicBool::new(false),
            clock_offset: AtomicI64::new(0),
        };
        if let Some(set) = keys {
            auth.install(set);
        }
        Ok(Authenticator {
            inner: Inner::Jwt(Arc::new(auth)),
        })
    }

    /// Spawns the JWKS refresher (`jwks_url` only; once). Must run inside a
    /// tokio runtime; outside one it logs an error and does nothing.
    pub fn start(&self) {
        let Inner::Jwt(auth) = &self.inner else {
            return;
        };
        if auth.jwks.is_none() || auth.started.swap(true, Ordering::SeqCst) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(jwks::run_refresher(Arc::downgrade(auth)));
            }
            Err(_) => {
                auth.started.store(false, Ordering::SeqCst);
                tracing::error!("Authenticator::start outside a tokio runtime: JWKS not fetched");
            }
        }
    }

    /// True when verification keys are loaded (always for static mode and
    /// file or env keys; for `jwks_url` once a JWKS has been fetched).
    pub fn is_ready(&self) -> bool {
        match &self.inner {
            Inner::Static(_) => true,
            Inner::Jwt(auth) => auth.keys.load().is_some(),
        }
    }

    /// Verified tokens held in the cache (0 in static mode), for
    /// `tenantgate_verified_tokens_cached`.
    pub fn cached_tokens(&self) -> usize {
        match &self.inner {
            Inner::Static(_) => 0,
            Inner::Jwt(auth) => auth.cache.len(),
        }
    }

    /// Takes over the last good JWKS of the authenticator this one replaces
    /// (config reload) when both fetch the same `jwks_url`, so the new one is
    /// ready at once instead of answering 503 until its first fetch. The keys
    /// are re-parsed under this configuration. Returns whether keys were taken.
    pub fn seed_from(&self, previous: &Authenticator) -> bool {
        let (Inner::Jwt(new), Inner::Jwt(old)) = (&self.inner, &previous.inner) else {
            return false;
        };
        let (Some(new_src), Some(old_src)) = (&new.jwks, &old.jwks) else {
            return false;
        };
        if new_src.url != old_src.url || new.keys.load().is_some() {
            return false;
        }
        let old_keys = old.keys.load_full();
        let Some(raw) = old_keys.as_ref().and_then(|k| k.raw.clone()) else {
            return false;
        };
        match KeySet::from_jwks_json(&raw, &new.cfg.algorithms, false) {
            Ok((mut set, _)) => {
                set.raw = Some(raw);
                new.install(set);
                true
            }
            Err(_) => false,
        }
    }

    /// Verifies the request's identity. Errors: `MissingToken`,
    /// `InvalidToken` (detail for the log), `UnknownTenant` (tenant id
    /// breaks the pattern) and `JwksUnavailable` (no JWKS loaded yet).
    pub async fn authenticate(&self, headers: &http::HeaderMap) -> Result<Principal, ProxyError> {
        match &self.inner {
            Inner::Static(p) => Ok(Principal::clone(p)),
            Inner::Jwt(auth) => auth.authenticate(headers).await,
        }
    }
}

fn read(path: &Path, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{key} {}: {e}", path.display()))
}

fn hmac_key_set(secret: &[u8], algs: &[jsonwebtoken::Algorithm]) -> Result<KeySet, String> {
    if !secret.is_empty() && secret.len() < 32 {
        tracing::warn!("the HS256 secret is shorter than 32 bytes; use a longer random secret");
    }
    KeySet::from_hmac_secret(secret, algs)
}

impl JwtAuth {
    fn now(&self) -> i64 {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        wall.saturating_add(self.clock_offset.load(Ordering::Relaxed))
    }

    fn leeway(&self) -> i64 {
        i64::try_from(self.cfg.leeway_secs).unwrap_or(i64::MAX)
    }

    fn jwks_url(&self) -> String {
        self.jwks
            .as_ref()
            .map(|s| s.url.to_string())
            .unwrap_or_default()
    }

    /// Installs a key set unless it holds the same keys as the current one.
    /// A change bumps the generation and clears the token cache, so a key
    /// removed from the JWKS stops verifying cached tokens at once.
    fn install(&self, mut set: KeySet) -> bool {
        let _serial = self
            .install_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.keys.load_full();
        if let Some(cur) = &current {
            if cur.fingerprint == set.fingerprint {
                return false;
            }
        }
        set.generation = current.map_or(1, |c| c.generation + 1);
        self.keys.store(Some(Arc::new(set)));
        self.cache.clear();
        true
    }

    async fn authenticate(
        self: &Arc<Self>,
        headers: &http::HeaderMap,
    ) -> Result<Principal, ProxyError> {
        let token = token::extract(headers, &self.header)?;
        let Some(mut keys) = self.keys.load_full() else {
            return Err(ProxyError::JwksUnavailable);
        };
        let digest = TokenDigest(Sha256::digest(token.as_bytes()).into());
        let (now, leeway) = (self.now(), self.leeway());
        if let Some(hit) = self.cache.get(&digest, keys.generation, now, leeway) {
            return hit;
        }

        let parsed = token::parse(token)?;
        if !self.cfg.algorithms.contains(&parsed.alg) {
            return Err(ProxyError::InvalidToken(format!(
                "alg {:?} is not in identity.algorithms",
                parsed.alg
            )));
        }
        // The registered claims are checked before the signature: a token
        // that would be rejected anyway (expired, wrong issuer or audience)
        // costs no signature verification and triggers no JWKS refetch.
        // Nothing from the claims is used unless the signature verifies.
        let claims = token::decode_claims(parsed.payload)?;
        let bounds = token::validate(&claims, &self.cfg)?;
        bounds.check(now, leeway)?;

        let kid = parsed.kid.as_deref();
        if matches!(keys.select(kid, parsed.alg), Selected::UnknownKid) && self.jwks.is_some() {
            jwks::refresh_for_unknown_kid(self).await;
            keys = self.keys.load_full().ok_or(ProxyError::JwksUnavailable)?;
        }
        let key = match keys.select(kid, parsed.alg) {
            Selected::Key(k) => k,
            Selected::UnknownKid => {
                return Err(ProxyError::InvalidToken(format!(
                    "unknown kid {:?}",
                    short(kid)
                )))
            }
            Selected::NoKeyForAlg => {
                return Err(ProxyError::InvalidToken(format!(
                    "no key for alg {:?} (kid {:?})",
                    parsed.alg,
                    short(kid)
                )))
            }
            Selected::Ambiguous => {
                return Err(ProxyError::InvalidToken(
                    "token has no kid and several keys fit its alg".into(),
                ))
            }
        };
        let valid = jsonwebtoken::crypto::verify(
            parsed.signature,
            parsed.signing_input.as_bytes(),
            key.decoding_key(),
            parsed.alg,
        )
        .map_err(|_| ProxyError::InvalidToken("malformed signature".into()))?;
        if !valid {
            return Err(ProxyError::InvalidToken("signature mismatch".into()));
        }

        let principal = token::principal(claims, token, &self.cfg)?;
        let entry = Entry {
            principal: principal.clone(),
            bounds,
            generation: keys.generation,
        };
        self.cache.insert(digest, entry, now, leeway);
        Ok(principal)
    }
}

/// A `kid` for a log line: at most 64 characters.
fn short(kid: Option<&str>) -> Option<&str> {
    kid.map(|k| k.char_indices().nth(64).map_or(k, |(i, _)| &k[..i]))
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner {
            Inner::Static(p) => f
                .debug_struct("Authenticator")
                .field("static_tenant", &p.tenant)
                .finish(),
            Inner::Jwt(a) => {
                let source = match &a.cfg.key_source {
                    KeySource::JwksUrl(_) => "jwks_url",
                    KeySource::JwksFile(_) => "jwks_file",
                    KeySource::PemFile(_) => "pem_file",
                    KeySource::Hs256SecretEnv(_) => "hs256_secret_env",
                    KeySource::Hs256SecretFile(_) => "hs256_secret_file",
                };
                let keys = a.keys.load().as_ref().map(|k| k.len());
                f.debug_struct("Authenticator")
                    .field("issuer", &a.cfg.issuer)
                    .field("key_source", &source)
                    .field("keys_loaded", &keys)
                    .finish()
            }
        }
    }
}
