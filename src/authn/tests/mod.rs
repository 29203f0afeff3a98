//! Authenticator tests: key sources, signature and claim checks, claims to
//! principal, the token cache. `claims.rs` covers the checks on a decoded
//! token (time, issuer, audience, algorithm, tampering, tenant/user/groups
//! claims); `jwks_url.rs` covers fetching and rotation.
//! Keys are test-only fixtures under `tests/fixtures/authn/`.

mod claims;
mod jwks_url;

use super::*;
use crate::config::{IdentityConfig, IdentityMode, JwtConfig, KeySource};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;

const ISS: &str = "https://issuer.example/pool";
const HS_SECRET: &str = "0123456789abcdef0123456789abcdef-test-only";

pub(super) fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/authn")
        .join(name)
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

/// A fresh temp file holding `content`, removed when dropped.
pub(super) struct TempFile(PathBuf);

impl TempFile {
    pub(super) fn path(&self) -> PathBuf {
        self.0.clone()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(super) fn temp_file(content: &[u8]) -> TempFile {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let p = std::env::temp_dir().join(format!("tenantgate-authn-{}-{n}", std::process::id()));
    std::fs::write(&p, content).unwrap();
    TempFile(p)
}

pub(super) fn jwt_config(source: KeySource, algorithms: &[Algorithm]) -> IdentityConfig {
    IdentityConfig {
        header: http::HeaderName::from_static("x-tenant-token"),
        mode: IdentityMode::Jwt(JwtConfig {
            issuer: ISS.into(),
            audiences: vec!["app-client".into(), "other-client".into()],
            algorithms: algorithms.to_vec(),
            key_source: source,
            jwks_refresh: Duration::from_secs(3600),
            leeway_secs: 0,
            tenant_claim: "custom:tenantId".into(),
            user_claim: "sub".into(),
            groups_claim: Some("cognito:groups".into()),
        }),
    }
}

fn with_leeway(mut cfg: IdentityConfig, secs: u64) -> IdentityConfig {
    if let IdentityMode::Jwt(j) = &mut cfg.mode {
        j.leeway_secs = secs;
    }
    cfg
}

pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

pub(super) fn claims() -> Value {
    json!({
        "iss": ISS,
        "aud": "app-client",
        "exp": now() + 300,
        "sub": "user-1",
        "custom:tenantId": "acme",
    })
}

/// Signs with the private key of fixture `key` (`rsa1`, `rsa2`, `ec256`, `ed25519`).
pub(super) fn sign(key: &str, alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let pem = fixture_bytes(&format!("{key}_private.pem"));
    let enc = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(&pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(&pem),
        _ => EncodingKey::from_rsa_pem(&pem),
    }
    .unwrap();
    let mut h = Header::new(alg);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &enc).unwrap()
}

fn sign_hs(secret: &[u8], kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&h, claims, &EncodingKey::from_secret(secret)).unwrap()
}

/// A JWKS with the public halves of the given (kid, fixture key) pairs.
pub(super) fn jwks(keys: &[(&str, &str)]) -> String {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, key)| {
            let pem = fixture_bytes(&format!("{key}_private.pem"));
            let (enc, alg) = if key.starts_with("ec") {
                (EncodingKey::from_ec_pem(&pem).unwrap(), Algorithm::ES256)
            } else {
                (EncodingKey::from_rsa_pem(&pem).unwrap(), Algorithm::RS256)
            };
            let mut jwk = Jwk::from_encoding_key(&enc, alg).unwrap();
            jwk.common.key_id = Some(kid.to_string());
            let mut v = serde_json::to_value(jwk).unwrap();
            v["use"] = json!("sig");
            v
        })
        .collect();
    json!({ "keys": keys }).to_string()
}

pub(super) fn headers(token: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("x-tenant-token", token.parse().unwrap());
    h
}

fn authn(cfg: &IdentityConfig) -> Authenticator {
    Authenticator::new(cfg, None, Duration::from_secs(1)).unwrap()
}

fn rsa_pem() -> Authenticator {
    authn(&jwt_config(
        KeySource::PemFile(fixture("rsa1_public.pem")),
        &[Algorithm::RS256],
    ))
}

fn hs() -> Authenticator {
    let path = temp_file(HS_SECRET.as_bytes());
    authn(&jwt_config(
        KeySource::Hs256SecretFile(path.path()),
        &[Algorithm::HS256],
    ))
}

pub(super) fn jwt(a: &Authenticator) -> &Arc<JwtAuth> {
    match &a.inner {
        Inner::Jwt(j) => j,
        Inner::Static(_) => panic!("static authenticator"),
    }
}

async fn check(a: &Authenticator, token: &str) -> Result<Principal, ProxyError> {
    a.authenticate(&headers(token)).await
}

fn is_invalid(r: &Result<Principal, ProxyError>) -> bool {
    matches!(r, Err(ProxyError::InvalidToken(_)))
}

/// An HS256 token over `claims` (fast; most claim tests use it).
fn hs_token(claims: &Value) -> String {
    sign_hs(HS_SECRET.as_bytes(), None, claims)
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

#[tokio::test]
async fn rs256_via_jwks_file_and_pem_file() {
    let t = sign("rsa1", Algorithm::RS256, Some("k1"), &claims());
    let p = check(&rsa_pem(), &t).await.unwrap();
    assert_eq!((p.tenant.as_str(), p.user.as_str()), ("acme", "user-1"));
    assert_eq!(p.token.as_ref().unwrap().expose(), &t);
    assert_eq!(p.claims["custom:tenantId"], "acme");

    let file = temp_file(jwks(&[("k2", "rsa2"), ("k1", "rsa1")]).as_bytes());
    let a = authn(&jwt_config(
        KeySource::JwksFile(file.path()),
        &[Algorithm::RS256],
    ));
    assert!(a.is_ready());
    assert_eq!(check(&a, &t).await.unwrap().tenant, "acme");
    // the other key under the same kid does not verify
    let wrong = sign("rsa2", Algorithm::RS256, Some("k1"), &claims());
    assert!(is_invalid(&check(&a, &wrong).await));
    // a kid the file lacks: no refresh possible, invalid
    let unknown = sign("rsa1", Algorithm::RS256, Some("nope"), &claims());
    assert!(is_invalid(&check(&a, &unknown).await));
    // no kid and two RSA keys: ambiguous
    let no_kid = sign("rsa1", Algorithm::RS256, None, &claims());
    assert!(is_invalid(&check(&a, &no_kid).await));
}

#[tokio::test]
async fn no_kid_uses_the_one_key_that_fits() {
    let file = temp_file(jwks(&[("r", "rsa1"), ("e", "ec256")]).as_bytes());
    let a = authn(&jwt_config(
        KeySource::JwksFile(file.path()),
        &[Algorithm::RS256, Algorithm::ES256],
    ));
    assert!(check(&a, &sign("rsa1", Algorithm::RS256, None, &claims()))
        .await
        .is_ok());
    assert!(check(&a, &sign("ec256", Algorithm::ES256, None, &claims()))
        .await
        .is_ok());
}

#[tokio::test]
async fn unknown_kid_falls_back_to_a_key_published_without_kid() {
    let mut doc: Value = serde_json::from_str(&jwks(&[("x", "rsa1")])).unwrap();
    doc["keys"][0].as_object_mut().unwrap().remove("kid");
    let file = temp_file(doc.to_string().as_bytes());
    let a = authn(&jwt_config(
        KeySource::JwksFile(file.path()),
        &[Algorithm::RS256],
    ));
    assert!(
        check(&a, &sign("rsa1", Algorithm::RS256, Some("any"), &claims()))
            .await
            .is_ok()
    );
    assert!(check(&a, &sign("rsa1", Algorithm::RS256, None, &claims()))
        .await
        .is_ok());
    assert!(is_invalid(
        &check(&a, &sign("rsa2", Algorithm::RS256, Some("any"), &claims())).await
    ));
}

#[tokio::test]
async fn pem_file_detects_ec_and_ed25519() {
    let ec = authn(&jwt_config(
        KeySource::PemFile(fixture("ec256_public.pem")),
        &[Algorithm::ES256],
    ));
    assert!(
        check(&ec, &sign("ec256", Algorithm::ES256, None, &claims()))
            .await
            .is_ok()
    );
    let ed = authn(&jwt_config(
        KeySource::PemFile(fixture("ed25519_public.pem")),
        &[Algorithm::EdDSA],
    ));
    assert!(check(
        &ed,
        &sign("ed25519", Algorithm::EdDSA, Some("x"), &claims())
    )
    .await
    .is_ok());
    // the key type must fit the allowlist
    let e = Authenticator::new(
        &jwt_config(
            KeySource::PemFile(fixture("ec256_public.pem")),
            &[Algorithm::RS256],
        ),
        None,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(e.contains("identity.pem_file"), "{e}");
    // a private key is refused, and the error does not echo it
    let e = Authenticator::new(
        &jwt_config(
            KeySource::PemFile(fixture("rsa1_private.pem")),
            &[Algorithm::RS256],
        ),
        None,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(e.contains("private key") && !e.contains("MII"), "{e}");
}

#[tokio::test]
async fn hs256_via_env_and_file() {
    let var = format!("TENANTGATE_TEST_HS_{}", std::process::id());
    std::env::set_var(&var, HS_SECRET);
    let a = authn(&jwt_config(
        KeySource::Hs256SecretEnv(var.clone()),
        &[Algorithm::HS256],
    ));
    std::env::remove_var(&var); // read once, at new
    let t = hs_token(&claims());
    assert!(check(&a, &t).await.is_ok());
    // file with a trailing newline
    let path = temp_file(format!("{HS_SECRET}\n").as_bytes());
    let f = authn(&jwt_config(
        KeySource::Hs256SecretFile(path.path()),
        &[Algorithm::HS256],
    ));
    assert!(check(&f, &t).await.is_ok());
    assert!(is_invalid(
        &check(
            &f,
            &sign_hs(b"another secret entirely, 32 bytes+", None, &claims())
        )
        .await
    ));
    // errors name the key, never the secret
    let e = Authenticator::new(
        &jwt_config(KeySource::Hs256SecretEnv(var.clone()), &[Algorithm::HS256]),
        None,
        Duration::from_secs(1),
    )
    .unwrap_err();
    assert!(e.contains("hs256_secret_env") && e.contains(&var), "{e}");
    assert!(!format!("{a:?}{f:?}").contains(HS_SECRET));
}

#[tokio::test]
async fn bearer_prefix_and_missing_token() {
    let a = hs();
    let t = hs_token(&claims());
    assert!(check(&a, &format!("Bearer {t}")).await.is_ok());
    assert!(check(&a, &format!("  bearer   {t} ")).await.is_ok());
    assert_eq!(
        a.authenticate(&http::HeaderMap::new()).await.unwrap_err(),
        ProxyError::MissingToken
    );
    assert_eq!(
        check(&a, "Bearer ").await.unwrap_err(),
        ProxyError::MissingToken
    );
    // the token in another header does not count
    let mut h = http::HeaderMap::new();
    h.insert("authorization", format!("Bearer {t}").parse().unwrap());
    assert_eq!(
        a.authenticate(&h).await.unwrap_err(),
        ProxyError::MissingToken
    );
}

#[tokio::test]
async fn cache_hit_honours_expiry() {
    let a = rsa_pem();
    let auth = jwt(&a);
    let mut c = claims();
    c["exp"] = json!(now() + 60);
    let t = sign("rsa1", Algorithm::RS256, None, &c);
    assert!(check(&a, &t).await.is_ok());
    assert_eq!(auth.cache.len(), 1);
    assert!(
        check(&a, &format!("Bearer {t}")).await.is_ok(),
        "same entry, with prefix"
    );
    assert_eq!(auth.cache.len(), 1);
    auth.clock_offset.store(120, Ordering::Relaxed);
    assert!(is_invalid(&check(&a, &t).await), "cached but expired");
    assert_eq!(auth.cache.len(), 0);
    // not-yet-valid tokens are never cached as valid early
    auth.clock_offset.store(0, Ordering::Relaxed);
    let mut c = claims();
    c["nbf"] = json!(now() + 60);
    assert!(is_invalid(
        &check(&a, &sign("rsa1", Algorithm::RS256, None, &c)).await
    ));
}

#[tokio::test]
async fn cache_cleared_on_key_change() {
    let file = temp_file(jwks(&[("k1", "rsa1")]).as_bytes());
    let a = authn(&jwt_config(
        KeySource::JwksFile(file.path()),
        &[Algorithm::RS256],
    ));
    let auth = jwt(&a);
    let t = sign("rsa1", Algorithm::RS256, Some("k1"), &claims());
    assert!(check(&a, &t).await.is_ok());
    assert_eq!(auth.cache.len(), 1);
    // the same keys again: nothing changes
    let (same, _) = KeySet::from_jwks_json(
        jwks(&[("k1", "rsa1")]).as_bytes(),
        &[Algorithm::RS256],
        false,
    )
    .unwrap();
    assert!(!auth.install(same));
    assert_eq!(auth.cache.len(), 1);
    // k1 removed: the cached token stops verifying
    let (other, _) = KeySet::from_jwks_json(
        jwks(&[("k2", "rsa2")]).as_bytes(),
        &[Algorithm::RS256],
        false,
    )
    .unwrap();
    assert!(auth.install(other));
    assert_eq!(auth.cache.len(), 0);
    assert!(is_invalid(&check(&a, &t).await));
}

#[tokio::test]
async fn static_mode_ignores_the_header() {
    let cfg = IdentityConfig {
        header: http::HeaderName::from_static("x-tenant-token"),
        mode: IdentityMode::Static {
            tenant: "acme".into(),
        },
    };
    let a = authn(&cfg);
    a.start();
    assert!(a.is_ready());
    let p = a.authenticate(&http::HeaderMap::new()).await.unwrap();
    assert_eq!((p.tenant.as_str(), p.user.as_str()), ("acme", "-"));
    assert!(p.token.is_none() && p.groups.is_empty() && p.claims.is_empty());
    let p = check(&a, "garbage").await.unwrap();
    assert_eq!(p.tenant, "acme");
}

#[tokio::test]
async fn nothing_secret_in_debug_output() {
    let a = hs();
    let t = hs_token(&claims());
    let p = check(&a, &t).await.unwrap();
    let dbg = format!("{p:?} {a:?}");
    assert!(!dbg.contains(&t) && !dbg.contains(HS_SECRET), "{dbg}");
    let e = check(&a, &format!("{t}x")).await.unwrap_err();
    assert!(!format!("{e:?} {e}").contains(&t));
}
