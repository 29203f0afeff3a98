use super::*;

fn set(p: &[&str]) -> PrefixSet {
    PrefixSet::new(p)
}

const ACME: &str = "s3://docs/tenants/acme/";

#[test]
fn object_under_the_prefix_is_allowed() {
    let s = set(&[ACME]);
    assert!(s.allows_uri("s3://docs/tenants/acme/report.pdf"));
    assert!(s.allows_uri("s3://docs/tenants/acme/deep/er/file.txt"));
    assert!(s.allows_uri("s3://docs/tenants/acme/"));
}

#[test]
fn prefix_lookalike_is_foreign() {
    for p in [ACME, "s3://docs/tenants/acme"] {
        let s = set(&[p]);
        assert!(!s.allows_uri("s3://docs/tenants/acme-evil/x.pdf"), "{p}");
        assert!(!s.allows_uri("s3://docs/tenants/acmeco/x.pdf"), "{p}");
        assert!(!s.allows_uri("s3://docs/tenants/acme.pdf"), "{p}");
    }
}

#[test]
fn trailing_slash_prefix_requires_the_boundary() {
    let s = set(&[ACME]);
    assert!(!s.allows_uri("s3://docs/tenants/acme"));
    let s = set(&["s3://docs/tenants/acme"]);
    assert!(s.allows_uri("s3://docs/tenants/acme"));
    assert!(s.allows_uri("s3://docs/tenants/acme/x"));
}

#[test]
fn other_tenant_bucket_scheme_or_host_is_foreign() {
    let s = set(&[ACME]);
    for u in [
        "s3://docs/tenants/globex/x.pdf",
        "s3://docs-evil/tenants/acme/x.pdf",
        "s3://doc/tenants/acme/x.pdf",
        "https://docs/tenants/acme/x.pdf",
        "s3://docs/Tenants/acme/x.pdf",
        "s3://docs/tenants/ACME/x.pdf",
        "s3://docs//tenants/acme/x.pdf",
        "s3://docs/x/tenants/acme/y",
    ] {
        assert!(!s.allows_uri(u), "{u}");
    }
}

#[test]
fn scheme_and_host_compare_case_insensitively() {
    let s = set(&[ACME, "https://Wiki.Example.com/spaces/ACME/"]);
    assert!(s.allows_uri("S3://docs/tenants/acme/x"));
    // Bucket names are exact.
    assert!(!s.allows_uri("s3://DOCS/tenants/acme/x"));
    assert!(s.allows_uri("HTTPS://wiki.example.COM/spaces/ACME/page"));
    assert!(!s.allows_uri("https://wiki.example.com/spaces/acme/page"));
}

#[test]
fn dot_segments_are_foreign_even_when_they_resolve_inside() {
    let s = set(&[ACME]);
    for u in [
        "s3://docs/tenants/acme/../globex/secret.pdf",
        "s3://docs/tenants/acme/./x.pdf",
        "s3://docs/tenants/acme/sub/../x.pdf",
        "s3://docs/tenants/acme/..",
        "https://docs/tenants/acme/../x",
    ] {
        assert!(!s.allows_uri(u), "{u}");
    }
}

#[test]
fn percent_encoding_tricks_cannot_escape_a_prefix() {
    let s = set(&[ACME, "https://wiki.example.com/spaces/acme/"]);
    for u in [
        "s3://docs/tenants/acme/%2e%2e/globex/x",
        "s3://docs/tenants/acme/%2E%2E/globex/x",
        "s3://docs/tenants/acme/.%2e/globex/x",
        "s3://docs/tenants/acme/%252e%252e/globex/x",
        "s3://docs/tenants/acme/%25252e%25252e/globex/x",
        "s3://docs/tenants/acme%2F..%2Fglobex/x",
        "s3://docs/tenants/acme/x%2F..%2F..%2Fglobex",
        "s3://docs/tenants/acme/x%5C..%5Cglobex",
        "s3://docs/tenants/acme/%00x",
        "s3://docs/tenants/acme/%c0%ae%c0%ae/x",
        "https://wiki.example.com/spaces/acme/%2e%2e/globex",
        "https://wiki.example.com/spaces/acme%2f..%2fglobex/x",
        "https://wiki.example.com/spaces/%61cme/../globex",
    ] {
        assert!(!s.allows_uri(u), "{u}");
    }
}

#[test]
fn s3_keys_compare_literally_but_web_paths_decoded() {
    let s = set(&[ACME, "https://wiki.example.com/spaces/ACME%20Team/"]);
    // S3 does not decode keys: `%61cme` is another object.
    assert!(!s.allows_uri("s3://docs/tenants/%61cme/x"));
    assert!(s.allows_uri("s3://docs/tenants/acme/100%.pdf"));
    assert!(s.allows_uri("s3://docs/tenants/acme/My Report (final).pdf"));
    assert!(s.allows_uri("s3://docs/tenants/acme/a?b#c"));
    // Web servers decode: both spellings are one page.
    assert!(s.allows_uri("https://wiki.example.com/spaces/ACME%20Team/p"));
    assert!(s.allows_uri("https://wiki.example.com/spaces/ACME Team/p"));
    assert!(s.allows_uri("https://wiki.example.com/spaces/ACME%20Team/p?version=2#top"));
    assert!(!s.allows_uri("https://wiki.example.com/spaces/ACME%20Team?x=/p"));
}

#[test]
fn userinfo_backslashes_and_odd_authorities_are_foreign() {
    let s = set(&["https://wiki.example.com/", ACME]);
    for u in [
        "https://wiki.example.com@evil.example/x",
        "https://evil.example\\@wiki.example.com/x",
        "https://wiki.example.com\\..\\x",
        "https://wiki%2eexample.com/x",
        "https:///x",
        "https//wiki.example.com/x",
        "wiki.example.com/x",
        "s3://docs/tenants/acme/x\\..\\..\\globex",
        "s3://docs/tenants/acme/x\n",
        "",
        "://docs/tenants/acme/x",
        "1s3://docs/tenants/acme/x",
    ] {
        assert!(!s.allows_uri(u), "{u:?}");
    }
}

#[test]
fn prefix_with_query_matches_nothing() {
    let s = set(&["https://app.example.com/doc?tenant=acme"]);
    assert!(!s.allows_uri("https://app.example.com/doc?tenant=globex"));
    assert!(!s.allows_uri("https://app.example.com/doc"));
    assert!(!s.is_unconfigured());
}

#[test]
fn unusable_prefixes_match_nothing_but_still_count_as_configured() {
    let s = set(&["not a uri", "s3://docs/tenants/acme/../"]);
    assert!(!s.is_unconfigured());
    assert!(!s.allows_uri("s3://docs/tenants/acme/x"));
    assert!(set(&[]).is_unconfigured());
}

#[test]
fn bucket_wide_prefixes() {
    let s = set(&["s3://public"]);
    assert!(s.allows_uri("s3://public"));
    assert!(s.allows_uri("s3://public/a/b"));
    assert!(!s.allows_uri("s3://public-evil/a"));
    let s = set(&["s3://public/"]);
    assert!(!s.allows_uri("s3://public"));
    assert!(s.allows_uri("s3://public/a"));
}

#[test]
fn opaque_ids_match_literally_with_segment_boundaries() {
    let s = set(&["acme/", "shared"]);
    assert!(s.allows_id("acme/doc-1"));
    assert!(!s.allows_id("acme"));
    assert!(!s.allows_id("acme-evil/doc-1"));
    assert!(!s.allows_id("acme/../globex/doc"));
    assert!(!s.allows_id("acme/%2e%2e/globex"));
    assert!(s.allows_id("shared"));
    assert!(s.allows_id("shared/x"));
    assert!(!s.allows_id("shared2"));
    assert!(!s.allows_id(""));
    assert!(!set(&[ACME]).allows_id("doc-1"));
}

#[test]
fn arbitrary_input_never_panics() {
    let s = set(&[ACME, "https://x/", "acme/"]);
    let samples =
        ["%", "%%", "%4", "%zz", "s3://%", "s3://docs/%", "s3://docs/%e", "s3://docs/\u{feff}", "☃://x/y", "s3://☃/x"];
    for u in samples {
        let _ = s.allows_uri(u);
        let _ = s.allows_id(u);
    }
    let long = format!("s3://docs/tenants/acme/{}", "a/".repeat(20_000));
    assert!(!s.allows_uri(&long));
}
