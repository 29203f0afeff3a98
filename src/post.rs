//! Response filters that must see the whole upstream answer before any byte
//! reaches the client (docs/reference.md §5.2): Retrieve results outside the tenant's
//! source prefixes are dropped (and counted in `x-tenantgate-dropped-results`),
//! and a RetrieveAndGenerate answer — streamed or not — that cites a foreign
//! source is withheld whole with 502 `unauthorized_source_in_answer`, because
//! the generated text may already contain another tenant's data; an
//! AgenticRetrieveStream answer is judged the same way, event by event, once
//! whole (foreign results dropped and counted, a citation of one withholds
//! the answer). Everything else streams through untouched.

use crate::budget::json_scan::{scan, JsonLimits};
use crate::budget::{BufferLimits, Reservation};
use crate::error::ProxyError;
use crate::filter::chunks::{citation_event_payload_is_clean, filter_retrieve_response, rag_answer_is_clean};
use crate::principal::Principal;
use crate::session::SessionKeys;
use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder};
use aws_smithy_types::event_stream::HeaderValue as EsHeaderValue;
use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use std::time::Duration;

/// Largest upstream answer a buffering filter will hold; larger -> 502.
pub const MAX_FILTERED_RESPONSE: usize = 32 * 1024 * 1024;

/// What to do with a successful upstream response.
#[derive(Debug, Clone)]
pub enum Post {
    /// Forward as it arrives.
    Stream,
    /// Retrieve: drop foreign results.
    Retrieve { prefixes: Vec<String> },
    /// RetrieveAndGenerate: withhold on a foreign citation, seal the session id.
    Rag { prefixes: Vec<String> },
    /// RetrieveAndGenerateStream: same over every `citation` event.
    RagStream { prefixes: Vec<String> },
    /// AgenticRetrieveStream: foreign results dropped from `result` and
    /// `traceEvent` events, withheld when the answer cites one, `nextToken`
    /// sealed (`family::agentic_retrieve::filter_stream`).
    AgenticStream { prefixes: Vec<String> },
    /// InvokeAgent: the response's session id header goes back as the
    /// client's own id; events citing sources outside `prefixes` end the
    /// stream (checked frame by frame, see `filter::eventstream`).
    Agent { client_session_id: String, client_memory_id: Option<String>, prefixes: Vec<String> },
    /// GetAgentMemory: summaries of another memory id dropped, the
    /// namespaced id given back as the client's.
    AgentMemory { client_memory_id: String, upstream_memory_id: String },
    /// GetDocumentContent: the presigned URL only when the document is
    /// stored under `prefixes`.
    DocumentContent { prefixes: Vec<String> },
    /// GetAsyncInvoke: the job only when it writes under `prefixes`.
    AsyncJob { prefixes: Vec<String> },
    /// ListAsyncInvokes: the page's jobs that write under `prefixes`.
    AsyncJobs { prefixes: Vec<String> },
    /// The Sessions API: the answer judged and its session ids sealed for
    /// the caller (`family::sessions::filter_answer`). `session` is
    /// Bedrock's id of the session asked about (none for CreateSession),
    /// `invocation` the invocation asked about, when one was named.
    Session { op: crate::route::Operation, session: Option<String>, invocation: Option<String> },
    /// ListFlowExecutions: the page's executions of `flow` (and `alias`
    /// when the request named one) that are the caller's, through an alias
    /// `grants` allows.
    FlowExecutions { flow: String, alias: Option<String>, grants: Vec<crate::config::FlowGrant> },
}

impl Post {
    pub fn buffers(&self) -> bool {
        matches!(
            self,
            Post::Retrieve { .. }
                | Post::Rag { .. }
                | Post::RagStream { .. }
                | Post::AgenticStream { .. }
                | Post::AgentMemory { .. }
                | Post::AsyncJob { .. }
                | Post::AsyncJobs { .. }
                | Post::Session { .. }
                | Post::DocumentContent { .. }
                | Post::FlowExecutions { .. }
        )
    }

    /// Whether the answer is a list that may lose entries (counted in
    /// `x-tenantgate-dropped-results`).
    pub fn counts_dropped(&self) -> bool {
        use crate::route::Operation::{ListInvocationSteps, ListInvocations, ListSessions};
        matches!(self, Post::Retrieve { .. } | Post::AgenticStream { .. } | Post::AgentMemory { .. } | Post::AsyncJobs { .. } | Post::FlowExecutions { .. })
            || matches!(self, Post::Session { op: ListInvocations | ListInvocationSteps | ListSessions, .. })
    }
}

/// Collect a body, bounded in size and in silence between frames, charging
/// its buffer to `mem` before it grows (docs/reference.md §3 `max_buffered_bytes`).
pub async fn collect<B>(
    mut body: B,
    idle: Duration,
    max: usize,
    mem: &mut Reservation,
    limits: &BufferLimits,
) -> Result<Bytes, ProxyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let declared = body.size_hint().exact().filter(|&n| n <= max as u64).unwrap_or(0);
    mem.grow_to(declared, limits)?;
    let mut buf = BytesMut::with_capacity(declared as usize);
    loop {
        match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(ProxyError::UpstreamTimeout),
            Ok(None) => return Ok(buf.freeze()),
            Ok(Some(Err(e))) => return Err(ProxyError::UpstreamError(format!("reading upstream response: {e}"))),
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    if buf.len() + data.len() > max {
                        return Err(ProxyError::UpstreamError(format!(
                            "upstream response larger than {max} bytes cannot be filtered"
                        )));
                    }
                    let need = buf.len() + data.len();
                    if need > buf.capacity() {
                        let cap = need.max(buf.capacity() * 2).max(16 * 1024).min(max);
                        mem.grow_to(cap as u64, limits)?;
                        buf.reserve(cap - buf.len());
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

/// Before `apply` (and any redaction) works on a collected answer: the
/// tree a Retrieve or RetrieveAndGenerate answer is parsed into (estimated
/// from a counting scan) and the rewritten copy, charged to `mem`.
pub fn charge(post: &Post, raw: &[u8], mem: &mut Reservation, limits: &BufferLimits) -> Result<(), ProxyError> {
    let tree = match post {
        Post::Retrieve { .. } | Post::Rag { .. } | Post::AgentMemory { .. } | Post::AsyncJob { .. } | Post::AsyncJobs { .. }
        | Post::DocumentContent { .. } | Post::Session { .. } | Post::FlowExecutions { .. } => match scan(raw, &JsonLimits::UNLIMITED) {
            Ok(shape) => shape.tree_bytes(raw.len()),
            // Not JSON: `apply` refuses it without building a tree.
            Err(_) => 0,
        },
        // One event's tree at a time: the largest.
        Post::AgenticStream { .. } => crate::family::agentic_retrieve::largest_event_tree(raw),
        _ => 0,
    };
    mem.grow(tree.saturating_add(raw.len() as u64), limits)?;
    Ok(())
}

/// The filtered body and the number of dropped results.
pub fn apply(
    post: &Post,
    body: Bytes,
    principal: &Principal,
    keys: &SessionKeys,
) -> Result<(Bytes, u64), ProxyError> {
    match post {
        Post::Stream | Post::Agent { .. } => Ok((body, 0)),
        Post::Retrieve { prefixes } => {
            let (out, dropped) = filter_retrieve_response(&body, prefixes)?;
            if dropped == 0 {
                return Ok((body, 0));
            }
            Ok((Bytes::from(out), dropped))
        }
        Post::Rag { prefixes } => {
            let mut v: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| ProxyError::UpstreamError(format!("RetrieveAndGenerate answer is not JSON: {e}")))?;
            if !rag_answer_is_clean(&v, prefixes) {
                return Err(ProxyError::UnauthorizedSourceInAnswer);
            }
            if crate::filter::seal_rag_response_session(&mut v, principal, keys) {
                let out = serde_json::to_vec(&v).map_err(|e| ProxyError::UpstreamError(e.to_string()))?;
                return Ok((Bytes::from(out), 0));
            }
            Ok((body, 0))
        }
        Post::RagStream { prefixes } => {
            check_rag_stream(&body, prefixes)?;
            Ok((body, 0))
        }
        Post::AgenticStream { prefixes } => {
            let (out, dropped) = crate::family::agentic_retrieve::filter_stream(&body, prefixes, principal, keys)?;
            Ok((out, dropped))
        }
        Post::AgentMemory { client_memory_id, upstream_memory_id } => {
            crate::family::agent_memory::filter_memory_response(&body, upstream_memory_id, client_memory_id)
        }
        Post::AsyncJob { prefixes } => Ok((Bytes::from(crate::family::async_jobs::filter_job(&body, prefixes)?), 0)),
        Post::DocumentContent { prefixes } => {
            Ok((Bytes::from(crate::family::kb_documents::filter_document_content(&body, prefixes)?), 0))
        }
        Post::AsyncJobs { prefixes } => {
            let (out, dropped) = crate::family::async_jobs::filter_jobs(&body, prefixes)?;
            Ok((Bytes::from(out), dropped))
        }
        Post::Session { op, session, invocation } => {
            let asked = crate::family::sessions::Asked { session: session.as_deref(), invocation: invocation.as_deref() };
            crate::family::sessions::filter_answer(*op, asked, &body, principal, keys)
        }
        Post::FlowExecutions { flow, alias, grants } => {
            let (out, dropped) =
                crate::family::flows::filter_executions(&body, flow, alias.as_deref(), grants, principal, keys)?;
            Ok((Bytes::from(out), dropped))
        }
    }
}

/// Every frame must decode with valid CRCs, and every `citation` event must
/// cite only allowed sources. Anything undecodable is withheld (502).
fn check_rag_stream(body: &[u8], prefixes: &[String]) -> Result<(), ProxyError> {
    let mut buf = body;
    let mut decoder = MessageFrameDecoder::new();
    while !buf.is_empty() {
        match decoder.decode_frame(&mut buf) {
            Ok(DecodedFrame::Complete(msg)) => {
                let event = msg.headers().iter().find(|h| h.name().as_str() == ":event-type").and_then(|h| {
                    match h.value() {
                        EsHeaderValue::String(s) => Some(s.as_str().to_string()),
                        _ => None,
                    }
                });
                if event.as_deref() == Some("citation") && !citation_event_payload_is_clean(msg.payload(), prefixes) {
                    return Err(ProxyError::UnauthorizedSourceInAnswer);
                }
            }
            Ok(DecodedFrame::Incomplete) => {
                return Err(ProxyError::UpstreamError("upstream event stream ended mid-frame".into()))
            }
            Err(e) => return Err(ProxyError::UpstreamError(format!("upstream event stream is corrupt: {e}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::budget::Budget;
    use aws_smithy_eventstream::frame::write_message_to;
    use aws_smithy_types::event_stream::{Header, Message};

    fn frame(event: &str, payload: &str) -> Vec<u8> {
        let msg = Message::new(payload.as_bytes().to_vec())
            .add_header(Header::new(":message-type", EsHeaderValue::String("event".into())))
            .add_header(Header::new(":event-type", EsHeaderValue::String(event.to_string().into())));
        let mut out = Vec::new();
        write_message_to(&msg, &mut out).unwrap();
        out
    }

    fn citation(uri: &str) -> String {
        serde_json::json!({"citation": {"retrievedReferences": [{"location": {"type": "S3", "s3Location": {"uri": uri}}}]}})
            .to_string()
    }

    #[test]
    fn rag_stream_with_only_own_citations_passes() {
        let p = vec!["s3://docs/tenants/acme/".to_string()];
        let mut s = frame("output", r#"{"output":{"text":"hi"}}"#);
        s.extend(frame("citation", &citation("s3://docs/tenants/acme/a.txt")));
        assert!(check_rag_stream(&s, &p).is_ok());
    }

    #[test]
    fn rag_stream_citing_another_tenant_is_withheld() {
        let p = vec!["s3://docs/tenants/acme/".to_string()];
        let mut s = frame("output", r#"{"output":{"text":"hi"}}"#);
        s.extend(frame("citation", &citation("s3://docs/tenants/acme-evil/a.txt")));
        assert_eq!(check_rag_stream(&s, &p).unwrap_err().reason(), "unauthorized_source_in_answer");
    }

    #[test]
    fn truncated_or_corrupt_stream_is_withheld() {
        let p = vec!["s3://docs/".to_string()];
        let s = frame("output", r#"{"output":{"text":"hi"}}"#);
        assert_eq!(check_rag_stream(&s[..s.len() - 3], &p).unwrap_err().reason(), "upstream_error");
        let mut bad = s.clone();
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        assert_eq!(check_rag_stream(&bad, &p).unwrap_err().reason(), "upstream_error");
    }

    #[tokio::test]
    async fn a_buffered_answer_and_its_tree_are_charged() {
        use http_body_util::Full;
        let budget = Budget::new();
        let roomy = BufferLimits { total: 1 << 20, per_tenant: 1 << 20 };
        let answer = serde_json::json!({"retrievalResults": (0..100).map(|i| serde_json::json!({"i": i})).collect::<Vec<_>>()});
        let raw = Bytes::from(answer.to_string());
        let mut mem = budget.reservation("t");
        let got = collect(Full::new(raw.clone()), Duration::from_secs(5), MAX_FILTERED_RESPONSE, &mut mem, &roomy).await.unwrap();
        assert_eq!((got.len() as u64, mem.bytes()), (raw.len() as u64, raw.len() as u64));
        let post = Post::Retrieve { prefixes: vec![] };
        charge(&post, &got, &mut mem, &roomy).unwrap();
        let shape = scan(&got, &JsonLimits::UNLIMITED).unwrap();
        assert_eq!(mem.bytes(), 2 * raw.len() as u64 + shape.tree_bytes(raw.len()));
        // The same answer for a tenant whose share is smaller: 429.
        let small = BufferLimits { total: 1 << 20, per_tenant: raw.len() as u64 * 2 };
        let mut other = budget.reservation("u");
        let got = collect(Full::new(raw.clone()), Duration::from_secs(5), MAX_FILTERED_RESPONSE, &mut other, &small).await.unwrap();
        assert_eq!(charge(&post, &got, &mut other, &small).unwrap_err().reason(), "memory_limited");
        let tiny = BufferLimits { total: 1 << 20, per_tenant: 10 };
        let e = collect(Full::new(raw), Duration::from_secs(5), MAX_FILTERED_RESPONSE, &mut budget.reservation("v"), &tiny).await;
        assert_eq!(e.unwrap_err().reason(), "memory_limited");
        drop((mem, other));
        assert_eq!(budget.held(), 0);
    }
}
