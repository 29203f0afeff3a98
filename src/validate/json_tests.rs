use super::json::parse_counted;
use super::*;
use serde_json::json;

fn limits(max_nodes: usize, max_depth: usize) -> JsonLimits {
    JsonLimits { max_nodes, max_depth }
}

fn refused(body: &[u8], l: JsonLimits) -> ValidationError {
    parse_json(body, l).unwrap_err()
}

#[test]
fn defaults_are_the_documented_caps() {
    assert_eq!(JsonLimits::default(), limits(100_000, 64));
}

#[test]
fn parses_what_serde_json_parses() {
    let body = br#"{"a": [1, -2, 3.5, "x", true, null, {"b": {}}], "c": "\u00e9\ud83d\ude00"}"#;
    assert_eq!(parse_json(body, JsonLimits::default()).unwrap(), serde_json::from_slice::<serde_json::Value>(body).unwrap());
    assert_eq!(parse_json(b" [1] ", JsonLimits::default()).unwrap(), json!([1]));
    assert_eq!(parse_json(b"7", JsonLimits::default()).unwrap(), json!(7));
}

#[test]
fn duplicate_keys_refused_at_any_depth_with_their_path() {
    let e = refused(br#"{"a": 1, "a": 2}"#, JsonLimits::default());
    assert_eq!((e.kind, e.path.as_str()), (ValidationErrorKind::DuplicateKey, "a"));
    let e = refused(br#"{"x": [{"ok": 1}, {"y": {"k": 1, "k": 1}}]}"#, JsonLimits::default());
    assert_eq!((e.kind, e.path.as_str()), (ValidationErrorKind::DuplicateKey, "x[1].y.k"));
    assert_eq!(e.to_string(), "x[1].y.k: duplicate key");
    // Equal after unescaping is a duplicate too.
    let e = refused(br#"{"filter": 1, "filte\u0072": 2}"#, JsonLimits::default());
    assert_eq!(e.kind, ValidationErrorKind::DuplicateKey);
    // Different case is not a duplicate for JSON (the shape check refuses it).
    assert!(parse_json(br#"{"filter": 1, "Filter": 2}"#, JsonLimits::default()).is_ok());
    assert_eq!(ProxyError::from(e).reason(), "invalid_parameter");
}

#[test]
fn node_cap_counts_every_value() {
    // {"a":[1,2]} is 4 values.
    assert!(parse_json(br#"{"a":[1,2]}"#, limits(4, 64)).is_ok());
    let e = refused(br#"{"a":[1,2]}"#, limits(3, 64));
    assert_eq!((e.kind, e.path.as_str()), (ValidationErrorKind::TooManyNodes, "a[1]"));
    assert!(e.message.contains("more than 3 JSON values"), "{e}");
}

/// The memory attack: 10 MiB of `{"x":[[],[],...]}` (3.5 million arrays) is
/// refused at the cap: exactly `max_nodes + 1` values were built, the rest
/// of the body was never turned into a tree.
#[test]
fn ten_mib_of_empty_arrays_stops_at_the_cap() {
    let mut body = b"{\"x\":[".to_vec();
    while body.len() < 10 << 20 {
        body.extend_from_slice(b"[],");
    }
    body.extend_from_slice(b"[]]}");
    let (r, built) = parse_counted(&body, JsonLimits::default());
    let e = r.unwrap_err();
    assert_eq!(e.kind, ValidationErrorKind::TooManyNodes);
    assert_eq!(e.path, "x[99998]");
    assert_eq!(built, 100_001);
    let p = ProxyError::from(e);
    assert_eq!((p.status().as_u16(), p.reason()), (400, "invalid_parameter"));
}

#[test]
fn a_million_keys_stop_at_the_cap() {
    let mut body = String::from("{");
    for i in 0..1_000_000 {
        body.push_str(&format!("\"k{i}\":0,"));
    }
    body.push_str("\"end\":0}");
    let (r, built) = parse_counted(body.as_bytes(), JsonLimits::default());
    assert_eq!(r.unwrap_err().kind, ValidationErrorKind::TooManyNodes);
    assert_eq!(built, 100_001);
}

#[test]
fn depth_cap() {
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    assert!(parse_json(nest(64).as_bytes(), JsonLimits::default()).is_ok());
    let e = refused(nest(65).as_bytes(), JsonLimits::default());
    assert_eq!(e.kind, ValidationErrorKind::TooDeep);
    assert!(e.path.starts_with("[0][0]"), "{e}");
    let body = format!("{{\"a\":{{\"b\":{}}}}}", nest(3));
    assert!(parse_json(body.as_bytes(), limits(100, 5)).is_ok());
    assert_eq!(refused(body.as_bytes(), limits(100, 4)).kind, ValidationErrorKind::TooDeep);
    // A depth far beyond the cap (and serde_json's own 128) is refused, not a stack overflow.
    let deep = "[".repeat(1 << 20);
    assert_eq!(refused(deep.as_bytes(), JsonLimits::default()).kind, ValidationErrorKind::TooDeep);
    assert_eq!(refused(deep.as_bytes(), limits(usize::MAX, usize::MAX)).kind, ValidationErrorKind::Syntax);
}

#[test]
fn syntax_errors_are_invalid_json() {
    for body in [
        &b"{"[..],
        b"{\"a\":1} x",
        b"{\"a\":1}{}",
        b"{\"a\":1,}",
        b"{\"a\":\"\\ud800\"}",
        b"{\"a\":\"\xff\"}",
        b"{\"a\":NaN}",
        b"{\"a\":1e999}",
        b"",
    ] {
        let e = refused(body, JsonLimits::default());
        assert_eq!(e.kind, ValidationErrorKind::Syntax, "{body:?}: {e}");
        assert_eq!(ProxyError::from(e).reason(), "invalid_json");
    }
}
