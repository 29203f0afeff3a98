//! Keys and tokens of a run, made before anything is measured: the RS256
//! key pair (openssl) and every JWT the phases send.

use super::procs::TempDir;
use super::tenants;
use super::USERS;
use std::path::Path;
use std::process::Command;

/// Keys and tokens, made before anything is measured.
pub struct Prepared {
    pub dir: TempDir,
    pub public_pem: String,
    /// Tenant acme, users 0..USERS (group `eng`).
    pub tokens: Vec<String>,
    /// Tenant acme, a user in no group (the policies phase refuses it).
    pub outsider: String,
    /// One per memory-phase tenant (`tenants::tenant_id(i)`, user-0).
    pub tenant_tokens: Vec<String>,
    pub mint_secs: f64,
}

/// The RS256 key pair, and every token the run needs, minted on all cores
/// (RSA signing in pure Rust is ~1.4 ms a token) before this process pins
/// itself to one.
pub fn prepare(n_tenants: usize, total_cores: usize) -> Result<Prepared, String> {
    let dir = TempDir::new("run")?;
    let (private_pem, public_pem) = rsa_keys(&dir.0)?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let tokens: Vec<String> = (0..USERS)
        .map(|u| mint(&key, "acme", &format!("user-{u}"), &["eng"]))
        .collect::<Result<_, _>>()?;
    let outsider = mint(&key, "acme", "outsider", &[])?;
    if n_tenants > 0 {
        eprintln!(
            "bench: minting {} RS256 tokens for the memory phase (one tenant each)",
            n_tenants
        );
    }
    let t0 = std::time::Instant::now();
    let threads = total_cores.clamp(1, 16);
    let chunk = n_tenants.div_ceil(threads).max(1);
    let parts: Vec<Result<Vec<String>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..n_tenants)
            .step_by(chunk)
            .map(|start| {
                let key = &key;
                scope.spawn(move || {
                    (start..(start + chunk).min(n_tenants))
                        .map(|i| mint(key, &tenants::tenant_id(i), "user-0", &["eng"]))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("minting thread panicked".into()))
            })
            .collect()
    });
    let mut tenant_tokens = Vec::with_capacity(n_tenants);
    for p in parts {
        tenant_tokens.extend(p?);
    }
    Ok(Prepared {
        dir,
        public_pem,
        tokens,
        outsider,
        tenant_tokens,
        mint_secs: t0.elapsed().as_secs_f64(),
    })
}

/// RS256 key pair from openssl: (private PEM, public PEM).
fn rsa_keys(dir: &Path) -> Result<(String, String), String> {
    let key = dir.join("jwt-private.pem");
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let k = key.display().to_string();
    let p = dir.join("jwt-public-src.pem").display().to_string();
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &k,
    ])?;
    run(&["pkey", "-in", &k, "-pubout", "-out", &p])?;
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| e.to_string());
    Ok((read(&k)?, read(&p)?))
}

/// An RS256 token of `user` in `tenant` and `groups`, valid for an hour.
fn mint(key: &jsonwebtoken::EncodingKey, tenant: &str, user: &str, groups: &[&str]) -> Result<String, String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = serde_json::json!({
        "iss": "https://idp.bench.example/", "aud": "bench-app", "sub": user,
        "tenant_id": tenant, "groups": groups, "iat": now, "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        key,
    )
    .map_err(|e| e.to_string())
}
