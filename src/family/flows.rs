//! Flows (docs/reference.md §16, docs/flows.md): InvokeFlow
//! (`POST /flows/{flow}/aliases/{alias}`, an event stream), and the flow
//! executions: StartFlowExecution (`POST .../executions`),
//! GetFlowExecution (`GET .../executions/{execution}`), StopFlowExecution
//! (`POST .../stop`), ListFlowExecutionEvents (`GET .../events`),
//! GetExecutionFlowSnapshot (`GET .../flowsnapshot`) and ListFlowExecutions
//! (`GET /flows/{flow}/executions`).
//!
//! What is enforced:
//! - the flow and its alias are named by id (flow: 10 of `[0-9a-zA-Z]`,
//!   alias: `[0-9a-zA-Z]+`, else 400); an ARN in their place is 403
//!   `flow_not_allowed` (the account and region it names are not checked,
//!   so it is never taken);
//! - `flowId/aliasId` passes `flows.allowed` (403 `flow_not_allowed`), decided
//!   from the path before the body is read; ListFlowExecutions needs an
//!   entry for the flow, and for its `flowAliasIdentifier` when it names one;
//! - InvokeFlow's `executionId` (multi-turn) is sealed: the client gets
//!   Bedrock's id with a MAC over (tenant, user, id) in the
//!   `x-amz-bedrock-flow-execution-id` response header, and an id it sends
//!   must carry its own MAC (403 `cross_tenant` otherwise, nothing sent); the
//!   bare id goes upstream;
//! - StartFlowExecution always sends a `flowExecutionName`: the client's (1
//!   to 15 of `[a-zA-Z0-9-]`) or a random one, followed by `-` and a
//!   20-character MAC over (tenant, user, name) (`SessionKeys::flow_execution_name`).
//!   That name is the execution id in the `executionArn` AWS returns, so it
//!   carries its owner without any state;
//! - an execution named in a path (its id, or its `executionArn`, whose flow
//!   and alias must be the path's) must carry the caller's MAC, else 403
//!   `cross_tenant` with nothing sent; the bare id goes upstream;
//! - ListFlowExecutions' page keeps only the caller's executions of allowed
//!   aliases (the others are counted in `x-tenantgate-dropped-results`);
//!   `nextToken` passes unchanged, so a page may be shorter than
//!   `maxResults`, or empty while a `nextToken` is present;
//! - query parameters are each given at most once, with values AWS's model
//!   allows (400 otherwise);
//! - InvokeFlow's events (`flowOutputEvent`, `flowCompletionEvent`,
//!   `flowTraceEvent`, `flowMultiTurnInputRequestEvent`) are redacted event
//!   by event; the JSON answers like any other.
//!
//! StartFlowExecution, before and after (tenant acme, user alice):
//!
//! ```text
//! {"flowExecutionName": "order-42", "inputs": [..]}
//! ->
//! {"flowExecutionName": "order-42-<20 of [a-z2-7]: MAC(acme, alice, order-42)>", "inputs": [..]}
//! ```
//!
//! The one hook that is not a pure function of the request: a
//! StartFlowExecution without a name gets 12 characters from the operating
//! system's random number generator.

use super::{body_object, to_bytes, Ctx, Hooks, Notes, PolicyQuestion, RequestBody};
use crate::aws::credentials::TenantCredentials;
use crate::config::FlowGrant;
use crate::decide::cedar::PolicyResource;
use crate::decide::{self, Resource};
use crate::error::ProxyError;
use crate::post::Post;
use crate::principal::Principal;
use crate::route::{Operation, Target};
use crate::session::{SessionKeys, FLOW_NAME_MAX};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use serde_json::Value;

/// InvokeFlow's response header with the execution id (multi-turn).
pub const EXECUTION_HEADER: &str = "x-amz-bedrock-flow-execution-id";

/// The flows family.
pub struct Flows;

impl Hooks for Flows {
    /// The flow and alias of the path, decided before the body is read.
    fn authorize(ctx: &Ctx<'_>, target: &Target) -> Result<(), ProxyError> {
        match target {
            Target::Flow { flow, alias } | Target::FlowExecution { flow, alias, .. } => {
                decide_flow(ctx, flow, Some(alias))
            }
            Target::FlowExecutions { flow, .. } if ctx.op == Operation::ListFlowExecutions => decide_flow(ctx, flow, None),
            _ => Err(super::foreign_target(ctx)),
        }
    }

    /// An execution named in the path must be the caller's; its bare id
    /// goes upstream.
    fn before_body(ctx: &Ctx<'_>, target: &mut Target, _headers: &mut HeaderMap, _notes: &mut Notes) -> Result<(), ProxyError> {
        if let Target::FlowExecution { flow, alias, execution } = target {
            *execution = own_execution(ctx.keys, ctx.principal, flow, alias, execution)?;
        }
        Ok(())
    }

    /// ListFlowExecutions' alias decided; the list operations' parameters
    /// checked. The others define no query parameter (the validator refused
    /// any name).
    fn rewrite_query(ctx: &Ctx<'_>, target: &mut Target, query: &mut Option<String>) -> Result<(), ProxyError> {
        match (ctx.op, target) {
            (Operation::ListFlowExecutions, Target::FlowExecutions { flow, alias }) => {
                let params = list_query(query.as_deref(), &["flowAliasIdentifier", "maxResults", "nextToken"])?;
                if let Some((_, a)) = params.iter().find(|(n, _)| n == "flowAliasIdentifier") {
                    decide_flow(ctx, flow, Some(a))?;
                    *alias = Some(a.clone());
                }
                Ok(())
            }
            (Operation::ListFlowExecutionEvents, _) => {
                list_query(query.as_deref(), &["eventType", "maxResults", "nextToken"]).map(|_| ())
            }
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
        match (ctx.op, &*target) {
            (Operation::InvokeFlow, Target::Flow { .. }) => {
                let mut v = body.tree()?;
                rewrite_invoke(ctx, &mut v)?;
                Ok((to_bytes(&v)?, Post::Stream))
            }
            (Operation::StartFlowExecution, Target::Flow { .. }) => {
                let mut v = body.tree()?;
                rewrite_start(ctx, &mut v, random_name)?;
                Ok((to_bytes(&v)?, Post::Stream))
            }
            (Operation::ListFlowExecutions, Target::FlowExecutions { flow, alias }) => Ok((
                body.bytes,
                Post::FlowExecutions { flow: flow.clone(), alias: alias.clone(), grants: ctx.policy.flows.allowed.clone() },
            )),
            (
                Operation::GetFlowExecution
                | Operation::StopFlowExecution
                | Operation::ListFlowExecutionEvents
                | Operation::GetExecutionFlowSnapshot,
                Target::FlowExecution { .. },
            ) => Ok((body.bytes, Post::Stream)),
            _ => Err(super::foreign_target(ctx)),
        }
    }

    /// The flow alias (the flow alone for a listing without an alias),
    /// after the allowlist.
    fn policy_question<'a>(
        ctx: &Ctx<'_>,
        target: &'a Target,
        _headers: &'a HeaderMap,
        _body: &'a RequestBody,
    ) -> Result<PolicyQuestion<'a>, ProxyError> {
        let (flow, alias) = match target {
            Target::Flow { flow, alias } | Target::FlowExecution { flow, alias, .. } => (flow, Some(alias.as_str())),
            Target::FlowExecutions { flow, alias } => (flow, alias.as_deref()),
            _ => return Err(super::foreign_target(ctx)),
        };
        ctx.decide(Resource::Flow { flow, alias })?;
        Ok(PolicyQuestion::of(PolicyResource::Flow { flow, alias }))
    }

    /// InvokeFlow: Bedrock's execution id goes to the client sealed for
    /// its tenant and user.
    fn response_headers(ctx: &Ctx<'_>, _post: &Post, headers: &mut HeaderMap) {
        if ctx.op != Operation::InvokeFlow {
            return;
        }
        let sealed = headers
            .get(EXECUTION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(|id| ctx.keys.seal_flow_invocation(&ctx.principal.tenant, &ctx.principal.user, id));
        match sealed.and_then(|s| HeaderValue::from_str(&s).ok()) {
            Some(v) => {
                headers.insert(EXECUTION_HEADER, v);
            }
            // A value that is not text is not passed on as it came.
            None => {
                headers.remove(EXECUTION_HEADER);
            }
        }
    }
}

/// A flow id as AWS writes one: 10 of `[0-9a-zA-Z]`.
fn is_flow_id(s: &str) -> bool {
    s.len() == 10 && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An alias id: `[0-9a-zA-Z]+` (`TSTALIASID` included).
fn is_alias_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// An execution id as AWS writes one: 1 to 36 of `[a-zA-Z0-9-]`.
fn is_execution_id(s: &str) -> bool {
    (1..=36).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The flow (and alias) by id, on the allowlist. ARNs are 403, other
/// malformed ids 400.
fn decide_flow(ctx: &Ctx<'_>, flow: &str, alias: Option<&str>) -> Result<(), ProxyError> {
    for (what, id) in [("flowIdentifier", Some(flow)), ("flowAliasIdentifier", alias)] {
        let Some(id) = id else { continue };
        if id.starts_with("arn:") {
            return Err(ProxyError::FlowNotAllowed {
                flow: decide::truncate(id, 200),
                tenant: ctx.principal.tenant.clone(),
                arn: true,
            });
        }
        let ok = if what == "flowIdentifier" { is_flow_id(id) } else { is_alias_id(id) };
        if !ok {
            let want = if what == "flowIdentifier" { "10 letters or digits" } else { "letters and digits" };
            return Err(ProxyError::InvalidParameter(format!(
                "{what} {:?} is not a flow{} id ({want})",
                decide::truncate(id, 200),
                if what == "flowIdentifier" { "" } else { " alias" }
            )));
        }
    }
    ctx.decide(Resource::Flow { flow, alias }).map(|_| ())
}

/// The parts of a flow execution ARN
/// (`arn:aws:bedrock:REGION:ACCOUNT:flow/FLOW/alias/ALIAS/execution/ID`,
/// AWS's pattern): (flow, alias, execution id).
pub fn parse_execution_arn(arn: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = arn.split(':').collect();
    let ["arn", "aws", "bedrock", region, account, resource] = parts.as_slice() else { return None };
    let region_ok = (1..=20).contains(&region.len())
        && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let segs: Vec<&str> = resource.split('/').collect();
    let ["flow", flow, "alias", alias, "execution", id] = segs.as_slice() else { return None };
    let alias_ok = alias.len() == 10 && is_alias_id(alias);
    (region_ok && account_ok && is_flow_id(flow) && alias_ok && is_execution_id(id)).then_some((*flow, *alias, *id))
}

/// The bare id of an execution the path names (its id, or its ARN naming
/// the path's flow and alias), when it is the caller's: 400 when malformed,
/// 403 `cross_tenant` when it is not the caller's.
pub fn own_execution(keys: &SessionKeys, who: &Principal, flow: &str, alias: &str, named: &str) -> Result<String, ProxyError> {
    let id = if named.starts_with("arn:") {
        let (f, a, id) = parse_execution_arn(named).ok_or_else(|| {
            ProxyError::InvalidParameter(format!(
                "executionIdentifier {:?} is not a flow execution ARN (arn:aws:bedrock:REGION:ACCOUNT:flow/FLOW/alias/ALIAS/execution/ID)",
                decide::truncate(named, 200)
            ))
        })?;
        if (f, a) != (flow, alias) {
            return Err(ProxyError::InvalidParameter(format!(
                "executionIdentifier names flow alias {f}/{a}, the path {flow}/{alias}"
            )));
        }
        id
    } else if is_execution_id(named) {
        named
    } else {
        return Err(ProxyError::InvalidParameter(format!(
            "executionIdentifier {:?} is not a flow execution id (1 to 36 of letters, digits and '-') or ARN",
            decide::truncate(named, 200)
        )));
    };
    if keys.is_own_flow_execution(&who.tenant, &who.user, id) {
        Ok(id.to_string())
    } else {
        Err(ProxyError::CrossTenant(format!("flow execution {id:?} does not belong to this tenant and user")))
    }
}

/// A list operation's query string: each parameter at most once, its value
/// as AWS's model allows; returns the decoded pairs (the string goes upstream
/// as sent). Names outside `names` were refused by the validator; refused
/// here too.
fn list_query(query: Option<&str>, names: &[&str]) -> Result<Vec<(String, String)>, ProxyError> {
    let mut out: Vec<(String, String)> = Vec::new();
    super::query::for_each_pair(query.unwrap_or_default(), |name, value| {
        let ok = names.contains(&name)
            && super::query::paging_value_ok(name, value).unwrap_or_else(|| match name {
                "eventType" => matches!(value, "Node" | "Flow"),
                // Its id form; an ARN is decided (and refused) by the caller.
                "flowAliasIdentifier" => is_alias_id(value) || value.starts_with("arn:"),
                _ => false,
            });
        if !ok {
            return Err(super::query::value_not_allowed(name, value, "the AWS model"));
        }
        out.push((name.to_string(), value.to_string()));
        Ok(())
    })?;
    Ok(out)
}

/// InvokeFlow's body: a client `executionId` must be sealed for the caller;
/// Bedrock's bare id goes upstream.
pub fn rewrite_invoke(ctx: &Ctx<'_>, v: &mut Value) -> Result<(), ProxyError> {
    let obj = body_object(v)?;
    if let Some(id) = obj.get("executionId") {
        let id = id.as_str().ok_or_else(|| ProxyError::InvalidParameter("executionId must be a string".into()))?;
        let bare = ctx.keys.open_flow_invocation(&ctx.principal.tenant, &ctx.principal.user, id)?;
        obj.insert("executionId".into(), Value::String(bare));
    }
    Ok(())
}

/// StartFlowExecution's body: `flowExecutionName` is the client's (checked)
/// or `random()`, bound to the caller.
pub fn rewrite_start(ctx: &Ctx<'_>, v: &mut Value, random: fn() -> String) -> Result<(), ProxyError> {
    let obj = body_object(v)?;
    let name = match obj.get("flowExecutionName") {
        None => random(),
        Some(Value::String(n)) if (1..=FLOW_NAME_MAX).contains(&n.len()) && is_execution_id(n) => n.clone(),
        Some(other) => {
            return Err(ProxyError::InvalidParameter(format!(
                "flowExecutionName {} is not valid: 1 to {FLOW_NAME_MAX} of letters, digits and '-' (tenantgate adds 21 characters binding it to the caller)",
                decide::truncate(&other.to_string(), 64)
            )))
        }
    };
    let bound = ctx.keys.flow_execution_name(&ctx.principal.tenant, &ctx.principal.user, &name);
    obj.insert("flowExecutionName".into(), Value::String(bound));
    Ok(())
}

/// A fresh execution name: 12 of `[a-z2-7]` (60 bits).
fn random_name() -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut raw = [0u8; 12];
    // As for the session key: without the OS generator there is nothing
    // safe to fall back to.
    getrandom::fill(&mut raw).expect("the operating system random number generator failed");
    raw.iter().map(|b| ALPHABET[usize::from(b & 31)] as char).collect()
}

/// ListFlowExecutions' page with only the caller's executions of `flow`
/// through allowed aliases (and of `alias` when the request named one),
/// re-serialised from the tree judged, and how many were left out. The
/// flow, alias and owner are read from each summary's `executionArn`.
pub fn filter_executions(
    body: &[u8],
    flow: &str,
    alias: Option<&str>,
    grants: &[FlowGrant],
    who: &Principal,
    keys: &SessionKeys,
) -> Result<(Vec<u8>, u64), ProxyError> {
    let bad = |m: &str| ProxyError::UpstreamError(format!("ListFlowExecutions answer {m}"));
    let mut v: Value = serde_json::from_slice(body).map_err(|e| bad(&format!("is not JSON: {e}")))?;
    let obj = v.as_object_mut().ok_or_else(|| bad("is not a JSON object"))?;
    let mut dropped = 0;
    match obj.get_mut("flowExecutionSummaries") {
        None => {}
        Some(Value::Array(items)) => {
            let before = items.len();
            items.retain(|s| {
                let Some((f, a, id)) = s.get("executionArn").and_then(Value::as_str).and_then(parse_execution_arn) else {
                    return false;
                };
                f == flow
                    && alias.is_none_or(|want| want == a)
                    && grants.iter().any(|g| g.flow.matches(f) && g.alias.matches(a))
                    && keys.is_own_flow_execution(&who.tenant, &who.user, id)
            });
            dropped = (before - items.len()) as u64;
        }
        Some(_) => return Err(bad("has a flowExecutionSummaries that is not a list")),
    }
    let out = serde_json::to_vec(&v).map_err(|e| bad(&e.to_string()))?;
    Ok((out, dropped))
}

#[cfg(test)]
#[path = "flows_tests.rs"]
mod tests;
