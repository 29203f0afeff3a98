//! The load generator: an open loop at a fixed rate with latency measured
//! from each request's intended send time (coordinated omission corrected,
//! as wrk2 does), and a closed loop of N keep-alive connections for maximum
//! throughput. Both run on the current (single-threaded) tokio runtime.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// One thing to load: where, and the exact request (same bytes for every target).
#[derive(Clone)]
pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub path: String,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// Rotated per request (e.g. one token per user); may be empty.
    pub rotating: Vec<(http::HeaderName, http::HeaderValue)>,
    pub body: Bytes,
}

impl Target {
    fn request(&self, uri: String, i: u64) -> http::Request<Full<Bytes>> {
        let mut b = http::Request::post(uri);
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        if !self.rotating.is_empty() {
            let (k, v) = &self.rotating[(i % self.rotating.len() as u64) as usize];
            b = b.header(k, v);
        }
        // Only fails on invalid parts, which `Target` cannot hold.
        b.body(Full::new(self.body.clone())).unwrap_or_default()
    }
}

#[derive(Debug, Default, Clone)]
pub struct OpenResult {
    /// Nanoseconds from intended send time to the end of the response body.
    pub latencies: Vec<u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Largest lag of the pacer behind schedule (a sign of an overloaded generator).
    pub max_pacer_lag: Duration,
}

impl OpenResult {
    /// Sorts the latencies; call once all slices are in.
    pub fn finish(&mut self) {
        self.latencies.sort_unstable();
    }

    /// Percentile (0..=100) in microseconds; latencies must be sorted.
    pub fn pct_us(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies.len() as f64).ceil() as usize;
        let idx = rank.clamp(1, self.latencies.len()) - 1;
        self.latencies[idx] as f64 / 1000.0
    }
}

async fn one(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
) -> Result<(), String> {
    let fut = async {
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| "timeout".to_string())?
}

/// An open-loop load on one target, run in slices (so targets can be
/// interleaved) over one keep-alive connection pool.
pub struct OpenLoop {
    client: Client<HttpConnector, Full<Bytes>>,
    uri: String,
    target: Target,
    next: u64,
}

impl OpenLoop {
    pub fn new(target: &Target) -> OpenLoop {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(http);
        let uri = format!("http://{}{}", target.addr, target.path);
        OpenLoop {
            client,
            uri,
            target: target.clone(),
            next: 0,
        }
    }

    /// `rate` requests/s for `duration`, results appended to `out`. A pacer
    /// thread sleeps precisely until each intended send time (tokio's timer
    /// has 1 ms granularity, too coarse at 1,000 rps) and hands the intended
    /// instant to the runtime, which sends it on a pooled connection.
    pub async fn run(&mut self, rate: u32, duration: Duration, out: &mut OpenResult) {
        let total = (u64::from(rate) * duration.as_millis() as u64 / 1000).max(1);
        let interval = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Instant>();
        let start = Instant::now() + Duration::from_millis(5);
        let pacer = std::thread::spawn(move || {
            for i in 0..total {
                let at = start + interval.mul_f64(i as f64);
                let now = Instant::now();
                if at > now {
                    std::thread::sleep(at - now);
                }
                if tx.send(at).is_err() {
                    break;
                }
            }
        });
        let mut handles = Vec::with_capacity(total as usize);
        while let Some(intended) = rx.recv().await {
            out.max_pacer_lag = out
                .max_pacer_lag
                .max(Instant::now().saturating_duration_since(intended));
            let req = self.target.request(self.uri.clone(), self.next);
            self.next += 1;
            let client = self.client.clone();
            handles.push(tokio::spawn(async move {
                one(&client, req)
                    .await
                    .map(|()| intended.elapsed().as_nanos() as u64)
            }));
        }
        let _ = pacer.join();
        for h in handles {
            match h.await {
                Ok(Ok(ns)) => out.latencies.push(ns),
                Ok(Err(e)) => {
                    out.errors += 1;
                    out.first_error.get_or_insert(e);
                }
                Err(e) => {
                    out.errors += 1;
                    out.first_error.get_or_insert(e.to_string());
                }
            }
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct ClosedResult {
    pub requests: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl ClosedResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `conns` connections each sending back-to-back for `warmup + duration`;
/// only the `duration` window counts. `on_window(start|end)` is called at the
/// window's edges (to read the sidecar's CPU counters there).
pub async fn closed_loop(
    target: &Target,
    conns: usize,
    warmup: Duration,
    duration: Duration,
    mut on_window: impl FnMut(bool),
) -> ClosedResult {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let mut workers = Vec::new();
    for w in 0..conns {
        let (t, done, errors, stop, first_error) = (
            target.clone(),
            done.clone(),
            errors.clone(),
            stop.clone(),
            first_error.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut i = w as u64;
            while !stop.load(Ordering::Relaxed) {
                // One connection per worker, reopened after an error.
                let mut sender = match connect(t.addr).await {
                    Ok(s) => s,
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        note_error(&first_error, e);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    i += conns as u64;
                    match send_on(&mut sender, t.request(t.path.clone(), i)).await {
                        Ok(()) => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            note_error(&first_error, e);
                            break;
                        }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(warmup).await;
    let (n0, e0, t0) = (
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        Instant::now(),
    );
    on_window(true);
    tokio::time::sleep(duration).await;
    let (n1, e1, elapsed) = (
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        t0.elapsed(),
    );
    on_window(false);
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, w).await;
    }
    let first_error = first_error.lock().ok().and_then(|f| f.clone());
    ClosedResult {
        requests: n1 - n0,
        errors: e1 - e0,
        first_error,
        elapsed,
    }
}

/// One request per entry `range` of `target.rotating` (e.g. one token per
/// tenant), each sent exactly once, over `conns` keep-alive connections.
pub async fn each_once(
    target: &Target,
    range: std::ops::Range<usize>,
    conns: usize,
) -> ClosedResult {
    let target = Arc::new(target.clone());
    let next = Arc::new(AtomicU64::new(range.start as u64));
    let end = range.end as u64;
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(std::sync::Mutex::new(None::<String>));
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..conns.max(1) {
        let (t, next, done, errors, first_error) = (
            target.clone(),
            next.clone(),
            done.clone(),
            errors.clone(),
            first_error.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut sender = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return;
                }
                if sender.is_none() {
                    match connect(t.addr).await {
                        Ok(s) => sender = Some(s),
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            note_error(&first_error, e);
                            continue;
                        }
                    }
                }
                let Some(s) = sender.as_mut() else { continue };
                match send_on(s, t.request(t.path.clone(), i)).await {
                    Ok(()) => {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        note_error(&first_error, e);
                        sender = None;
                    }
                }
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let first_error = first_error.lock().ok().and_then(|f| f.clone());
    ClosedResult {
        requests: done.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        first_error,
        elapsed: t0.elapsed(),
    }
}

fn note_error(first: &std::sync::Mutex<Option<String>>, e: String) {
    if let Ok(mut f) = first.lock() {
        f.get_or_insert(e);
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Sender, String> {
    let stream = tokio::time::timeout(REQUEST_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timeout".to_string())?
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// `req` has an origin-form URI; `host` comes from the target's headers.
async fn send_on(sender: &mut Sender, req: http::Request<Full<Bytes>>) -> Result<(), String> {
    let fut = async {
        sender.ready().await.map_err(|e| format!("ready: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status();
        resp.into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("status {status}"))
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, fut)
        .await
        .map_err(|_| "timeout".to_string())?
}
