//! `knowledge_base.extra_filters`: Bedrock `RetrievalFilter` objects written
//! as TOML inline tables, string values being templates.

use super::reader::{index, integer, type_error, Ctx, Loc, Tbl, Val};
use crate::template::{JsonTemplate, Template};
use serde_json::{Map, Number, Value};
use toml::de::DeValue;

// The RetrievalFilter operators, also what the knowledge-base rewrite
// accepts from clients (`family::retrieval_filter`).
/// Operators whose operand is a `{key, value}` attribute.
pub const COMPARISON_OPERATORS: &[&str] = &[
    "equals",
    "notEquals",
    "greaterThan",
    "greaterThanOrEquals",
    "lessThan",
    "lessThanOrEquals",
    "in",
    "notIn",
    "startsWith",
    "listContains",
    "stringContains",
];
/// Operators whose operand is a list of at least two filters.
pub const LOGICAL_OPERATORS: &[&str] = &["andAll", "orAll"];
use COMPARISON_OPERATORS as COMPARISONS;
use LOGICAL_OPERATORS as LOGICAL;

pub(crate) fn extra_filters(t: &Tbl<'_>, ctx: &mut Ctx<'_>, k: &str) -> Option<Loc<Vec<JsonTemplate>>> {
    let v = t.get(k)?;
    let key = t.key(k);
    let Some(items) = v.get_ref().as_array() else {
        type_error(ctx, &key, v, "an array of filter tables");
        return None;
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let at = index(&key, i);
        let Some(json) = to_json(ctx, &at, item) else { continue };
        let mut problems = Vec::new();
        check_filter(&json, "", &mut problems);
        if !problems.is_empty() {
            for (path, msg) in problems {
                let k = if path.is_empty() { at.clone() } else { format!("{at}.{path}") };
                ctx.err(&k, Some(&item.span()), msg);
            }
            continue;
        }
        match JsonTemplate::compile(&json) {
            Ok(tpl) => out.push(tpl),
            Err(e) => ctx.err(&at, Some(&item.span()), format!("invalid template: {e}")),
        }
    }
    Some(Loc { value: out, key, span: v.span() })
}

/// TOML -> JSON; datetimes and non-finite floats have no JSON form.
pub(super) fn to_json(ctx: &mut Ctx<'_>, key: &str, v: &Val<'_>) -> Option<Value> {
    Some(match v.get_ref() {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(_) => match integer(v.get_ref()).and_then(|n| i64::try_from(n).ok()) {
            Some(n) => Value::Number(n.into()),
            None => {
                ctx.err(key, Some(&v.span()), "integer out of range");
                return None;
            }
        },
        DeValue::Float(f) => match f.as_str().parse::<f64>().ok().and_then(Number::from_f64) {
            Some(n) => Value::Number(n),
            None => {
                ctx.err(key, Some(&v.span()), "not a finite number");
                return None;
            }
        },
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(_) => {
            ctx.err(key, Some(&v.span()), "dates are not allowed in filters (use a string or number)");
            return None;
        }
        DeValue::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(to_json(ctx, &index(key, i), item)?);
            }
            Value::Array(out)
        }
        DeValue::Table(t) => {
            let mut out = Map::new();
            for (k, item) in t.iter() {
                let name: &str = k.get_ref();
                out.insert(name.to_string(), to_json(ctx, &super::reader::join(key, name), item)?);
            }
            Value::Object(out)
        }
    })
}

fn sub(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

/// Checks the shape of a `RetrievalFilter`; problems are (path, message).
fn check_filter(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    let expected = || {
        format!(
            "a filter is a table with exactly one operator key: one of {}, {}",
            COMPARISONS.join(", "),
            LOGICAL.join(", ")
        )
    };
    let Some(obj) = v.as_object() else {
        out.push((path.to_string(), expected()));
        return;
    };
    let mut entries = obj.iter();
    let (Some((op, body)), None) = (entries.next(), entries.next()) else {
        out.push((path.to_string(), expected()));
        return;
    };
    let here = sub(path, op);
    if LOGICAL.contains(&op.as_str()) {
        match body.as_array() {
            Some(members) if members.len() >= 2 => {
                for (i, m) in members.iter().enumerate() {
                    check_filter(m, &index(&here, i), out);
                }
            }
            _ => out.push((here, format!("`{op}` needs a list of at least two filters"))),
        }
    } else if COMPARISONS.contains(&op.as_str()) {
        check_comparison(op, body, &here, out);
    } else {
        out.push((here, format!("unknown filter operator `{op}`; {}", expected())));
    }
}

fn check_comparison(op: &str, body: &Value, here: &str, out: &mut Vec<(String, String)>) {
    let Some(b) = body.as_object() else {
        out.push((here.to_string(), format!("`{op}` needs {{ key = \"...\", value = ... }}")));
        return;
    };
    for k in b.keys().filter(|k| !matches!(k.as_str(), "key" | "value")) {
        out.push((sub(here, k), format!("unknown key `{k}` (a comparison has only `key` and `value`)")));
    }
    match b.get("key") {
        Some(k @ Value::String(s)) if !s.is_empty() => check_strings(k, &sub(here, "key"), out),
        _ => out.push((sub(here, "key"), "needs a non-empty string `key`".into())),
    }
    let value_path = sub(here, "value");
    match b.get("value") {
        None | Some(Value::Null) => out.push((value_path, "needs a `value`".into())),
        Some(v) => {
            check_strings(v, &value_path, out);
            if matches!(op, "in" | "notIn") {
                let list_like = match v {
                    Value::Array(_) => true,
                    Value::String(s) => Template::compile(s).is_ok_and(|t| t.is_single_list_placeholder()),
                    _ => false,
                };
                if !list_like {
                    out.push((
                        value_path,
                        format!("`{op}` needs a list (or exactly \"{{groups}}\" / \"{{claims.NAME}}\")"),
                    ));
                }
            }
        }
    }
}

/// Every string leaf must be a valid template.
fn check_strings(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) => {
            if let Err(e) = Template::compile(s) {
                out.push((path.to_string(), format!("invalid template: {e}")));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_strings(item, &index(path, i), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                check_strings(item, &sub(path, k), out);
            }
        }
        _ => {}
    }
}
