//! Bedrock runtime answers of the simulator: Converse, ConverseStream,
//! InvokeModel, InvokeModelWithResponseStream and CountTokens, shaped like the
//! real service's. Deterministic: the same request gives the same bytes.

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::Engine as _;
use bytes::Bytes;
use serde_json::{json, Value};

/// Latency the simulator reports in `metrics.latencyMs` (it answers at once).
const REPORTED_LATENCY_MS: u64 = 245;

/// What an operation answered: status, extra headers, body frames.
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub frames: Vec<Bytes>,
    /// Event stream (chunked, one frame per event) rather than one JSON body.
    pub streaming: bool,
}

impl Answer {
    pub fn json(status: u16, body: &Value) -> Answer {
        Answer {
            status,
            headers: vec![("content-type", "application/json".into())],
            frames: vec![Bytes::from(body.to_string())],
            streaming: false,
        }
    }

    /// An AWS JSON error (restJson1): `x-amzn-ErrorType` and `{"message"}`.
    pub fn error(status: u16, aws_type: &str, message: &str) -> Answer {
        let mut a = Answer::json(status, &json!({ "message": message }));
        a.headers.push(("x-amzn-errortype", aws_type.to_string()));
        a
    }
}

/// The Bedrock runtime operations the simulator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Converse,
    ConverseStream,
    InvokeModel,
    InvokeModelWithResponseStream,
    CountTokens,
    /// `POST /async-invoke`: the model is in the body.
    StartAsyncInvoke,
    /// `GET /async-invoke/{invocationArn}`: the ARN takes the model's place.
    GetAsyncInvoke,
}

impl Op {
    pub fn name(self) -> &'static str {
        match self {
            Op::Converse => "Converse",
            Op::ConverseStream => "ConverseStream",
            Op::InvokeModel => "InvokeModel",
            Op::InvokeModelWithResponseStream => "InvokeModelWithResponseStream",
            Op::CountTokens => "CountTokens",
            Op::StartAsyncInvoke => "StartAsyncInvoke",
            Op::GetAsyncInvoke => "GetAsyncInvoke",
        }
    }
}

/// `/model/{id}/{op}` -> (decoded model id, op).
pub fn route(path: &str) -> Option<(String, Op)> {
    if path == "/async-invoke" {
        // The model is named in the body; `answer` reads it.
        return Some((String::new(), Op::StartAsyncInvoke));
    }
    let rest = path.strip_prefix("/model/")?;
    let (id, op) = rest.split_once('/')?;
    let op = match op {
        "converse" => Op::Converse,
        "converse-stream" => Op::ConverseStream,
        "invoke" => Op::InvokeModel,
        "invoke-with-response-stream" => Op::InvokeModelWithResponseStream,
        "count-tokens" => Op::CountTokens,
        _ => return None,
    };
    let id = percent_encoding::percent_decode_str(id)
        .decode_utf8()
        .ok()?
        .into_owned();
    if id.is_empty() {
        return None;
    }
    Some((id, op))
}

/// `GET /async-invoke/{invocationArn}` -> (decoded ARN, GetAsyncInvoke).
pub fn route_get(path: &str) -> Option<(String, Op)> {
    let arn = path.strip_prefix("/async-invoke/")?;
    let arn = percent_encoding::percent_decode_str(arn).decode_utf8().ok()?.into_owned();
    (!arn.is_empty()).then_some((arn, Op::GetAsyncInvoke))
}

/// The account's async invocations the simulator knows, started before the
/// demo (every tenant's jobs live in one account): job id -> output location.
pub const ASYNC_JOBS: [(&str, &str); 2] = [
    ("acmejob00001", "s3://media-out/acme/launch-video/"),
    ("globexjob001", "s3://media-out/globex/board-video/"),
];

/// GetAsyncInvoke as Bedrock answers it: the job, or 400
/// `ValidationException` for an ARN the account does not have.
fn get_async_invoke(arn: &str) -> Answer {
    let id = arn.rsplit_once("async-invoke/").map(|(_, id)| id).unwrap_or("");
    match ASYNC_JOBS.iter().find(|(j, _)| *j == id) {
        Some((_, uri)) => Answer::json(
            200,
            &json!({
                "invocationArn": arn,
                "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-reel-v1:0",
                "status": "Completed",
                "submitTime": "2026-12-01T09:00:00Z",
                "endTime": "2026-12-01T09:04:00Z",
                "outputDataConfig": { "s3OutputDataConfig": { "s3Uri": uri } },
            }),
        ),
        None => Answer::error(400, "ValidationException", &format!("Invocation {arn} not found")),
    }
}

pub fn answer(op: Op, model: &str, body: &[u8]) -> Answer {
    if op == Op::GetAsyncInvoke {
        return get_async_invoke(model);
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return Answer::error(
            400,
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        );
    };
    if op == Op::StartAsyncInvoke {
        return start_async_invoke(&req);
    }
    let prompt = last_user_text(&req);
    let text = reply_text(model, &prompt);
    let input_tokens = estimate_tokens(&prompt) + 8;
    let output_tokens = estimate_tokens(&text);
    match op {
        Op::Converse => Answer::json(
            200,
            &json!({
                "output": { "message": { "role": "assistant", "content": [{ "text": text }] } },
                "stopReason": "end_turn",
                "usage": usage(input_tokens, output_tokens),
                "metrics": { "latencyMs": REPORTED_LATENCY_MS },
            }),
        ),
        Op::ConverseStream => converse_stream(&text, input_tokens, output_tokens),
        Op::InvokeModel => invoke_model(model, &text, &prompt, input_tokens, output_tokens),
        Op::InvokeModelWithResponseStream => {
            invoke_stream(model, &text, input_tokens, output_tokens)
        }
        Op::CountTokens => Answer::json(200, &json!({ "inputTokens": input_tokens })),
        Op::StartAsyncInvoke | Op::GetAsyncInvoke => unreachable!("answered above"),
    }
}

/// StartAsyncInvoke as Bedrock answers it: `modelId`, `modelInput` and
/// `outputDataConfig.s3OutputDataConfig.s3Uri` are required (400
/// `ValidationException` otherwise); the answer is the job's
/// `invocationArn` (`arn:aws:bedrock:REGION:ACCOUNT:async-invoke/` + 12
/// lower-case letters and digits), the same for the same
/// `clientRequestToken` (AWS's idempotency), else derived from the body.
fn start_async_invoke(req: &Value) -> Answer {
    let uri = req.pointer("/outputDataConfig/s3OutputDataConfig/s3Uri").and_then(Value::as_str);
    let model = req.get("modelId").and_then(Value::as_str);
    let (Some(uri), Some(_), Some(_)) = (uri, model, req.get("modelInput")) else {
        return Answer::error(
            400,
            "ValidationException",
            "modelId, modelInput and outputDataConfig.s3OutputDataConfig.s3Uri are required",
        );
    };
    if !uri.starts_with("s3://") {
        return Answer::error(400, "ValidationException", "s3Uri must be an s3:// URI");
    }
    let seed = match req.get("clientRequestToken").and_then(Value::as_str) {
        Some(t) => t.to_string(),
        None => req.to_string(),
    };
    // FNV-1a: a stable id per token, no extra dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let id: String = (0..12).map(|i| ALPHABET[((h >> (i * 5)) % 36) as usize] as char).collect();
    Answer::json(200, &json!({ "invocationArn": format!("arn:aws:bedrock:us-east-1:111122223333:async-invoke/{id}") }))
}

fn usage(input: u64, output: u64) -> Value {
    json!({ "inputTokens": input, "outputTokens": output, "totalTokens": input + output })
}

/// The reply names the model id exactly as it arrived, so a caller can see
/// what the proxy rewrote (e.g. a tenant's application inference profile).
fn reply_text(model: &str, prompt: &str) -> String {
    let mut echo: String = prompt.chars().take(80).collect();
    if prompt.chars().count() > 80 {
        echo.push_str("...");
    }
    format!("Simulated answer from {model}. You said: \"{echo}\"")
}

fn estimate_tokens(s: &str) -> u64 {
    (s.len() as u64).div_ceil(4).max(1)
}

/// Text of the last user message: Converse (`content[].text`), Anthropic
/// messages (`content` string or blocks), Titan (`inputText`), or `prompt`.
fn last_user_text(req: &Value) -> String {
    if let Some(msgs) = req.get("messages").and_then(Value::as_array) {
        if let Some(m) = msgs
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
        {
            return match m.get("content") {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Array(blocks)) => blocks
                    .iter()
                    .filter_map(|b| b.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => String::new(),
            };
        }
    }
    for key in ["inputText", "prompt"] {
        if let Some(s) = req.get(key).and_then(Value::as_str) {
            return s.to_string();
        }
    }
    String::new()
}

/// Split into deltas of 16 characters, as Bedrock streams token pieces: a
/// word (or an ARN) may be cut across two events.
fn deltas(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    chars.chunks(16).map(|c| c.iter().collect()).collect()
}

/// One AWS event-stream message (`:message-type` event) with a JSON payload.
pub fn event_frame(event_type: &str, payload: &Value) -> Bytes {
    let msg = Message::new(Bytes::from(payload.to_string()))
        .add_header(Header::new(
            ":event-type",
            HeaderValue::String(event_type.to_string().into()),
        ))
        .add_header(Header::new(
            ":content-type",
            HeaderValue::String("application/json".into()),
        ))
        .add_header(Header::new(
            ":message-type",
            HeaderValue::String("event".into()),
        ));
    let mut buf = Vec::with_capacity(payload.to_string().len() + 96);
    match aws_smithy_eventstream::frame::write_message_to(&msg, &mut buf) {
        Ok(()) => Bytes::from(buf),
        // Only fails for oversized headers/payloads, which we never build.
        Err(_) => Bytes::new(),
    }
}

fn stream_answer(frames: Vec<Bytes>, extra: Vec<(&'static str, String)>) -> Answer {
    let mut headers = vec![(
        "content-type",
        "application/vnd.amazon.eventstream".to_string(),
    )];
    headers.extend(extra);
    Answer {
        status: 200,
        headers,
        frames,
        streaming: true,
    }
}

fn converse_stream(text: &str, input: u64, output: u64) -> Answer {
    let mut frames = vec![event_frame("messageStart", &json!({ "role": "assistant" }))];
    for d in deltas(text) {
        frames.push(event_frame(
            "contentBlockDelta",
            &json!({ "contentBlockIndex": 0, "delta": { "text": d } }),
        ));
    }
    frames.push(event_frame(
        "contentBlockStop",
        &json!({ "contentBlockIndex": 0 }),
    ));
    frames.push(event_frame(
        "messageStop",
        &json!({ "stopReason": "end_turn" }),
    ));
    frames.push(event_frame(
        "metadata",
        &json!({ "usage": usage(input, output), "metrics": { "latencyMs": REPORTED_LATENCY_MS } }),
    ));
    stream_answer(frames, Vec::new())
}

fn token_headers(input: u64, output: u64) -> Vec<(&'static str, String)> {
    vec![
        ("x-amzn-bedrock-input-token-count", input.to_string()),
        ("x-amzn-bedrock-output-token-count", output.to_string()),
        (
            "x-amzn-bedrock-invocation-latency",
            REPORTED_LATENCY_MS.to_string(),
        ),
    ]
}

fn invoke_model(model: &str, text: &str, prompt: &str, input: u64, output: u64) -> Answer {
    let body = if model.contains("embed") {
        // Titan embeddings: a short deterministic vector.
        let embedding: Vec<f64> = (0..8)
            .map(|i| f64::from((prompt.len() as u32 + i * 37) % 100) / 100.0)
            .collect();
        json!({ "embedding": embedding, "inputTextTokenCount": input })
    } else {
        json!({
            "id": "msg_bdrk_01SIMULATED",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{ "type": "text", "text": text }],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": { "input_tokens": input, "output_tokens": output },
        })
    };
    let mut a = Answer::json(200, &body);
    let out = if model.contains("embed") { 0 } else { output };
    a.headers.extend(token_headers(input, out));
    a
}

fn chunk(payload: &Value) -> Bytes {
    let b64 = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
    event_frame("chunk", &json!({ "bytes": b64 }))
}

fn invoke_stream(model: &str, text: &str, input: u64, output: u64) -> Answer {
    let mut frames = vec![
        chunk(&json!({ "type": "message_start", "message": {
            "id": "msg_bdrk_01SIMULATED", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": { "input_tokens": input, "output_tokens": 1 } } })),
        chunk(&json!({ "type": "content_block_start", "index": 0,
            "content_block": { "type": "text", "text": "" } })),
    ];
    for d in deltas(text) {
        frames.push(chunk(&json!({ "type": "content_block_delta", "index": 0,
            "delta": { "type": "text_delta", "text": d } })));
    }
    frames.push(chunk(&json!({ "type": "content_block_stop", "index": 0 })));
    frames.push(chunk(&json!({ "type": "message_delta",
        "delta": { "stop_reason": "end_turn", "stop_sequence": null },
        "usage": { "output_tokens": output } })));
    frames.push(chunk(
        &json!({ "type": "message_stop", "amazon-bedrock-invocationMetrics": {
        "inputTokenCount": input, "outputTokenCount": output,
        "invocationLatency": REPORTED_LATENCY_MS, "firstByteLatency": 120 } }),
    ));
    stream_answer(
        frames,
        vec![("x-amzn-bedrock-content-type", "application/json".into())],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_async_invoke_answers_an_invocation_arn() {
        assert_eq!(route("/async-invoke"), Some((String::new(), Op::StartAsyncInvoke)));
        let body = json!({ "modelId": "amazon.nova-reel-v1:0", "modelInput": {},
            "outputDataConfig": { "s3OutputDataConfig": { "s3Uri": "s3://media-out/acme/" } },
            "clientRequestToken": "tga-1" });
        let arn = |b: &Value| {
            let a = answer(Op::StartAsyncInvoke, "", b.to_string().as_bytes());
            assert_eq!(a.status, 200);
            serde_json::from_slice::<Value>(&a.frames.concat()).unwrap()["invocationArn"].as_str().unwrap().to_string()
        };
        let first = arn(&body);
        let id = first.strip_prefix("arn:aws:bedrock:us-east-1:111122223333:async-invoke/").unwrap();
        assert!(id.len() == 12 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{first}");
        assert_eq!(arn(&body), first, "the same token gives the same job");
        let mut other = body.clone();
        other["clientRequestToken"] = json!("tga-2");
        assert_ne!(arn(&other), first);
        let a = answer(Op::StartAsyncInvoke, "", br#"{"modelId":"m","modelInput":{}}"#);
        assert_eq!(a.status, 400);
    }

    #[test]
    fn routes_and_decodes_model_ids() {
        assert_eq!(
            route("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"),
            Some((
                "anthropic.claude-3-haiku-20240307-v1:0".into(),
                Op::Converse
            ))
        );
        assert_eq!(
            route("/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ax%2Fy/invoke-with-response-stream"),
            Some((
                "arn:aws:bedrock:us-east-1:1:x/y".into(),
                Op::InvokeModelWithResponseStream
            ))
        );
        assert_eq!(route("/model//converse"), None);
        assert_eq!(route("/model/x/unknown"), None);
        assert_eq!(route("/model/%FF/converse"), None);
        assert_eq!(route("/foo"), None);
    }

    #[test]
    fn converse_answer_is_bedrock_shaped_and_deterministic() {
        let body = br#"{"messages":[{"role":"user","content":[{"text":"Hello"}]}]}"#;
        let a = answer(Op::Converse, "m1", body);
        assert_eq!(a.status, 200);
        let v: Value = serde_json::from_slice(&a.frames[0]).unwrap();
        assert!(v["output"]["message"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("m1"));
        assert_eq!(v["stopReason"], "end_turn");
        let u = &v["usage"];
        assert_eq!(
            u["totalTokens"].as_u64().unwrap(),
            u["inputTokens"].as_u64().unwrap() + u["outputTokens"].as_u64().unwrap()
        );
        assert_eq!(answer(Op::Converse, "m1", body).frames, a.frames);
        assert_eq!(answer(Op::Converse, "m1", b"{nope").status, 400);
    }

    #[test]
    fn streams_decode_as_valid_event_stream_frames() {
        let body = br#"{"messages":[{"role":"user","content":"one two three four five"}]}"#;
        for op in [Op::ConverseStream, Op::InvokeModelWithResponseStream] {
            let a = answer(op, "anthropic.claude", body);
            assert!(a.streaming);
            let mut types = Vec::new();
            for f in &a.frames {
                let m = aws_smithy_eventstream::frame::read_message_from(f.clone()).unwrap();
                let t = m
                    .headers()
                    .iter()
                    .find(|h| h.name().as_str() == ":event-type")
                    .unwrap();
                types.push(t.value().as_string().unwrap().as_str().to_string());
                let p: Value = serde_json::from_slice(m.payload()).unwrap();
                if op == Op::InvokeModelWithResponseStream {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(p["bytes"].as_str().unwrap())
                        .unwrap();
                    serde_json::from_slice::<Value>(&raw).unwrap();
                }
            }
            if op == Op::ConverseStream {
                assert_eq!(types.first().unwrap(), "messageStart");
                assert_eq!(types.last().unwrap(), "metadata");
                assert!(types.contains(&"contentBlockDelta".to_string()));
            } else {
                assert!(types.iter().all(|t| t == "chunk"));
            }
        }
    }

    #[test]
    fn invoke_model_reports_token_headers() {
        let a = answer(
            Op::InvokeModel,
            "anthropic.claude",
            br#"{"messages":[{"role":"user","content":"hi"}]}"#,
        );
        assert!(a
            .headers
            .iter()
            .any(|(k, _)| *k == "x-amzn-bedrock-input-token-count"));
        assert!(a
            .headers
            .iter()
            .any(|(k, _)| *k == "x-amzn-bedrock-output-token-count"));
        let e = answer(
            Op::InvokeModel,
            "amazon.titan-embed-text-v2:0",
            br#"{"inputText":"hi"}"#,
        );
        let v: Value = serde_json::from_slice(&e.frames[0]).unwrap();
        assert_eq!(v["embedding"].as_array().unwrap().len(), 8);
    }
}
