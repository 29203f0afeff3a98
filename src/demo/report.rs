//! The demo's printed report: a header on who is who, one table row per
//! scenario with indented lines on what AWS received, and a summary backed by
//! the simulator's records and STS sessions.

use super::runner::Row;
use super::setup::{key_prefix, ACCOUNT, TENANTS};
use super::sim::StsSession;
use crate::audit::AuditRecord;
use std::fmt::Write as _;

pub fn header(proxy: &str, admin: &str, sim: &str, base_key: &str) -> String {
    format!(
        "tenantgate demo: sidecar on http://{proxy} (admin http://{admin}),\n\
         simulated AWS (STS, Bedrock, Bedrock agents, SageMaker) on {sim}.\n\
         No AWS account, no network. The sidecar's own key {} only calls STS AssumeRole;\n\
         each tenant's requests are signed with that tenant's own STS session\n\
         (role tenant-{{tenant}}, session tag TenantID={{tenant}}).\n\
         \x20 acme   (pooled): anthropic.claude-3-haiku-*, amazon.titan-embed-text-v2:0; shared KB KBPOOLED01;\n\
         \x20                  agent SUPPORT001/*; classifier -> shared-classifier with model acme.tar.gz\n\
         \x20 globex (silo):   amazon.nova-lite-v1:0, meta.llama3-*; own KB KBGLOBEX01;\n\
         \x20                  classifier -> globex-classifier\n\
         \x20 hooli  (trial):  amazon.nova-lite-v1:0 at 1 request/s, burst 2\n\n",
        key_prefix(base_key)
    )
}

pub fn table(rows: &[Row]) -> String {
    let head = [
        "#",
        "operation",
        "caller",
        "model / resource",
        "decision",
        "status",
        "reason",
    ];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            [
                (i + 1).to_string(),
                r.scenario.operation.to_string(),
                r.scenario.caller.label(),
                r.scenario.resource.to_string(),
                if (200..300).contains(&r.status) {
                    "allow"
                } else {
                    "deny"
                }
                .to_string(),
                if r.status == 0 {
                    "-".into()
                } else {
                    r.status.to_string()
                },
                r.reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, s) in width.iter_mut().zip(c) {
            *w = (*w).max(s.chars().count());
        }
    }
    let line = |cols: [&str; 7]| {
        let mut s = String::new();
        for (i, (c, w)) in cols.iter().zip(width).enumerate() {
            let _ = write!(s, "{}{c:<w$}", if i == 0 { " " } else { "  " });
        }
        s.trim_end().to_string()
    };
    let mut out = String::new();
    out.push_str(&line(head));
    out.push('\n');
    out.push_str(&line(
        width.map(|w| "-".repeat(w)).each_ref().map(String::as_str),
    ));
    out.push('\n');
    for (c, r) in cells.iter().zip(rows) {
        out.push_str(&line(c.each_ref().map(String::as_str)));
        out.push('\n');
        for d in &r.details {
            let _ = writeln!(out, "      -> {d}");
        }
        for p in &r.problems {
            let _ = writeln!(out, "      !! UNEXPECTED: {p}");
        }
    }
    out
}

pub struct Summary {
    pub scenarios: usize,
    pub as_expected: usize,
    pub upstream_requests: usize,
    pub signatures_ok: u64,
    pub signatures_failed: u64,
    pub sts_signatures_ok: u64,
    pub sts_signatures_failed: u64,
    pub sts_sessions: Vec<SessionLine>,
    pub denied: usize,
    /// Denials made on AWS's answer, which was withheld from the client.
    pub withheld: usize,
    pub denied_reaching_upstream: usize,
}

/// One STS session as printed: never its secret or token.
pub struct SessionLine {
    pub tenant: String,
    pub key: String,
    pub role: String,
    pub session_name: String,
}

pub fn session_lines(sessions: &[StsSession]) -> Vec<SessionLine> {
    let mut lines: Vec<SessionLine> = sessions
        .iter()
        .map(|s| SessionLine {
            tenant: s.tag("TenantID").unwrap_or("(none)").to_string(),
            key: key_prefix(&s.access_key_id),
            role: s.role_name().to_string(),
            session_name: s.session_name.clone(),
        })
        .collect();
    lines.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    lines
}

/// Each configured tenant got exactly one session (cached, not one per
/// request), for its own role, asked for with the base key.
pub fn sts_problems(sessions: &[StsSession], base_key: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for t in TENANTS {
        let n = sessions
            .iter()
            .filter(|s| s.tag("TenantID") == Some(t))
            .count();
        if n != 1 {
            problems.push(format!("{n} STS sessions tagged TenantID={t}, expected 1"));
        }
    }
    for s in sessions {
        let tenant = s.tag("TenantID").unwrap_or("");
        if s.role_arn != format!("arn:aws:iam::{ACCOUNT}:role/tenant-{tenant}") {
            problems.push(format!(
                "STS session TenantID={tenant} is for role {}",
                s.role_arn
            ));
        }
        if s.caller != base_key {
            problems.push(format!(
                "STS session TenantID={tenant} was asked for by {}, not the base key",
                key_prefix(&s.caller)
            ));
        }
    }
    problems
}

pub fn summary(s: &Summary, base_key: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}/{} scenarios behaved as expected.",
        s.as_expected, s.scenarios
    );
    let _ = writeln!(
        out,
        "STS: the sidecar's base key {} made {} AssumeRole call(s), {} signature(s) verified, \
         {} failed; one cached session per tenant:",
        key_prefix(base_key),
        s.sts_signatures_ok + s.sts_signatures_failed,
        s.sts_signatures_ok,
        s.sts_signatures_failed
    );
    let width = |f: fn(&SessionLine) -> usize| s.sts_sessions.iter().map(f).max().unwrap_or(0);
    let (wt, wr, ws) = (
        width(|l| l.tenant.len()),
        width(|l| l.role.len()),
        width(|l| l.session_name.len()),
    );
    for l in &s.sts_sessions {
        let _ = writeln!(
            out,
            "  {:<wt$}  {}  role {:<wr$}  session {:<ws$}  tag TenantID={}",
            l.tenant, l.key, l.role, l.session_name, l.tenant
        );
    }
    let _ = writeln!(
        out,
        "AWS (the simulator) received {} service request(s) and verified {} SigV4 signature(s), \
         {} failed{}",
        s.upstream_requests,
        s.signatures_ok,
        s.signatures_failed,
        if s.as_expected == s.scenarios {
            "; each was signed with the calling tenant's own STS session and session token, \
             never with the base key."
        } else {
            "."
        }
    );
    let _ = writeln!(
        out,
        "{} denied request(s): {} reached AWS.",
        s.denied,
        if s.denied_reaching_upstream == 0 {
            "none".to_string()
        } else {
            s.denied_reaching_upstream.to_string()
        }
    );
    if s.withheld > 0 {
        let _ = writeln!(
            out,
            "{} more denied on AWS's answer (only the answer says where a job lives): AWS was asked once, the client got none of the answer.",
            s.withheld
        );
    }
    out
}

/// The audit records, one JSON line each, as `tenantgate run` writes them.
pub fn audit_lines(records: &[AuditRecord]) -> String {
    let mut out = String::new();
    for r in records {
        if let Ok(line) = serde_json::to_string(r) {
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}
