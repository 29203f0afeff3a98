use super::*;
use http::{HeaderMap, HeaderName, HeaderValue};
use Operation::*;

const ID: HeaderName = HeaderName::from_static("x-tenant-id");

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
    }
    h
}

fn forwarded(op: Operation, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let out = request_headers(op, &map(pairs), &ID).unwrap_or_else(|e| panic!("{pairs:?}: {e:?}"));
    let mut v: Vec<(String, String)> =
        out.iter().map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap().to_string())).collect();
    v.sort();
    v
}

fn refused(op: Operation, pairs: &[(&str, &str)]) -> String {
    match request_headers(op, &map(pairs), &ID).unwrap_err() {
        ProxyError::InvalidParameter(m) => m,
        other => panic!("{other:?}"),
    }
}

/// What boto3 1.44.5 sends (captured from a real call).
const BOTO3: [(&str, &str); 10] = [
    ("host", "127.0.0.1:8080"),
    ("accept-encoding", "identity"),
    ("content-type", "application/json"),
    ("user-agent", "Boto3/1.44.5 md/Botocore#1.44.5 ua/2.1"),
    ("x-amz-date", "20261204T072543Z"),
    ("x-amz-security-token", "tok"),
    ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=00"),
    ("amz-sdk-invocation-id", "224985a7-0b11-4e19-ad96-cda131824ef8"),
    ("amz-sdk-request", "attempt=1; max=2"),
    ("content-length", "162"),
];

#[test]
fn boto3_headers_forward_what_aws_needs() {
    for op in Operation::ALL {
        let mut pairs = BOTO3.to_vec();
        pairs.push(("x-tenant-id", "acme"));
        let names: Vec<String> = forwarded(op, &pairs).into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["amz-sdk-invocation-id", "amz-sdk-request", "content-type", "user-agent"], "{op:?}");
    }
    // Other SDKs' extras and the trace header.
    let got = forwarded(Converse, &[("x-amz-user-agent", "aws-sdk-js/3"), ("accept", "application/json"), ("x-amzn-trace-id", "Root=1-a")]);
    assert_eq!(got.len(), 3);
}

#[test]
fn model_defined_headers_forwarded_once() {
    let got = forwarded(
        InvokeModel,
        &[("x-amzn-bedrock-guardrailidentifier", "gr"), ("x-amzn-bedrock-trace", "ENABLED"), ("accept", "application/json")],
    );
    assert_eq!(got.len(), 3);
    assert_eq!(forwarded(InvokeAgent, &[("x-amz-source-arn", "arn:aws:lambda:x")]).len(), 1);
    assert_eq!(forwarded(InvokeEndpoint, &[("x-amzn-sagemaker-custom-attributes", "a")]).len(), 1);
    let m = refused(InvokeEndpoint, &[("x-amzn-sagemaker-target-model", "a.tar.gz"), ("x-amzn-sagemaker-target-model", "b.tar.gz")]);
    assert_eq!(m, "header `x-amzn-sagemaker-target-model` appears more than once");
    let m = refused(Converse, &[("content-type", "application/json"), ("content-type", "text/plain")]);
    assert!(m.contains("more than once"), "{m}");
}

#[test]
fn undefined_aws_headers_refused_others_dropped() {
    for (op, name) in [
        (InvokeModel, "x-amz-target"),
        (Converse, "x-amz-source-arn"),
        (InvokeEndpoint, "x-amz-sagemaker-target-model"),
        (InvokeEndpointWithResponseStream, "x-amzn-sagemaker-target-model"),
        (Retrieve, "x-amzn-bedrock-guardrailidentifier"),
    ] {
        let m = refused(op, &[(name, "x")]);
        assert_eq!(m, format!("header `{name}` is not defined by the AWS model of {}", op.name()));
    }
    assert!(forwarded(Converse, &[("x-custom", "1"), ("cookie", "a=b"), ("origin", "x")]).is_empty());
}

#[test]
fn underscore_names_refused() {
    let m = refused(InvokeEndpoint, &[("x_amzn_sagemaker_target_model", "globex.tar.gz")]);
    assert_eq!(m, "header `x_amzn_sagemaker_target_model`: names with `_` are not accepted");
    assert!(refused(Converse, &[("x_custom", "1")]).contains("`_`"));
}

#[test]
fn stripped_and_identity_headers_dropped() {
    let pairs = [
        ("authorization", "x"), ("x-amz-date", "x"), ("x-amz-security-token", "x"), ("x-amz-content-sha256", "x"),
        ("host", "x"), ("content-length", "1"), ("expect", "100-continue"), ("forwarded", "for=1"), ("via", "x"),
        ("x-forwarded-for", "1.2.3.4"), ("x-forwarded-proto", "http"), ("accept-encoding", "gzip"),
        ("x-tenant-id", "globex"), ("content-encoding", "identity"),
        ("keep-alive", "timeout=5"), ("te", "trailers"), ("trailer", "x"), ("upgrade", "h2c"), ("proxy-authorization", "x"),
    ];
    assert!(forwarded(Converse, &pairs).is_empty());
}

#[test]
fn content_encoding_other_than_identity_refused() {
    for v in ["gzip", "identity, gzip", "br", "deflate"] {
        let m = refused(Converse, &[("content-encoding", v)]);
        assert!(m.contains("must not be encoded"), "{m}");
    }
    assert!(refused(InvokeModel, &[("content-encoding", "identity"), ("content-encoding", "gzip")]).contains("gzip"));
}

#[test]
fn connection_listed_headers_removed_managed_ones_refused() {
    let got = forwarded(Converse, &[("connection", "keep-alive, x-custom, user-agent"), ("user-agent", "u"), ("accept", "a")]);
    assert_eq!(got, [("accept".to_string(), "a".to_string())]);
    for (op, token) in [
        (InvokeModel, "x-amzn-bedrock-guardrailidentifier"),
        (InvokeModelWithResponseStream, "X-Amzn-Bedrock-GuardrailVersion"),
        (InvokeEndpoint, "x-amzn-sagemaker-target-model"),
        (Converse, "x-amz-anything"),
        (Converse, "authorization"),
        (Converse, "host"),
        (Converse, "content-length"),
        (Converse, "content-type"),
        (Converse, "content-encoding"),
        (Converse, "x-tenant-id"),
        (InvokeAgent, "x-amz-source-arn"),
    ] {
        let m = refused(op, &[("connection", &format!("keep-alive, {token}"))]);
        assert_eq!(m, format!("connection names `{}`, a header the sidecar manages", token.to_ascii_lowercase()));
    }
}

#[test]
fn query_parameters_must_be_model_defined() {
    for op in Operation::ALL {
        assert!(query(op, None).is_ok());
        assert!(query(op, Some("")).is_ok());
        assert!(query(op, Some("&&")).is_ok());
    }
    let e = query(InvokeModel, Some("X-Amz-Security-Token=zzz&Action=AssumeRole")).unwrap_err();
    assert_eq!(e, ProxyError::InvalidParameter("query parameter `X-Amz-Security-Token` is not defined by the AWS model of InvokeModel".into()));
    let e = query(Retrieve, Some("a%5Fb=1")).unwrap_err();
    assert!(format!("{e:?}").contains("`a_b`"), "{e:?}");
    assert_eq!(query(Converse, Some("%ff=1")).unwrap_err().reason(), "invalid_parameter");
    let long = format!("{}=1", "q".repeat(10_000));
    let e = query(Converse, Some(&long)).unwrap_err();
    assert!(format!("{e:?}").len() < 300);
}
