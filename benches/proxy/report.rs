//! The benchmark's markdown report.

use super::loadgen::{ClosedResult, OpenResult};
use super::tenants::MemoryResult;
use std::fmt::Write as _;

/// Everything measured for one target.
pub struct Measured {
    pub name: &'static str,
    pub open: OpenResult,
    pub closed: ClosedResult,
    /// CPU µs of the proxy process during the closed-loop window.
    pub closed_cpu_us: Option<u64>,
    /// CPU µs of the proxy process during the open loop.
    pub open_cpu_us: Option<u64>,
    pub peak_rss_kb: Option<u64>,
    /// CPU share (of one core) used by other processes during the phases.
    pub background: Option<f64>,
}

impl Measured {
    pub fn cpu_per_req_us(&self) -> Option<f64> {
        let cpu = self.closed_cpu_us? as f64;
        (self.closed.requests > 0).then(|| cpu / self.closed.requests as f64)
    }

    /// Share of one core the process used during the closed loop.
    pub fn utilisation(&self) -> Option<f64> {
        Some(self.closed_cpu_us? as f64 / 1e6 / self.closed.elapsed.as_secs_f64())
    }

    fn open_cpu_per_req_us(&self) -> Option<f64> {
        let n = self.open.latencies.len() as f64 + self.open.errors as f64;
        self.open_cpu_us.map(|c| c as f64 / n.max(1.0))
    }
}

pub struct Budget {
    pub target: &'static str,
    pub what: String,
    pub value: Option<f64>,
    pub unit: &'static str,
    pub limit: f64,
}

impl Budget {
    pub fn pass(&self) -> Option<bool> {
        self.value.map(|v| v <= self.limit)
    }
}

/// What a sidecar's own `/metrics` says at the end of the timed phases.
#[derive(Default)]
pub struct SidecarCounters {
    pub requests: Option<f64>,
    pub non_2xx: Option<f64>,
    pub throttled: Option<f64>,
    pub sts_ok: Option<f64>,
    pub sts_failed: Option<f64>,
    pub cached: Option<f64>,
}

/// The two sidecar variants side by side: [static, assume_role].
pub struct CredsCompare<'a> {
    pub direct: &'a Measured,
    pub variants: [&'a Measured; 2],
    pub counters: [SidecarCounters; 2],
    /// STS calls at the simulator's STS before timing (start-up pre-fetch + warm-up).
    pub sts_warm: u64,
    /// STS calls at the simulator's STS during the timed phases (and their warm-ups).
    pub sts_timed: u64,
}

fn mb(kb: Option<u64>) -> String {
    opt(kb.map(|k| k as f64 / 1024.0), 1)
}

fn count(v: Option<f64>) -> String {
    opt(v, 0)
}

fn render_compare(o: &mut String, rate: u32, c: &CredsCompare<'_>) {
    let _ = writeln!(
        o,
        "\n## Credentials source: static vs assume_role (warm STS session cache)\n\n\
         | | static | assume_role |\n|---|---:|---:|"
    );
    let row = |o: &mut String, what: &str, f: &dyn Fn(usize) -> String| {
        let _ = writeln!(o, "| {what} | {} | {} |", f(0), f(1));
    };
    let v = &c.variants;
    let d = &c.direct.open;
    row(
        o,
        &format!("added p50 over direct at {rate} req/s (µs)"),
        &|i| opt(Some(v[i].open.pct_us(50.0) - d.pct_us(50.0)), 0),
    );
    row(
        o,
        &format!("added p99 over direct at {rate} req/s (µs)"),
        &|i| opt(Some(v[i].open.pct_us(99.0) - d.pct_us(99.0)), 0),
    );
    row(o, "CPU µs/req at saturation", &|i| {
        opt(v[i].cpu_per_req_us(), 1)
    });
    row(o, "req/s per core at saturation", &|i| {
        opt(v[i].cpu_per_req_us().map(|c| 1e6 / c), 0)
    });
    row(o, "closed-loop req/s (sidecar core use)", &|i| {
        format!(
            "{:.0} ({})",
            v[i].closed.rps(),
            v[i].utilisation()
                .map(|u| format!("{:.0}%", u * 100.0))
                .unwrap_or_else(|| "n/a".into())
        )
    });
    row(o, "peak RSS, VmHWM (MB)", &|i| mb(v[i].peak_rss_kb));
    row(
        o,
        "errors at the load generator (non-2xx + transport), open + closed",
        &|i| (v[i].open.errors + v[i].closed.errors).to_string(),
    );
    row(
        o,
        "sidecar `/metrics`: requests / non-2xx / 429 (throttled)",
        &|i| {
            let k = &c.counters[i];
            format!(
                "{} / {} / {}",
                count(k.requests),
                count(k.non_2xx),
                count(k.throttled)
            )
        },
    );
    row(
        o,
        "STS calls before timing (start-up pre-fetch + one request per user)",
        &|i| {
            if i == 0 {
                "n/a".into()
            } else {
                c.sts_warm.to_string()
            }
        },
    );
    row(
        o,
        "**STS calls during the timed phases** (counted at the simulator's STS)",
        &|i| {
            if i == 0 {
                "n/a".into()
            } else {
                format!("**{}**", c.sts_timed)
            }
        },
    );
    row(
        o,
        "sidecar `/metrics`: STS ok / failed, sessions cached",
        &|i| {
            let k = &c.counters[i];
            if i == 0 {
                "n/a".into()
            } else {
                format!(
                    "{} / {}, {}",
                    count(k.sts_ok),
                    count(k.sts_failed),
                    count(k.cached)
                )
            }
        },
    );
}

fn render_memory(o: &mut String, m: &MemoryResult) {
    let _ = writeln!(
        o,
        "\n## Memory with {n} cached tenants (assume_role, allow_unlisted)\n\n\
         One Converse request from each of {n} distinct tenants (one RS256 token each, user-0), \
         {c} connections; the first {w} tenants are a warm-up checkpoint.\n\n\
         | sidecar | VmRSS (MB) | VmHWM (MB) |\n|---|---:|---:|\n\
         | at start (ready, idle) | {} | {} |\n\
         | after {w} tenants | {} | {} |\n\
         | after {n} tenants | {} | {} |\n",
        mb(m.start.0),
        mb(m.start.1),
        mb(m.after_warm.0),
        mb(m.after_warm.1),
        mb(m.end.0),
        mb(m.end.1),
        n = m.tenants,
        w = m.warm,
        c = m.conns,
    );
    let grow = |a: Option<u64>, b: Option<u64>| {
        opt(a.zip(b).map(|(a, b)| (b as f64 - a as f64) / 1024.0), 1)
    };
    let _ = writeln!(
        o,
        "| per tenant | |\n|---|---:|\n\
         | **VmRSS increment per tenant, {w} → {n} tenants** | **{} bytes** |\n\
         | VmRSS increment per tenant, 0 → {n} (incl. one-time costs) | {} bytes |\n\
         | VmRSS growth, start → end | {} MB |\n\
         | requests 2xx / errors | {} / {} |\n\
         | STS calls at the simulator (distinct tenants, tenants assumed twice, refused) | {} ({}, {}, {}) |\n\
         | sidecar `/metrics`: tenantgate_credentials_cached | {} |\n\
         | sidecar `/metrics`: STS ok, non-2xx answers | {}, {} |\n\
         | sidecar `/metrics`: tenantgate_verified_tokens_cached (of {n} tokens) | {} |\n\
         | check | {} |\n",
        opt(m.per_tenant_bytes(), 0),
        opt(m.per_tenant_all_bytes(), 0),
        grow(m.start.0, m.end.0),
        m.ok,
        m.errors,
        m.sts_calls,
        m.sts_tenants,
        m.sts_repeated,
        m.sts_bad,
        count(m.cached_metric),
        count(m.sts_ok_metric),
        count(m.non_2xx_metric),
        count(m.token_cache_entries),
        if m.verified() {
            format!("PASS: {} sessions fetched once each and cached", m.tenants)
        } else {
            "FAIL: see the counts above".into()
        },
        n = m.tenants,
        w = m.warm,
    );
    let _ = writeln!(
        o,
        "The increment is everything the sidecar keeps per tenant, not the STS session alone: \
         the cached session (rendered AssumeRole request as key, access key, secret, a {}-character \
         session token, expiry), the verified-token cache entry (principal and claims; that cache is \
         bounded at 10,000 entries in 16 shards and a full shard evicts down to 7/8; it held {} of the \
         {} tokens at the end), the rate-limit table entry (GCRA + token budget, one per tenant), the metrics' \
         tenant label series (first 1,000 tenants only; later ones share `_other`), and allocator \
         slack. Tokens minted in {:.1} s (at the start, on every core); requests sent in {:.1} s.{}",
        super::SESSION_TOKEN_LEN,
        count(m.token_cache_entries),
        m.tenants,
        m.mint_secs,
        m.send_secs,
        if m.alive { "" } else { " The sidecar exited during the phase." },
    );
    if let Some(e) = &m.first_error {
        let _ = writeln!(o, "\nFirst request error: {e}");
    }
    if let Some(e) = &m.sts_first_bad {
        let _ = writeln!(o, "\nFirst refused STS call: {e}");
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "n/a".into(),
    }
}

#[allow(clippy::too_many_arguments)]
pub fn render(
    header: &str,
    rate: u32,
    conns: usize,
    all: &[Measured],
    compare: Option<&CredsCompare<'_>>,
    memory: Option<&MemoryResult>,
    budgets: &[Budget],
    notes: &[String],
) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "# tenantgate benchmark\n\n{header}\n");
    let _ = writeln!(
        o,
        "## Latency at {rate} req/s, open loop (µs, from intended send time)\n\n\
         | target | p50 | p90 | p99 | p99.9 | max | requests | errors | other load |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for m in all {
        let r = &m.open;
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
            m.name,
            r.pct_us(50.0),
            r.pct_us(90.0),
            r.pct_us(99.0),
            r.pct_us(99.9),
            r.pct_us(100.0),
            r.latencies.len(),
            r.errors,
            m.background
                .map(|b| format!("{:.0}%", b * 100.0))
                .unwrap_or_else(|| "n/a".into()),
        );
    }
    if let Some(direct) = all.iter().find(|m| m.name == "direct") {
        let _ = writeln!(
            o,
            "\n## Added latency over direct\n\n\
             | hop | added p50 (µs) | added p99 (µs) | p50 ratio | p99 ratio |\n|---|---:|---:|---:|---:|"
        );
        for m in all.iter().filter(|m| m.name != "direct") {
            let (d50, d99) = (direct.open.pct_us(50.0), direct.open.pct_us(99.0));
            let (p50, p99) = (m.open.pct_us(50.0), m.open.pct_us(99.0));
            let _ = writeln!(
                o,
                "| {} | {:.0} | {:.0} | {:.2}x | {:.2}x |",
                m.name,
                p50 - d50,
                p99 - d99,
                p50 / d50,
                p99 / d99
            );
        }
    }
    let _ = writeln!(
        o,
        "\n## Saturation, closed loop ({conns} keep-alive connections)\n\n\
         | target | req/s | errors | proxy CPU µs/req | proxy req/s per core | proxy core use | CPU µs/req at {rate} req/s | peak RSS (MB) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    for m in all {
        let per_core = m.cpu_per_req_us().map(|c| 1e6 / c);
        let _ = writeln!(
            o,
            "| {} | {:.0} | {} | {} | {} | {} | {} | {} |",
            m.name,
            m.closed.rps(),
            m.closed.errors,
            opt(m.cpu_per_req_us(), 1),
            opt(per_core, 0),
            m.utilisation()
                .map(|u| format!("{:.0}%", u * 100.0))
                .unwrap_or_else(|| "n/a".into()),
            opt(m.open_cpu_per_req_us(), 1),
            opt(m.peak_rss_kb.map(|k| k as f64 / 1024.0), 1),
        );
    }
    if let Some(c) = compare {
        render_compare(&mut o, rate, c);
    }
    if let Some(m) = memory {
        render_memory(&mut o, m);
    }
    let _ = writeln!(
        o,
        "\n## Budgets (tenantgate)\n\n| target | budget | measured | limit | result |\n|---|---|---:|---:|---|"
    );
    for b in budgets {
        let result = match b.pass() {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} {} | {} {} | {result} |",
            b.target,
            b.what,
            opt(b.value, 1),
            b.unit,
            b.limit,
            b.unit
        );
    }
    if !notes.is_empty() {
        let _ = writeln!(o, "\n## Notes\n");
        for n in notes {
            let _ = writeln!(o, "- {n}");
        }
    }
    o
}
