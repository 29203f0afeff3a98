//! Benchmark: the cost of request validation (`tenantgate::validate`) per
//! typical request. Run with `bash bench/run.sh` (all benchmarks) or
//! `cargo bench --bench validate`.
//!
//! For a Converse body (~1.3 KB: five turns, a tool, a tool result, inference
//! settings) and a Retrieve body (a query and a two-clause filter), with the
//! headers boto3 sends:
//!
//! - `from_slice`: `serde_json::from_slice`, the single parse the pipeline
//!   did before validation existed;
//! - `validate`: what the pipeline does now for the request: query and
//!   header check (`validate::query`, `validate::request_headers`) and
//!   `validate::validate_body` (strict parse with caps and duplicate-key
//!   refusal, shape check), whose tree replaces the old parse.
//!
//! The added cost is `validate - from_slice`. Each figure is the median of 9
//! rounds of 20,000 iterations, in one process, interleaved.
//!
//! Environment: BENCH_QUICK=1 (3 rounds of 5,000).

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Value};
use std::hint::black_box;
use std::time::Instant;
use tenantgate::route::Operation;
use tenantgate::validate::{self, JsonLimits};

fn converse_body() -> String {
    json!({
        "messages": [
            {"role": "user", "content": [{"text": "Hello, I ordered a blue kettle last week (order 7) and it has not arrived yet. Can you check?"}]},
            {"role": "assistant", "content": [{"text": "Of course. Let me look up order 7 for you."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "lookup_order", "input": {"order": 7}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "tooluse_1", "content": [{"json": {"status": "shipped", "carrier": "DHL"}}]}}]},
            {"role": "assistant", "content": [{"text": "Your kettle shipped with DHL on Monday; it should arrive within two days."}]},
            {"role": "user", "content": [{"text": "Great, and can I still change the delivery address to my office?"}]}
        ],
        "system": [{"text": "You are the support assistant of ACME. Be brief and friendly; never reveal internal notes."}],
        "inferenceConfig": {"maxTokens": 512, "temperature": 0.3, "topP": 0.9},
        "toolConfig": {"tools": [{"toolSpec": {"name": "lookup_order", "description": "Look up an order by number",
            "inputSchema": {"json": {"type": "object", "properties": {"order": {"type": "integer"}}, "required": ["order"]}}}}]},
        "requestMetadata": {"feature": "support-chat"}
    })
    .to_string()
}

fn retrieve_body() -> String {
    json!({
        "retrievalQuery": {"text": "What is the refund policy for damaged items?"},
        "retrievalConfiguration": {"vectorSearchConfiguration": {"numberOfResults": 5, "overrideSearchType": "HYBRID",
            "filter": {"andAll": [{"equals": {"key": "year", "value": 2024}},
                                  {"in": {"key": "category", "value": ["refunds", "shipping"]}}]}}}
    })
    .to_string()
}

/// The headers boto3 1.44 sends on such a call, the identity header added.
fn boto3_headers(len: usize) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in [
        ("content-type", "application/json"),
        ("user-agent", "Boto3/1.44.5 md/Botocore#1.44.5 ua/2.1 os/linux#6.8 md/arch#x86_64 lang/python#3.11.7 cfg/retry-mode#legacy Botocore/1.44.5"),
        ("x-amz-date", "20261204T080000Z"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/us-east-1/bedrock/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=0000"),
        ("amz-sdk-invocation-id", "8c3f1e0e-6f2b-4b8a-9a55-2f4f3c7d1a11"),
        ("amz-sdk-request", "attempt=1"),
        ("x-tenant-token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln"),
        ("host", "127.0.0.1:8080"),
    ] {
        h.insert(HeaderName::from_static(n), HeaderValue::from_static(v));
    }
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    h
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let (rounds, iters) = if quick { (3, 5_000u32) } else { (9, 20_000u32) };
    let identity = HeaderName::from_static("x-tenant-token");
    validate::check_models().expect("embedded models load");
    let limits = JsonLimits::default();

    let mut out = String::from(
        "### Request validation cost (`cargo bench --bench validate`)\n\n\
         | request | body bytes | from_slice (µs) | validate: headers + query + body (µs) | added (µs) |\n\
         |---|---:|---:|---:|---:|\n",
    );
    for (name, op, body) in [
        ("Converse", Operation::Converse, converse_body()),
        ("Retrieve", Operation::Retrieve, retrieve_body()),
    ] {
        let bytes = Bytes::from(body);
        let headers = boto3_headers(bytes.len());
        // Warm up, and prove the inputs are accepted.
        validate::query(op, None).unwrap();
        validate::request_headers(op, &headers, &identity).unwrap();
        validate::validate_body(op, &bytes, limits).unwrap().expect("a JSON body");
        let (mut plain, mut full) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let t = Instant::now();
            for _ in 0..iters {
                black_box(serde_json::from_slice::<Value>(black_box(&bytes)).unwrap());
            }
            plain.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(iters));
            let t = Instant::now();
            for _ in 0..iters {
                validate::query(op, black_box(None)).unwrap();
                black_box(validate::request_headers(op, black_box(&headers), &identity).unwrap());
                black_box(validate::validate_body(op, black_box(&bytes), limits).unwrap());
            }
            full.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(iters));
        }
        let (p, f) = (median(plain), median(full));
        out.push_str(&format!("| {name} | {} | {p:.2} | {f:.2} | {:.2} |\n", bytes.len(), f - p));
    }
    out.push_str("\nMedians of interleaved rounds; budget: added ≤ 5 µs per typical Converse or Retrieve request.\n");
    println!("\n{out}");
    let _ = std::fs::create_dir_all("bench/results");
    let _ = std::fs::write("bench/results/validate.md", &out);
}
