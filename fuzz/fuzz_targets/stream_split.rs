//! Differential target for text split across streamed events: stream
//! redaction against whole-text redaction.
//!
//! The input picks a stream kind (ConverseStream, InvokeModelWithResponseStream
//! or InvokeAgent), a JSON path of arbitrary names and depth for the model
//! chunks, and a transport chunking; the rest, cut at 0xFF bytes, is a list
//! of events. Each event's first byte chooses what it is: a piece of one of
//! three parallel texts (content blocks / choices, same path), a keep-alive
//! or unrelated event in between (`{"type": "ping"}`, an agent `trace`), or
//! an event that ends every text (`messageStop`, a model stop chunk, an
//! agent `files` event). Oracles:
//! - every emitted byte is a whole frame with valid CRCs, and the events are
//!   the input's events in the same order (none cut, added or dropped);
//! - for each text, the emitted pieces between two ending events,
//!   concatenated, equal the whole text between them redacted at once
//!   (`Redactor::redact_str`), so no match of any length is missed.
#![no_main]

use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
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

fn frame(event: &str, payload: &[u8]) -> Vec<u8> {
    let msg = Message::new(payload.to_vec())
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
        .add_header(Header::new(":event-type", HeaderValue::String(event.to_string().into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
    let mut out = Vec::new();
    write_message_to(&msg, &mut out).unwrap();
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Converse,
    Model,
    Agent,
}

/// A JSON path of arbitrary member names (taken from the input) and depth,
/// ending in an array of choices each carrying its `index`.
fn model_path(seed: &[u8]) -> Vec<String> {
    let depth = seed.first().map_or(1, |b| 1 + (b % 3) as usize);
    (0..depth)
        .map(|i| {
            let b = seed.get(1 + i).copied().unwrap_or(b'k');
            // Not a protocol field name, and never empty.
            format!("f{}{}", (b'a' + b % 26) as char, i)
        })
        .collect()
}

fn model_piece(path: &[String], slot: usize, text: &str) -> Value {
    let mut v = json!({"index": slot, "t": text});
    for name in path.iter().rev() {
        v = json!({ name.clone(): v });
    }
    json!({"choices": [v]})
}

fn model_text(path: &[String], v: &Value) -> Option<(usize, String)> {
    let mut cur = v.get("choices")?.get(0)?;
    for name in path {
        cur = cur.get(name)?;
    }
    Some((cur.get("index")?.as_u64()? as usize, cur.get("t")?.as_str()?.to_string()))
}

fn encode(kind: Kind, path: &[String], ev: &Ev) -> Vec<u8> {
    let chunk = |inner: &Value| frame("chunk", json!({"bytes": B64.encode(inner.to_string())}).to_string().as_bytes());
    match (kind, ev) {
        (Kind::Converse, Ev::Text(slot, t)) => frame("contentBlockDelta", json!({"contentBlockIndex": slot, "delta": {"text": t}}).to_string().as_bytes()),
        (Kind::Converse, Ev::Between) => frame("contentBlockDelta", json!({"contentBlockIndex": 9, "delta": {}}).to_string().as_bytes()),
        (Kind::Converse, Ev::End) => frame("messageStop", br#"{"stopReason":"end_turn"}"#),
        (Kind::Model, Ev::Text(slot, t)) => chunk(&model_piece(path, *slot, t)),
        (Kind::Model, Ev::Between) => chunk(&json!({"type": "ping"})),
        (Kind::Model, Ev::End) => chunk(&json!({"type": "message_stop", "index": 0})),
        (Kind::Agent, Ev::Text(_, t)) => frame("chunk", json!({"bytes": B64.encode(t)}).to_string().as_bytes()),
        (Kind::Agent, Ev::Between) => frame("trace", br#"{"trace":{"orchestrationTrace":{}}}"#),
        (Kind::Agent, Ev::End) => frame("files", br#"{"files":[]}"#),
    }
}

enum Ev {
    Text(usize, String),
    Between,
    End,
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else { return };
    let Some((&pathseed, rest)) = rest.split_first() else { return };
    let kind = [Kind::Converse, Kind::Model, Kind::Agent][(head % 3) as usize];
    let step = 1 + (head / 3) as usize;
    let path = model_path(&[pathseed, head, pathseed.wrapping_mul(7)]);
    let slots = if kind == Kind::Agent { 1 } else { 3 };
    let evs: Vec<Ev> = rest
        .split(|&b| b == 0xFF)
        .map(|p| match p.split_first() {
            Some((&c, _)) if c % 8 == 6 => Ev::Between,
            Some((&c, _)) if c % 8 == 7 => Ev::End,
            Some((&c, t)) => Ev::Text((c as usize) % slots, String::from_utf8_lossy(t).into_owned()),
            None => Ev::Text(0, String::new()),
        })
        .collect();
    let input: Vec<u8> = evs.iter().flat_map(|e| encode(kind, &path, e)).collect();
    let op = match kind {
        Kind::Converse => StreamShape::Converse,
        Kind::Model => StreamShape::Model,
        Kind::Agent => StreamShape::Agent,
    };

    let r = redactor();
    let mut s = StreamRedactor::new(op, r.clone());
    let mut out = Vec::new();
    for c in input.chunks(step) {
        out.extend_from_slice(&s.push(c).expect("valid frames are accepted"));
    }
    out.extend_from_slice(&s.finish().expect("complete stream"));

    // The same events, in the same order.
    let mut buf = bytes::Bytes::from(out);
    let mut got_evs = Vec::new();
    while !buf.is_empty() {
        got_evs.push(read_message_from(&mut buf).expect("emitted an invalid frame"));
    }
    assert_eq!(got_evs.len(), evs.len(), "events added or dropped");

    // Per text, between ending events: sent pieces vs the whole text.
    let mut want: Vec<Vec<String>> = vec![vec![String::new()]; slots];
    let mut got: Vec<Vec<String>> = vec![vec![String::new()]; slots];
    for (ev, m) in evs.iter().zip(&got_evs) {
        let name = m
            .headers()
            .iter()
            .find(|h| h.name().as_str() == ":event-type")
            .and_then(|h| h.value().as_string().ok())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default();
        match ev {
            Ev::Text(slot, t) => {
                want[*slot].last_mut().unwrap().push_str(t);
                let v: Value = serde_json::from_slice(m.payload()).expect("payload is JSON");
                let sent = match kind {
                    Kind::Converse => {
                        assert_eq!(name, "contentBlockDelta");
                        assert_eq!(v["contentBlockIndex"], *slot);
                        v.pointer("/delta/text").and_then(Value::as_str).unwrap_or("").to_string()
                    }
                    Kind::Model => {
                        let inner: Value = serde_json::from_slice(&B64.decode(v["bytes"].as_str().unwrap()).unwrap()).unwrap();
                        let (i, t) = model_text(&path, &inner).expect("the chunk keeps its shape");
                        assert_eq!(i, *slot);
                        t
                    }
                    Kind::Agent => {
                        assert_eq!(name, "chunk");
                        String::from_utf8(B64.decode(v["bytes"].as_str().unwrap()).unwrap()).expect("UTF-8 text stays UTF-8")
                    }
                };
                got[*slot].last_mut().unwrap().push_str(&sent);
            }
            Ev::Between | Ev::End => {
                let sent = read_message_from(&mut bytes::Bytes::from(encode(kind, &path, ev))).unwrap();
                assert_eq!(m.payload(), sent.payload(), "an event without text changed");
                if matches!(ev, Ev::End) {
                    for s in 0..slots {
                        want[s].push(String::new());
                        got[s].push(String::new());
                    }
                }
            }
        }
    }
    for s in 0..slots {
        for (w, g) in want[s].iter().zip(&got[s]) {
            assert_eq!(*g, r.redact_str(w).0, "split redaction differs from whole-text redaction");
        }
    }
});
