//! Identity header and JWT claim handling: `Authenticator::authenticate`
//! with an HS256 key. The first input byte picks the mode:
//! - raw: the rest is the identity header value, verbatim;
//! - signed claims: the rest is the JWT payload (any bytes), signed with
//!   the right key, so claim parsing is reached;
//! - merged claims: the rest, when a JSON object, is merged over valid base
//!   claims (issuer, audience, expiry), so tenant/user/groups handling is
//!   reached with everything else valid.
//!
//! Oracles: no panic; refusals are 401/403/503; an accepted token's tenant
//! and user are exactly its `tenant_id` and `sub` claims, and the tenant
//! matches the tenant id pattern.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use sha2::Sha256;
use std::sync::OnceLock;
use tenantgate::authn::Authenticator;

const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret-0123";
const CONFIG: &str = r#"
[aws]
region = "us-east-1"
[identity]
mode = "jwt"
header = "x-tenant-token"
issuer = "https://idp.example"
audiences = ["tenantgate"]
algorithms = ["HS256"]
hs256_secret_env = "TENANTGATE_FUZZ_HS256"
tenant_claim = "tenant_id"
user_claim = "sub"
groups_claim = "groups"
[credentials]
source = "static"
"#;

struct Env {
    rt: tokio::runtime::Runtime,
    auth: Authenticator,
}

fn env() -> &'static Env {
    static E: OnceLock<Env> = OnceLock::new();
    E.get_or_init(|| {
        std::env::set_var("TENANTGATE_FUZZ_HS256", SECRET);
        let cfg = tenantgate::config::parse_str(CONFIG, std::path::Path::new(".")).expect("config");
        let auth = Authenticator::new(&cfg.identity, None, std::time::Duration::from_secs(1)).expect("authn");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        Env { rt, auth }
    })
}

fn sign(payload: &[u8]) -> String {
    let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(payload);
    let input = format!("{h}.{p}");
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

fn base_claims() -> Map<String, Value> {
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
    match json!({"iss": "https://idp.example", "aud": "tenantgate", "exp": exp, "sub": "alice", "tenant_id": "acme"}) {
        Value::Object(m) => m,
        _ => unreachable!(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (value, claims): (Vec<u8>, Option<Map<String, Value>>) = match mode % 3 {
        0 => (rest.to_vec(), None),
        1 => {
            let claims = serde_json::from_slice::<Value>(rest).ok().and_then(|v| v.as_object().cloned());
            (sign(rest).into_bytes(), claims)
        }
        _ => {
            let Ok(Value::Object(extra)) = serde_json::from_slice::<Value>(rest) else { return };
            let mut claims = base_claims();
            claims.extend(extra);
            let payload = serde_json::to_vec(&claims).unwrap();
            (sign(&payload).into_bytes(), Some(claims))
        }
    };
    let Ok(hv) = HeaderValue::from_bytes(&value) else { return };
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant-token", hv);
    let e = env();
    match e.rt.block_on(e.auth.authenticate(&headers)) {
        Err(err) => {
            let s = err.status().as_u16();
            assert!(matches!(s, 401 | 403 | 503), "{err:?}");
        }
        Ok(p) => {
            let claims = claims.expect("only a token signed with the key can be accepted");
            assert_eq!(Some(p.tenant.as_str()), claims.get("tenant_id").and_then(Value::as_str));
            assert_eq!(Some(p.user.as_str()), claims.get("sub").and_then(Value::as_str));
            let t = p.tenant.as_bytes();
            assert!(!t.is_empty() && t.len() <= 64 && t[0].is_ascii_alphanumeric());
            assert!(t.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')));
        }
    }
});
