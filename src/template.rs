//! Templates (docs/reference.md §3): `{tenant}`, `{user}`, `{groups}`, `{claims.NAME}`,
//! compiled once at config load, rendered per request from a `Principal`.
//! A template naming a claim the token lacks fails with `MissingClaim`
//! (403 `missing_claim`), never an empty value.
//!
//! Syntax: `{{` and `}}` are literal braces; any other `{...}` must be one of
//! the four placeholders (`NAME` is taken verbatim, so `{claims.custom:plan}`
//! names the claim `custom:plan`); an unclosed `{` or a lone `}` is an error.
//!
//! Claim values: a string (non-empty), a number or a boolean renders as text;
//! a list of such scalars renders as a JSON list when the template is exactly
//! that one placeholder and `render_value` is used, otherwise comma-joined.
//! Anything else (absent, `null`, `""`, an object, a list holding objects or
//! lists) is `MissingClaim`: fail closed rather than render an empty or
//! surprising value. `{groups}` is the principal's groups (empty list when the
//! token has none).
//!
//! Rendering walks precompiled parts: no parsing and no regex per request.

mod json;

pub use json::JsonTemplate;

use crate::principal::Principal;
use serde_json::Value;
use std::fmt;

/// A template named a claim the verified token does not carry (or carries
/// with a value that cannot be rendered). Holds the claim name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token has no usable claim {0:?}")]
pub struct MissingClaim(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Tenant,
    User,
    Groups,
    Claim(String),
}

#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Box<[Part]>,
    /// Substituted values are escaped as JSON string content (templates built
    /// from a JSON document, e.g. a session policy, so a claim value can never
    /// inject JSON syntax).
    json_escape: bool,
}

impl Template {
    /// Compiles a template; the error says what is wrong and where.
    pub fn compile(source: &str) -> Result<Template, String> {
        let parts = parse_parts(source)?;
        Ok(Template { source: source.to_string(), parts: parts.into_boxed_slice(), json_escape: false })
    }

    /// A template that renders `text` verbatim (no placeholder parsing).
    pub fn literal(text: &str) -> Template {
        let parts: Vec<Part> = if text.is_empty() { Vec::new() } else { vec![Part::Lit(text.to_string())] };
        Template { source: escape_braces(text), parts: parts.into_boxed_slice(), json_escape: false }
    }

    /// Compiles a JSON document (e.g. an IAM session policy) whose string
    /// values (not keys) may contain placeholders. Braces of the JSON syntax
    /// need no escaping, and substituted values are JSON-escaped, so the
    /// rendered text is always valid JSON with the same structure.
    pub fn compile_json_document(text: &str) -> Result<Template, String> {
        let doc: Value = serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))?;
        let mut w = JsonDocWriter { parts: Vec::new(), lit: String::new() };
        w.value(&doc, "")?;
        if !w.lit.is_empty() {
            w.parts.push(Part::Lit(std::mem::take(&mut w.lit)));
        }
        Ok(Template { source: text.to_string(), parts: w.parts.into_boxed_slice(), json_escape: true })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the template has no placeholder at all.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// True when the result can differ between users of one tenant (it uses
    /// `{user}`, `{groups}` or a claim); false when it depends on the tenant only.
    pub fn uses_user(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::User | Part::Groups | Part::Claim(_)))
    }

    /// True when the result contains the tenant id (`{tenant}`).
    pub fn uses_tenant(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Tenant))
    }

    /// True when the template is exactly `{groups}` or exactly one
    /// `{claims.NAME}`: the forms `render_value` can turn into a JSON list.
    pub fn is_single_list_placeholder(&self) -> bool {
        matches!(&*self.parts, [Part::Groups] | [Part::Claim(_)])
    }

    /// The literal text pieces (unescaped), e.g. to validate fixed characters.
    pub fn literals(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Lit(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Names of the claims the template uses (`{claims.NAME}`).
    pub fn claim_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Claim(s) => Some(s.as_str()),
            _ => None,
        })
    }

    /// Renders to a string. List values are comma-joined.
    pub fn render(&self, p: &Principal) -> Result<String, MissingClaim> {
        if let [Part::Lit(s)] = &*self.parts {
            return Ok(s.clone());
        }
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in self.parts.iter() {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Tenant => self.push(&mut out, &p.tenant),
                Part::User => self.push(&mut out, &p.user),
                Part::Groups => self.push_joined(&mut out, p.groups.iter().map(String::as_str)),
                Part::Claim(name) => match claim(p, name)? {
                    ClaimValue::Scalar(s) => self.push(&mut out, &s),
                    ClaimValue::List(items) => self.push_joined(&mut out, items.iter().map(String::as_str)),
                },
            }
        }
        Ok(out)
    }

    /// Renders to a JSON value: a JSON list when the template is exactly
    /// `{groups}` or exactly `{claims.X}` with a list-valued claim; a JSON
    /// string otherwise.
    pub fn render_value(&self, p: &Principal) -> Result<Value, MissingClaim> {
        match &*self.parts {
            [Part::Groups] => Ok(Value::Array(p.groups.iter().map(|g| Value::String(g.clone())).collect())),
            [Part::Claim(name)] => match claim(p, name)? {
                ClaimValue::Scalar(s) => Ok(Value::String(s)),
                ClaimValue::List(items) => Ok(Value::Array(items.into_iter().map(Value::String).collect())),
            },
            _ => self.render(p).map(Value::String),
        }
    }

    fn push(&self, out: &mut String, value: &str) {
        if self.json_escape {
            push_json_escaped(out, value);
        } else {
            out.push_str(value);
        }
    }

    fn push_joined<'a>(&self, out: &mut String, items: impl Iterator<Item = &'a str>) {
        for (i, item) in items.enumerate() {
            if i > 0 {
                out.push(',');
            }
            self.push(out, item);
        }
    }
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

enum ClaimValue {
    Scalar(String),
    List(Vec<String>),
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn claim(p: &Principal, name: &str) -> Result<ClaimValue, MissingClaim> {
    let missing = || MissingClaim(name.to_string());
    match p.claims.get(name) {
        Some(Value::Array(items)) => {
            items.iter().map(scalar).collect::<Option<Vec<_>>>().map(ClaimValue::List).ok_or_else(missing)
        }
        Some(v) => scalar(v).map(ClaimValue::Scalar).ok_or_else(missing),
        None => Err(missing()),
    }
}

fn parse_parts(source: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = source.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if matches!(chars.peek(), Some((_, '{'))) => {
                chars.next();
                lit.push('{');
            }
            '}' if matches!(chars.peek(), Some((_, '}'))) => {
                chars.next();
                lit.push('}');
            }
            '}' => {
                return Err(format!("unmatched `}}` at offset {i} (write `}}}}` for a literal brace)"));
            }
            '{' => {
                let rest = &source[i + 1..];
                let end = match rest.find(['{', '}']) {
                    Some(end) if rest[end..].starts_with('}') => end,
                    _ => return Err(format!("unclosed `{{` at offset {i} (write `{{{{` for a literal brace)")),
                };
                let part = placeholder(&rest[..end])?;
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(part);
                // Skip the placeholder body and its closing brace.
                for _ in 0..rest[..=end].chars().count() {
                    chars.next();
                }
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    Ok(parts)
}

fn placeholder(inner: &str) -> Result<Part, String> {
    match inner {
        "tenant" => Ok(Part::Tenant),
        "user" => Ok(Part::User),
        "groups" => Ok(Part::Groups),
        _ => match inner.strip_prefix("claims.") {
            Some("") => Err("`{claims.}` names no claim (write `{claims.NAME}`)".to_string()),
            Some(name) => Ok(Part::Claim(name.to_string())),
            None => Err(format!(
                "unknown placeholder `{{{inner}}}` (expected {{tenant}}, {{user}}, {{groups}} or {{claims.NAME}})"
            )),
        },
    }
}

fn escape_braces(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

fn push_json_escaped(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
}

struct JsonDocWriter {
    parts: Vec<Part>,
    lit: String,
}

impl JsonDocWriter {
    fn value(&mut self, v: &Value, path: &str) -> Result<(), String> {
        match v {
            Value::Null | Value::Bool(_) | Value::Number(_) => self.lit.push_str(&v.to_string()),
            Value::String(s) => {
                let parts = parse_parts(s).map_err(|e| format!("at {}: {e}", display_path(path)))?;
                self.lit.push('"');
                for part in parts {
                    match part {
                        Part::Lit(s) => push_json_escaped(&mut self.lit, &s),
                        var => {
                            if !self.lit.is_empty() {
                                self.parts.push(Part::Lit(std::mem::take(&mut self.lit)));
                            }
                            self.parts.push(var);
                        }
                    }
                }
                self.lit.push('"');
            }
            Value::Array(items) => {
                self.lit.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.lit.push(',');
                    }
                    self.value(item, &format!("{path}[{i}]"))?;
                }
                self.lit.push(']');
            }
            Value::Object(map) => {
                self.lit.push('{');
                for (i, (k, item)) in map.iter().enumerate() {
                    if i > 0 {
                        self.lit.push(',');
                    }
                    self.lit.push('"');
                    push_json_escaped(&mut self.lit, k);
                    self.lit.push_str("\":");
                    self.value(item, &format!("{path}.{k}"))?;
                }
                self.lit.push('}');
            }
        }
        Ok(())
    }
}

fn display_path(path: &str) -> &str {
    match path.strip_prefix('.') {
        Some(p) => p,
        None if path.is_empty() => "(document)",
        None => path,
    }
}

#[cfg(test)]
mod tests;
