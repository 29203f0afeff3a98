//! The Sessions API of bedrock-agent-runtime (docs/reference.md §5.3,
//! docs/agents.md "Sessions"): CreateSession (`PUT /sessions/`),
//! ListSessions (`POST /sessions/`), GetSession,
//! UpdateSession, EndSession, DeleteSession, CreateInvocation,
//! ListInvocations, PutInvocationStep, GetInvocationStep and
//! ListInvocationSteps (under `/sessions/{sessionIdentifier}`).
//!
//! AWS keeps sessions per account: any caller holding a session id (or its
//! ARN) could read, change or delete it. What is enforced:
//! - a tenant without `sessions.kms_key_arn` gets 403
//!   `operation_not_allowed` for every one of these operations;
//! - the session identifier the client sees is Bedrock's id sealed to
//!   (tenant, user) (`SessionKeys::seal_bedrock_session`: `UUID.MAC`); a
//!   path identifier that does not open for the caller (another tenant's or
//!   user's, a raw id, an ARN) is 403 `cross_tenant` before anything is
//!   read or sent, and Bedrock's id goes upstream in its place;
//! - CreateSession: `encryptionKeyArn` is always the tenant's rendered
//!   `sessions.kms_key_arn` (the client's is replaced), `sessions.tags`
//!   are added (replacing client tags with the same key in any case);
//!   CreateSession and UpdateSession: `sessionMetadata` keys beginning
//!   `tenantgate.` (in any case) are the sidecar's: the client's are
//!   removed, and `tenantgate.tenant` and `tenantgate.user` are set to the
//!   caller's (UpdateSession replaces the map, so they are set again);
//! - invocation ids and invocation step ids (`invocationId`,
//!   `invocationIdentifier`, `invocationStepId`) name things inside the
//!   session already checked: they must be Bedrock UUIDs (400 otherwise);
//! - PutInvocationStep: an image read from S3 (`source.s3Location`) is 403
//!   `location_not_allowed` (Bedrock would read it with the tenant's
//!   credentials from any bucket they reach);
//! - answers are judged whole (`Post::Session`, [`filter_answer`]): every
//!   `sessionId` is given back sealed, `sessionArn` is removed (it holds the
//!   raw id); an answer about another session than the one asked, or a
//!   GetSession answer whose `tenantgate.tenant`/`tenantgate.user` metadata
//!   is not the caller's, is 403 `cross_tenant` and nothing of it is shown;
//!   list entries of another session (or, with `invocationIdentifier`,
//!   another invocation) are dropped and counted in
//!   `x-tenantgate-dropped-results`; `nextToken` passes unchanged, so a
//!   page may be shorter than `maxResults`.
//!
//! CreateSession, before and after (tenant acme, user alice,
//! `kms_key_arn = "arn:aws:kms:us-east-1:111122223333:key/{tenant}-sessions"`
//! rendered, `tags = { TenantID = "{tenant}" }`):
//!
//! ```text
//! {"encryptionKeyArn":"arn:aws:kms:..:key/OTHER","tags":{"TenantID":"globex","app":"x"},
//!  "sessionMetadata":{"topic":"refunds","tenantgate.tenant":"globex"}}
//! ->
//! {"encryptionKeyArn":"arn:aws:kms:..:key/acme-sessions","tags":{"TenantID":"acme","app":"x"},
//!  "sessionMetadata":{"topic":"refunds","tenantgate.tenant":"acme","tenantgate.user":"alice"}}
//! Bedrock answers {"sessionId":"3f1c2a9e-..","sessionArn":"arn:..:session/3f1c2a9e-..",..}
//! the client gets {"sessionId":"3f1c2a9e-...9b1e0c6f5a7d4e2b8c3f1a0d9e8b7c6a",..}
//! ```
//!
//! ListSessions: the summaries name no owner, so the sidecar asks
//! GetSession (signed as the tenant, `proxy::session_owners`) about every
//! summary of the page and keeps the sessions whose `tenantgate.tenant` and
//! `tenantgate.user` are the caller's, sealed, without `sessionArn`; a
//! session gone in between (404) is dropped, any other failed look-up
//! fails the request (502). `maxResults` is capped at
//! [`LIST_SESSIONS_PAGE`] (the default when absent), so a page costs at
//! most that many look-ups; `nextToken` passes unchanged.

use super::{missing_claim, to_bytes, Ctx, Hooks, Notes, PolicyQuestion, RequestBody};
use crate::aws::credentials::TenantCredentials;
use crate::decide::{self, cedar::PolicyResource};
use crate::error::ProxyError;
use crate::post::Post;
use crate::principal::Principal;
use crate::route::{Operation, Target};
use crate::session::SessionKeys;
use bytes::Bytes;
use http::HeaderMap;
use serde_json::{Map, Value};

/// The Sessions family.
pub struct Sessions;

/// Metadata keys beginning with this (in any case) are the sidecar's.
pub const METADATA_PREFIX: &str = "tenantgate.";
/// The session's tenant, set on CreateSession and UpdateSession.
pub const METADATA_TENANT: &str = "tenantgate.tenant";
/// The session's user, set on CreateSession and UpdateSession.
pub const METADATA_USER: &str = "tenantgate.user";
/// AWS's limit on `sessionMetadata` entries.
const MAX_METADATA: usize = 50;
/// Most sessions a ListSessions page asks for upstream: each one listed
/// costs a GetSession look-up.
pub const LIST_SESSIONS_PAGE: u32 = 20;

impl Hooks for Sessions {
    /// The tenant must have a sessions KMS key; the path's session
    /// identifier must open for the caller; GetInvocationStep's step id must
    /// be a UUID.
    fn authorize(ctx: &Ctx<'_>, target: &Target) -> Result<(), ProxyError> {
        decide::sessions_key(&ctx.request())?;
        match (ctx.op, target) {
            (Operation::CreateSession | Operation::ListSessions, Target::Nothing) => Ok(()),
            (Operation::CreateSession | Operation::ListSessions, _) => Err(super::foreign_target(ctx)),
            (op, Target::Session { session, step }) => {
                open(ctx, session)?;
                match (op, step) {
                    (Operation::GetInvocationStep, Some(s)) => check_uuid(s, "invocationStepId"),
                    (Operation::GetInvocationStep, None) | (_, Some(_)) => Err(super::foreign_target(ctx)),
                    (_, None) => Ok(()),
                }
            }
            _ => Err(super::foreign_target(ctx)),
        }
    }

    /// Bedrock's id goes upstream in place of the sealed one.
    fn before_body(ctx: &Ctx<'_>, target: &mut Target, _headers: &mut HeaderMap, notes: &mut Notes) -> Result<(), ProxyError> {
        if let Target::Session { session, .. } = target {
            let raw = open(ctx, session)?;
            notes.upstream_resource = Some(raw.clone());
            *session = raw;
        }
        Ok(())
    }

    /// ListInvocations, ListInvocationSteps, ListSessions: each parameter at
    /// most once, each value as the model defines it; forwarded as sent,
    /// but ListSessions' `maxResults` capped at [`LIST_SESSIONS_PAGE`].
    fn rewrite_query(ctx: &Ctx<'_>, _target: &mut Target, query: &mut Option<String>) -> Result<(), ProxyError> {
        if ctx.op == Operation::ListSessions {
            *query = Some(cap_list_sessions_query(query.as_deref().unwrap_or_default())?);
            return Ok(());
        }
        match query.as_deref() {
            Some(q) if matches!(ctx.op, Operation::ListInvocations | Operation::ListInvocationSteps) => check_list_query(q),
            // The others define no query parameter (the validator refused
            // any name).
            _ => Ok(()),
        }
    }

    fn rewrite(
        ctx: &Ctx<'_>,
        target: &mut Target,
        _headers: &mut HeaderMap,
        body: RequestBody,
        _creds: &TenantCredentials,
        _notes: &mut Notes,
    ) -> Result<(Bytes, Post), ProxyError> {
        let kms = decide::sessions_key(&ctx.request())?;
        let op = ctx.op;
        let session = match target {
            Target::Session { session, .. } => Some(session.clone()),
            Target::Nothing if matches!(op, Operation::CreateSession | Operation::ListSessions) => None,
            _ => return Err(super::foreign_target(ctx)),
        };
        let judged = |invocation: Option<String>| Post::Session { op, session: session.clone(), invocation };
        match op {
            Operation::CreateSession => {
                let mut v = body.tree()?;
                rewrite_create(ctx, &mut v, kms)?;
                Ok((to_bytes(&v)?, judged(None)))
            }
            Operation::UpdateSession => {
                let mut v = body.tree()?;
                let obj = super::body_object(&mut v)?;
                force_metadata(ctx.principal, obj)?;
                Ok((to_bytes(&v)?, judged(None)))
            }
            Operation::GetSession | Operation::EndSession | Operation::ListInvocations | Operation::ListSessions => {
                Ok((body.bytes, judged(None)))
            }
            Operation::DeleteSession => Ok((body.bytes, Post::Stream)),
            Operation::CreateInvocation => {
                let v = body.tree()?;
                optional_uuid(&v, "invocationId")?;
                Ok((to_bytes(&v)?, judged(None)))
            }
            Operation::PutInvocationStep => {
                let v = body.tree()?;
                required_uuid(&v, "invocationIdentifier")?;
                optional_uuid(&v, "invocationStepId")?;
                check_payload(&v)?;
                Ok((to_bytes(&v)?, Post::Stream))
            }
            Operation::GetInvocationStep => {
                let v = body.tree()?;
                let inv = required_uuid(&v, "invocationIdentifier")?;
                Ok((to_bytes(&v)?, judged(Some(inv))))
            }
            Operation::ListInvocationSteps => {
                let v = body.tree()?;
                let inv = optional_uuid(&v, "invocationIdentifier")?;
                Ok((to_bytes(&v)?, judged(inv)))
            }
            _ => Err(super::foreign_target(ctx)),
        }
    }

    /// The session (Bedrock's id, verified); CreateSession names none.
    fn policy_question<'a>(
        ctx: &Ctx<'_>,
        target: &'a Target,
        _headers: &'a HeaderMap,
        _body: &'a RequestBody,
    ) -> Result<PolicyQuestion<'a>, ProxyError> {
        match target {
            Target::Nothing if matches!(ctx.op, Operation::CreateSession | Operation::ListSessions) => {
                Ok(PolicyQuestion::of(PolicyResource::Session(None)))
            }
            Target::Session { session, .. } => {
                let raw = open(ctx, session)?;
                // The sealed form is `raw.MAC`: its prefix is the id opened.
                let id = session.get(..raw.len()).ok_or_else(|| super::foreign_target(ctx))?;
                Ok(PolicyQuestion::of(PolicyResource::Session(Some(id))))
            }
            _ => Err(super::foreign_target(ctx)),
        }
    }
}

/// Bedrock's id of a sealed session identifier, when it is the caller's;
/// else 403 `cross_tenant`.
fn open(ctx: &Ctx<'_>, sealed: &str) -> Result<String, ProxyError> {
    let raw = ctx.keys.open_bedrock_session(&ctx.principal.tenant, &ctx.principal.user, sealed)?;
    if is_uuid(&raw) {
        Ok(raw)
    } else {
        Err(ProxyError::CrossTenant("the session identifier does not belong to this tenant and user".into()))
    }
}

/// AWS's `Uuid` pattern: `[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}`.
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups.iter().zip([8, 4, 4, 4, 12]).all(|(g, n)| g.len() == n && g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
}

fn check_uuid(s: &str, what: &str) -> Result<(), ProxyError> {
    if is_uuid(s) {
        return Ok(());
    }
    Err(ProxyError::InvalidParameter(format!(
        "{what} {:?} is not a Bedrock id (lower-case UUID)",
        decide::truncate(s, 100)
    )))
}

fn optional_uuid(v: &Value, key: &str) -> Result<Option<String>, ProxyError> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => check_uuid(s, key).map(|()| Some(s.clone())),
        Some(_) => Err(ProxyError::InvalidParameter(format!("{key} must be a string"))),
    }
}

fn required_uuid(v: &Value, key: &str) -> Result<String, ProxyError> {
    optional_uuid(v, key)?.ok_or_else(|| ProxyError::InvalidParameter(format!("{key} is required")))
}

/// CreateSession's body for this tenant (see the module doc).
fn rewrite_create(ctx: &Ctx<'_>, v: &mut Value, kms: String) -> Result<(), ProxyError> {
    // Render everything first: a missing claim leaves nothing half done.
    let mut tags = Vec::with_capacity(ctx.policy.sessions.tags.len());
    for (k, t) in &ctx.policy.sessions.tags {
        tags.push((k.clone(), t.render(ctx.principal).map_err(missing_claim)?));
    }
    let obj = super::body_object(v)?;
    obj.insert("encryptionKeyArn".into(), Value::String(kms));
    if !tags.is_empty() {
        let map = match obj.entry("tags").or_insert_with(|| Value::Object(Map::new())) {
            Value::Object(m) => m,
            _ => return Err(ProxyError::InvalidParameter("tags must be a map".into())),
        };
        // A client tag whose key differs only in case goes too: IAM
        // compares tag keys in conditions without case.
        map.retain(|ck, _| !tags.iter().any(|(k, _)| k.eq_ignore_ascii_case(ck)));
        for (k, val) in tags {
            map.insert(k, Value::String(val));
        }
    }
    force_metadata(ctx.principal, obj)
}

/// `sessionMetadata` with the sidecar's keys: the client's `tenantgate.*`
/// keys (any case) removed, the caller's tenant and user set.
fn force_metadata(who: &Principal, obj: &mut Map<String, Value>) -> Result<(), ProxyError> {
    let map = match obj.entry("sessionMetadata").or_insert_with(|| Value::Object(Map::new())) {
        Value::Object(m) => m,
        _ => return Err(ProxyError::InvalidParameter("sessionMetadata must be a map".into())),
    };
    map.retain(|k, _| !is_reserved_key(k));
    if map.len() + 2 > MAX_METADATA {
        return Err(ProxyError::InvalidParameter(format!(
            "sessionMetadata may hold at most {} entries of the client's (the sidecar sets {METADATA_TENANT} and {METADATA_USER})",
            MAX_METADATA - 2
        )));
    }
    map.insert(METADATA_TENANT.into(), Value::String(who.tenant.clone()));
    map.insert(METADATA_USER.into(), Value::String(who.user.clone()));
    Ok(())
}

fn is_reserved_key(k: &str) -> bool {
    k.get(..METADATA_PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(METADATA_PREFIX))
}

/// PutInvocationStep's payload: no image read from S3.
fn check_payload(v: &Value) -> Result<(), ProxyError> {
    let blocks = v.pointer("/payload/contentBlocks").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    for (i, b) in blocks.iter().enumerate() {
        if b.pointer("/image/source/s3Location").is_some() {
            return Err(ProxyError::LocationNotAllowed(format!(
                "payload.contentBlocks[{i}].image.source.s3Location: images of invocation steps must be sent as bytes"
            )));
        }
    }
    Ok(())
}

/// ListInvocations' and ListInvocationSteps' query parameters (the
/// validator already refused names the model does not define).
fn check_list_query(q: &str) -> Result<(), ProxyError> {
    super::query::for_each_pair(q, |name, value| match super::query::paging_value_ok(name, value) {
        Some(true) => Ok(()),
        _ => Err(super::query::value_not_allowed(name, value, "the AWS model")),
    })
}

/// ListSessions' query: checked as the other lists', `maxResults` at most
/// [`LIST_SESSIONS_PAGE`] (that when absent), `nextToken` as sent.
fn cap_list_sessions_query(q: &str) -> Result<String, ProxyError> {
    check_list_query(q)?;
    let mut out = Vec::new();
    let mut max = LIST_SESSIONS_PAGE;
    for part in q.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = part.split_once('=').unwrap_or((part, ""));
        let decoded = |s: &str| percent_encoding::percent_decode_str(&s.replace('+', " ")).decode_utf8_lossy().into_owned();
        // The name as AWS reads it (`max%52esults` is `maxResults`).
        if decoded(raw_name) == "maxResults" {
            max = decoded(raw_value).parse::<u32>().map_or(max, |n| n.min(LIST_SESSIONS_PAGE));
        } else {
            out.push(part.to_string());
        }
    }
    out.insert(0, format!("maxResults={max}"));
    Ok(out.join("&"))
}

/// The session ids a ListSessions page names (each must be a Bedrock id):
/// the sessions to look up. A page of more than [`LIST_SESSIONS_PAGE`]
/// summaries (more than was asked for) is refused: look-ups stay bounded.
pub fn listed_session_ids(body: &[u8]) -> Result<Vec<String>, ProxyError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| upstream(&format!("is not JSON: {e}")))?;
    let items = match v.get("sessionSummaries") {
        None => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(upstream("has a sessionSummaries that is not a list")),
    };
    if items.len() > LIST_SESSIONS_PAGE as usize {
        return Err(upstream(&format!("lists {} sessions, more than the {LIST_SESSIONS_PAGE} asked for", items.len())));
    }
    let mut ids = Vec::with_capacity(items.len());
    for it in items {
        match it.get("sessionId").and_then(Value::as_str) {
            Some(id) if is_uuid(id) => {
                if !ids.iter().any(|i| i == id) {
                    ids.push(id.to_string());
                }
            }
            _ => return Err(upstream("lists a session without a valid sessionId")),
        }
    }
    Ok(ids)
}

/// Whether a GetSession answer (the look-up of a listed session) is session
/// `id` of this caller.
pub fn answer_is_owned(body: &[u8], id: &str, who: &Principal) -> bool {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else { return false };
    obj.get("sessionId").and_then(Value::as_str) == Some(id) && owned_by(&obj, who)
}

/// A ListSessions page as the caller may see it: the summaries of
/// `owned` sessions, sealed, without `sessionArn`; the others dropped and
/// counted. `nextToken` and the other members pass unchanged.
pub fn filter_session_list(body: &[u8], owned: &[String], who: &Principal, keys: &SessionKeys) -> Result<(Bytes, u64), ProxyError> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| upstream(&format!("is not JSON: {e}")))?;
    let obj = v.as_object_mut().ok_or_else(|| upstream("is not a JSON object"))?;
    let mut dropped = 0u64;
    match obj.get_mut("sessionSummaries") {
        None => {}
        Some(Value::Array(items)) => {
            let before = items.len();
            items.retain(|it| it.get("sessionId").and_then(Value::as_str).is_some_and(|id| owned.iter().any(|o| o == id)));
            dropped = (before - items.len()) as u64;
            for it in items.iter_mut() {
                let Some(m) = it.as_object_mut() else { continue };
                let sealed = m
                    .get("sessionId")
                    .and_then(Value::as_str)
                    .map(|id| keys.seal_bedrock_session(&who.tenant, &who.user, id))
                    .unwrap_or_default();
                give_sealed(m, sealed);
            }
        }
        Some(_) => return Err(upstream("has a sessionSummaries that is not a list")),
    }
    let out = serde_json::to_vec(&v).map_err(|e| upstream(&e.to_string()))?;
    Ok((Bytes::from(out), dropped))
}

/// What a request asked about, for judging its answer: Bedrock's session
/// id and the invocation named in the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked<'a> {
    pub session: Option<&'a str>,
    pub invocation: Option<&'a str>,
}

fn upstream(m: &str) -> ProxyError {
    ProxyError::UpstreamError(format!("Sessions API answer {m}"))
}

fn foreign_answer(what: &str) -> ProxyError {
    ProxyError::CrossTenant(format!("the answer names {what} other than the one asked for"))
}

/// A Sessions API answer as the caller may see it (see the module doc):
/// the body re-serialised from the tree judged, and how many list entries
/// were dropped.
pub fn filter_answer(
    op: Operation,
    asked: Asked<'_>,
    body: &[u8],
    who: &Principal,
    keys: &SessionKeys,
) -> Result<(Bytes, u64), ProxyError> {
    let mut v: Value = serde_json::from_slice(body).map_err(|e| upstream(&format!("is not JSON: {e}")))?;
    let obj = v.as_object_mut().ok_or_else(|| upstream("is not a JSON object"))?;
    let seal = |id: &str| keys.seal_bedrock_session(&who.tenant, &who.user, id);
    let mut dropped = 0u64;
    match op {
        Operation::CreateSession => {
            let id = obj.get("sessionId").and_then(Value::as_str).filter(|s| is_uuid(s)).ok_or_else(|| upstream("has no session id"))?;
            let sealed = seal(id);
            give_sealed(obj, sealed);
        }
        Operation::GetSession | Operation::UpdateSession | Operation::EndSession | Operation::CreateInvocation => {
            let id = asked.session.ok_or_else(|| upstream("has no session asked for"))?;
            same_session(obj, id)?;
            if op == Operation::GetSession && !owned_by(obj, who) {
                return Err(ProxyError::CrossTenant(
                    "the session's tenantgate.tenant and tenantgate.user metadata are not this tenant and user".into(),
                ));
            }
            give_sealed(obj, seal(id));
        }
        Operation::GetInvocationStep => {
            let id = asked.session.ok_or_else(|| upstream("has no session asked for"))?;
            let step = obj.get_mut("invocationStep").and_then(Value::as_object_mut).ok_or_else(|| upstream("has no invocationStep"))?;
            same_session(step, id)?;
            if let Some(inv) = asked.invocation {
                if step.get("invocationId").and_then(Value::as_str) != Some(inv) {
                    return Err(foreign_answer("an invocation"));
                }
            }
            give_sealed(step, seal(id));
        }
        Operation::ListInvocations | Operation::ListInvocationSteps => {
            let id = asked.session.ok_or_else(|| upstream("has no session asked for"))?;
            let key = if op == Operation::ListInvocations { "invocationSummaries" } else { "invocationStepSummaries" };
            let sealed = seal(id);
            match obj.get_mut(key) {
                None => {}
                Some(Value::Array(items)) => {
                    let before = items.len();
                    items.retain(|it| {
                        it.get("sessionId").and_then(Value::as_str) == Some(id)
                            && asked.invocation.is_none_or(|inv| it.get("invocationId").and_then(Value::as_str) == Some(inv))
                    });
                    dropped = (before - items.len()) as u64;
                    for it in items.iter_mut().filter_map(Value::as_object_mut) {
                        give_sealed(it, sealed.clone());
                    }
                }
                Some(_) => return Err(upstream(&format!("has a {key} that is not a list"))),
            }
        }
        // Judged with its owner look-ups (`filter_session_list`); never
        // passed without them.
        Operation::ListSessions => return Err(upstream("of ListSessions was not checked against its owners")),
        _ => return Ok((Bytes::copy_from_slice(body), 0)),
    }
    let out = serde_json::to_vec(&v).map_err(|e| upstream(&e.to_string()))?;
    Ok((Bytes::from(out), dropped))
}

/// The sealed id as `sessionId`; no `sessionArn`, and no member spelling
/// either in another case (which would carry Bedrock's raw id).
fn give_sealed(obj: &mut Map<String, Value>, sealed: String) {
    obj.retain(|k, _| !k.eq_ignore_ascii_case("sessionId") && !k.eq_ignore_ascii_case("sessionArn"));
    obj.insert("sessionId".into(), Value::String(sealed));
}

/// The answer's `sessionId` must be the session asked about.
fn same_session(obj: &Map<String, Value>, id: &str) -> Result<(), ProxyError> {
    match obj.get("sessionId").and_then(Value::as_str) {
        Some(s) if s == id => Ok(()),
        Some(_) => Err(foreign_answer("a session")),
        None => Err(upstream("has no sessionId")),
    }
}

/// A GetSession answer's owner metadata names the caller.
fn owned_by(obj: &Map<String, Value>, who: &Principal) -> bool {
    let meta = obj.get("sessionMetadata");
    let get = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
    get(METADATA_TENANT) == Some(who.tenant.as_str()) && get(METADATA_USER) == Some(who.user.as_str())
}

#[cfg(test)]
#[path = "sessions_tests.rs"]
mod tests;
