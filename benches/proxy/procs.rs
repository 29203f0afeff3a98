//! The processes under test: the tenantgate release binary and nginx, each
//! started in a temp dir with a generated config, pinned to their own core,
//! and stopped (by their own pid) when dropped. Plus /proc readers for CPU
//! time and peak RSS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p = std::env::temp_dir().join(format!(
            "tenantgate-bench-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&p).map_err(|e| format!("mkdir {}: {e}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free localhost port (bound then released; the child binds it right after).
pub fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// `taskset -c CORE` prefix when pinning is possible.
pub fn pinned(core: Option<usize>, program: &Path) -> Command {
    match core {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.arg("-c").arg(c.to_string()).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

/// A child process killed (SIGTERM, then SIGKILL) on drop.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(st)) => Err(format!("{} exited early: {st}", self.name)),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits until `addr` accepts TCP connections and, when `ready_path` is
/// given, answers it with 200.
pub fn wait_ready(p: &mut Proc, addr: SocketAddr, ready_path: Option<&str>) -> Result<(), String> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        p.alive()?;
        if let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let Some(path) = ready_path else {
                return Ok(());
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let req = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
            let mut buf = [0u8; 64];
            if s.write_all(req.as_bytes()).is_ok() {
                if let Ok(n) = s.read(&mut buf) {
                    if buf[..n].starts_with(b"HTTP/1.1 200") {
                        return Ok(());
                    }
                }
            }
        }
        if Instant::now() > deadline {
            return Err(format!("{} did not become ready on {addr}", p.name));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// utime + stime of a process, in microseconds.
pub fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces: state is field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (u64, u64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    Some((utime + stime) * 1_000_000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t: &u64| t > 0)
        .unwrap_or(100)
}

/// A `/proc/PID/status` value in kB (`VmHWM`, `VmRSS`).
pub fn status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Where a sidecar gets its AWS credentials.
pub enum Creds<'a> {
    /// `source = "static"`: tenant acme's keys from env vars.
    Static { akid: &'a str, secret: &'a str },
    /// `source = "assume_role"` against `sts`, base keys in the standard
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` env vars.
    AssumeRole {
        sts: SocketAddr,
        akid: &'a str,
        secret: &'a str,
    },
}

/// Which tenants a sidecar admits.
pub enum Tenants {
    /// Only `[tenants.acme]` (model allowlist, requestMetadata).
    Acme,
    /// No listed tenant: `tenant_defaults.allow_unlisted = true` with the
    /// same model allowlist and requestMetadata for every tenant.
    Unlisted,
}

/// A running sidecar: process, proxy listener, admin listener (`/metrics`).
pub struct Sidecar {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

/// Rate limits far above anything the benchmark sends: every request must be
/// admitted (a 429 would count as an error). The defaults (20 req/s, burst
/// 40, 16 in flight, 200,000 tokens/min) would throttle at once.
pub const NO_THROTTLING: &str = "requests_per_second = 1000000
burst = 1000000
max_concurrent = 4096
tokens_per_minute = 0";

/// Starts `tenantgate run --config` with a generated config (RS256 JWT from a
/// PEM file, Bedrock endpoint at `upstream`).
pub fn start_sidecar(
    bin: &Path,
    dir: &Path,
    core: Option<usize>,
    upstream: SocketAddr,
    public_pem: &str,
    creds: &Creds<'_>,
    tenants: Tenants,
) -> Result<Sidecar, String> {
    start_sidecar_with_limits(bin, dir, core, upstream, public_pem, creds, tenants, NO_THROTTLING, "")
}

/// [`start_sidecar`] with `limits` as `[tenant_defaults.rate_limit]` and
/// `rate_limit_table` (e.g. `[rate_limit]` for Redis) added to the config.
#[allow(clippy::too_many_arguments)]
pub fn start_sidecar_with_limits(
    bin: &Path,
    dir: &Path,
    core: Option<usize>,
    upstream: SocketAddr,
    public_pem: &str,
    creds: &Creds<'_>,
    tenants: Tenants,
    limits: &str,
    rate_limit_table: &str,
) -> Result<Sidecar, String> {
    let (port, admin) = (free_port()?, free_port()?);
    std::fs::write(dir.join("jwt-public.pem"), public_pem).map_err(|e| e.to_string())?;
    let (credentials, sts_endpoint) = match creds {
        Creds::Static { .. } => ("source = \"static\"".to_string(), String::new()),
        Creds::AssumeRole { sts, .. } => (
            // The shape of config.toml's production example: one session per
            // tenant, tagged with its id.
            r#"source = "assume_role"
role_arn = "arn:aws:iam::111122223333:role/tenant-pool"
session_name = "tenantgate-{tenant}"
session_tags = { TenantID = "{tenant}" }
duration_secs = 3600
refresh_before_secs = 300"#
                .to_string(),
            format!("sts = \"http://{sts}\"\n"),
        ),
    };
    let policy = r#"models = ["anthropic.claude-3-haiku-*"]
request_metadata = { tenant = "{tenant}", user = "{user}" }"#;
    let tenants = match (tenants, creds) {
        (Tenants::Acme, Creds::Static { .. }) => format!(
            "[tenants.acme]\n{policy}\n[tenants.acme.static_credentials]\n\
             access_key_id_env = \"BENCH_ACME_AKID\"\nsecret_access_key_env = \"BENCH_ACME_SECRET\"\n"
        ),
        (Tenants::Acme, Creds::AssumeRole { .. }) => format!("[tenants.acme]\n{policy}\n"),
        (Tenants::Unlisted, _) => format!("[tenant_defaults]\nallow_unlisted = true\n{policy}\n"),
    };
    let config = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"

[identity]
mode = "jwt"
issuer = "https://idp.bench.example/"
audiences = ["bench-app"]
algorithms = ["RS256"]
pem_file = "jwt-public.pem"
groups_claim = "groups"

[aws]
region = "us-east-1"
[aws.endpoints]
bedrock_runtime = "http://{upstream}"
{sts_endpoint}
[credentials]
{credentials}

{rate_limit_table}
{tenants}
[tenant_defaults.rate_limit]
{limits}
"#
    );
    let path = dir.join("tenantgate.toml");
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    let mut cmd = pinned(core, bin);
    cmd.arg("run").arg("--config").arg(&path);
    // Nothing from this shell's AWS set-up (profiles, endpoints, tokens)
    // reaches the sidecar; instance metadata is never asked.
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("AWS_")) {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        );
    match creds {
        Creds::Static { akid, secret } => {
            cmd.env("BENCH_ACME_AKID", akid)
                .env("BENCH_ACME_SECRET", secret);
        }
        Creds::AssumeRole { akid, secret, .. } => {
            cmd.env("AWS_ACCESS_KEY_ID", akid)
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
    }
    let child = cmd
        .env("TENANTGATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null()) // the audit log: written, not kept
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let mut p = Proc {
        child,
        name: "tenantgate",
    };
    let admin_addr = SocketAddr::from(([127, 0, 0, 1], admin));
    wait_ready(&mut p, admin_addr, Some("/readyz"))?;
    Ok(Sidecar {
        proc: p,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        admin: admin_addr,
    })
}

/// `GET /metrics` from a sidecar's admin listener (Prometheus text format).
pub fn scrape(admin: SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(2))
        .map_err(|e| format!("metrics: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET /metrics HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    if !out.starts_with("HTTP/1.1 200") {
        return Err(format!("metrics: {}", out.lines().next().unwrap_or("")));
    }
    Ok(out)
}

/// Sum of a metric's samples whose labels contain every `labels` fragment
/// (e.g. `result="ok"`), from a Prometheus text scrape. None when absent.
pub fn metric_sum(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (lbls, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None if rest.starts_with(' ') => ("", rest),
            None => continue,
        };
        if !labels.iter().all(|f| lbls.contains(f)) {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

/// Starts nginx (one worker) as a keep-alive reverse proxy to `upstream`,
/// from `bench/nginx.conf.template`.
pub fn start_nginx(
    bin: &Path,
    template: &str,
    dir: &Path,
    core: Option<usize>,
    upstream: SocketAddr,
) -> Result<(Proc, SocketAddr), String> {
    let port = free_port()?;
    let user = Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "nobody".into());
    let conf = template
        .replace("{{DIR}}", &dir.display().to_string())
        .replace("{{PORT}}", &port.to_string())
        .replace("{{UPSTREAM}}", &upstream.to_string())
        .replace("{{USER}}", &user);
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    let child = pinned(core, bin)
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let mut p = Proc {
        child,
        name: "nginx",
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(&mut p, addr, None).map_err(|e| {
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        format!("{e}\n{log}")
    })?;
    Ok((p, addr))
}

/// nginx master's worker (for CPU accounting): the child of `master`.
pub fn nginx_worker(master: u32) -> Option<u32> {
    if let Ok(children) = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children"))
    {
        if let Some(pid) = children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
        {
            return Some(pid);
        }
    }
    // No /proc children file: scan for a process whose parent is `master`.
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let ppid: u32 = stat[stat.rfind(')')? + 2..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        (ppid == master).then_some(pid)
    })
}

/// Busy CPU time of the whole machine (all cores, steal included), in µs.
pub fn machine_busy_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal: all but idle and iowait.
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    Some(busy * 1_000_000 / clock_ticks())
}
