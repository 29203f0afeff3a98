//! `[tenant_defaults.inline_agent]` / `[tenants.ID.inline_agent]`: the agent
//! definition InvokeInlineAgent sends for a tenant (docs/agents.md, "Inline
//! agents"). Each key is read and checked here; `tenant_merge` merges the
//! table key by key and checks what spans keys (both `foundation_model` and
//! `instruction` set, the model on `models`, the knowledge bases on
//! `knowledge_base.allowed`).

use super::filters::to_json;
use super::reader::{index, type_error, Ctx, Loc, Tbl};
use super::tenant_types::PartialInlineAgent;
use crate::error::ProxyError;
use crate::route::Operation;
use crate::template::{JsonTemplate, Template};
use serde_json::{json, Value};

pub(super) const INLINE_AGENT_KEYS: &[&str] =
    &["foundation_model", "instruction", "action_groups", "knowledge_bases", "idle_session_ttl_secs"];
/// Keys without which a tenant has no inline agent.
pub(super) const INLINE_AGENT_REQUIRED: &[&str] = &["foundation_model", "instruction"];
/// Bedrock refuses an instruction shorter than this.
const MIN_INSTRUCTION_CHARS: usize = 40;
/// Bedrock's `idleSessionTTLInSeconds` range.
const TTL_RANGE: (u64, u64) = (60, 3600);
/// Bedrock's knowledge base description limit.
const MAX_DESCRIPTION_CHARS: usize = 200;

pub(super) fn read(t: &Tbl<'_>, ctx: &mut Ctx<'_>) -> PartialInlineAgent {
    let mut p = PartialInlineAgent::default();
    let Some(a) = t.sub(ctx, "inline_agent", INLINE_AGENT_KEYS) else { return p };
    p.written = INLINE_AGENT_KEYS.iter().filter(|k| a.has(k)).map(|k| k.to_string()).collect();
    if p.written.is_empty() {
        ctx.err(&a.path, a.span.as_ref(), "is empty: set `foundation_model` and `instruction`, or remove the table");
    }
    p.foundation_model = a.text(ctx, "foundation_model").and_then(|l| {
        if l.value.contains(['{', '}']) || l.value.chars().any(char::is_whitespace) {
            ctx.err_at(&l, "must be a model id, ARN or inference profile (no template placeholders, no spaces)");
            return None;
        }
        Some(l)
    });
    p.instruction = a.text(ctx, "instruction").and_then(|l| {
        let tpl = super::credentials::template(ctx, &l)?;
        let literal: usize = tpl.literals().map(|s| s.chars().count()).sum();
        if literal < MIN_INSTRUCTION_CHARS {
            ctx.err_at(
                &l,
                format!("must hold at least {MIN_INSTRUCTION_CHARS} characters besides its placeholders (Bedrock refuses a shorter instruction)"),
            );
            return None;
        }
        Some(l.map(|_| tpl))
    });
    p.idle_session_ttl_secs = a.uint(ctx, "idle_session_ttl_secs", TTL_RANGE.0, TTL_RANGE.1);
    p.knowledge_bases = knowledge_bases(&a, ctx);
    p.action_groups = action_groups(&a, ctx);
    p
}

/// `knowledge_bases = { KBID = "description" }`: Bedrock's id pattern, a
/// description of 1 to 200 characters (a template).
fn knowledge_bases(a: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Option<Loc<Vec<(String, Template)>>> {
    let map = a.string_map(ctx, "knowledge_bases")?;
    let mut out = Vec::new();
    for (id, desc) in &map.value {
        if id.is_empty() || id.len() > 10 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            ctx.err_at(desc, format!("{id:?} is not a knowledge base id (1 to 10 letters and digits)"));
            continue;
        }
        if desc.value.trim().is_empty() || desc.value.chars().count() > MAX_DESCRIPTION_CHARS {
            ctx.err_at(
                desc,
                format!("the description of {id:?} must be 1 to {MAX_DESCRIPTION_CHARS} characters (Bedrock's limit; the agent reads it to decide when to query)"),
            );
            continue;
        }
        if let Some(tpl) = super::credentials::template(ctx, desc) {
            out.push((id.clone(), tpl));
        }
    }
    Some(map.map(|_| out))
}

/// `action_groups = [ { actionGroupName = "...", ... } ]`: AWS
/// `AgentActionGroup` objects (checked against the AWS model of
/// InvokeInlineAgent), string values being templates rendered as text
/// (a list claim comma-joined).
fn action_groups(a: &Tbl<'_>, ctx: &mut Ctx<'_>) -> Option<Loc<Vec<JsonTemplate>>> {
    let v = a.get("action_groups")?;
    let key = a.key("action_groups");
    let Some(items) = v.get_ref().as_array() else {
        type_error(ctx, &key, v, "an array of action group tables");
        return None;
    };
    let mut out = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = index(&key, i);
        let Some(group) = to_json(ctx, &at, item) else { continue };
        let err = |ctx: &mut Ctx<'_>, msg: String| ctx.err(&at, Some(&item.span()), msg);
        if !group.is_object() {
            err(ctx, "must be a table in the shape of an AWS AgentActionGroup".into());
            continue;
        }
        // The AWS model of the request: member names in exact case, types,
        // unions (`actionGroupExecutor`, `apiSchema`, `functionSchema`).
        if let Err(e) = crate::validate::validate_value(Operation::InvokeInlineAgent, &json!({ "actionGroups": [group] })) {
            let msg = match &e {
                ProxyError::InvalidParameter(m) | ProxyError::InvalidJson(m) => m.clone(),
                other => other.to_string(),
            };
            let msg = msg.strip_prefix("actionGroups[0]").unwrap_or(&msg).trim_start_matches(['.', ':', ' ']);
            err(ctx, format!("not an AWS AgentActionGroup: {msg}"));
            continue;
        }
        match group.get("actionGroupName") {
            Some(Value::String(name)) if !name.is_empty() => {
                if names.iter().any(|n| n == name) {
                    err(ctx, format!("actionGroupName {name:?} is used twice"));
                    continue;
                }
                names.push(name.clone());
            }
            _ => {
                err(ctx, "needs actionGroupName".into());
                continue;
            }
        }
        match JsonTemplate::compile(&group) {
            Ok(tpl) => out.push(tpl),
            Err(e) => err(ctx, format!("invalid template: {e}")),
        }
    }
    Some(Loc { value: out, key, span: v.span() })
}
