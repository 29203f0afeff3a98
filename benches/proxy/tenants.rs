//! Memory with many cached tenants: a sidecar with `assume_role` and
//! `tenant_defaults.allow_unlisted = true` gets one Converse request from each
//! of N distinct tenants (one RS256 token per tenant, minted by `prepare` in
//! benches/proxy.rs before the run pins itself), so it ends up
//! holding N STS sessions. VmRSS / VmHWM are read at start, after the first
//! `warm` tenants (one-time costs: connections, STS client, buffers) and at
//! the end; the per-tenant increment is taken between the last two.
//!
//! What grows per tenant besides the STS session (key + credentials): the
//! verified-token cache entry (bounded; `token_cache_entries` is what it
//! holds at the end, from `/metrics`), the
//! rate-limit table entry, and the metrics' tenant label (first 1,000
//! tenants only).
//!
//! STS is the simulator's (also the upstream): the phase counts the calls,
//! refusals and sessions it sees from the phase's start, and which tenants
//! (`TenantID` session tag) were assumed more than once.

use super::loadgen::{self, Target};
use super::procs::{self, Creds, Sidecar, Tenants};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tenantgate_sim::sim::Sim;

pub struct MemoryResult {
    pub tenants: usize,
    pub warm: usize,
    pub conns: usize,
    /// (VmRSS, VmHWM) in kB: at start (ready, idle), after `warm` tenants, after all.
    pub start: (Option<u64>, Option<u64>),
    pub after_warm: (Option<u64>, Option<u64>),
    pub end: (Option<u64>, Option<u64>),
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub sts_calls: u64,
    pub sts_bad: u64,
    pub sts_first_bad: Option<String>,
    pub sts_tenants: usize,
    pub sts_repeated: usize,
    /// From the sidecar's `/metrics`.
    pub cached_metric: Option<f64>,
    pub sts_ok_metric: Option<f64>,
    pub non_2xx_metric: Option<f64>,
    /// `tenantgate_verified_tokens_cached` at the end: tokens the bounded
    /// verified-token cache still holds.
    pub token_cache_entries: Option<f64>,
    pub mint_secs: f64,
    pub send_secs: f64,
    pub alive: bool,
}

impl MemoryResult {
    /// VmRSS bytes per tenant between the `warm` checkpoint and the end.
    pub fn per_tenant_bytes(&self) -> Option<f64> {
        let (a, b) = (self.after_warm.0?, self.end.0?);
        let n = self.tenants.checked_sub(self.warm).filter(|&n| n > 0)?;
        Some((b as f64 - a as f64) * 1024.0 / n as f64)
    }

    /// Every tenant answered 2xx, STS was asked exactly once per tenant, and
    /// the sidecar reports that many cached sessions.
    pub fn verified(&self) -> bool {
        let n = self.tenants as u64;
        self.ok == n
            && self.errors == 0
            && self.sts_calls == n
            && self.sts_bad == 0
            && self.sts_repeated == 0
            && self.cached_metric == Some(n as f64)
    }

    /// VmRSS bytes per tenant from start to end (includes one-time costs).
    pub fn per_tenant_all_bytes(&self) -> Option<f64> {
        let (a, b) = (self.start.0?, self.end.0?);
        Some((b as f64 - a as f64) * 1024.0 / self.tenants.max(1) as f64)
    }
}

pub fn tenant_id(i: usize) -> String {
    format!("tenant-{i:05}")
}

fn mem(pid: u32) -> (Option<u64>, Option<u64>) {
    (
        procs::status_kb(pid, "VmRSS:"),
        procs::status_kb(pid, "VmHWM:"),
    )
}

/// Lets the sidecar finish background work (audit writes, STS bookkeeping)
/// before memory is read.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    bin: &Path,
    dir: &Path,
    core: Option<usize>,
    sim: &Sim,
    public_pem: &str,
    tokens: Vec<String>,
    mint_secs: f64,
    base: (&str, &str),
    template: &Target,
    conns: usize,
) -> Result<MemoryResult, String> {
    let tenants = tokens.len();
    let warm = (tenants / 20).clamp(1, 500).min(tenants);

    // No other sidecar is running: every STS call from here on is this one's.
    let sts_count = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    let (calls0, refused0) = (
        sts_count(&sim.stats.sts_requests),
        sts_count(&sim.stats.sts_refused),
    );
    let sessions0 = sim.sts_sessions().len();
    let Sidecar {
        mut proc,
        addr,
        admin,
    } = procs::start_sidecar(
        bin,
        dir,
        core,
        sim.addr,
        public_pem,
        &Creds::AssumeRole {
            sts: sim.addr,
            akid: base.0,
            secret: base.1,
        },
        Tenants::Unlisted,
    )?;
    let pid = proc.pid();
    let hv = |s: &str| http::HeaderValue::from_str(s).map_err(|e| e.to_string());
    let target = Target {
        name: "tenantgate (assume_role, allow_unlisted)",
        addr,
        headers: vec![
            (http::header::HOST, hv(&addr.to_string())?),
            (http::header::CONTENT_TYPE, hv("application/json")?),
        ],
        rotating: tokens
            .iter()
            .map(|t| Ok((http::HeaderName::from_static("x-tenant-token"), hv(t)?)))
            .collect::<Result<_, String>>()?,
        ..template.clone()
    };
    settle().await;
    let start = mem(pid);
    eprintln!(
        "bench: memory: {tenants} tenants, one request each, {conns} connections \
         (first {warm} as warm-up checkpoint)"
    );
    let t1 = Instant::now();
    let a = loadgen::each_once(&target, 0..warm, conns).await;
    settle().await;
    let after_warm = mem(pid);
    let b = loadgen::each_once(&target, warm..tenants, conns).await;
    let send_secs = t1.elapsed().as_secs_f64();
    settle().await;
    let end = mem(pid);
    let metrics = procs::scrape(admin).ok();
    let m = |name: &str, labels: &[&str]| {
        metrics
            .as_deref()
            .and_then(|t| procs::metric_sum(t, name, labels))
    };
    let non_2xx = metrics.as_deref().map(|t| {
        t.lines()
            .filter(|l| {
                l.starts_with("tenantgate_requests_total{") && !l.contains("status=\"200\"")
            })
            .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
            .sum::<f64>()
            + 0.0 // an empty sum is -0.0
    });
    let alive = matches!(proc.child.try_wait(), Ok(None));
    let sts_bad = sts_count(&sim.stats.sts_refused) - refused0;
    let mut per_tenant: HashMap<String, u64> = HashMap::new();
    for s in sim.sts_sessions().iter().skip(sessions0) {
        *per_tenant
            .entry(s.tag("TenantID").unwrap_or("").to_string())
            .or_default() += 1;
    }
    let out = MemoryResult {
        tenants,
        warm,
        conns,
        start,
        after_warm,
        end,
        ok: a.requests + b.requests,
        errors: a.errors + b.errors,
        first_error: a.first_error.or(b.first_error),
        sts_calls: sts_count(&sim.stats.sts_requests) - calls0,
        sts_bad,
        // The simulator keeps the run's first refusal: this phase's unless
        // an earlier phase had one (which the run's notes report too).
        sts_first_bad: (sts_bad > 0)
            .then(|| sim.stats.sts_first_refusal())
            .flatten(),
        sts_tenants: per_tenant.len(),
        sts_repeated: per_tenant.values().filter(|&&n| n > 1).count(),
        cached_metric: m("tenantgate_credentials_cached", &[]),
        sts_ok_metric: m("tenantgate_sts_requests_total", &["result=\"ok\""]),
        non_2xx_metric: non_2xx,
        token_cache_entries: m("tenantgate_verified_tokens_cached", &[]),
        mint_secs,
        send_secs,
        alive,
    };
    drop(proc);
    Ok(out)
}
