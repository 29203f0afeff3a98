use super::*;
use crate::filter::redact::tests::{redactor, ID};
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use serde_json::json;

fn frame(event: &str, payload: &[u8]) -> Vec<u8> {
    let msg = Message::new(payload.to_vec())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event.to_string().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ));
    let mut out = Vec::new();
    write_message_to(&msg, &mut out).unwrap();
    out
}

/// Decodes the output back with the SDK's decoder (every CRC checked);
/// panics on a bad or partial frame.
fn decode_all(bytes: &[u8]) -> Vec<(String, Bytes)> {
    let mut buf = BytesMut::from(bytes);
    let mut dec = MessageFrameDecoder::new();
    let mut out = Vec::new();
    while !buf.is_empty() {
        match dec.decode_frame(&mut buf).expect("valid frame") {
            DecodedFrame::Complete(m) => {
                out.push((header_str(&m, ":event-type").unwrap().to_string(), m.payload().clone()))
            }
            DecodedFrame::Incomplete => panic!("trailing partial frame"),
        }
    }
    out
}

fn run(op: StreamShape, input: &[u8], step: usize) -> (Vec<(String, Bytes)>, u64) {
    let mut s = StreamRedactor::new(op, redactor());
    let mut out = Vec::new();
    for c in input.chunks(step) {
        out.extend_from_slice(&s.push(c).unwrap());
    }
    out.extend_from_slice(&s.finish().unwrap());
    (decode_all(&out), s.redactions())
}

fn json_of(b: &[u8]) -> Value {
    serde_json::from_slice(b).unwrap()
}

#[test]
fn id_split_over_three_converse_deltas_is_caught_and_output_has_valid_crcs() {
    let (a, b) = ID.split_at(12);
    let (b, c) = b.split_at(15);
    let mut input = frame("messageStart", br#"{"role":"assistant"}"#);
    for t in [format!("your id is {a}"), b.to_string(), format!("{c} ok")] {
        input.extend(frame(
            "contentBlockDelta",
            json!({"delta": {"text": t}, "contentBlockIndex": 0})
                .to_string()
                .as_bytes(),
        ));
    }
    input.extend(frame("contentBlockStop", br#"{"contentBlockIndex":0}"#));
    input.extend(frame("messageStop", br#"{"stopReason":"end_turn"}"#));
    input.extend(frame(
        "metadata",
        br#"{"usage":{"inputTokens":3,"outputTokens":4}}"#,
    ));
    for step in [1, 7, input.len()] {
        let (events, n) = run(StreamShape::Converse, &input, step);
        assert_eq!(n, 1);
        let text: String = events
            .iter()
            .filter(|(e, _)| e == "contentBlockDelta")
            .map(|(_, p)| json_of(p)["delta"]["text"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(text, "your id is [redacted] ok");
        let mut types: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
        types.dedup();
        assert_eq!(
            types,
            [
                "messageStart",
                "contentBlockDelta",
                "contentBlockStop",
                "messageStop",
                "metadata"
            ]
        );
        for (e, p) in &events {
            assert!(!String::from_utf8_lossy(p).contains("12345678-abcd"), "{e}");
            if e == "contentBlockDelta" {
                assert_eq!(json_of(p)["contentBlockIndex"], 0);
            }
        }
    }
}

#[test]
fn converse_exception_and_other_events_have_json_strings_redacted() {
    let mut input = frame("messageStart", format!(r#"{{"role":"{ID}"}}"#).as_bytes());
    let mut exc = Vec::new();
    let msg = Message::new(format!(r#"{{"message":"bad {ID}"}}"#).into_bytes())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("exception".into()),
        ))
        .add_header(Header::new(
            ":exception-type",
            HeaderValue::String("validationException".into()),
        ))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String("validationException".into()),
        ));
    write_message_to(&msg, &mut exc).unwrap();
    input.extend(exc);
    let (events, n) = run(StreamShape::Converse, &input, 5);
    assert_eq!(n, 2);
    assert_eq!(json_of(&events[0].1)["role"], "[redacted]");
    assert_eq!(json_of(&events[1].1)["message"], "bad [redacted]");
}

fn model_chunk(inner: &Value) -> Vec<u8> {
    let payload = json!({"bytes": B64.encode(inner.to_string()), "p": "abcdef"});
    frame("chunk", payload.to_string().as_bytes())
}

fn inner_of(p: &[u8]) -> Value {
    let outer = json_of(p);
    json_of(&B64.decode(outer["bytes"].as_str().unwrap()).unwrap())
}

#[test]
fn id_split_across_invoke_model_stream_chunks_at_the_same_json_path_is_caught() {
    let (a, b) = ID.split_at(20);
    let delta = |t: &str| json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}});
    let mut input =
        model_chunk(&json!({"type": "message_start", "message": {"id": format!("msg {ID}")}}));
    input.extend(model_chunk(&delta(&format!("id {a}"))));
    input.extend(model_chunk(&delta(&format!("{b}!"))));
    input.extend(model_chunk(
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    input.extend(model_chunk(&json!({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 5, "outputTokenCount": 3}})));
    let (events, n) = run(StreamShape::Model, &input, 3);
    assert_eq!(n, 2);
    let inners: Vec<Value> = events.iter().map(|(_, p)| inner_of(p)).collect();
    assert_eq!(inners[0]["message"]["id"], "msg [redacted]");
    let text: String = inners
        .iter()
        .filter_map(|v| v.pointer("/delta/text")?.as_str().map(String::from))
        .collect();
    assert_eq!(text, "id [redacted]!");
    let types: Vec<&str> = inners.iter().map(|v| v["type"].as_str().unwrap()).collect();
    let mut dedup = types.clone();
    dedup.dedup();
    assert_eq!(
        dedup,
        [
            "message_start",
            "content_block_delta",
            "content_block_stop",
            "message_stop"
        ]
    );
    assert_eq!(
        inners.last().unwrap()["amazon-bedrock-invocationMetrics"]["outputTokenCount"],
        3
    );
    assert!(events.iter().all(|(_, p)| json_of(p)["p"] == "abcdef"));
}

#[test]
fn titan_text_split_into_the_final_chunk_is_caught() {
    let (a, b) = ID.split_at(30);
    let mut input = model_chunk(&json!({"outputText": format!("x {a}"), "index": 0}));
    input.extend(model_chunk(
        &json!({"outputText": format!("{b} y"), "index": 0, "completionReason": "FINISH",
        "amazon-bedrock-invocationMetrics": {"outputTokenCount": 2}}),
    ));
    let (events, n) = run(StreamShape::Model, &input, 64);
    assert_eq!((events.len(), n), (2, 1));
    let text: String = events
        .iter()
        .map(|(_, p)| inner_of(p)["outputText"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text, "x [redacted] y");
}

fn agent_chunk(text: &[u8]) -> Vec<u8> {
    frame(
        "chunk",
        json!({"bytes": B64.encode(text), "attribution": {"citations": []}})
            .to_string()
            .as_bytes(),
    )
}

#[test]
fn id_split_across_invoke_agent_chunks_is_caught() {
    let (a, b) = ID.as_bytes().split_at(9);
    let mut input = agent_chunk(&[b"agent says ".as_slice(), a].concat());
    input.extend(agent_chunk(b));
    input.extend(frame(
        "trace",
        format!(r#"{{"trace":{{"x":"{ID}"}}}}"#).as_bytes(),
    ));
    let (events, n) = run(StreamShape::Agent, &input, 11);
    assert_eq!(n, 2);
    let text: Vec<u8> = events
        .iter()
        .filter(|(e, _)| e == "chunk")
        .flat_map(|(_, p)| B64.decode(json_of(p)["bytes"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(text, b"agent says [redacted]");
    // A trace does not end held chunk text (it may go out before the
    // held tail); it is redacted on its own.
    let traces: Vec<_> = events.iter().filter(|(e, _)| e == "trace").collect();
    assert_eq!(traces.len(), 1);
    assert_eq!(json_of(&traces[0].1)["trace"]["x"], "[redacted]");
}

fn payload_part(b: &[u8]) -> Vec<u8> {
    let msg = Message::new(b.to_vec())
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String("PayloadPart".into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/octet-stream".into()),
        ));
    let mut out = Vec::new();
    write_message_to(&msg, &mut out).unwrap();
    out
}

#[test]
fn sagemaker_payload_parts_with_split_utf8_and_split_id_are_redacted() {
    let text = format!("héllo wörld {ID} ünïcode ✓");
    let bytes = text.as_bytes();
    let want = redactor().redact_str(&text).0.into_owned();
    for cut in 1..bytes.len() {
        let mut input = payload_part(&bytes[..cut]);
        input.extend(payload_part(&bytes[cut..]));
        let (events, n) = run(StreamShape::SageMaker, &input, 13);
        assert_eq!(n, 1);
        let got: Vec<u8> = events.iter().flat_map(|(_, p)| p.to_vec()).collect();
        assert_eq!(String::from_utf8(got).unwrap(), want, "cut {cut}");
    }
}

#[test]
fn sagemaker_binary_payload_passes_unchanged() {
    let bin: Vec<u8> = (0..=255u8).rev().cycle().take(2000).collect();
    let (events, n) = run(
        StreamShape::SageMaker,
        &payload_part(&bin),
        100,
    );
    let got: Vec<u8> = events.iter().flat_map(|(_, p)| p.to_vec()).collect();
    assert_eq!((n, got), (0, bin));
}

#[test]
fn bad_crc_is_an_error_and_nothing_more_is_forwarded() {
    let mut input = frame(
        "contentBlockDelta",
        br#"{"delta":{"text":"hi"},"contentBlockIndex":0}"#,
    );
    let last = input.len() - 1;
    input[last] ^= 0xff;
    let mut s = StreamRedactor::new(StreamShape::Converse, redactor());
    assert!(matches!(s.push(&input), Err(StreamError::Decode(_))));
    assert_eq!(s.push(b"").unwrap_err(), StreamError::Failed);
    assert_eq!(s.finish().unwrap_err(), StreamError::Failed);
}

#[test]
fn truncated_stream_is_an_error_at_finish() {
    let input = frame(
        "contentBlockDelta",
        br#"{"delta":{"text":"hi"},"contentBlockIndex":0}"#,
    );
    let mut s = StreamRedactor::new(StreamShape::Converse, redactor());
    assert!(s.push(&input[..input.len() - 3]).unwrap().is_empty());
    assert!(matches!(s.finish(), Err(StreamError::Truncated(_))));
}

#[test]
fn oversized_frame_is_an_error_before_it_is_buffered() {
    let mut s = StreamRedactor::new(StreamShape::SageMaker, redactor());
    let len = (MAX_FRAME as u32 + 1).to_be_bytes();
    assert_eq!(
        s.push(&len).unwrap_err(),
        StreamError::FrameTooLarge(MAX_FRAME + 1)
    );
}

#[test]
fn a_megabyte_of_deltas_without_matches_passes_frame_for_frame_holding_nothing() {
    let mut s = StreamRedactor::new(StreamShape::Converse, redactor());
    let piece = "us-east-1:abc déjà vu ".repeat(20);
    let f = frame(
        "contentBlockDelta",
        json!({"delta": {"text": piece}, "contentBlockIndex": 0})
            .to_string()
            .as_bytes(),
    );
    for _ in 0..(1_000_000 / piece.len()) {
        assert_eq!(&s.push(&f).unwrap()[..], &f[..]);
        assert_eq!((s.held_bytes(), s.queued_frames()), (0, 0));
    }
    assert!(s.finish().unwrap().is_empty());
    assert_eq!(s.redactions(), 0);
}

#[test]
fn arbitrary_bytes_in_arbitrary_chunks_never_panic_and_emit_only_valid_frames() {
    let mut valid = frame(
        "contentBlockDelta",
        json!({"delta": {"text": ID}, "contentBlockIndex": 0})
            .to_string()
            .as_bytes(),
    );
    valid.extend(model_chunk(&json!({"outputText": ID})));
    valid.extend(agent_chunk(ID.as_bytes()));
    valid.extend(payload_part(ID.as_bytes()));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..150 {
        let mut input = valid.clone();
        // Flip a few bytes in most rounds (CRC errors), keep some rounds intact.
        for _ in 0..(round % 4) {
            let i = next() as usize % input.len();
            input[i] ^= (next() as u8) | 1;
        }
        for op in [
            StreamShape::Converse,
            StreamShape::Model,
            StreamShape::Agent,
            StreamShape::SageMaker,
            StreamShape::Other,
        ] {
            let mut s = StreamRedactor::new(op, redactor());
            let mut out = Vec::new();
            let mut rest = &input[..];
            let mut ok = true;
            while !rest.is_empty() {
                let n = 1 + next() as usize % 64;
                let (c, r) = rest.split_at(n.min(rest.len()));
                rest = r;
                match s.push(c) {
                    Ok(b) => out.extend_from_slice(&b),
                    Err(_) => {
                        ok = false;
                        break;
                    }
                }
            }
            if ok {
                if let Ok(b) = s.finish() {
                    out.extend_from_slice(&b);
                }
            }
            for (_, p) in decode_all(&out) {
                assert!(!String::from_utf8_lossy(&p).contains(ID));
            }
        }
    }
}

fn converse_stream(deltas: &[&str]) -> Vec<u8> {
    let mut input = frame("messageStart", br#"{"role":"assistant"}"#);
    for t in deltas {
        input.extend(frame(
            "contentBlockDelta",
            json!({"contentBlockIndex": 0, "delta": {"text": t}}).to_string().as_bytes(),
        ));
    }
    input.extend(frame("contentBlockStop", br#"{"contentBlockIndex":0}"#));
    input.extend(frame("messageStop", br#"{"stopReason":"end_turn"}"#));
    input
}

fn push_all(op: StreamShape, r: Arc<Redactor>, input: &[u8], step: usize) -> Vec<u8> {
    let mut s = StreamRedactor::new(op, r);
    let mut out = Vec::new();
    for c in input.chunks(step) {
        out.extend_from_slice(&s.push(c).unwrap());
    }
    out.extend_from_slice(&s.finish().unwrap());
    out
}

/// docs/reference.md §7: short deltas that cannot begin an identity id are forwarded at
/// once and unchanged, one event for one event.
#[test]
fn short_deltas_without_a_possible_match_pass_byte_for_byte() {
    let input = converse_stream(&["Hello", ", ", "world", ". 42 or", " the answer."]);
    let out = push_all(StreamShape::Converse, redactor(), &input, input.len());
    assert_eq!(out, input);
    // Fed frame by frame, each delta is emitted as soon as it arrives.
    let mut s = StreamRedactor::new(StreamShape::Converse, redactor());
    let frames = split_frames(&input);
    for f in &frames {
        assert_eq!(&s.push(f).unwrap()[..], &f[..]);
    }
    assert!(s.finish().unwrap().is_empty());
}

/// Splits encoded frames apart by their length prefix.
fn split_frames(mut b: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
        out.push(b[..n].to_vec());
        b = &b[n..];
    }
    out
}

/// A delta whose text ends in what could begin a match waits for the next
/// delta of its block, which decides it; events are never cut or added, and
/// frames without a match go out as upstream sent them.
#[test]
fn a_possible_match_start_holds_its_frame_until_the_next_delta_decides_it() {
    let input = converse_stream(&["Thus", " far, us", "-west-2 is a region"]);
    let frames = split_frames(&input);
    let mut s = StreamRedactor::new(StreamShape::Converse, redactor());
    assert_eq!(&s.push(&frames[0]).unwrap()[..], &frames[0][..], "messageStart goes at once");
    // "Thus" ends in "us", which could begin "us-west-2:...": it waits.
    assert!(s.push(&frames[1]).unwrap().is_empty());
    assert_eq!(s.queued_frames(), 1);
    // " far, us" decides "Thus" (sent as it was) and waits itself.
    assert_eq!(&s.push(&frames[2]).unwrap()[..], &frames[1][..]);
    // "-west-2 is a region" decides it: no id follows.
    assert_eq!(&s.push(&frames[3]).unwrap()[..], &[&frames[2][..], &frames[3][..]].concat()[..]);
    let rest: Vec<u8> = frames[4..].iter().flat_map(|f| s.push(f).unwrap()).collect();
    assert_eq!(rest, frames[4..].concat());
    assert!(s.finish().unwrap().is_empty());
    assert_eq!(s.redactions(), 0);
    // Held at the block's end: the stop decides it, nothing is added.
    let input = converse_stream(&["ends with us"]);
    assert_eq!(push_all(StreamShape::Converse, redactor(), &input, 1), input);
}

/// docs/reference.md §7 / [redaction]: a pattern that never matches (nor begins to)
/// changes no byte of any stream kind, whatever the chunking. (An event
/// whose text could begin a match waits for the next one, but goes out
/// unchanged; see the test above.)
#[test]
fn a_pattern_that_never_matches_changes_no_byte_of_any_stream() {
    let never = crate::filter::redact::tests::redactor_for(&["zz-never-[0-9]{40}"]);
    let mut model = model_chunk(&json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": "héllo"}}));
    model.extend(model_chunk(&json!({"outputText": "x", "amazon-bedrock-invocationMetrics": {"inputTokenCount": 1}})));
    let cases: Vec<(StreamShape, Vec<u8>)> = vec![
        (StreamShape::Converse, converse_stream(&["never", "-", "1234", " done"])),
        (StreamShape::Model, model),
        (StreamShape::Agent, [agent_chunk(b"never"), agent_chunk(b"-1")].concat()),
        (StreamShape::SageMaker, [payload_part(b"ne"), payload_part(&[0xff, 0, 1])].concat()),
    ];
    for (op, input) in cases {
        for step in [1, 5, 64, input.len()] {
            assert_eq!(push_all(op, never.clone(), &input, step), input, "{op:?} step {step}");
        }
    }
}

/// docs/reference.md §7 robustness: the error event is a valid exception frame that
/// boto3 raises as an error of a type the operation models.
#[test]
fn error_frame_is_a_valid_exception_message() {
    for (op, ty) in [
        (StreamShape::Converse, "serviceUnavailableException"),
        (StreamShape::Model, "serviceUnavailableException"),
        (StreamShape::Agent, "badGatewayException"),
        (StreamShape::SageMaker, "InternalStreamFailure"),
    ] {
        let s = StreamRedactor::new(op, redactor());
        let f = s.error_frame("upstream_stream_corrupt", "bad frame");
        let mut buf = BytesMut::from(&f[..]);
        let DecodedFrame::Complete(m) = MessageFrameDecoder::new().decode_frame(&mut buf).unwrap() else {
            panic!("partial")
        };
        assert_eq!(header_str(&m, ":message-type"), Some("exception"));
        assert_eq!(header_str(&m, ":exception-type"), Some(ty));
        assert_eq!(json_of(m.payload())["reason"], "upstream_stream_corrupt");
        assert!(buf.is_empty());
    }
}

/// docs/reference.md §7: RetrieveAndGenerateStream `output` text continues across events
/// like Converse deltas, also across a citation between them; events are
/// neither cut nor added and keep their order.
#[test]
fn id_split_across_rag_stream_output_events_is_caught() {
    let (a, b) = ID.split_at(4);
    let mut input = frame("output", json!({"text": format!("see {a}")}).to_string().as_bytes());
    input.extend(frame("output", json!({"text": format!("{b} and us")}).to_string().as_bytes()));
    input.extend(frame("citation", br#"{"citation":{"retrievedReferences":[]}}"#));
    let (c, d) = ID.split_at(30);
    input.extend(frame("output", json!({"text": format!(" {c}")}).to_string().as_bytes()));
    input.extend(frame("citation", br#"{"citation":{"retrievedReferences":[]}}"#));
    input.extend(frame("output", json!({"text": d}).to_string().as_bytes()));
    let (events, n) = run(StreamShape::Rag, &input, 3);
    assert_eq!(n, 2);
    let texts: Vec<String> = events
        .iter()
        .filter(|(e, _)| e == "output")
        .map(|(_, p)| json_of(p)["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.concat(), "see [redacted] and us [redacted]");
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["output", "output", "citation", "output", "citation", "output"]);
}

/// AgenticRetrieveStream `responseEvent` text continues across events, also
/// across a `traceEvent` between them; the `result` event's strings are
/// redacted on their own.
#[test]
fn id_split_across_agentic_response_events_is_caught() {
    let (a, b) = ID.split_at(9);
    let mut input = frame("responseEvent", json!({"text": format!("see {a}")}).to_string().as_bytes());
    input.extend(frame("traceEvent", br#"{"id":"t1","timestamp":1,"attributes":{"message":"m","status":"IN_PROGRESS","step":"Planning"}}"#));
    input.extend(frame("responseEvent", json!({"text": format!("{b} now")}).to_string().as_bytes()));
    input.extend(frame("result", json!({"results": [], "generatedResponse": {"answer": format!("see {ID} now")}}).to_string().as_bytes()));
    let (events, n) = run(StreamShape::Agentic, &input, 5);
    assert_eq!(n, 2);
    let texts: Vec<String> = events
        .iter()
        .filter(|(e, _)| e == "responseEvent")
        .map(|(_, p)| json_of(p)["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(texts.concat(), "see [redacted] now");
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["responseEvent", "traceEvent", "responseEvent", "result"]);
    assert_eq!(json_of(&events[3].1)["generatedResponse"]["answer"], "see [redacted] now");
}

mod sources_and_paths;

mod chat_sse;
