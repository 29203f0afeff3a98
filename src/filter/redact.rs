//! Response redaction (docs/reference.md §7): every match of `redaction.patterns` is
//! replaced by `replacement` in JSON string values (and object keys), plain
//! text, and — through [`super::eventstream`] — AWS event-stream messages.
//!
//! Decisions:
//! - JSON bodies are rewritten token by token: only string literals that
//!   contain a match are re-encoded; every other byte (numbers, whitespace,
//!   key order) is left as upstream sent it. Keys are strings too, so they are
//!   redacted as well (a map keyed by identity id would otherwise leak it).
//! - Text that is not UTF-8 (binary SageMaker bodies, or text with one stray
//!   byte) is matched with a `regex::bytes` twin of the combined pattern and
//!   redacted in place. Failing closed (502) would break binary models; passing
//!   unchanged would leak ids in text with one bad byte. A binary body matching
//!   an identity-id pattern by accident is not a realistic risk.
//! - Empty matches are ignored (a pattern that can match "" would otherwise
//!   insert the replacement between every byte).
//! - Hold-back for text split across stream events: see [`MAX_HOLD`] and [`LiveText`].

use crate::config::RedactionConfig;
use bytes::Bytes;
use std::borrow::Cow;
use std::sync::Arc;

/// Most bytes of a continuing text ever held back while they could still be
/// the beginning of a match.
///
/// The hold-back of a text is the shortest tail that could still begin a
/// match ([`LiveText::push`]): positions are tried with an anchored lazy DFA
/// of the combined pattern, and a position whose run has not died by the end
/// of the text so far is a possible match start. There is no cut-off below
/// which a would-be match is sent on: a match of any length split across
/// events is caught. What is bounded is how long a would-be match may keep
/// growing without completing or dying: past `MAX_HOLD` bytes the text is
/// refused ([`HoldExceeded`]) and the stream ends with an error, never with
/// the held bytes. Real identity ids are 45-60 bytes; with the default
/// pattern only `xx-` followed by 16 KiB of lowercase letters and no space
/// reaches the bound.
pub const MAX_HOLD: usize = 16 * 1024;

/// A would-be match kept growing past [`MAX_HOLD`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldExceeded;

/// Deciding "could a match still begin at this position?" for the hold-back.
struct Prefixes {
    dfa: regex_automata::hybrid::dfa::DFA,
}

impl Prefixes {
    fn new(pattern: &str) -> Option<Prefixes> {
        use regex_automata::hybrid::dfa::DFA;
        let dfa = DFA::builder()
            // `\b` is Unicode-aware: the DFA gives up ("quits") on non-ASCII
            // bytes next to one, which the caller treats as "could match".
            .configure(DFA::config().unicode_word_boundary(true))
            .build(pattern)
            .ok()?;
        Some(Prefixes { dfa })
    }

    /// True unless every match starting at `at` is ruled out by the bytes of
    /// `hay` from `at` to its end. Errors (a quit byte, a thrashing cache)
    /// count as "could match": holding back too much is safe.
    fn could_begin(&self, cache: &mut regex_automata::hybrid::dfa::Cache, hay: &[u8], at: usize) -> bool {
        use regex_automata::{Anchored, Input};
        let input = Input::new(hay).range(at..).anchored(Anchored::Yes);
        let Ok(mut sid) = self.dfa.start_state_forward(cache, &input) else {
            return true;
        };
        for &b in &hay[at..] {
            match self.dfa.next_state(cache, sid, b) {
                Ok(next) if next.is_dead() => return false,
                Ok(next) if next.is_quit() => return true,
                Ok(next) => sid = next,
                Err(_) => return true,
            }
        }
        !sid.is_dead()
    }
}

impl std::fmt::Debug for Prefixes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prefixes")
    }
}

/// Per-stream scratch for [`LiveText::push`]: the lazy DFA's state cache,
/// made on first use (a stream whose events carry no text never pays for it).
pub struct HoldCache(Option<regex_automata::hybrid::dfa::Cache>);

impl std::fmt::Debug for HoldCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HoldCache")
    }
}

#[derive(Debug)]
pub struct Redactor {
    re: regex::Regex,
    bytes_re: regex::bytes::Regex,
    /// None only if the DFA cannot be built for the pattern (configuration
    /// refuses such patterns, see [`check_stream_pattern`]); the hold-back
    /// would then keep every text whole up to [`MAX_HOLD`].
    prefixes: Option<Prefixes>,
    /// The pattern has no look-around assertion (`\b`, `^`, `$`, ...): a
    /// match never depends on the text around it.
    context_free: bool,
    replacement: String,
}

impl Redactor {
    /// None when no patterns are configured (nothing to redact).
    pub fn new(cfg: &RedactionConfig) -> Option<Arc<Redactor>> {
        let re = cfg.combined.clone()?;
        // Same source, already validated by the str regex: cannot fail in practice.
        let bytes_re = regex::bytes::Regex::new(re.as_str()).ok()?;
        let prefixes = Prefixes::new(re.as_str());
        if prefixes.is_none() {
            tracing::warn!("redaction: no automaton for the patterns; streams hold back every text up to {MAX_HOLD} bytes");
        }
        let context_free = regex_automata::util::syntax::parse(re.as_str())
            .is_ok_and(|h| h.properties().look_set().is_empty());
        Some(Arc::new(Redactor {
            re,
            bytes_re,
            prefixes,
            context_free,
            replacement: cfg.replacement.clone(),
        }))
    }

    /// Scratch space for [`LiveText::push`]; one per stream.
    pub fn hold_cache(&self) -> HoldCache {
        HoldCache(None)
    }

    /// The first position in `buf[from..]` where a match could still begin;
    /// `buf.len()` when there is none. Moved back onto a UTF-8 boundary.
    fn hold_point(&self, cache: &mut HoldCache, buf: &[u8], from: usize) -> usize {
        let mut at = match &self.prefixes {
            Some(p) => {
                let c = cache.0.get_or_insert_with(|| p.dfa.create_cache());
                (from..buf.len()).find(|&i| p.could_begin(c, buf, i)).unwrap_or(buf.len())
            }
            None => from,
        };
        while at > from && at < buf.len() && (buf[at] & 0xC0) == 0x80 {
            at -= 1;
        }
        at
    }

    /// True when no match depends on the text around it (no look-around):
    /// a text whose end cannot begin a match needs no look-behind context.
    pub fn context_free(&self) -> bool {
        self.context_free
    }

    /// Any match in `b`.
    pub fn has_match(&self, b: &[u8]) -> bool {
        self.bytes_re.is_match(b)
    }

    /// True when the end of `text` could still be the beginning of a match.
    pub fn ends_live(&self, cache: &mut HoldCache, text: &[u8]) -> bool {
        self.hold_point(cache, text, 0) < text.len()
    }

    pub fn replacement(&self) -> &str {
        &self.replacement
    }

    /// Replace every match in text; returns the count.
    pub fn redact_str<'a>(&self, s: &'a str) -> (Cow<'a, str>, u64) {
        let mut out = String::new();
        let mut last = 0;
        let mut n = 0;
        for m in self.re.find_iter(s).filter(|m| !m.is_empty()) {
            out.push_str(&s[last..m.start()]);
            out.push_str(&self.replacement);
            last = m.end();
            n += 1;
        }
        if n == 0 {
            return (Cow::Borrowed(s), 0);
        }
        out.push_str(&s[last..]);
        (Cow::Owned(out), n)
    }

    /// Replace every match in arbitrary bytes; returns the count.
    pub fn redact_bytes<'a>(&self, b: &'a [u8]) -> (Cow<'a, [u8]>, u64) {
        let mut out = Vec::new();
        let mut last = 0;
        let mut n = 0;
        for m in self.bytes_re.find_iter(b).filter(|m| !m.is_empty()) {
            out.extend_from_slice(&b[last..m.start()]);
            out.extend_from_slice(self.replacement.as_bytes());
            last = m.end();
            n += 1;
        }
        if n == 0 {
            return (Cow::Borrowed(b), 0);
        }
        out.extend_from_slice(&b[last..]);
        (Cow::Owned(out), n)
    }

    /// A whole response body. Valid JSON: every string literal (values and
    /// keys) is redacted, the rest of the bytes kept. Anything else is
    /// redacted as text (bytes when not UTF-8). The content type is only a
    /// hint: a JSON-looking body is parsed whatever it claims, so a wrong
    /// header never skips redaction. A body without matches is returned
    /// byte-for-byte unchanged.
    pub fn redact_body(&self, body: &[u8], content_type: Option<&str>) -> (Bytes, u64) {
        let _ = content_type;
        if let Some((out, n)) = self.redact_json_bytes(body) {
            return (out, n);
        }
        let (out, n) = self.redact_bytes(body);
        match out {
            Cow::Borrowed(_) => (Bytes::copy_from_slice(body), 0),
            Cow::Owned(v) => (Bytes::from(v), n),
        }
    }

    /// Some when `body` is valid JSON: its string literals redacted.
    pub fn redact_json_bytes(&self, body: &[u8]) -> Option<(Bytes, u64)> {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).ok()?;
        let mut out: Vec<u8> = Vec::new();
        let mut last = 0;
        let mut n = 0;
        let mut i = 0;
        while i < body.len() {
            if body[i] != b'"' {
                i += 1;
                continue;
            }
            let start = i;
            i += 1;
            while i < body.len() && body[i] != b'"' {
                i += if body[i] == b'\\' { 2 } else { 1 };
            }
            i += 1; // past the closing quote
            let lit = &body[start..i.min(body.len())];
            let Ok(s) = serde_json::from_slice::<String>(lit) else {
                continue;
            };
            let (red, k) = match self.redact_str(&s) {
                (_, 0) => match self.redact_base64(&s) {
                    Some((b, k)) => (Cow::Owned(b), k),
                    None => (Cow::Borrowed(s.as_str()), 0),
                },
                x => x,
            };
            if k > 0 {
                out.extend_from_slice(&body[last..start]);
                out.extend_from_slice(serde_json::to_string(&red).ok()?.as_bytes());
                last = i;
                n += k;
            }
        }
        if n == 0 {
            return Some((Bytes::copy_from_slice(body), 0));
        }
        out.extend_from_slice(&body[last..]);
        Some((Bytes::from(out), n))
    }

    /// A JSON string that is standard base64 of UTF-8 text (a model's
    /// encoded output inside an InvokeModel answer): the decoded text
    /// redacted and encoded again; None when it is not such a string or
    /// holds no match. Strings shorter than 16 characters are not tried.
    pub fn redact_base64(&self, s: &str) -> Option<(String, u64)> {
        use base64::Engine;
        let b = s.as_bytes();
        if b.len() < 16
            || !b.len().is_multiple_of(4)
            || !b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/' || c == b'=')
        {
            return None;
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(b).ok()?;
        let text = std::str::from_utf8(&raw).ok()?;
        match self.redact_str(text) {
            (_, 0) => None,
            (red, n) => Some((base64::engine::general_purpose::STANDARD.encode(red.as_bytes()), n)),
        }
    }

    /// Every string (values and keys) in a parsed JSON value, in place.
    pub fn redact_value(&self, v: &mut serde_json::Value) -> u64 {
        use serde_json::Value;
        match v {
            Value::String(s) => {
                let (red, n) = self.redact_str(s);
                if let Cow::Owned(r) = red {
                    *s = r;
                }
                n
            }
            Value::Array(a) => a.iter_mut().map(|x| self.redact_value(x)).sum(),
            Value::Object(m) => {
                let mut n = 0;
                if m.keys().any(|k| self.re.is_match(k)) {
                    let old = std::mem::take(m);
                    for (k, val) in old {
                        let (rk, kn) = self.redact_str(&k);
                        n += kn;
                        m.insert(rk.into_owned(), val);
                    }
                }
                n + m.values_mut().map(|x| self.redact_value(x)).sum::<u64>()
            }
            _ => 0,
        }
    }
}

/// The pattern can drive the stream hold-back: its lazy DFA builds.
/// Configuration refuses a pattern for which it does not (a stream could
/// then only be held whole).
pub fn check_stream_pattern(pattern: &str) -> Result<(), String> {
    Prefixes::new(pattern).map(|_| ()).ok_or_else(|| "the pattern is too large for the stream automaton".to_string())
}

/// One continuing text (a content block's deltas, an agent's chunk bytes, a
/// SageMaker payload, a string field at one JSON path of a model's chunks),
/// seen as one long byte string whose positions are absolute offsets from
/// its start. It finds the matches that are final and keeps the shortest
/// tail that could still begin a match ([`MAX_HOLD`] for the bound); the
/// caller decides what to do with the text before [`LiveText::held_start`]
/// (it can no longer change).
///
/// The last character before the held tail is kept as look-behind context,
/// so assertions that look at the previous character (`\b`, `\B`, `(?m)^`)
/// decide at a split exactly as they would on the whole text: `xSSN123`
/// split after `x` is not a `\bSSN\d{3}` match.
#[derive(Debug, Default)]
pub struct LiveText {
    held: Vec<u8>,
    /// The original bytes of the last character before `held`, at most 4.
    before: Vec<u8>,
    /// Absolute offset of `held[0]`.
    start: u64,
}

/// The start of the last UTF-8 character of `b` (at most 4 bytes back).
fn last_char_start(b: &[u8]) -> usize {
    let lo = b.len().saturating_sub(4);
    (lo..b.len()).rev().find(|&i| (b[i] & 0xC0) != 0x80).unwrap_or(lo)
}

impl LiveText {
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Everything before this absolute offset is final.
    pub fn held_start(&self) -> u64 {
        self.start
    }

    /// Absolute offset just past the text pushed so far.
    pub fn end(&self) -> u64 {
        self.start + self.held.len() as u64
    }

    /// Context, held text and `data` in one buffer; returns it with the
    /// offset where the held text starts and the absolute offset of
    /// `buf[0]`.
    fn take_buf(&mut self, data: &[u8]) -> (Vec<u8>, usize, u64) {
        let mut buf = std::mem::take(&mut self.before);
        let ctx = buf.len();
        buf.extend_from_slice(&self.held);
        self.held.clear();
        buf.extend_from_slice(data);
        (buf, ctx, self.start - ctx as u64)
    }

    /// Appends `data`; adds the final matches to `found` (absolute ranges,
    /// in order). A complete match before the new hold point is final even
    /// when it runs past where the hold would otherwise start; text that
    /// cannot start a match is never held.
    pub fn push(&mut self, r: &Redactor, cache: &mut HoldCache, data: &[u8], found: &mut Vec<(u64, u64)>) -> Result<(), HoldExceeded> {
        let (mut buf, ctx, base) = self.take_buf(data);
        let mut hold = r.hold_point(cache, &buf, ctx);
        let mut at = ctx;
        while at <= buf.len() {
            let Some(m) = r.bytes_re.find_at(&buf, at) else { break };
            if m.is_empty() {
                at = m.end() + 1;
                continue;
            }
            if m.start() >= hold {
                break;
            }
            found.push((base + m.start() as u64, base + m.end() as u64));
            at = m.end();
            if m.end() > hold {
                hold = r.hold_point(cache, &buf, m.end());
            }
        }
        let held = buf.split_off(hold);
        let too_long = held.len() > MAX_HOLD;
        self.held = held;
        self.start = base + hold as u64;
        let keep = last_char_start(&buf);
        self.before = buf.split_off(keep);
        if too_long {
            return Err(HoldExceeded);
        }
        Ok(())
    }

    /// End of the text: the matches in what is still held.
    pub fn finish(&mut self, r: &Redactor, found: &mut Vec<(u64, u64)>) {
        let (buf, ctx, base) = self.take_buf(&[]);
        let mut at = ctx;
        while at <= buf.len() {
            let Some(m) = r.bytes_re.find_at(&buf, at) else { break };
            if m.is_empty() {
                at = m.end() + 1;
                continue;
            }
            found.push((base + m.start() as u64, base + m.end() as u64));
            at = m.end();
        }
        self.start = base + buf.len() as u64;
        self.before.clear();
    }
}

/// A [`LiveText`] that emits its text: each push returns the redacted part
/// that is final, and [`HoldBack::flush`] the rest. For texts whose pieces
/// can be cut freely; the tests of the hold-back itself use it.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct HoldBack {
    live: LiveText,
}

#[cfg(test)]
impl HoldBack {
    pub fn held_len(&self) -> usize {
        self.live.held_len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.held_len() == 0
    }

    fn emit(&self, r: &Redactor, text: &[u8], base: u64, upto: u64, found: &[(u64, u64)]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 16);
        let mut last = 0usize;
        for &(s, e) in found {
            out.extend_from_slice(&text[last..(s - base) as usize]);
            out.extend_from_slice(r.replacement.as_bytes());
            last = (e - base) as usize;
        }
        out.extend_from_slice(&text[last.min((upto - base) as usize)..(upto - base) as usize]);
        out
    }

    /// Appends `data`; returns the redacted text that is final now and the
    /// match count.
    pub fn push(&mut self, r: &Redactor, cache: &mut HoldCache, data: &[u8]) -> Result<(Vec<u8>, u64), HoldExceeded> {
        let base = self.live.held_start();
        let mut text = self.live.held.clone();
        text.extend_from_slice(data);
        let mut found = Vec::new();
        let res = self.live.push(r, cache, data, &mut found);
        let out = self.emit(r, &text, base, self.live.held_start(), &found);
        res.map(|()| (out, found.len() as u64))
    }

    /// Everything held, redacted (end of the continuing text).
    pub fn flush(&mut self, r: &Redactor) -> (Vec<u8>, u64) {
        let base = self.live.held_start();
        let text = self.live.held.clone();
        let mut found = Vec::new();
        self.live.finish(r, &mut found);
        (self.emit(r, &text, base, self.live.held_start(), &found), found.len() as u64)
    }
}

#[cfg(test)]
#[path = "redact_tests.rs"]
pub(crate) mod tests;
