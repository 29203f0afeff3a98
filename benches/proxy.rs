//! Benchmark: Bedrock Converse through the tenantgate sidecar vs direct to the
//! same local upstream (the built-in AWS simulator) vs a plain nginx
//! reverse-proxy hop. Run with `bash bench/run.sh` (see bench/README.md).
//!
//! Layout on a 2-core machine: this process (load generator + simulator, one
//! thread) on core 0; the proxy under test (tenantgate release binary, or
//! nginx with one worker) on core 1. Settings come from the environment:
//! BENCH_SECS (10), BENCH_RATE (1000), BENCH_CONNS (16), BENCH_QUIET_WAIT (30), NGINX_BIN
//! (nginx on PATH or /usr/sbin/nginx), BENCH_STRICT=1 (exit 1 on a FAIL).

#[path = "proxy/loadgen.rs"]
mod loadgen;
#[path = "proxy/phases.rs"]
mod phases;
#[path = "proxy/procs.rs"]
mod procs;
#[path = "proxy/report.rs"]
mod report;

use bytes::Bytes;
use loadgen::Target;
use procs::TempDir;
use report::Budget;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tenantgate::demo::sim::{Sim, SimOptions};
use tenantgate::secret::SecretString;

const AKID: &str = "AKIABENCHACME0000001";
const SECRET: &str = "benchsecret/abcdefghijklmnopqrstuvwxyz01";
const MODEL_PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse";
const USERS: usize = 64;

struct Settings {
    secs: u64,
    rate: u32,
    conns: usize,
    strict: bool,
    nginx: Option<PathBuf>,
    /// (load generator core, proxy core) when pinning is possible.
    cores: Option<(usize, usize)>,
    /// Cores of the machine (read before this process pins itself).
    total_cores: usize,
    /// Longest wait for a quiet machine before each target, seconds.
    quiet_wait: u64,
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
        Settings {
            secs: env_num("BENCH_SECS", 10u64).clamp(1, 120),
            rate: env_num("BENCH_RATE", 1000u32).clamp(1, 100_000),
            conns: env_num("BENCH_CONNS", 16usize).clamp(1, 1024),
            strict: std::env::var("BENCH_STRICT").is_ok_and(|v| v == "1"),
            nginx: find_nginx(),
            cores: (cores >= 2 && taskset).then_some((0, 1)),
            total_cores: cores,
            quiet_wait: env_num("BENCH_QUIET_WAIT", 30u64).min(600),
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
    rt.block_on(run(s))
}

/// RS256 key pair from openssl: (private PEM, public PEM).
fn rsa_keys(dir: &Path) -> Result<(String, String), String> {
    let key = dir.join("jwt-private.pem");
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let k = key.display().to_string();
    let p = dir.join("jwt-public-src.pem").display().to_string();
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &k,
    ])?;
    run(&["pkey", "-in", &k, "-pubout", "-out", &p])?;
    let read = |p: &str| std::fs::read_to_string(p).map_err(|e| e.to_string());
    Ok((read(&k)?, read(&p)?))
}

fn tokens(private_pem: &str) -> Result<Vec<String>, String> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_pem.as_bytes())
        .map_err(|e| e.to_string())?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    (0..USERS)
        .map(|u| {
            let claims = serde_json::json!({
                "iss": "https://idp.bench.example/", "aud": "bench-app", "sub": format!("user-{u}"),
                "tenant_id": "acme", "iat": now, "exp": now + 3600,
            });
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
                &claims,
                &key,
            )
            .map_err(|e| e.to_string())
        })
        .collect()
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
async fn check_signing(sim: &Sim, t: &Target) -> Result<(), String> {
    let before = sim.stats.signatures_ok.load(Ordering::Relaxed);
    let mut r = loadgen::OpenResult::default();
    loadgen::OpenLoop::new(t)
        .run(200, Duration::from_millis(100), &mut r)
        .await;
    let ok = sim.stats.signatures_ok.load(Ordering::Relaxed) - before;
    let failed = sim.stats.signatures_failed.load(Ordering::Relaxed);
    if r.errors > 0 || failed > 0 || ok != r.latencies.len() as u64 || ok == 0 {
        return Err(format!(
            "sidecar signing check failed: {ok} signatures verified, {failed} rejected, {} errors ({:?})",
            r.errors, r.first_error
        ));
    }
    eprintln!("bench: sidecar signing check: {ok}/{ok} SigV4 signatures verified by the simulator");
    Ok(())
}

async fn run(s: Settings) -> Result<i32, String> {
    let dir = TempDir::new("run")?;
    let (private_pem, public_pem) = rsa_keys(&dir.0)?;
    let tokens = tokens(&private_pem)?;
    let sim = Sim::start(SimOptions {
        credentials: vec![(AKID.into(), SecretString::new(SECRET.into()))],
        verify_signatures: true,
        record_limit: 0,
    })
    .await
    .map_err(|e| format!("simulator: {e}"))?;
    let proxy_core = s.cores.map(|c| c.1);
    let bin = Path::new(env!("CARGO_BIN_EXE_tenantgate"));
    let (mut sidecar, sidecar_addr) = procs::start_sidecar(
        bin,
        &dir.0,
        proxy_core,
        sim.addr,
        &public_pem,
        (AKID, SECRET),
    )?;
    let sidecar_target = target("tenantgate", sidecar_addr, &tokens)?;
    check_signing(&sim, &sidecar_target).await?;
    sim.set_verify(false);

    let mut notes = vec![
        "Upstream: the built-in AWS simulator (`src/demo/sim.rs`) in the load generator's process; \
         SigV4 verification is off while timing (direct and nginx requests are unsigned), \
         after a check that the sidecar's signatures verify."
            .to_string(),
        format!(
            "Sidecar: release binary, RS256 JWT from a PEM file, {USERS} users' tokens in rotation \
             (each verified once, then served from the verified-token cache), static credentials, \
             Converse body rewritten (requestMetadata), audit lines written to /dev/null."
        ),
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
        target: sidecar_target,
        cpu_pid: Some(sidecar.pid()),
    });
    let plan = phases::Plan {
        secs: s.secs,
        rate: s.rate,
        conns: s.conns,
        quiet_wait: Duration::from_secs(s.quiet_wait),
    };
    let all = phases::measure_all(&subjects, &plan).await;
    let sidecar_alive = matches!(sidecar.child.try_wait(), Ok(None));
    drop(nginx);
    drop(sidecar);
    sim.shutdown().await;

    let direct_p99 = all[0].open.pct_us(99.0);
    let tg = all.last().ok_or("no results")?;
    if let Some(u) = tg.utilisation() {
        if u < 0.9 {
            notes.push(format!(
                "The sidecar used only {:.0}% of its core in the closed loop: the load generator \
                 was the bottleneck, so req/s understate the sidecar's capacity (CPU µs/req is still exact).",
                u * 100.0
            ));
        }
    }
    if !sidecar_alive {
        notes.push("The sidecar process exited during the run.".into());
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
    let budgets = [
        Budget {
            what: format!("added p99 at {} req/s", s.rate),
            value: Some(tg.open.pct_us(99.0) - direct_p99),
            unit: "µs",
            limit: 1000.0,
        },
        Budget {
            what: "CPU per request at saturation".into(),
            value: tg.cpu_per_req_us(),
            unit: "µs",
            limit: 60.0,
        },
        Budget {
            what: "peak RSS (VmHWM)".into(),
            value: tg.peak_rss_kb.map(|k| k as f64 / 1024.0),
            unit: "MB",
            limit: 30.0,
        },
    ];
    let header = environment(&s);
    let md = report::render(&header, s.rate, s.conns, &all, &budgets, &notes);
    println!("\n{md}");
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/results");
    if std::fs::create_dir_all(&out)
        .and_then(|()| std::fs::write(out.join("latest.md"), &md))
        .is_ok()
    {
        eprintln!("bench: written to bench/results/latest.md");
    }
    let failed = budgets.iter().any(|b| b.pass() == Some(false))
        || all.iter().any(|m| m.open.errors + m.closed.errors > 0);
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
            format!("load generator + simulator pinned to core {g}, proxy under test to core {p}")
        }
        None => "not pinned (needs 2+ cores and taskset)".into(),
    };
    format!(
        "{} · {cores} cores · Linux {} · {pin} · {} s per phase · {}\n\nRequest: Bedrock Converse \
         (`POST {MODEL_PATH}`), ~300-byte JSON body, ~400-byte JSON answer, HTTP/1.1 keep-alive.",
        cpu,
        kernel.trim(),
        s.secs,
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    )
}
