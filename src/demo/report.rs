//! The demo's printed report: one table row per scenario, indented lines with
//! what AWS received, and a summary backed by the simulator's records.

use super::runner::Row;
use crate::audit::AuditRecord;
use std::fmt::Write as _;

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
    pub denied: usize,
    pub denied_reaching_upstream: usize,
}

pub fn summary(s: &Summary) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}/{} scenarios behaved as expected.",
        s.as_expected, s.scenarios
    );
    let _ = writeln!(
        out,
        "AWS (the simulator) received {} request(s) and verified {} SigV4 signature(s), {} failed; \
         each allowed request was signed with the calling tenant's own key.",
        s.upstream_requests, s.signatures_ok, s.signatures_failed
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
