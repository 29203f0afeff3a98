//! Phase "policies on": the static sidecar with the ten fleet-wide Cedar
//! rules of `bench/policies.cedar` as global policies (two claims, groups
//! from the token), so every request is also decided by Cedar: a `permit`
//! (its user is in `eng`) and no `forbid`. Before timing, one request from
//! a user outside `eng` must be refused with `policy_denied`, which proves
//! the policies are evaluated. The report section compares the phase with
//! the `tenantgate (static)` phase (policies off), same run.

use super::loadgen::Target;
use super::phases::Subject;
use super::procs::{self, Creds, Sidecar, TempDir, Tenants};
use super::report::Measured;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub const NAME: &str = "tenantgate (policies on)";
/// The same with `policy.decision_cache = 0`: Cedar runs for every request.
pub const UNCACHED_NAME: &str = "tenantgate (policies on, no decision cache)";

/// The ten rules, shared with benches/policy.rs.
const RULES: &str = include_str!("../../bench/policies.cedar");

pub struct WithPolicies {
    pub sidecar: Sidecar,
    pub uncached: Sidecar,
    _dirs: [TempDir; 2],
}

impl WithPolicies {
    pub fn start(
        bin: &Path,
        proxy_core: Option<usize>,
        upstream: SocketAddr,
        public_pem: &str,
        creds: &Creds<'_>,
    ) -> Result<WithPolicies, String> {
        let dirs = [TempDir::new("policies")?, TempDir::new("policies-uncached")?];
        let table = |cache: &str| {
            format!(
                "[policy]\nclaims = [\"custom:plan\", \"level\"]\nclaim_types = {{ level = \"Long\" }}\n{cache}inline = '''\n{RULES}'''\n"
            )
        };
        let start = |dir: &TempDir, table: &str| {
            procs::start_sidecar_with_limits(
                bin,
                &dir.0,
                proxy_core,
                upstream,
                public_pem,
                creds,
                Tenants::Acme,
                procs::NO_THROTTLING,
                table,
            )
        };
        let sidecar = start(&dirs[0], &table(""))?;
        let uncached = start(&dirs[1], &table("decision_cache = 0\n"))?;
        Ok(WithPolicies { sidecar, uncached, _dirs: dirs })
    }

    pub fn subjects(&self, make: impl Fn(&'static str, SocketAddr) -> Result<Target, String>) -> Result<Vec<Subject>, String> {
        Ok(vec![
            Subject { target: make(NAME, self.sidecar.addr)?, cpu_pid: Some(self.sidecar.proc.pid()) },
            Subject { target: make(UNCACHED_NAME, self.uncached.addr)?, cpu_pid: Some(self.uncached.proc.pid()) },
        ])
    }

    /// One Converse as a user outside `eng` (`outsider_token`) to each
    /// sidecar: it must be refused with 403 and reason `policy_denied`.
    pub fn check_denies(&self, target: &Target, outsider_token: &str) -> Result<(), String> {
        check_denies(self.sidecar.addr, target, outsider_token)?;
        check_denies(self.uncached.addr, target, outsider_token)
    }
}

fn check_denies(addr: SocketAddr, target: &Target, outsider_token: &str) -> Result<(), String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("{NAME}: connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\nx-tenant-token: {outsider_token}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        target.path,
        addr,
        target.body.len()
    );
    s.write_all(head.as_bytes()).and_then(|()| s.write_all(&target.body)).map_err(|e| e.to_string())?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let status_ok = answer.starts_with("HTTP/1.1 403");
    let reason_ok = answer
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("x-tenantgate-reason:") && l.contains("policy_denied"));
    if status_ok && reason_ok {
        eprintln!("bench: sidecar at {addr}: policy check: a user outside `eng` is refused (403 policy_denied)");
        Ok(())
    } else {
        Err(format!(
            "{NAME}: policy check failed: expected 403 policy_denied, got: {}",
            answer.lines().next().unwrap_or("(no answer)")
        ))
    }
}

/// Markdown: what the policies add per request over `baseline` (the static
/// sidecar, policies off).
pub fn report(all: &[Measured], baseline: &str) -> String {
    let mut o = String::new();
    let Some(base) = all.iter().find(|m| m.name == baseline) else {
        return o;
    };
    let _ = writeln!(
        o,
        "\n## Policies: added cost per request over `{baseline}`\n\n\
         Same sidecar and load with the ten rules of `bench/policies.cedar` as global Cedar policies \
         (every request: a permit and no forbid; for Converse, four of the ten can match and are \
         evaluated). `policies on`: the decision cache on (its default); the 64 users repeat one \
         request, so after the first of each Cedar is not run again. `no decision cache`: Cedar runs \
         for every request (the cost of requests unlike any before them).\n\n\
         | phase | p50 (µs) | p99 (µs) | added p50 (µs) | added p99 (µs) | sidecar CPU µs/req | added CPU µs/req | req/s (closed loop) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let (b50, b99) = (base.open.pct_us(50.0), base.open.pct_us(99.0));
    let bcpu = base.cpu_per_req_us();
    for x in all.iter().filter(|m| m.name == baseline || m.name == NAME || m.name == UNCACHED_NAME) {
        let (p50, p99) = (x.open.pct_us(50.0), x.open.pct_us(99.0));
        let cpu = x.cpu_per_req_us();
        let fmt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into());
        let rps = x.closed.requests as f64 / x.closed.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.0} | {:+.0} | {:+.0} | {} | {} | {:.0} |",
            x.name,
            p50,
            p99,
            p50 - b50,
            p99 - b99,
            fmt(cpu),
            fmt(cpu.zip(bcpu).map(|(c, b)| c - b)),
            rps,
        );
    }
    o
}
