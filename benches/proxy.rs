//! Benchmark: Bedrock Converse through the tenantgate sidecar (two variants:
//! static credentials, and STS AssumeRole with the session cache warm) vs
//! direct to the same local upstream (the built-in AWS simulator) vs a plain
//! nginx reverse-proxy hop; then the sidecar's memory with 10,000 cached
//! tenant sessions. Run with `bash bench/run.sh` (see bench/README.md).
//!
//! Layout on a 2-core machine: this process (load generator + simulator,
//! whose STS the assume_role sidecars call; one thread) on core 0; the proxy under test (tenantgate
//! release binary, or nginx with one worker) on core 1. Settings come from
//! the environment: BENCH_SECS (10), BENCH_RATE (1000), BENCH_CONNS (16),
//! BENCH_TENANTS (10000; 0 skips the memory phase), BENCH_TENANT_CONNS (16),
//! BENCH_QUICK=1 (3 s phases, 2,000 tenants), BENCH_QUIET_WAIT (30), NGINX_BIN
//! (nginx on PATH or /usr/sbin/nginx), BENCH_STRICT=1 (exit 1 on a FAIL).

#[path = "proxy/limits.rs"]
mod limits;
#[path = "proxy/loadgen.rs"]
mod loadgen;
#[path = "proxy/policies.rs"]
mod policies;
#[path = "proxy/phases.rs"]
mod phases;
#[path = "proxy/procs.rs"]
mod procs;
#[path = "proxy/report.rs"]
mod report;
#[path = "proxy/tenants.rs"]
mod tenants;
#[path = "proxy/tokens.rs"]
mod tokens;

use bytes::Bytes;
use loadgen::Target;
use procs::TempDir;
use procs::{Creds, Tenants};
use report::{Budget, CredsCompare, SidecarCounters};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tenantgate_sim::sim::{Sim, SimOptions, StsOptions};
use tenantgate_sim::secret::SecretString;

const AKID: &str = "AKIABENCHACME0000001";
const SECRET: &str = "benchsecret/abcdefghijklmnopqrstuvwxyz01";
const MODEL_PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
/// The assume_role sidecars' base credentials (what STS AssumeRole is signed
/// with). The simulator takes them for STS only: a Bedrock request signed
/// with them would fail the signing check.
const BASE_AKID: &str = "AKIABENCHBASE0000001";
const BASE_SECRET: &str = "benchbasesecret/abcdefghijklmnopqrstuvwx";
/// Length of the session tokens STS issues: that of a real AssumeRole token
/// with one session tag (roughly 800-1,100 characters), so the memory
/// figures hold realistic entries.
const SESSION_TOKEN_LEN: usize = 1000;
const USERS: usize = 64;
const STATIC_NAME: &str = "tenantgate (static)";
const ASSUME_NAME: &str = "tenantgate (assume_role)";

struct Settings {
    secs: u64,
    rate: u32,
    conns: usize,
    strict: bool,
    nginx: Option<PathBuf>,
    /// redis-server for the `limits on, redis` phase (REDIS_SERVER_BIN or PATH).
    redis: Option<PathBuf>,
    /// (load generator core, proxy core) when pinning is possible.
    cores: Option<(usize, usize)>,
    /// Cores of the machine (read before this process pins itself).
    total_cores: usize,
    /// Longest wait for a quiet machine before each target, seconds.
    quiet_wait: u64,
    /// Distinct tenants in the memory phase (0: skipped).
    tenants: usize,
    tenant_conns: usize,
    quick: bool,
}

fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn find_nginx() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NGINX_BIN") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join("nginx"))
        .find(|p| p.exists())
}

impl Settings {
    fn from_env() -> Settings {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let taskset = Command::new("taskset").arg("-V").output().is_ok();
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
        Settings {
            secs: env_num("BENCH_SECS", if quick { 3u64 } else { 10 }).clamp(1, 120),
            rate: env_num("BENCH_RATE", 1000u32).clamp(1, 100_000),
            conns: env_num("BENCH_CONNS", 16usize).clamp(1, 1024),
            strict: std::env::var("BENCH_STRICT").is_ok_and(|v| v == "1"),
            nginx: find_nginx(),
            redis: limits::find_redis(),
            cores: (cores >= 2 && taskset).then_some((0, 1)),
            total_cores: cores,
            quiet_wait: env_num("BENCH_QUIET_WAIT", 30u64).min(600),
            tenants: env_num("BENCH_TENANTS", if quick { 2_000usize } else { 10_000 }).min(100_000),
            tenant_conns: env_num("BENCH_TENANT_CONNS", 16usize).clamp(1, 256),
            quick,
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` does not, and
    // must not start a minute-long load test.
    if !std::env::args().any(|a| a == "--bench") {
        println!(
            "benches/proxy.rs: skipped (run `bash bench/run.sh` or `cargo bench --bench proxy`)"
        );
        return;
    }
    let code = match real_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bench: {e}");
            2
        }
    };
    std::process::exit(code);
}

fn real_main() -> Result<i32, String> {
    let s = Settings::from_env();
    let prepared = tokens::prepare(s.tenants, s.total_cores)?;
    if let Some((core, _)) = s.cores {
        // Pin this process (and the threads it will start) before it starts any.
        let pid = std::process::id().to_string();
        let ok = Command::new("taskset")
            .args(["-a", "-p", "-c", &core.to_string(), &pid])
            .output();
        if !ok.is_ok_and(|o| o.status.success()) {
            return Err("taskset could not pin the load generator".into());
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(run(s, prepared))
}

fn target(
    name: &'static str,
    addr: std::net::SocketAddr,
    tokens: &[String],
) -> Result<Target, String> {
    let body = serde_json::json!({
        "messages": [{ "role": "user", "content": [{ "text":
            "Summarise the attached support ticket in two sentences and classify its urgency." }] }],
        "system": [{ "text": "You are a concise support assistant." }],
        "inferenceConfig": { "maxTokens": 256, "temperature": 0.2 },
    });
    let hv = |s: &str| http::HeaderValue::from_str(s).map_err(|e| e.to_string());
    Ok(Target {
        name,
        addr,
        path: MODEL_PATH.into(),
        headers: vec![
            (http::header::HOST, hv(&addr.to_string())?),
            (http::header::CONTENT_TYPE, hv("application/json")?),
        ],
        rotating: tokens
            .iter()
            .map(|t| Ok((http::HeaderName::from_static("x-tenant-token"), hv(t)?)))
            .collect::<Result<_, String>>()?,
        body: Bytes::from(body.to_string()),
    })
}

/// Signed requests through the sidecar must verify at the simulator before
/// anything is timed (verification is then switched off for every target).
/// `n` requests over 100 ms, rotating through the users from the first.
async fn check_signing(sim: &Sim, t: &Target, n: u32) -> Result<(), String> {
    let before = sim.stats.signatures_ok.load(Ordering::Relaxed);
    let mut r = loadgen::OpenResult::default();
    loadgen::OpenLoop::new(t)
        .run(n * 10, Duration::from_millis(100), &mut r)
        .await;
    let ok = sim.stats.signatures_ok.load(Ordering::Relaxed) - before;
    let failed = sim.stats.signatures_failed.load(Ordering::Relaxed);
    if r.errors > 0 || failed > 0 || ok != r.latencies.len() as u64 || ok == 0 {
        return Err(format!(
            "{}: signing check failed: {ok} signatures verified, {failed} rejected, {} errors ({:?})",
            t.name, r.errors, r.first_error
        ));
    }
    eprintln!(
        "bench: {}: signing check: {ok}/{ok} SigV4 signatures verified by the simulator",
        t.name
    );
    Ok(())
}

/// Throttling and refusals as the sidecar itself counts them (`/metrics`).
fn counters(admin: std::net::SocketAddr) -> SidecarCounters {
    let Ok(text) = procs::scrape(admin) else {
        return SidecarCounters::default();
    };
    let non_2xx = text
        .lines()
        .filter(|l| l.starts_with("tenantgate_requests_total{") && !l.contains("status=\"200\""))
        .filter_map(|l| l.split_whitespace().last()?.parse::<f64>().ok())
        .sum::<f64>()
        + 0.0; // an empty sum is -0.0
    SidecarCounters {
        requests: procs::metric_sum(&text, "tenantgate_requests_total", &[]),
        non_2xx: Some(non_2xx),
        throttled: Some(procs::metric_sum(&text, "tenantgate_throttled_total", &[]).unwrap_or(0.0)),
        sts_ok: procs::metric_sum(&text, "tenantgate_sts_requests_total", &["result=\"ok\""]),
        sts_failed: procs::metric_sum(
            &text,
            "tenantgate_sts_requests_total",
            &["result=\"error\""],
        )
        .zip(procs::metric_sum(
            &text,
            "tenantgate_sts_requests_total",
            &["result=\"timeout\""],
        ))
        .map(|(a, b)| a + b),
        cached: procs::metric_sum(&text, "tenantgate_credentials_cached", &[]),
    }
}

async fn run(s: Settings, p: tokens::Prepared) -> Result<i32, String> {
    let tokens::Prepared {
        dir: _dir,
        public_pem,
        tokens,
        outsider,
        tenant_tokens,
        mint_secs,
    } = p;
    // One simulator is the upstream and the STS: every session it issues
    // is a key it then verifies. Every AssumeRole is verified, also while
    // service calls are not (timed phases, memory phase), and counted.
    let sim = Sim::start_with(
        SimOptions {
            credentials: vec![(AKID.to_string(), SecretString::new(SECRET.into()))],
            verify_signatures: true,
            record_limit: 0,
        },
        StsOptions {
            assume_role_only: vec![(BASE_AKID.to_string(), SecretString::new(BASE_SECRET.into()))],
            token_len: SESSION_TOKEN_LEN,
            always_verify: true,
        },
    )
    .await
    .map_err(|e| format!("simulator: {e}"))?;
    let sim_stats = sim.stats.clone();
    let sts_calls = || sim_stats.sts_requests.load(Ordering::Relaxed);
    let sts_refused = || sim_stats.sts_refused.load(Ordering::Relaxed);
    let proxy_core = s.cores.map(|c| c.1);
    // BENCH_BIN: another build of the sidecar to measure on the same run
    // set-up (e.g. an earlier release, to compare versions).
    let bin_override = std::env::var_os("BENCH_BIN");
    let bin = bin_override.as_deref().map_or(Path::new(env!("CARGO_BIN_EXE_tenantgate")), Path::new);
    // One directory per sidecar: each watches its config file for changes.
    let (sdir, adir, mdir) = (
        TempDir::new("static")?,
        TempDir::new("assume-role")?,
        TempDir::new("tenants")?,
    );
    let static_sc = procs::start_sidecar(
        bin,
        &sdir.0,
        proxy_core,
        sim.addr,
        &public_pem,
        &Creds::Static {
            akid: AKID,
            secret: SECRET,
        },
        Tenants::Acme,
    )?;
    let assume_sc = procs::start_sidecar(
        bin,
        &adir.0,
        proxy_core,
        sim.addr,
        &public_pem,
        &Creds::AssumeRole {
            sts: sim.addr,
            akid: BASE_AKID,
            secret: BASE_SECRET,
        },
        Tenants::Acme,
    )?;
    let static_target = target(STATIC_NAME, static_sc.addr, &tokens)?;
    let assume_target = target(ASSUME_NAME, assume_sc.addr, &tokens)?;
    check_signing(&sim, &static_target, 20).await?;
    // Warm-up of the assume_role variant: one request per user (the session
    // is per tenant, so one STS call, made at start-up or by the first
    // request), each signed with the STS-issued key and verified.
    check_signing(&sim, &assume_target, USERS as u32).await?;
    let sts_warm = sts_calls();
    sim.set_verify(false);

    let mut notes = vec![
        "Upstream: the built-in AWS simulator (`sim/src/sim.rs`) in the load generator's process; \
         SigV4 verification is off while timing (direct and nginx requests are unsigned), \
         after a check that both sidecars' signatures verify."
            .to_string(),
        format!(
            "Sidecars: release binary, RS256 JWT from a PEM file, {USERS} users' tokens of tenant acme \
             in rotation (each verified once, then served from the verified-token cache), \
             Converse body rewritten (requestMetadata), audit lines written to /dev/null, rate limits \
             set far above the load (1,000,000 req/s, burst 1,000,000, 4,096 in flight, no token budget). \
             `static`: the tenant's keys from env vars. `assume_role`: STS AssumeRole (role ARN, \
             session name `tenantgate-{{tenant}}`, tag TenantID) against the simulator's STS, which \
             verifies every call and issues {SESSION_TOKEN_LEN}-character session tokens; base keys \
             (valid for STS only) in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; the session cache is \
             warm before timing (start-up pre-fetch, then one request per user)."
        ),
        "Errors: every non-2xx answer and every transport failure counts as an error \
         (columns `errors`); the sidecars' own `/metrics` counts of non-2xx and 429 answers are \
         in the side-by-side table."
            .to_string(),
    ];
    let mut subjects = vec![phases::Subject {
        target: target("direct", sim.addr, &tokens)?,
        cpu_pid: None,
    }];
    let ndir = TempDir::new("nginx")?;
    let nginx = match &s.nginx {
        Some(nginx_bin) => {
            let template = std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/bench/nginx.conf.template"
            ))
            .map_err(|e| format!("bench/nginx.conf.template: {e}"))?;
            let (nginx, addr) =
                procs::start_nginx(nginx_bin, &template, &ndir.0, proxy_core, sim.addr)?;
            subjects.push(phases::Subject {
                target: target("nginx", addr, &tokens)?,
                cpu_pid: procs::nginx_worker(nginx.pid()),
            });
            Some(nginx)
        }
        None => {
            notes.push("nginx not found: its phase was skipped (bench/run.sh installs it).".into());
            None
        }
    };
    subjects.push(phases::Subject {
        target: static_target,
        cpu_pid: Some(static_sc.proc.pid()),
    });
    subjects.push(phases::Subject {
        target: assume_target.clone(),
        cpu_pid: Some(assume_sc.proc.pid()),
    });
    // Limits on: local state, and shared in Redis (self-contained: limits.rs).
    let limited = limits::Limited::start(
        bin,
        proxy_core,
        s.cores.map(|c| c.0),
        s.redis.as_deref(),
        sim.addr,
        &public_pem,
        &Creds::Static {
            akid: AKID,
            secret: SECRET,
        },
    )?;
    subjects.extend(limited.subjects(|name, addr| target(name, addr, &tokens))?);
    if s.redis.is_none() {
        notes.push(
            "redis-server not found: the `limits on, redis` phase was skipped (bench/run.sh installs it)."
                .into(),
        );
    }
    // Policies on: the ten rules of bench/policies.cedar (policies.rs).
    let with_policies = policies::WithPolicies::start(
        bin,
        proxy_core,
        sim.addr,
        &public_pem,
        &Creds::Static {
            akid: AKID,
            secret: SECRET,
        },
    )?;
    let policies_target = target(policies::NAME, with_policies.sidecar.addr, &tokens)?;
    with_policies.check_denies(&policies_target, &outsider)?;
    sim.set_verify(true);
    check_signing(&sim, &policies_target, 5).await?;
    check_signing(&sim, &target(policies::UNCACHED_NAME, with_policies.uncached.addr, &tokens)?, 5).await?;
    sim.set_verify(false);
    // Measured right after `tenantgate (static)`, its baseline.
    let at = subjects.iter().position(|x| x.target.name == STATIC_NAME).map_or(subjects.len(), |i| i + 1);
    for (i, x) in with_policies.subjects(|name, addr| target(name, addr, &tokens))?.into_iter().enumerate() {
        subjects.insert(at + i, x);
    }
    let redis_cpu0 = limited.redis_cpu_us();
    let plan = phases::Plan {
        secs: s.secs,
        rate: s.rate,
        conns: s.conns,
        quiet_wait: Duration::from_secs(s.quiet_wait),
    };
    let sts_before = sts_calls();
    let all = phases::measure_all(&subjects, &plan).await;
    let sts_timed = sts_calls() - sts_before;
    let redis_cpu_per_req = limited
        .redis_cpu_us()
        .zip(redis_cpu0)
        .zip(all.iter().find(|m| m.name == limits::REDIS_NAME))
        .map(|((after, before), m)| {
            let n = m.open.latencies.len() as u64 + m.open.errors + m.closed.requests;
            after.saturating_sub(before) as f64 / n.max(1) as f64
        });
    drop(limited);
    drop(with_policies);
    let mut sidecars = [static_sc, assume_sc];
    let alive: Vec<bool> = sidecars
        .iter_mut()
        .map(|sc| matches!(sc.proc.child.try_wait(), Ok(None)))
        .collect();
    let counts = [counters(sidecars[0].admin), counters(sidecars[1].admin)];
    drop(nginx);
    drop(sidecars);

    let memory = if s.tenants > 0 {
        phases::wait_quiet("memory", Duration::from_secs(s.quiet_wait)).await;
        let r = tenants::run(
            bin,
            &mdir.0,
            proxy_core,
            &sim,
            &public_pem,
            tenant_tokens,
            mint_secs,
            (BASE_AKID, BASE_SECRET),
            &assume_target,
            s.tenant_conns,
        )
        .await;
        match r {
            Ok(m) => Some(m),
            Err(e) => {
                notes.push(format!("Memory phase failed: {e}"));
                None
            }
        }
    } else {
        None
    };
    sim.shutdown().await;

    let direct = &all[0];
    let find = |name: &str| all.iter().find(|m| m.name == name).ok_or("missing result");
    let (st, ar) = (find(STATIC_NAME)?, find(ASSUME_NAME)?);
    for (m, ok) in [st, ar].into_iter().zip(&alive) {
        if let Some(u) = m.utilisation() {
            if u < 0.9 {
                notes.push(format!(
                    "{}: the sidecar used only {:.0}% of its core in the closed loop: the load generator \
                     was the bottleneck, so req/s understate the sidecar's capacity (CPU µs/req is still exact).",
                    m.name,
                    u * 100.0
                ));
            }
        }
        if !ok {
            notes.push(format!(
                "{}: the sidecar process exited during the run.",
                m.name
            ));
        }
    }
    if sts_refused() > 0 {
        notes.push(format!(
            "The simulator's STS refused {} calls; first: {}",
            sts_refused(),
            sim_stats.sts_first_refusal().unwrap_or_default()
        ));
    }
    for m in &all {
        if m.background.is_some_and(|b| b > 0.05) {
            notes.push(format!(
                "{}: other processes used {:.0}% of a core during this target's phases; \
                 its tail latencies (and the closed loop) are disturbed. Re-run on a quiet machine.",
                m.name,
                m.background.unwrap_or(0.0) * 100.0
            ));
        }
        if m.open.max_pacer_lag > Duration::from_millis(5) {
            notes.push(format!(
                "{}: the pacer fell {:?} behind schedule once; latencies include it.",
                m.name, m.open.max_pacer_lag
            ));
        }
        for e in [&m.open.first_error, &m.closed.first_error]
            .into_iter()
            .flatten()
        {
            notes.push(format!("{}: first error: {e}", m.name));
        }
    }
    let direct_p99 = direct.open.pct_us(99.0);
    let mut budgets = Vec::new();
    for m in [st, ar] {
        budgets.push(Budget {
            target: m.name,
            what: format!("added p99 at {} req/s", s.rate),
            value: Some(m.open.pct_us(99.0) - direct_p99),
            unit: "µs",
            limit: 1000.0,
        });
        budgets.push(Budget {
            target: m.name,
            what: "CPU per request at saturation".into(),
            value: m.cpu_per_req_us(),
            unit: "µs",
            limit: 60.0,
        });
        budgets.push(Budget {
            target: m.name,
            what: "peak RSS (VmHWM)".into(),
            value: m.peak_rss_kb.map(|k| k as f64 / 1024.0),
            unit: "MB",
            limit: 30.0,
        });
    }
    let compare = CredsCompare {
        direct,
        variants: [st, ar],
        counters: counts,
        sts_warm,
        sts_timed,
    };
    let header = environment(&s);
    let md = report::render(
        &header,
        s.rate,
        s.conns,
        &all,
        Some(&compare),
        memory.as_ref(),
        &budgets,
        &notes,
    );
    let md = md
        + &limits::report(&all, STATIC_NAME, redis_cpu_per_req)
        + &policies::report(&all, STATIC_NAME);
    println!("\n{md}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    if std::fs::create_dir_all(&out)
        .and_then(|()| std::fs::write(out.join("latest.md"), &md))
        .is_ok()
    {
        eprintln!("bench: written to bench/results/latest.md");
    }
    let memory_failed = memory.as_ref().is_some_and(|m| !m.verified());
    let failed = budgets.iter().any(|b| b.pass() == Some(false))
        || all.iter().any(|m| m.open.errors + m.closed.errors > 0)
        || sts_timed > 0
        || sts_refused() > 0
        || memory_failed
        || (s.tenants > 0 && memory.is_none());
    Ok(i32::from(failed && s.strict))
}

fn environment(s: &Settings) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = s.total_cores;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let pin = match s.cores {
        Some((g, p)) => {
            format!("load generator + simulator (and its STS) pinned to core {g}, proxy under test to core {p}")
        }
        None => "not pinned (needs 2+ cores and taskset)".into(),
    };
    format!(
        "{} · {cores} cores · Linux {} · {pin} · {} s per phase{} · {}\n\nRequest: Bedrock Converse \
         (`POST {MODEL_PATH}`), ~300-byte JSON body, ~400-byte JSON answer, HTTP/1.1 keep-alive.",
        cpu,
        kernel.trim(),
        s.secs,
        if s.quick { " (BENCH_QUICK)" } else { "" },
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    )
}
