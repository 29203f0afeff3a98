//! Sends each scenario through the sidecar over HTTP, then judges it against
//! what the simulator recorded: allowed requests must reach AWS exactly once,
//! signed with the calling tenant's key, carrying the rewrites; denied ones
//! must never reach it.

use super::scenarios::{Check, Scenario};
use super::setup::{key_prefix, DemoEnv};
use super::sim::{Sim, SimRecord};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What happened to one scenario.
pub struct Row {
    pub scenario: Scenario,
    pub status: u16,
    pub reason: Option<String>,
    /// What AWS received / what came back, one line each.
    pub details: Vec<String>,
    /// Anything that differs from the scenario's expectations.
    pub problems: Vec<String>,
    pub reached_upstream: usize,
}

struct Response {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

pub struct Runner<'a> {
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub proxy: SocketAddr,
    pub sim: &'a Sim,
    pub env: &'a DemoEnv,
}

impl Runner<'_> {
    async fn send(&self, s: &Scenario) -> Result<Response, String> {
        let mut req = http::Request::post(format!("http://{}{}", self.proxy, s.path))
            .header("content-type", "application/json")
            .header("accept", "application/json");
        if let Some(token) = s.caller.token(self.env) {
            req = req.header("x-tenant-token", token);
        }
        let req = req
            .body(Full::new(Bytes::from(s.body.clone())))
            .map_err(|e| e.to_string())?;
        let fut = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("request failed: {e}"))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| format!("response body: {e}"))?
                .to_bytes();
            Ok(Response {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| "timed out".to_string())?
    }

    pub async fn run(&self, s: Scenario) -> Row {
        let before = self.sim.records().len();
        let result = self.send(&s).await;
        let new: Vec<SimRecord> = self.sim.records().into_iter().skip(before).collect();
        let mut row = Row {
            status: 0,
            reason: None,
            details: Vec::new(),
            problems: Vec::new(),
            reached_upstream: new.len(),
            scenario: s,
        };
        let resp = match result {
            Ok(r) => r,
            Err(e) => {
                row.problems.push(e);
                return row;
            }
        };
        row.status = resp.status;
        row.reason = resp
            .headers
            .get("x-tenantgate-reason")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let s = &row.scenario;
        if resp.status != s.status {
            row.problems
                .push(format!("expected status {}, got {}", s.status, resp.status));
        }
        if s.reason.is_some() && row.reason.as_deref() != s.reason {
            row.problems.push(format!(
                "expected reason {:?}, got {:?}",
                s.reason, row.reason
            ));
        }
        if !resp.headers.contains_key("x-tenantgate-request-id") {
            row.problems
                .push("response has no x-tenantgate-request-id".into());
        }
        if s.status >= 400 {
            if !new.is_empty() {
                row.problems
                    .push(format!("denied request reached AWS {} time(s)", new.len()));
            }
            row.details.push(format!("never reached AWS ({})", s.note));
            return row;
        }
        let [rec] = &new[..] else {
            row.problems.push(format!(
                "expected exactly one upstream request, AWS saw {}",
                new.len()
            ));
            return row;
        };
        let (details, problems) = judge(&row.scenario, rec, &resp, self.env);
        row.details = details;
        row.problems.extend(problems);
        row
    }
}

/// Details and problems of an allowed request, from the simulator's record.
fn judge(
    s: &Scenario,
    rec: &SimRecord,
    resp: &Response,
    env: &DemoEnv,
) -> (Vec<String>, Vec<String>) {
    let mut details = Vec::new();
    let mut problems = Vec::new();
    let tenant = s.caller.tenant().unwrap_or("?");
    // Signature and key.
    let akid = rec.access_key.clone().unwrap_or_default();
    let owner = env.owner_of(&akid);
    match (rec.signature_ok, owner) {
        (Some(true), Some(o)) if o == tenant => details.push(format!(
            "signed as {} ({o}'s key); SigV4 verified by the simulator",
            key_prefix(&akid)
        )),
        (Some(true), Some(o)) => problems.push(format!("signed with {o}'s key, not {tenant}'s")),
        (Some(true), None) => problems.push("signed with a key no tenant owns".into()),
        _ => problems.push(format!(
            "simulator rejected the signature (key {})",
            key_prefix(&akid)
        )),
    }
    if env.key_of(tenant).is_none() {
        problems.push(format!("no key configured for {tenant}"));
    }
    let sent: Value = serde_json::from_slice(&rec.body).unwrap_or(Value::Null);
    for check in &s.checks {
        match check {
            Check::UpstreamModel(m) => {
                let got = upstream_model(&rec.path);
                if got.as_deref() != Some(m) {
                    problems.push(format!("AWS got model {got:?}, expected {m}"));
                } else if *m != s.resource {
                    details.push(format!("model rewritten to {m} (model_map)"));
                }
            }
            Check::Guardrail { id, version } => {
                let g = &sent["guardrailConfig"];
                if g["guardrailIdentifier"] == *id && g["guardrailVersion"] == *version {
                    details.push(format!(
                        "guardrail {id} v{version} enforced (client's value replaced)"
                    ));
                } else {
                    problems.push(format!(
                        "guardrailConfig sent upstream is {g}, expected {id} v{version}"
                    ));
                }
            }
            Check::RequestMetadata(pairs) => {
                let md = &sent["requestMetadata"];
                let ok = pairs.iter().all(|(k, v)| md[*k] == *v);
                let shown: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                if ok {
                    details.push(format!("requestMetadata set: {}", shown.join(", ")));
                } else {
                    problems.push(format!(
                        "requestMetadata sent upstream is {md}, expected {}",
                        shown.join(", ")
                    ));
                }
            }
            Check::NotInResponse(text) => {
                if memchr(&resp.body, text.as_bytes()) {
                    problems.push(format!("response still contains {text}"));
                } else {
                    details.push(format!("response: internal ARN (account {text}) redacted"));
                }
            }
            Check::NotInStreamText(text) => match stream_text(&resp.body) {
                Ok(t) if t.contains(text) => {
                    problems.push(format!("streamed text still contains {text}"))
                }
                Ok(_) => details.push(format!(
                    "stream: internal ARN (account {text}) redacted, though cut across events"
                )),
                Err(e) => problems.push(format!("cannot read the stream: {e}")),
            },
            Check::EventStream { min_events } => match decode_events(&resp.body).map(|e| e.len()) {
                Ok(n) if n >= *min_events => {
                    details.push(format!("response: {n} event-stream frames, all CRCs valid"))
                }
                Ok(n) => problems.push(format!("only {n} event-stream frames")),
                Err(e) => problems.push(format!("invalid event stream: {e}")),
            },
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(&resp.body) {
        if let Some(u) = v.get("usage") {
            details.push(format!(
                "usage: {} input + {} output tokens",
                u["inputTokens"], u["outputTokens"]
            ));
        }
    }
    (details, problems)
}

fn memchr(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Model id of `/model/{id}/...` as received, percent-decoded.
fn upstream_model(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/model/")?;
    let id = rest.split('/').next()?;
    percent_encoding::percent_decode_str(id)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// The payloads of the well-formed event-stream messages of a complete body.
fn decode_events(body: &Bytes) -> Result<Vec<Bytes>, String> {
    let mut buf = body.clone();
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 4 {
            return Err("truncated prelude".into());
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < 16 || len > buf.len() {
            return Err(format!("bad frame length {len}"));
        }
        let msg = aws_smithy_eventstream::frame::read_message_from(buf.split_to(len))
            .map_err(|e| e.to_string())?;
        out.push(msg.payload().clone());
    }
    Ok(out)
}

/// The streamed text: `delta.text` of every event joined, from ConverseStream
/// events or from the base64 `bytes` chunks of InvokeModelWithResponseStream.
fn stream_text(body: &Bytes) -> Result<String, String> {
    use base64::Engine as _;
    let mut text = String::new();
    for payload in decode_events(body)? {
        let mut v: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
        if let Some(b64) = v.get("bytes").and_then(Value::as_str) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("chunk bytes: {e}"))?;
            v = serde_json::from_slice(&raw).map_err(|e| format!("chunk JSON: {e}"))?;
        }
        if let Some(t) = v.pointer("/delta/text").and_then(Value::as_str) {
            text.push_str(t);
        }
    }
    Ok(text)
}
