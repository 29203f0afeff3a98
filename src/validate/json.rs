//! Strict JSON parsing into `serde_json::Value`: serde_json's tokenizer with
//! a `DeserializeSeed` that counts nodes and depth as it builds, so a
//! hostile body is refused at the cap instead of after building its tree,
//! and refuses duplicate object keys at any depth.

use super::{Seg, ValidationError, ValidationErrorKind};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::{Cell, RefCell};
use std::fmt;

/// Caps on the structure of a parsed body. A node is any JSON value (object,
/// array, string, number, boolean, null); depth counts nested objects and
/// arrays (the top-level object is depth 1). serde_json itself stops at 128
/// levels, so a `max_depth` above 127 acts as 127.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    pub max_nodes: usize,
    pub max_depth: usize,
}

impl Default for JsonLimits {
    fn default() -> Self {
        JsonLimits { max_nodes: 100_000, max_depth: 64 }
    }
}

/// Parses `body` as one JSON value (any top-level type), refusing duplicate
/// keys, more than `limits.max_nodes` values, nesting deeper than
/// `limits.max_depth`, and anything after the value but whitespace.
/// Syntax errors (and invalid UTF-8, lone surrogates) are
/// `ValidationErrorKind::Syntax`.
pub fn parse_json(body: &[u8], limits: JsonLimits) -> Result<Value, ValidationError> {
    parse_counted(body, limits).0
}

/// `parse_json`, plus how many nodes were built before it returned.
pub(crate) fn parse_counted(body: &[u8], limits: JsonLimits) -> (Result<Value, ValidationError>, usize) {
    let ctx = Ctx { limits, nodes: Cell::new(0), refused: RefCell::new(None) };
    let mut de = serde_json::Deserializer::from_slice(body);
    let result = Node { ctx: &ctx, depth: 0 }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    let nodes = ctx.nodes.get();
    let result = result.map_err(|e| match ctx.refused.into_inner() {
        Some(mut refused) => {
            refused.path.reverse();
            refused.into_error()
        }
        None => ValidationError::new(ValidationErrorKind::Syntax, Vec::new(), e.to_string()),
    });
    (result, nodes)
}

/// A refusal of ours (not a syntax error), with its path collected in
/// reverse while the error unwinds.
struct Refused {
    kind: ValidationErrorKind,
    path: Vec<Seg>,
    message: String,
}

impl Refused {
    fn into_error(self) -> ValidationError {
        ValidationError::new(self.kind, self.path, self.message)
    }
}

struct Ctx {
    limits: JsonLimits,
    nodes: Cell<usize>,
    refused: RefCell<Option<Refused>>,
}

impl Ctx {
    fn refuse<E: de::Error>(&self, kind: ValidationErrorKind, message: String) -> E {
        *self.refused.borrow_mut() = Some(Refused { kind, path: Vec::new(), message });
        E::custom("refused")
    }

    fn node<E: de::Error>(&self) -> Result<(), E> {
        let n = self.nodes.get() + 1;
        self.nodes.set(n);
        if n > self.limits.max_nodes {
            return Err(self.refuse(
                ValidationErrorKind::TooManyNodes,
                format!("the body has more than {} JSON values", self.limits.max_nodes),
            ));
        }
        Ok(())
    }

    /// Adds a path segment to a refusal that is unwinding (not to syntax errors).
    fn within<T, E>(&self, r: Result<T, E>, seg: impl FnOnce() -> Seg) -> Result<T, E> {
        if r.is_err() {
            if let Some(refused) = self.refused.borrow_mut().as_mut() {
                refused.path.push(seg());
            }
        }
        r
    }
}

#[derive(Clone, Copy)]
struct Node<'c> {
    ctx: &'c Ctx,
    depth: usize,
}

impl<'c> Node<'c> {
    fn container<E: de::Error>(self) -> Result<Node<'c>, E> {
        self.ctx.node()?;
        let depth = self.depth + 1;
        if depth > self.ctx.limits.max_depth {
            return Err(self.ctx.refuse(
                ValidationErrorKind::TooDeep,
                format!("the body nests deeper than {} levels", self.ctx.limits.max_depth),
            ));
        }
        Ok(Node { ctx: self.ctx, depth })
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.ctx.node()?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.ctx.node()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.ctx.node()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.ctx.node()?;
        // serde_json never yields a non-finite number; fail closed if it did.
        Number::from_f64(v).map(Value::Number).ok_or_else(|| E::custom("number out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.ctx.node()?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.ctx.node()?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.ctx.node()?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.container()?;
        let mut out = Vec::new();
        loop {
            let next = seq.next_element_seed(inner);
            match self.ctx.within(next, || Seg::Index(out.len()))? {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.container()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(inner);
            let value = self.ctx.within(value, || Seg::Key(key.clone()))?;
            match out.entry(key) {
                serde_json::map::Entry::Vacant(e) => {
                    e.insert(value);
                }
                serde_json::map::Entry::Occupied(e) => {
                    let err = self.ctx.refuse(ValidationErrorKind::DuplicateKey, "duplicate key".into());
                    if let Some(r) = self.ctx.refused.borrow_mut().as_mut() {
                        r.path.push(Seg::Key(e.key().clone()));
                    }
                    return Err(err);
                }
            }
        }
        Ok(Value::Object(out))
    }
}
