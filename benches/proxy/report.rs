//! The benchmark's markdown report.

use super::loadgen::{ClosedResult, OpenResult};
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

fn opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "n/a".into(),
    }
}

pub fn render(
    header: &str,
    rate: u32,
    conns: usize,
    all: &[Measured],
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
    let _ = writeln!(
        o,
        "\n## Budgets (tenantgate)\n\n| budget | measured | limit | result |\n|---|---:|---:|---|"
    );
    for b in budgets {
        let result = match b.pass() {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a",
        };
        let _ = writeln!(
            o,
            "| {} | {} {} | {} {} | {result} |",
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
