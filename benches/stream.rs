//! Benchmark: ConverseStream through the sidecar with response redaction on
//! (the default identity-id pattern) versus off (`patterns = []`), and direct
//! to the same upstream: time to first byte, and CPU per MB of event stream.
//! Run with `bash bench/run.sh` (all benchmarks) or
//! `cargo bench --bench stream`.
//!
//! The upstream is an in-process event-stream server: `messageStart`, then
//! `contentBlockDelta` events with 10-40 bytes of text each (the size of
//! real model deltas), one identity id split across two deltas every 200
//! deltas, then the closing events. Both sidecars run the release binary
//! pinned to core 1 (one at a time busy), this process on core 0.
//!
//! - TTFB: sequential requests of a 50-delta stream, the three targets
//!   in all six orders in turn; time from sending the request to the
//!   first body frame (the `messageStart` event) at the client.
//! - CPU per MB: sequential requests of a ~2 MB stream read to the end; the
//!   sidecar's utime+stime over the phase divided by the MB it sent. Three
//!   rounds per variant, interleaved; medians reported.
//!
//! Environment: BENCH_QUICK=1 (fewer samples), BENCH_TTFB_N (400),
//! BENCH_MB_REQS (8), BENCH_BIN (measure another build of the sidecar).

#[allow(dead_code)]
#[path = "proxy/procs.rs"]
mod procs;

use aws_smithy_eventstream::frame::write_message_to;
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use procs::{cpu_us, free_port, pinned, wait_ready, Proc, TempDir};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ID: &str = "us-west-2:12345678-abcd-1234-462b-123456789abc";
const PATH: &str = "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream";
const WORDS: &[&str] = &[
    "The", " quarterly", " report", " shows", " steady", " growth", " in", " the", " northern", " region,",
    " with", " revenue", " up", " 12", " percent", " and", " costs", " flat.", " Customers", " renewed",
    " at", " a", " higher", " rate", " than", " last", " year;", " churn", " fell", " again.",
];

fn frame(event: &str, payload: String) -> Bytes {
    let msg = Message::new(payload.into_bytes())
        .add_header(Header::new(":message-type", HeaderValue::String("event".into())))
        .add_header(Header::new(":event-type", HeaderValue::String(event.to_string().into())))
        .add_header(Header::new(":content-type", HeaderValue::String("application/json".into())));
    let mut out = Vec::new();
    write_message_to(&msg, &mut out).expect("encodes");
    Bytes::from(out)
}

/// The frames of one answer with `deltas` text deltas.
fn answer(deltas: usize) -> Vec<Bytes> {
    let mut out = vec![frame("messageStart", r#"{"role":"assistant"}"#.into())];
    let mut i = 0;
    while i < deltas {
        let text = if i % 200 == 199 {
            // An identity id split across two deltas.
            i += 1;
            out.push(delta(&format!(" owner {}", &ID[..20])));
            ID[20..].to_string()
        } else {
            let w = WORDS[i % WORDS.len()];
            let v = WORDS[(i * 7 + 3) % WORDS.len()];
            format!("{w}{v}")
        };
        out.push(delta(&text));
        i += 1;
    }
    out.push(frame("contentBlockStop", r#"{"contentBlockIndex":0}"#.into()));
    out.push(frame("messageStop", r#"{"stopReason":"end_turn"}"#.into()));
    out.push(frame(
        "metadata",
        r#"{"usage":{"inputTokens":10,"outputTokens":500,"totalTokens":510},"metrics":{"latencyMs":5}}"#.into(),
    ));
    out
}

fn delta(text: &str) -> Bytes {
    frame(
        "contentBlockDelta",
        serde_json::json!({"contentBlockIndex": 0, "delta": {"text": text}}).to_string(),
    )
}

/// The event-stream upstream: every POST gets the answer of the current size.
async fn upstream(size: Arc<AtomicUsize>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let small = Arc::new(answer(50));
    let large = Arc::new(answer(16_000));
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { continue };
            let (size, small, large) = (size.clone(), small.clone(), large.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let frames = if size.load(Ordering::Relaxed) == 0 { small.clone() } else { large.clone() };
                    async move {
                        let _ = req.into_body().collect().await;
                        let body = Frames { frames, next: 0 };
                        Ok::<_, Infallible>(
                            hyper::Response::builder()
                                .header("content-type", "application/vnd.amazon.eventstream")
                                .header("x-amzn-requestid", "bench")
                                .body(body)
                                .expect("response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(sock), svc).await;
            });
        }
    });
    addr
}

/// The answer's frames, one body chunk each, all ready at once.
struct Frames {
    frames: Arc<Vec<Bytes>>,
    next: usize,
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let i = self.next;
        self.next += 1;
        std::task::Poll::Ready(self.frames.get(i).map(|b| Ok(Frame::data(b.clone()))))
    }
}

struct Sidecar {
    proc: Proc,
    addr: SocketAddr,
}

fn start_sidecar(bin: &Path, dir: &Path, core: Option<usize>, upstream: SocketAddr, redact: bool) -> Result<Sidecar, String> {
    let (port, admin) = (free_port()?, free_port()?);
    let patterns = if redact {
        r#"patterns = ['(?:us|eu|ap|sa|ca|me|af|il|mx)(?:-gov)?-[a-z]+-\d:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}']"#
    } else {
        "patterns = []"
    };
    let config = format!(
        r#"[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin}"

[identity]
mode = "static"
tenant = "acme"

[aws]
region = "us-east-1"
[aws.endpoints]
bedrock_runtime = "http://{upstream}"

[credentials]
source = "static"

[redaction]
{patterns}

[tenants.acme]
models = ["anthropic.claude-3-haiku-*"]
[tenants.acme.static_credentials]
access_key_id_env = "BENCH_AKID"
secret_access_key_env = "BENCH_SECRET"
[tenant_defaults.rate_limit]
requests_per_second = 1000000
burst = 1000000
max_concurrent = 4096
tokens_per_minute = 0
"#
    );
    let name = if redact { "redact-on.toml" } else { "redact-off.toml" };
    let path = dir.join(name);
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    let mut cmd = pinned(core, bin);
    cmd.arg("run").arg("--config").arg(&path);
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("AWS_")) {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("BENCH_AKID", "AKIABENCHSTREAM00001")
        .env("BENCH_SECRET", "benchstreamsecret/abcdefghijklmnopqrstu")
        .env("TENANTGATE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start {}: {e}", bin.display()))?;
    let mut proc = Proc { child, name: "tenantgate" };
    wait_ready(&mut proc, SocketAddr::from(([127, 0, 0, 1], admin)), Some("/readyz"))?;
    Ok(Sidecar { proc, addr: SocketAddr::from(([127, 0, 0, 1], port)) })
}

thread_local! {
    /// Time to the response head of the last `fetch`, µs.
    static HEAD_US: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// One request: (time to the first body frame, body bytes, the body).
async fn fetch(client: &HttpClient, addr: SocketAddr, keep: bool) -> Result<(Duration, usize, Vec<u8>), String> {
    let req = hyper::Request::post(format!("http://{addr}{PATH}"))
        .header("x-tenant-token", "static")
        .header("content-type", "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let resp = client.request(req).await.map_err(|e| e.to_string())?;
    HEAD_US.with(|h| h.set(t0.elapsed().as_secs_f64() * 1e6));
    if !resp.status().is_success() {
        return Err(format!("status {} from {addr}", resp.status()));
    }
    let mut body = resp.into_body();
    let mut first = None;
    let mut n = 0;
    let mut kept = Vec::new();
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| e.to_string())?;
        if let Ok(d) = f.into_data() {
            first.get_or_insert_with(|| t0.elapsed());
            n += d.len();
            if keep {
                kept.extend_from_slice(&d);
            }
        }
    }
    Ok((first.unwrap_or_else(|| t0.elapsed()), n, kept))
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    pct(&mut v, 0.5)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("benches/stream.rs: skipped (run `bash bench/run.sh` or `cargo bench --bench stream`)");
        return;
    }
    if let Err(e) = run() {
        eprintln!("stream bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| v == "1");
    let ttfb_n: usize = std::env::var("BENCH_TTFB_N").ok().and_then(|v| v.parse().ok()).unwrap_or(if quick { 100 } else { 400 });
    let mb_reqs: usize = std::env::var("BENCH_MB_REQS").ok().and_then(|v| v.parse().ok()).unwrap_or(if quick { 3 } else { 8 });
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let pin = cores >= 2 && std::process::Command::new("taskset").arg("-V").output().is_ok();
    if pin {
        let _ = std::process::Command::new("taskset").args(["-pc", "0", &std::process::id().to_string()]).output();
    }
    // BENCH_BIN: another build of the sidecar (an earlier commit's, for a
    // before/after comparison on the same machine).
    let bin_override = std::env::var_os("BENCH_BIN");
    let bin = bin_override.as_deref().map_or_else(|| Path::new(env!("CARGO_BIN_EXE_tenantgate")), Path::new);
    let dir = TempDir::new("stream")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(async {
        let size = Arc::new(AtomicUsize::new(0));
        let up = upstream(size.clone()).await;
        let core = pin.then_some(1);
        let on = start_sidecar(bin, &dir.0, core, up, true)?;
        let off = start_sidecar(bin, &dir.0, core, up, false)?;
        let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

        // Correctness first: redaction really happens on one, not the other.
        size.store(1, Ordering::Relaxed);
        let (_, _, body_on) = fetch(&client, on.addr, true).await?;
        let (_, _, body_off) = fetch(&client, off.addr, true).await?;
        let ids_off = count(&body_off, &ID.as_bytes()[20..]);
        let (red_on, leak_on) = (count(&body_on, b"[redacted]"), count(&body_on, &ID.as_bytes()[20..]));
        println!("check: redaction off forwards {ids_off} id halves; on: {red_on} redactions, {leak_on} id halves left");
        if red_on == 0 || leak_on != 0 || ids_off == 0 {
            return Err("redaction check failed".into());
        }
        let stream_mb = body_on.len() as f64 / 1e6;

        // TTFB, interleaved.
        size.store(0, Ordering::Relaxed);
        let targets = [("direct", up), ("redaction off", off.addr), ("redaction on", on.addr)];
        for (_, a) in &targets {
            for _ in 0..20 {
                fetch(&client, *a, false).await?;
            }
        }
        let mut ttfb: Vec<Vec<f64>> = vec![Vec::new(); 3];
        let mut head: Vec<Vec<f64>> = vec![Vec::new(); 3];
        // All six orders in turn: each target follows each other one (and
        // an idle proxy core) equally often.
        const ORDERS: [[usize; 3]; 6] = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        for k in 0..ttfb_n {
            for &i in &ORDERS[k % 6] {
                let (t, _, _) = fetch(&client, targets[i].1, false).await?;
                ttfb[i].push(t.as_secs_f64() * 1e6);
                head[i].push(HEAD_US.with(|h| h.get()));
            }
        }

        // CPU per MB, three interleaved rounds per variant.
        size.store(1, Ordering::Relaxed);
        let mut cpu_per_mb: Vec<Vec<f64>> = vec![Vec::new(); 2];
        let mut mb_per_s: Vec<Vec<f64>> = vec![Vec::new(); 2];
        for _ in 0..3 {
            for (i, sc) in [&off, &on].into_iter().enumerate() {
                let c0 = cpu_us(sc.proc.pid()).ok_or("cannot read /proc")?;
                let t0 = Instant::now();
                let mut bytes = 0;
                for _ in 0..mb_reqs {
                    bytes += fetch(&client, sc.addr, false).await?.1;
                }
                let wall = t0.elapsed().as_secs_f64();
                let c1 = cpu_us(sc.proc.pid()).ok_or("cannot read /proc")?;
                let mb = bytes as f64 / 1e6;
                cpu_per_mb[i].push((c1 - c0) as f64 / 1000.0 / mb);
                mb_per_s[i].push(mb / wall);
            }
        }

        let mut out = String::new();
        out.push_str(&format!(
            "## ConverseStream: redaction on vs off ({} TTFB samples per target, {:.2} MB streams x {mb_reqs} x 3 rounds{})\n\n",
            ttfb_n,
            stream_mb,
            if pin { ", sidecar pinned to core 1" } else { "" }
        ));
        out.push_str("| target | response head p50 (µs) | TTFB p50 (µs) | TTFB p90 (µs) | TTFB p99 (µs) |\n|---|---:|---:|---:|---:|\n");
        let mut p50 = [0.0; 3];
        for (i, (name, _)) in targets.iter().enumerate() {
            p50[i] = pct(&mut ttfb[i], 0.5);
            let (p90, p99) = (pct(&mut ttfb[i], 0.9), pct(&mut ttfb[i], 0.99));
            let h50 = pct(&mut head[i], 0.5);
            out.push_str(&format!("| {name} | {h50:.0} | {:.0} | {p90:.0} | {p99:.0} |\n", p50[i]));
        }
        let (c_off, c_on) = (median(cpu_per_mb[0].clone()), median(cpu_per_mb[1].clone()));
        let (t_off, t_on) = (median(mb_per_s[0].clone()), median(mb_per_s[1].clone()));
        out.push_str(&format!(
            "\n| sidecar | CPU per MB (ms) | MB/s (one stream at a time) |\n|---|---:|---:|\n| redaction off | {c_off:.2} | {t_off:.0} |\n| redaction on | {c_on:.2} | {t_on:.0} |\n"
        ));
        out.push_str(&format!(
            "\nRatios on/off: TTFB p50 {:.2}x (added over direct: off {:.0} µs, on {:.0} µs); CPU per MB {:.2}x\n",
            p50[2] / p50[1],
            p50[1] - p50[0],
            p50[2] - p50[0],
            c_on / c_off
        ));
        println!("\n{out}");
        let _ = std::fs::create_dir_all("bench/results");
        let _ = std::fs::write("bench/results/stream.md", &out);
        drop(on);
        drop(off);
        Ok(())
    })
}
