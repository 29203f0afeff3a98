//! Phases "limits on, local" and "limits on, redis": the static sidecar with
//! every limit configured (tenant and per-user GCRA, token budget charged
//! with each response's usage), high enough that nothing is refused at the
//! bench rate; once with local state, once shared in a redis-server this
//! module starts on a free port (pinned with the load generator, so its CPU
//! is not the sidecar's; reported separately). The report section compares
//! both with the `tenantgate (static)` phase, whose limits are set far above
//! the load (its tenant GCRA still runs).

use super::loadgen::Target;
use super::phases::Subject;
use super::procs::{self, Creds, Proc, Sidecar, TempDir, Tenants};
use super::report::Measured;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

pub const LOCAL_NAME: &str = "tenantgate (limits on, local)";
pub const REDIS_NAME: &str = "tenantgate (limits on, redis)";

/// Every limit on, none reached at the bench's rates (the closed loop runs
/// ~10k req/s from 64 users; each response charges ~40 tokens).
const LIMITS: &str = "requests_per_second = 100000
burst = 100000
max_concurrent = 4096
tokens_per_minute = 1000000000000
user_requests_per_second = 50000
user_burst = 50000";

pub fn find_redis() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("REDIS_SERVER_BIN").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// The two limited sidecars and the redis-server behind the second.
pub struct Limited {
    pub local: Sidecar,
    pub redis: Option<(Sidecar, Proc)>,
    _dirs: Vec<TempDir>,
}

impl Limited {
    /// Starts both sidecars (static credentials, tenant acme) and, when
    /// `redis_bin` is given, a redis-server on `redis_core`.
    pub fn start(
        bin: &Path,
        proxy_core: Option<usize>,
        redis_core: Option<usize>,
        redis_bin: Option<&Path>,
        upstream: SocketAddr,
        public_pem: &str,
        creds: &Creds<'_>,
    ) -> Result<Limited, String> {
        let (ldir, rdir) = (TempDir::new("limits-local")?, TempDir::new("limits-redis")?);
        let local = procs::start_sidecar_with_limits(
            bin, &ldir.0, proxy_core, upstream, public_pem, creds, Tenants::Acme, LIMITS, "",
        )?;
        let redis = match redis_bin {
            None => None,
            Some(redis_bin) => {
                let port = procs::free_port()?;
                let child = procs::pinned(redis_core, redis_bin)
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                    .arg("--dir")
                    .arg(&rdir.0)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| format!("start {}: {e}", redis_bin.display()))?;
                let mut server = Proc { child, name: "redis-server" };
                procs::wait_ready(&mut server, SocketAddr::from(([127, 0, 0, 1], port)), None)?;
                // deny: a request Redis did not answer would be an error, not
                // a silently local (cheaper) admission.
                let table = format!(
                    "[rate_limit]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:{port}\"\non_backend_error = \"deny\"\n"
                );
                let sc = procs::start_sidecar_with_limits(
                    bin, &rdir.0, proxy_core, upstream, public_pem, creds, Tenants::Acme, LIMITS, &table,
                )?;
                Some((sc, server))
            }
        };
        Ok(Limited { local, redis, _dirs: vec![ldir, rdir] })
    }

    /// The phases to measure, each with the target `make` builds for it.
    pub fn subjects(
        &self,
        make: impl Fn(&'static str, SocketAddr) -> Result<Target, String>,
    ) -> Result<Vec<Subject>, String> {
        let mut out = vec![Subject { target: make(LOCAL_NAME, self.local.addr)?, cpu_pid: Some(self.local.proc.pid()) }];
        if let Some((sc, _)) = &self.redis {
            out.push(Subject { target: make(REDIS_NAME, sc.addr)?, cpu_pid: Some(sc.proc.pid()) });
        }
        Ok(out)
    }

    /// redis-server CPU so far (µs), to split per request.
    pub fn redis_cpu_us(&self) -> Option<u64> {
        self.redis.as_ref().and_then(|(_, p)| procs::cpu_us(p.pid()))
    }
}

/// Markdown: what the limits add per request over `baseline` (the static
/// sidecar). `redis_cpu_per_req` is redis-server's own CPU per request of the
/// redis phase, when known.
pub fn report(all: &[Measured], baseline: &str, redis_cpu_per_req: Option<f64>) -> String {
    let mut o = String::new();
    let Some(base) = all.iter().find(|m| m.name == baseline) else { return o };
    let _ = writeln!(
        o,
        "\n## Rate limits: added cost per request over `{baseline}`\n\n\
         Same sidecar and load with every limit configured (tenant and per-user GCRA, token budget \
         charged at the end of each response; none reached). `local`: in-process state. `redis`: one \
         Lua round trip per request to a redis-server on 127.0.0.1 (pinned with the load generator), \
         plus the token charge after the response.\n\n\
         | phase | p50 (µs) | p99 (µs) | added p50 (µs) | added p99 (µs) | sidecar CPU µs/req | added CPU µs/req | req/s (closed loop) |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|"
    );
    let (b50, b99) = (base.open.pct_us(50.0), base.open.pct_us(99.0));
    let bcpu = base.cpu_per_req_us();
    for m in all.iter().filter(|m| m.name == baseline || m.name == LOCAL_NAME || m.name == REDIS_NAME) {
        let (p50, p99) = (m.open.pct_us(50.0), m.open.pct_us(99.0));
        let cpu = m.cpu_per_req_us();
        let fmt = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into());
        let rps = m.closed.requests as f64 / m.closed.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.0} | {:+.0} | {:+.0} | {} | {} | {:.0} |",
            m.name,
            p50,
            p99,
            p50 - b50,
            p99 - b99,
            fmt(cpu),
            fmt(cpu.zip(bcpu).map(|(c, b)| c - b)),
            rps,
        );
    }
    if let Some(r) = redis_cpu_per_req {
        let _ = writeln!(o, "\nredis-server CPU per request of the redis phase (both loops): {r:.1} µs.");
    }
    o
}
