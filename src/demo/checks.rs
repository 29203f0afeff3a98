//! Judging one `Check` of a scenario against what AWS (the simulator)
//! received and answered, and what the client got back from the sidecar.
//! Each check adds a detail line when it holds and a problem when it does not.

use super::scenarios::{Check, Scenario};
use super::sim::SimRecord;
use base64::Engine as _;
use bytes::Bytes;
use serde_json::Value;

/// What the client got back from the sidecar for one scenario (filled in by
/// the runner, judged here).
pub struct Response {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

#[derive(Default)]
pub struct Outcome {
    pub details: Vec<String>,
    pub problems: Vec<String>,
}

/// `rec` is None for a denied request (it never reached AWS): only checks on
/// the response apply then.
pub fn judge(c: &Check, s: &Scenario, rec: Option<&SimRecord>, resp: &Response, out: &mut Outcome) {
    if let Check::RetryAfter = c {
        return retry_after(resp, out);
    }
    if let Check::Redacted { id } = c {
        return redacted(id, resp, out);
    }
    if let Check::EventStream { min_events } = c {
        return match decode_events(&resp.body).map(|e| e.len()) {
            Ok(n) if n >= *min_events => out
                .details
                .push(format!("response: {n} event-stream frames, all CRCs valid")),
            Ok(n) => out.problems.push(format!("only {n} event-stream frames")),
            Err(e) => out.problems.push(format!("invalid event stream: {e}")),
        };
    }
    let Some(rec) = rec else {
        return out
            .problems
            .push(format!("{c:?} needs the request AWS received"));
    };
    let sent: Value = serde_json::from_slice(&rec.body).unwrap_or(Value::Null);
    match c {
        Check::UpstreamModel(m) => {
            if rec.resource.as_deref() != Some(m) {
                out.problems
                    .push(format!("AWS got model {:?}, expected {m}", rec.resource));
            } else if *m != s.resource {
                out.details
                    .push(format!("model rewritten to {m} (model_map)"));
            }
        }
        Check::Guardrail { id, version } => {
            let g = &sent["guardrailConfig"];
            if g["guardrailIdentifier"] == *id && g["guardrailVersion"] == *version {
                out.details.push(format!(
                    "guardrail {id} v{version} enforced (client's value replaced)"
                ));
            } else {
                out.problems.push(format!(
                    "guardrailConfig sent upstream is {g}, expected {id} v{version}"
                ));
            }
        }
        Check::RequestMetadata(pairs) => {
            let md = &sent["requestMetadata"];
            let shown = pairs_text(pairs);
            if pairs.iter().all(|(k, v)| md[*k] == *v) {
                out.details.push(format!("requestMetadata set: {shown}"));
            } else {
                out.problems.push(format!(
                    "requestMetadata sent upstream is {md}, expected {shown}"
                ));
            }
        }
        Check::RetrievalFilter(want) => {
            let got = sent.pointer("/retrievalConfiguration/vectorSearchConfiguration/filter");
            if got == Some(want) {
                out.details.push(format!("filter AWS received: {want}"));
            } else {
                out.problems.push(format!(
                    "filter AWS received is {}, expected {want}",
                    got.unwrap_or(&Value::Null)
                ));
            }
        }
        Check::DroppedResults { dropped, foreign } => {
            dropped_results(*dropped, foreign, rec, resp, out)
        }
        Check::AgentSession {
            client_session,
            set,
            kept,
        } => agent_session(client_session, set, kept, s, &sent, rec, resp, out),
        Check::Endpoint { name, target_model } => endpoint(name, *target_model, s, rec, resp, out),
        Check::AsyncInvoke { kms_key_id, tenant_tag } => async_invoke(kms_key_id, tenant_tag, s, &sent, out),
        Check::AgentMemory { client_memory } => agent_memory(client_memory, rec, resp, out),
        Check::RetryAfter | Check::EventStream { .. } | Check::Redacted { .. } => {}
    }
}

/// StartAsyncInvoke: what AWS received against what the client sent.
fn async_invoke(kms: &str, tenant: &str, s: &Scenario, sent: &Value, out: &mut Outcome) {
    let client: Value = serde_json::from_str(&s.body).unwrap_or(Value::Null);
    let s3 = sent.pointer("/outputDataConfig/s3OutputDataConfig");
    let got_kms = s3.and_then(|o| o.get("kmsKeyId")).and_then(Value::as_str);
    let client_kms = client.pointer("/outputDataConfig/s3OutputDataConfig/kmsKeyId").and_then(Value::as_str);
    match got_kms {
        Some(k) if k == kms => out.details.push(format!(
            "kmsKeyId AWS received: {k} (the tenant's; client sent {})",
            client_kms.unwrap_or("none")
        )),
        other => out.problems.push(format!("AWS got kmsKeyId {other:?}, not the tenant's {kms}")),
    }
    let tags: Vec<(&str, &str)> = sent
        .get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| Some((t.get("key")?.as_str()?, t.get("value")?.as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    let tenant_tags: Vec<&str> = tags.iter().filter(|(k, _)| *k == "TenantID").map(|(_, v)| *v).collect();
    if tenant_tags == [tenant] {
        out.details.push(format!("job tagged TenantID={tenant} (the client's TenantID tag replaced)"));
    } else {
        out.problems.push(format!("AWS got TenantID tags {tenant_tags:?}, not exactly [{tenant}]"));
    }
    let token = sent.get("clientRequestToken").and_then(Value::as_str).unwrap_or("");
    let client_token = client.get("clientRequestToken").and_then(Value::as_str).unwrap_or("");
    if token.starts_with("tga-") && token != client_token {
        out.details.push(format!(
            "clientRequestToken {client_token} -> {}... at AWS (per tenant and user: nobody else's retry returns this job)",
            token.get(..12).unwrap_or(token)
        ));
    } else {
        out.problems.push(format!("AWS got clientRequestToken {token:?}: not namespaced"));
    }
}

/// GetAgentMemory: the namespaced id upstream, only that memory back.
fn agent_memory(client_memory: &str, rec: &SimRecord, resp: &Response, out: &mut Outcome) {
    let upstream = rec
        .path
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("memoryId="))
        .map(|v| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
        .unwrap_or_default();
    if upstream.starts_with("tgm-") && upstream != client_memory {
        out.details.push(format!(
            "memoryId {client_memory} -> {}... at AWS (per tenant and user)",
            upstream.get(..12).unwrap_or(&upstream)
        ));
    } else {
        out.problems.push(format!("AWS was asked for memoryId {upstream:?}: not namespaced"));
    }
    let v: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
    let ids: Vec<&str> = v
        .get("memoryContents")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|c| c.pointer("/sessionSummary/memoryId")?.as_str()).collect())
        .unwrap_or_default();
    let dropped = header(&resp.headers, "x-tenantgate-dropped-results");
    if !ids.is_empty() && ids.iter().all(|i| *i == client_memory) && dropped == Some("1") {
        out.details.push(format!(
            "client got {} summary of its own memory {client_memory}; AWS's summary of another memory dropped (x-tenantgate-dropped-results: 1)",
            ids.len()
        ));
    } else {
        out.problems.push(format!("client got memory ids {ids:?}, dropped {dropped:?}"));
    }
}

fn pairs_text(pairs: &[(&str, &str)]) -> String {
    let v: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    v.join(", ")
}

fn header<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The streamed text (ConverseStream deltas) has `id` replaced, and no frame
/// carries it.
fn redacted(id: &str, resp: &Response, out: &mut Outcome) {
    let frames = match decode_events(&resp.body) {
        Ok(f) => f,
        Err(e) => return out.problems.push(format!("invalid event stream: {e}")),
    };
    let text: String = frames
        .iter()
        .filter_map(|p| serde_json::from_slice::<Value>(p).ok())
        .filter_map(|v| v.pointer("/delta/text").and_then(Value::as_str).map(str::to_string))
        .collect();
    let leaked = frames.iter().any(|p| String::from_utf8_lossy(p).contains(id));
    let n = text.matches("[redacted]").count();
    if leaked || n == 0 {
        out.problems.push(format!("identity id not redacted from the stream: {text:?}"));
    } else {
        // The part of the answer around the first replacement.
        let at = text.find("[redacted]").unwrap_or(0);
        let from = text[..at].char_indices().rev().nth(24).map_or(0, |(i, _)| i);
        let to = (at + 40).min(text.len());
        let to = (to..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        out.details.push(format!(
            "identity id split across deltas redacted ({n}x), {} frames, all CRCs valid: \"...{}...\"",
            frames.len(),
            &text[from..to]
        ));
    }
}

fn retry_after(resp: &Response, out: &mut Outcome) {
    match header(&resp.headers, "retry-after").map(str::parse::<u64>) {
        Some(Ok(n)) if n >= 1 => out
            .details
            .push(format!("Retry-After: {n} s (ThrottlingException)")),
        other => out
            .problems
            .push(format!("Retry-After missing or invalid: {other:?}")),
    }
}

/// Source URIs and `tenant_id` metadata of a Retrieve answer.
fn results(body: &[u8]) -> Option<Vec<(String, String)>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let list = v.get("retrievalResults")?.as_array()?;
    Some(
        list.iter()
            .map(|r| {
                let s = |p: &str| {
                    r.pointer(p)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                (s("/location/s3Location/uri"), s("/metadata/tenant_id"))
            })
            .collect(),
    )
}

fn dropped_results(
    dropped: usize,
    foreign: &str,
    rec: &SimRecord,
    resp: &Response,
    out: &mut Outcome,
) {
    let (Some(upstream), Some(client)) = (results(&rec.response), results(&resp.body)) else {
        return out
            .problems
            .push("Retrieve answers are not retrievalResults JSON".into());
    };
    let foreign_up: Vec<&(String, String)> = upstream
        .iter()
        .filter(|(u, _)| u.starts_with(foreign))
        .collect();
    let header_n = header(&resp.headers, "x-tenantgate-dropped-results");
    let leaked = client
        .iter()
        .filter(|(u, _)| u.starts_with(foreign))
        .count();
    if foreign_up.len() != dropped {
        out.problems.push(format!(
            "AWS answered {} result(s) under {foreign}, the scenario needs {dropped}",
            foreign_up.len()
        ));
    } else if leaked > 0 || client.len() + dropped != upstream.len() {
        out.problems.push(format!(
            "client got {} of {} results, {leaked} under {foreign}",
            client.len(),
            upstream.len()
        ));
    } else if header_n != Some(dropped.to_string().as_str()) {
        out.problems.push(format!(
            "x-tenantgate-dropped-results is {header_n:?}, expected {dropped}"
        ));
    } else {
        let tags: Vec<String> = foreign_up
            .iter()
            .map(|(_, t)| format!("tenant_id={t}"))
            .collect();
        out.details.push(format!(
            "AWS returned {} chunks, {dropped} of them under {foreign} (metadata says {}): \
             the filter alone let it through",
            upstream.len(),
            tags.join(", ")
        ));
        out.details.push(format!(
            "client got {}, none under {foreign}; x-tenantgate-dropped-results: {dropped}",
            client.len()
        ));
    }
}

#[allow(clippy::too_many_arguments)]
fn agent_session(
    client_session: &str,
    set: &[(&str, &str)],
    kept: &[(&str, &str)],
    s: &Scenario,
    sent: &Value,
    rec: &SimRecord,
    resp: &Response,
    out: &mut Outcome,
) {
    let attrs = sent.pointer("/sessionState/sessionAttributes");
    let client: Value = serde_json::from_str(&s.body).unwrap_or(Value::Null);
    let client_attrs = client.pointer("/sessionState/sessionAttributes");
    let missing: Vec<String> = set
        .iter()
        .chain(kept)
        .filter(|(k, v)| attrs.and_then(|a| a.get(*k)).and_then(Value::as_str) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if missing.is_empty() {
        let shown: Vec<String> = set
            .iter()
            .map(
                |(k, v)| match client_attrs.and_then(|a| a.get(*k)).and_then(Value::as_str) {
                    Some(forged) if forged != *v => format!("{k}={v} (client sent {forged})"),
                    _ => format!("{k}={v}"),
                },
            )
            .collect();
        out.details.push(format!(
            "sessionAttributes AWS received: {}; {} kept",
            shown.join(", "),
            pairs_text(kept)
        ));
    } else {
        out.problems.push(format!(
            "sessionAttributes AWS received lack {}: {}",
            missing.join(", "),
            attrs.unwrap_or(&Value::Null)
        ));
    }
    let upstream_id = rec
        .path
        .split('/')
        .nth(6)
        .map(|id| {
            percent_encoding::percent_decode_str(id)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    let echoed = header(&resp.headers, "x-amz-bedrock-agent-session-id");
    if upstream_id == client_session || !tenantgate_sim::valid_session_id(&upstream_id) {
        out.problems.push(format!(
            "AWS got session id {upstream_id:?}: not namespaced or not valid for Bedrock"
        ));
    } else if echoed != Some(client_session) {
        out.problems.push(format!(
            "client got x-amz-bedrock-agent-session-id {echoed:?}, not its own {client_session}"
        ));
    } else {
        out.details.push(format!(
            "session id {client_session} -> {}... at AWS (per tenant and user); \
             the client got back its own: {client_session}",
            upstream_id.get(..15).unwrap_or(&upstream_id)
        ));
    }
    match agent_text(&resp.body) {
        Ok(t) if set.iter().all(|(k, v)| t.contains(&format!("{k}={v}"))) => {
            out.details.push(format!(
                "the agent's answer confirms what its action groups see: {}",
                pairs_text(set)
            ))
        }
        Ok(t) => out
            .problems
            .push(format!("the agent saw other attributes: {t}")),
        Err(e) => out
            .problems
            .push(format!("cannot read the agent's chunks: {e}")),
    }
}

fn endpoint(
    name: &str,
    target_model: Option<&str>,
    s: &Scenario,
    rec: &SimRecord,
    resp: &Response,
    out: &mut Outcome,
) {
    let got_model = header(&rec.headers, tenantgate_sim::TARGET_MODEL);
    if rec.resource.as_deref() != Some(name) {
        return out.problems.push(format!(
            "AWS got endpoint {:?}, expected {name}",
            rec.resource
        ));
    }
    if got_model != target_model {
        return out.problems.push(format!(
            "AWS got X-Amzn-SageMaker-Target-Model {got_model:?}, expected {target_model:?}"
        ));
    }
    if resp.body != s.body.as_bytes() {
        return out
            .problems
            .push("the model's echo of the body differs from what the client sent".into());
    }
    out.details.push(format!(
        "endpoint {} -> {name} (sagemaker.endpoints)",
        s.resource
    ));
    out.details.push(match target_model {
        Some(m) => format!("X-Amzn-SageMaker-Target-Model: {m} injected (the tenant's model on the shared endpoint)"),
        None => "no target model injected: a single-model endpoint of the tenant's own".into(),
    });
}

/// The payloads of the well-formed event-stream messages of a complete body.
pub fn decode_events(body: &Bytes) -> Result<Vec<Bytes>, String> {
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

/// InvokeAgent's answer: the base64 `bytes` of every chunk event, joined.
fn agent_text(body: &Bytes) -> Result<String, String> {
    let mut text = Vec::new();
    for payload in decode_events(body)? {
        let v: Value = serde_json::from_slice(&payload).map_err(|e| e.to_string())?;
        if let Some(b64) = v.get("bytes").and_then(Value::as_str) {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("chunk bytes: {e}"))?;
            text.extend_from_slice(&raw);
        }
    }
    String::from_utf8(text).map_err(|e| e.to_string())
}
