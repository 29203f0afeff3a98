//! Audit (SPEC §9): one JSON line per request on stdout, written when the
//! response body ends, is dropped, or the request fails. The record travels
//! with the response body as an `AuditGuard`, so a client that disconnects
//! mid-stream is still audited.
//!
//! Lines are handed to one writer thread through a bounded queue, so a slow
//! stdout never stalls a request; if the queue is ever full the line is
//! written synchronously instead of being dropped.

use serde::Serialize;
use std::io::Write;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime};

#[derive(Debug, Serialize, Default, Clone)]
pub struct AuditRecord {
    pub ts: String,
    pub request_id: String,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub operation: Option<&'static str>,
    pub resource: Option<String>,
    pub decision: &'static str,
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
    pub stream_error: Option<&'static str>,
    /// `on_backend_error` (`local`, `deny`, `allow`) when it decided this
    /// request's admission because the shared rate limit backend did not answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_fallback: Option<&'static str>,
}

enum Sink {
    Stdout(SyncSender<Vec<u8>>),
    /// In-memory sink for the demo and tests.
    Memory(Arc<Mutex<Vec<AuditRecord>>>),
}

pub struct Audit {
    sink: Sink,
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
    /// The process-wide stdout audit sink (one writer thread).
    pub fn stdout() -> Arc<Audit> {
        STDOUT_AUDIT
            .get_or_init(|| {
                let (tx, rx) = sync_channel(16 * 1024);
                std::thread::Builder::new()
                    .name("tenantgate-audit".into())
                    .spawn(move || writer_thread(rx))
                    .expect("spawn audit writer thread");
                Arc::new(Audit { sink: Sink::Stdout(tx) })
            })
            .clone()
    }

    pub fn memory() -> (Arc<Audit>, Arc<Mutex<Vec<AuditRecord>>>) {
        let records = Arc::new(Mutex::new(Vec::new()));
        (Arc::new(Audit { sink: Sink::Memory(records.clone()) }), records)
    }

    pub fn write(&self, rec: AuditRecord) {
        crate::metrics::global().observe(&rec);
        match &self.sink {
            Sink::Stdout(tx) => {
                let mut line = match serde_json::to_vec(&rec) {
                    Ok(l) => l,
                    Err(e) => {
                        tracing::error!("audit record not serialisable: {e}");
                        return;
                    }
                };
                line.push(b'\n');
                match tx.try_send(line) {
                    Ok(()) => {}
                    Err(TrySendError::Full(line)) | Err(TrySendError::Disconnected(line)) => {
                        let mut out = std::io::stdout().lock();
                        let _ = out.write_all(&line);
                        let _ = out.flush();
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
                rec.stream_error = Some("client_disconnected");
            }
        }
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_writes_once_and_marks_early_drop() {
        let (audit, recs) = Audit::memory();
        let mut g = AuditGuard::new(audit.clone(), AuditRecord { decision: "allow", ..Default::default() }, Instant::now());
        g.finish();
        drop(g);
        assert_eq!(recs.lock().unwrap().len(), 1);
        assert!(recs.lock().unwrap()[0].stream_error.is_none());

        let g = AuditGuard::new(audit, AuditRecord { decision: "allow", ..Default::default() }, Instant::now());
        drop(g);
        let r = recs.lock().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].stream_error, Some("client_disconnected"));
    }

    #[test]
    fn record_has_every_spec_field() {
        let v = serde_json::to_value(AuditRecord { decision: "deny", ..Default::default() }).unwrap();
        for k in [
            "ts", "request_id", "tenant", "user", "operation", "resource", "decision", "reason",
            "status", "upstream_status", "latency_ms", "input_tokens", "output_tokens",
            "dropped_results", "redactions",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert!(v["user"].is_null());
    }
}
