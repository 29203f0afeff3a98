//! The client side of a proxy connection: whether the sidecar's writes to
//! the client make progress, and a watchdog that closes a connection whose
//! client has stopped reading.
//!
//! The server only polls a response body when the client socket can take
//! more bytes, so a client that reads the response head and then stops
//! reading would otherwise keep the body, its upstream connection and the
//! tenant's concurrency slot for as long as the socket lives (the body's own
//! upstream idle timer is never polled). Here the accepted TCP stream (under
//! TLS when the listener has it) records when a write started waiting for
//! the client; the connection's task selects on `ClientConn::stalled`, which
//! resolves once one write has waited longer than the timeout in force, and
//! then drops the connection: the response body is dropped (audited with
//! `stream_error: "client_stalled"`, its slot released) and the socket is
//! reset.
//!
//! Progress is a write the kernel accepts: bytes the client's reads (its TCP
//! acknowledgements) made room for in the connection's fixed send buffer
//! (`CLIENT_SEND_BUFFER`). A write that waited for the whole
//! timeout is retried once directly against the kernel before the
//! connection is given up (see `WatchedTcp::probe`), so a slow reader that
//! keeps reading is never taken for a stalled one.
//!
//! Cost on the hot path: a write that completes reads one atomic (and
//! clears it after a wait); only a write that has to wait reads the clock
//! and wakes the watchdog, once per wait. No timer runs while nothing waits.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

/// `SO_SNDBUF` of the proxy listener, inherited by every accepted client
/// connection (the kernel doubles it for its bookkeeping, so about 1 MiB).
/// Fixed rather than autotuned: an autotuned buffer grows after it filled,
/// so the kernel would take more bytes from a client that reads nothing and
/// the probe below would mistake that for progress. It also bounds the
/// kernel memory a client that stops reading holds. Ample for loopback and
/// in-cluster round trips (1 MiB per millisecond is 8 Gbit/s).
pub const CLIENT_SEND_BUFFER: u32 = 512 * 1024;

/// What was being written when a connection was closed for not reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    /// A body forwarded from AWS as it arrives (its audit line is written
    /// when it is dropped, with `stream_error: "client_stalled"`); otherwise
    /// a response the sidecar held whole, already audited.
    pub streamed: bool,
    /// The timeout that elapsed.
    pub timeout: Duration,
    /// Sequence number of the last request on the connection (see
    /// `Proxy::request_id_of`); 0 before any.
    pub request: u64,
}

/// Per-connection state shared by the client IO, the watchdog and the
/// response bodies of the connection.
pub struct ClientConn {
    origin: Instant,
    /// When the write now waiting on the client started waiting, in ms
    /// since `origin` plus one; 0 while no write waits.
    pending_since: AtomicU64,
    timeout_ms: AtomicU64,
    streamed: AtomicBool,
    stalled: AtomicBool,
    request: AtomicU64,
    wake: Notify,
    /// HTTP/2: the connection this stream belongs to (its watchdog giving
    /// up on the connection gives up on every stream of it).
    parent: Option<Arc<ClientConn>>,
}

impl ClientConn {
    /// `write_timeout`: the timeout in force until the first request sets
    /// its own (`server.client_write_timeout_secs`).
    pub fn new(write_timeout: Duration) -> Arc<ClientConn> {
        Arc::new(ClientConn {
            origin: Instant::now(),
            pending_since: AtomicU64::new(0),
            timeout_ms: AtomicU64::new(millis(write_timeout)),
            streamed: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            request: AtomicU64::new(0),
            wake: Notify::new(),
            parent: None,
        })
    }

    /// HTTP/2: the state of one stream of this connection. Its writes are
    /// the frames its response body hands to the connection
    /// (`watch_stream`); it is stalled when its own watchdog or the
    /// connection's gave up.
    pub fn stream_of(parent: &Arc<ClientConn>) -> Arc<ClientConn> {
        Arc::new(ClientConn {
            origin: Instant::now(),
            pending_since: AtomicU64::new(0),
            timeout_ms: AtomicU64::new(parent.timeout_ms.load(Ordering::Relaxed)),
            streamed: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            request: AtomicU64::new(0),
            wake: Notify::new(),
            parent: Some(parent.clone()),
        })
    }

    /// A request arrived: until its response turns out to be streamed, the
    /// write timeout for whole responses applies.
    pub fn begin_request(&self, request: u64, write_timeout: Duration) {
        self.request.store(request, Ordering::Relaxed);
        self.streamed.store(false, Ordering::Relaxed);
        self.timeout_ms.store(millis(write_timeout), Ordering::Relaxed);
    }

    /// The response is a body forwarded as it arrives: it may make no
    /// progress toward the client for at most `idle` (the same bound as an
    /// upstream that goes silent).
    pub fn streaming(&self, idle: Duration) {
        self.streamed.store(true, Ordering::Relaxed);
        self.timeout_ms.store(millis(idle), Ordering::Relaxed);
    }

    /// True once the watchdog gave up on the client.
    pub fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Acquire) || self.parent.as_ref().is_some_and(|p| p.is_stalled())
    }

    /// Test support: as if the watchdog had given up on the client.
    #[cfg(test)]
    pub(crate) fn mark_stalled(&self) {
        self.stalled.store(true, Ordering::Release);
    }

    #[inline]
    fn wrote(&self) {
        if self.pending_since.load(Ordering::Relaxed) != 0 {
            self.pending_since.store(0, Ordering::Relaxed);
        }
    }

    #[inline]
    fn waits(&self) {
        if self.pending_since.load(Ordering::Relaxed) == 0 {
            let since = millis(self.origin.elapsed()).saturating_add(1);
            self.pending_since.store(since, Ordering::Release);
            self.wake.notify_one();
        }
    }

    /// A write waits and has waited for the whole timeout.
    fn overdue(&self) -> bool {
        let since = self.pending_since.load(Ordering::Relaxed);
        since != 0
            && millis(self.origin.elapsed()).saturating_add(1)
                >= since.saturating_add(self.timeout_ms.load(Ordering::Relaxed))
    }

    /// Resolves when one write has waited on the client for longer than the
    /// timeout in force (progress restarts the wait), after marking the
    /// connection stalled. Sleeps on a notification while no write waits,
    /// so an idle connection costs no timer.
    pub async fn stalled(&self) -> Stall {
        loop {
            let since = self.pending_since.load(Ordering::Acquire);
            if since == 0 {
                self.wake.notified().await;
                continue;
            }
            let timeout = self.timeout_ms.load(Ordering::Relaxed);
            let deadline = self.origin + Duration::from_millis((since - 1).saturating_add(timeout));
            if Instant::now() >= deadline {
                self.stalled.store(true, Ordering::Release);
                return Stall {
                    streamed: self.streamed.load(Ordering::Relaxed),
                    timeout: Duration::from_millis(timeout),
                    request: self.request.load(Ordering::Relaxed),
                };
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX / 2)
}

/// The accepted client socket, recording write progress in its
/// `ClientConn`. Reset (RST) rather than closed when dropped after a stall:
/// the client gets no orderly end for a response it did not read, and the
/// kernel does not keep the unread bytes around.
pub struct WatchedTcp {
    io: TcpStream,
    conn: Arc<ClientConn>,
}

impl WatchedTcp {
    pub fn new(io: TcpStream, conn: Arc<ClientConn>) -> WatchedTcp {
        WatchedTcp { io, conn }
    }

    /// The runtime reports the socket writable again only once a third of
    /// its send buffer (up to megabytes) is free, so a client that reads
    /// steadily but slowly could look stalled. When a write has waited for
    /// the whole timeout, ask the kernel directly (a non-blocking write on a
    /// duplicate of the descriptor): any byte it takes means the client
    /// took some since. Runs at most once per timeout of a waiting write.
    fn probe(&self, write: impl FnOnce(&mut std::net::TcpStream) -> io::Result<usize>) -> Poll<io::Result<usize>> {
        use std::os::fd::AsFd;
        let Ok(fd) = self.io.as_fd().try_clone_to_owned() else { return Poll::Pending };
        let mut dup = std::net::TcpStream::from(fd);
        match write(&mut dup) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => {
                Poll::Pending
            }
            r => Poll::Ready(r),
        }
    }

    #[inline]
    fn track<T>(&self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match &r {
            Poll::Pending => self.conn.waits(),
            Poll::Ready(_) => self.conn.wrote(),
        }
        r
    }
}

impl AsyncRead for WatchedTcp {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for WatchedTcp {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let r = match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending if self.conn.overdue() => self.probe(|s| std::io::Write::write(s, buf)),
            r => r,
        };
        self.track(r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending if self.conn.overdue() => self.probe(|s| std::io::Write::write_vectored(s, bufs)),
            r => r,
        };
        self.track(r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.track(r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_shutdown(cx);
        self.track(r)
    }
}

impl Drop for WatchedTcp {
    fn drop(&mut self) {
        if self.conn.is_stalled() {
            let _ = self.io.set_zero_linger();
        }
    }
}

/// HTTP/2: a response body of one stream of a watched connection.
///
/// On an HTTP/2 connection the server polls a stream's body only when the
/// client's flow-control windows (stream and connection) have room, so a
/// client that stops granting window to one stream never blocks a socket
/// write: the connection's watchdog sees nothing, and the stream would keep
/// its upstream body and its tenant's concurrency slot. Here each handed-on
/// frame starts a wait on the stream's own `ClientConn`, the next poll ends
/// it, and a task runs that stream's watchdog: when one wait outlasts the
/// timeout in force (`aws.stream_idle_timeout_secs` for a streamed body,
/// `server.client_write_timeout_secs` for one held whole) the body is
/// dropped (audited `client_stalled`, slot released, upstream connection
/// closed) and the stream ends with an error (reset) when the server next
/// polls it. Frames are handed on in pieces of at most `STREAM_PIECE`, so
/// what waits for the client's window is mostly here, where the watchdog
/// can drop it. The task ends with the body.
pub struct WatchedStream<B> {
    inner: Arc<std::sync::Mutex<Option<Held<B>>>>,
    conn: Arc<ClientConn>,
    /// Dropped with the body: ends the watchdog task.
    _alive: tokio::sync::oneshot::Sender<()>,
}

/// The largest piece of a response handed to an HTTP/2 stream at once (one
/// frame at the default size): the rest of a larger chunk (a response held
/// whole is one chunk) stays here, where the stream's watchdog can drop it,
/// rather than in the connection's send queue.
pub const STREAM_PIECE: usize = 16 * 1024;

/// What the watchdog drops: the body and the rest of its last chunk.
struct Held<B> {
    body: B,
    rest: bytes::Bytes,
}

/// Wraps `resp`'s body for stream `conn` (see `WatchedStream`) and starts its
/// watchdog unless the body is already complete; `on_stall` runs once if
/// the watchdog gives up.
pub fn watch_stream<B>(
    resp: http::Response<B>,
    conn: Arc<ClientConn>,
    on_stall: impl FnOnce(Stall) + Send + 'static,
) -> http::Response<WatchedStream<B>>
where
    B: http_body::Body + Send + 'static,
{
    let (parts, body) = resp.into_parts();
    let complete = body.is_end_stream();
    let inner = Arc::new(std::sync::Mutex::new(Some(Held { body, rest: bytes::Bytes::new() })));
    let (alive, ended) = tokio::sync::oneshot::channel::<()>();
    if !complete {
        let weak = Arc::downgrade(&inner);
        let watched = conn.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = ended => {}
                stall = watched.stalled() => {
                    if let Some(inner) = weak.upgrade() {
                        // Taken under the lock, dropped outside it.
                        let held = inner.lock().ok().and_then(|mut b| b.take());
                        drop(held);
                    }
                    on_stall(stall);
                }
            }
        });
    }
    http::Response::from_parts(parts, WatchedStream { inner, conn, _alive: alive })
}

fn cut_off() -> crate::body::BoxError {
    Box::new(crate::body::StreamError(crate::audit::StreamEnd::ClientStalled))
}

impl<B> http_body::Body for WatchedStream<B>
where
    B: http_body::Body<Data = bytes::Bytes, Error = crate::body::BoxError> + Unpin,
{
    type Data = bytes::Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = self.get_mut();
        // Polled again: the client made room for more.
        this.conn.wrote();
        let Ok(mut guard) = this.inner.lock() else {
            return Poll::Ready(Some(Err(cut_off())));
        };
        let Some(held) = guard.as_mut() else {
            // The watchdog dropped the body: end the stream with an error
            // (a reset), never as if it were complete.
            return Poll::Ready(Some(Err(cut_off())));
        };
        let frame = if !held.rest.is_empty() {
            let n = held.rest.len().min(STREAM_PIECE);
            http_body::Frame::data(held.rest.split_to(n))
        } else {
            match Pin::new(&mut held.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(mut data) => {
                        if data.len() > STREAM_PIECE {
                            held.rest = data.split_off(STREAM_PIECE);
                        }
                        http_body::Frame::data(data)
                    }
                    Err(other) => other,
                },
                other => return other,
            }
        };
        if !(held.rest.is_empty() && held.body.is_end_stream()) {
            // Handed on: until the next poll, the stream waits on its client.
            this.conn.waits();
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        // A body the watchdog took is not complete: it must end in an error.
        self.inner
            .lock()
            .ok()
            .is_some_and(|h| h.as_ref().is_some_and(|h| h.rest.is_empty() && h.body.is_end_stream()))
    }

    fn size_hint(&self) -> http_body::SizeHint {
        let Some((mut hint, rest)) = self
            .inner
            .lock()
            .ok()
            .and_then(|h| h.as_ref().map(|h| (h.body.size_hint(), h.rest.len() as u64)))
        else {
            return http_body::SizeHint::default();
        };
        // Upper first: `set_lower` must never pass the upper bound.
        if let Some(upper) = hint.upper() {
            hint.set_upper(upper.saturating_add(rest));
        }
        hint.set_lower(hint.lower().saturating_add(rest));
        hint
    }
}

#[cfg(test)]
#[path = "conn_tests.rs"]
mod tests;
