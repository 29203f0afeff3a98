use super::*;
use crate::config::RedactionConfig;

pub(crate) const DEFAULT_PATTERN: &str = r"(?:us|eu|ap|sa|ca|me|af|il|mx)(?:-gov)?-[a-z]+-\d:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
pub(crate) const ID: &str = "us-west-2:12345678-abcd-1234-462b-123456789abc";

pub(crate) fn redactor_for(patterns: &[&str]) -> Arc<Redactor> {
    let combined = patterns
        .iter()
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    let cfg = RedactionConfig {
        patterns: patterns.iter().map(|p| p.to_string()).collect(),
        combined: Some(regex::Regex::new(&combined).unwrap()),
        replacement: "[redacted]".into(),
        strip_response_headers: vec![],
    };
    Redactor::new(&cfg).unwrap()
}

pub(crate) fn redactor() -> Arc<Redactor> {
    redactor_for(&[DEFAULT_PATTERN])
}

#[test]
fn identity_id_in_a_json_body_is_redacted_and_the_body_stays_valid_json() {
    let body = format!(
        r#"{{"output": {{"text": "owner {ID} said \"hi\""}}, "n": 1.50, "ids": ["{ID}"], "{ID}": true}}"#
    );
    let (out, n) = redactor().redact_body(body.as_bytes(), Some("application/json"));
    assert_eq!(n, 3);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["output"]["text"], "owner [redacted] said \"hi\"");
    assert_eq!(v["ids"][0], "[redacted]");
    assert_eq!(v["[redacted]"], true);
    // Bytes outside the rewritten strings are kept as sent.
    assert!(std::str::from_utf8(&out).unwrap().contains(r#""n": 1.50"#));
}

#[test]
fn id_escaped_inside_a_json_string_is_still_redacted() {
    let body = r#"{"t":"us\u002dwest-2:12345678-abcd-1234-462b-123456789abc"}"#;
    let (out, n) = redactor().redact_body(body.as_bytes(), None);
    assert_eq!(n, 1);
    assert_eq!(&out[..], br#"{"t":"[redacted]"}"#);
}

#[test]
fn identity_id_in_plain_text_is_redacted() {
    let body = format!("user {ID}\nand eu-central-1:aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee.");
    let (out, n) = redactor().redact_body(body.as_bytes(), Some("text/plain"));
    assert_eq!(n, 2);
    assert_eq!(&out[..], b"user [redacted]\nand [redacted].");
    assert_eq!(redactor().redact_str(&body).1, 2);
}

#[test]
fn non_utf8_body_is_redacted_as_bytes_and_otherwise_unchanged() {
    let mut body = vec![0xff, 0x00, 0xfe];
    body.extend_from_slice(ID.as_bytes());
    body.push(0x80);
    let (out, n) = redactor().redact_body(&body, Some("application/octet-stream"));
    assert_eq!(n, 1);
    assert_eq!(&out[..], b"\xff\x00\xfe[redacted]\x80");
    let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let (out, n) = redactor().redact_body(&binary, None);
    assert_eq!((n, &out[..]), (0, &binary[..]));
}

#[test]
fn pattern_that_never_matches_changes_no_byte() {
    let r = redactor_for(&["never-ever-matches-[0-9]{40}"]);
    for body in [
        format!(r#"{{ "a" : [1, 2.0e5, "x\u00e9", "{ID}"],  "b":null }}"#).into_bytes(),
        b"plain text".to_vec(),
        vec![0xff, 0xfe, 0x00],
        b"{not json".to_vec(),
    ] {
        let (out, n) = r.redact_body(&body, Some("application/json"));
        assert_eq!(n, 0);
        assert_eq!(&out[..], &body[..]);
    }
}

#[test]
fn pattern_matching_the_empty_string_inserts_nothing() {
    let r = redactor_for(&["x*"]);
    let (out, n) = r.redact_str("abxxc");
    assert_eq!((out.as_ref(), n), ("ab[redacted]c", 1));
}

#[test]
fn no_patterns_no_redactor() {
    let cfg = RedactionConfig {
        patterns: vec![],
        combined: None,
        replacement: "x".into(),
        strip_response_headers: vec![],
    };
    assert!(Redactor::new(&cfg).is_none());
}

#[test]
fn hold_back_catches_an_id_split_anywhere_and_concatenation_equals_redacted_text() {
    let r = redactor();
    let text = format!("hello {ID} and {ID}, bye é ü");
    let want = r.redact_str(&text).0.into_owned();
    for split in 1..text.len() {
        let mut hb = HoldBack::default();
        let mut c = r.hold_cache();
        let (mut got, mut n) = hb.push(&r, &mut c, &text.as_bytes()[..split]).unwrap();
        let (b, k) = hb.push(&r, &mut c, &text.as_bytes()[split..]).unwrap();
        got.extend(b);
        n += k;
        let (b, k) = hb.flush(&r);
        got.extend(b);
        n += k;
        assert_eq!(String::from_utf8(got).unwrap(), want, "split at {split}");
        assert_eq!(n, 2);
    }
}

#[test]
fn hold_back_is_bounded_for_a_long_text_without_matches() {
    let r = redactor();
    let mut hb = HoldBack::default();
    let mut c = r.hold_cache();
    let mut sent = 0;
    let piece = "us-west-2:12345678 é long text without any complete id ".repeat(10);
    while sent < 1_000_000 {
        let (out, n) = hb.push(&r, &mut c, piece.as_bytes()).unwrap();
        assert_eq!(n, 0);
        sent += out.len();
        assert!(hb.held_len() <= 64, "held {}", hb.held_len());
        assert!(std::str::from_utf8(&out).is_ok());
    }
}

/// Pushes `parts` one after the other; returns what each push emitted and
/// what was held after it.
fn pushes(r: &Redactor, parts: &[&str]) -> Vec<(String, usize)> {
    let mut hb = HoldBack::default();
    let mut c = r.hold_cache();
    parts
        .iter()
        .map(|p| {
            let (out, _) = hb.push(r, &mut c, p.as_bytes()).unwrap();
            (String::from_utf8(out).unwrap(), hb.held_len())
        })
        .collect()
}

#[test]
fn only_the_shortest_tail_that_could_begin_a_match_is_held() {
    let r = redactor();
    // Nothing here can start an identity id: every short delta goes out whole.
    assert_eq!(pushes(&r, &["Hello", ", world.", " 42"]), vec![("Hello".into(), 0), (", world.".into(), 0), (" 42".into(), 0)]);
    // "us" could be the start of "us-west-2:..."; "Thus" ends in it too.
    assert_eq!(pushes(&r, &["Thus"]), vec![("Th".into(), 2)]);
    // Once the next byte rules it out, it is released.
    assert_eq!(pushes(&r, &["Thus", " far"]), vec![("Th".into(), 2), ("us far".into(), 0)]);
    // A live prefix of an id is held from its first byte on, and no more.
    assert_eq!(pushes(&r, &["id eu-west-1:1234"]), vec![("id ".into(), 14)]);
}

#[test]
fn a_bounded_pattern_never_holds_more_than_its_longest_match_minus_one() {
    // The longest match of `secret-[0-9]{4}` is 11 bytes.
    let r = redactor_for(&["secret-[0-9]{4}"]);
    let out = pushes(&r, &["a secret-12", "3", "4 and secret-"]);
    assert_eq!(out, vec![("a ".into(), 9), ("".into(), 10), ("[redacted] and ".into(), 7)]);
}

#[test]
fn a_match_longer_than_any_fixed_window_split_across_pushes_is_caught() {
    // `[a-z]+` makes the default pattern unbounded: a 700-byte "region"
    // split into 10-byte pieces is still one match.
    let r = redactor();
    let id = format!("us-{}-1:12345678-abcd-1234-462b-123456789abc", "x".repeat(700));
    let text = format!("see {id} end");
    let mut hb = HoldBack::default();
    let mut c = r.hold_cache();
    let mut got = Vec::new();
    let mut n = 0;
    for piece in text.as_bytes().chunks(10) {
        let (b, k) = hb.push(&r, &mut c, piece).unwrap();
        got.extend(b);
        n += k;
    }
    let (b, k) = hb.flush(&r);
    got.extend(b);
    assert_eq!(String::from_utf8(got).unwrap(), "see [redacted] end");
    assert_eq!(n + k, 1);
}

#[test]
fn a_would_be_match_growing_past_the_bound_is_refused_not_sent() {
    let r = redactor();
    let mut hb = HoldBack::default();
    let mut c = r.hold_cache();
    let (out, _) = hb.push(&r, &mut c, b"ok us-").unwrap();
    assert_eq!(out, b"ok ");
    // `[a-z]` after "us-" keeps the region part of the pattern alive.
    let mut res = Ok((Vec::new(), 0));
    for _ in 0..(MAX_HOLD / 1024 + 1) {
        res = hb.push(&r, &mut c, "x".repeat(1024).as_bytes());
        match &res {
            Ok((out, _)) => assert!(out.is_empty(), "a live would-be match was sent"),
            Err(_) => break,
        }
    }
    assert_eq!(res.unwrap_err(), HoldExceeded);
}

#[test]
fn every_split_of_a_text_with_several_ids_redacts_like_the_whole_text() {
    let r = redactor();
    let text = format!("{ID}{ID} us-east-1 é {ID}x");
    let want = r.redact_str(&text).0.into_owned();
    let b = text.as_bytes();
    for i in 1..b.len() {
        for j in (i + 1)..b.len() {
            if !text.is_char_boundary(i) || !text.is_char_boundary(j) {
                continue;
            }
            let mut hb = HoldBack::default();
            let mut c = r.hold_cache();
            let mut got = Vec::new();
            for part in [&b[..i], &b[i..j], &b[j..]] {
                got.extend(hb.push(&r, &mut c, part).unwrap().0);
            }
            got.extend(hb.flush(&r).0);
            assert_eq!(String::from_utf8(got).unwrap(), want, "splits at {i}, {j}");
        }
    }
}

/// Ordinary regex syntax a platform engineer writes: case-insensitive
/// patterns and groups, Unicode case folding, word boundaries, POSIX and
/// Unicode classes.
const ORDINARY: &[(&str, &str, &str)] = &[
    // (pattern, text, redacted text)
    (r"(?i)acct-[a-z0-9]{6}", "see ACCT-AB12CD and acct-ab12cd, Acct-x", "see [redacted] and [redacted], Acct-x"),
    (r"(?i:secret)=\w+", "SeCrEt=abc_1 secret=x", "[redacted] [redacted]"),
    (r"\bSSN\d{3}\b", "SSN123 xSSN123 SSN1234", "[redacted] xSSN123 SSN1234"),
    (r"[[:upper:]]{2}-\d+", "ticket AB-12 ab-12", "ticket [redacted] ab-12"),
    (r"\p{Lu}\p{Ll}+corp", "Ärgercorp and ärgercorp", "[redacted] and ärgercorp"),
    (r"(?i)straße-\d", "STRAẞE-1 Straße-2 STRASSE-3", "[redacted] [redacted] STRASSE-3"),
    (r"(?i)[α-ω]{3}-id", "ΑΒΓ-ID αβγ-id", "[redacted] [redacted]"),
];

#[test]
fn ordinary_regex_syntax_redacts_whole_texts() {
    for (pattern, text, want) in ORDINARY {
        let r = redactor_for(&[pattern]);
        assert!(r.prefixes.is_some(), "{pattern}: the stream hold-back has no lazy DFA");
        assert_eq!(r.redact_str(text).0, *want, "{pattern}");
        let (bytes, _) = r.redact_body(text.as_bytes(), Some("text/plain"));
        assert_eq!(String::from_utf8(bytes.to_vec()).unwrap(), *want, "{pattern} (body)");
    }
}

#[test]
fn ordinary_regex_syntax_redacts_streams_split_anywhere() {
    for (pattern, text, want) in ORDINARY {
        let r = redactor_for(&[pattern]);
        for split in (1..text.len()).filter(|i| text.is_char_boundary(*i)) {
            let mut hb = HoldBack::default();
            let mut c = r.hold_cache();
            let mut got = hb.push(&r, &mut c, &text.as_bytes()[..split]).unwrap().0;
            got.extend(hb.push(&r, &mut c, &text.as_bytes()[split..]).unwrap().0);
            got.extend(hb.flush(&r).0);
            assert_eq!(String::from_utf8(got).unwrap(), *want, "{pattern} split at {split}");
        }
    }
}

#[test]
fn a_case_insensitive_prefix_is_held_back_in_any_case() {
    let r = redactor_for(&[r"(?i)acct-[a-z0-9]{6}"]);
    // "ACC" may begin "ACCT-...": held; "xyz" may not.
    assert_eq!(pushes(&r, &["id ACC"]), vec![("id ".into(), 3)]);
    assert_eq!(pushes(&r, &["id aCcT-A"]), vec![("id ".into(), 6)]);
    assert_eq!(pushes(&r, &["xyz"]), vec![("xyz".into(), 0)]);
}

#[test]
fn base64_text_inside_a_json_answer_is_decoded_redacted_and_encoded_again() {
    use base64::Engine;
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    let r = redactor();
    let body = format!(r#"{{"images":["{}"],"note":"{}","plain":"aGVsbG8gd29ybGQh"}}"#, b64(&format!("user {ID} here")), b64("no id"));
    let (out, n) = r.redact_body(body.as_bytes(), Some("application/json"));
    assert_eq!(n, 1);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["images"][0], b64("user [redacted] here"));
    assert_eq!(v["note"], b64("no id"));
    assert_eq!(v["plain"], "aGVsbG8gd29ybGQh");
    // Binary that is not UTF-8 text, and strings that are not base64, pass.
    let bin = base64::engine::general_purpose::STANDARD.encode([0xffu8, 0xfe, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert!(r.redact_base64(&bin).is_none());
    assert!(r.redact_base64("not base64 at all, with spaces").is_none());
}
