//! Redaction of AWS event-stream response bodies (SPEC §7), as a decoder:
//! bytes are buffered until a whole frame has arrived (CRCs checked), frames
//! larger than [`MAX_FRAME`] are an error, and a frame that changes is
//! re-encoded with valid CRCs by `write_message_to`. Nothing is ever done
//! with a partial frame, and nothing is forwarded once an error was returned
//! (the caller ends the client stream with an error).
//!
//! Text that continues across events is tracked as one [`LiveText`] per
//! text (a JSON path, a content block, a choice), and frames are never cut
//! or added. A frame goes out, as the exact bytes upstream sent, as soon as
//! none of its texts ends in something that could still begin a match. A
//! frame whose text ends in a possible beginning (in ordinary text nothing,
//! or the last letter or two) waits, with every frame after it, until the
//! next event of that text decides it. When a match does run across frames,
//! the replacement goes into the frame where it starts and the rest of the
//! match is removed from the frames after it; only those frames are
//! re-encoded. The client sees the same events in the same order.
//!
//! What a continuing text is, per operation:
//! - ConverseStream `contentBlockDelta`: every string of the event (text,
//!   reasoning text and signature, tool-use input, ...), keyed by
//!   `contentBlockIndex` and JSON path; a `contentBlockStop` ends its
//!   block's texts, any other event ends all.
//! - RetrieveAndGenerateStream `output` text; `citation` events in between
//!   do not end it.
//! - InvokeModelWithResponseStream `chunk` (`{"bytes": base64(json)}`): every
//!   string field of the decoded chunk except the provider's protocol fields
//!   ([`PROTOCOL_KEYS`]), keyed by JSON path, an object's numeric `index` /
//!   `contentBlockIndex` (content blocks, choices) being part of the key. A
//!   text ends at the first chunk that carries neither it nor the same path
//!   for another block or choice, unless that chunk is a keep-alive
//!   (`{"type": "ping"}`); all end at the final chunk
//!   (`amazon-bedrock-invocationMetrics`). Chunks whose inner bytes are not
//!   JSON are one text.
//! - InvokeAgent `chunk` bytes; `trace` events in between do not end them.
//! - InvokeEndpointWithResponseStream `PayloadPart` (raw bytes): as bytes
//!   with the `regex::bytes` twin of the pattern.
//! - Any other event or exception: JSON string literals redacted (raw bytes
//!   when the payload is not JSON).
//!
//! Bounds: a would-be match that keeps growing past [`MAX_HOLD`] bytes, or
//! more than [`MAX_QUEUED`] bytes of frames waiting behind an undecided
//! text, end the stream with an error ([`StreamError::HoldLimit`]); nothing
//! held is sent.
//!
//! InvokeAgent streams of a tenant with `allowed_source_prefixes` are also
//! judged frame by frame, with or without redaction: an event whose
//! `retrievedReferences` (a `chunk`'s citations, a `trace`'s knowledge-base
//! lookup) name a location outside the prefixes is not forwarded and ends
//! the stream ([`StreamError::ForeignSource`]), like a RetrieveAndGenerate
//! answer citing a foreign source (SPEC §5.2).

use super::chunks::SourceFilter;
use super::redact::{HoldCache, LiveText, Redactor, MAX_HOLD};
use crate::route::Operation;
use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
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

/// String fields of model stream chunks that the provider sets to carry the
/// stream's protocol (event and block types, roles, ids, model names, stop
/// reasons, Bedrock's `p` padding): a model does not write them. They are
/// redacted within each event but not tracked across events, so a
/// `"type": "content_block_delta"` ending in a letter that could begin a
/// match never makes a frame wait.
pub const PROTOCOL_KEYS: &[&str] = &[
    "type",
    "role",
    "id",
    "model",
    "object",
    "stop_reason",
    "finish_reason",
    "stopReason",
    "stop_sequence",
    "event_type",
    "system_fingerprint",
    "p",
];

/// Most bytes of frames waiting behind an undecided text.
pub const MAX_QUEUED: usize = 1024 * 1024;

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
    /// A would-be match kept growing past [`MAX_HOLD`] bytes, or more than
    /// [`MAX_QUEUED`] bytes of frames waited behind an undecided text.
    HoldLimit,
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
            StreamError::HoldLimit => write!(
                f,
                "a possible redaction match stayed undecided past {MAX_HOLD} bytes of text or {MAX_QUEUED} bytes of events"
            ),
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
    cache: HoldCache,
    redactions: u64,
    /// Frames not yet sent, in upstream order; `queue[0]` has sequence
    /// number `first_seq`.
    queue: VecDeque<Pending>,
    first_seq: u64,
    queued_bytes: usize,
    /// Continuing texts by key (those that hold nothing keep their
    /// look-behind context).
    live: BTreeMap<String, Live>,
}

/// A frame waiting to be sent.
struct Pending {
    /// The frame as upstream sent it (or as already re-encoded).
    raw: Bytes,
    /// How to re-encode it when a match changed one of its texts or a field
    /// that is not tracked was redacted; None for frames final as `raw`.
    rebuild: Option<Rebuild>,
    /// Segments of continuing texts that still hold this frame.
    refs: usize,
}

struct Rebuild {
    headers: Vec<Header>,
    body: Body,
    /// The tracked texts of the frame, as upstream sent them.
    leaves: Vec<Leaf>,
    /// A field that is not tracked was redacted in `body`.
    dirty: bool,
}

enum Body {
    /// The payload is leaf 0.
    Raw,
    /// JSON payload; leaves at their pointers.
    Json(Value),
    /// `{"bytes": base64(inner), ...}` with `bytes` removed from `outer`:
    /// the inner JSON with leaves at their pointers, or (None) leaf 0 is the
    /// inner bytes.
    Chunk { outer: Value, inner: Option<Value> },
}

struct Leaf {
    pointer: String,
    text: Vec<u8>,
    /// Byte ranges of `text` to replace, in order: by the replacement
    /// (true: a match starts here) or by nothing (the rest of a match that
    /// started in an earlier frame).
    edits: Vec<(usize, usize, bool)>,
}

/// One continuing text and the frames its undecided tail lies in.
#[derive(Default)]
struct Live {
    text: LiveText,
    /// (absolute start, length, frame sequence number, leaf index), in order.
    segs: VecDeque<(u64, usize, u64, usize)>,
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
                redactions: 0,
                queue: VecDeque::new(),
                first_seq: 0,
                queued_bytes: 0,
                live: BTreeMap::new(),
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

    /// Bytes of text currently undecided across all continuing texts (each
    /// bounded by [`MAX_HOLD`]).
    pub fn held_bytes(&self) -> usize {
        self.redact.as_ref().map_or(0, |r| r.live.values().map(|t| t.text.held_len()).sum())
    }

    /// Frames waiting behind an undecided text.
    pub fn queued_frames(&self) -> usize {
        self.redact.as_ref().map_or(0, |r| r.queue.len())
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
            Some(red) => red.end_all(&mut out),
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
    /// The common case, decided without parsing: nothing is waiting, the
    /// pattern needs no context, and the event's text can neither hold a
    /// match nor end in the beginning of one. The frame goes out as it is;
    /// every other case takes the full path below.
    fn passes_untouched(&mut self, msg: &Message, et: &str) -> bool {
        if !self.queue.is_empty() || !self.redactor.context_free() {
            return false;
        }
        let payload = msg.payload();
        match (self.kind, et) {
            (Kind::Converse, "contentBlockDelta") | (Kind::Rag, "output") => self.json_is_clean(payload),
            (Kind::Model, "chunk") | (Kind::Agent, "chunk") => {
                // `{"bytes": base64, ...}`: the outer JSON has no match, and
                // the decoded bytes are clean text (model chunks: clean JSON).
                if payload.contains(&b'\\') || self.redactor.has_match(payload) {
                    return false;
                }
                let Some(inner) = serde_json::from_slice::<ChunkOuter>(payload).ok().and_then(|o| B64.decode(o.bytes.as_bytes()).ok()) else {
                    return false;
                };
                // Inner bytes that are not JSON are one continuing text.
                if self.kind == Kind::Model && serde_json::from_slice::<serde::de::IgnoredAny>(&inner).is_ok() {
                    self.json_is_clean(&inner)
                } else {
                    !self.redactor.has_match(&inner) && !self.redactor.ends_live(&mut self.cache, &inner)
                }
            }
            (Kind::SageMaker, "PayloadPart") => {
                !self.redactor.has_match(payload) && !self.redactor.ends_live(&mut self.cache, payload)
            }
            _ => false,
        }
    }

    /// JSON without escapes, without a match, in which no string value that
    /// would be a continuing text ends in a possible match beginning.
    /// Without escapes every string's text is the bytes between its quotes.
    fn json_is_clean(&mut self, json: &[u8]) -> bool {
        if json.contains(&b'\\') || self.redactor.has_match(json) {
            return false;
        }
        let mut i = 0;
        let mut key: &[u8] = b"";
        while let Some(q) = json[i..].iter().position(|&b| b == b'"') {
            let start = i + q + 1;
            let Some(len) = json[start..].iter().position(|&b| b == b'"') else { return false };
            let end = start + len;
            let text = &json[start..end];
            let after = json[end + 1..].iter().find(|b| !b.is_ascii_whitespace());
            if after == Some(&b':') {
                key = text;
            } else {
                // A string right after `"key":` with a protocol key is not a
                // continuing text (as in `tracked_leaves`).
                let before = json[..start - 1].iter().rev().find(|b| !b.is_ascii_whitespace());
                let protocol = before == Some(&b':')
                    && std::str::from_utf8(key).is_ok_and(|k| PROTOCOL_KEYS.contains(&k));
                if !protocol && self.redactor.ends_live(&mut self.cache, text) {
                    return false;
                }
            }
            i = end + 1;
        }
        true
    }

    fn on_message(&mut self, msg: Message, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let is_event = header_str(&msg, ":message-type").is_none_or(|t| t == "event");
        let et = header_str(&msg, ":event-type").unwrap_or("").to_string();
        if is_event && self.passes_untouched(&msg, &et) {
            out.extend_from_slice(raw);
            return Ok(());
        }
        match (is_event, self.kind, et.as_str()) {
            (true, Kind::Converse, "contentBlockDelta") | (true, Kind::Rag, "output") => self.json_event(msg, raw, out),
            (true, Kind::Converse, "contentBlockStop") => {
                // Ends the texts of its block only.
                if let Some(i) = serde_json::from_slice::<Value>(msg.payload()).ok().as_ref().and_then(block_index) {
                    let prefix = format!("#{i}/");
                    let keys: Vec<String> = self.live.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
                    for k in keys {
                        self.end(&k);
                    }
                } else {
                    self.end_all_quiet();
                }
                self.release(out)?;
                let f = self.generic(&msg, raw)?;
                self.push_final(f, out)
            }
            // Citations between output events, traces between agent chunks:
            // redacted on their own, the text goes on after them.
            (true, Kind::Rag, _) | (true, Kind::Agent, "trace") => {
                let f = self.generic(&msg, raw)?;
                self.push_final(f, out)
            }
            (true, Kind::Model, "chunk") => self.model_chunk(msg, raw, out),
            (true, Kind::Agent, "chunk") => self.agent_chunk(msg, raw, out),
            (true, Kind::Agent, "files") => {
                self.end_all(out)?;
                let f = self.agent_files(&msg, raw)?;
                self.push_final(f, out)
            }
            (true, Kind::SageMaker, "PayloadPart") => {
                let leaf = Leaf { pointer: String::new(), text: msg.payload().to_vec(), edits: Vec::new() };
                let rb = Rebuild { headers: msg.headers().to_vec(), body: Body::Raw, leaves: vec![leaf], dirty: false };
                self.enqueue(raw.clone(), rb, vec!["payload".into()], out)
            }
            _ => {
                self.end_all(out)?;
                let f = self.generic(&msg, raw)?;
                self.push_final(f, out)
            }
        }
    }

    /// The frame with its JSON string literals redacted (the raw payload
    /// when it is not JSON); `raw` itself when nothing matched.
    fn generic(&mut self, msg: &Message, raw: &Bytes) -> Result<Bytes, StreamError> {
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
            return Ok(raw.clone());
        }
        let mut out = Vec::new();
        write(&Message::new_from_parts(msg.headers().to_vec(), payload), &mut out)?;
        Ok(Bytes::from(out))
    }

    /// InvokeAgent `files` (`{"files": [{"name", "type", "bytes": base64}]}`):
    /// a file whose media type is text the app will read (`text/*`, JSON,
    /// XML, CSV, YAML) is decoded, redacted as UTF-8 text and re-encoded;
    /// then every JSON string of the event is redacted as in `generic`.
    /// Binary media types, and text files that are not UTF-8, pass as they
    /// are (a documented limit).
    fn agent_files(&mut self, msg: &Message, raw: &Bytes) -> Result<Bytes, StreamError> {
        let Ok(mut v) = serde_json::from_slice::<Value>(msg.payload()) else {
            return self.generic(msg, raw);
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
            return Ok(raw.clone());
        }
        let mut out = Vec::new();
        write_json(msg.headers(), &v, &mut out)?;
        Ok(Bytes::from(out))
    }

    /// ConverseStream deltas and RetrieveAndGenerateStream output: every
    /// string but the protocol fields is a continuing text.
    fn json_event(&mut self, msg: Message, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Ok(mut v) = serde_json::from_slice::<Value>(msg.payload()) else {
            self.end_all(out)?;
            let f = self.generic(&msg, raw)?;
            return self.push_final(f, out);
        };
        let tracked = leaves_of(&v, PROTOCOL_KEYS);
        let n = redact_except(&self.redactor, &mut v, &tracked);
        self.redactions += n;
        let (leaves, keys) = split_leaves(tracked);
        let rb = Rebuild { headers: msg.headers().to_vec(), body: Body::Json(v), leaves, dirty: n > 0 };
        self.enqueue(raw.clone(), rb, keys, out)
    }

    fn model_chunk(&mut self, msg: Message, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let outer = serde_json::from_slice::<Value>(msg.payload()).ok();
        let bytes = outer
            .as_ref()
            .and_then(|o| o.get("bytes")?.as_str())
            .and_then(|b| B64.decode(b).ok());
        let (Some(mut outer), Some(bytes)) = (outer, bytes) else {
            self.end_all(out)?;
            let f = self.generic(&msg, raw)?;
            return self.push_final(f, out);
        };
        if let Some(o) = outer.as_object_mut() {
            o.remove("bytes");
        }
        let n_outer = self.redactor.redact_value(&mut outer);
        let headers = msg.headers().to_vec();
        let Ok(mut inner) = serde_json::from_slice::<Value>(&bytes) else {
            // Text inside: one continuing text across such chunks.
            let keys: Vec<String> = self.live.keys().filter(|k| *k != "#bytes").cloned().collect();
            for k in keys {
                self.end(&k);
            }
            self.redactions += n_outer;
            let leaf = Leaf { pointer: String::new(), text: bytes, edits: Vec::new() };
            let rb = Rebuild { headers, body: Body::Chunk { outer, inner: None }, leaves: vec![leaf], dirty: n_outer > 0 };
            return self.enqueue(raw.clone(), rb, vec!["#bytes".into()], out);
        };
        let tracked = leaves_of(&inner, PROTOCOL_KEYS);
        // Texts this chunk does not continue end here, unless the chunk
        // continues the same path for another block or choice, or is a
        // keep-alive (`{"type": "ping"}`): it carries no text and ends no
        // block.
        if !is_keepalive_chunk(&inner) {
            let shapes: Vec<String> = tracked.iter().map(|(_, k, _)| shape_of(k)).collect();
            let ended: Vec<String> = self
                .live
                .keys()
                .filter(|k| !tracked.iter().any(|(_, t, _)| t == *k) && !shapes.contains(&shape_of(k)))
                .cloned()
                .collect();
            for k in ended {
                self.end(&k);
            }
        }
        let last = inner.get("amazon-bedrock-invocationMetrics").is_some();
        let n = redact_except(&self.redactor, &mut inner, &tracked) + n_outer;
        self.redactions += n;
        let (leaves, keys) = split_leaves(tracked);
        let rb = Rebuild { headers, body: Body::Chunk { outer, inner: Some(inner) }, leaves, dirty: n > 0 };
        self.enqueue(raw.clone(), rb, keys, out)?;
        if last {
            self.end_all(out)?;
        }
        Ok(())
    }

    fn agent_chunk(&mut self, msg: Message, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let outer = serde_json::from_slice::<Value>(msg.payload()).ok();
        let bytes = outer
            .as_ref()
            .and_then(|o| o.get("bytes")?.as_str())
            .and_then(|b| B64.decode(b).ok());
        let (Some(mut outer), Some(bytes)) = (outer, bytes) else {
            self.end_all(out)?;
            let f = self.generic(&msg, raw)?;
            return self.push_final(f, out);
        };
        if let Some(o) = outer.as_object_mut() {
            o.remove("bytes");
        }
        let n = self.redactor.redact_value(&mut outer);
        self.redactions += n;
        let leaf = Leaf { pointer: String::new(), text: bytes, edits: Vec::new() };
        let rb = Rebuild { headers: msg.headers().to_vec(), body: Body::Chunk { outer, inner: None }, leaves: vec![leaf], dirty: n > 0 };
        self.enqueue(raw.clone(), rb, vec!["chunk".into()], out)
    }

    /// Queues a frame whose leaf `i` continues text `keys[i]`, then sends
    /// every frame that is decided.
    fn enqueue(&mut self, raw: Bytes, rb: Rebuild, keys: Vec<String>, out: &mut Vec<u8>) -> Result<(), StreamError> {
        if keys.is_empty() && self.queue.is_empty() {
            return self.write_pending(Pending { raw, rebuild: Some(rb), refs: 0 }, out);
        }
        let seq = self.first_seq + self.queue.len() as u64;
        self.queued_bytes += raw.len();
        self.queue.push_back(Pending { raw, rebuild: Some(rb), refs: 0 });
        let mut res = Ok(());
        for (li, key) in keys.into_iter().enumerate() {
            if let Err(e) = self.track(seq, li, key) {
                res = Err(e);
            }
        }
        res?;
        self.release(out)?;
        if self.queued_bytes > MAX_QUEUED {
            return Err(StreamError::HoldLimit);
        }
        Ok(())
    }

    /// A frame that is final as it is: sent now, or queued behind the
    /// frames still waiting (order is kept).
    fn push_final(&mut self, f: Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        if self.queue.is_empty() {
            out.extend_from_slice(&f);
            return Ok(());
        }
        self.queued_bytes += f.len();
        self.queue.push_back(Pending { raw: f, rebuild: None, refs: 0 });
        if self.queued_bytes > MAX_QUEUED {
            return Err(StreamError::HoldLimit);
        }
        Ok(())
    }

    /// Appends leaf `li` of frame `seq` to the text `key`.
    fn track(&mut self, seq: u64, li: usize, key: String) -> Result<(), StreamError> {
        let idx = (seq - self.first_seq) as usize;
        if self.live.len() >= MAX_TEXTS && !self.live.contains_key(&key) {
            // Texts that hold nothing keep only look-behind context; drop
            // them rather than grow without bound on a stream of ever new
            // paths.
            self.live.retain(|_, l| !l.segs.is_empty());
        }
        self.queue[idx].refs += 1;
        let Some(rb) = &self.queue[idx].rebuild else { return Ok(()) };
        let text = &rb.leaves[li].text;
        let live = self.live.entry(key).or_default();
        live.segs.push_back((live.text.end(), text.len(), seq, li));
        let mut found = Vec::new();
        let res = live.text.push(&self.redactor, &mut self.cache, text, &mut found);
        self.redactions += found.len() as u64;
        apply_matches(live, &mut self.queue, self.first_seq, &found);
        let hs = live.text.held_start();
        while let Some(&(st, len, s, _)) = live.segs.front() {
            if st + len as u64 > hs {
                break;
            }
            live.segs.pop_front();
            self.queue[(s - self.first_seq) as usize].refs -= 1;
        }
        res.map_err(|_| StreamError::HoldLimit)
    }

    /// The end of text `key`: matches in what it still holds are applied
    /// and its frames are no longer held by it.
    fn end(&mut self, key: &str) {
        let Some(mut live) = self.live.remove(key) else { return };
        let mut found = Vec::new();
        live.text.finish(&self.redactor, &mut found);
        self.redactions += found.len() as u64;
        apply_matches(&live, &mut self.queue, self.first_seq, &found);
        for (_, _, s, _) in live.segs {
            self.queue[(s - self.first_seq) as usize].refs -= 1;
        }
    }

    fn end_all_quiet(&mut self) {
        let keys: Vec<String> = self.live.keys().cloned().collect();
        for k in keys {
            self.end(&k);
        }
    }

    fn end_all(&mut self, out: &mut Vec<u8>) -> Result<(), StreamError> {
        self.end_all_quiet();
        self.release(out)
    }

    /// Sends the frames at the head of the queue that no text holds.
    fn release(&mut self, out: &mut Vec<u8>) -> Result<(), StreamError> {
        while self.queue.front().is_some_and(|p| p.refs == 0) {
            let Some(p) = self.queue.pop_front() else { break };
            self.first_seq += 1;
            self.queued_bytes -= p.raw.len();
            self.write_pending(p, out)?;
        }
        Ok(())
    }

    /// A decided frame: upstream's bytes when nothing in it changed, else
    /// re-encoded with its texts edited.
    fn write_pending(&self, p: Pending, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Some(rb) = p.rebuild else {
            out.extend_from_slice(&p.raw);
            return Ok(());
        };
        if !rb.dirty && rb.leaves.iter().all(|l| l.edits.is_empty()) {
            out.extend_from_slice(&p.raw);
            return Ok(());
        }
        let rep = self.redactor.replacement().as_bytes();
        let set = |v: &mut Value, leaves: &[Leaf]| {
            for l in leaves.iter().filter(|l| !l.edits.is_empty()) {
                set_str(v, &l.pointer, utf8(apply_edits(&l.text, &l.edits, rep)));
            }
        };
        match rb.body {
            Body::Raw => {
                let payload = apply_edits(&rb.leaves[0].text, &rb.leaves[0].edits, rep);
                write(&Message::new_from_parts(rb.headers, payload), out)
            }
            Body::Json(mut v) => {
                set(&mut v, &rb.leaves);
                write_json(&rb.headers, &v, out)
            }
            Body::Chunk { mut outer, inner } => {
                let bytes = match inner {
                    Some(mut v) => {
                        set(&mut v, &rb.leaves);
                        serde_json::to_vec(&v).map_err(|e| StreamError::Encode(e.to_string()))?
                    }
                    None => apply_edits(&rb.leaves[0].text, &rb.leaves[0].edits, rep),
                };
                if let Some(o) = outer.as_object_mut() {
                    o.insert("bytes".into(), Value::String(B64.encode(bytes)));
                }
                write_json(&rb.headers, &outer, out)
            }
        }
    }
}

/// The outer JSON of a `chunk` event, for the fast path.
#[derive(serde::Deserialize)]
struct ChunkOuter<'a> {
    #[serde(borrow)]
    bytes: std::borrow::Cow<'a, str>,
}

/// Most continuing texts of one stream kept for their look-behind context.
const MAX_TEXTS: usize = 1024;

/// Records each match (absolute range in `live`'s text) as edits of the
/// leaves it lies in: the replacement where it starts, removal after.
fn apply_matches(live: &Live, queue: &mut VecDeque<Pending>, first_seq: u64, found: &[(u64, u64)]) {
    for &(s, e) in found {
        for &(st, len, seq, li) in &live.segs {
            let (a, b) = (s.max(st), e.min(st + len as u64));
            if a >= b {
                continue;
            }
            if let Some(rb) = &mut queue[(seq - first_seq) as usize].rebuild {
                rb.leaves[li].edits.push(((a - st) as usize, (b - st) as usize, a == s));
            }
        }
    }
}

fn apply_edits(text: &[u8], edits: &[(usize, usize, bool)], rep: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + rep.len());
    let mut last = 0;
    for &(a, b, put) in edits {
        out.extend_from_slice(&text[last..a]);
        if put {
            out.extend_from_slice(rep);
        }
        last = b;
    }
    out.extend_from_slice(&text[last..]);
    out
}

fn split_leaves(tracked: Vec<(String, String, Vec<u8>)>) -> (Vec<Leaf>, Vec<String>) {
    tracked
        .into_iter()
        .map(|(pointer, key, text)| (Leaf { pointer, text, edits: Vec::new() }, key))
        .unzip()
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

/// Every string leaf of `v` to track as a continuing text, as
/// (JSON pointer, key, text), skipping strings named in `skip`. The key is
/// the pointer with each object that has a numeric `index` or
/// `contentBlockIndex` marked `#n`, and an array element that has one named
/// by it instead of its position, so parallel content blocks and choices are
/// separate texts wherever they sit in their array.
fn tracked_leaves(v: &Value, skip: &[&str], ptr: &mut String, key: &mut String, out: &mut Vec<(String, String, Vec<u8>)>) {
    use std::fmt::Write as _;
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if x.is_string() && skip.contains(&k.as_str()) {
                    continue;
                }
                let (pl, kl) = (ptr.len(), key.len());
                let tok = escape_token(k);
                ptr.push('/');
                ptr.push_str(&tok);
                key.push('/');
                key.push_str(&tok);
                match x {
                    Value::String(s) => out.push((ptr.clone(), key.clone(), s.as_bytes().to_vec())),
                    x => {
                        if let Some(i) = block_index(x) {
                            let _ = write!(key, "#{i}");
                        }
                        tracked_leaves(x, skip, ptr, key, out);
                    }
                }
                ptr.truncate(pl);
                key.truncate(kl);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let (pl, kl) = (ptr.len(), key.len());
                let _ = write!(ptr, "/{i}");
                match block_index(x) {
                    Some(n) => {
                        let _ = write!(key, "/#{n}");
                    }
                    None => {
                        let _ = write!(key, "/{i}");
                    }
                }
                match x {
                    Value::String(s) => out.push((ptr.clone(), key.clone(), s.as_bytes().to_vec())),
                    x => tracked_leaves(x, skip, ptr, key, out),
                }
                ptr.truncate(pl);
                key.truncate(kl);
            }
        }
        _ => {}
    }
}

/// The numeric `index` / `contentBlockIndex` of an object.
fn block_index(v: &Value) -> Option<u64> {
    let m = v.as_object()?;
    m.get("index").or_else(|| m.get("contentBlockIndex")).and_then(Value::as_u64)
}

/// The tracked leaves of a whole payload; its own block index, if any,
/// leads the key.
fn leaves_of(v: &Value, skip: &[&str]) -> Vec<(String, String, Vec<u8>)> {
    if let Value::String(s) = v {
        return vec![(String::new(), String::new(), s.as_bytes().to_vec())];
    }
    let mut out = Vec::new();
    let mut key = block_index(v).map(|i| format!("#{i}")).unwrap_or_default();
    tracked_leaves(v, skip, &mut String::new(), &mut key, &mut out);
    out
}

/// A key with its block indices taken out: the same path in any block or
/// choice.
fn shape_of(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut in_index = false;
    for c in key.chars() {
        if in_index && c.is_ascii_digit() {
            continue;
        }
        in_index = c == '#';
        out.push(c);
    }
    out
}

fn set_str(v: &mut Value, pointer: &str, s: String) {
    if let Some(x) = ptr_mut(v, pointer) {
        *x = Value::String(s);
    }
}

/// Redacts every string except the tracked texts (redacted across events).
fn redact_except(r: &Redactor, v: &mut Value, tracked: &[(String, String, Vec<u8>)]) -> u64 {
    if tracked.is_empty() {
        return r.redact_value(v);
    }
    let saved: Vec<(&str, Value)> = tracked
        .iter()
        .filter_map(|(p, _, _)| Some((p.as_str(), ptr_mut(v, p)?.take())))
        .collect();
    let n = r.redact_value(v);
    for (p, x) in saved {
        if let Some(slot) = ptr_mut(v, p) {
            *slot = x;
        }
    }
    n
}

#[cfg(test)]
#[path = "eventstream_tests.rs"]
mod tests;
