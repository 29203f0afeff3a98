//! The request validator (`tenantgate::validate`) on arbitrary input. Layout:
//! byte 0 picks the operation (low 4 bits) and the JSON caps (bit 7: the
//! defaults, else small ones); the rest is `query 0xFF headers 0xFF body`,
//! headers as `name:value` lines. Oracles:
//! - no panic;
//! - a body the strict parser accepts is what serde_json parses, an object,
//!   within the caps, and still valid when checked again (`validate_value`);
//! - forwarded headers are a subset of the input, with no `_` names, no
//!   hop-by-hop or identity header, and no `x-amz-*`/`x-amzn-*` header
//!   the operation's model does not define;
//! - an accepted query string names only model-defined parameters.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tenantgate::route::Operation;
use tenantgate::validate::{self, JsonLimits};

fn depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        serde_json::Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn nodes(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(nodes).sum::<usize>(),
        serde_json::Value::Object(o) => 1 + o.values().map(nodes).sum::<usize>(),
        _ => 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    // The low seven bits choose among every routed operation.
    let op = Operation::ALL[(first & 0x7f) as usize % Operation::ALL.len()];
    let limits = if first & 0x80 != 0 { JsonLimits::default() } else { JsonLimits { max_nodes: 64, max_depth: 6 } };
    let mut parts = rest.splitn(3, |&b| b == 0xff);
    let (q, h, body) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default(), parts.next().unwrap_or_default());

    // Query.
    let q = String::from_utf8_lossy(q);
    let om = validate::operation_model(op).expect("every routed operation has a model");
    if validate::query(op, Some(&q)).is_ok() {
        for p in q.split('&').filter(|p| !p.is_empty()) {
            let name = p.split('=').next().unwrap_or_default().replace('+', " ");
            let name = percent_encoding::percent_decode_str(&name).decode_utf8().unwrap();
            assert!(om.defines_query(&name), "{name}");
        }
    }

    // Headers.
    let identity = http::HeaderName::from_static("x-tenant-id");
    let mut headers = http::HeaderMap::new();
    for line in h.split(|&b| b == b'\n') {
        let mut kv = line.splitn(2, |&b| b == b':');
        let (Some(k), Some(v)) = (kv.next(), kv.next()) else { continue };
        if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k), http::HeaderValue::from_bytes(v)) {
            headers.append(k, v);
        }
    }
    if let Ok(out) = validate::request_headers(op, &headers, &identity) {
        for (k, v) in &out {
            let n = k.as_str();
            assert!(headers.get_all(k).iter().any(|x| x == v), "{n} was not sent");
            assert!(!n.contains('_') && k != identity && n != "connection" && n != "transfer-encoding" && n != "te");
            if n.starts_with("x-amz-") || n.starts_with("x-amzn-") {
                assert!(om.defines_header(n) || n == "x-amz-user-agent" || n == "x-amzn-trace-id", "{n}");
            }
        }
    }

    // Body.
    let body = Bytes::copy_from_slice(body);
    if let Ok(Some(v)) = validate::validate_body(op, &body, limits) {
        assert!(v.is_object());
        if !body.iter().all(u8::is_ascii_whitespace) {
            let plain: serde_json::Value = serde_json::from_slice(&body).expect("accepted body is JSON");
            assert_eq!(plain, v);
        }
        assert!(nodes(&v) <= limits.max_nodes && depth(&v) <= limits.max_depth);
        validate::validate_value(op, &v).expect("an accepted body stays valid");
    }
    let _ = validate::parse_json(&body, limits);
});
