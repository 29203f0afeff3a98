//! Response redaction (SPEC §7): every match of `redaction.patterns` is
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
//! - Hold-back for text split across stream events: see [`HOLD_BACK`].

use crate::config::RedactionConfig;
use bytes::Bytes;
use std::borrow::Cow;
use std::sync::Arc;

/// Bytes of a continuing text held back at the end of each event so that a
/// match split across events is still caught. `regex` exposes neither a
/// partial-match test nor the pattern's maximum length (the default pattern's
/// `[a-z]+` is unbounded anyway), so this is a fixed cap: a match whose part
/// before an event boundary is at most `HOLD_BACK` bytes long is always
/// caught (the default pattern's real matches are ~50 bytes); a longer match
/// split across events may be missed. At most `HOLD_BACK + 3` bytes are held
/// (the cut never splits a UTF-8 sequence) per continuing text.
pub const HOLD_BACK: usize = 256;

#[derive(Debug)]
pub struct Redactor {
    re: regex::Regex,
    bytes_re: regex::bytes::Regex,
    replacement: String,
}

impl Redactor {
    /// None when no patterns are configured (nothing to redact).
    pub fn new(cfg: &RedactionConfig) -> Option<Arc<Redactor>> {
        let re = cfg.combined.clone()?;
        // Same source, already validated by the str regex: cannot fail in practice.
        let bytes_re = regex::bytes::Regex::new(re.as_str()).ok()?;
        Some(Arc::new(Redactor {
            re,
            bytes_re,
            replacement: cfg.replacement.clone(),
        }))
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
            let (red, k) = self.redact_str(&s);
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

    /// The length of the tail of `buf` to hold back: `HOLD_BACK`, moved back
    /// so the cut does not split a UTF-8 sequence.
    fn cut_point(buf: &[u8]) -> usize {
        let mut cut = buf.len().saturating_sub(HOLD_BACK);
        while cut > 0
            && cut < buf.len()
            && (buf[cut] & 0xC0) == 0x80
            && buf.len() - cut < HOLD_BACK + 3
        {
            cut -= 1;
        }
        cut
    }
}

/// One continuing text (a content block's deltas, an agent's chunk bytes, a
/// SageMaker payload): redacts what is safe to send and holds back the tail
/// that could still be the beginning of a match (see [`HOLD_BACK`]).
#[derive(Debug, Default)]
pub struct HoldBack {
    held: Vec<u8>,
}

impl HoldBack {
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Appends `data` to the held text; returns the redacted part that is
    /// safe to send now, and the match count.
    pub fn push(&mut self, r: &Redactor, data: &[u8]) -> (Vec<u8>, u64) {
        let mut buf = std::mem::take(&mut self.held);
        buf.extend_from_slice(data);
        let mut cut = Redactor::cut_point(&buf);
        let mut out = Vec::with_capacity(cut + 16);
        let mut last = 0;
        let mut n = 0;
        for m in r.bytes_re.find_iter(&buf).filter(|m| !m.is_empty()) {
            if m.start() >= cut {
                break;
            }
            out.extend_from_slice(&buf[last..m.start()]);
            out.extend_from_slice(r.replacement.as_bytes());
            last = m.end();
            n += 1;
            // A match across the cut is already complete: replace all of it
            // now rather than holding an unbounded tail.
            cut = cut.max(m.end());
        }
        out.extend_from_slice(&buf[last..cut]);
        self.held = buf.split_off(cut);
        (out, n)
    }

    /// Everything held, redacted (end of the continuing text).
    pub fn flush(&mut self, r: &Redactor) -> (Vec<u8>, u64) {
        let held = std::mem::take(&mut self.held);
        let (out, n) = r.redact_bytes(&held);
        (out.into_owned(), n)
    }
}

#[cfg(test)]
#[path = "redact_tests.rs"]
pub(crate) mod tests;
