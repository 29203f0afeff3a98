//! JSON helpers of stream redaction: which strings of an event are
//! continuing texts and under which key, JSON pointers, and the per-event
//! redaction of the other strings.

use crate::filter::redact::Redactor;
use serde_json::Value;

/// A model stream chunk that only says it is alive: an object whose only
/// member is a string `type` (Anthropic's `{"type": "ping"}`).
pub(super) fn is_keepalive_chunk(inner: &Value) -> bool {
    inner.as_object().is_some_and(|o| o.len() == 1 && o.get("type").is_some_and(Value::is_string))
}

/// Media types of files whose bytes are text the app will read.
pub(super) fn is_text_media_type(t: &str) -> bool {
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

/// Text held and cut on UTF-8 boundaries is valid UTF-8; lossy only for a
/// pattern that could match inside a sequence.
pub(super) fn utf8(b: Vec<u8>) -> String {
    String::from_utf8(b).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// One JSON-pointer token of key `k` (RFC 6901 escapes), without
/// allocating for the usual keys that need none.
pub(super) fn escape_token(k: &str) -> std::borrow::Cow<'_, str> {
    if k.contains(['~', '/']) {
        k.replace('~', "~0").replace('/', "~1").into()
    } else {
        k.into()
    }
}

pub(super) fn unescape_token(t: &str) -> std::borrow::Cow<'_, str> {
    if t.contains('~') {
        t.replace("~1", "/").replace("~0", "~").into()
    } else {
        t.into()
    }
}

/// `Value::pointer_mut` without its per-token allocations (the pointers
/// here are built by [`text_pointers`], one per text event).
pub(super) fn ptr_mut<'a>(v: &'a mut Value, pointer: &str) -> Option<&'a mut Value> {
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
pub(super) fn tracked_leaves(v: &Value, skip: &[&str], ptr: &mut String, key: &mut String, out: &mut Vec<(String, String, Vec<u8>)>) {
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
pub(super) fn block_index(v: &Value) -> Option<u64> {
    let m = v.as_object()?;
    m.get("index").or_else(|| m.get("contentBlockIndex")).and_then(Value::as_u64)
}

/// The tracked leaves of a whole payload; its own block index, if any,
/// leads the key.
pub(super) fn leaves_of(v: &Value, skip: &[&str]) -> Vec<(String, String, Vec<u8>)> {
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
pub(super) fn shape_of(key: &str) -> String {
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

pub(super) fn set_str(v: &mut Value, pointer: &str, s: String) {
    if let Some(x) = ptr_mut(v, pointer) {
        *x = Value::String(s);
    }
}

/// Redacts every string except the tracked texts (redacted across events).
pub(super) fn redact_except(r: &Redactor, v: &mut Value, tracked: &[(String, String, Vec<u8>)]) -> u64 {
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
