//! Arbitrary bytes in arbitrary chunkings into `StreamRedactor` (every
//! streaming operation), and arbitrary strings/bodies into `Redactor`.
//! Invariants: never panics; everything emitted is whole frames with valid
//! CRCs; valid JSON stays valid JSON; redacted text holds no match (the
//! replacement itself cannot match the pattern).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tenantgate::config::RedactionConfig;
use tenantgate::filter::eventstream::StreamRedactor;
use tenantgate::filter::redact::Redactor;
use tenantgate::filter::eventstream::StreamShape;

const PATTERN: &str = r"(?:us|eu|ap|sa|ca|me|af|il|mx)(?:-gov)?-[a-z]+-\d:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";

fn redactor() -> Arc<Redactor> {
    static R: OnceLock<Arc<Redactor>> = OnceLock::new();
    R.get_or_init(|| {
        let cfg = RedactionConfig {
            patterns: vec![PATTERN.into()],
            combined: Some(regex::Regex::new(&format!("(?:{PATTERN})")).unwrap()),
            replacement: "[redacted]".into(),
            strip_response_headers: vec![],
        };
        Redactor::new(&cfg).unwrap()
    })
    .clone()
}

const OPS: [StreamShape; 6] = [
    StreamShape::Converse,
    StreamShape::Model,
    StreamShape::Agent,
    StreamShape::SageMaker,
    StreamShape::Rag,
    StreamShape::ChatCompletions,
];

fn json_valid(b: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(b).is_ok()
}

/// ChatCompletions: what is emitted is whole server-sent events.
fn check_events(out: &[u8]) {
    assert!(out.is_empty() || out.ends_with(b"\n\n"), "emitted part of an event");
}

/// Every emitted byte belongs to a whole frame with valid CRCs.
fn check_frames(out: bytes::Bytes) {
    let mut buf = out;
    while !buf.is_empty() {
        aws_smithy_eventstream::frame::read_message_from(&mut buf).expect("emitted an invalid frame");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let r = redactor();
    if let Ok(s) = std::str::from_utf8(rest) {
        let (out, _) = r.redact_str(s);
        assert!(!regex::Regex::new(PATTERN).unwrap().is_match(&out), "match left in redacted text");
    }
    let (out, _) = r.redact_body(rest, Some("application/json"));
    if json_valid(rest) {
        assert!(json_valid(&out), "JSON body no longer JSON after redaction");
    }
    // `sel` picks the operation and the chunk size.
    let op = OPS[(sel as usize) % OPS.len()];
    let step = 1 + (sel as usize >> 3);
    let check = |b: bytes::Bytes| if op == StreamShape::ChatCompletions { check_events(&b) } else { check_frames(b) };
    let mut s = StreamRedactor::new(op, r);
    for c in rest.chunks(step) {
        match s.push(c) {
            Ok(b) => check(b),
            Err(_) => return,
        }
    }
    if let Ok(b) = s.finish() {
        check(b);
    }
});
