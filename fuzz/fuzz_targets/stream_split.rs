//! Differential target for text split across streamed events: the input is
//! cut into ConverseStream `contentBlockDelta` texts (at 0xFF bytes) and a
//! transport chunking, framed with valid CRCs, and run through
//! `StreamRedactor`. Oracles:
//! - every emitted byte is a whole frame with valid CRCs;
//! - the deltas' concatenated text equals redacting the whole text at once
//!   (`Redactor::redact_str`) whenever the text is shorter than the hold-back
//!   cap; in every case no match of at most `HOLD_BACK` bytes is left in it.
#![no_main]

use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tenantgate::config::RedactionConfig;
use tenantgate::filter::eventstream::StreamRedactor;
use tenantgate::filter::redact::{Redactor, HOLD_BACK};
use tenantgate::route::Operation;

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

fn delta(text: &str) -> Vec<u8> {
    let payload = serde_json::json!({"contentBlockIndex": 0, "delta": {"text": text}}).to_string();
    let msg = Message::new(payload.into_bytes())
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
        .add_header(Header::new(":event-type", HeaderValue::String("contentBlockDelta".into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
    let mut out = Vec::new();
    write_message_to(&msg, &mut out).unwrap();
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else { return };
    let texts: Vec<String> = rest.split(|&b| b == 0xFF).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    let whole: String = texts.concat();
    let mut input: Vec<u8> = texts.iter().flat_map(|t| delta(t)).collect();
    let stop = Message::new(&b"{\"contentBlockIndex\":0}"[..])
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
        .add_header(Header::new(":event-type", HeaderValue::String("contentBlockStop".into())));
    write_message_to(&stop, &mut input).unwrap();

    let r = redactor();
    let mut s = StreamRedactor::new(Operation::ConverseStream, r.clone());
    let mut out = Vec::new();
    for c in input.chunks(1 + step as usize) {
        out.extend_from_slice(&s.push(c).expect("valid frames are accepted"));
    }
    out.extend_from_slice(&s.finish().expect("complete stream"));

    let mut buf = bytes::Bytes::from(out);
    let mut got = String::new();
    let mut stops = 0;
    while !buf.is_empty() {
        let m = read_message_from(&mut buf).expect("emitted an invalid frame");
        let v: serde_json::Value = serde_json::from_slice(m.payload()).expect("payload is JSON");
        match v.pointer("/delta/text").and_then(|t| t.as_str()) {
            Some(t) => {
                assert_eq!(stops, 0, "delta after contentBlockStop");
                got.push_str(t)
            }
            None => stops += 1,
        }
    }
    assert_eq!(stops, 1);
    if whole.len() < HOLD_BACK {
        assert_eq!(got, r.redact_str(&whole).0, "split redaction differs from whole-text redaction");
    }
    let re = regex::Regex::new(PATTERN).unwrap();
    for m in re.find_iter(&got) {
        assert!(m.len() > HOLD_BACK, "match {:?} left in the stream", m.as_str());
    }
});
