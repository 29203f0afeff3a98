//! Redaction of AWS event-stream response bodies (SPEC §7), as a decoder
//! (ARCHITECTURE convention 10): bytes are buffered until a whole frame has
//! arrived (CRCs checked by `MessageFrameDecoder`), frames larger than
//! [`MAX_FRAME`] are an error, and every frame sent on is re-encoded with
//! valid CRCs by `write_message_to`. Nothing is ever done with a partial
//! frame, and nothing is forwarded once an error was returned (the caller
//! ends the client stream with an error).
//!
//! Text that continues across events is redacted with a hold-back
//! ([`HoldBack`], bound [`super::redact::HOLD_BACK`]): each event carries
//! its text minus the shortest tail that could still begin a match (usually
//! nothing, or a letter or two), the held tail is prepended to the next event
//! of the same text, and what is still held when the text ends is flushed as
//! one extra event of the same shape before the event that ends it. The
//! client sees the same event types in the same order, with at most one
//! extra delta/chunk per text. A frame in which nothing changes is forwarded
//! as the exact bytes upstream sent.
//!
//! - ConverseStream `contentBlockDelta`: strings under `delta` named `text`
//!   or `input` (text, reasoning text, tool-use input JSON), keyed by
//!   `contentBlockIndex` and JSON path; flushed before any other event
//!   (`contentBlockStop`, `messageStop`, ...).
//! - RetrieveAndGenerateStream `output` (`{"text": ..}`): the text, across
//!   events; flushed before `citation` or any other event.
//! - InvokeModelWithResponseStream `chunk` (`{"bytes": base64(json)}`):
//!   strings named like model output text ([`MODEL_TEXT_KEYS`]) keyed by
//!   JSON path; a held path is flushed before the first chunk without it, or
//!   folded into the final chunk (the one carrying
//!   `amazon-bedrock-invocationMetrics`). Other string fields are redacted
//!   chunk by chunk (holding back `type: "content_block_delta"` would break
//!   the client's protocol).
//! - InvokeAgent `chunk` (`{"bytes": base64(text)}`): the text, across chunks.
//! - InvokeEndpointWithResponseStream `PayloadPart` (raw bytes): as bytes
//!   with the `regex::bytes` twin of the pattern, so a UTF-8 sequence split
//!   across parts is matched once both halves arrived and binary passes
//!   unchanged unless it happens to contain a match.
//! - Any other event or exception: JSON string literals redacted (raw bytes
//!   redacted when the payload is not JSON); all held texts are flushed first.
//!
//! InvokeAgent streams of a tenant with `allowed_source_prefixes` are also
//! judged frame by frame, with or without redaction: an event whose
//! `retrievedReferences` (a `chunk`'s citations, a `trace`'s knowledge-base
//! lookup) name a location outside the prefixes is not forwarded and ends
//! the stream ([`StreamError::ForeignSource`]), like a RetrieveAndGenerate
//! answer citing a foreign source (SPEC §5.2).

use super::chunks::SourceFilter;
use super::redact::{HoldBack, HoldCache, Redactor};
use crate::route::Operation;
use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A model stream chunk that only says it is alive: an object whose only
/// member is a string `type` (Anthropic's `{"type": "ping"}`).
fn is_keepalive_chunk(inner: &Value) -> bool {
    inner.as_object().is_some_and(|o| o.len() == 1 && o.get("type").is_some_and(Value::is_string))
}

/// Media types of files whose bytes are text the app will read.
fn is_text_media_type(t: &str) -> bool {
    let t = t.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    t.starts_with("text/")
        || t.ends_with("+json")
        || t.ends_with("+xml")
        || matches!(
            t.as_str(),
            "application/json" | "application/xml" | "application/csv" | "application/yaml" | "application/x-yaml"
                | "application/x-ndjson" | "application/javascript"
        )
}

/// Largest event-stream frame accepted from upstream.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Prelude (12) + message CRC (4).
const MIN_FRAME: usize = 16;

/// InvokeModelWithResponseStream chunk fields treated as continuing text
/// (Anthropic `delta.text`/`partial_json`/`thinking`, Claude v2 `completion`,
/// Titan `outputText`, Llama `generation`, Cohere/Mistral `text`, ...).
pub const MODEL_TEXT_KEYS: &[&str] = &[
    "text",
    "completion",
    "outputText",
    "generation",
    "generated_text",
    "partial_json",
    "thinking",
    "content",
];

const CONVERSE_TEXT_KEYS: &[&str] = &["text", "input"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// Bad prelude/message CRC or malformed frame from upstream.
    Decode(String),
    /// A frame announced more than [`MAX_FRAME`] bytes.
    FrameTooLarge(usize),
    /// The stream ended inside a frame.
    Truncated(usize),
    Encode(String),
    /// An InvokeAgent event names a knowledge-base source outside the
    /// tenant's allowed prefixes: the answer may hold another tenant's data.
    ForeignSource,
    /// An earlier call failed; the stream must not continue.
    Failed,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamError::Decode(e) => write!(f, "invalid event-stream frame from upstream: {e}"),
            StreamError::FrameTooLarge(n) => {
                write!(f, "event-stream frame of {n} bytes exceeds {MAX_FRAME}")
            }
            StreamError::Truncated(n) => {
                write!(f, "event stream ended inside a frame ({n} bytes pending)")
            }
            StreamError::Encode(e) => write!(f, "re-encoding an event-stream frame failed: {e}"),
            StreamError::ForeignSource => {
                f.write_str("an agent event cites a source outside the tenant's allowed prefixes")
            }
            StreamError::Failed => f.write_str("event stream already failed"),
        }
    }
}

impl std::error::Error for StreamError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Converse,
    Rag,
    Model,
    Agent,
    SageMaker,
    Other,
}

/// How to build the extra event that carries a flushed remainder from the
/// last frame of the text.
#[derive(Debug)]
enum Shape {
    /// JSON payload with the text at `pointer`.
    Json { pointer: String },
    /// Model chunk: outer `{"bytes": base64(inner)}`, text at `pointer` in
    /// `inner`.
    ModelChunk { pointer: String },
    /// Agent chunk: outer `{"bytes": ..}`, the text is the bytes.
    AgentChunk,
    /// The payload is the text.
    Raw,
}

#[derive(Debug)]
struct Text {
    hb: HoldBack,
    /// The last frame that carried this text, as upstream sent it (a cheap
    /// reference-counted copy): decoded again only when a remainder is
    /// flushed, so holding costs nothing per event.
    frame: Bytes,
    shape: Shape,
}

/// Frames an upstream event stream and passes each whole frame through the
/// redaction (when patterns are configured) and, for InvokeAgent, the
/// source check (when the tenant has `allowed_source_prefixes`).
pub struct StreamRedactor {
    kind: Kind,
    buf: BytesMut,
    redact: Option<Redact>,
    sources: Option<SourceFilter>,
    failed: bool,
}

/// The redaction state of one stream.
struct Redact {
    kind: Kind,
    redactor: Arc<Redactor>,
    texts: BTreeMap<String, Text>,
    cache: HoldCache,
    redactions: u64,
}

impl StreamRedactor {
    pub fn new(op: Operation, redactor: Arc<Redactor>) -> Self {
        Self::build(op, Some(redactor), None)
    }

    /// The filter a response needs: redaction when `redactor` is set, the
    /// InvokeAgent source check when `sources` is set and enabled; None when
    /// neither applies (the stream passes untouched).
    pub fn for_response(op: Operation, redactor: Option<Arc<Redactor>>, sources: Option<SourceFilter>) -> Option<Self> {
        let sources = sources.filter(|s| op == Operation::InvokeAgent && !s.is_disabled());
        if redactor.is_none() && sources.is_none() {
            return None;
        }
        Some(Self::build(op, redactor, sources))
    }

    fn build(op: Operation, redactor: Option<Arc<Redactor>>, sources: Option<SourceFilter>) -> Self {
        let kind = match op {
            Operation::ConverseStream => Kind::Converse,
            Operation::RetrieveAndGenerateStream => Kind::Rag,
            Operation::InvokeModelWithResponseStream => Kind::Model,
            Operation::InvokeAgent => Kind::Agent,
            Operation::InvokeEndpointWithResponseStream => Kind::SageMaker,
            _ => Kind::Other,
        };
        StreamRedactor {
            kind,
            redact: redactor.map(|redactor| Redact {
                kind,
                cache: redactor.hold_cache(),
                redactor,
                texts: BTreeMap::new(),
                redactions: 0,
            }),
            sources,
            buf: BytesMut::new(),
            failed: false,
        }
    }

    /// Matches replaced so far.
    pub fn redactions(&self) -> u64 {
        self.redact.as_ref().map_or(0, |r| r.redactions)
    }

    /// Bytes currently held back across all continuing texts (for tests and
    /// metrics; bounded by `HOLD_BACK + 3` per text).
    pub fn held_bytes(&self) -> usize {
        self.redact.as_ref().map_or(0, |r| r.texts.values().map(|t| t.hb.held_len()).sum())
    }

    /// The event that ends a stream this redactor cannot continue (a bad
    /// frame from upstream): an exception message of a type the operation's
    /// SDK models, so clients raise a normal error instead of reading a
    /// truncated body. Held text is never sent after it.
    pub fn error_frame(&self, reason: &str, message: &str) -> Bytes {
        let exception = match self.kind {
            Kind::Converse | Kind::Model => "serviceUnavailableException",
            Kind::SageMaker => "InternalStreamFailure",
            Kind::Agent | Kind::Rag | Kind::Other => "badGatewayException",
        };
        let headers = vec![
            Header::new(":message-type", HeaderValue::String("exception".into())),
            Header::new(":exception-type", HeaderValue::String(exception.into())),
            Header::new(":content-type", HeaderValue::String("application/json".into())),
        ];
        let payload = serde_json::json!({"message": message, "reason": reason}).to_string();
        let mut out = Vec::new();
        // Only fails for oversized headers/payloads, which these are not.
        let _ = write(&Message::new_from_parts(headers, payload), &mut out);
        Bytes::from(out)
    }

    /// Feeds upstream bytes; returns the whole re-encoded frames ready to send
    /// (possibly none).
    pub fn push(&mut self, data: &[u8]) -> Result<Bytes, StreamError> {
        if self.failed {
            return Err(StreamError::Failed);
        }
        let r = self.push_inner(data);
        self.failed = r.is_err();
        r
    }

    /// End of the upstream body: an error if it ended inside a frame, else the
    /// held texts as final events.
    pub fn finish(&mut self) -> Result<Bytes, StreamError> {
        if self.failed {
            return Err(StreamError::Failed);
        }
        if !self.buf.is_empty() {
            self.failed = true;
            return Err(StreamError::Truncated(self.buf.len()));
        }
        let mut out = Vec::new();
        let r = match &mut self.redact {
            Some(red) => red.flush_all(&mut out),
            None => Ok(()),
        };
        self.failed = r.is_err();
        r.map(|()| Bytes::from(out))
    }

    fn push_inner(&mut self, data: &[u8]) -> Result<Bytes, StreamError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::with_capacity(data.len() + 64);
        // Framing is done here (not by `MessageFrameDecoder`, which consumes
        // the prelude early): the announced length is checked against
        // MAX_FRAME before anything is buffered for it, and bytes pending at
        // `finish` always mean a truncated stream.
        while self.buf.len() >= 4 {
            let total =
                u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
            if total > MAX_FRAME {
                return Err(StreamError::FrameTooLarge(total));
            }
            if total < MIN_FRAME {
                return Err(StreamError::Decode(format!(
                    "frame length {total} is below the minimum"
                )));
            }
            if self.buf.len() < total {
                break;
            }
            let raw = self.buf.split_to(total).freeze();
            // Checks the prelude and message CRCs.
            let msg = read_message_from(&mut raw.clone())
                .map_err(|e| StreamError::Decode(e.to_string()))?;
            self.on_message(msg, &raw, &mut out)?;
        }
        Ok(Bytes::from(out))
    }

    /// `raw` is the frame as upstream sent it: forwarded as it is when
    /// nothing in it changes, so a stream without matches is byte-identical.
    fn on_message(&mut self, msg: Message, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        if let Some(sources) = &self.sources {
            if !agent_event_is_clean(sources, &msg) {
                return Err(StreamError::ForeignSource);
            }
        }
        match &mut self.redact {
            Some(r) => r.on_message(msg, raw, out),
            None => {
                out.extend_from_slice(raw);
                Ok(())
            }
        }
    }
}

impl Redact {
    fn on_message(&mut self, msg: Message, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let is_event = header_str(&msg, ":message-type").is_none_or(|t| t == "event");
        let et = header_str(&msg, ":event-type").unwrap_or("").to_string();
        match (is_event, self.kind, et.as_str()) {
            (true, Kind::Converse, "contentBlockDelta") => self.converse_delta(msg, raw, out),
            (true, Kind::Rag, "output") => self.converse_delta(msg, raw, out),
            (true, Kind::Model, "chunk") => self.model_chunk(msg, raw, out),
            (true, Kind::Agent, "chunk") => self.agent_chunk(msg, raw, out),
            // A trace between chunks does not end the answer text: held
            // text waits for the next chunk (the trace is redacted on its own).
            (true, Kind::Agent, "trace") => self.generic(msg, raw, out),
            (true, Kind::Agent, "files") => {
                self.flush_all(out)?;
                self.agent_files(msg, raw, out)
            }
            (true, Kind::SageMaker, "PayloadPart") => self.payload_part(msg, raw, out),
            _ => {
                self.flush_all(out)?;
                self.generic(msg, raw, out)
            }
        }
    }

    /// JSON string literals redacted, or the raw payload when it is not JSON.
    fn generic(&mut self, msg: Message, raw: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
        let r = &self.redactor;
        let (payload, n) = match r.redact_json_bytes(msg.payload()) {
            Some(x) => x,
            None => {
                let (b, n) = r.redact_bytes(msg.payload());
                (Bytes::from(b.into_owned()), n)
            }
        };
        self.redactions += n;
        if n == 0 {
            out.extend_from_slice(raw);
            return Ok(());
        }
        write(
            &Message::new_from_parts(msg.headers().to_vec(), payload),
            out,
        )
    }

    /// InvokeAgent `files` (`{"files": [{"name", "type", "bytes": base64}]}`):
    /// a file whose media type is text the app will read (`text/*`, JSON,
    /// XML, CSV, YAML) is decoded, redacted as UTF-8 text and re-encoded;
    /// then every JSON string of the event is redacted as in `generic`.
    /// Binary media types, and text files that are not UTF-8, pass as they
    /// are (a documented limit).
    fn agent_files(&mut self, msg: Message, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Ok(mut v) = serde_json::from_slice::<Value>(msg.payload()) else {
            return self.generic(msg, raw, out);
        };
        let r = self.redactor.clone();
        let mut n = 0;
        if let Some(files) = v.get_mut("files").and_then(Value::as_array_mut) {
            for f in files.iter_mut().filter_map(Value::as_object_mut) {
                let textual = f.get("type").and_then(Value::as_str).is_some_and(is_text_media_type);
                let Some(text) = f
                    .get("bytes")
                    .and_then(Value::as_str)
                    .filter(|_| textual)
                    .and_then(|b| B64.decode(b).ok())
                    .and_then(|b| String::from_utf8(b).ok())
                else {
                    continue;
                };
                let (red, k) = r.redact_str(&text);
                if k > 0 {
                    n += k;
                    f.insert("bytes".into(), Value::String(B64.encode(red.as_bytes())));
                }
            }
        }
        n += r.redact_value(&mut v);
        self.redactions += n;
        if n == 0 {
            out.extend_from_slice(raw);
            return Ok(());
        }
        let payload = serde_json::to_vec(&v).map_err(|e| StreamError::Encode(e.to_string()))?;
        write(&Message::new_from_parts(msg.headers().to_vec(), Bytes::from(payload)), out)
    }

    fn converse_delta(&mut self, msg: Message, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Ok(mut v) = serde_json::from_slice::<Value>(msg.payload()) else {
            self.flush_all(out)?;
            return self.generic(msg, raw, out);
        };
        let mut changed = false;
        let idx = v
            .get("contentBlockIndex")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let mut pointers = Vec::new();
        if self.kind == Kind::Rag {
            // RetrieveAndGenerateStream `output`: {"text": "..."}.
            if v.get("text").is_some_and(Value::is_string) {
                pointers.push("/text".to_string());
            }
        } else if let Some(d) = v.get("delta") {
            text_pointers(d, "/delta", CONVERSE_TEXT_KEYS, &mut pointers);
        }
        for p in &pointers {
            let Some(Value::String(slot)) = ptr_mut(&mut v, p) else { continue };
            let text = std::mem::take(slot);
            let key = format!("{idx:020}{p}");
            let mut hb = self.texts.remove(&key).map(|t| t.hb).unwrap_or_default();
            let (emit, n) = hb.push(&self.redactor, &mut self.cache, text.as_bytes());
            self.redactions += n;
            if !hb.is_empty() {
                // Held: prepended to the next delta of this text, or
                // flushed as an event shaped like this one.
                self.texts.insert(key, Text { hb, frame: raw.clone(), shape: Shape::Json { pointer: p.clone() } });
            }
            let text = if emit == text.as_bytes() {
                text
            } else {
                changed = true;
                utf8(emit)
            };
            set_str(&mut v, p, text);
        }
        let n = redact_except(&self.redactor, &mut v, &pointers);
        self.redactions += n;
        if !changed && n == 0 {
            out.extend_from_slice(raw);
            return Ok(());
        }
        write_json(msg.headers(), &v, out)
    }

    fn model_chunk(&mut self, msg: Message, raw_frame: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let outer = serde_json::from_slice::<Value>(msg.payload()).ok();
        let raw = outer
            .as_ref()
            .and_then(|o| o.get("bytes")?.as_str())
            .and_then(|b| B64.decode(b).ok());
        let (Some(mut outer), Some(raw)) = (outer, raw) else {
            self.flush_all(out)?;
            return self.generic(msg, raw_frame, out);
        };
        let Ok(mut inner) = serde_json::from_slice::<Value>(&raw) else {
            // Not JSON inside: redact it as text, chunk by chunk.
            self.flush_all(out)?;
            let (b, n) = self.redactor.redact_bytes(&raw);
            self.redactions += n;
            return self.write_chunk(msg.headers(), outer, &b, n > 0, raw_frame, out);
        };
        let mut changed = false;
        let mut pointers = Vec::new();
        text_pointers(&inner, "", MODEL_TEXT_KEYS, &mut pointers);
        // Held paths this chunk does not continue end here, unless the
        // chunk is a keep-alive (`{"type": "ping"}`): it carries no text and
        // ends no block, so held text waits for the next chunk of its path.
        let keepalive = is_keepalive_chunk(&inner);
        let ended: Vec<String> = self
            .texts
            .keys()
            .filter(|k| !keepalive && !pointers.contains(k))
            .cloned()
            .collect();
        for k in ended {
            self.flush_one(&k, out)?;
        }
        let last = inner.get("amazon-bedrock-invocationMetrics").is_some();
        for p in &pointers {
            let Some(Value::String(slot)) = ptr_mut(&mut inner, p) else { continue };
            let text = std::mem::take(slot);
            let t = self.texts.entry(p.clone()).or_insert_with(|| Text {
                hb: HoldBack::default(),
                frame: Bytes::new(),
                shape: Shape::Raw,
            });
            let (mut emit, n) = t.hb.push(&self.redactor, &mut self.cache, text.as_bytes());
            self.redactions += n;
            if last || t.hb.is_empty() {
                let (rest, n) = t.hb.flush(&self.redactor);
                self.redactions += n;
                emit.extend_from_slice(&rest);
                self.texts.remove(p);
            } else {
                t.frame = raw_frame.clone();
                t.shape = Shape::ModelChunk { pointer: p.clone() };
            }
            let text = if emit == text.as_bytes() {
                text
            } else {
                changed = true;
                utf8(emit)
            };
            set_str(&mut inner, p, text);
        }
        let n = redact_except(&self.redactor, &mut inner, &pointers);
        self.redactions += n;
        changed |= n > 0;
        let inner = serde_json::to_vec(&inner).map_err(|e| StreamError::Encode(e.to_string()))?;
        self.write_chunk(msg.headers(), outer.take(), &inner, changed, raw_frame, out)
    }

    fn agent_chunk(&mut self, msg: Message, raw_frame: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let outer = serde_json::from_slice::<Value>(msg.payload()).ok();
        let raw = outer
            .as_ref()
            .and_then(|o| o.get("bytes")?.as_str())
            .and_then(|b| B64.decode(b).ok());
        let (Some(outer), Some(raw)) = (outer, raw) else {
            self.flush_all(out)?;
            return self.generic(msg, raw_frame, out);
        };
        let t = self.texts.entry(String::new()).or_insert_with(|| Text {
            hb: HoldBack::default(),
            frame: Bytes::new(),
            shape: Shape::Raw,
        });
        let (emit, n) = t.hb.push(&self.redactor, &mut self.cache, &raw);
        self.redactions += n;
        if t.hb.is_empty() {
            self.texts.remove("");
        } else {
            t.frame = raw_frame.clone();
            t.shape = Shape::AgentChunk;
        }
        let changed = emit != raw;
        self.write_chunk(msg.headers(), outer, &emit, changed, raw_frame, out)
    }

    fn payload_part(&mut self, msg: Message, raw_frame: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let t = self.texts.entry(String::new()).or_insert_with(|| Text {
            hb: HoldBack::default(),
            frame: Bytes::new(),
            shape: Shape::Raw,
        });
        let (emit, n) = t.hb.push(&self.redactor, &mut self.cache, msg.payload());
        self.redactions += n;
        if t.hb.is_empty() {
            self.texts.remove("");
        } else {
            t.frame = raw_frame.clone();
            t.shape = Shape::Raw;
        }
        if emit == msg.payload()[..] {
            out.extend_from_slice(raw_frame);
            return Ok(());
        }
        write(&Message::new_from_parts(msg.headers().to_vec(), emit), out)
    }

    /// `{"bytes": base64(payload), ...}` with the other outer fields
    /// redacted; `raw_frame` as it is when neither the payload (`changed`)
    /// nor an outer field changed.
    fn write_chunk(
        &mut self,
        headers: &[Header],
        mut outer: Value,
        payload: &[u8],
        changed: bool,
        raw_frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), StreamError> {
        if let Some(o) = outer.as_object_mut() {
            o.remove("bytes");
        }
        let n = self.redactor.redact_value(&mut outer);
        self.redactions += n;
        if !changed && n == 0 && !raw_frame.is_empty() {
            out.extend_from_slice(raw_frame);
            return Ok(());
        }
        if let Some(o) = outer.as_object_mut() {
            o.insert("bytes".into(), Value::String(B64.encode(payload)));
        }
        write_json(headers, &outer, out)
    }

    fn flush_all(&mut self, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let keys: Vec<String> = self.texts.keys().cloned().collect();
        for k in keys {
            self.flush_one(&k, out)?;
        }
        Ok(())
    }

    /// The held remainder of one text as an extra event of its shape.
    fn flush_one(&mut self, key: &str, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Some(mut t) = self.texts.remove(key) else {
            return Ok(());
        };
        let (rest, n) = t.hb.flush(&self.redactor);
        self.redactions += n;
        if rest.is_empty() {
            return Ok(());
        }
        // The last frame of the text, decoded again: its headers, and its
        // payload as the template of the extra event. Fields other than the
        // text are redacted again (they were in the frame itself; the repeat
        // is not counted as a new match).
        let msg = read_message_from(&mut t.frame.clone()).map_err(|e| StreamError::Decode(e.to_string()))?;
        let headers = msg.headers().to_vec();
        let json = |b: &[u8]| serde_json::from_slice::<Value>(b).map_err(|e| StreamError::Decode(e.to_string()));
        match t.shape {
            Shape::Raw => write(&Message::new_from_parts(headers, rest), out),
            Shape::Json { pointer } => {
                let mut payload = json(msg.payload())?;
                blank_texts(&mut payload, CONVERSE_TEXT_KEYS);
                set_str(&mut payload, &pointer, utf8(rest));
                redact_except(&self.redactor, &mut payload, std::slice::from_ref(&pointer));
                write_json(&headers, &payload, out)
            }
            Shape::ModelChunk { pointer } => {
                let outer = json(msg.payload())?;
                let bytes = outer.get("bytes").and_then(Value::as_str).and_then(|b| B64.decode(b).ok());
                let mut inner = json(&bytes.unwrap_or_default())?;
                blank_texts(&mut inner, MODEL_TEXT_KEYS);
                set_str(&mut inner, &pointer, utf8(rest));
                redact_except(&self.redactor, &mut inner, std::slice::from_ref(&pointer));
                let inner =
                    serde_json::to_vec(&inner).map_err(|e| StreamError::Encode(e.to_string()))?;
                self.write_chunk(&headers, outer, &inner, true, &[], out)
            }
            Shape::AgentChunk => {
                let mut outer = json(msg.payload())?;
                if let Some(o) = outer.as_object_mut() {
                    o.remove("attribution");
                }
                self.write_chunk(&headers, outer, &rest, true, &[], out)
            }
        }
    }
}

/// InvokeAgent source check (SPEC §5.2 applied to agents): every
/// `retrievedReferences` list anywhere in an event — a `chunk`'s
/// `attribution.citations`, a `trace`'s knowledge-base lookup output — must
/// name only allowed locations. A `chunk` or `trace` whose payload is not
/// JSON cannot be judged and is unclean; other events are judged when they
/// are JSON.
fn agent_event_is_clean(sources: &SourceFilter, msg: &Message) -> bool {
    let et = header_str(msg, ":event-type").unwrap_or("");
    match serde_json::from_slice::<Value>(msg.payload()) {
        Ok(v) => sources.nested_references_are_clean(&v),
        Err(_) => !matches!(et, "chunk" | "trace"),
    }
}

fn header_str<'a>(msg: &'a Message, name: &str) -> Option<&'a str> {
    msg.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

fn write(msg: &Message, out: &mut Vec<u8>) -> Result<(), StreamError> {
    write_message_to(msg, out).map_err(|e| StreamError::Encode(e.to_string()))
}

fn write_json(headers: &[Header], v: &Value, out: &mut Vec<u8>) -> Result<(), StreamError> {
    let payload = serde_json::to_vec(v).map_err(|e| StreamError::Encode(e.to_string()))?;
    write(&Message::new_from_parts(headers.to_vec(), payload), out)
}

/// Text held and cut on UTF-8 boundaries is valid UTF-8; lossy only for a
/// pattern that could match inside a sequence.
fn utf8(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// One JSON-pointer token of key `k` (RFC 6901 escapes), without
/// allocating for the usual keys that need none.
fn escape_token(k: &str) -> std::borrow::Cow<'_, str> {
    if k.contains(['~', '/']) {
        k.replace('~', "~0").replace('/', "~1").into()
    } else {
        k.into()
    }
}

fn unescape_token(t: &str) -> std::borrow::Cow<'_, str> {
    if t.contains('~') {
        t.replace("~1", "/").replace("~0", "~").into()
    } else {
        t.into()
    }
}

/// `Value::pointer_mut` without its per-token allocations (the pointers
/// here are built by [`text_pointers`], one per text event).
fn ptr_mut<'a>(v: &'a mut Value, pointer: &str) -> Option<&'a mut Value> {
    let mut cur = v;
    for t in pointer.split('/').skip(1) {
        cur = match cur {
            Value::Object(m) => m.get_mut(unescape_token(t).as_ref())?,
            Value::Array(a) => a.get_mut(t.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// JSON pointers of string leaves whose key is one of `keys`.
fn text_pointers(v: &Value, base: &str, keys: &[&str], out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = format!("{base}/{}", escape_token(k));
                if x.is_string() && keys.contains(&k.as_str()) {
                    out.push(p);
                } else {
                    text_pointers(x, &p, keys, out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                text_pointers(x, &format!("{base}/{i}"), keys, out);
            }
        }
        _ => {}
    }
}

fn set_str(v: &mut Value, pointer: &str, s: String) {
    if let Some(x) = ptr_mut(v, pointer) {
        *x = Value::String(s);
    }
}

/// Empties every text field (a flush event carries only the remainder).
fn blank_texts(v: &mut Value, keys: &[&str]) {
    let mut ps = Vec::new();
    text_pointers(v, "", keys, &mut ps);
    for p in ps {
        set_str(v, &p, String::new());
    }
}

/// Redacts every string except the held texts at `pointers` (already done).
fn redact_except(r: &Redactor, v: &mut Value, pointers: &[String]) -> u64 {
    let saved: Vec<(String, Value)> = pointers
        .iter()
        .filter_map(|p| Some((p.clone(), ptr_mut(v, p)?.take())))
        .collect();
    let n = r.redact_value(v);
    for (p, x) in saved {
        if let Some(slot) = ptr_mut(v, &p) {
            *slot = x;
        }
    }
    n
}

#[cfg(test)]
#[path = "eventstream_tests.rs"]
mod tests;
