//! Sends each scenario through the sidecar over HTTP, then judges it against
//! what the simulator recorded: allowed requests must reach AWS exactly once,
//! signed with the calling tenant's own STS session, carrying the rewrites
//! (`checks.rs`); denied ones must never reach it.

use super::checks::{self, Response};
use super::scenarios::Scenario;
use super::setup::{key_prefix, DemoEnv, ACCOUNT};
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

pub struct Runner<'a> {
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub proxy: SocketAddr,
    pub sim: &'a Sim,
    pub env: &'a DemoEnv,
}

impl Runner<'_> {
    async fn send(&self, s: &Scenario) -> Result<Response, String> {
        let mut req = http::Request::builder()
            .method(s.method.clone())
            .uri(format!("http://{}{}", self.proxy, s.path));
        if !s
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req
                .header("content-type", "application/json")
                .header("accept", "application/json");
        }
        for (k, v) in &s.headers {
            req = req.header(*k, *v);
        }
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
        if s.status >= 400 && s.withheld {
            // Refused on AWS's answer: asked once, signed as the tenant,
            // and nothing of the answer reached the client.
            let [rec] = &new[..] else {
                row.problems.push(format!("expected exactly one upstream request, AWS saw {}", new.len()));
                return row;
            };
            let out = self.judge(&row.scenario, rec, &resp);
            row.details = out.details;
            row.problems.extend(out.problems);
            row.details.push(format!(
                "AWS answered {}; the sidecar withheld the answer ({})",
                rec.status, row.scenario.note
            ));
            return row;
        }
        if s.status >= 400 {
            if !new.is_empty() {
                row.problems
                    .push(format!("denied request reached AWS {} time(s)", new.len()));
            }
            row.details.push(format!("never reached AWS ({})", s.note));
            let mut out = checks::Outcome::default();
            for c in &s.checks {
                checks::judge(c, s, None, &resp, &mut out);
            }
            row.details.extend(out.details);
            row.problems.extend(out.problems);
            return row;
        }
        let [rec] = &new[..] else {
            row.problems.push(format!(
                "expected exactly one upstream request, AWS saw {}",
                new.len()
            ));
            return row;
        };
        let out = self.judge(&row.scenario, rec, &resp);
        row.details = out.details;
        row.problems.extend(out.problems);
        row
    }

    /// Who signed an allowed request, then every check of the scenario.
    fn judge(&self, s: &Scenario, rec: &SimRecord, resp: &Response) -> checks::Outcome {
        let mut out = checks::Outcome::default();
        let tenant = s.caller.tenant().unwrap_or("?");
        let akid = rec.access_key.clone().unwrap_or_default();
        let role = format!("arn:aws:iam::{ACCOUNT}:role/tenant-{tenant}");
        match (rec.signature_ok, self.sim.sts_session(&akid)) {
            (Some(true), Some(sess))
                if sess.tag("TenantID") == Some(tenant) && sess.role_arn == role =>
            {
                out.details.push(format!(
                    "signed with {} = STS session {} (role {}, TenantID={tenant}) + its session token; \
                     SigV4 verified by the simulator",
                    key_prefix(&akid),
                    sess.session_name,
                    sess.role_name()
                ))
            }
            (Some(true), Some(sess)) => out.problems.push(format!(
                "signed with the STS session of role {} TenantID={:?}, not {tenant}'s",
                sess.role_name(),
                sess.tag("TenantID")
            )),
            (Some(true), None) if akid == self.env.base.access_key_id => out
                .problems
                .push("signed with the sidecar's base key, not a tenant session".into()),
            (Some(true), None) => out
                .problems
                .push(format!("signed with {}, a key STS never issued", key_prefix(&akid))),
            _ => out.problems.push(format!(
                "AWS rejected the signature (key {}): answered {}",
                key_prefix(&akid),
                rec.status
            )),
        }
        for c in &s.checks {
            checks::judge(c, s, Some(rec), resp, &mut out);
        }
        if let Ok(v) = serde_json::from_slice::<Value>(&resp.body) {
            if let Some(u) = v.get("usage") {
                out.details.push(format!(
                    "usage: {} input + {} output tokens",
                    u["inputTokens"], u["outputTokens"]
                ));
            }
        }
        out
    }
}
