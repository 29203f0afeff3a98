use super::*;
use http::HeaderMap;
use std::time::{Duration, UNIX_EPOCH};

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn verifier() -> SigV4Verifier {
    let mut v = SigV4Verifier::new([(AKID.to_string(), SecretString::new(SECRET.into()))]);
    v.max_skew = None;
    v
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

// AWS SigV4 test suite, `get-vanilla` (header signing).
#[test]
fn aws_test_suite_get_vanilla() {
    let h = headers(&[
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
    ]);
    let signed = vec!["host".to_string(), "x-amz-date".to_string()];
    assert_eq!(
        canonical_request("GET", "/", &h, &signed, b"").unwrap(),
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let v = verifier()
        .verify("GET", "/", &h, b"", SystemTime::now())
        .unwrap();
    assert_eq!(v.access_key_id, AKID);
    assert_eq!(v.region, "us-east-1");
    assert_eq!(v.service, "service");
}

// AWS SigV4 test suite, `post-vanilla-query`.
#[test]
fn aws_test_suite_post_vanilla_query() {
    let h = headers(&[
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
        ),
    ]);
    assert!(verifier()
        .verify("POST", "/?Param1=value1", &h, b"", SystemTime::now())
        .is_ok());
    // The same signature over another query, method or body does not verify.
    let v = verifier();
    assert_eq!(
        v.verify("POST", "/?Param1=value2", &h, b"", SystemTime::now()),
        Err(SigError::Mismatch)
    );
    assert_eq!(
        v.verify("GET", "/?Param1=value1", &h, b"", SystemTime::now()),
        Err(SigError::Mismatch)
    );
    assert_eq!(
        v.verify("POST", "/?Param1=value1", &h, b"x", SystemTime::now()),
        Err(SigError::Mismatch)
    );
}

// AWS SigV4 test suite, `double-encode-path`: the canonical URI of a non-S3
// request encodes the wire path once more.
#[test]
fn canonical_uri_double_encodes_like_aws() {
    assert_eq!(
        canonical_uri("/test/@connections/JBDvjfGEIAMCERw%3D"),
        "/test/%40connections/JBDvjfGEIAMCERw%253D"
    );
    assert_eq!(
        canonical_uri("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"),
        "/model/anthropic.claude-3-haiku-20240307-v1%253A0/converse"
    );
    assert_eq!(canonical_uri("//example//"), "/example/");
    assert_eq!(canonical_uri("/./"), "/");
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("/a/../b"), "/b");
}

#[test]
fn canonical_query_sorts_and_reencodes() {
    assert_eq!(
        canonical_query("Param-3=Value3&Param=Value2&%E1%88%B4=Value1"),
        "%E1%88%B4=Value1&Param=Value2&Param-3=Value3"
    );
    assert_eq!(canonical_query("b&a=1"), "a=1&b=");
}

#[test]
fn rejects_missing_malformed_unknown_and_expired() {
    let v = verifier();
    let now = SystemTime::now();
    assert_eq!(
        v.verify("GET", "/", &HeaderMap::new(), b"", now),
        Err(SigError::MissingAuthorization)
    );
    for bad in [
        "Basic abc",
        "AWS4-HMAC-SHA256 Credential=x",
        "AWS4-HMAC-SHA256 junk",
    ] {
        let h = headers(&[("authorization", bad), ("x-amz-date", "20150830T123600Z")]);
        assert!(
            matches!(
                v.verify("GET", "/", &h, b"", now),
                Err(SigError::Malformed(_))
            ),
            "{bad}"
        );
    }
    let auth = "AWS4-HMAC-SHA256 Credential=AKIDOTHER/20150830/us-east-1/service/aws4_request, \
                SignedHeaders=host;x-amz-date, Signature=00";
    let h = headers(&[
        ("authorization", auth),
        ("host", "h"),
        ("x-amz-date", "20150830T123600Z"),
    ]);
    assert_eq!(
        v.verify("GET", "/", &h, b"", now),
        Err(SigError::UnknownAccessKey("AKIDOTHER".into()))
    );
    // Unsigned host is refused; so is a credential date that is not x-amz-date's.
    let auth = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
                SignedHeaders=x-amz-date, Signature=00";
    let h = headers(&[("authorization", auth), ("x-amz-date", "20150830T123600Z")]);
    assert!(matches!(
        v.verify("GET", "/", &h, b"", now),
        Err(SigError::Malformed(_))
    ));
    let h = headers(&[("authorization", auth), ("x-amz-date", "20150831T123600Z")]);
    assert!(matches!(
        v.verify("GET", "/", &h, b"", now),
        Err(SigError::Malformed(_))
    ));
    // With the default 15-minute skew, the 2015 vector is expired.
    let mut strict = verifier();
    strict.max_skew = Some(Duration::from_secs(900));
    let h = headers(&[
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
    ]);
    assert_eq!(
        strict.verify("GET", "/", &h, b"", now),
        Err(SigError::Expired)
    );
    let at = UNIX_EPOCH + Duration::from_secs(1_440_938_160 + 60);
    assert!(strict.verify("GET", "/", &h, b"", at).is_ok());
}

#[test]
fn parses_amz_date() {
    assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
    assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
    assert_eq!(parse_amz_date("20150830T123600"), None);
    assert_eq!(parse_amz_date("2015083xT123600Z"), None);
    assert_eq!(parse_amz_date("20151330T123600Z"), None);
}

/// A request signed by the `aws-sigv4` crate (as the proxy does) verifies,
/// and tampering with the body, path or a signed header after signing does not.
#[test]
fn verifies_requests_signed_by_aws_sigv4() {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;

    let identity = Credentials::new(AKID, SECRET, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("bedrock")
        .time(SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
    let uri = "http://127.0.0.1:9/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aprofile%2Fx/converse";
    let pre = [
        ("host", "127.0.0.1:9"),
        ("content-type", "application/json"),
    ];
    let signable =
        SignableRequest::new("POST", uri, pre.iter().copied(), SignableBody::Bytes(body)).unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut req = http::Request::builder().method("POST").uri(uri);
    for (k, v) in pre {
        req = req.header(k, v);
    }
    let mut req = req.body(()).unwrap();
    instructions.apply_to_request_http1x(&mut req);

    let mut v = verifier();
    v.max_skew = Some(Duration::from_secs(900));
    let pq = req.uri().path_and_query().unwrap().as_str().to_string();
    let ok = v
        .verify("POST", &pq, req.headers(), body, SystemTime::now())
        .unwrap();
    assert_eq!(ok.service, "bedrock");
    assert!(ok.signed_headers.contains(&"content-type".to_string()));

    let now = SystemTime::now();
    assert_eq!(
        v.verify("POST", &pq, req.headers(), b"{}", now),
        Err(SigError::Mismatch)
    );
    let other = pq.replace("profile%2Fx", "profile%2Fy");
    assert_eq!(
        v.verify("POST", &other, req.headers(), body, now),
        Err(SigError::Mismatch)
    );
    let mut h = req.headers().clone();
    h.insert("content-type", "text/plain".parse().unwrap());
    assert_eq!(
        v.verify("POST", &pq, &h, body, now),
        Err(SigError::Mismatch)
    );
    // A wrong secret for the same key id fails too.
    let wrong = SigV4Verifier::new([(AKID.to_string(), SecretString::new("nope".into()))]);
    assert_eq!(
        wrong.verify("POST", &pq, req.headers(), body, now),
        Err(SigError::Mismatch)
    );
}
