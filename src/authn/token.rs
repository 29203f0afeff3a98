//! The JWT itself: taking it from the request header, splitting and decoding
//! it, checking the registered claims (`exp`, `nbf`, `iss`, `aud` /
//! `client_id`) and turning the claims into a `Principal`. Error details are
//! for the log and never contain the token.

use crate::config::JwtConfig;
use crate::error::ProxyError;
use crate::principal::Principal;
use crate::secret::Secret;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{HeaderMap, HeaderName};
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::str::FromStr;

fn invalid(detail: impl Into<String>) -> ProxyError {
    ProxyError::InvalidToken(detail.into())
}

/// The token from `header`: one header value, an optional case-insensitive
/// `Bearer ` prefix, surrounding whitespace trimmed. Absent or empty is
/// `MissingToken`; a repeated header or a non-ASCII value is `InvalidToken`.
pub(crate) fn extract<'h>(
    headers: &'h HeaderMap,
    header: &HeaderName,
) -> Result<&'h str, ProxyError> {
    let mut values = headers.get_all(header).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(ProxyError::MissingToken),
        (Some(v), None) => v,
        (Some(_), Some(_)) => return Err(invalid("identity header given more than once")),
    };
    let value = value
        .to_str()
        .map_err(|_| invalid("identity header is not visible ASCII"))?
        .trim();
    let token = match value.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => value[7..].trim_start(),
        _ if value.eq_ignore_ascii_case("bearer") => "",
        _ => value,
    };
    if token.is_empty() {
        return Err(ProxyError::MissingToken);
    }
    Ok(token)
}

/// A compact JWS split into its parts; the header decoded.
pub(crate) struct Parsed<'t> {
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'t str,
    pub(crate) payload: &'t str,
    pub(crate) signature: &'t str,
    pub(crate) alg: Algorithm,
    pub(crate) kid: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, ProxyError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("not a compact JWS (header.payload.signature)"));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(invalid(
            "empty JWT part (unsigned tokens are never accepted)",
        ));
    }
    let header_json = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| invalid("JWT header is not base64url"))?;
    let header: RawHeader = serde_json::from_slice(&header_json)
        .map_err(|_| invalid("JWT header is not valid JSON"))?;
    if header.crit.is_some() {
        return Err(invalid(
            "JWT header has unsupported critical extensions (crit)",
        ));
    }
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(invalid("alg none is never accepted"));
    }
    let alg = Algorithm::from_str(&header.alg)
        .map_err(|_| invalid(format!("unsupported alg {:?}", truncate(&header.alg))))?;
    Ok(Parsed {
        signing_input: &token[..h.len() + 1 + p.len()],
        payload: p,
        signature: s,
        alg,
        kid: header.kid,
    })
}

pub(crate) fn decode_claims(payload: &str) -> Result<Map<String, Value>, ProxyError> {
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| invalid("JWT payload is not base64url"))?;
    serde_json::from_slice(&json).map_err(|_| invalid("JWT payload is not a JSON object"))
}

/// `exp` and `nbf` in seconds since the epoch, kept with cached tokens so a
/// cache hit re-checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeBounds {
    pub(crate) exp: i64,
    pub(crate) nbf: Option<i64>,
}

impl TimeBounds {
    /// Expired once `now >= exp + leeway`.
    pub(crate) fn expired(&self, now: i64, leeway: i64) -> bool {
        now >= self.exp.saturating_add(leeway)
    }

    pub(crate) fn check(&self, now: i64, leeway: i64) -> Result<(), ProxyError> {
        if self.expired(now, leeway) {
            return Err(invalid("token expired (exp)"));
        }
        if let Some(nbf) = self.nbf {
            if now.saturating_add(leeway) < nbf {
                return Err(invalid("token not yet valid (nbf)"));
            }
        }
        Ok(())
    }
}

/// Checks `iss` (exact), the audience and the presence and type of `exp` /
/// `nbf`; the times themselves are checked by `TimeBounds::check`.
pub(crate) fn validate(
    claims: &Map<String, Value>,
    cfg: &JwtConfig,
) -> Result<TimeBounds, ProxyError> {
    let exp = match claims.get("exp") {
        None => return Err(invalid("token has no exp")),
        Some(v) => numeric_date(v, f64::floor).ok_or_else(|| invalid("exp is not a number"))?,
    };
    let nbf = match claims.get("nbf") {
        None => None,
        Some(v) => Some(numeric_date(v, f64::ceil).ok_or_else(|| invalid("nbf is not a number"))?),
    };
    match claims.get("iss") {
        Some(Value::String(iss)) if *iss == cfg.issuer => {}
        Some(_) => return Err(invalid("issuer mismatch (iss)")),
        None => return Err(invalid("token has no iss")),
    }
    let known = |a: &str| cfg.audiences.iter().any(|x| x == a);
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => known(a),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(known),
        Some(_) => return Err(invalid("aud is neither a string nor a list")),
        // Cognito access tokens carry the app client in `client_id`, not `aud`.
        None => matches!(claims.get("client_id"), Some(Value::String(c)) if known(c)),
    };
    if !audience_ok {
        return Err(invalid("audience mismatch (aud / client_id)"));
    }
    Ok(TimeBounds { exp, nbf })
}

/// A NumericDate (RFC 7519): integer or fractional seconds.
fn numeric_date(v: &Value, round: fn(f64) -> f64) -> Option<i64> {
    let n = v.as_number()?;
    if let Some(i) = n.as_i64() {
        return Some(i);
    }
    let f = n.as_f64()?;
    // `as` saturates; NaN cannot come out of JSON.
    f.is_finite().then(|| round(f) as i64)
}

/// Builds the principal from verified, validated claims.
pub(crate) fn principal(
    claims: Map<String, Value>,
    token: &str,
    cfg: &JwtConfig,
) -> Result<Principal, ProxyError> {
    // Every 401 condition first; the tenant id pattern (403) last.
    let tenant = required_string(&claims, &cfg.tenant_claim, "tenant")?;
    let user = required_string(&claims, &cfg.user_claim, "user")?.to_owned();
    let groups = match cfg.groups_claim.as_deref().and_then(|g| claims.get(g)) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(g)) => vec![g.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|g| g.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| invalid("groups claim holds a non-string"))?,
        Some(_) => return Err(invalid("groups claim is neither a string nor a list")),
    };
    if !valid_tenant_id(tenant) {
        return Err(ProxyError::UnknownTenant(truncate(tenant).to_owned()));
    }
    let tenant = tenant.to_owned();
    Ok(Principal {
        tenant,
        user,
        groups,
        claims,
        token: Some(Secret::new(token.to_owned())),
    })
}

fn required_string<'c>(
    claims: &'c Map<String, Value>,
    name: &str,
    what: &str,
) -> Result<&'c str, ProxyError> {
    match claims.get(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(invalid(format!("{what} claim {name:?} is empty"))),
        Some(_) => Err(invalid(format!("{what} claim {name:?} is not a string"))),
        None => Err(invalid(format!("token has no {what} claim {name:?}"))),
    }
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$` (docs/reference.md §3).
pub(crate) fn valid_tenant_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

/// At most 64 bytes (on a char boundary) of an untrusted value, for messages.
fn truncate(s: &str) -> &str {
    if s.len() <= 64 {
        return s;
    }
    let mut end = 64;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_id_pattern() {
        for ok in ["acme", "a", "A1._-", "a..b", &"x".repeat(64)] {
            assert!(valid_tenant_id(ok), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "..",
            "../x",
            ".a",
            "-a",
            "_a",
            "a b",
            "é",
            &"x".repeat(65),
        ] {
            assert!(!valid_tenant_id(bad), "{bad}");
        }
    }

    #[test]
    fn bearer_prefix_and_whitespace() {
        let name = HeaderName::from_static("x-tenant-token");
        let get = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(&name, v.parse().unwrap());
            extract(&h, &name).map(str::to_owned)
        };
        assert_eq!(get("abc").unwrap(), "abc");
        assert_eq!(get("Bearer abc").unwrap(), "abc");
        assert_eq!(get("bEaReR   abc ").unwrap(), "abc");
        assert_eq!(get("  abc  ").unwrap(), "abc");
        assert_eq!(get("Bearer"), Err(ProxyError::MissingToken));
        assert_eq!(get("Bearer   "), Err(ProxyError::MissingToken));
        assert_eq!(get(""), Err(ProxyError::MissingToken));
        assert_eq!(
            extract(&HeaderMap::new(), &name),
            Err(ProxyError::MissingToken)
        );
        let mut h = HeaderMap::new();
        h.append(&name, "a".parse().unwrap());
        h.append(&name, "b".parse().unwrap());
        assert!(matches!(
            extract(&h, &name),
            Err(ProxyError::InvalidToken(_))
        ));
    }

    #[test]
    fn numeric_dates() {
        let exp = |v: Value| numeric_date(&v, f64::floor);
        assert_eq!(exp(serde_json::json!(10)), Some(10));
        assert_eq!(exp(serde_json::json!(10.9)), Some(10));
        assert_eq!(numeric_date(&serde_json::json!(10.1), f64::ceil), Some(11));
        assert_eq!(exp(serde_json::json!("10")), None);
        assert_eq!(exp(serde_json::json!(1e300)), Some(i64::MAX));
    }

    #[test]
    fn time_bounds_with_leeway() {
        let b = TimeBounds {
            exp: 100,
            nbf: Some(50),
        };
        assert!(b.check(99, 0).is_ok());
        assert!(b.check(100, 0).is_err());
        assert!(b.check(129, 30).is_ok());
        assert!(b.check(49, 0).is_err());
        assert!(b.check(20, 30).is_ok());
        assert!(b.check(19, 30).is_err());
    }
}
