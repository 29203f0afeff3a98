//! Server-sent events (ChatCompletions streams, `text/event-stream`) through
//! the same redaction as model event streams: each event's `data` is one
//! model chunk. An event is turned into the `chunk` message
//! InvokeModelWithResponseStream would carry (`{"bytes": base64(data)}`,
//! its `event`, `id` and `retry` fields kept as headers), handed to the
//! continuing-text machinery ([`super::texts`], `StreamShape::Model`), and
//! every message it releases is written back as a server-sent event. So the
//! `choices[].delta.content` texts of successive events continue each other
//! (keyed by the choice's `index`), exactly as a model stream's chunks do,
//! and events are released as soon as they are decided: nothing is buffered
//! beyond the undecided text and the event being read.
//!
//! Parsing follows the WHATWG event-stream rules: lines end in CRLF, LF or
//! CR; `data` lines are joined with LF; one space after the colon is
//! dropped; comment lines (`:` first) and unknown fields are dropped; an
//! event ends at an empty line and is dispatched only when it has data.
//! An event or line longer than [`MAX_FRAME`] ends the stream with an
//! error, as does a stream that ends inside a line.

use super::{StreamError, MAX_FRAME};
use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::{Buf, BytesMut};
use serde_json::Value;

const FIELD_HEADERS: [(&str, &str); 3] = [("event", "sse-event"), ("id", "sse-id"), ("retry", "sse-retry")];

/// The event being read.
#[derive(Default)]
pub(super) struct SseFramer {
    buf: BytesMut,
    /// Bytes of `buf` already known to hold no line end (a long line
    /// arriving in small pieces is scanned once).
    scanned: usize,
    data: Vec<u8>,
    has_data: bool,
    fields: Vec<(&'static str, String)>,
}

impl SseFramer {
    /// Appends upstream bytes; returns each whole event as a `chunk` message.
    pub(super) fn push(&mut self, bytes: &[u8], events: &mut Vec<Message>) -> Result<(), StreamError> {
        self.buf.extend_from_slice(bytes);
        while let Some(i) = self.buf[self.scanned..].iter().position(|b| *b == b'\n' || *b == b'\r').map(|i| i + self.scanned) {
            // A CR at the end may be the first half of a CRLF.
            if self.buf[i] == b'\r' && i + 1 == self.buf.len() {
                self.scanned = i;
                break;
            }
            self.scanned = 0;
            let line = self.buf.split_to(i);
            let crlf = self.buf[0] == b'\r' && self.buf.get(1) == Some(&b'\n');
            self.buf.advance(if crlf { 2 } else { 1 });
            self.line(&line, events)?;
        }
        if self.buf.len() > MAX_FRAME {
            return Err(StreamError::FrameTooLarge(self.buf.len()));
        }
        if self.buf.last() != Some(&b'\r') {
            self.scanned = self.buf.len();
        }
        Ok(())
    }

    /// End of the body: a last event not followed by an empty line is
    /// dispatched; a partial line is a truncated stream.
    pub(super) fn finish(&mut self, events: &mut Vec<Message>) -> Result<(), StreamError> {
        // A last line ended by a lone CR.
        if self.buf.last() == Some(&b'\r') {
            let line = self.buf.split_to(self.buf.len() - 1);
            self.buf.clear();
            self.scanned = 0;
            self.line(&line, events)?;
        }
        if !self.buf.is_empty() {
            return Err(StreamError::Truncated(self.buf.len()));
        }
        self.dispatch(events);
        Ok(())
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<Message>) -> Result<(), StreamError> {
        if line.is_empty() {
            self.dispatch(events);
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > MAX_FRAME {
                    return Err(StreamError::FrameTooLarge(self.data.len() + value.len() + 1));
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            _ => {
                if let Some((name, _)) = FIELD_HEADERS.iter().find(|(f, _)| f.as_bytes() == field) {
                    let Ok(v) = std::str::from_utf8(value) else {
                        return Err(StreamError::Decode(format!("server-sent event field {name} is not UTF-8")));
                    };
                    self.fields.retain(|(n, _)| n != name);
                    self.fields.push((name, v.to_string()));
                }
            }
        }
        Ok(())
    }

    fn dispatch(&mut self, events: &mut Vec<Message>) {
        let fields = std::mem::take(&mut self.fields);
        if !std::mem::take(&mut self.has_data) {
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        data.pop();
        let mut headers = vec![
            Header::new(":message-type", HeaderValue::String("event".into())),
            Header::new(":event-type", HeaderValue::String("chunk".into())),
            Header::new(":content-type", HeaderValue::String("application/json".into())),
        ];
        for (name, v) in fields {
            let h = FIELD_HEADERS.iter().find(|(f, _)| *f == name).map_or("sse-event", |(_, h)| *h);
            headers.push(Header::new(h, HeaderValue::String(v.into())));
        }
        let payload = serde_json::json!({ "bytes": B64.encode(&data) }).to_string();
        events.push(Message::new_from_parts(headers, payload));
    }
}

/// The messages the redaction released, written back as server-sent events.
pub(super) fn to_sse(mut frames: &[u8], out: &mut Vec<u8>) -> Result<(), StreamError> {
    while !frames.is_empty() {
        let msg = read_message_from(&mut frames).map_err(|e| StreamError::Encode(e.to_string()))?;
        for (field, header) in FIELD_HEADERS {
            if let Some(v) = super::header_str(&msg, header) {
                out.extend_from_slice(field.as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(v.as_bytes());
                out.push(b'\n');
            }
        }
        let data = serde_json::from_slice::<Value>(msg.payload())
            .ok()
            .and_then(|v| v.get("bytes").and_then(Value::as_str).and_then(|b| B64.decode(b).ok()))
            .ok_or_else(|| StreamError::Encode("a released event has no data".into()))?;
        for line in data.split(|b| *b == b'\n') {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    Ok(())
}

/// The event that ends a ChatCompletions stream the sidecar cannot
/// continue: an `error` object, which OpenAI's SDKs raise as an API error.
pub(super) fn error_event(reason: &str, message: &str) -> Vec<u8> {
    let v = serde_json::json!({"error": {"message": message, "type": "tenantgate_error", "code": reason}});
    format!("data: {v}\n\n").into_bytes()
}
