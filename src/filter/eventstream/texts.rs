//! The redaction state of one stream: continuing texts and the frames
//! waiting for them (see the module documentation of `eventstream`).

use super::json::*;
use super::{header_str, write, write_json, StreamShape, StreamError, MAX_QUEUED, PROTOCOL_KEYS};
use crate::filter::redact::{HoldCache, LiveText, Redactor};
use aws_smithy_types::event_stream::{Header, Message};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// The redaction state of one stream.
pub(super) struct Redact {
    kind: StreamShape,
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
pub(super) struct Pending {
    /// The frame as upstream sent it (or as already re-encoded).
    raw: Bytes,
    /// How to re-encode it when a match changed one of its texts or a field
    /// that is not tracked was redacted; None for frames final as `raw`.
    rebuild: Option<Rebuild>,
    /// Segments of continuing texts that still hold this frame.
    refs: usize,
}

pub(super) struct Rebuild {
    headers: Vec<Header>,
    body: Body,
    /// The tracked texts of the frame, as upstream sent them.
    leaves: Vec<Leaf>,
    /// A field that is not tracked was redacted in `body`.
    dirty: bool,
}

pub(super) enum Body {
    /// The payload is leaf 0.
    Raw,
    /// JSON payload; leaves at their pointers.
    Json(Value),
    /// `{"bytes": base64(inner), ...}` with `bytes` removed from `outer`:
    /// the inner JSON with leaves at their pointers, or (None) leaf 0 is the
    /// inner bytes.
    Chunk { outer: Value, inner: Option<Value> },
}

pub(super) struct Leaf {
    pointer: String,
    text: Vec<u8>,
    /// Byte ranges of `text` to replace, in order: by the replacement
    /// (true: a match starts here) or by nothing (the rest of a match that
    /// started in an earlier frame).
    edits: Vec<(usize, usize, bool)>,
}

/// One continuing text and the frames its undecided tail lies in.
#[derive(Default)]
pub(super) struct Live {
    text: LiveText,
    /// (absolute start, length, frame sequence number, leaf index), in order.
    segs: VecDeque<(u64, usize, u64, usize)>,
}

impl Redact {
    pub(super) fn new(kind: StreamShape, redactor: Arc<Redactor>) -> Self {
        Redact {
            kind,
            cache: redactor.hold_cache(),
            redactor,
            redactions: 0,
            queue: VecDeque::new(),
            first_seq: 0,
            queued_bytes: 0,
            live: BTreeMap::new(),
        }
    }

    pub(super) fn redactions(&self) -> u64 {
        self.redactions
    }

    pub(super) fn held_bytes(&self) -> usize {
        self.live.values().map(|t| t.text.held_len()).sum()
    }

    pub(super) fn queued_frames(&self) -> usize {
        self.queue.len()
    }

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
            (StreamShape::Converse, "contentBlockDelta") | (StreamShape::Rag, "output") | (StreamShape::Agentic, "responseEvent") => {
                self.json_is_clean(payload)
            }
            (StreamShape::Model, "chunk") | (StreamShape::Agent, "chunk") => {
                // `{"bytes": base64, ...}`: the outer JSON has no match, and
                // the decoded bytes are clean text (model chunks: clean JSON).
                if payload.contains(&b'\\') || self.redactor.has_match(payload) {
                    return false;
                }
                let Some(inner) = serde_json::from_slice::<ChunkOuter>(payload).ok().and_then(|o| B64.decode(o.bytes.as_bytes()).ok()) else {
                    return false;
                };
                // Inner bytes that are not JSON are one continuing text.
                if self.kind == StreamShape::Model && serde_json::from_slice::<serde::de::IgnoredAny>(&inner).is_ok() {
                    self.json_is_clean(&inner)
                } else {
                    !self.redactor.has_match(&inner) && !self.redactor.ends_live(&mut self.cache, &inner)
                }
            }
            (StreamShape::SageMaker, "PayloadPart") => {
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

    pub(super) fn on_message(&mut self, msg: Message, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let is_event = header_str(&msg, ":message-type").is_none_or(|t| t == "event");
        let et = header_str(&msg, ":event-type").unwrap_or("").to_string();
        if is_event && self.passes_untouched(&msg, &et) {
            out.extend_from_slice(raw);
            return Ok(());
        }
        match (is_event, self.kind, et.as_str()) {
            (true, StreamShape::Converse, "contentBlockDelta")
            | (true, StreamShape::Rag, "output")
            | (true, StreamShape::Agentic, "responseEvent") => self.json_event(msg, raw, out),
            (true, StreamShape::Converse, "contentBlockStop") => {
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
            // Citations between output events, traces between agent chunks
            // or response events: redacted on their own, the text goes on
            // after them.
            (true, StreamShape::Rag | StreamShape::Agentic, _) | (true, StreamShape::Agent, "trace") => {
                let f = self.generic(&msg, raw)?;
                self.push_final(f, out)
            }
            (true, StreamShape::Model, "chunk") => self.model_chunk(msg, raw, out),
            (true, StreamShape::Agent, "chunk") => self.agent_chunk(msg, raw, out),
            (true, StreamShape::Agent, "files") => {
                self.end_all(out)?;
                let f = self.agent_files(&msg, raw)?;
                self.push_final(f, out)
            }
            (true, StreamShape::SageMaker, "PayloadPart") => {
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
        // Raw bytes holding a match the parsed tree does not (a duplicate
        // member the parser dropped) are never forwarded as they are.
        let dirty = n > 0 || self.redactor.has_match(msg.payload());
        let rb = Rebuild { headers: msg.headers().to_vec(), body: Body::Json(v), leaves, dirty };
        self.enqueue(raw.clone(), rb, keys, out)
    }

    fn model_chunk(&mut self, msg: Message, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Some((mut outer, bytes)) = split_chunk(&msg) else {
            self.end_all(out)?;
            let f = self.generic(&msg, raw)?;
            return self.push_final(f, out);
        };
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
            let dirty = n_outer > 0 || self.redactor.has_match(msg.payload());
            let rb = Rebuild { headers, body: Body::Chunk { outer, inner: None }, leaves: vec![leaf], dirty };
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
        let dirty = n > 0 || self.redactor.has_match(msg.payload()) || self.redactor.has_match(&bytes);
        let rb = Rebuild { headers, body: Body::Chunk { outer, inner: Some(inner) }, leaves, dirty };
        self.enqueue(raw.clone(), rb, keys, out)?;
        if last {
            self.end_all(out)?;
        }
        Ok(())
    }

    fn agent_chunk(&mut self, msg: Message, raw: &Bytes, out: &mut Vec<u8>) -> Result<(), StreamError> {
        let Some((mut outer, bytes)) = split_chunk(&msg) else {
            self.end_all(out)?;
            let f = self.generic(&msg, raw)?;
            return self.push_final(f, out);
        };
        let n = self.redactor.redact_value(&mut outer);
        self.redactions += n;
        let leaf = Leaf { pointer: String::new(), text: bytes, edits: Vec::new() };
        let dirty = n > 0 || self.redactor.has_match(msg.payload());
        let rb = Rebuild { headers: msg.headers().to_vec(), body: Body::Chunk { outer, inner: None }, leaves: vec![leaf], dirty };
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

    pub(super) fn end_all(&mut self, out: &mut Vec<u8>) -> Result<(), StreamError> {
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
pub(super) struct ChunkOuter<'a> {
    #[serde(borrow)]
    bytes: std::borrow::Cow<'a, str>,
}

/// Most continuing texts of one stream kept for their look-behind context.
pub(super) const MAX_TEXTS: usize = 1024;

/// A `chunk` event's `{"bytes": base64, ...}`: the other members, and the
/// decoded bytes; None when the payload is not that shape.
fn split_chunk(msg: &Message) -> Option<(Value, Vec<u8>)> {
    let mut outer = serde_json::from_slice::<Value>(msg.payload()).ok()?;
    let bytes = B64.decode(outer.get("bytes")?.as_str()?).ok()?;
    outer.as_object_mut()?.remove("bytes");
    Some((outer, bytes))
}

/// Records each match (absolute range in `live`'s text) as edits of the
/// leaves it lies in: the replacement where it starts, removal after.
pub(super) fn apply_matches(live: &Live, queue: &mut VecDeque<Pending>, first_seq: u64, found: &[(u64, u64)]) {
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

pub(super) fn apply_edits(text: &[u8], edits: &[(usize, usize, bool)], rep: &[u8]) -> Vec<u8> {
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

pub(super) fn split_leaves(tracked: Vec<(String, String, Vec<u8>)>) -> (Vec<Leaf>, Vec<String>) {
    tracked
        .into_iter()
        .map(|(pointer, key, text)| (Leaf { pointer, text, edits: Vec::new() }, key))
        .unzip()
}

