use super::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::time::timeout;

const SECS_2: Duration = Duration::from_secs(2);

#[tokio::test(start_paused = true)]
async fn a_write_waiting_past_the_timeout_stalls_the_connection() {
    let c = ClientConn::new(Duration::from_secs(30));
    c.begin_request(7, SECS_2);
    c.waits();
    let t0 = Instant::now();
    assert!(!c.is_stalled());
    let s = c.stalled().await;
    assert_eq!(t0.elapsed(), SECS_2);
    assert_eq!(s, Stall { streamed: false, timeout: SECS_2, request: 7 });
    assert!(c.is_stalled());
}

#[tokio::test(start_paused = true)]
async fn a_streamed_response_uses_its_own_timeout() {
    let c = ClientConn::new(Duration::from_secs(30));
    c.begin_request(3, Duration::from_secs(30));
    c.streaming(SECS_2);
    c.waits();
    let s = timeout(Duration::from_millis(2001), c.stalled()).await.expect("stalled after the stream timeout");
    assert_eq!(s, Stall { streamed: true, timeout: SECS_2, request: 3 });
    // The next request on the connection starts as a whole response again.
    c.begin_request(4, Duration::from_secs(30));
    assert!(!c.streamed.load(Ordering::Relaxed));
}

#[tokio::test(start_paused = true)]
async fn progress_restarts_the_wait() {
    let c = ClientConn::new(SECS_2);
    c.waits();
    for _ in 0..5 {
        // 1.5 s of waiting, then some bytes go out and the next write waits.
        assert!(timeout(Duration::from_millis(1500), c.stalled()).await.is_err());
        c.wrote();
        c.waits();
    }
    assert!(!c.is_stalled(), "7.5 s of slow progress is not a stall");
    let t0 = Instant::now();
    c.stalled().await;
    assert_eq!(t0.elapsed(), SECS_2, "measured from the last progress");
}

#[tokio::test(start_paused = true)]
async fn no_waiting_write_no_stall() {
    let c = ClientConn::new(SECS_2);
    // Idle keep-alive connection, or writes that always complete.
    assert!(timeout(Duration::from_secs(3600), c.stalled()).await.is_err());
    c.waits();
    c.wrote();
    assert!(timeout(Duration::from_secs(3600), c.stalled()).await.is_err());
    assert!(!c.is_stalled());
}

/// A client socket with a small receive buffer, and its server side accepted
/// from a listener made as the proxy listener is.
async fn pair(client_rcvbuf: u32) -> (tokio::net::TcpStream, tokio::net::TcpStream) {
    let l = crate::server::bind_proxy_listener("127.0.0.1:0".parse().unwrap()).unwrap();
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(client_rcvbuf).unwrap();
    let client = sock.connect(l.local_addr().unwrap()).await.unwrap();
    let (server, _) = l.accept().await.unwrap();
    (client, server)
}

#[tokio::test]
async fn a_client_that_reads_nothing_is_reset_after_the_timeout() {
    let (mut client, server) = pair(4096).await;
    let conn = ClientConn::new(Duration::from_millis(300));
    let mut io = WatchedTcp::new(server, conn.clone());
    let big = vec![7u8; 64 << 20];
    let t0 = std::time::Instant::now();
    let stall = tokio::select! {
        biased;
        r = io.write_all(&big) => panic!("the client read nothing, yet the write ended: {r:?}"),
        s = conn.stalled() => s,
    };
    let waited = t0.elapsed();
    // One timeout, or two when the client's kernel still took a few bytes.
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_millis(900), "{waited:?}");
    assert_eq!(stall.timeout, Duration::from_millis(300));
    drop(io);
    // What reached the client is still readable, then the connection is reset.
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    let err = loop {
        match timeout(Duration::from_secs(5), client.read(&mut buf)).await.expect("reset, not left open") {
            Ok(0) => panic!("orderly close after {got} bytes; expected a reset"),
            Ok(n) => got += n,
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert!(got < big.len());
}

#[tokio::test]
async fn a_slow_reader_that_keeps_reading_is_not_cut_off() {
    // A small receive buffer read a little at a time: the runtime would
    // report the socket writable only after a third of the (autotuned,
    // megabytes) send buffer drained, long after the timeout; the direct
    // probe sees each read.
    let (mut client, server) = pair(4096).await;
    let conn = ClientConn::new(Duration::from_millis(500));
    let mut io = WatchedTcp::new(server, conn.clone());
    let data = vec![1u8; 64 << 20];
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        let mut got = 0usize;
        let t0 = std::time::Instant::now();
        while t0.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            match client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n,
            }
        }
        (got, client)
    });
    tokio::select! {
        biased;
        r = io.write_all(&data) => panic!("64 MiB cannot have gone to a slow reader: {r:?}"),
        s = conn.stalled() => panic!("slow but steady reader cut off: {s:?}"),
        _ = tokio::time::sleep(Duration::from_secs(3)) => {}
    }
    let (got, _client) = reader.await.unwrap();
    assert!(got > 0);
    assert!(!conn.is_stalled());
}
