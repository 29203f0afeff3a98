//! HTTP/1.1 and HTTP/2 on the proxy listener (docs/operating.md#http2-on-the-listener).
//!
//! Which protocol a connection speaks is decided before any request is read:
//! on the TLS listener by ALPN (`h2` or `http/1.1`; a client that offers no
//! ALPN speaks HTTP/1.1), on the plain listener by the HTTP/2 connection
//! preface (prior knowledge, RFC 9113 §3.3). The first bytes must arrive
//! within `server.header_timeout_secs`, like a TLS handshake. Then one
//! hyper-util `auto::Builder`, set to that protocol, serves the connection
//! with the limits below. The upstream side stays HTTP/1.1.

use bytes::{Buf, Bytes};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/1.1: the read buffer a request head must fit in (hyper counts at
/// most 100 header fields).
pub const H1_MAX_BUF: usize = 1024 * 1024;

/// HTTP/2: streams one connection may have open at once. With
/// `H2_MAX_HEADER_LIST_SIZE`, the request heads one connection can hold at
/// once are at most 1 MiB, the bound `H1_MAX_BUF` sets on an HTTP/1.1
/// connection; a client that wants more parallelism opens more connections
/// (the tenant's rate and concurrency limits apply either way).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 32;
/// HTTP/2: largest decoded header list of one request (names, values and 32
/// bytes per field, RFC 9113 §6.5.2): room for a large JWT and every header
/// an AWS SDK sends. Larger is refused before the request is routed.
pub const H2_MAX_HEADER_LIST_SIZE: u32 = 32 * 1024;
/// HTTP/2: receive window of one stream: request body bytes the client may
/// send ahead of the sidecar reading them.
pub const H2_STREAM_WINDOW: u32 = 1024 * 1024;
/// HTTP/2: receive window of the whole connection (all its streams' unread
/// request bytes together).
pub const H2_CONNECTION_WINDOW: u32 = 2 * 1024 * 1024;
/// HTTP/2: largest frame the sidecar accepts (the protocol's minimum, 16 KiB).
pub const H2_MAX_FRAME_SIZE: u32 = 16 * 1024;
/// HTTP/2: response bytes buffered per stream beyond what the client's
/// window lets out; with `H2_MAX_CONCURRENT_STREAMS` at most 2 MiB a
/// connection whose client reads nothing can pin.
pub const H2_MAX_SEND_BUF: usize = 64 * 1024;
/// HTTP/2: a PING after this long without a frame from the client…
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// …and the connection is closed if its answer takes longer than this.
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// HTTP/2: streams the client opened and reset before the sidecar accepted
/// them (the "rapid reset" flood, CVE-2023-44487); past it the connection
/// ends with GOAWAY.
pub const H2_MAX_PENDING_ACCEPT_RESET_STREAMS: usize = 20;
/// HTTP/2: streams the sidecar had to reset because the client broke the
/// protocol on them (malformed or illegal headers and the like,
/// "MadeYouReset", CVE-2025-8671); past it the connection ends with GOAWAY.
pub const H2_MAX_LOCAL_ERROR_RESET_STREAMS: usize = 64;

/// The protocol of one proxy connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// The builder serving one proxy connection in `protocol`.
pub fn builder(protocol: Protocol, header_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .max_buf_size(H1_MAX_BUF);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(H2_MAX_HEADER_LIST_SIZE)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .adaptive_window(false)
        .max_frame_size(H2_MAX_FRAME_SIZE)
        .max_send_buf_size(H2_MAX_SEND_BUF)
        .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESET_STREAMS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESET_STREAMS);
    match protocol {
        Protocol::Http1 => b.http1_only(),
        Protocol::Http2 => b.http2_only(),
    }
}

/// The protocol ALPN agreed on a TLS connection: `h2`, or HTTP/1.1 for
/// `http/1.1` and for a client that offered no ALPN.
pub fn by_alpn(alpn: Option<&[u8]>) -> Protocol {
    if alpn == Some(b"h2") {
        Protocol::Http2
    } else {
        Protocol::Http1
    }
}

/// Reads the first bytes of a plain connection, as many as it takes to tell
/// the HTTP/2 preface from anything else (HTTP/1.1), within `timeout`.
/// Returns the protocol and the connection with those bytes put back.
pub async fn by_preface<I>(mut io: I, timeout: Duration) -> io::Result<(Protocol, Rewound<I>)>
where
    I: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(H2_PREFACE.len());
    let read = async {
        while buf.len() < H2_PREFACE.len() {
            let mut chunk = [0u8; 24];
            let want = H2_PREFACE.len() - buf.len();
            let n = io.read(&mut chunk[..want]).await?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a request"));
            }
            buf.extend_from_slice(&chunk[..n]);
            if !H2_PREFACE.starts_with(&buf) {
                return Ok(Protocol::Http1);
            }
        }
        Ok(Protocol::Http2)
    };
    let protocol = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request within the header timeout"))??;
    Ok((protocol, Rewound { prefix: Bytes::from(buf), io }))
}

/// A connection whose first bytes were read to pick the protocol: they are
/// read again first.
pub struct Rewound<I> {
    prefix: Bytes,
    io: I,
}

impl<I: AsyncRead + Unpin> AsyncRead for Rewound<I> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Rewound<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniff(sent: &[u8], close: bool) -> io::Result<(Protocol, Vec<u8>)> {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(sent).await.unwrap();
        if close {
            drop(client);
        } else {
            // Keep the client open (and silent) past the sniff.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(client);
            });
        }
        let (p, mut io) = by_preface(server, Duration::from_millis(200)).await?;
        let mut first = vec![0u8; sent.len()];
        io.read_exact(&mut first).await.unwrap();
        Ok((p, first))
    }

    #[tokio::test]
    async fn the_preface_means_http2_and_is_read_again() {
        let mut sent = H2_PREFACE.to_vec();
        sent.extend_from_slice(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00");
        let (p, first) = sniff(&sent, false).await.unwrap();
        assert_eq!(p, Protocol::Http2);
        assert_eq!(first, &sent[..]);
    }

    #[tokio::test]
    async fn anything_else_is_http1_as_soon_as_it_differs() {
        // "PO" already differs from "PR": no waiting for 24 bytes.
        let (p, first) = sniff(b"PO", false).await.unwrap();
        assert_eq!(p, Protocol::Http1);
        assert_eq!(first, b"PO");
        let (p, _) = sniff(b"GET / HTTP/1.1\r\n\r\n", false).await.unwrap();
        assert_eq!(p, Protocol::Http1);
        // Lower case is not the preface.
        let (p, _) = sniff(b"pri * HTTP/2.0\r\n\r\nSM\r\n\r\n", false).await.unwrap();
        assert_eq!(p, Protocol::Http1);
    }

    #[tokio::test]
    async fn a_partial_preface_or_silence_times_out_and_eof_is_an_error() {
        let e = sniff(&H2_PREFACE[..10], false).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let e = sniff(b"", false).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let e = sniff(&H2_PREFACE[..10], true).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn alpn_h2_only_when_agreed() {
        assert_eq!(by_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(by_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(by_alpn(None), Protocol::Http1);
        assert_eq!(by_alpn(Some(b"h2c")), Protocol::Http1);
    }

    #[test]
    fn header_memory_of_one_h2_connection_matches_http1() {
        assert_eq!(H2_MAX_CONCURRENT_STREAMS as usize * H2_MAX_HEADER_LIST_SIZE as usize, H1_MAX_BUF);
    }
}
