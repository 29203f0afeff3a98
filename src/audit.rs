//! Audit (docs/reference.md §9): one JSON line per request on stdout, written when the
//! response body ends, is dropped, or the request fails. The record travels
//! with the response body as an `AuditGuard`, so a client that disconnects
//! mid-stream is still audited.
//!
//! Lines are handed to one writer thread through a bounded queue
//! (`server.audit_queue_lines`, default 16,384 lines), so a slow stdout
//! never stalls a request. When the queue is full (stdout is a pipe nobody
//! reads, or a log shipper that fell far behind) the line is dropped, never
//! waited for: the request completes as usual, the drop is counted (by the
//! sink, and reported to its observer, which the server wires to
//! `tenantgate_audit_dropped_total`) and logged on stderr (the first drop,
//! then every 10,000th). Writing it synchronously instead would block the
//! proxy's worker threads on the same full pipe.
//!
//! The sink does not count anything itself beyond its own drops: whoever
//! wires it (`Sidecar`) hands it an `AuditObserver` that sees every record
//! once, as it is written, and every dropped line.

use serde::Serialize;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

/// The audit record's `decision`.
#[derive(Debug, Serialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    /// Also what a record says before anything allowed the request.
    #[default]
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a response stream ended abnormally: the audit record's
/// `stream_error` (docs/operating.md, "Errors and troubleshooting").
#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StreamEnd {
    /// Upstream sent nothing for `aws.stream_idle_timeout_secs`.
    UpstreamIdleTimeout,
    /// The upstream connection broke mid-body.
    UpstreamReset,
    /// A bad CRC, an oversized frame, or a stream ending inside a frame.
    UpstreamStreamCorrupt,
    /// An agent event cited a source outside the tenant's prefixes.
    UnauthorizedSourceInAnswer,
    /// A possible redaction match stayed undecided past the bound.
    RedactionHoldExceeded,
    /// The client went away before the end.
    ClientDisconnected,
    /// The client stopped reading (no write progress for the timeout).
    ClientStalled,
}

impl StreamEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamEnd::UpstreamIdleTimeout => "upstream_idle_timeout",
            StreamEnd::UpstreamReset => "upstream_reset",
            StreamEnd::UpstreamStreamCorrupt => "upstream_stream_corrupt",
            StreamEnd::UnauthorizedSourceInAnswer => "unauthorized_source_in_answer",
            StreamEnd::RedactionHoldExceeded => "redaction_hold_exceeded",
            StreamEnd::ClientDisconnected => "client_disconnected",
            StreamEnd::ClientStalled => "client_stalled",
        }
    }
}

/// `rate_limit.on_backend_error` (config): what a request gets while the
/// shared rate limit backend does not answer. When it decided, the audit
/// record's `rate_limit_fallback` and the `action` label of
/// `tenantgate_rate_limit_fallback_total`, both [`name`](Self::name).
#[derive(Debug, Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnBackendError {
    /// This process's own limits.
    Local,
    /// Refused, `rate_limit_unavailable`.
    Deny,
    /// Admitted.
    Allow,
}

impl OnBackendError {
    /// The documented name: `local`, `deny` or `allow`.
    pub fn name(self) -> &'static str {
        match self {
            OnBackendError::Local => "local",
            OnBackendError::Deny => "deny",
            OnBackendError::Allow => "allow",
        }
    }
}

#[derive(Debug, Serialize, Default, Clone)]
pub struct AuditRecord {
    pub ts: String,
    pub request_id: String,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub operation: Option<&'static str>,
    pub resource: Option<String>,
    pub decision: Decision,
    pub reason: Option<&'static str>,
    pub status: u16,
    pub upstream_status: Option<u16>,
    pub latency_ms: f64,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub dropped_results: u64,
    pub redactions: u64,
    /// Model or resource actually sent upstream when a rewrite changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_resource: Option<String>,
    /// Set when the response stream ended abnormally (idle timeout, upstream
    /// reset, client gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_error: Option<StreamEnd>,
    /// `on_backend_error` (`local`, `deny`, `allow`) when it decided this
    /// request's admission because the shared rate limit backend did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_fallback: Option<OnBackendError>,
    /// The Cedar policies that decided (their `@id`, else `file:index`);
    /// null when no policy applies to the tenant (docs/reference.md §12).
    pub policies: Option<Vec<String>>,
    /// Guardrail text units an InvokeGuardrailChecks answer reported
    /// (summed over its kinds of checks); absent for other operations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guardrail_text_units: Option<u64>,
}

/// Default of `server.audit_queue_lines`.
pub const DEFAULT_QUEUE_LINES: usize = 16 * 1024;

enum Sink {
    /// The bounded queue to the writer thread (stdout).
    Queue(SyncSender<Vec<u8>>),
    /// In-memory sink for the demo and tests.
    Memory(Arc<Mutex<Vec<AuditRecord>>>),
}

/// Sees what an audit sink writes, besides its own output: every record
/// once (when it is written, whichever sink) and every line the queue
/// dropped. The server wires the process-wide counters in here.
pub trait AuditObserver: Send + Sync {
    /// One finished request; called once per `AuditRecord`.
    fn record(&self, rec: &AuditRecord);
    /// One line dropped because the queue was full (or the writer gone).
    fn dropped(&self);
}

impl<T: AuditObserver + ?Sized> AuditObserver for &'static T {
    fn record(&self, rec: &AuditRecord) {
        (**self).record(rec)
    }

    fn dropped(&self) {
        (**self).dropped()
    }
}

pub struct Audit {
    sink: Sink,
    dropped: AtomicU64,
    /// Set once by whoever wires the sink (`set_observer`); none: records are
    /// only written.
    observer: OnceLock<Arc<dyn AuditObserver>>,
}

fn writer_thread(rx: Receiver<Vec<u8>>) {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(&line);
        // Drain whatever else is queued, then flush once.
        while let Ok(more) = rx.try_recv() {
            let _ = out.write_all(&more);
        }
        let _ = out.flush();
    }
}

static STDOUT_AUDIT: OnceLock<Arc<Audit>> = OnceLock::new();

impl Audit {
    /// The process-wide stdout audit sink (one writer thread) with the
    /// default queue.
    pub fn stdout() -> Arc<Audit> {
        Self::stdout_with_queue(DEFAULT_QUEUE_LINES)
    }

    /// The process-wide stdout audit sink, its queue holding `lines` lines
    /// (the first call in a process decides; `server.audit_queue_lines` is
    /// read at start).
    pub fn stdout_with_queue(lines: usize) -> Arc<Audit> {
        STDOUT_AUDIT
            .get_or_init(|| {
                let (tx, rx) = sync_channel(lines.max(1));
                std::thread::Builder::new()
                    .name("tenantgate-audit".into())
                    .spawn(move || writer_thread(rx))
                    .expect("spawn audit writer thread");
                Arc::new(Audit::queue(tx))
            })
            .clone()
    }

    fn queue(tx: SyncSender<Vec<u8>>) -> Audit {
        Audit { sink: Sink::Queue(tx), dropped: AtomicU64::new(0), observer: OnceLock::new() }
    }

    /// Hands every record this sink writes, and every line it drops, to
    /// `observer` as well. The first observer set stays (the stdout sink is
    /// process-wide, so a second sidecar in the same process finds it set);
    /// returns whether this one was taken.
    pub fn set_observer(&self, observer: Arc<dyn AuditObserver>) -> bool {
        self.observer.set(observer).is_ok()
    }

    /// Lines this sink dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn memory() -> (Arc<Audit>, Arc<Mutex<Vec<AuditRecord>>>) {
        let records = Arc::new(Mutex::new(Vec::new()));
        let audit = Audit { sink: Sink::Memory(records.clone()), dropped: AtomicU64::new(0), observer: OnceLock::new() };
        (Arc::new(audit), records)
    }

    pub fn write(&self, rec: AuditRecord) {
        let observer = self.observer.get();
        if let Some(o) = observer {
            o.record(&rec);
        }
        match &self.sink {
            Sink::Queue(tx) => {
                let mut line = match serde_json::to_vec(&rec) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("audit record not serialisable: {e}");
                        return;
                    }
                };
                line.push(b'\n');
                // Never wait: a full queue (or a writer that is gone) drops
                // the line and counts it.
                if tx.try_send(line).is_err() {
                    if let Some(o) = observer {
                        o.dropped();
                    }
                    let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if n == 1 || n.is_multiple_of(10_000) {
                        tracing::warn!(
                            dropped_total = n,
                            "audit queue full (stdout is not being read fast enough): audit lines dropped; see tenantgate_audit_dropped_total"
                        );
                    }
                }
            }
            Sink::Memory(v) => {
                if let Ok(mut v) = v.lock() {
                    v.push(rec);
                }
            }
        }
    }
}

/// RFC 3339 UTC with milliseconds.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

/// Writes the record exactly once: on `finish`, or on drop.
pub struct AuditGuard {
    record: Option<AuditRecord>,
    started: Instant,
    audit: Arc<Audit>,
}

impl AuditGuard {
    pub fn new(audit: Arc<Audit>, record: AuditRecord, started: Instant) -> Self {
        AuditGuard { record: Some(record), started, audit }
    }

    pub fn record_mut(&mut self) -> Option<&mut AuditRecord> {
        self.record.as_mut()
    }

    pub fn finish(&mut self) {
        if let Some(mut rec) = self.record.take() {
            rec.latency_ms = (self.started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
            self.audit.write(rec);
        }
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        if let Some(rec) = self.record.as_mut() {
            if rec.stream_error.is_none() {
                // Dropped before the body ended: the client went away.
                rec.stream_error = Some(StreamEnd::ClientDisconnected);
            }
        }
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn decisions_and_stream_ends_serialise_as_their_documented_names() {
        use StreamEnd::*;
        for d in [Decision::Allow, Decision::Deny] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        for e in [UpstreamIdleTimeout, UpstreamReset, UpstreamStreamCorrupt, UnauthorizedSourceInAnswer, RedactionHoldExceeded, ClientDisconnected, ClientStalled] {
            assert_eq!(serde_json::to_value(e).unwrap(), e.as_str());
        }
        assert_eq!(Decision::default(), Decision::Deny);
    }

    #[test]
    fn rate_limit_fallback_serialises_as_its_documented_name() {
        for (m, name) in [(OnBackendError::Local, "local"), (OnBackendError::Deny, "deny"), (OnBackendError::Allow, "allow")] {
            assert_eq!(m.name(), name);
            let line = serde_json::to_string(&AuditRecord { rate_limit_fallback: Some(m), ..Default::default() }).unwrap();
            assert!(line.contains(&format!(r#","rate_limit_fallback":"{name}","#)), "{line}");
        }
        let line = serde_json::to_string(&AuditRecord::default()).unwrap();
        assert!(!line.contains("rate_limit_fallback"), "{line}");
    }

    use super::*;

    #[test]
    fn guard_writes_once_and_marks_early_drop() {
        let (audit, recs) = Audit::memory();
        let mut g = AuditGuard::new(audit.clone(), AuditRecord { decision: Decision::Allow, ..Default::default() }, Instant::now());
        g.finish();
        drop(g);
        assert_eq!(recs.lock().unwrap().len(), 1);
        assert!(recs.lock().unwrap()[0].stream_error.is_none());

        let g = AuditGuard::new(audit, AuditRecord { decision: Decision::Allow, ..Default::default() }, Instant::now());
        drop(g);
        let r = recs.lock().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].stream_error, Some(StreamEnd::ClientDisconnected));
    }

    #[test]
    fn record_has_every_spec_field() {
        let v = serde_json::to_value(AuditRecord { decision: Decision::Deny, ..Default::default() }).unwrap();
        for k in [
            "ts", "request_id", "tenant", "user", "operation", "resource", "decision", "reason",
            "status", "upstream_status", "latency_ms", "input_tokens", "output_tokens",
            "dropped_results", "redactions",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert!(v["user"].is_null());
    }

    #[test]
    fn full_queue_drops_and_counts_without_waiting() {
        // A queue of 2 whose reader never reads: the stand-in for stdout
        // being a pipe nobody drains.
        let (tx, rx) = sync_channel(2);
        let audit = Audit::queue(tx);
        // What `Sidecar::start_with_audit` wires: the process metrics.
        assert!(audit.set_observer(Arc::new(crate::metrics::global())));
        let metric_before = metric_value();
        let started = Instant::now();
        for _ in 0..5 {
            audit.write(AuditRecord { decision: Decision::Allow, ..Default::default() });
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "writing must never wait on the queue");
        assert_eq!(audit.dropped(), 3);
        assert!(metric_value() >= metric_before + 3.0, "tenantgate_audit_dropped_total must count the drops");
        // The two that fitted are whole lines, in order.
        let queued: Vec<Vec<u8>> = rx.try_iter().collect();
        assert_eq!(queued.len(), 2);
        assert!(queued.iter().all(|l| l.ends_with(b"\n") && serde_json::from_slice::<serde_json::Value>(l).is_ok()));
        // A writer that is gone drops (and counts) too, rather than blocking.
        drop(rx);
        audit.write(AuditRecord { decision: Decision::Deny, ..Default::default() });
        assert_eq!(audit.dropped(), 4);
    }

    #[derive(Default)]
    struct Counting {
        records: AtomicU64,
        dropped: AtomicU64,
    }

    impl AuditObserver for Counting {
        fn record(&self, _rec: &AuditRecord) {
            self.records.fetch_add(1, Ordering::Relaxed);
        }

        fn dropped(&self) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn observer_sees_each_record_once_and_each_drop() {
        let (audit, recs) = Audit::memory();
        let seen = Arc::new(Counting::default());
        assert!(audit.set_observer(seen.clone()));
        assert!(!audit.set_observer(Arc::new(Counting::default())), "the first observer stays");
        let mut g = AuditGuard::new(audit.clone(), AuditRecord { decision: Decision::Allow, ..Default::default() }, Instant::now());
        g.finish();
        drop(g);
        assert_eq!(recs.lock().unwrap().len(), 1);
        assert_eq!(seen.records.load(Ordering::Relaxed), 1);

        let (tx, _rx) = sync_channel(1);
        let audit = Audit::queue(tx);
        let seen = Arc::new(Counting::default());
        audit.set_observer(seen.clone());
        for _ in 0..3 {
            audit.write(AuditRecord { decision: Decision::Deny, ..Default::default() });
        }
        assert_eq!(seen.records.load(Ordering::Relaxed), 3);
        assert_eq!(seen.dropped.load(Ordering::Relaxed), 2);
        assert_eq!(audit.dropped(), 2);
    }

    fn metric_value() -> f64 {
        let text = crate::metrics::global().render(None, crate::metrics::Format::Prometheus);
        text.lines()
            .find_map(|l| l.strip_prefix("tenantgate_audit_dropped_total "))
            .and_then(|v| v.trim().parse().ok())
            .expect("tenantgate_audit_dropped_total in /metrics")
    }
}
