//! A small, hand-written AWS SigV4 verifier for the simulator. It shares no
//! code with the `aws-sigv4` crate the proxy signs with, so a bug in how the
//! proxy drives that crate (wrong bytes, wrong path encoding, a header changed
//! after signing) shows up as a rejected request, as it would at AWS.
//!
//! It rebuilds the canonical request from what was received: the method, the
//! wire path normalised (dot segments, repeated slashes) and URI-encoded
//! again (AWS double-encodes for every service but S3), the sorted query, the
//! `SignedHeaders`, and SHA-256 of the body actually received.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::secret::SecretString;

type HmacSha256 = Hmac<Sha256>;

/// What a valid signature tells about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub access_key_id: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
}

/// Why a request was rejected; maps to the AWS error a real service returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SigError {
    MissingAuthorization,
    Malformed(&'static str),
    UnknownAccessKey(String),
    Expired,
    Mismatch,
}

impl SigError {
    /// The `x-amzn-ErrorType` AWS uses for this failure.
    pub fn aws_type(&self) -> &'static str {
        match self {
            SigError::MissingAuthorization => "MissingAuthenticationTokenException",
            SigError::UnknownAccessKey(_) => "UnrecognizedClientException",
            SigError::Malformed(_) => "IncompleteSignatureException",
            SigError::Expired | SigError::Mismatch => "InvalidSignatureException",
        }
    }

    pub fn message(&self) -> String {
        match self {
            SigError::MissingAuthorization => "Missing Authentication Token".into(),
            SigError::Malformed(what) => format!("Authorization header is malformed: {what}"),
            SigError::UnknownAccessKey(_) => {
                "The security token included in the request is invalid.".into()
            }
            SigError::Expired => "Signature expired".into(),
            SigError::Mismatch => "The request signature we calculated does not match the \
                                   signature you provided."
                .into(),
        }
    }
}

/// Verifies SigV4 `Authorization` headers against a map of known keys.
#[derive(Debug, Clone, Default)]
pub struct SigV4Verifier {
    secrets: HashMap<String, SecretString>,
    /// Largest accepted distance between `x-amz-date` and now (AWS: 15 min);
    /// `None` disables the check (for fixed test vectors).
    pub max_skew: Option<Duration>,
}

impl SigV4Verifier {
    pub fn new(keys: impl IntoIterator<Item = (String, SecretString)>) -> Self {
        SigV4Verifier {
            secrets: keys.into_iter().collect(),
            max_skew: Some(Duration::from_secs(900)),
        }
    }

    /// Adds (or replaces) a key, e.g. a temporary key the simulated STS
    /// just issued.
    pub fn add_key(&mut self, access_key_id: String, secret: SecretString) {
        self.secrets.insert(access_key_id, secret);
    }

    pub fn knows(&self, access_key_id: &str) -> bool {
        self.secrets.contains_key(access_key_id)
    }

    pub fn verify(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &http::HeaderMap,
        body: &[u8],
        now: SystemTime,
    ) -> Result<Verified, SigError> {
        let auth = headers
            .get(http::header::AUTHORIZATION)
            .ok_or(SigError::MissingAuthorization)?
            .to_str()
            .map_err(|_| SigError::Malformed("not ASCII"))?;
        let parsed = parse_authorization(auth)?;
        let amz_date =
            header_str(headers, "x-amz-date").ok_or(SigError::Malformed("no x-amz-date"))?;
        let scope: Vec<&str> = parsed.credential.split('/').collect();
        let [akid, date, region, service, terminator] = scope[..] else {
            return Err(SigError::Malformed("credential scope"));
        };
        if terminator != "aws4_request" || amz_date.len() != 16 || !amz_date.starts_with(date) {
            return Err(SigError::Malformed(
                "credential scope does not match x-amz-date",
            ));
        }
        let signed: Vec<String> = parsed
            .signed_headers
            .split(';')
            .map(str::to_string)
            .collect();
        if !signed.iter().any(|h| h == "host") || !signed.iter().any(|h| h == "x-amz-date") {
            return Err(SigError::Malformed("host and x-amz-date must be signed"));
        }
        if headers.contains_key("x-amz-security-token")
            && !signed.iter().any(|h| h == "x-amz-security-token")
        {
            return Err(SigError::Malformed("x-amz-security-token must be signed"));
        }
        let secret = self
            .secrets
            .get(akid)
            .ok_or_else(|| SigError::UnknownAccessKey(akid.to_string()))?;
        if let Some(max) = self.max_skew {
            let signed_at = parse_amz_date(amz_date).ok_or(SigError::Malformed("x-amz-date"))?;
            let now = now
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            if now.abs_diff(signed_at) > max.as_secs() {
                return Err(SigError::Expired);
            }
        }

        let creq = canonical_request(method, path_and_query, headers, &signed, body)
            .ok_or(SigError::Mismatch)?;
        let scope_str = format!("{date}/{region}/{service}/aws4_request");
        let sts = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope_str}\n{}",
            hex(&Sha256::digest(creq))
        );
        let mut key = hmac(
            format!("AWS4{}", secret.expose()).as_bytes(),
            date.as_bytes(),
        );
        for part in [region, service, "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let expected = hex(&hmac(&key, sts.as_bytes()));
        if !constant_time_eq(expected.as_bytes(), parsed.signature.as_bytes()) {
            return Err(SigError::Mismatch);
        }
        Ok(Verified {
            access_key_id: akid.to_string(),
            region: region.to_string(),
            service: service.to_string(),
            signed_headers: signed,
        })
    }
}

struct ParsedAuth<'a> {
    credential: &'a str,
    signed_headers: &'a str,
    signature: &'a str,
}

fn parse_authorization(auth: &str) -> Result<ParsedAuth<'_>, SigError> {
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or(SigError::Malformed("algorithm must be AWS4-HMAC-SHA256"))?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or(SigError::Malformed("component"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => signature = Some(v),
            _ => return Err(SigError::Malformed("unknown component")),
        }
    }
    match (credential, signed_headers, signature) {
        (Some(credential), Some(signed_headers), Some(signature)) => Ok(ParsedAuth {
            credential,
            signed_headers,
            signature,
        }),
        _ => Err(SigError::Malformed(
            "missing Credential, SignedHeaders or Signature",
        )),
    }
}

/// The canonical request, or None when a signed header is absent.
pub fn canonical_request(
    method: &str,
    path_and_query: &str,
    headers: &http::HeaderMap,
    signed: &[String],
    body: &[u8],
) -> Option<String> {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut out = String::with_capacity(256 + path.len());
    out.push_str(method);
    out.push('\n');
    out.push_str(&canonical_uri(path));
    out.push('\n');
    out.push_str(&canonical_query(query));
    out.push('\n');
    for name in signed {
        let mut values = headers.get_all(name.as_str()).iter().peekable();
        values.peek()?;
        out.push_str(name);
        out.push(':');
        let mut first = true;
        for v in values {
            if !first {
                out.push(',');
            }
            first = false;
            let v = String::from_utf8_lossy(v.as_bytes());
            out.push_str(&v.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.join(";"));
    out.push('\n');
    out.push_str(&hex(&Sha256::digest(body)));
    Some(out)
}

/// Normalised wire path, each segment URI-encoded again (non-S3 services).
pub fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from("/");
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        uri_encode(seg.as_bytes(), &mut out);
    }
    if !segments.is_empty() && path.ends_with('/') {
        out.push('/');
    }
    out
}

fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let mut ek = String::new();
            let mut ev = String::new();
            uri_encode(
                &percent_encoding::percent_decode_str(k).collect::<Vec<u8>>(),
                &mut ek,
            );
            uri_encode(
                &percent_encoding::percent_decode_str(v).collect::<Vec<u8>>(),
                &mut ev,
            );
            (ek, ev)
        })
        .collect();
    pairs.sort();
    let parts: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("&")
}

/// RFC 3986 encoding as SigV4 defines it: only unreserved characters stay.
fn uri_encode(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn header_str<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `YYYYMMDDTHHMMSSZ` -> seconds since the Unix epoch.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<u64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant), valid for years >= 1970 here.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
#[path = "sigv4_check_tests.rs"]
mod tests;
