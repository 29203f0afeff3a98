//! `JsonTemplate`: a JSON tree (written in the config as a TOML inline table,
//! e.g. a Bedrock `RetrievalFilter`) whose string leaves are templates.
//! String leaves render with `Template::render_value`, so a leaf that is
//! exactly `{groups}` becomes a JSON list (as an `in` filter needs).
//! Subtrees without placeholders are pre-rendered once at compile time.

use super::{MissingClaim, Template};
use crate::principal::Principal;
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    /// A subtree with no placeholder, rendered once at load.
    Literal(Value),
    String(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// Compiles a JSON value; string values (not object keys) are templates.
    /// The error names the JSON path of the bad string (`in.value: ...`).
    pub fn compile(value: &Value) -> Result<JsonTemplate, String> {
        compile_at(value, "")
    }

    pub fn render(&self, p: &Principal) -> Result<Value, MissingClaim> {
        match self {
            JsonTemplate::Literal(v) => Ok(v.clone()),
            JsonTemplate::String(t) => t.render_value(p),
            JsonTemplate::Array(items) => {
                items.iter().map(|i| i.render(p)).collect::<Result<Vec<_>, _>>().map(Value::Array)
            }
            JsonTemplate::Object(entries) => {
                let mut map = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    map.insert(k.clone(), v.render(p)?);
                }
                Ok(Value::Object(map))
            }
        }
    }

    /// True when any string leaf uses `{user}`, `{groups}` or a claim.
    pub fn uses_user(&self) -> bool {
        match self {
            JsonTemplate::Literal(_) => false,
            JsonTemplate::String(t) => t.uses_user(),
            JsonTemplate::Array(items) => items.iter().any(JsonTemplate::uses_user),
            JsonTemplate::Object(entries) => entries.iter().any(|(_, v)| v.uses_user()),
        }
    }

    /// The literal value when there is no placeholder anywhere.
    pub fn as_literal(&self) -> Option<&Value> {
        match self {
            JsonTemplate::Literal(v) => Some(v),
            _ => None,
        }
    }
}

fn compile_at(value: &Value, path: &str) -> Result<JsonTemplate, String> {
    Ok(match value {
        Value::String(s) => {
            let t = Template::compile(s).map_err(|e| at(path, &e))?;
            if t.is_literal() {
                JsonTemplate::Literal(Value::String(t.literals().collect()))
            } else {
                JsonTemplate::String(t)
            }
        }
        Value::Array(items) => {
            let items = items
                .iter()
                .enumerate()
                .map(|(i, v)| compile_at(v, &format!("{path}[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            match items.iter().map(JsonTemplate::as_literal).collect::<Option<Vec<_>>>() {
                Some(lits) => JsonTemplate::Literal(Value::Array(lits.into_iter().cloned().collect())),
                None => JsonTemplate::Array(items),
            }
        }
        Value::Object(map) => {
            let entries = map
                .iter()
                .map(|(k, v)| {
                    let sub = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    compile_at(v, &sub).map(|t| (k.clone(), t))
                })
                .collect::<Result<Vec<_>, _>>()?;
            if entries.iter().all(|(_, v)| v.as_literal().is_some()) {
                let mut out = Map::with_capacity(entries.len());
                for (k, v) in entries {
                    if let JsonTemplate::Literal(v) = v {
                        out.insert(k, v);
                    }
                }
                JsonTemplate::Literal(Value::Object(out))
            } else {
                JsonTemplate::Object(entries)
            }
        }
        other => JsonTemplate::Literal(other.clone()),
    })
}

fn at(path: &str, msg: &str) -> String {
    if path.is_empty() {
        msg.to_string()
    } else {
        format!("{path}: {msg}")
    }
}
