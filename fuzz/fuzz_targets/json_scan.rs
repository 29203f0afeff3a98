//! The counting pre-scan of request bodies (`tenantgate::budget::json_scan`),
//! which runs before any JSON tree is built and decides what a body is
//! charged. Byte 0 picks the caps; the rest is the body. Oracles:
//! - no panic;
//! - for a body serde_json parses (within its recursion limit), the scan
//!   with no caps counts exactly its values, object members and depth, and
//!   the estimated tree is at least the body's length;
//! - with caps, the scan refuses exactly when the body has more values or
//!   deeper nesting than the caps allow, and never accepts a body the
//!   validator's strict parse would find over the same caps;
//! - a body serde_json refuses is never accepted with a shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tenantgate::budget::json_scan::{scan, JsonLimits, ScanError};
use tenantgate::validate;

fn shape(v: &Value, depth: u32, acc: &mut (u64, u64, u32)) {
    acc.0 += 1;
    match v {
        Value::Array(a) => {
            acc.2 = acc.2.max(depth + 1);
            a.iter().for_each(|x| shape(x, depth + 1, acc));
        }
        Value::Object(o) => {
            acc.2 = acc.2.max(depth + 1);
            acc.1 += o.len() as u64;
            o.values().for_each(|x| shape(x, depth + 1, acc));
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&caps, body)) = data.split_first() else { return };
    let limits = JsonLimits { max_nodes: u64::from(caps & 0x3f) + 1, max_depth: u32::from(caps >> 6) * 3 + 1 };
    let unlimited = scan(body, &JsonLimits::UNLIMITED);
    let capped = scan(body, &limits);
    if body.iter().all(u8::is_ascii_whitespace) {
        assert!(unlimited.is_ok() && capped.is_ok());
        return;
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => {
            // Duplicate keys collapse in a `Value`: compare only bodies
            // without them (the scan counts every member it reads).
            let mut acc = (0, 0, 0);
            shape(&v, 0, &mut acc);
            let s = unlimited.expect("serde_json parses it, so the scan must");
            if s.members == acc.1 {
                assert_eq!((s.nodes, s.members, s.depth), acc, "{:?}", String::from_utf8_lossy(body));
            }
            assert!(s.tree_bytes(body.len()) >= body.len() as u64);
            let over = s.nodes > limits.max_nodes || s.depth > limits.max_depth;
            match &capped {
                Ok(c) => assert!(!over && c == &s, "{s:?} accepted over {limits:?}"),
                Err(ScanError::TooManyNodes { .. } | ScanError::TooDeep { .. }) => assert!(over, "{s:?} refused within {limits:?}"),
                Err(ScanError::Syntax(e)) => panic!("parsed body is a syntax error to the capped scan: {e}"),
            }
            if !over {
                let strict = validate::JsonLimits { max_nodes: limits.max_nodes as usize, max_depth: limits.max_depth as usize };
                // The strict parse may refuse for other reasons (duplicate
                // keys, a top level that is not an object), never for caps
                // the scan found respected.
                if let Err(e) = validate::parse_json(body, strict) {
                    use validate::ValidationErrorKind::{TooDeep, TooManyNodes};
                    assert!(!matches!(e.kind, TooManyNodes | TooDeep), "{e} within {limits:?} ({s:?})");
                }
            }
        }
        Err(e) if e.to_string().contains("recursion limit") => {}
        Err(_) => {
            assert!(unlimited.is_err(), "not JSON, yet scanned: {:?}", String::from_utf8_lossy(body));
        }
    }
});
