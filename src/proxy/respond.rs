//! The `response` stage: upstream's answer passed back to the client,
//! through the post-filters (knowledge-base chunks, answer checks), the
//! response header rules and redaction, streams frame by frame.

use super::*;
use crate::aws::headers as aws_headers;
use crate::family::knowledge_bases::DROPPED_RESULTS_HEADER;

impl Proxy {
    pub(super) async fn respond(
        &self,
        snap: &Snapshot,
        fwd: Forwarded,
        rec: &mut AuditRecord,
        started: Instant,
        request_id: &str,
        conn: Option<&Arc<ClientConn>>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let cfg = &snap.config;
        let (mut parts, body) = fwd.response.into_parts();
        rec.decision = Decision::Allow;
        rec.status = parts.status.as_u16();
        rec.upstream_status = Some(parts.status.as_u16());
        if parts.status.is_client_error() || parts.status.is_server_error() {
            rec.reason = Some("upstream_status");
        }
        let header_u64 = |h: &HeaderMap, n: HeaderName| {
            h.get(n).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok())
        };
        rec.input_tokens = header_u64(&parts.headers, aws_headers::INPUT_TOKEN_COUNT);
        rec.output_tokens = header_u64(&parts.headers, aws_headers::OUTPUT_TOKEN_COUNT);

        let listed = connection_listed(&parts.headers);
        let strip = &cfg.redaction.strip_response_headers;
        let names: Vec<HeaderName> = parts.headers.keys().cloned().collect();
        for name in names {
            let n = name.as_str();
            if is_hop_by_hop(n) || listed.iter().any(|l| l == n) || strip.iter().any(|m| m.matches(n)) {
                parts.headers.remove(&name);
            }
        }
        // Every header upstream sent that reaches the app is redacted like a
        // body (SageMaker custom attributes, the invoked variant, error
        // messages); a value that would not be a valid header once redacted
        // is dropped. The sidecar's own headers, set below, carry no
        // identity ids.
        let header_redactions = snap.redactor.as_deref().map_or(0, |r| redact_headers(r, &mut parts.headers));
        rec.redactions = header_redactions;
        if let Ok(v) = HeaderValue::from_str(request_id) {
            parts.headers.insert("x-tenantgate-request-id", v);
        }
        // The family's header rules (session ids given back as the
        // client's own, or sealed for this tenant and user).
        let ctx = Ctx::new(fwd.op, &fwd.principal, &fwd.policy, &self.session_keys);
        family::response_headers(&ctx, &fwd.post, &mut parts.headers);
        let shape = family::response_shape(fwd.op);

        let is_event_stream = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/vnd.amazon.eventstream"));
        // ChatCompletions streams: server-sent events, redacted event by
        // event as they arrive like an event stream (`filter::eventstream`).
        let is_sse = shape.stream == crate::filter::eventstream::StreamShape::ChatCompletions
            && parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.trim_start().to_ascii_lowercase().starts_with("text/event-stream"));
        let streamed = is_event_stream || is_sse;
        let redactor = snap.redactor.clone();
        let buffer_to_redact = redactor.is_some() && !streamed;

        // An answer in a content coding is decoded before anything judges,
        // redacts or counts it, or refused (security model: encodings).
        let encodings: Vec<&str> =
            parts.headers.get_all(header::CONTENT_ENCODING).iter().filter_map(|v| v.to_str().ok()).collect();
        let coding = if parts.headers.get_all(header::CONTENT_ENCODING).iter().count() != encodings.len() {
            None
        } else {
            crate::filter::encoding::coding_of(&encodings)
        };
        let coding = match coding {
            Some(crate::filter::encoding::Coding::Identity) => None,
            Some(c) if !streamed => Some(c),
            _ => {
                return Err(ProxyError::UpstreamError(format!(
                    "upstream answer in content coding {:?} cannot be inspected",
                    encodings.join(",")
                )))
            }
        };

        if (fwd.post.buffers() && parts.status.is_success()) || buffer_to_redact || coding.is_some() {
            // The whole answer is needed before deciding what the client may
            // see: nothing is sent until it is judged.
            // (Or: a non-stream body to redact, which needs the whole JSON.)
            let limits = cfg.server.buffer_limits();
            let mut mem = self.budget.reservation(&fwd.principal.tenant);
            let raw = post::collect(body, cfg.aws.stream_idle_timeout, post::MAX_FILTERED_RESPONSE, &mut mem, &limits).await?;
            let raw = match coding {
                Some(c) => {
                    // The decoded copy is charged with the tree (below) on top of the compressed bytes.
                    let plain = crate::filter::encoding::decode(c, &raw, post::MAX_FILTERED_RESPONSE)?;
                    parts.headers.remove(header::CONTENT_ENCODING);
                    Bytes::from(plain)
                }
                None => raw,
            };
            post::charge(&fwd.post, &raw, &mut mem, &limits)?;
            let mut tap = crate::usage::UsageTap::new(shape.usage, parts.status.is_success());
            tap.observe(&raw);
            let usage = tap.finish();
            if usage.input.is_some() || usage.output.is_some() {
                rec.input_tokens = usage.input;
                rec.output_tokens = usage.output;
            }
            if usage.text_units.is_some() {
                rec.guardrail_text_units = usage.text_units;
            }
            fwd.permit.charge_tokens(rec.input_tokens.unwrap_or(0) + rec.output_tokens.unwrap_or(0));
            let (out, dropped) = if parts.status.is_success() {
                match &fwd.post {
                    // ListSessions names no owners: each listed session is
                    // looked up first (`session_owners`).
                    Post::Session { op: Operation::ListSessions, .. } => {
                        let ids = family::sessions::listed_session_ids(&raw)?;
                        // The look-ups' answers are held at once: charged first.
                        mem.grow(ids.len() as u64 * session_owners::MAX_LOOKUP_ANSWER as u64, &limits)?;
                        let owned = self.owned_sessions(snap, &fwd.principal, &fwd.policy, ids).await?;
                        family::sessions::filter_session_list(&raw, &owned, &fwd.principal, &self.session_keys)?
                    }
                    _ => post::apply(&fwd.post, raw, &fwd.principal, &self.session_keys)?,
                }
            } else {
                (raw, 0)
            };
            let out = match &redactor {
                Some(r) if is_event_stream => {
                    // A judged event stream (RetrieveAndGenerateStream,
                    // AgenticRetrieveStream):
                    // frame by frame like any stream, just all at once.
                    let mut s = StreamRedactor::new(shape.stream, r.clone());
                    let red = s.push(&out).and_then(|a| Ok((a, s.finish()?)));
                    rec.redactions = header_redactions + s.redactions();
                    match red {
                        Ok((a, b)) => [a, b].concat().into(),
                        Err(e) => {
                            tracing::warn!("upstream event stream cannot be redacted: {e}");
                            return Err(ProxyError::UpstreamError(format!("malformed event stream from upstream: {e}")));
                        }
                    }
                }
                Some(r) => {
                    let ct = parts.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
                    let (red, n) = r.redact_body(&out, ct);
                    rec.redactions = header_redactions + n;
                    red
                }
                None => out,
            };
            rec.dropped_results = dropped;
            if fwd.post.counts_dropped() {
                parts.headers.insert(DROPPED_RESULTS_HEADER, HeaderValue::from(dropped));
            }
            parts.headers.insert(header::CONTENT_LENGTH, HeaderValue::from(out.len()));
            AuditGuard::new(self.audit.clone(), std::mem::take(rec), started).finish();
            drop(fwd.permit);
            return Ok(Response::from_parts(parts, crate::body::full(out)));
        }

        let tap = crate::usage::UsageTap::new(shape.usage, parts.status.is_success());
        let guard = AuditGuard::new(self.audit.clone(), std::mem::take(rec), started);
        // Event streams are redacted frame by frame as they arrive
        // (`filter::eventstream`); their length may change.
        // InvokeAgent answers are checked event by event for knowledge-base
        // sources outside the tenant's prefixes (a foreign one ends the
        // stream); only successful streams carry answers.
        let sources = match &fwd.post {
            Post::Agent { prefixes, .. } if parts.status.is_success() => Some(SourceFilter::new(prefixes)),
            _ => None,
        };
        let stream_redactor = if streamed {
            StreamRedactor::for_response(shape.stream, redactor.clone(), sources)
        } else {
            None
        };
        if stream_redactor.is_some() {
            parts.headers.remove(header::CONTENT_LENGTH);
        }
        if let Some(c) = conn {
            c.streaming(cfg.aws.stream_idle_timeout);
        }
        let body = UpstreamBody::new(body, cfg.aws.stream_idle_timeout, guard, tap)
            .with_permit(fwd.permit)
            .with_redactor(stream_redactor)
            .with_client(conn.cloned());
        Ok(Response::from_parts(parts, body.boxed_unsync()))
    }
}

/// Redacts every header value in place; returns the number of matches. A
/// value that is no longer a valid header value after redaction (only if
/// the replacement itself is not) is removed.
pub(super) fn redact_headers(r: &crate::filter::redact::Redactor, headers: &mut HeaderMap) -> u64 {
    let mut total = 0;
    let mut invalid: Vec<HeaderName> = Vec::new();
    for (name, value) in headers.iter_mut() {
        let (red, n) = r.redact_bytes(value.as_bytes());
        if n == 0 {
            continue;
        }
        total += n;
        match HeaderValue::from_bytes(&red) {
            Ok(v) => *value = v,
            Err(_) => invalid.push(name.clone()),
        }
    }
    for name in invalid {
        headers.remove(&name);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_headers_are_redacted_and_counted() {
        let cfg = crate::config::RedactionConfig {
            patterns: vec!["id-[0-9]+".into()],
            combined: Some(regex::Regex::new("(?:id-[0-9]+)").unwrap()),
            replacement: "[redacted]".into(),
            strip_response_headers: vec![],
        };
        let r = crate::filter::redact::Redactor::new(&cfg).unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-amzn-errormessage", HeaderValue::from_static("user id-1 and id-22"));
        h.append("x-multi", HeaderValue::from_static("id-3"));
        h.append("x-multi", HeaderValue::from_static("clean"));
        h.insert("x-plain", HeaderValue::from_static("nothing here"));
        assert_eq!(redact_headers(&r, &mut h), 3);
        assert_eq!(h["x-amzn-errormessage"], "user [redacted] and [redacted]");
        let multi: Vec<_> = h.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["[redacted]", "clean"]);
        assert_eq!(h["x-plain"], "nothing here");
    }
}
