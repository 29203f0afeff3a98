//! Redaction of AWS event-stream response bodies (docs/reference.md §7), as a decoder:
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
//! - AgenticRetrieveStream `responseEvent` text; `traceEvent` and `result`
//!   events in between do not end it.
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
//! - ChatCompletions server-sent events (`text/event-stream`): each
//!   event's `data` is a model chunk, tracked like
//!   InvokeModelWithResponseStream's (`sse`): `choices[].delta.content` of
//!   successive events continue each other per choice `index`.
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
//! answer citing a foreign source (docs/reference.md §5.2).

mod json;
mod sse;
mod texts;

use super::chunks::SourceFilter;
use super::redact::{Redactor, MAX_HOLD};
use aws_smithy_eventstream::frame::{read_message_from, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use std::sync::Arc;

#[cfg(test)]
use json::*;
#[cfg(test)]
use base64::{engine::general_purpose::STANDARD as B64, Engine};
use texts::Redact;

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Bad prelude/message CRC or malformed frame from upstream.
    #[error("invalid event-stream frame from upstream: {0}")]
    Decode(String),
    /// A frame announced more than [`MAX_FRAME`] bytes.
    #[error("event-stream frame of {0} bytes exceeds {MAX_FRAME}")]
    FrameTooLarge(usize),
    /// The stream ended inside a frame.
    #[error("event stream ended inside a frame ({0} bytes pending)")]
    Truncated(usize),
    #[error("re-encoding an event-stream frame failed: {0}")]
    Encode(String),
    /// An InvokeAgent event names a knowledge-base source outside the
    /// tenant's allowed prefixes: the answer may hold another tenant's data.
    #[error("an agent event cites a source outside the tenant's allowed prefixes")]
    ForeignSource,
    /// A would-be match kept growing past [`MAX_HOLD`] bytes, or more than
    /// [`MAX_QUEUED`] bytes of frames waited behind an undecided text.
    #[error("a possible redaction match stayed undecided past {MAX_HOLD} bytes of text or {MAX_QUEUED} bytes of events")]
    HoldLimit,
    /// An earlier call failed; the stream must not continue.
    #[error("event stream already failed")]
    Failed,
}

/// How an operation's events carry text (the operation's family decides,
/// `crate::family::ResponseShape`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamShape {
    /// ConverseStream: text per `contentBlockIndex`.
    Converse,
    /// RetrieveAndGenerateStream: output text and citations.
    Rag,
    /// AgenticRetrieveStream: response text, traces and results.
    Agentic,
    /// InvokeModelWithResponseStream: JSON (or bare) chunk payloads.
    Model,
    /// InvokeAgent: chunks, traces, files; sources checked.
    Agent,
    /// InvokeEndpointWithResponseStream: opaque payload parts.
    SageMaker,
    /// ChatCompletions: server-sent events whose `data` are model chunks.
    ChatCompletions,
    /// Events without known text members.
    Other,
}

/// Frames an upstream event stream and passes each whole frame through the
/// redaction (when patterns are configured) and, for InvokeAgent, the
/// source check (when the tenant has `allowed_source_prefixes`).
pub struct StreamRedactor {
    kind: StreamShape,
    buf: BytesMut,
    redact: Option<Redact>,
    sources: Option<SourceFilter>,
    /// ChatCompletions: the server-sent events framing.
    sse: Option<sse::SseFramer>,
    failed: bool,
}

impl StreamRedactor {
    pub fn new(shape: StreamShape, redactor: Arc<Redactor>) -> Self {
        Self::build(shape, Some(redactor), None)
    }

    /// The filter a response needs: redaction when `redactor` is set, the
    /// InvokeAgent source check when `sources` is set and enabled; None when
    /// neither applies (the stream passes untouched).
    pub fn for_response(shape: StreamShape, redactor: Option<Arc<Redactor>>, sources: Option<SourceFilter>) -> Option<Self> {
        let sources = sources.filter(|s| shape == StreamShape::Agent && !s.is_disabled());
        if redactor.is_none() && sources.is_none() {
            return None;
        }
        Some(Self::build(shape, redactor, sources))
    }

    fn build(kind: StreamShape, redactor: Option<Arc<Redactor>>, sources: Option<SourceFilter>) -> Self {
        // ChatCompletions events carry model chunks: tracked as such.
        let (texts, sse) = match kind {
            StreamShape::ChatCompletions => (StreamShape::Model, Some(sse::SseFramer::default())),
            k => (k, None),
        };
        StreamRedactor {
            kind,
            redact: redactor.map(|redactor| Redact::new(texts, redactor)),
            sources,
            buf: BytesMut::new(),
            sse,
            failed: false,
        }
    }

    /// Matches replaced so far.
    pub fn redactions(&self) -> u64 {
        self.redact.as_ref().map_or(0, Redact::redactions)
    }

    /// Bytes of text currently undecided across all continuing texts (each
    /// bounded by [`MAX_HOLD`]).
    pub fn held_bytes(&self) -> usize {
        self.redact.as_ref().map_or(0, Redact::held_bytes)
    }

    /// Frames waiting behind an undecided text.
    pub fn queued_frames(&self) -> usize {
        self.redact.as_ref().map_or(0, Redact::queued_frames)
    }

    /// The event that ends a stream this redactor cannot continue (a bad
    /// frame from upstream): an exception message of a type the operation's
    /// SDK models, so clients raise a normal error instead of reading a
    /// truncated body. Held text is never sent after it.
    pub fn error_frame(&self, reason: &str, message: &str) -> Bytes {
        let exception = match self.kind {
            StreamShape::ChatCompletions => return Bytes::from(sse::error_event(reason, message)),
            StreamShape::Converse | StreamShape::Model => "serviceUnavailableException",
            StreamShape::SageMaker => "InternalStreamFailure",
            StreamShape::Agent | StreamShape::Rag | StreamShape::Agentic | StreamShape::Other => "badGatewayException",
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
        let r = self.finish_inner();
        self.failed = r.is_err();
        r
    }

    fn finish_inner(&mut self) -> Result<Bytes, StreamError> {
        let mut out = Vec::new();
        if let Some(framer) = &mut self.sse {
            let mut events = Vec::new();
            framer.finish(&mut events)?;
            for msg in events {
                self.on_event(msg, &mut out)?;
            }
        }
        if let Some(red) = &mut self.redact {
            red.end_all(&mut out)?;
        }
        self.frames_out(out)
    }

    /// What the redaction released, in the client's framing.
    fn frames_out(&self, frames: Vec<u8>) -> Result<Bytes, StreamError> {
        if self.sse.is_none() {
            return Ok(Bytes::from(frames));
        }
        let mut out = Vec::with_capacity(frames.len());
        sse::to_sse(&frames, &mut out)?;
        Ok(Bytes::from(out))
    }

    /// One server-sent event, as the `chunk` message it stands for.
    fn on_event(&mut self, msg: Message, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let mut raw = Vec::new();
        write(&msg, &mut raw)?;
        self.on_message(msg, &Bytes::from(raw), out)
    }

    fn push_inner(&mut self, data: &[u8]) -> Result<Bytes, StreamError> {
        if let Some(framer) = &mut self.sse {
            let mut events = Vec::new();
            framer.push(data, &mut events)?;
            let mut out = Vec::with_capacity(data.len() + 64);
            for msg in events {
                self.on_event(msg, &mut out)?;
            }
            return self.frames_out(out);
        }
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

/// InvokeAgent source check (docs/reference.md §5.2 applied to agents): every
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

pub(super) fn header_str<'a>(msg: &'a Message, name: &str) -> Option<&'a str> {
    msg.headers()
        .iter()
        .find(|h| h.name().as_str() == name)
        .and_then(|h| match h.value() {
            HeaderValue::String(s) => Some(s.as_str()),
            _ => None,
        })
}

pub(super) fn write(msg: &Message, out: &mut Vec<u8>) -> Result<(), StreamError> {
    write_message_to(msg, out).map_err(|e| StreamError::Encode(e.to_string()))
}

pub(super) fn write_json(headers: &[Header], v: &Value, out: &mut Vec<u8>) -> Result<(), StreamError> {
    let payload = serde_json::to_vec(v).map_err(|e| StreamError::Encode(e.to_string()))?;
    write(&Message::new_from_parts(headers.to_vec(), payload), out)
}

#[cfg(test)]
mod tests;
