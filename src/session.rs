//! Session binding (docs/reference.md §5.2, §5.3): HMAC-SHA256 under the key named by
//! `server.session_key_env`, so every replica with the same key computes the
//! same values, and no tenant or user can present (or guess) a session id
//! that belongs to another.
//!
//! Every MAC is over a domain-separation label and the fields, each preceded
//! by its length as a big-endian u64, so `("ab", "c")` and `("a", "bc")` never
//! collide and a value made for one purpose is never valid for another.
//!
//! RetrieveAndGenerate: Bedrock creates the session id; the client is given
//! `BEDROCK_ID.MAC` (32 lower-case hex digits, 128 bits):
//!
//! ```text
//! Bedrock returns   "sessionId": "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60"
//! client receives   "sessionId": "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60.9b1e0c6f5a7d4e2b8c3f1a0d9e8b7c6a"
//! client sends that back; tenantgate verifies the MAC for (tenant, user) and
//! forwards           "sessionId": "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60"
//! ```
//!
//! The sealed form uses only `[0-9a-zA-Z._:-]` and, for Bedrock's 36-character
//! ids, stays at 69 characters, inside Bedrock's own limits for a session id.
//!
//! InvokeAgent: the client chooses the session id, so the upstream id is
//! derived: `tg-` + 40 hex digits (160 bits) of the MAC over (tenant, user,
//! client id). `memoryId` uses the same construction under another label
//! (`tgm-` prefix). Both are valid Bedrock ids (`[0-9a-zA-Z._:-]`, 43 or 44
//! characters).
//!
//! StartAsyncInvoke: AWS's `clientRequestToken` is an idempotency token for
//! the whole account (the same token returns the job it first started), so
//! the token forwarded is `tga-` + 40 hex digits of the MAC over (tenant,
//! user, client token): one tenant's token never names another's job.
//!
//! AgenticRetrieveStream: the `nextToken` of a `result` event goes to the
//! client sealed like a RetrieveAndGenerate session id (`token.MAC`, its own
//! label), and only a token sealed for the same (tenant, user) is accepted
//! back and forwarded without its suffix.
//!
//! The Sessions API (CreateSession and the operations under
//! `/sessions/{sessionIdentifier}`): Bedrock creates the session id (a
//! UUID); the client is given `UUID.MAC` like a RetrieveAndGenerate session,
//! under its own label, so a RetrieveAndGenerate or SageMaker session id
//! never opens here, nor one of these there.
//!
//! InvokeFlow: Bedrock creates the multi-turn `executionId`; the client is
//! given `BEDROCK_ID.MAC` (as RetrieveAndGenerate sessions, under its own
//! label) and sends it back to continue the conversation.
//!
//! Flow executions (StartFlowExecution and the operations on an execution):
//! the execution id is the `flowExecutionName` sent upstream, at most 36 of
//! `[a-zA-Z0-9-]`, and AWS lists every execution of a flow, whoever started
//! it. So the name carries its own MAC: `NAME-TAG`, NAME being the client's
//! name (1 to 15 of `[a-zA-Z0-9-]`, or a random one), TAG 20 characters
//! (100 bits, lower-case base32) of the MAC over (tenant, user, NAME). The
//! same name is the id in every execution ARN, in the path of
//! Get/Stop/ListFlowExecutionEvents/GetExecutionFlowSnapshot and in
//! ListFlowExecutions' answer, where the tag tells the caller's own
//! executions from everyone else's without any state.

use crate::error::ProxyError;
use crate::secret::Secret;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

const LABEL_RAG: &[u8] = b"tenantgate/v1/retrieve-and-generate-session";
const LABEL_AGENT_SESSION: &[u8] = b"tenantgate/v1/agent-session";
const LABEL_AGENT_MEMORY: &[u8] = b"tenantgate/v1/agent-memory";
const LABEL_SAGEMAKER: &[u8] = b"tenantgate/v1/sagemaker-session";
const LABEL_ASYNC_TOKEN: &[u8] = b"tenantgate/v1/async-invoke-client-request-token";
const LABEL_AGENTIC_TOKEN: &[u8] = b"tenantgate/v1/agentic-retrieve-next-token";
const LABEL_BEDROCK_SESSION: &[u8] = b"tenantgate/v1/bedrock-session";
const LABEL_FLOW_INVOKE: &[u8] = b"tenantgate/v1/invoke-flow-execution";
const LABEL_FLOW_EXECUTION: &[u8] = b"tenantgate/v1/flow-execution-name";

/// Characters of a flow execution name's tag (5 bits each: 100 bits).
const FLOW_TAG_CHARS: usize = 20;
/// Longest client part of a flow execution name: AWS allows 36 characters,
/// the tag and its `-` take 21.
pub const FLOW_NAME_MAX: usize = 36 - FLOW_TAG_CHARS - 1;

/// Bytes of a sealed session id's MAC kept (128 bits): RetrieveAndGenerate
/// and SageMaker sessions.
const SESSION_TAG_BYTES: usize = 16;
/// Bytes of the agent session / memory MAC kept (160 bits).
const AGENT_TAG_BYTES: usize = 20;
/// Keys shorter than this are accepted but warned about.
const MIN_RECOMMENDED_KEY_BYTES: usize = 32;

/// The session MAC key. `Debug` never prints the key.
#[derive(Clone)]
pub struct SessionKeys {
    key: Secret<Vec<u8>>,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKeys([redacted])")
    }
}

impl SessionKeys {
    /// A key given directly (e.g. in tests). Any length is accepted; use at
    /// least 32 random bytes.
    pub fn new(key: &[u8]) -> Self {
        SessionKeys { key: Secret::new(key.to_vec()) }
    }

    /// The key from environment variable `var_name` (its UTF-8 bytes, used as
    /// they are). When the variable is unset or empty, a random key for this
    /// process only, with a warning: sessions then do not survive a restart
    /// and do not move between replicas (they fail closed with
    /// `cross_tenant`, never open for someone else).
    pub fn from_env(var_name: &str) -> Self {
        match std::env::var_os(var_name) {
            Some(v) if !v.is_empty() => {
                let bytes = v.as_encoded_bytes().to_vec();
                if bytes.len() < MIN_RECOMMENDED_KEY_BYTES {
                    tracing::warn!(
                        env = var_name,
                        "session key is shorter than {MIN_RECOMMENDED_KEY_BYTES} bytes; use a long random value"
                    );
                }
                SessionKeys { key: Secret::new(bytes) }
            }
            _ => {
                tracing::warn!(
                    env = var_name,
                    "session key variable is not set: using a random key for this process; \
                     RetrieveAndGenerate, SageMaker and agent sessions will not survive a restart or move \
                     between replicas (set the same value on every replica)"
                );
                Self::random()
            }
        }
    }

    /// A fresh random 32-byte key.
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        // The OS RNG failing leaves no safe key to use; there is nothing to
        // fall back to that would not be guessable.
        getrandom::fill(&mut key).expect("the operating system random number generator failed");
        SessionKeys { key: Secret::new(key.to_vec()) }
    }

    fn mac(&self, label: &[u8], fields: &[&str]) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        let mut m = <HmacSha256 as Mac>::new_from_slice(self.key.expose()).expect("HMAC accepts any key length");
        m.update(&(label.len() as u64).to_be_bytes());
        m.update(label);
        for f in fields {
            m.update(&(f.len() as u64).to_be_bytes());
            m.update(f.as_bytes());
        }
        m
    }

    fn tag_hex(&self, label: &[u8], fields: &[&str], bytes: usize) -> String {
        let out = self.mac(label, fields).finalize().into_bytes();
        hex(&out[..bytes])
    }

    /// The session id given to the client for Bedrock's `bedrock_id`:
    /// `bedrock_id + "." + 32 hex digits`.
    pub fn seal_rag_session(&self, tenant: &str, user: &str, bedrock_id: &str) -> String {
        self.seal(LABEL_RAG, tenant, user, bedrock_id)
    }

    /// Verifies a client-sent RetrieveAndGenerate session id for (tenant,
    /// user) and returns Bedrock's id. A missing, malformed or wrong suffix is
    /// 403 `cross_tenant` (constant-time comparison).
    pub fn open_rag_session(&self, tenant: &str, user: &str, client_id: &str) -> Result<String, ProxyError> {
        self.open(LABEL_RAG, tenant, user, client_id)
            .ok_or_else(|| ProxyError::CrossTenant("sessionId does not belong to this tenant and user".into()))
    }

    /// The SageMaker stateful session id given to the client for the id the
    /// model container issued: `id + "." + 32 hex digits` (its own MAC
    /// label, so a RetrieveAndGenerate session id never opens here).
    pub fn seal_sagemaker_session(&self, tenant: &str, user: &str, container_id: &str) -> String {
        self.seal(LABEL_SAGEMAKER, tenant, user, container_id)
    }

    /// Verifies a client-sent `X-Amzn-SageMaker-Session-Id` for (tenant,
    /// user) and returns the container's id; 403 `cross_tenant` otherwise.
    pub fn open_sagemaker_session(&self, tenant: &str, user: &str, client_id: &str) -> Result<String, ProxyError> {
        self.open(LABEL_SAGEMAKER, tenant, user, client_id).ok_or_else(|| {
            ProxyError::CrossTenant("X-Amzn-SageMaker-Session-Id does not belong to this tenant and user".into())
        })
    }

    fn seal(&self, label: &[u8], tenant: &str, user: &str, id: &str) -> String {
        let tag = self.tag_hex(label, &[tenant, user, id], SESSION_TAG_BYTES);
        format!("{id}.{tag}")
    }

    fn open(&self, label: &[u8], tenant: &str, user: &str, client_id: &str) -> Option<String> {
        let (id, tag) = client_id.rsplit_once('.')?;
        if id.is_empty() || tag.len() != SESSION_TAG_BYTES * 2 {
            return None;
        }
        let tag = unhex(tag)?;
        self.mac(label, &[tenant, user, id]).verify_truncated_left(&tag).ok()?;
        Some(id.to_string())
    }

    /// The upstream InvokeAgent session id for the client's session id:
    /// `tg-` + 40 hex digits.
    pub fn agent_session_id(&self, tenant: &str, user: &str, client_id: &str) -> String {
        format!("tg-{}", self.tag_hex(LABEL_AGENT_SESSION, &[tenant, user, client_id], AGENT_TAG_BYTES))
    }

    /// The upstream InvokeAgent `memoryId` for the client's memory id:
    /// `tgm-` + 40 hex digits.
    pub fn agent_memory_id(&self, tenant: &str, user: &str, client_id: &str) -> String {
        format!("tgm-{}", self.tag_hex(LABEL_AGENT_MEMORY, &[tenant, user, client_id], AGENT_TAG_BYTES))
    }
}

impl SessionKeys {
    /// The session identifier given to the client for a Bedrock session
    /// (Sessions API): `bedrock_id + "." + 32 hex digits`.
    pub fn seal_bedrock_session(&self, tenant: &str, user: &str, bedrock_id: &str) -> String {
        self.seal(LABEL_BEDROCK_SESSION, tenant, user, bedrock_id)
    }

    /// Verifies a client-sent Sessions API session identifier for (tenant,
    /// user) and returns Bedrock's id; a raw id, an ARN, another tenant's or
    /// user's id is 403 `cross_tenant`.
    pub fn open_bedrock_session(&self, tenant: &str, user: &str, client_id: &str) -> Result<String, ProxyError> {
        self.open(LABEL_BEDROCK_SESSION, tenant, user, client_id).ok_or_else(|| {
            ProxyError::CrossTenant("the session identifier does not belong to this tenant and user".into())
        })
    }

    /// The upstream StartAsyncInvoke `clientRequestToken` for the client's
    /// token: `tga-` + 40 hex digits (44 characters, inside AWS's `[!-~]`,
    /// 1-256).
    pub fn async_invoke_token(&self, tenant: &str, user: &str, client_token: &str) -> String {
        format!("tga-{}", self.tag_hex(LABEL_ASYNC_TOKEN, &[tenant, user, client_token], AGENT_TAG_BYTES))
    }

    /// The AgenticRetrieveStream `nextToken` given to the client for
    /// Bedrock's: `token + "." + 32 hex digits`.
    pub fn seal_agentic_token(&self, tenant: &str, user: &str, token: &str) -> String {
        self.seal(LABEL_AGENTIC_TOKEN, tenant, user, token)
    }

    /// Verifies a client-sent AgenticRetrieveStream `nextToken` for (tenant,
    /// user) and returns Bedrock's; 403 `cross_tenant` otherwise.
    pub fn open_agentic_token(&self, tenant: &str, user: &str, client_token: &str) -> Result<String, ProxyError> {
        self.open(LABEL_AGENTIC_TOKEN, tenant, user, client_token)
            .ok_or_else(|| ProxyError::CrossTenant("nextToken does not belong to this tenant and user".into()))
    }
}

impl SessionKeys {
    /// The InvokeFlow `executionId` given to the client for Bedrock's id:
    /// `bedrock_id + "." + 32 hex digits`.
    pub fn seal_flow_invocation(&self, tenant: &str, user: &str, bedrock_id: &str) -> String {
        self.seal(LABEL_FLOW_INVOKE, tenant, user, bedrock_id)
    }

    /// Verifies a client-sent InvokeFlow `executionId` for (tenant, user)
    /// and returns Bedrock's id; 403 `cross_tenant` otherwise.
    pub fn open_flow_invocation(&self, tenant: &str, user: &str, client_id: &str) -> Result<String, ProxyError> {
        self.open(LABEL_FLOW_INVOKE, tenant, user, client_id)
            .ok_or_else(|| ProxyError::CrossTenant("executionId does not belong to this tenant and user".into()))
    }

    /// The `flowExecutionName` sent upstream for a client part `name` (1 to
    /// [`FLOW_NAME_MAX`] of `[a-zA-Z0-9-]`, checked by the caller):
    /// `name-TAG`.
    pub fn flow_execution_name(&self, tenant: &str, user: &str, name: &str) -> String {
        format!("{name}-{}", self.flow_tag(tenant, user, name))
    }

    /// Whether an execution id (a `flowExecutionName` as AWS keeps it) was
    /// made by [`Self::flow_execution_name`] for (tenant, user): constant
    /// time in the tag.
    pub fn is_own_flow_execution(&self, tenant: &str, user: &str, id: &str) -> bool {
        let Some(cut) = id.len().checked_sub(FLOW_TAG_CHARS + 1) else { return false };
        let (name, rest) = id.split_at(cut);
        let Some(tag) = rest.strip_prefix('-') else { return false };
        if name.is_empty() || name.len() > FLOW_NAME_MAX {
            return false;
        }
        let want = self.flow_tag(tenant, user, name);
        want.len() == tag.len() && want.bytes().zip(tag.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    fn flow_tag(&self, tenant: &str, user: &str, name: &str) -> String {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        let mac = self.mac(LABEL_FLOW_EXECUTION, &[tenant, user, name]).finalize().into_bytes();
        // The first 100 bits, 5 at a time.
        let bits = u128::from_be_bytes(mac[..16].try_into().expect("a SHA-256 MAC has 32 bytes"));
        (0..FLOW_TAG_CHARS).map(|i| ALPHABET[((bits >> (123 - 5 * i)) & 31) as usize] as char).collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Lower-case hex only: the sealed form is produced lower-case, and accepting
/// one spelling keeps a session id a single string.
fn unhex(s: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    b.chunks(2).map(|p| Some(digit(p[0])? << 4 | digit(p[1])?)).collect()
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
