//! Stream tests, continued: the InvokeAgent source check, and continuing
//! texts at arbitrary JSON paths, blocks and choices.

use super::*;

// ---- InvokeAgent source check (docs/reference.md §5.2 applied to agent answers) ----

fn s3_ref(uri: &str) -> Value {
    json!({"content": {"text": "chunk"}, "location": {"type": "S3", "s3Location": {"uri": uri}}})
}

fn agent_chunk_citing(text: &str, uris: &[&str]) -> Vec<u8> {
    let refs: Vec<Value> = uris.iter().map(|u| s3_ref(u)).collect();
    let payload = json!({
        "bytes": B64.encode(text),
        "attribution": {"citations": [{"generatedResponsePart": {"textResponsePart": {"text": text}}, "retrievedReferences": refs}]}
    });
    frame("chunk", payload.to_string().as_bytes())
}

fn agent_trace_retrieving(uri: &str) -> Vec<u8> {
    let payload = json!({"agentId": "A", "trace": {"orchestrationTrace": {"observation": {
        "type": "KNOWLEDGE_BASE",
        "knowledgeBaseLookupOutput": {"retrievedReferences": [s3_ref(uri)]}}}}});
    frame("trace", payload.to_string().as_bytes())
}

fn sources() -> Option<SourceFilter> {
    Some(SourceFilter::new(&["s3://docs/tenants/acme/", "s3://docs/public/"]))
}

#[test]
fn agent_answer_citing_only_allowed_sources_passes_byte_for_byte() {
    let mut input = agent_trace_retrieving("s3://docs/tenants/acme/faq.txt");
    input.extend(agent_chunk_citing("Refunds take 5 days.", &["s3://docs/tenants/acme/faq.txt", "s3://docs/public/terms.txt"]));
    for redactor in [None, Some(redactor())] {
        let mut s = StreamRedactor::for_response(StreamShape::Agent, redactor, sources()).unwrap();
        let mut out = s.push(&input).unwrap().to_vec();
        out.extend_from_slice(&s.finish().unwrap());
        assert_eq!(out, input);
    }
}

#[test]
fn agent_chunk_citing_a_foreign_or_look_alike_source_ends_the_stream_before_it() {
    for foreign in ["s3://docs/tenants/globex/plan.txt", "s3://docs/tenants/acme-evil/x.txt", "s3://docs/tenants/acme/../globex/x"] {
        for redactor in [None, Some(redactor())] {
            let mut s = StreamRedactor::for_response(StreamShape::Agent, redactor, sources()).unwrap();
            let clean = frame("chunk", json!({"bytes": B64.encode("Hello. ")}).to_string().as_bytes());
            let first = s.push(&clean).unwrap();
            let err = s.push(&agent_chunk_citing("Globex pays 9.", &["s3://docs/public/a", foreign])).unwrap_err();
            assert_eq!(err, StreamError::ForeignSource, "{foreign}");
            // Nothing of the foreign chunk was emitted; the stream is over.
            let seen: Vec<String> = decode_all(&first).into_iter().map(|(_, p)| String::from_utf8_lossy(&p).into_owned()).collect();
            assert!(seen.iter().all(|p| !p.contains("Globex")), "{seen:?}");
            assert_eq!(s.finish().unwrap_err(), StreamError::Failed);
        }
    }
}

#[test]
fn agent_trace_retrieving_a_foreign_source_ends_the_stream() {
    let mut s = StreamRedactor::for_response(StreamShape::Agent, None, sources()).unwrap();
    assert_eq!(s.push(&agent_trace_retrieving("s3://docs/tenants/globex/a.txt")).unwrap_err(), StreamError::ForeignSource);
    // A location kind with no address to judge (SQL) is never allowed.
    let mut s = StreamRedactor::for_response(StreamShape::Agent, None, sources()).unwrap();
    let sql = json!({"trace": {"x": {"retrievedReferences": [{"location": {"type": "SQL", "sqlLocation": {"query": "select 1"}}}]}}});
    assert_eq!(s.push(&frame("trace", sql.to_string().as_bytes())).unwrap_err(), StreamError::ForeignSource);
}

#[test]
fn agent_chunk_that_cannot_be_judged_is_not_forwarded() {
    let mut s = StreamRedactor::for_response(StreamShape::Agent, None, sources()).unwrap();
    assert_eq!(s.push(&frame("chunk", b"not json")).unwrap_err(), StreamError::ForeignSource);
    let mut s = StreamRedactor::for_response(StreamShape::Agent, None, sources()).unwrap();
    let bad = json!({"attribution": {"citations": [{"retrievedReferences": "s3://docs/tenants/acme/"}]}});
    assert_eq!(s.push(&frame("chunk", bad.to_string().as_bytes())).unwrap_err(), StreamError::ForeignSource);
    let mut deep = json!({"retrievedReferences": [s3_ref("s3://docs/tenants/globex/a")]});
    for _ in 0..70 {
        deep = json!({ "n": deep });
    }
    let mut s = StreamRedactor::for_response(StreamShape::Agent, None, sources()).unwrap();
    assert!(s.push(&frame("trace", deep.to_string().as_bytes())).is_err());
}

#[test]
fn source_check_applies_only_to_agents_with_prefixes() {
    assert!(StreamRedactor::for_response(StreamShape::Agent, None, None).is_none());
    let none: [&str; 0] = [];
    assert!(StreamRedactor::for_response(StreamShape::Agent, None, Some(SourceFilter::new(&none))).is_none());
    assert!(StreamRedactor::for_response(StreamShape::Converse, None, sources()).is_none());
    // Without prefixes an agent stream is redacted only.
    let mut s = StreamRedactor::for_response(StreamShape::Agent, Some(redactor()), None).unwrap();
    let input = agent_chunk_citing("ok", &["s3://docs/tenants/globex/a"]);
    assert_eq!(s.push(&input).unwrap(), Bytes::from(input));
}

/// Cost of redacting a ConverseStream of short deltas (the shape of
/// `benches/stream.rs`), without the network: run with
/// `cargo test --release --lib redact_cost -- --ignored --nocapture`.
#[test]
#[ignore = "micro-benchmark; run in release"]
fn redact_cost_per_delta() {
    const WORDS: [&str; 8] = [" the", " refund", " is", " on", " its", " way", " sample", " text"];
    let mut input = Vec::new();
    for i in 0..16_000usize {
        let text = format!("{}{}", WORDS[i % 8], WORDS[(i * 7 + 3) % 8]);
        input.extend(frame("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": text}}).to_string().as_bytes()));
    }
    let rounds = 20;
    let t = std::time::Instant::now();
    let mut out_len = 0;
    for _ in 0..rounds {
        let mut s = StreamRedactor::new(StreamShape::Converse, redactor());
        for f in input.chunks(160) {
            out_len += s.push(f).unwrap().len();
        }
        out_len += s.finish().unwrap().len();
    }
    let el = t.elapsed();
    let per_delta = el.as_nanos() as f64 / (rounds * 16_000) as f64;
    let per_mb = el.as_secs_f64() * 1e3 / (rounds as f64 * input.len() as f64 / 1e6);
    println!("{per_delta:.0} ns per delta, {per_mb:.2} ms per MB ({} bytes in, {} out per round)", input.len(), out_len / rounds);
}

#[test]
fn a_held_frame_has_its_other_fields_redacted_too() {
    // "u" could begin "us-...": the frame waits for the stop; its padding
    // field held an id.
    let held = json!({"contentBlockIndex": 0, "delta": {"text": "owner u"}, "p": format!("pad {ID}")});
    let mut input = frame("contentBlockDelta", held.to_string().as_bytes());
    input.extend(frame("contentBlockStop", br#"{"contentBlockIndex":0}"#));
    let (events, n) = run(StreamShape::Converse, &input, 7);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(names, ["contentBlockDelta", "contentBlockStop"]);
    let first = json_of(&events[0].1);
    assert_eq!(first["delta"]["text"], "owner u");
    assert_eq!(first["p"], "pad [redacted]");
    assert_eq!(n, 1);
}

#[test]
fn text_media_types_of_agent_files() {
    for t in ["text/csv", "text/plain; charset=utf-8", "application/json", "application/ld+json", "application/xml",
        "TEXT/HTML", "application/x-yaml"] {
        assert!(is_text_media_type(t), "{t}");
    }
    for t in ["image/png", "application/pdf", "application/octet-stream", "application/zip", ""] {
        assert!(!is_text_media_type(t), "{t}");
    }
}

#[test]
fn keepalive_chunks_are_only_a_type() {
    assert!(is_keepalive_chunk(&json!({"type": "ping"})));
    for v in [json!({"type": "content_block_stop", "index": 0}), json!({"type": 1}), json!({}), json!("ping")] {
        assert!(!is_keepalive_chunk(&v), "{v}");
    }
}

/// The text of every chunk at one inner JSON pointer, concatenated.
fn model_text(events: &[(String, Bytes)], pointer: &str) -> String {
    events.iter().filter_map(|(_, p)| inner_of(p).pointer(pointer)?.as_str().map(String::from)).collect()
}

#[test]
fn id_split_in_model_chunk_fields_outside_any_fixed_list_is_caught() {
    // Nova-style tool input and OpenAI-style reasoning content.
    let (a, b) = ID.split_at(17);
    let nova = |t: &str| json!({"contentBlockDelta": {"delta": {"toolUse": {"input": t}}, "contentBlockIndex": 0}});
    let oai = |t: &str| json!({"id": "c1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"reasoning_content": t}, "finish_reason": null}]});
    for (mk, pointer) in [
        (&nova as &dyn Fn(&str) -> Value, "/contentBlockDelta/delta/toolUse/input"),
        (&oai, "/choices/0/delta/reasoning_content"),
    ] {
        let mut input = model_chunk(&mk(&format!("{{\"user\":\"{a}")));
        input.extend(model_chunk(&mk(&format!("{b}\"}}"))));
        input.extend(model_chunk(&json!({"amazon-bedrock-invocationMetrics": {"outputTokenCount": 2}})));
        for step in [1, 9, input.len()] {
            let (events, n) = run(StreamShape::Model, &input, step);
            assert_eq!(n, 1, "{pointer}");
            assert_eq!(model_text(&events, pointer), "{\"user\":\"[redacted]\"}", "{pointer}");
            assert_eq!(events.len(), 3);
        }
    }
}

#[test]
fn held_text_survives_keepalives_and_other_blocks_or_choices_in_between() {
    let (a, b) = ID.split_at(12);
    // Anthropic: a ping between the two halves.
    let delta = |i: u64, t: &str| json!({"type": "content_block_delta", "index": i, "delta": {"type": "text_delta", "text": t}});
    let mut input = model_chunk(&delta(0, &format!("id {a}")));
    input.extend(model_chunk(&json!({"type": "ping"})));
    input.extend(model_chunk(&delta(0, &format!("{b}.")))); 
    input.extend(model_chunk(&json!({"type": "content_block_stop", "index": 0})));
    let (events, n) = run(StreamShape::Model, &input, 5);
    assert_eq!(n, 1);
    assert_eq!(model_text(&events, "/delta/text"), "id [redacted].");
    let types: Vec<String> = events.iter().map(|(_, p)| inner_of(p)["type"].as_str().unwrap().to_string()).collect();
    assert_eq!(types, ["content_block_delta", "ping", "content_block_delta", "content_block_stop"]);
    // OpenAI-style parallel choices: choice 1 streams between choice 0's halves.
    let choice = |i: u64, t: &str| json!({"object": "chat.completion.chunk", "choices": [{"index": i, "delta": {"content": t}}]});
    let mut input = model_chunk(&choice(0, &format!("a {a}")));
    input.extend(model_chunk(&choice(1, "other choice text ")));
    input.extend(model_chunk(&choice(1, &format!("and {a}"))));
    input.extend(model_chunk(&choice(0, &format!("{b} z"))));
    input.extend(model_chunk(&choice(1, &format!("{b}!"))));
    let (events, n) = run(StreamShape::Model, &input, 7);
    assert_eq!(n, 2);
    let of = |i: u64| -> String {
        events
            .iter()
            .map(|(_, p)| inner_of(p))
            .filter(|v| v["choices"][0]["index"] == i)
            .map(|v| v["choices"][0]["delta"]["content"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(of(0), "a [redacted] z");
    assert_eq!(of(1), "other choice text and [redacted]!");
    // Converse: interleaved blocks keep their own texts.
    let cd = |i: u64, t: &str| frame("contentBlockDelta", json!({"contentBlockIndex": i, "delta": {"text": t}}).to_string().as_bytes());
    let input = [cd(0, &format!("x {a}")), cd(1, "tool "), cd(0, b), cd(1, "done")].concat();
    let (events, n) = run(StreamShape::Converse, &input, 3);
    assert_eq!(n, 1);
    let text0: String = events
        .iter()
        .map(|(_, p)| json_of(p))
        .filter(|v| v["contentBlockIndex"] == 0)
        .map(|v| v["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(text0, "x [redacted]");
}

#[test]
fn a_match_of_700_bytes_split_over_many_deltas_is_caught() {
    let long = format!("us-{}-1:12345678-abcd-1234-462b-123456789abc", "q".repeat(700));
    let text = format!("see {long} end");
    let pieces: Vec<String> = text.as_bytes().chunks(10).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
    let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
    let input = converse_stream(&refs);
    let (events, n) = run(StreamShape::Converse, &input, 64);
    assert_eq!(n, 1);
    let got: String = events
        .iter()
        .filter(|(e, _)| e == "contentBlockDelta")
        .map(|(_, p)| json_of(p)["delta"]["text"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, "see [redacted] end");
    // Same number of deltas: the ones inside the match are emptied.
    assert_eq!(events.iter().filter(|(e, _)| e == "contentBlockDelta").count(), pieces.len());
}

#[test]
fn a_would_be_match_that_never_ends_stops_the_stream_at_the_bound() {
    let mut s = StreamRedactor::new(StreamShape::Converse, redactor());
    let d = |t: &str| frame("contentBlockDelta", json!({"contentBlockIndex": 0, "delta": {"text": t}}).to_string().as_bytes());
    assert_eq!(s.push(&d("ok ")).unwrap().len(), d("ok ").len());
    assert!(s.push(&d("us-")).unwrap().is_empty());
    let letters = "z".repeat(1000);
    let mut err = None;
    for _ in 0..20 {
        match s.push(&d(&letters)) {
            Ok(out) => assert!(out.is_empty(), "a live would-be match was sent"),
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    assert_eq!(err, Some(StreamError::HoldLimit));
    assert_eq!(s.push(b"").unwrap_err(), StreamError::Failed);
}

#[test]
fn frames_behind_an_undecided_text_keep_their_order_and_are_bounded() {
    // An agent chunk ending in "us" waits; traces after it wait behind it.
    let mut s = StreamRedactor::new(StreamShape::Agent, redactor());
    assert!(s.push(&agent_chunk(b"thus")).unwrap().is_empty());
    let trace = frame("trace", br#"{"trace":{"x":"y"}}"#);
    assert!(s.push(&trace).unwrap().is_empty());
    assert_eq!(s.queued_frames(), 2);
    let out = s.push(&agent_chunk(b" far")).unwrap();
    let names: Vec<String> = decode_all(&out).into_iter().map(|(e, _)| e).collect();
    assert_eq!(names, ["chunk", "trace", "chunk"]);
    // More than MAX_QUEUED bytes of traces behind an undecided chunk: the
    // stream ends rather than growing.
    let mut s = StreamRedactor::new(StreamShape::Agent, redactor());
    assert!(s.push(&agent_chunk(b"thus")).unwrap().is_empty());
    let big = frame("trace", format!(r#"{{"trace":{{"x":"{}"}}}}"#, "y".repeat(64 * 1024)).as_bytes());
    let mut err = None;
    for _ in 0..(MAX_QUEUED / (64 * 1024) + 2) {
        if let Err(e) = s.push(&big) {
            err = Some(e);
            break;
        }
    }
    assert_eq!(err, Some(StreamError::HoldLimit));
}

#[test]
fn keys_name_blocks_and_choices_by_their_index() {
    let v = json!({"choices": [{"index": 3, "delta": {"content": "a", "role": "assistant"}}], "object": "x"});
    let l = leaves_of(&v, PROTOCOL_KEYS);
    assert_eq!(l.len(), 1);
    assert_eq!((l[0].0.as_str(), l[0].1.as_str()), ("/choices/0/delta/content", "/choices/#3/delta/content"));
    assert_eq!(shape_of("#12/delta/text"), "#/delta/text");
    assert_eq!(shape_of("/choices/#3/delta/content"), "/choices/#/delta/content");
    let v = json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{"}});
    assert_eq!(leaves_of(&v, PROTOCOL_KEYS)[0].1, "#2/delta/partial_json");
}

#[test]
fn model_chunks_whose_inner_json_is_a_bare_string_or_not_json_are_continuing_texts() {
    let (a, b) = ID.split_at(15);
    let raw_chunk = |inner: &[u8]| frame("chunk", json!({"bytes": B64.encode(inner)}).to_string().as_bytes());
    for (x, y) in [
        (serde_json::to_vec(&format!("say {a}")).unwrap(), serde_json::to_vec(&format!("{b}!")).unwrap()),
        (format!("{{ not json {a}").into_bytes(), format!("{b}!").into_bytes()),
    ] {
        let input = [raw_chunk(&x), raw_chunk(&y)].concat();
        for step in [1, 13, input.len()] {
            let (events, n) = run(StreamShape::Model, &input, step);
            assert_eq!(n, 1, "{}", String::from_utf8_lossy(&x));
            let all: Vec<u8> = events
                .iter()
                .flat_map(|(_, p)| B64.decode(json_of(p)["bytes"].as_str().unwrap()).unwrap())
                .collect();
            assert!(String::from_utf8_lossy(&all).contains("[redacted]"));
            assert!(!String::from_utf8_lossy(&all).contains(&ID[15..]));
        }
    }
}

#[test]
fn an_id_in_a_duplicate_member_or_behind_json_escapes_never_passes() {
    // A JSON parser keeps the last of two members with one name; the first
    // one's bytes must not reach the app either.
    let dup = format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"{ID}","text":"hi"}}}}"#);
    let (events, _) = run(StreamShape::Converse, &frame("contentBlockDelta", dup.as_bytes()), 7);
    assert!(events.iter().all(|(_, p)| !String::from_utf8_lossy(p).contains(&ID[10..])), "{events:?}");
    let inner = format!(r#"{{"type":"content_block_delta","index":0,"delta":{{"text":"{ID}","text":"hi"}}}}"#);
    let chunk = frame("chunk", json!({"bytes": B64.encode(&inner)}).to_string().as_bytes());
    let (events, _) = run(StreamShape::Model, &chunk, 5);
    for (_, p) in &events {
        let inner = B64.decode(json_of(p)["bytes"].as_str().unwrap()).unwrap();
        assert!(!String::from_utf8_lossy(&inner).contains(&ID[10..]), "{}", String::from_utf8_lossy(&inner));
    }
    // An id spelled with JSON unicode escapes, split across two deltas.
    let (a, b) = ID.split_at(12);
    let esc = |t: &str| t.replace('u', "\\u0075").replace('-', "\\u002d");
    let d = |t: String| frame("contentBlockDelta", format!(r#"{{"contentBlockIndex":0,"delta":{{"text":"{t}"}}}}"#).as_bytes());
    let input = [d(format!("id {}", esc(a))), d(format!("{} end", esc(b)))].concat();
    let (events, n) = run(StreamShape::Converse, &input, 3);
    assert_eq!(n, 1);
    let text: String = events.iter().map(|(_, p)| json_of(p)["delta"]["text"].as_str().unwrap().to_string()).collect();
    assert_eq!(text, "id [redacted] end");
}
