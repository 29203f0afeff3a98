//! Bodies: the bounded request-body reader and the streaming response body
//! that enforces the upstream idle timeout and carries the audit guard.

use crate::audit::{AuditGuard, StreamEnd};
#[cfg(test)]
use crate::audit::Decision;
use crate::conn::ClientConn;
use crate::budget::{BufferLimits, Reservation};
use crate::filter::eventstream::StreamRedactor;
use crate::ratelimit::Permit;
use crate::usage::UsageTap;
use crate::error::ProxyError;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type of every response the proxy listener sends.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(b: impl Into<Bytes>) -> ProxyBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Read a request body of at most `limit` bytes. A declared length over the
/// limit is refused before reading anything; a chunked body is refused as
/// soon as it crosses the limit (docs/reference.md §3 `max_body_bytes`).
///
/// The buffer is charged to `mem` before it is allocated (docs/reference.md §3
/// `max_buffered_bytes`): a declared length whole and up front, else each
/// growth of the buffer as chunks arrive. A charge the budget refuses ends
/// the read (429 `memory_limited` / 503 `overloaded`).
pub async fn read_limited<B>(mut body: B, limit: u64, mem: &mut Reservation, limits: &BufferLimits) -> Result<Bytes, ProxyError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if body.size_hint().lower() > limit {
        return Err(ProxyError::BodyTooLarge { limit });
    }
    let declared = body.size_hint().exact();
    let first = declared.unwrap_or(0).min(limit);
    mem.grow_to(first, limits)?;
    let mut buf = BytesMut::with_capacity(first as usize);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ProxyError::InvalidParameter(format!("reading request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            let need = buf.len() as u64 + data.len() as u64;
            if need > limit {
                return Err(ProxyError::BodyTooLarge { limit });
            }
            if need > buf.capacity() as u64 {
                // Grow by doubling (from 16 KiB), charged before allocating.
                let cap = need.max(buf.capacity() as u64 * 2).max(16 * 1024).min(limit);
                mem.grow_to(cap, limits)?;
                buf.reserve(cap as usize - buf.len());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// The error a client's body stream ends with when the response was cut
/// off (its `stream_error` in the audit record).
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.as_str())]
pub struct StreamError(pub StreamEnd);

/// The upstream response body, forwarded frame by frame as it arrives. If the
/// upstream is silent for longer than `idle`, the body ends with an error,
/// which makes the server cut the response off (the client sees a truncated
/// stream, never a silent hang). The audit record is written when the body
/// ends, fails, or is dropped.
pub struct UpstreamBody<B> {
    inner: B,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    guard: AuditGuard,
    tap: UsageTap,
    /// Concurrency slot and token budget of the request: held while the
    /// body streams, charged with the usage at the end, released on drop.
    permit: Option<Permit>,
    /// Event-stream redaction: frames decoded, redacted and re-encoded as
    /// they arrive; on any decode error the stream ends with an error and
    /// nothing unredacted is forwarded.
    redactor: Option<StreamRedactor>,
    /// Redactions counted before the body (in response headers), added to
    /// what the stream redactor counts.
    redactions_before: u64,
    /// The client connection, when watched: a body dropped because the
    /// client stopped reading is audited as `client_stalled`.
    client: Option<Arc<ClientConn>>,
    done: bool,
    empty_at_start: bool,
}

impl<B: Body> UpstreamBody<B> {
    pub fn new(inner: B, idle: Duration, guard: AuditGuard, tap: UsageTap) -> Self {
        let empty_at_start = inner.is_end_stream();
        UpstreamBody {
            empty_at_start,
            tap,
            permit: None,
            redactor: None,
            redactions_before: 0,
            client: None,
            inner,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            guard,
            done: false,
        }
    }
}

impl<B> UpstreamBody<B> {
    pub fn with_permit(mut self, permit: Permit) -> Self {
        self.permit = Some(permit);
        self
    }

    pub fn with_redactor(mut self, redactor: Option<StreamRedactor>) -> Self {
        self.redactor = redactor;
        self.redactions_before = self.guard.record_mut().map_or(0, |r| r.redactions);
        self
    }

    pub fn with_client(mut self, client: Option<Arc<ClientConn>>) -> Self {
        self.client = client;
        self
    }

    fn count_redactions(&mut self) {
        if let Some(n) = self.redactor.as_ref().map(|r| r.redactions()) {
            let before = self.redactions_before;
            if let Some(rec) = self.guard.record_mut() {
                rec.redactions = before + n;
            }
        }
    }

    /// Record what the tap saw and charge it to the token budget.
    fn account(&mut self) {
        let usage = self.tap.finish();
        let mut total = 0;
        if let Some(r) = self.guard.record_mut() {
            if usage.input.is_some() || usage.output.is_some() {
                r.input_tokens = usage.input;
                r.output_tokens = usage.output;
            }
            if usage.text_units.is_some() {
                r.guardrail_text_units = usage.text_units;
            }
            total = r.input_tokens.unwrap_or(0) + r.output_tokens.unwrap_or(0);
        }
        if let Some(p) = self.permit.take() {
            p.charge_tokens(total);
        }
    }

    /// The body is complete: account, write the audit record.
    fn complete(&mut self) {
        self.done = true;
        self.account();
        self.guard.finish();
    }

    /// The upstream event stream cannot be passed on (bad CRC, truncated or
    /// oversized frame, or an agent event citing a foreign source): the
    /// client gets an exception event and the end of the stream, never the
    /// unchecked bytes or anything still held back.
    fn fail_redacted(&mut self, e: &crate::filter::eventstream::StreamError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        use crate::filter::eventstream::StreamError as Es;
        // A foreign source is a decision (the audit reason says so); anything
        // else is a broken upstream stream.
        let (what, message, reason) = match e {
            Es::ForeignSource => {
                tracing::warn!("agent answer withheld: {e}");
                let what = StreamEnd::UnauthorizedSourceInAnswer;
                (what, "the answer cites a source outside the tenant's allowed prefixes; the stream has been ended", Some(what.as_str()))
            }
            Es::HoldLimit => {
                tracing::warn!("stream redaction bound reached: {e}");
                (StreamEnd::RedactionHoldExceeded, "a possible redaction match stayed undecided past the hold-back bound; the stream has been ended", None)
            }
            _ => {
                tracing::warn!("upstream event stream cannot be redacted: {e}");
                (StreamEnd::UpstreamStreamCorrupt, "the upstream event stream was malformed and has been ended", None)
            }
        };
        self.count_redactions();
        let frame = self.redactor.as_ref().map(|r| r.error_frame(what.as_str(), message));
        self.done = true;
        self.account();
        if let Some(r) = self.guard.record_mut() {
            r.stream_error = Some(what);
            if reason.is_some() {
                r.reason = reason;
            }
        }
        self.guard.finish();
        match frame {
            Some(f) => Poll::Ready(Some(Ok(Frame::data(f)))),
            None => Poll::Ready(Some(Err(Box::new(StreamError(what))))),
        }
    }

    fn fail(&mut self, what: StreamEnd) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.done = true;
        self.account();
        if let Some(r) = self.guard.record_mut() {
            r.stream_error = Some(what);
        }
        self.guard.finish();
        Poll::Ready(Some(Err(Box::new(StreamError(what)))))
    }
}

impl<B> Body for UpstreamBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.tap.observe(data);
                    }
                    let ended = this.inner.is_end_stream();
                    if !ended {
                        let deadline = Instant::now() + this.idle;
                        this.sleep.as_mut().reset(deadline);
                    }
                    let frame = match (this.redactor.as_mut(), frame.into_data()) {
                        (Some(r), Ok(data)) => {
                            let mut out = match r.push(&data) {
                                Ok(b) => b,
                                Err(e) => return this.fail_redacted(&e),
                            };
                            if ended {
                                match r.finish() {
                                    Ok(rest) => {
                                        let mut b = BytesMut::from(&out[..]);
                                        b.extend_from_slice(&rest);
                                        out = b.freeze();
                                    }
                                    Err(e) => return this.fail_redacted(&e),
                                }
                            }
                            if ended {
                                this.count_redactions();
                                this.complete();
                            }
                            if out.is_empty() {
                                // Held back (partial frame or text that may
                                // still start a match): wait for more.
                                continue;
                            }
                            Frame::data(out)
                        }
                        (_, Ok(data)) => {
                            if ended {
                                this.complete();
                            }
                            Frame::data(data)
                        }
                        (_, Err(other)) => {
                            if ended {
                                this.complete();
                            }
                            other
                        }
                    };
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::warn!("upstream response body failed: {e}");
                    this.count_redactions();
                    return this.fail(StreamEnd::UpstreamReset);
                }
                Poll::Ready(None) => {
                    let rest = match this.redactor.as_mut().map(|r| r.finish()) {
                        Some(Err(e)) => return this.fail_redacted(&e),
                        Some(Ok(rest)) => rest,
                        None => Bytes::new(),
                    };
                    this.count_redactions();
                    this.complete();
                    if rest.is_empty() {
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(rest))));
                }
                Poll::Pending => {
                    return match this.sleep.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            tracing::warn!("upstream silent for {:?} mid-response; cutting the response off", this.idle);
                            this.count_redactions();
                            this.fail(StreamEnd::UpstreamIdleTimeout)
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.redactor.is_some() {
            // Redaction may change the length.
            return SizeHint::default();
        }
        self.inner.size_hint()
    }
}

impl<B> Drop for UpstreamBody<B> {
    fn drop(&mut self) {
        // An empty body may be dropped without ever being polled; that is a
        // complete response, not a client that went away.
        if !self.done && self.empty_at_start {
            self.complete();
        } else if !self.done && self.client.as_ref().is_some_and(|c| c.is_stalled()) {
            // Dropped by the watchdog: the client stopped reading. (The
            // guard marks any other early drop `client_disconnected`.)
            tracing::debug!("response body dropped: the client stopped reading");
            self.count_redactions();
            if let Some(r) = self.guard.record_mut() {
                r.stream_error = Some(StreamEnd::ClientStalled);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Audit, AuditRecord};
    use tokio::sync::mpsc;

    /// A test body fed from a channel; `None` length hint like a chunked body.
    struct ChanBody(mpsc::Receiver<Bytes>);
    impl Body for ChanBody {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
        }
    }

    const ROOMY: BufferLimits = BufferLimits { total: 1 << 30, per_tenant: 1 << 30 };

    async fn read<B>(body: B, limit: u64) -> Result<Bytes, ProxyError>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Display,
    {
        let budget = crate::budget::Budget::new();
        let mut mem = budget.reservation("t");
        read_limited(body, limit, &mut mem, &ROOMY).await
    }

    #[tokio::test]
    async fn over_limit_declared_length_is_refused_without_reading() {
        let body = Full::new(Bytes::from(vec![0u8; 100]));
        let e = read(body, 10).await.unwrap_err();
        assert_eq!(e.reason(), "body_too_large");
        let ok = read(Full::new(Bytes::from_static(b"abc")), 3).await.unwrap();
        assert_eq!(&ok[..], b"abc");
    }

    #[tokio::test]
    async fn chunked_body_over_limit_is_refused() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Bytes::from_static(b"aaaa")).await.unwrap();
        tx.send(Bytes::from_static(b"bbbb")).await.unwrap();
        drop(tx);
        let e = read(ChanBody(rx), 6).await.unwrap_err();
        assert_eq!(e.reason(), "body_too_large");
    }

    #[tokio::test]
    async fn a_declared_length_is_charged_before_reading() {
        let budget = crate::budget::Budget::new();
        let share = BufferLimits { total: 1000, per_tenant: 100 };
        let mut other = budget.reservation("t");
        other.grow(50, &share).unwrap();
        // 60 declared bytes do not fit what is left of the tenant's share.
        let mut mem = budget.reservation("t");
        let e = read_limited(Full::new(Bytes::from(vec![b' '; 60])), 1000, &mut mem, &share).await.unwrap_err();
        assert_eq!((e.reason(), e.status().as_u16()), ("memory_limited", 429));
        assert_eq!(mem.bytes(), 0);
        // 40 do; they stay charged while the reservation lives.
        let ok = read_limited(Full::new(Bytes::from(vec![b' '; 40])), 1000, &mut mem, &share).await.unwrap();
        assert_eq!((ok.len(), mem.bytes(), budget.held()), (40, 40, 90));
        drop(mem);
        assert_eq!(budget.held(), 50);
    }

    #[tokio::test]
    async fn a_chunked_body_is_charged_as_it_grows() {
        let budget = crate::budget::Budget::new();
        let limits = BufferLimits { total: 1 << 20, per_tenant: 40 * 1024 };
        let (tx, rx) = mpsc::channel(8);
        for _ in 0..4 {
            tx.send(Bytes::from(vec![b'x'; 8 * 1024])).await.unwrap();
        }
        drop(tx);
        let mut mem = budget.reservation("t");
        let ok = read_limited(ChanBody(rx), 1 << 20, &mut mem, &limits).await.unwrap();
        assert_eq!(ok.len(), 32 * 1024);
        assert_eq!(mem.bytes(), 32 * 1024, "16 KiB, then doubled once");
        // Past the share mid-body: refused, what was held is still charged
        // until the reservation goes.
        let (tx, rx) = mpsc::channel(8);
        for _ in 0..8 {
            tx.send(Bytes::from(vec![b'x'; 8 * 1024])).await.unwrap();
        }
        drop(tx);
        let mut mem2 = budget.reservation("u");
        let e = read_limited(ChanBody(rx), 1 << 20, &mut mem2, &limits).await.unwrap_err();
        assert_eq!(e.reason(), "memory_limited");
        drop((mem, mem2));
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_upstream_cuts_the_body_and_audits_it() {
        let (audit, recs) = Audit::memory();
        let rec = AuditRecord { decision: Decision::Allow, ..Default::default() };
        let guard = AuditGuard::new(audit, rec, std::time::Instant::now());
        let (tx, rx) = mpsc::channel(4);
        let mut body = UpstreamBody::new(ChanBody(rx), Duration::from_secs(2), guard, UsageTap::off());
        tx.send(Bytes::from_static(b"first")).await.unwrap();
        let f = body.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap(), "first");
        // Nothing more arrives: after 2 s the body fails instead of hanging.
        assert!(body.frame().await.unwrap().is_err());
        assert!(body.frame().await.is_none());
        let r = recs.lock().unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].stream_error, Some(StreamEnd::UpstreamIdleTimeout));
        drop(tx);
    }

    #[tokio::test]
    async fn a_body_dropped_for_a_stalled_client_says_so() {
        let (audit, recs) = Audit::memory();
        let conn = ClientConn::new(Duration::from_secs(2));
        for stalled in [false, true] {
            let rec = AuditRecord { decision: Decision::Allow, ..Default::default() };
            let guard = AuditGuard::new(audit.clone(), rec, std::time::Instant::now());
            let (tx2, rx2) = mpsc::channel(4);
            let mut body = UpstreamBody::new(ChanBody(rx2), Duration::from_secs(2), guard, UsageTap::off())
                .with_client(Some(conn.clone()));
            tx2.send(Bytes::from_static(b"first")).await.unwrap();
            assert!(body.frame().await.unwrap().is_ok());
            if stalled {
                conn.mark_stalled();
            }
            drop(body);
        }
        let r = recs.lock().unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].stream_error, Some(StreamEnd::ClientDisconnected));
        assert_eq!(r[1].stream_error, Some(StreamEnd::ClientStalled));
    }
}
