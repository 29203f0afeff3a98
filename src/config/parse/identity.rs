//! `[identity]` (docs/reference.md §4.1, §4.2).

use super::is_valid_tenant_id;
use super::reader::{env_name, Ctx, Loc, Tbl};
use super::tenants::Tenants;
use crate::config::{IdentityConfig, IdentityMode, JwtConfig, KeySource};
use jsonwebtoken::Algorithm;
use std::time::Duration;

pub(crate) const DEFAULT_HEADER: &str = "x-tenant-token";

/// Keys of `[identity]` in both modes (`tenant` is then refused in jwt mode).
pub(super) const COMMON_KEYS: &[&str] = &["mode", "header", "tenant"];
pub(super) const JWT_ONLY: &[&str] = &[
    "issuer",
    "audiences",
    "algorithms",
    "jwks_url",
    "jwks_file",
    "pem_file",
    "hs256_secret_env",
    "hs256_secret_file",
    "jwks_refresh_secs",
    "leeway_secs",
    "tenant_claim",
    "user_claim",
    "groups_claim",
];
const KEY_SOURCES: &[&str] = &["jwks_url", "jwks_file", "pem_file", "hs256_secret_env", "hs256_secret_file"];

/// Headers the identity header must not be: stripping them from every
/// request would break the request itself (or its signing).
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "te",
    "trailer",
    "upgrade",
    "accept",
];

pub(crate) struct Identity {
    pub config: IdentityConfig,
    /// `identity.tenant` in static mode, with its location.
    pub static_tenant: Option<Loc<String>>,
}

pub(crate) fn identity(root: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Option<Identity> {
    let Some(v) = root.get("identity") else {
        ctx.err("identity", None, "missing required table [identity] (mode = \"jwt\" with issuer, audiences and a key source, or mode = \"static\" with tenant)");
        return None;
    };
    let known = known_keys();
    let t = Tbl::open(ctx, "identity".into(), v, Some(&known))?;
    let header = header_name(&t, ctx);
    let mode = t.string(ctx, "mode");
    match mode.as_ref().map(|m| m.value.as_str()) {
        None | Some("jwt") => {
            t.forbid(
                ctx,
                &["tenant"],
                "is only valid with mode = \"static\" (in jwt mode the tenant comes from `tenant_claim`)",
            );
            let jwt = jwt(&t, ctx)?;
            Some(Identity {
                config: IdentityConfig { header: header?, mode: IdentityMode::Jwt(jwt) },
                static_tenant: None,
            })
        }
        Some("static") => {
            t.forbid(ctx, JWT_ONLY, "is not allowed with mode = \"static\" (only mode, header and tenant)");
            let tenant = t.text(ctx, "tenant");
            match &tenant {
                Some(id) if !is_valid_tenant_id(&id.value) => {
                    ctx.err_at(
                        id,
                        format!("{:?} is not a valid tenant id (^[A-Za-z0-9][A-Za-z0-9._-]{{0,63}}$)", id.value),
                    );
                }
                None if !t.has("tenant") => t.missing(ctx, "tenant"),
                _ => {}
            }
            let tenant = tenant?;
            let mode = IdentityMode::Static { tenant: tenant.value.clone() };
            Some(Identity { config: IdentityConfig { header: header?, mode }, static_tenant: Some(tenant) })
        }
        Some(other) => {
            if let Some(m) = &mode {
                ctx.err_at(m, format!("unknown mode {other:?} (expected \"jwt\" or \"static\")"));
            }
            None
        }
    }
}

/// Every key `[identity]` accepts (before the per-mode checks).
pub(super) fn known_keys() -> Vec<&'static str> {
    let mut known = COMMON_KEYS.to_vec();
    known.extend_from_slice(JWT_ONLY);
    known
}

fn header_name(t: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Option<http::HeaderName> {
    let Some(h) = t.text(ctx, "header") else {
        return if t.has("header") { None } else { Some(http::HeaderName::from_static(DEFAULT_HEADER)) };
    };
    let lower = h.value.trim().to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-amz") {
        ctx.err_at(&h, format!("{:?} cannot carry the identity token (it is needed by the request itself)", h.value));
        return None;
    }
    match http::HeaderName::from_bytes(lower.as_bytes()) {
        Ok(name) => Some(name),
        Err(_) => {
            ctx.err_at(&h, format!("{:?} is not a valid header name", h.value));
            None
        }
    }
}

fn algorithm(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

fn is_hmac(a: Algorithm) -> bool {
    matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn jwt(t: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Option<JwtConfig> {
    let issuer = t.text(ctx, "issuer");
    if !t.has("issuer") {
        t.missing(ctx, "issuer");
    }
    let audiences = match t.string_list(ctx, "audiences") {
        Some(list) => {
            if list.value.is_empty() {
                ctx.err_at(&list, "must list at least one audience");
            }
            for a in &list.value {
                if a.value.trim().is_empty() {
                    ctx.err_at(a, "must not be empty");
                }
            }
            list.value.into_iter().map(|l| l.value).collect()
        }
        None => {
            if !t.has("audiences") {
                t.missing(ctx, "audiences");
            }
            Vec::new()
        }
    };
    let key_source = key_source(t, ctx);
    let symmetric =
        key_source.as_ref().map(|k| matches!(k, KeySource::Hs256SecretEnv(_) | KeySource::Hs256SecretFile(_)));
    let algorithms = algorithms(t, ctx, symmetric);
    let refresh = t.uint(ctx, "jwks_refresh_secs", 1, 7 * 86_400).map_or(3600, |l| l.value);
    let leeway = t.uint(ctx, "leeway_secs", 0, 300).map_or(30, |l| l.value);
    let claim =
        |t: &Tbl<'_>, ctx: &mut Ctx<'_>, k: &str, d: &str| t.text(ctx, k).map_or_else(|| d.to_string(), |l| l.value);
    let tenant_claim = claim(t, ctx, "tenant_claim", "tenant_id");
    let user_claim = claim(t, ctx, "user_claim", "sub");
    let groups_claim = t.text(ctx, "groups_claim").map(|l| l.value);
    Some(JwtConfig {
        issuer: issuer?.value,
        audiences,
        algorithms,
        key_source: key_source?,
        jwks_refresh: Duration::from_secs(refresh),
        leeway_secs: leeway,
        tenant_claim,
        user_claim,
        groups_claim,
    })
}

fn key_source(t: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Option<KeySource> {
    let present: Vec<&str> = KEY_SOURCES.iter().copied().filter(|k| t.has(k)).collect();
    match present.as_slice() {
        [] => {
            ctx.err(&t.key("jwks_url"), t.span.as_ref(), "missing key source: set exactly one of jwks_url, jwks_file, pem_file, hs256_secret_env, hs256_secret_file");
            None
        }
        [k] => one_key_source(t, ctx, k),
        [_, rest @ ..] => {
            for k in rest {
                let span = t.get(k).map(|v| v.span());
                ctx.err(
                    &t.key(k),
                    span.as_ref(),
                    format!("only one key source is allowed, but {} are set", present.join(", ")),
                );
            }
            None
        }
    }
}

fn one_key_source(t: &Tbl<'_>, ctx: &mut Ctx<'_>, k: &str) -> Option<KeySource> {
    if k == "hs256_secret_env" {
        return env_name(t, ctx, k).map(|l| KeySource::Hs256SecretEnv(l.value));
    }
    let s = t.text(ctx, k)?;
    match k {
        "jwks_url" => {
            let uri = endpoint_or_path(ctx, &s)?;
            let loopback = uri.host().is_some_and(|h| {
                h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) || h == "[::1]"
            });
            if uri.scheme_str() == Some("http") && !loopback {
                ctx.err_at(&s, "jwks_url must use https:// (plain http is accepted only for a loopback host)");
                return None;
            }
            Some(KeySource::JwksUrl(s.value))
        }
        "jwks_file" => {
            let path = ctx.existing_file(&s)?;
            let ok = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                .is_some_and(|v| v.get("keys").is_some_and(|k| k.is_array()));
            if !ok {
                ctx.err_at(
                    &s,
                    format!("{} is not a JWKS document (a JSON object with a \"keys\" array)", path.display()),
                );
                return None;
            }
            Some(KeySource::JwksFile(path))
        }
        "pem_file" => {
            let path = ctx.existing_file(&s)?;
            let ok = std::fs::read_to_string(&path).is_ok_and(|text| text.contains("-----BEGIN "));
            if !ok {
                ctx.err_at(&s, format!("{} is not a PEM file", path.display()));
                return None;
            }
            Some(KeySource::PemFile(path))
        }
        _ => {
            let path = ctx.existing_file(&s)?;
            if std::fs::metadata(&path).map_or(true, |m| m.len() == 0) {
                ctx.err_at(&s, format!("{} is empty", path.display()));
                return None;
            }
            Some(KeySource::Hs256SecretFile(path))
        }
    }
}

/// A JWKS URL may have a path (unlike service endpoints).
fn endpoint_or_path(ctx: &mut Ctx<'_>, s: &Loc<String>) -> Option<http::Uri> {
    let uri: http::Uri = match s.value.parse() {
        Ok(u) => u,
        Err(_) => {
            ctx.err_at(s, format!("{:?} is not a valid URL", s.value));
            return None;
        }
    };
    match (uri.scheme_str(), uri.authority()) {
        (Some("http" | "https"), Some(a)) if !a.host().is_empty() && !a.as_str().contains('@') => Some(uri),
        _ => {
            ctx.err_at(s, format!("{:?} must be an absolute http:// or https:// URL", s.value));
            None
        }
    }
}

fn algorithms(t: &Tbl<'_>, ctx: &mut Ctx<'_>, symmetric: Option<bool>) -> Vec<Algorithm> {
    let Some(list) = t.string_list(ctx, "algorithms") else {
        if t.has("algorithms") {
            return Vec::new();
        }
        // Default: the usual algorithm of the configured kind of key.
        return vec![if symmetric == Some(true) { Algorithm::HS256 } else { Algorithm::RS256 }];
    };
    if list.value.is_empty() {
        ctx.err_at(&list, "must list at least one algorithm");
    }
    let mut out = Vec::new();
    for a in &list.value {
        if a.value.eq_ignore_ascii_case("none") {
            ctx.err_at(a, "\"none\" is never accepted (unsigned tokens)");
            continue;
        }
        let Some(alg) = algorithm(&a.value) else {
            ctx.err_at(
                a,
                format!(
                    "unknown algorithm {:?} (expected RS256/384/512, PS256/384/512, ES256/384, HS256/384/512 or EdDSA)",
                    a.value
                ),
            );
            continue;
        };
        match symmetric {
            Some(true) if !is_hmac(alg) => {
                ctx.err_at(
                    a,
                    format!(
                        "{} needs a public key (jwks_url, jwks_file or pem_file), but the key source is an HMAC secret",
                        a.value
                    ),
                );
            }
            Some(false) if is_hmac(alg) => {
                ctx.err_at(a, format!("{} needs an HMAC secret (hs256_secret_env or hs256_secret_file), but the key source is a public key", a.value));
            }
            _ => {}
        }
        if !out.contains(&alg) {
            out.push(alg);
        }
    }
    out
}

/// In static mode the pod's tenant must be one that can be served.
pub(crate) fn check_static_tenant_listed(identity: &Identity, tenants: &Tenants, ctx: &mut Ctx<'_>) {
    if let Some(id) = &identity.static_tenant {
        let fold = crate::config::fold_tenant_id(&id.value);
        if let Some(listed) = tenants
            .tenants
            .keys()
            .find(|k| *k != &id.value && crate::config::fold_tenant_id(k) == fold)
        {
            ctx.err_at(id, format!("tenant {:?} differs only in case from the listed tenant {listed:?}, so every request would be denied (tenant ids are case-sensitive)", id.value));
        } else if is_valid_tenant_id(&id.value) && !tenants.tenants.contains_key(&id.value) && tenants.unlisted.is_none() {
            ctx.err_at(id, format!("tenant {:?} is not listed in [tenants] and tenant_defaults.allow_unlisted is false, so every request would be denied", id.value));
        }
    }
}
