//! ChatCompletions server-sent events: each event's `data` a model chunk,
//! continuing texts per choice, released event by event.

use super::*;

fn chunk(index: u64, content: &str) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "openai.gpt-oss-20b-1:0",
           "choices": [{"index": index, "delta": {"content": content}, "finish_reason": null}]})
}

fn sse(events: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        out.extend_from_slice(format!("data: {e}\n\n").as_bytes());
    }
    out.extend_from_slice(b"data: [DONE]\n\n");
    out
}

/// Runs `input` through in `step`-byte pieces; returns the events'
/// data as the client parses them, and the redactions.
fn run_sse(input: &[u8], step: usize) -> (Vec<String>, u64) {
    let mut s = StreamRedactor::new(StreamShape::ChatCompletions, redactor());
    let mut out = Vec::new();
    for c in input.chunks(step) {
        out.extend_from_slice(&s.push(c).unwrap());
    }
    out.extend_from_slice(&s.finish().unwrap());
    (client_events(&out), s.redactions())
}

/// The events a client parses (`data` lines joined), every event ending in
/// an empty line.
fn client_events(out: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text:?}");
    text.split_terminator("\n\n")
        .map(|ev| ev.lines().filter_map(|l| l.strip_prefix("data: ")).collect::<Vec<_>>().join("\n"))
        .collect()
}

fn content(ev: &str) -> String {
    let v: Value = serde_json::from_str(ev).unwrap();
    v["choices"][0]["delta"]["content"].as_str().unwrap_or("").to_string()
}

#[test]
fn an_id_split_across_two_chat_chunks_is_redacted_in_any_byte_split() {
    let (a, b) = ID.split_at(10);
    let input = sse(&[
        chunk(0, "Hello "),
        chunk(0, &format!("your id is {a}")),
        chunk(0, &format!("{b}, bye")),
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
        json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 9}}),
    ]);
    for step in [1, 2, 7, 64, input.len()] {
        let (events, n) = run_sse(&input, step);
        assert_eq!(n, 1, "step {step}");
        assert_eq!(events.len(), 6, "step {step}: {events:?}");
        let text: String = events[..3].iter().map(|e| content(e)).collect();
        assert_eq!(text, "Hello your id is [redacted], bye", "step {step}");
        assert!(!events.concat().contains(a) || !events.concat().contains(b));
        assert!(!events.iter().any(|e| e.contains(ID)));
        assert_eq!(events[5], "[DONE]");
        let usage: Value = serde_json::from_str(&events[4]).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], 9);
    }
}

#[test]
fn two_choices_are_separate_texts_and_crlf_comments_and_fields_are_handled() {
    // Choice 1 carries the first half, choice 0 text in between, choice 1 the rest.
    let (a, b) = ID.split_at(8);
    let events = [chunk(1, a), chunk(0, "plain"), chunk(1, b)];
    let mut input = Vec::new();
    input.extend_from_slice(b": keep-alive\r\n\r\n");
    for e in &events {
        input.extend_from_slice(format!("event: message\r\nid: 7\r\ndata: {e}\r\n\r\n").as_bytes());
    }
    input.extend_from_slice(b"data: [DONE]\r\n\r\n");
    let mut s = StreamRedactor::new(StreamShape::ChatCompletions, redactor());
    let mut out = s.push(&input).unwrap().to_vec();
    out.extend_from_slice(&s.finish().unwrap());
    assert_eq!(s.redactions(), 1);
    let text = String::from_utf8(out.clone()).unwrap();
    assert!(!text.contains(": keep-alive"));
    assert!(text.starts_with("event: message\nid: 7\ndata: "), "{text}");
    let evs = client_events(&out);
    assert_eq!(evs.len(), 4);
    assert_eq!(content(&evs[0]), "[redacted]");
    assert_eq!(content(&evs[1]), "plain");
    assert_eq!(content(&evs[2]), "");
}

#[test]
fn events_without_a_possible_match_go_out_as_they_arrive() {
    let mut s = StreamRedactor::new(StreamShape::ChatCompletions, redactor());
    let first = format!("data: {}\n\n", chunk(0, "hello there."));
    let out = s.push(first.as_bytes()).unwrap();
    assert_eq!(client_events(&out).len(), 1, "released without waiting for the next event");
    // Half an event: nothing yet.
    let second = format!("data: {}\n\n", chunk(0, "more."));
    let (x, y) = second.split_at(20);
    assert!(s.push(x.as_bytes()).unwrap().is_empty());
    assert_eq!(client_events(&s.push(y.as_bytes()).unwrap()).len(), 1);
    assert_eq!(s.held_bytes(), 0);
}

#[test]
fn broken_streams_end_with_an_error_event_never_a_panic() {
    // A stream cut inside a line.
    let mut s = StreamRedactor::new(StreamShape::ChatCompletions, redactor());
    s.push(b"data: {\"choices\":[").unwrap();
    assert!(matches!(s.finish(), Err(StreamError::Truncated(_))));
    let e = String::from_utf8(s.error_frame("upstream_stream_corrupt", "ended").to_vec()).unwrap();
    assert!(e.starts_with("data: {") && e.ends_with("\n\n"));
    let v: Value = serde_json::from_str(e.trim_start_matches("data: ").trim()).unwrap();
    assert_eq!(v["error"]["code"], "upstream_stream_corrupt");
    // An endless line or event: refused at the bound, before growing past it.
    let mut s = StreamRedactor::new(StreamShape::ChatCompletions, redactor());
    let big = vec![b'x'; MAX_FRAME + 1];
    assert!(matches!(s.push(&big), Err(StreamError::FrameTooLarge(_))));
    assert!(matches!(s.push(b"\n\n"), Err(StreamError::Failed)));
    // Arbitrary bytes in arbitrary pieces.
    let mut seed = 7u64;
    for _ in 0..200 {
        let mut s = StreamRedactor::new(StreamShape::ChatCompletions, redactor());
        let mut buf = Vec::new();
        for _ in 0..64 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let alphabet = b"data: {}[]\"\n\r:x\\u00";
            buf.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
        }
        for c in buf.chunks(5) {
            if s.push(c).is_err() {
                break;
            }
        }
        let _ = s.finish();
    }
}

#[test]
fn a_last_event_without_its_empty_line_is_still_delivered() {
    let input = format!("data: {}\n\ndata: [DONE]\n", chunk(0, "ok"));
    let (events, _) = run_sse(input.as_bytes(), 3);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], "[DONE]");
}

#[test]
fn lone_cr_line_ends_and_long_lines_in_small_pieces() {
    // CR-only line ends, a CR at the end of a piece and at the end of the body.
    let e = chunk(0, "fine.");
    let input = format!("data: {e}\r\rdata: [DONE]\r");
    for step in [1, 3, input.len()] {
        let (events, _) = run_sse(input.as_bytes(), step);
        assert_eq!(events.len(), 2, "step {step}");
        assert_eq!(content(&events[0]), "fine.");
        assert_eq!(events[1], "[DONE]");
    }
    // A 2 MB event in 1 KB pieces: one event out, the text intact.
    let long = "a".repeat(2 * 1024 * 1024) + ".";
    let input = format!("data: {}\n\n", chunk(0, &long));
    let (events, n) = run_sse(input.as_bytes(), 1024);
    assert_eq!(n, 0);
    assert_eq!(events.len(), 1);
    assert_eq!(content(&events[0]), long);
}
