//! Token usage read from Bedrock responses as they stream past (docs/reference.md §5.1):
//! Converse `usage`, ConverseStream `metadata` events, and
//! InvokeModelWithResponseStream `amazon-bedrock-invocationMetrics` inside
//! chunk payloads, and ChatCompletions `usage` (`prompt_tokens`,
//! `completion_tokens`) in its JSON answer or in the `data` of its last
//! server-sent event. (InvokeModel reports usage in response headers, read
//! before the body.) The tap only observes copies of the bytes; it never
//! delays or changes what is forwarded, and it gives up quietly (usage
//! unknown) on anything it cannot parse or on frames larger than
//! `MAX_OBSERVED`.

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::{HeaderValue, Message};
use base64::Engine;
use bytes::BytesMut;
use serde_json::Value;

/// Largest body (Converse) or single frame (streams) the tap will hold.
pub const MAX_OBSERVED: usize = 4 * 1024 * 1024;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub input: Option<u64>,
    pub output: Option<u64>,
    /// Guardrail text units (InvokeGuardrailChecks' `usage`, summed over
    /// the kinds of checks run); not tokens, never charged to token limits.
    pub text_units: Option<u64>,
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.input.unwrap_or(0) + self.output.unwrap_or(0)
    }
}

/// Where an operation's answers report token usage (the family decides,
/// `crate::family::ResponseShape`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// Response headers only (InvokeModel), or nowhere.
    Headers,
    /// The `usage` member of a JSON answer (Converse).
    ConverseBody,
    /// The `usage` member of InvokeGuardrailChecks' JSON answer: text
    /// units per kind of check.
    GuardrailChecksBody,
    /// ConverseStream `metadata` events.
    ConverseEvents,
    /// `amazon-bedrock-invocationMetrics` inside InvokeModelWithResponseStream chunks.
    ModelChunks,
    /// ChatCompletions: `usage` of the JSON answer, or of the server-sent
    /// event that reports it (a stream with `include_usage`); which one is
    /// told by the answer's first byte (`{` for JSON).
    ChatCompletions,
}

enum Mode {
    Off,
    /// A JSON answer; `units`: guardrail text units rather than tokens.
    Json { buf: BytesMut, units: bool },
    Stream { buf: BytesMut, decoder: MessageFrameDecoder, chunks: bool },
    /// ChatCompletions before its first byte.
    ChatSniff,
    /// Server-sent events: `buf` holds the current line only.
    Sse { buf: BytesMut },
}

pub struct UsageTap {
    mode: Mode,
    usage: Usage,
}

impl UsageTap {
    pub fn new(source: UsageSource, status_ok: bool) -> UsageTap {
        let mode = match source {
            _ if !status_ok => Mode::Off,
            UsageSource::Headers => Mode::Off,
            UsageSource::ConverseBody => Mode::Json { buf: BytesMut::new(), units: false },
            UsageSource::GuardrailChecksBody => Mode::Json { buf: BytesMut::new(), units: true },
            UsageSource::ConverseEvents => {
                Mode::Stream { buf: BytesMut::new(), decoder: MessageFrameDecoder::new(), chunks: false }
            }
            UsageSource::ModelChunks => {
                Mode::Stream { buf: BytesMut::new(), decoder: MessageFrameDecoder::new(), chunks: true }
            }
            UsageSource::ChatCompletions => Mode::ChatSniff,
        };
        UsageTap { mode, usage: Usage::default() }
    }

    pub fn off() -> UsageTap {
        UsageTap { mode: Mode::Off, usage: Usage::default() }
    }

    pub fn is_off(&self) -> bool {
        matches!(self.mode, Mode::Off)
    }

    pub fn observe(&mut self, data: &[u8]) {
        if matches!(self.mode, Mode::ChatSniff) {
            match data.iter().find(|b| !b.is_ascii_whitespace()) {
                None => return,
                Some(b'{') => self.mode = Mode::Json { buf: BytesMut::new(), units: false },
                Some(_) => self.mode = Mode::Sse { buf: BytesMut::new() },
            }
        }
        match &mut self.mode {
            Mode::Off | Mode::ChatSniff => {}
            Mode::Sse { buf } => {
                let mut rest = data;
                while let Some(i) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
                    buf.extend_from_slice(&rest[..i]);
                    if let Some(u) = sse_line_usage(buf) {
                        self.usage = u;
                    }
                    buf.clear();
                    rest = &rest[i + 1..];
                }
                if buf.len() + rest.len() > MAX_OBSERVED {
                    self.mode = Mode::Off;
                } else {
                    buf.extend_from_slice(rest);
                }
            }
            Mode::Json { buf, .. } => {
                if buf.len() + data.len() > MAX_OBSERVED {
                    self.mode = Mode::Off;
                } else {
                    buf.extend_from_slice(data);
                }
            }
            Mode::Stream { buf, decoder, chunks } => {
                buf.extend_from_slice(data);
                loop {
                    match decoder.decode_frame(&mut *buf) {
                        Ok(DecodedFrame::Complete(msg)) => {
                            if let Some(u) = stream_usage(&msg, *chunks) {
                                self.usage = u;
                            }
                        }
                        Ok(DecodedFrame::Incomplete) => break,
                        Err(_) => {
                            self.mode = Mode::Off;
                            return;
                        }
                    }
                }
                if buf.len() > MAX_OBSERVED {
                    self.mode = Mode::Off;
                }
            }
        }
    }

    /// Usage known at the end of the response.
    pub fn finish(&mut self) -> Usage {
        if let Mode::Sse { buf } = &self.mode {
            if let Some(u) = sse_line_usage(buf) {
                self.usage = u;
            }
            self.mode = Mode::Off;
        }
        if let Mode::Json { buf, units } = &self.mode {
            if let Ok(v) = serde_json::from_slice::<Value>(buf) {
                self.usage = if *units {
                    Usage { text_units: guardrail_text_units(&v), ..Usage::default() }
                } else if let Some(u) = chat_usage(&v) {
                    u
                } else {
                    Usage {
                        input: v.pointer("/usage/inputTokens").and_then(Value::as_u64),
                        output: v.pointer("/usage/outputTokens").and_then(Value::as_u64),
                        text_units: None,
                    }
                };
            }
            self.mode = Mode::Off;
        }
        self.usage
    }
}

/// ChatCompletions' `usage` (`prompt_tokens`, `completion_tokens`), in the
/// JSON answer or a stream chunk; None when the value reports none.
fn chat_usage(v: &Value) -> Option<Usage> {
    let u = v.get("usage")?;
    let input = u.get("prompt_tokens").and_then(Value::as_u64);
    let output = u.get("completion_tokens").and_then(Value::as_u64);
    (input.is_some() || output.is_some()).then_some(Usage { input, output, text_units: None })
}

/// One line of a server-sent event stream: the usage its `data` field
/// reports, if any.
fn sse_line_usage(line: &[u8]) -> Option<Usage> {
    let data = line.strip_prefix(b"data:")?;
    let data = data.strip_prefix(b" ").unwrap_or(data);
    if !data.starts_with(b"{") {
        return None;
    }
    chat_usage(&serde_json::from_slice::<Value>(data).ok()?)
}

/// InvokeGuardrailChecks' `usage`: `{"contentFilter": {"textUnits": N}, ...}`,
/// summed over the kinds present; none when it states none.
fn guardrail_text_units(v: &Value) -> Option<u64> {
    let usage = v.get("usage")?.as_object()?;
    let mut total: Option<u64> = None;
    for kind in crate::config::GUARDRAIL_CHECK_KINDS {
        if let Some(n) = usage.get(kind).and_then(|k| k.get("textUnits")).and_then(Value::as_u64) {
            total = Some(total.unwrap_or(0).saturating_add(n));
        }
    }
    total
}

fn event_type(msg: &Message) -> Option<&str> {
    msg.headers().iter().find(|h| h.name().as_str() == ":event-type").and_then(|h| match h.value() {
        HeaderValue::String(s) => Some(s.as_str()),
        _ => None,
    })
}

fn stream_usage(msg: &Message, chunks: bool) -> Option<Usage> {
    let et = event_type(msg)?;
    if !chunks {
        if et != "metadata" {
            return None;
        }
        let v: Value = serde_json::from_slice(msg.payload()).ok()?;
        return Some(Usage {
            input: v.pointer("/usage/inputTokens").and_then(Value::as_u64),
            output: v.pointer("/usage/outputTokens").and_then(Value::as_u64),
            text_units: None,
        });
    }
    if et != "chunk" {
        return None;
    }
    let v: Value = serde_json::from_slice(msg.payload()).ok()?;
    let b64 = v.get("bytes")?.as_str()?;
    let inner = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let inner: Value = serde_json::from_slice(&inner).ok()?;
    let m = inner.get("amazon-bedrock-invocationMetrics")?;
    Some(Usage {
        input: m.get("inputTokenCount").and_then(Value::as_u64),
        output: m.get("outputTokenCount").and_then(Value::as_u64),
        text_units: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::Header;

    fn frame(event: &str, payload: &[u8]) -> Vec<u8> {
        let msg = Message::new(payload.to_vec())
            .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
            .add_header(Header::new(":event-type", HeaderValue::String(event.to_string().into())))
            .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
        let mut out = Vec::new();
        write_message_to(&msg, &mut out).unwrap();
        out
    }

    #[test]
    fn converse_usage_from_the_json_body_split_anywhere() {
        let body = br#"{"output":{"message":{"role":"assistant","content":[{"text":"hi"}]}},"usage":{"inputTokens":11,"outputTokens":7,"totalTokens":18}}"#;
        let mut tap = UsageTap::new(UsageSource::ConverseBody, true);
        for c in body.chunks(5) {
            tap.observe(c);
        }
        assert_eq!(tap.finish(), Usage { input: Some(11), output: Some(7), text_units: None });
    }

    #[test]
    fn converse_stream_usage_from_the_metadata_event_split_byte_by_byte() {
        let mut bytes = frame("contentBlockDelta", br#"{"delta":{"text":"x"}}"#);
        bytes.extend(frame("metadata", br#"{"usage":{"inputTokens":31,"outputTokens":9}}"#));
        let mut tap = UsageTap::new(UsageSource::ConverseEvents, true);
        for b in &bytes {
            tap.observe(std::slice::from_ref(b));
        }
        assert_eq!(tap.finish(), Usage { input: Some(31), output: Some(9), text_units: None });
    }

    #[test]
    fn invoke_stream_usage_from_invocation_metrics() {
        let inner = br#"{"type":"message_stop","amazon-bedrock-invocationMetrics":{"inputTokenCount":5,"outputTokenCount":3}}"#;
        let payload = format!(r#"{{"bytes":"{}"}}"#, base64::engine::general_purpose::STANDARD.encode(inner));
        let mut tap = UsageTap::new(UsageSource::ModelChunks, true);
        tap.observe(&frame("chunk", br#"{"bytes":"e30="}"#));
        tap.observe(&frame("chunk", payload.as_bytes()));
        assert_eq!(tap.finish(), Usage { input: Some(5), output: Some(3), text_units: None });
    }

    #[test]
    fn chat_completions_usage_from_the_json_answer_or_the_last_event() {
        let body = br#"{"id":"c1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;
        let mut tap = UsageTap::new(UsageSource::ChatCompletions, true);
        for c in body.chunks(3) {
            tap.observe(c);
        }
        assert_eq!(tap.finish(), Usage { input: Some(12), output: Some(5), text_units: None });
        // A stream: lines split anywhere, CRLF or LF, usage in the last
        // event before [DONE]; a usage of null (include_usage chunks
        // before the last) reports nothing.
        let sse = b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\r\n\r\n\
                    data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3,\"total_tokens\":10}}\n\n\
                    data: [DONE]\n\n";
        for step in [1, 2, 5, 64, sse.len()] {
            let mut tap = UsageTap::new(UsageSource::ChatCompletions, true);
            for c in sse.chunks(step) {
                tap.observe(c);
            }
            assert_eq!(tap.finish(), Usage { input: Some(7), output: Some(3), text_units: None }, "step {step}");
        }
        // Without usage: unknown, and a last line without its newline still counts.
        let mut tap = UsageTap::new(UsageSource::ChatCompletions, true);
        tap.observe(b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n");
        assert_eq!(tap.finish(), Usage::default());
        let mut tap = UsageTap::new(UsageSource::ChatCompletions, true);
        tap.observe(b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}");
        assert_eq!(tap.finish(), Usage { input: Some(1), output: Some(2), text_units: None });
        // A line longer than the bound: usage unknown, never a panic.
        let mut tap = UsageTap::new(UsageSource::ChatCompletions, true);
        tap.observe(b"data: ");
        tap.observe(&vec![b'x'; MAX_OBSERVED + 1]);
        tap.observe(b"\ndata: {\"usage\":{\"prompt_tokens\":1}}\n");
        assert_eq!(tap.finish(), Usage::default());
    }

    #[test]
    fn garbage_gives_unknown_usage_never_a_panic() {
        let mut tap = UsageTap::new(UsageSource::ConverseEvents, true);
        tap.observe(&[0xff; 64]);
        tap.observe(b"more garbage");
        assert_eq!(tap.finish(), Usage::default());
        let mut tap = UsageTap::new(UsageSource::ConverseBody, true);
        tap.observe(b"{not json");
        assert_eq!(tap.finish(), Usage::default());
    }

    #[test]
    fn error_responses_are_not_tapped() {
        assert!(UsageTap::new(UsageSource::ConverseBody, false).is_off());
        assert!(UsageTap::new(UsageSource::Headers, true).is_off());
    }

    #[test]
    fn guardrail_checks_text_units_summed_and_never_tokens() {
        let body = br#"{"results":{},"usage":{"contentFilter":{"textUnits":3},"sensitiveInformation":{"textUnits":2},"other":{"textUnits":100}}}"#;
        let mut tap = UsageTap::new(UsageSource::GuardrailChecksBody, true);
        for c in body.chunks(7) {
            tap.observe(c);
        }
        let u = tap.finish();
        assert_eq!(u, Usage { input: None, output: None, text_units: Some(5) });
        assert_eq!(u.total(), 0);
        let mut none = UsageTap::new(UsageSource::GuardrailChecksBody, true);
        none.observe(br#"{"results":{},"usage":{}}"#);
        assert_eq!(none.finish().text_units, None);
    }
}
