//! STS of the simulator: `AssumeRole` in the Query protocol (a form body
//! `Action=AssumeRole&Version=2011-06-15&RoleArn=...` POSTed to `/`, an XML
//! answer), like `sts.amazonaws.com`. Each call issues a unique temporary key
//! (`ASIA...`, a secret and a session token) that the simulator accepts on
//! service calls afterwards, and remembers the session's role, name and
//! session tags, so a caller can tell which tenant's session signed what.
//!
//! Signature checks happen in `sim.rs` (service `sts`, the base keys only);
//! this module parses, validates and answers. [`StsOptions`] adapts it to a
//! load test: realistic session-token sizes, base keys that may call STS
//! and nothing else, and STS calls verified while service calls are not.

use super::sim_bedrock::Answer;
use crate::secret::SecretString;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const XMLNS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// Issued session tokens start like real ones (a serialised, base64 blob).
const TOKEN_PREFIX: &str = "IQoJb3JpZ2luX2VjE";
/// Length of an issued session token unless [`StsOptions::token_len`] says
/// otherwise: the prefix and 180 random characters.
pub const DEFAULT_TOKEN_LEN: usize = TOKEN_PREFIX.len() + 180;

/// How the simulator's STS behaves beyond the defaults (which the demo uses).
#[derive(Debug, Clone)]
pub struct StsOptions {
    /// Keys that may call STS and nothing else, like a base identity whose
    /// only permission is `sts:AssumeRole`: a service call signed with one
    /// is refused (403 `AccessDeniedException`), so a caller that signs with
    /// its base key instead of the session's is caught.
    pub assume_role_only: Vec<(String, SecretString)>,
    /// Length of issued session tokens (at least the 17-character prefix
    /// plus one). Real AssumeRole tokens with a session tag are roughly
    /// 800-1,100 characters, which matters to a memory measurement.
    pub token_len: usize,
    /// Verify STS calls even while verification is switched off for
    /// service calls (`Sim::set_verify(false)`).
    pub always_verify: bool,
}

impl Default for StsOptions {
    fn default() -> Self {
        StsOptions {
            assume_role_only: Vec::new(),
            token_len: DEFAULT_TOKEN_LEN,
            always_verify: false,
        }
    }
}

/// One issued session, without its secret and token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StsSession {
    pub access_key_id: String,
    pub role_arn: String,
    pub session_name: String,
    /// Session tags in request order (`TenantID` for tenantgate).
    pub tags: Vec<(String, String)>,
    pub source_identity: Option<String>,
    pub expiration: SystemTime,
    /// The (base) key that called AssumeRole.
    pub caller: String,
}

impl StsSession {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `arn:aws:iam::1:role/path/name` -> `name`.
    pub fn role_name(&self) -> &str {
        self.role_arn.rsplit('/').next().unwrap_or(&self.role_arn)
    }
}

struct Issued {
    session: StsSession,
    token: SecretString,
}

/// Issued sessions in issue order, indexed by access key id.
#[derive(Default)]
struct Book {
    list: Vec<Issued>,
    by_key: HashMap<String, usize>,
}

impl Book {
    fn find(&self, access_key_id: &str) -> Option<&Issued> {
        self.by_key.get(access_key_id).map(|&i| &self.list[i])
    }
}

/// The sessions issued so far, and the STS's settings.
pub struct Sessions {
    issued: Mutex<Book>,
    counter: AtomicU64,
    token_len: usize,
    assume_role_only: HashSet<String>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(&StsOptions::default())
    }
}

/// Why a service call's temporary credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Wrong or missing session token.
    Invalid,
    Expired,
}

impl TokenError {
    pub fn aws_type(self) -> &'static str {
        match self {
            TokenError::Invalid => "UnrecognizedClientException",
            TokenError::Expired => "ExpiredTokenException",
        }
    }

    pub fn message(self) -> &'static str {
        match self {
            TokenError::Invalid => "The security token included in the request is invalid.",
            TokenError::Expired => "The security token included in the request is expired",
        }
    }
}

impl Sessions {
    pub fn new(opts: &StsOptions) -> Self {
        Sessions {
            issued: Mutex::default(),
            counter: AtomicU64::new(0),
            token_len: opts.token_len.max(TOKEN_PREFIX.len() + 1),
            assume_role_only: opts
                .assume_role_only
                .iter()
                .map(|(akid, _)| akid.clone())
                .collect(),
        }
    }

    pub fn get(&self, access_key_id: &str) -> Option<StsSession> {
        let issued = self.issued.lock().ok()?;
        issued.find(access_key_id).map(|i| i.session.clone())
    }

    pub fn all(&self) -> Vec<StsSession> {
        self.issued
            .lock()
            .map(|b| b.list.iter().map(|i| i.session.clone()).collect())
            .unwrap_or_default()
    }

    /// A key that may call STS only ([`StsOptions::assume_role_only`]).
    pub fn is_assume_role_only(&self, access_key_id: &str) -> bool {
        self.assume_role_only.contains(access_key_id)
    }

    pub fn is_temporary(&self, access_key_id: &str) -> bool {
        self.get(access_key_id).is_some()
    }

    /// A request signed with `access_key_id` carried `token` (the
    /// `x-amz-security-token` header): a key this STS issued needs its own
    /// unexpired token. Keys the simulator was configured with are not
    /// checked here: they may be temporary keys of another STS, whose
    /// tokens the simulator cannot know.
    pub fn check_token(
        &self,
        access_key_id: &str,
        token: Option<&str>,
        now: SystemTime,
    ) -> Result<(), TokenError> {
        let Ok(issued) = self.issued.lock() else {
            return Err(TokenError::Invalid);
        };
        match issued.find(access_key_id) {
            None => Ok(()),
            Some(i) if token != Some(i.token.expose().as_str()) => Err(TokenError::Invalid),
            Some(i) if now >= i.session.expiration => Err(TokenError::Expired),
            Some(_) => Ok(()),
        }
    }

    /// Secrets and tokens handed out, so tests can check none is printed.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.issued
            .lock()
            .map(|b| b.list.iter().map(|i| i.token.expose().clone()).collect())
            .unwrap_or_default()
    }
}

/// `POST /` with a form body naming an `Action`: an STS Query request.
pub fn is_sts_request(method: &http::Method, path: &str, headers: &http::HeaderMap) -> bool {
    method == http::Method::POST
        && path == "/"
        && headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// `a=1&b=x%2Fy+z` -> pairs, `+` as space (HTML form encoding).
pub fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let dec = |s: &str| {
        let s = s.replace('+', " ");
        percent_encoding::percent_decode_str(&s)
            .decode_utf8_lossy()
            .into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (dec(k), dec(v))
        })
        .collect()
}

/// An STS (Query protocol) error: XML body, `Sender` fault.
pub fn error(status: u16, code: &str, message: &str, request_id: &str) -> Answer {
    let body = format!(
        "<ErrorResponse xmlns=\"{XMLNS}\">\n  <Error>\n    <Type>Sender</Type>\n    \
         <Code>{}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n\
         </ErrorResponse>\n",
        xml_escape(code),
        xml_escape(message),
        xml_escape(request_id)
    );
    xml(status, body)
}

/// `CODE: message` of an STS error answer, for a log or a report.
pub fn error_summary(answer: &Answer) -> String {
    let body: Vec<u8> = answer.frames.concat();
    let body = String::from_utf8_lossy(&body);
    let inner = |tag: &str| {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let start = body.find(&open)? + open.len();
        let len = body[start..].find(&close)?;
        Some(body[start..start + len].to_string())
    };
    format!(
        "{} {}: {}",
        answer.status,
        inner("Code").unwrap_or_default(),
        inner("Message").unwrap_or_default()
    )
}

fn xml(status: u16, body: String) -> Answer {
    Answer {
        status,
        headers: vec![("content-type", "text/xml".into())],
        frames: vec![bytes::Bytes::from(body)],
        streaming: false,
    }
}

/// The credentials an answer handed out, for the simulator to accept.
pub struct NewKey {
    pub access_key_id: String,
    pub secret: SecretString,
}

/// Answers one STS request signed by the base key `caller`.
pub fn answer(
    sessions: &Sessions,
    form: &[(String, String)],
    caller: &str,
    now: SystemTime,
    request_id: &str,
) -> (Answer, Option<NewKey>) {
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let invalid = |m: &str| (error(400, "ValidationError", m, request_id), None);
    match get("Action") {
        Some("AssumeRole") => {}
        Some(other) => {
            let msg = format!("Could not find operation {other} for version 2011-06-15");
            return (error(400, "InvalidAction", &msg, request_id), None);
        }
        None => {
            return (
                error(400, "MissingAction", "Missing Action", request_id),
                None,
            )
        }
    }
    if get("Version") != Some("2011-06-15") {
        return invalid("Version must be 2011-06-15");
    }
    let Some(role_arn) = get("RoleArn").filter(|r| valid_role_arn(r)) else {
        return invalid("1 validation error detected: Value at 'roleArn' failed to satisfy constraint: not a role ARN");
    };
    let Some(session_name) = get("RoleSessionName").filter(|n| valid_session_name(n)) else {
        return invalid("1 validation error detected: Value at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]{2,64}");
    };
    let duration = match get("DurationSeconds").map(str::parse::<u64>) {
        None => 3600,
        Some(Ok(d)) if (900..=43_200).contains(&d) => d,
        Some(_) => return invalid("DurationSeconds must be between 900 and 43200"),
    };
    let tags = match session_tags(form) {
        Ok(t) => t,
        Err(m) => return invalid(&m),
    };
    let source_identity = get("SourceIdentity").map(String::from);

    let n = sessions.counter.fetch_add(1, Ordering::Relaxed) + 1;
    let access_key_id = format!("ASIA{:04}{}", n % 10_000, random_upper(12));
    let secret = SecretString::new(random_b64(40));
    let token = SecretString::new(format!(
        "{TOKEN_PREFIX}{}",
        random_b64(sessions.token_len - TOKEN_PREFIX.len())
    ));
    let expiration = now + Duration::from_secs(duration);
    let session = StsSession {
        access_key_id: access_key_id.clone(),
        role_arn: role_arn.to_string(),
        session_name: session_name.to_string(),
        tags,
        source_identity,
        expiration,
        caller: caller.to_string(),
    };
    let body = assume_role_xml(&session, &secret, &token, request_id);
    if let Ok(mut issued) = sessions.issued.lock() {
        let i = issued.list.len();
        issued.by_key.insert(access_key_id.clone(), i);
        issued.list.push(Issued { session, token });
    }
    (
        xml(200, body),
        Some(NewKey {
            access_key_id,
            secret,
        }),
    )
}

fn assume_role_xml(
    s: &StsSession,
    secret: &SecretString,
    token: &SecretString,
    request_id: &str,
) -> String {
    let account = s.role_arn.split(':').nth(4).unwrap_or("000000000000");
    let role_path = s.role_arn.split_once(":role/").map_or("", |(_, r)| r);
    let role_id: String = hex_upper(&Sha256::digest(s.role_arn.as_bytes()))
        .chars()
        .take(17)
        .collect();
    let expiration = humantime::format_rfc3339_seconds(s.expiration).to_string();
    let mut extra = String::new();
    if !s.tags.is_empty() {
        // Share of the packed size limit the policies and tags used.
        extra.push_str(&format!(
            "    <PackedPolicySize>{}</PackedPolicySize>\n",
            (s.tags.len() * 2).min(100)
        ));
    }
    if let Some(si) = &s.source_identity {
        extra.push_str(&format!(
            "    <SourceIdentity>{}</SourceIdentity>\n",
            xml_escape(si)
        ));
    }
    format!(
        "<AssumeRoleResponse xmlns=\"{XMLNS}\">\n  <AssumeRoleResult>\n{extra}    <Credentials>\n      \
         <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      \
         <SessionToken>{}</SessionToken>\n      <Expiration>{expiration}</Expiration>\n    \
         </Credentials>\n    <AssumedRoleUser>\n      \
         <Arn>arn:aws:sts::{}:assumed-role/{}/{}</Arn>\n      \
         <AssumedRoleId>AROA{role_id}:{}</AssumedRoleId>\n    </AssumedRoleUser>\n  \
         </AssumeRoleResult>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  \
         </ResponseMetadata>\n</AssumeRoleResponse>\n",
        xml_escape(&s.access_key_id),
        xml_escape(secret.expose()),
        xml_escape(token.expose()),
        xml_escape(account),
        xml_escape(role_path.rsplit('/').next().unwrap_or(role_path)),
        xml_escape(&s.session_name),
        xml_escape(&s.session_name),
        xml_escape(request_id),
    )
}

/// `Tags.member.N.Key` / `.Value`, in N order.
fn session_tags(form: &[(String, String)]) -> Result<Vec<(String, String)>, String> {
    let mut tags: Vec<(u32, Option<String>, Option<String>)> = Vec::new();
    for (k, v) in form {
        let Some(rest) = k.strip_prefix("Tags.member.") else {
            continue;
        };
        let (n, field) = rest.split_once('.').ok_or("malformed tag parameter")?;
        let n: u32 = n.parse().map_err(|_| "malformed tag index")?;
        let i = match tags.iter().position(|t| t.0 == n) {
            Some(i) => i,
            None => {
                tags.push((n, None, None));
                tags.len() - 1
            }
        };
        match field {
            "Key" => tags[i].1 = Some(v.clone()),
            "Value" => tags[i].2 = Some(v.clone()),
            _ => return Err(format!("unknown tag field {field}")),
        }
    }
    tags.sort_by_key(|t| t.0);
    if tags.len() > 50 {
        return Err("at most 50 session tags".into());
    }
    tags.into_iter()
        .map(|(_, k, v)| match (k, v) {
            (Some(k), Some(v))
                if (1..=128).contains(&k.chars().count())
                    && v.chars().count() <= 256
                    && !k.to_ascii_lowercase().starts_with("aws:") =>
            {
                Ok((k, v))
            }
            _ => Err("invalid session tag (Key 1-128, Value 0-256 characters)".to_string()),
        })
        .collect()
}

fn valid_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts[..], ["arn", "aws", "iam", "", account, res]
        if account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())
            && res.strip_prefix("role/").is_some_and(|n| !n.is_empty()))
}

fn valid_session_name(n: &str) -> bool {
    (2..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    if getrandom::fill(&mut b).is_err() {
        // No OS randomness: the simulator is local only; mix in the clock.
        let mut h = Sha256::new();
        h.update(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
                .to_le_bytes(),
        );
        let mut out = Vec::new();
        while out.len() < n {
            let d = h.clone().finalize();
            out.extend_from_slice(&d);
            h.update(d);
        }
        out.truncate(n);
        b = out;
    }
    b
}

fn random_upper(n: usize) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    random_bytes(n)
        .iter()
        .map(|b| ALPHABET[usize::from(b % 32)] as char)
        .collect()
}

fn random_b64(n: usize) -> String {
    use base64::Engine as _;
    let mut s = base64::engine::general_purpose::STANDARD.encode(random_bytes(n));
    s.truncate(n);
    s
}

fn hex_upper(b: &[u8]) -> String {
    super::sigv4_check::hex(b).to_ascii_uppercase()
}

#[cfg(test)]
#[path = "sim_sts_tests.rs"]
mod tests;
