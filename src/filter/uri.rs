//! Source-location prefix matching (docs/reference.md §5.2 post-filter and external
//! sources). A location is allowed only when it is, beyond doubt, under one
//! of the tenant's rendered `allowed_source_prefixes`; anything that cannot be
//! put in a canonical form is foreign.
//!
//! Rules, for both the configured prefixes and the locations checked:
//!
//! - `scheme://authority/path`. The scheme compares case-insensitively, an
//!   `http`/`https` host too (DNS names); an S3 bucket, or the authority of
//!   any other scheme, compares exactly (legacy buckets may differ only in
//!   case); the path is case-sensitive. An
//!   authority with userinfo (`@`), percent signs, backslashes or other
//!   unusual characters is rejected (`https://trusted@evil/` tricks).
//! - The path compares segment by segment, so a prefix never matches part of
//!   a segment: `s3://docs/tenants/acme` and `s3://docs/tenants/acme/` both
//!   reject `s3://docs/tenants/acme-evil/x`. A prefix ending in `/` requires
//!   that boundary (it matches `.../acme/x` and `.../acme/` but not
//!   `.../acme`); one without it matches the segment itself and below.
//! - A `.` or `..` segment, a backslash or control character, or a segment
//!   that decodes (percent-decoding, applied up to three times to catch
//!   double encoding) to `.`, `..`, or something containing `/`, `\` or a
//!   control character, or to invalid UTF-8, makes the location foreign
//!   (`%2e%2e`, `%2F`, `%252e%252e`): such a location cannot be trusted not
//!   to escape its prefix in whatever later resolves it.
//! - `http`/`https` paths compare percent-decoded (web servers decode), and
//!   their query and fragment are ignored; a *prefix* with a query or
//!   fragment is unusable (it would widen to the bare path) and matches
//!   nothing. Other schemes (`s3`, ...) compare literally: S3 keys are not
//!   decoded, so `%61cme` is not `acme`; `?` and `#` are ordinary key
//!   characters there.
//! - Opaque ids (custom data sources) have no scheme: they are split on `/`
//!   and compared literally with the same segment, boundary and
//!   dot-segment rules, against the prefix strings as written.

/// Longest location or prefix considered (longer is foreign).
const MAX_LEN: usize = 16 * 1024;
/// Rounds of percent-decoding inspected for hidden separators.
const DECODE_ROUNDS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Segments compare percent-decoded (http, https).
    Decoded,
    /// Segments compare as written (s3, other schemes, opaque ids).
    Literal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Canonical {
    scheme: String,
    authority: String,
    segments: Vec<String>,
}

/// One configured prefix in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Prefix {
    canon: Canonical,
    /// The prefix ended in `/`: the location must continue past it.
    boundary: bool,
}

impl Prefix {
    fn matches(&self, loc: &Canonical) -> bool {
        let p = &self.canon;
        p.scheme == loc.scheme
            && p.authority == loc.authority
            && loc.segments.len() >= p.segments.len() + usize::from(self.boundary)
            && loc.segments[..p.segments.len()] == p.segments[..]
    }

    fn from_canonical(mut canon: Canonical) -> Prefix {
        let boundary = canon.segments.last().is_some_and(String::is_empty);
        if boundary {
            canon.segments.pop();
        }
        Prefix { canon, boundary }
    }
}

/// The rendered `allowed_source_prefixes`, parsed once per request or
/// response. A prefix that cannot be parsed matches nothing.
#[derive(Debug, Clone)]
pub struct PrefixSet {
    /// As URIs (`None` for a prefix that is not a usable URI).
    uris: Vec<Prefix>,
    /// As opaque-id prefixes.
    ids: Vec<Prefix>,
    /// Number of prefixes configured (including unusable ones).
    configured: usize,
}

impl PrefixSet {
    pub fn new<S: AsRef<str>>(prefixes: &[S]) -> PrefixSet {
        let mut uris = Vec::new();
        let mut ids = Vec::new();
        for p in prefixes {
            let p = p.as_ref();
            if let Some(c) = canonical_uri(p, true) {
                uris.push(Prefix::from_canonical(c));
            }
            if let Some(c) = canonical_id(p) {
                ids.push(Prefix::from_canonical(c));
            }
        }
        PrefixSet { uris, ids, configured: prefixes.len() }
    }

    /// True when no prefix is configured at all (no post-filter).
    pub fn is_unconfigured(&self) -> bool {
        self.configured == 0
    }

    /// True when `uri` is under one of the prefixes (see the module doc).
    pub fn allows_uri(&self, uri: &str) -> bool {
        match canonical_uri(uri, false) {
            Some(c) => self.uris.iter().any(|p| p.matches(&c)),
            None => false,
        }
    }

    /// True when the opaque id `id` is under one of the prefixes, compared
    /// literally.
    pub fn allows_id(&self, id: &str) -> bool {
        match canonical_id(id) {
            Some(c) => self.ids.iter().any(|p| p.matches(&c)),
            None => false,
        }
    }
}

fn canonical_uri(s: &str, is_prefix: bool) -> Option<Canonical> {
    if s.len() > MAX_LEN || s.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
        return None;
    }
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        || !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return None;
    }
    let scheme = scheme.to_ascii_lowercase();
    let mode = match scheme.as_str() {
        "http" | "https" => Mode::Decoded,
        _ => Mode::Literal,
    };
    let auth_end = match mode {
        Mode::Decoded => rest.find(['/', '?', '#']),
        Mode::Literal => rest.find('/'),
    }
    .unwrap_or(rest.len());
    let (authority, after) = rest.split_at(auth_end);
    if authority.is_empty()
        || !authority.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'))
    {
        return None;
    }
    let path = match mode {
        Mode::Decoded => {
            let end = after.find(['?', '#']).unwrap_or(after.len());
            if is_prefix && end != after.len() {
                return None;
            }
            &after[..end]
        }
        Mode::Literal => after,
    };
    let segments = match path {
        "" => Vec::new(),
        p => split_segments(p.strip_prefix('/')?, mode)?,
    };
    // DNS names are case-insensitive; S3 bucket names (and anything else)
    // compare exactly, as legacy buckets may differ only in case.
    let authority = match mode {
        Mode::Decoded => authority.to_ascii_lowercase(),
        Mode::Literal => authority.to_string(),
    };
    Some(Canonical { scheme, authority, segments })
}

fn canonical_id(s: &str) -> Option<Canonical> {
    if s.is_empty() || s.len() > MAX_LEN || s.bytes().any(|b| b.is_ascii_control() || b == b'\\') {
        return None;
    }
    let segments = split_segments(s, Mode::Literal)?;
    Some(Canonical { scheme: String::new(), authority: String::new(), segments })
}

fn split_segments(path: &str, mode: Mode) -> Option<Vec<String>> {
    path.split('/').map(|seg| segment(seg, mode)).collect()
}

fn segment(raw: &str, mode: Mode) -> Option<String> {
    let mut cur = raw.as_bytes().to_vec();
    if dangerous(&cur) {
        return None;
    }
    let mut first_decode: Option<Vec<u8>> = None;
    for _ in 0..DECODE_ROUNDS {
        if !has_escape(&cur) {
            break;
        }
        cur = percent_decode(&cur);
        if dangerous(&cur) || std::str::from_utf8(&cur).is_err() {
            return None;
        }
        first_decode.get_or_insert_with(|| cur.clone());
    }
    if has_escape(&cur) {
        // Encoded more deeply than anyone legitimately does.
        return None;
    }
    match mode {
        Mode::Literal => Some(raw.to_string()),
        Mode::Decoded => match first_decode {
            Some(bytes) => String::from_utf8(bytes).ok(),
            None => Some(raw.to_string()),
        },
    }
}

/// A segment that could step out of its place in a path.
fn dangerous(b: &[u8]) -> bool {
    b == b"." || b == b".." || b.iter().any(|&c| c == b'/' || c == b'\\' || c.is_ascii_control())
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn has_escape(b: &[u8]) -> bool {
    b.windows(3).any(|w| w[0] == b'%' && hex_val(w[1]).is_some() && hex_val(w[2]).is_some())
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as is
/// (S3 keys may contain a literal `%`).
fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
#[path = "uri_tests.rs"]
mod tests;
