//! Bedrock agent runtime answers of the simulator: Retrieve
//! (`POST /knowledgebases/{kbId}/retrieve`) and InvokeAgent
//! (`POST /agents/{agentId}/agentAliases/{aliasId}/sessions/{sessionId}/text`),
//! shaped like the real service's.
//!
//! The knowledge base is one pooled index holding several tenants' chunks
//! (`s3://docs/tenants/{tenant}/...`), with `tenant_id` metadata. It applies
//! the request's metadata filter like Bedrock (`equals`, `notEquals`, `in`,
//! `andAll`, `orAll`), and it holds one chunk of globex's that was tagged
//! `tenant_id = acme` by mistake at ingestion: a metadata filter alone lets
//! it through, the sidecar's source-prefix post-filter must drop it.

use super::sim_bedrock::{event_frame, Answer};
use base64::Engine as _;
use serde_json::{json, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Retrieve {
        kb: String,
    },
    InvokeAgent {
        agent: String,
        alias: String,
        session: String,
    },
    /// `GET /agents/{agentId}/agentAliases/{aliasId}/memories?memoryId=...`.
    GetAgentMemory {
        agent: String,
        alias: String,
        memory_id: String,
    },
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::Retrieve { .. } => "Retrieve",
            Op::InvokeAgent { .. } => "InvokeAgent",
            Op::GetAgentMemory { .. } => "GetAgentMemory",
        }
    }

    pub fn resource(&self) -> String {
        match self {
            Op::Retrieve { kb } => kb.clone(),
            Op::InvokeAgent { agent, alias, .. } | Op::GetAgentMemory { agent, alias, .. } => {
                format!("{agent}/{alias}")
            }
        }
    }
}

fn decode(seg: &str) -> Option<String> {
    let s = percent_encoding::percent_decode_str(seg)
        .decode_utf8()
        .ok()?
        .into_owned();
    (!s.is_empty()).then_some(s)
}

pub fn route(path: &str) -> Option<Op> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    match segs[..] {
        ["knowledgebases", kb, "retrieve"] => Some(Op::Retrieve { kb: decode(kb)? }),
        ["agents", agent, "agentAliases", alias, "sessions", session, "text"] => {
            Some(Op::InvokeAgent {
                agent: decode(agent)?,
                alias: decode(alias)?,
                session: decode(session)?,
            })
        }
        _ => None,
    }
}

/// `GET .../memories?memoryId=...` -> GetAgentMemory (a missing
/// `memoryId` is AWS's 400, answered by `answer`).
pub fn route_get(path: &str, query: Option<&str>) -> Option<Op> {
    let segs: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
    let ["agents", agent, "agentAliases", alias, "memories"] = segs[..] else {
        return None;
    };
    let memory_id = query
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("memoryId="))
        .and_then(decode)
        .unwrap_or_default();
    Some(Op::GetAgentMemory { agent: decode(agent)?, alias: decode(alias)?, memory_id })
}

/// GetAgentMemory like a misbehaving agent memory store: the summary of the
/// memory asked for, and one of another memory (another user's) that the
/// sidecar must drop.
fn get_agent_memory(memory_id: &str) -> Answer {
    if memory_id.is_empty() {
        return Answer::error(400, "ValidationException", "memoryId is required");
    }
    let summary = |id: &str, session: &str, text: &str| {
        json!({ "sessionSummary": {
            "memoryId": id, "sessionId": session,
            "sessionStartTime": "2026-12-01T09:00:00Z", "sessionExpiryTime": "2026-12-31T09:00:00Z",
            "summaryText": text,
        } })
    };
    Answer::json(
        200,
        &json!({ "memoryContents": [
            summary(memory_id, "chat-41", "The user asked about refunds for order 7."),
            summary("tgm-0therusersmemory", "chat-9", "Another user's salary discussion."),
        ] }),
    )
}

pub fn answer(op: &Op, body: &[u8]) -> Answer {
    if let Op::GetAgentMemory { memory_id, .. } = op {
        return get_agent_memory(memory_id);
    }
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return Answer::error(400, "ValidationException", "Malformed request body");
    };
    match op {
        Op::Retrieve { kb } => retrieve(kb, &req),
        Op::InvokeAgent {
            agent,
            alias,
            session,
        } => invoke_agent(agent, alias, session, &req),
        Op::GetAgentMemory { .. } => unreachable!("answered above"),
    }
}

/// (source URI, tenant_id metadata, text) of the pooled index.
const CHUNKS: &[(&str, &str, &str)] = &[
    (
        "s3://docs/tenants/acme/refund-policy.md",
        "acme",
        "Acme refunds orders within 30 days of delivery.",
    ),
    (
        "s3://docs/tenants/acme/handbook.pdf",
        "acme",
        "Acme support answers within one business day.",
    ),
    (
        "s3://docs/tenants/globex/pricing-2025.pdf",
        "acme", // mis-tagged at ingestion: it is globex's document
        "Globex list prices for 2025 (confidential).",
    ),
    (
        "s3://docs/tenants/globex/refund-policy.md",
        "globex",
        "Globex refunds orders within 14 days.",
    ),
];

fn retrieve(kb: &str, req: &Value) -> Answer {
    if req
        .pointer("/retrievalQuery/text")
        .and_then(Value::as_str)
        .is_none()
    {
        return Answer::error(
            400,
            "ValidationException",
            "1 validation error detected: Value null at 'retrievalQuery' failed to satisfy constraint: Member must not be null",
        );
    }
    let filter = req.pointer("/retrievalConfiguration/vectorSearchConfiguration/filter");
    let results: Vec<Value> = CHUNKS
        .iter()
        .enumerate()
        .filter_map(|(i, (uri, tenant, text))| {
            let metadata = json!({
                "tenant_id": tenant,
                "x-amz-bedrock-kb-source-uri": uri,
                "x-amz-bedrock-kb-chunk-id": format!("{kb}-chunk-{i}"),
                "x-amz-bedrock-kb-data-source-id": "DSPOOLED01",
            });
            filter.is_none_or(|f| matches(f, &metadata)).then(|| {
                json!({
                    "content": { "type": "TEXT", "text": text },
                    "location": { "type": "S3", "s3Location": { "uri": uri } },
                    "metadata": metadata,
                    "score": 0.9 - 0.1 * i as f64,
                })
            })
        })
        .collect();
    Answer::json(200, &json!({ "retrievalResults": results }))
}

/// Bedrock's metadata filter semantics on one chunk's metadata. Operators the
/// simulator does not know match nothing.
pub fn matches(filter: &Value, metadata: &Value) -> bool {
    let Some((op, arg)) = filter.as_object().and_then(|m| m.iter().next()) else {
        return false;
    };
    let field = |arg: &Value| {
        let key = arg.get("key").and_then(Value::as_str).unwrap_or("");
        (metadata.get(key).cloned(), arg.get("value").cloned())
    };
    let all = |arg: &Value, f: &dyn Fn(&Value) -> bool| {
        arg.as_array().is_some_and(|items| items.iter().all(f))
    };
    match op.as_str() {
        "equals" => matches!(field(arg), (Some(a), Some(b)) if a == b),
        "notEquals" => !matches!(field(arg), (Some(a), Some(b)) if a == b),
        "in" => match field(arg) {
            (Some(a), Some(Value::Array(list))) => list.contains(&a),
            _ => false,
        },
        "andAll" => all(arg, &|f| matches(f, metadata)),
        "orAll" => arg
            .as_array()
            .is_some_and(|items| items.iter().any(|f| matches(f, metadata))),
        _ => false,
    }
}

/// Bedrock agent session ids: `[0-9a-zA-Z._:-]+`, at most 100 characters.
pub fn valid_session_id(id: &str) -> bool {
    (2..=100).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
}

/// The agent answers with what it was given: the session attributes its
/// action groups would see, so a reader can check what the sidecar injected.
fn invoke_agent(agent: &str, alias: &str, session: &str, req: &Value) -> Answer {
    if !valid_session_id(session) {
        return Answer::error(
            400,
            "ValidationException",
            "1 validation error detected: Value at 'sessionId' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9a-zA-Z._:-]+",
        );
    }
    let Some(input) = req.get("inputText").and_then(Value::as_str) else {
        return Answer::error(400, "ValidationException", "inputText must not be null");
    };
    let attrs = req
        .pointer("/sessionState/sessionAttributes")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    let text = format!(
        "Agent {agent}/{alias} here. My action groups see session attributes [{attrs}]. \
         You asked: \"{}\"",
        input.chars().take(80).collect::<String>()
    );
    let chars: Vec<char> = text.chars().collect();
    let frames = chars
        .chunks(40)
        .map(|c| {
            let piece: String = c.iter().collect();
            let b64 = base64::engine::general_purpose::STANDARD.encode(piece.as_bytes());
            event_frame("chunk", &json!({ "bytes": b64 }))
        })
        .collect();
    let mut headers = vec![
        (
            "content-type",
            "application/vnd.amazon.eventstream".to_string(),
        ),
        ("x-amz-bedrock-agent-session-id", session.to_string()),
        (
            "x-amzn-bedrock-agent-content-type",
            "application/json".to_string(),
        ),
    ];
    if let Some(m) = req.get("memoryId").and_then(Value::as_str) {
        headers.push(("x-amz-bedrock-agent-memory-id", m.to_string()));
    }
    Answer {
        status: 200,
        headers,
        frames,
        streaming: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("/knowledgebases/KB1/retrieve"),
            Some(Op::Retrieve { kb: "KB1".into() })
        );
        assert_eq!(
            route("/agents/A1/agentAliases/B2/sessions/s%3A1/text"),
            Some(Op::InvokeAgent {
                agent: "A1".into(),
                alias: "B2".into(),
                session: "s:1".into()
            })
        );
        assert_eq!(route("/knowledgebases//retrieve"), None);
        assert_eq!(
            route("/agents/A1/agentAliases/B2/sessions/s/memories"),
            None
        );
        assert_eq!(route("/retrieveAndGenerate"), None);
    }

    #[test]
    fn filters_like_bedrock() {
        let md = json!({ "tenant_id": "acme", "year": 2024 });
        let eq = |k: &str, v: Value| json!({ "equals": { "key": k, "value": v } });
        assert!(matches(&eq("tenant_id", json!("acme")), &md));
        assert!(!matches(&eq("tenant_id", json!("globex")), &md));
        assert!(!matches(&eq("missing", json!("acme")), &md));
        assert!(matches(
            &json!({ "andAll": [eq("tenant_id", json!("acme")), eq("year", json!(2024))] }),
            &md
        ));
        assert!(!matches(
            &json!({ "andAll": [eq("tenant_id", json!("acme")), eq("year", json!(2023))] }),
            &md
        ));
        assert!(matches(
            &json!({ "orAll": [eq("tenant_id", json!("x")), eq("year", json!(2024))] }),
            &md
        ));
        assert!(matches(
            &json!({ "in": { "key": "tenant_id", "value": ["acme", "x"] } }),
            &md
        ));
        assert!(matches(
            &json!({ "notEquals": { "key": "tenant_id", "value": "x" } }),
            &md
        ));
        assert!(!matches(
            &json!({ "startsWith": { "key": "tenant_id", "value": "a" } }),
            &md
        ));
        assert!(!matches(&json!({}), &md));
    }

    fn uris(a: &Answer) -> Vec<String> {
        let v: Value = serde_json::from_slice(&a.frames[0]).unwrap();
        v["retrievalResults"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["location"]["s3Location"]["uri"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn retrieve_applies_the_filter_and_returns_the_mistagged_chunk() {
        let op = Op::Retrieve { kb: "KB1".into() };
        let all = answer(&op, br#"{"retrievalQuery":{"text":"refunds"}}"#);
        assert_eq!(uris(&all).len(), CHUNKS.len());
        let body = json!({
            "retrievalQuery": { "text": "refunds" },
            "retrievalConfiguration": { "vectorSearchConfiguration": {
                "filter": { "equals": { "key": "tenant_id", "value": "acme" } } } },
        });
        let acme = answer(&op, body.to_string().as_bytes());
        let u = uris(&acme);
        assert_eq!(u.len(), 3);
        assert_eq!(u.iter().filter(|u| u.contains("/globex/")).count(), 1);
        assert_eq!(answer(&op, b"{}").status, 400);
    }

    #[test]
    fn invoke_agent_streams_chunks_and_echoes_the_session_id() {
        let op = route("/agents/A1/agentAliases/B2/sessions/tg-abc/text").unwrap();
        let body = json!({ "inputText": "hi", "memoryId": "m-1",
            "sessionState": { "sessionAttributes": { "tenantId": "acme" } } });
        let a = answer(&op, body.to_string().as_bytes());
        assert_eq!(a.status, 200);
        assert!(a.streaming);
        let h = |n: &str| {
            a.headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(h("x-amz-bedrock-agent-session-id"), Some("tg-abc"));
        assert_eq!(h("x-amz-bedrock-agent-memory-id"), Some("m-1"));
        let mut text = String::new();
        for f in &a.frames {
            let m = aws_smithy_eventstream::frame::read_message_from(f.clone()).unwrap();
            let p: Value = serde_json::from_slice(m.payload()).unwrap();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(p["bytes"].as_str().unwrap())
                .unwrap();
            text.push_str(std::str::from_utf8(&raw).unwrap());
        }
        assert!(text.contains("tenantId=acme"), "{text}");
        let bad = route("/agents/A1/agentAliases/B2/sessions/has%20space/text").unwrap();
        assert_eq!(answer(&bad, body.to_string().as_bytes()).status, 400);
    }
}
