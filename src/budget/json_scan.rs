//! A counting pre-scan of a JSON request body (docs/reference.md §3
//! `server.max_json_nodes`, `server.max_json_depth`).
//!
//! Before any `serde_json::Value` tree is built, the body is walked once by
//! a visitor that keeps nothing (like `serde::de::IgnoredAny`) and counts
//! values, object members and nesting depth. It stops at the first value
//! past a limit: 400 `invalid_parameter` naming the limit. What it counted
//! gives the tree's estimated size ([`JsonShape::tree_bytes`]), which the
//! caller charges to the buffer budget before parsing for real.
//!
//! Values are counted once each: every object, array, string, number,
//! boolean and null, members' values included (keys are not values; they
//! are counted as `members`). Depth is the nesting of objects and arrays:
//! `1` is `{}`, `{"a":[]}` is 2, a bare scalar 0.
//!
//! The scan allocates nothing but serde_json's scratch buffer for strings
//! holding escapes (at most the longest such string, reused).

use crate::error::ProxyError;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// Heap bytes a `serde_json::Value` costs in a tree, with the slack of the
/// `Vec` it sits in (grown by doubling).
const NODE_BYTES: u64 = 2 * std::mem::size_of::<serde_json::Value>() as u64;
/// Extra bytes an object member costs: its key `String` (header and
/// smallest allocation) and its share of the map's nodes.
const MEMBER_BYTES: u64 = 128;

/// Limits on the structure of a parsed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JsonLimits {
    pub max_nodes: u64,
    pub max_depth: u32,
}

impl JsonLimits {
    /// No limit (for counting bodies that are not the client's, such as an
    /// upstream answer, only to charge their tree).
    pub const UNLIMITED: JsonLimits = JsonLimits { max_nodes: u64::MAX, max_depth: u32::MAX };
}

/// What the scan counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonShape {
    /// Values (objects, arrays, strings, numbers, booleans, nulls).
    pub nodes: u64,
    /// Object members (key/value pairs).
    pub members: u64,
    /// Deepest nesting of objects and arrays.
    pub depth: u32,
}

impl JsonShape {
    /// Estimated heap bytes of the `serde_json::Value` tree parsed from a
    /// body of `len` bytes with this shape: a fixed cost per value and per
    /// member, plus the body's length for the text of strings and keys.
    pub fn tree_bytes(&self, len: usize) -> u64 {
        self.nodes
            .saturating_mul(NODE_BYTES)
            .saturating_add(self.members.saturating_mul(MEMBER_BYTES))
            .saturating_add(len as u64)
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanError {
    TooManyNodes { limit: u64 },
    TooDeep { limit: u32 },
    /// Not JSON (the message of serde_json).
    Syntax(String),
}

impl From<ScanError> for ProxyError {
    fn from(e: ScanError) -> ProxyError {
        match e {
            ScanError::TooManyNodes { limit } => ProxyError::InvalidParameter(format!(
                "request body has more than {limit} JSON values (server.max_json_nodes)"
            )),
            ScanError::TooDeep { limit } => ProxyError::InvalidParameter(format!(
                "request body nests JSON objects and arrays deeper than {limit} (server.max_json_depth)"
            )),
            ScanError::Syntax(d) => ProxyError::InvalidJson(d),
        }
    }
}

/// Count the values, members and depth of `bytes` within `limits`. An
/// empty (or all-whitespace) body is an empty shape, as
/// `family::parse_json_body` reads it as `{}`.
pub fn scan(bytes: &[u8], limits: &JsonLimits) -> Result<JsonShape, ScanError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(JsonShape::default());
    }
    let mut state = Scan { limits: *limits, shape: JsonShape::default(), exceeded: None };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let res = Node { scan: &mut state, depth: 0 }.deserialize(&mut de).and_then(|()| de.end());
    if let Some(e) = state.exceeded {
        return Err(e);
    }
    res.map_err(|e| ScanError::Syntax(e.to_string()))?;
    Ok(state.shape)
}

struct Scan {
    limits: JsonLimits,
    shape: JsonShape,
    exceeded: Option<ScanError>,
}

impl Scan {
    fn node<E: serde::de::Error>(&mut self) -> Result<(), E> {
        self.shape.nodes += 1;
        if self.shape.nodes > self.limits.max_nodes {
            self.exceeded = Some(ScanError::TooManyNodes { limit: self.limits.max_nodes });
            return Err(E::custom("max_json_nodes"));
        }
        Ok(())
    }

    /// A container at `depth` (its parent's) opens: its depth.
    fn open<E: serde::de::Error>(&mut self, depth: u32) -> Result<u32, E> {
        self.node()?;
        let depth = depth + 1;
        if depth > self.limits.max_depth {
            self.exceeded = Some(ScanError::TooDeep { limit: self.limits.max_depth });
            return Err(E::custom("max_json_depth"));
        }
        self.shape.depth = self.shape.depth.max(depth);
        Ok(depth)
    }
}

/// One value at `depth` (the nesting of its parent).
struct Node<'a> {
    scan: &'a mut Scan,
    depth: u32,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<(), E> {
        self.scan.node()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<(), E> {
        self.scan.node()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<(), E> {
        self.scan.node()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<(), E> {
        self.scan.node()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<(), E> {
        self.scan.node()
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<(), E> {
        self.scan.node()
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<(), E> {
        self.scan.node()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let scan = self.scan;
        let depth = scan.open(self.depth)?;
        while seq.next_element_seed(Node { scan: &mut *scan, depth })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let scan = self.scan;
        let depth = scan.open(self.depth)?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            scan.shape.members += 1;
            map.next_value_seed(Node { scan: &mut *scan, depth })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: JsonLimits = JsonLimits { max_nodes: 100, max_depth: 4 };

    #[test]
    fn counts_values_members_and_depth() {
        let s = scan(br#"{"a":[1,"x",null,true,{"b":2.5}],"c":{}}"#, &L).unwrap();
        // {} root, [..], 1, "x", null, true, {..}, 2.5, {} -> 9 values.
        assert_eq!(s, JsonShape { nodes: 9, members: 3, depth: 3 });
        assert_eq!(scan(b"  ", &L).unwrap(), JsonShape::default());
        assert_eq!(scan(b"7", &L).unwrap(), JsonShape { nodes: 1, members: 0, depth: 0 });
        // Escaped strings and keys count like any other.
        assert_eq!(scan(br#"{"k\n":"v\u00e9"}"#, &L).unwrap(), JsonShape { nodes: 2, members: 1, depth: 1 });
    }

    #[test]
    fn node_limit_is_exact_and_named() {
        let at = format!("[{}]", vec!["0"; 99].join(","));
        assert_eq!(scan(at.as_bytes(), &L).unwrap().nodes, 100);
        let over = format!("[{}]", vec!["0"; 100].join(","));
        let e = scan(over.as_bytes(), &L).unwrap_err();
        assert_eq!(e, ScanError::TooManyNodes { limit: 100 });
        let p: ProxyError = e.into();
        assert_eq!(p.reason(), "invalid_parameter");
        assert!(p.message().contains("server.max_json_nodes"), "{}", p.message());
        // Empty containers are values too (the worst shape per byte).
        let empties = format!("{{\"x\":[{}]}}", vec!["[]"; 99].join(","));
        assert!(matches!(scan(empties.as_bytes(), &L), Err(ScanError::TooManyNodes { .. })));
        let keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\":0")).collect();
        assert!(matches!(scan(format!("{{{}}}", keys.join(",")).as_bytes(), &L), Err(ScanError::TooManyNodes { .. })));
    }

    #[test]
    fn depth_limit_is_exact_and_named() {
        assert_eq!(scan(b"[[[{}]]]", &L).unwrap().depth, 4);
        let e = scan(b"[[[{\"a\":[]}]]]", &L).unwrap_err();
        assert_eq!(e, ScanError::TooDeep { limit: 4 });
        let p: ProxyError = e.into();
        assert!(p.message().contains("server.max_json_depth"), "{}", p.message());
        // Far deeper than serde_json's own recursion limit: still the
        // depth limit, found at the fifth level.
        let deep = "[".repeat(100_000);
        assert_eq!(scan(deep.as_bytes(), &L).unwrap_err(), ScanError::TooDeep { limit: 4 });
    }

    #[test]
    fn a_limit_is_reported_even_when_the_rest_is_not_json() {
        assert!(matches!(scan(b"[0,0,0,0,0", &JsonLimits { max_nodes: 3, max_depth: 4 }), Err(ScanError::TooManyNodes { .. })));
        for bad in [&b"{"[..], b"{\"a\":}", b"[1,]", b"{} x", b"\"\\q\"", b"nul"] {
            let e = scan(bad, &L).unwrap_err();
            assert!(matches!(e, ScanError::Syntax(_)), "{bad:?}: {e:?}");
            assert_eq!(ProxyError::from(e).reason(), "invalid_json");
        }
    }

    #[test]
    fn tree_estimate_covers_values_members_and_text() {
        let s = JsonShape { nodes: 10, members: 4, depth: 2 };
        assert_eq!(s.tree_bytes(1000), 10 * NODE_BYTES + 4 * MEMBER_BYTES + 1000);
        let huge = JsonShape { nodes: u64::MAX, members: u64::MAX, depth: 1 };
        assert_eq!(huge.tree_bytes(1), u64::MAX);
    }

    #[test]
    fn unlimited_counts_everything() {
        let body = format!("[{}]", vec!["[]"; 10_000].join(","));
        assert_eq!(scan(body.as_bytes(), &JsonLimits::UNLIMITED).unwrap().nodes, 10_001);
    }
}
