//! Verification key sets: a JWKS document (file or URL), one public key PEM,
//! or one HMAC secret. Every key knows the exact algorithms it may verify,
//! computed once at load from its type, curve, the JWK `alg` and the
//! configured allowlist: an HMAC key never verifies an RS/ES/PS/EdDSA token
//! and an asymmetric key never verifies an HS token (algorithm confusion).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// RSA moduli below this size are refused.
const MIN_RSA_BITS: usize = 2048;

pub(crate) struct VerifyKey {
    kid: Option<String>,
    /// The algorithms this key may verify (never empty).
    algs: Vec<Algorithm>,
    key: DecodingKey,
}

impl VerifyKey {
    fn fits(&self, alg: Algorithm) -> bool {
        self.algs.contains(&alg)
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key material stays out of logs even though it is public.
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algs", &self.algs)
            .finish_non_exhaustive()
    }
}

/// The outcome of choosing a key for a token.
#[derive(Debug)]
pub(crate) enum Selected<'a> {
    Key(&'a VerifyKey),
    /// The token names a `kid` the set does not hold (a JWKS refresh may help).
    UnknownKid,
    /// No key (with that kid) may verify the token's algorithm.
    NoKeyForAlg,
    /// The token has no `kid` and more than one key fits its algorithm.
    Ambiguous,
}

pub(crate) struct KeySet {
    keys: Vec<VerifyKey>,
    /// A single configured key (pem_file, HS secret): the token's `kid` is irrelevant.
    single: bool,
    /// Identifies the key material, so an unchanged JWKS does not clear the cache.
    pub(crate) fingerprint: [u8; 32],
    /// Bumped whenever the installed key set changes; cached tokens carry it.
    pub(crate) generation: u64,
    /// The JWKS document as fetched (jwks_url only), to seed a successor.
    pub(crate) raw: Option<Bytes>,
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys)
            .field("generation", &self.generation)
            .finish()
    }
}

impl KeySet {
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Chooses the key for a token: by `kid` when the token has one (a
    /// single configured key ignores it); without `kid`, the one key that
    /// fits the algorithm, if exactly one does. A `kid` no key carries falls
    /// back to the one fitting key published without a `kid`, if any.
    pub(crate) fn select(&self, kid: Option<&str>, alg: Algorithm) -> Selected<'_> {
        if self.single {
            return match self.keys.first() {
                Some(k) if k.fits(alg) => Selected::Key(k),
                _ => Selected::NoKeyForAlg,
            };
        }
        let Some(kid) = kid else {
            return only_fitting(self.keys.iter(), alg);
        };
        let mut known = false;
        for k in self.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)) {
            known = true;
            if k.fits(alg) {
                return Selected::Key(k);
            }
        }
        if known {
            return Selected::NoKeyForAlg;
        }
        match only_fitting(self.keys.iter().filter(|k| k.kid.is_none()), alg) {
            Selected::Key(k) => Selected::Key(k),
            _ => Selected::UnknownKid,
        }
    }

    /// Parses a JWKS document. Keys that are unusable (unsupported type or
    /// curve, `use` other than `sig`, weak RSA, no algorithm left after the
    /// allowlist) are skipped and described in the returned notes; a document
    /// with no usable key is an error. `oct` (symmetric) keys are accepted
    /// only when `allow_symmetric` (a local file, never a URL: a published
    /// symmetric key would let anyone sign tokens).
    pub(crate) fn from_jwks_json(
        doc: &[u8],
        allowed: &[Algorithm],
        allow_symmetric: bool,
    ) -> Result<(KeySet, Vec<String>), String> {
        let doc: Value =
            serde_json::from_slice(doc).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
        let entries = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("JWKS has no \"keys\" list")?;
        let mut keys = Vec::new();
        let mut notes = Vec::new();
        let mut hasher = Sha256::new();
        for (i, jwk) in entries.iter().enumerate() {
            match key_from_jwk(jwk, allowed, allow_symmetric) {
                Ok(k) => {
                    hasher.update(serde_json::to_vec(jwk).unwrap_or_default());
                    hasher.update([0u8]);
                    keys.push(k);
                }
                Err(why) => {
                    let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
                    notes.push(format!("key #{i} (kid {kid:?}) skipped: {why}"));
                }
            }
        }
        if keys.is_empty() {
            let mut msg = format!(
                "JWKS has no usable key for algorithms {allowed:?} ({} listed)",
                entries.len()
            );
            for n in &notes {
                msg.push_str("; ");
                msg.push_str(n);
            }
            return Err(msg);
        }
        let set = KeySet {
            keys,
            single: false,
            fingerprint: hasher.finalize().into(),
            generation: 0,
            raw: None,
        };
        Ok((set, notes))
    }

    /// One public key in PEM form: RSA (`PUBLIC KEY` or `RSA PUBLIC KEY`),
    /// EC P-256/P-384 or Ed25519 (`PUBLIC KEY`), detected from the content.
    pub(crate) fn from_pem(pem: &[u8], allowed: &[Algorithm]) -> Result<KeySet, String> {
        let text = std::str::from_utf8(pem).map_err(|_| "not a PEM text file".to_string())?;
        if text.contains("PRIVATE KEY-----") {
            return Err("holds a private key; configure the public key instead".into());
        }
        if text.contains("BEGIN CERTIFICATE") {
            return Err("holds a certificate; extract its public key \
                        (openssl x509 -pubkey -noout)"
                .into());
        }
        let (key, algs) = if let Ok(k) = DecodingKey::from_rsa_pem(pem) {
            let der = k.try_get_as_bytes().map_err(|e| format!("RSA key: {e}"))?;
            let (n, e) = (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
                .key_utils
                .rsa_pub_components_from_public_key)(der)
            .map_err(|e| format!("RSA key: {e}"))?;
            check_rsa_modulus(&n)?;
            (
                DecodingKey::from_rsa_raw_components(&n, &e),
                AlgorithmFamily::Rsa.algorithms().to_vec(),
            )
        } else if let Ok(k) = DecodingKey::from_ec_pem(pem) {
            let alg = match k.try_get_as_bytes().map(<[u8]>::len) {
                Ok(65) => Algorithm::ES256,
                Ok(97) => Algorithm::ES384,
                _ => return Err("EC key is not on curve P-256 or P-384".into()),
            };
            probe(&k, alg)?;
            (k, vec![alg])
        } else if let Ok(k) = DecodingKey::from_ed_pem(pem) {
            check_ed25519(&k)?;
            (k, vec![Algorithm::EdDSA])
        } else {
            return Err("no RSA, EC (P-256/P-384) or Ed25519 public key found".into());
        };
        Self::single(key, algs, allowed)
    }

    /// An HMAC secret: verifies HS256/HS384/HS512 tokens only.
    pub(crate) fn from_hmac_secret(secret: &[u8], allowed: &[Algorithm]) -> Result<KeySet, String> {
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        let algs = AlgorithmFamily::Hmac.algorithms().to_vec();
        Self::single(DecodingKey::from_secret(secret), algs, allowed)
    }

    fn single(
        key: DecodingKey,
        algs: Vec<Algorithm>,
        allowed: &[Algorithm],
    ) -> Result<KeySet, String> {
        let usable: Vec<Algorithm> = algs
            .iter()
            .copied()
            .filter(|a| allowed.contains(a))
            .collect();
        if usable.is_empty() {
            return Err(format!(
                "the key verifies {algs:?} but identity.algorithms allows only {allowed:?}"
            ));
        }
        Ok(KeySet {
            keys: vec![VerifyKey {
                kid: None,
                algs: usable,
                key,
            }],
            single: true,
            fingerprint: [0; 32],
            generation: 0,
            raw: None,
        })
    }
}

fn only_fitting<'a>(keys: impl Iterator<Item = &'a VerifyKey>, alg: Algorithm) -> Selected<'a> {
    let mut fitting = keys.filter(|k| k.fits(alg));
    match (fitting.next(), fitting.next()) {
        (Some(k), None) => Selected::Key(k),
        (None, _) => Selected::NoKeyForAlg,
        (Some(_), Some(_)) => Selected::Ambiguous,
    }
}

fn key_from_jwk(
    jwk: &Value,
    allowed: &[Algorithm],
    allow_symmetric: bool,
) -> Result<VerifyKey, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let required = |name: &str| field(name).ok_or_else(|| format!("no \"{name}\""));
    if let Some(u) = jwk.get("use") {
        if u.as_str() != Some("sig") {
            return Err(format!("use is {u}, not \"sig\""));
        }
    }
    if let Some(ops) = jwk.get("key_ops") {
        let verify = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !verify {
            return Err("key_ops lacks \"verify\"".into());
        }
    }
    let kty = required("kty")?;
    let (key, family_algs): (DecodingKey, Vec<Algorithm>) = match kty {
        "RSA" => {
            let n = b64(required("n")?, "n")?;
            let e = b64(required("e")?, "e")?;
            check_rsa_modulus(&n)?;
            if e.is_empty() || e.iter().all(|b| *b == 0) {
                return Err("invalid RSA exponent".into());
            }
            (
                DecodingKey::from_rsa_raw_components(&n, &e),
                AlgorithmFamily::Rsa.algorithms().to_vec(),
            )
        }
        "EC" => {
            let alg = match required("crv")? {
                "P-256" => Algorithm::ES256,
                "P-384" => Algorithm::ES384,
                other => return Err(format!("unsupported curve {other:?}")),
            };
            let k = DecodingKey::from_ec_components(required("x")?, required("y")?)
                .map_err(|e| format!("invalid EC key: {e}"))?;
            probe(&k, alg)?;
            (k, vec![alg])
        }
        "OKP" => {
            if required("crv")? != "Ed25519" {
                return Err("unsupported OKP curve (only Ed25519)".into());
            }
            let k = DecodingKey::from_ed_components(required("x")?)
                .map_err(|e| format!("invalid Ed25519 key: {e}"))?;
            check_ed25519(&k)?;
            (k, vec![Algorithm::EdDSA])
        }
        "oct" if allow_symmetric => {
            let k = b64(required("k")?, "k")?;
            if k.is_empty() {
                return Err("empty symmetric key".into());
            }
            (
                DecodingKey::from_secret(&k),
                AlgorithmFamily::Hmac.algorithms().to_vec(),
            )
        }
        "oct" => return Err("symmetric (oct) keys are not accepted from a URL".into()),
        other => return Err(format!("unsupported kty {other:?}")),
    };
    let mut algs = family_algs;
    if let Some(a) = jwk.get("alg") {
        let a = a
            .as_str()
            .and_then(|s| Algorithm::from_str(s).ok())
            .filter(|a| algs.contains(a))
            .ok_or_else(|| format!("alg {a} does not fit kty {kty:?}"))?;
        algs = vec![a];
    }
    algs.retain(|a| allowed.contains(a));
    if algs.is_empty() {
        return Err("none of its algorithms is in identity.algorithms".into());
    }
    Ok(VerifyKey {
        kid: field("kid").map(str::to_owned),
        algs,
        key,
    })
}

fn b64(s: &str, name: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|_| format!("\"{name}\" is not base64url"))
}

fn check_rsa_modulus(n: &[u8]) -> Result<(), String> {
    let n = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => return Err("invalid RSA modulus".into()),
    };
    let bits = n.len() * 8 - n[0].leading_zeros() as usize;
    if bits < MIN_RSA_BITS {
        return Err(format!(
            "RSA modulus has {bits} bits, fewer than {MIN_RSA_BITS}"
        ));
    }
    Ok(())
}

/// An Ed25519 public key is exactly 32 bytes (the verifier slices `[..32]`
/// without checking, so a shorter key must never reach it).
fn check_ed25519(key: &DecodingKey) -> Result<(), String> {
    match key.try_get_as_bytes() {
        Ok(b) if b.len() == 32 => probe(key, Algorithm::EdDSA),
        _ => Err("the Ed25519 public key is not 32 bytes".into()),
    }
}

/// Checks that an EC or Ed25519 public key parses, by verifying a dummy
/// signature: a malformed key is an error, a well-formed one just rejects it.
fn probe(key: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    jsonwebtoken::crypto::verify("AA", b"probe", key, alg)
        .map(drop)
        .map_err(|_| format!("the {alg:?} public key is malformed"))
}
