"""A client that stops reading its response (docs/reference.md §3 `stream_idle_timeout_secs`
and `max_concurrent`, §9 audit; tenantgate's own `client_write_timeout_secs`).

The server only polls a response body when the client socket takes more
bytes, so a client that reads the response head and then nothing more must
not keep its stream, the upstream connection and the tenant's concurrency
slot: a response write that makes no progress for the timeout in force ends
the connection. Streamed bodies (forwarded as they arrive) use
`aws.stream_idle_timeout_secs` and are audited `stream_error:
"client_stalled"`; responses held whole use `server.client_write_timeout_secs`
(their audit line is already written: counted and logged instead). The
clients here set a small SO_RCVBUF so the buffers fill fast; the upstream
answers are far larger than every buffer on the way."""

from __future__ import annotations

import errno
import json
import socket
import ssl
import threading
import time

import pytest

import harness
from fakeaws import event, event_stream
from harness import HAIKU, converse_args
from test_tls_listener import self_signed

TIMEOUT = 2  # the timeout under test (seconds)
# A write waits for the timeout; when the client's kernel took a last few
# bytes meanwhile (the head it read freed its buffer), one more timeout.
CUT_WITHIN = 2 * TIMEOUT + 2
LONG = 30  # the other timeout, which must not be the one that fires
EVENT_TEXT = "x" * 16000
BURST_EVENTS = 800  # ~13 MB of event stream at once: more than the socket buffers on the way


class LongStream:
    """A ConverseStream answer that never ends on its own: a burst of large
    delta events, then a small one every 0.2 s for up to 60 s. Records when
    the sidecar let go of the upstream connection (the fake's write failed
    and the generator was closed) and whether the answer ever finished."""

    def __init__(self):
        self.stop = threading.Event()
        self.closed = []  # monotonic times the generators were closed
        self.finished = 0
        self._lock = threading.Lock()

    def messages(self):
        big = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": EVENT_TEXT}})
        small = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "."}})
        done = False
        try:
            yield event("messageStart", {"role": "assistant"})
            for _ in range(BURST_EVENTS):
                yield big
            until = time.monotonic() + 60
            while time.monotonic() < until and not self.stop.wait(0.2):
                yield small
            yield event("messageStop", {"stopReason": "end_turn"})
            done = True
        finally:
            with self._lock:
                self.closed.append(time.monotonic())
                self.finished += done

    def __call__(self, fake, rec):
        return event_stream(self.messages())


def _connect(sc, rcvbuf: int = 4096, tls: ssl.SSLContext | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", sc.port))
    return tls.wrap_socket(s, server_hostname="127.0.0.1") if tls else s


def _send_and_read_head(sc, path: str, body: bytes, token: str,
                        tls: ssl.SSLContext | None = None) -> tuple[socket.socket, int, dict]:
    """Send a request on a small-buffered socket and read only the
    response head: (socket, status, lower-case headers)."""
    s = _connect(sc, tls=tls)
    s.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{sc.port}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\nx-tenant-token: {token}\r\n\r\n").encode() + body)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(1024)
        assert chunk, f"connection closed before the response head: {buf!r}"
        buf += chunk
    head = buf.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head[1:])}
    return s, status, headers


def _drain_until_closed(s: socket.socket, limit: float = 8.0) -> tuple[int, str]:
    """Read what is left until the server's close shows: (bytes read, "eof"
    or "reset"); fails when the connection is still open after ``limit``."""
    s.settimeout(limit)
    got = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            chunk = s.recv(1 << 16)
        except ConnectionResetError:
            return got, "reset"
        except socket.timeout:
            break
        if not chunk:
            return got, "eof"
        got += len(chunk)
    raise AssertionError(f"connection still open {limit}s later ({got} bytes read)")


def _metric(sc, sample: str) -> float:
    text = sc.admin("/metrics").body.decode()
    hits = [line for line in text.splitlines() if line.startswith(sample + " ")]
    assert len(hits) == 1, (sample, hits)
    return float(hits[0].rsplit(" ", 1)[1])


STREAMED = 'tenantgate_client_write_timeouts_total{response="streamed"}'
BUFFERED = 'tenantgate_client_write_timeouts_total{response="buffered"}'
CONVERSE_BODY = json.dumps({"messages": converse_args()["messages"]}).encode()


def test_stalled_streams_end_and_free_the_tenant(start_sidecar_fn, fake_aws, mint):
    """docs/reference.md §3 `max_concurrent` = 2 and `stream_idle_timeout_secs` = 2: one
    user opens two ConverseStreams, reads their heads and stops reading.
    Another user of the tenant gets 429 `concurrency_limited` (nothing
    upstream). Within about the timeout both streams end: the audit says
    `stream_error: "client_stalled"` for each, the metric counts two, the
    upstream connections are let go, the stalled sockets are closed, and the
    other user's request now succeeds."""
    sc = start_sidecar_fn({
        "server": {"client_write_timeout_secs": LONG},
        "aws": {"stream_idle_timeout_secs": TIMEOUT},
        "tenant_defaults": {"rate_limit": {"max_concurrent": 2}},
    })
    stream = LongStream()
    fake_aws.script(stream, operation="ConverseStream")
    socks, ids = [], []
    try:
        for _ in range(2):
            s, status, headers = _send_and_read_head(sc, f"/model/{HAIKU}/converse-stream", CONVERSE_BODY,
                                                     mint("acme", "alice"))
            socks.append(s)
            assert status == 200, headers
            assert headers["content-type"].startswith("application/vnd.amazon.eventstream"), headers
            ids.append(headers["x-tenantgate-request-id"])
        t0 = time.monotonic()

        # The two stalled streams hold both of the tenant's slots.
        other = sc.request("POST", f"/model/{HAIKU}/converse", CONVERSE_BODY, token=mint("acme", "bob"))
        harness.assert_tenantgate_error(other, 429, "concurrency_limited")
        assert len(fake_aws.recorded()) == 2, "the throttled request reached upstream"

        # Within about the timeout both streams end with their own reason.
        recs = {}
        deadline = t0 + CUT_WITHIN
        while len(recs) < 2 and time.monotonic() < deadline:
            for r in sc.audit():
                if r.get("request_id") in ids:
                    recs[r["request_id"]] = r
            time.sleep(0.05)
        elapsed = time.monotonic() - t0
        assert len(recs) == 2, (
            f"stalled streams still open {elapsed:.1f}s after their heads "
            f"(stream_idle_timeout_secs = {TIMEOUT}); audit: {recs}")
        assert elapsed >= TIMEOUT * 0.9, f"cut off after {elapsed:.2f}s, before the timeout"
        for rid in ids:
            r = recs[rid]
            assert r["stream_error"] == "client_stalled", r
            assert (r["decision"], r["status"], r["tenant"], r["user"], r["operation"]) == (
                "allow", 200, "acme", "alice", "ConverseStream"), r
        assert _metric(sc, STREAMED) == 2.0
        assert _metric(sc, BUFFERED) == 0.0

        # The slots are free again.
        ok = sc.request("POST", f"/model/{HAIKU}/converse", CONVERSE_BODY, token=mint("acme", "bob"))
        assert ok.status == 200, ok

        # The stalled clients find their connections closed, the stream cut short.
        for s in socks:
            got, _how = _drain_until_closed(s)
            assert got < BURST_EVENTS * len(EVENT_TEXT), "the whole stream arrived; nothing was cut off"
        # And the upstream connections were let go, not left streaming.
        until = time.monotonic() + 5
        while len(stream.closed) < 2 and time.monotonic() < until:
            time.sleep(0.05)
        assert len(stream.closed) == 2 and stream.finished == 0, (stream.closed, stream.finished)
    finally:
        stream.stop.set()
        for s in socks:
            s.close()
    assert all(r.signature_valid for r in fake_aws.recorded()), fake_aws.describe()


def test_stalled_stream_over_tls(start_sidecar_fn, fake_aws, mint, tmp_path):
    """The same on the TLS listener (docs/reference.md §3 `tls_cert_file`): the write
    that waits is the TLS record under the stream; the stalled stream ends
    `client_stalled` and the tenant's one slot is free again."""
    cert, key = self_signed(tmp_path)
    sc = start_sidecar_fn({
        "server": {"tls_cert_file": str(cert), "tls_key_file": str(key)},
        "aws": {"stream_idle_timeout_secs": TIMEOUT},
        "tenant_defaults": {"rate_limit": {"max_concurrent": 1}},
    }, name="tls")
    ctx = ssl.create_default_context(cafile=str(cert))
    stream = LongStream()
    fake_aws.script(stream, operation="ConverseStream")
    s, status, headers = _send_and_read_head(sc, f"/model/{HAIKU}/converse-stream", CONVERSE_BODY, mint(), tls=ctx)
    t0 = time.monotonic()
    rid = headers["x-tenantgate-request-id"]
    try:
        assert status == 200, headers
        bob = harness.make_client(sc.url.replace("http://", "https://"), token=mint("acme", "bob"), verify=str(cert))
        harness.expect_client_error(bob, lambda: bob.converse(**converse_args()), 429, "concurrency_limited")
        rec = sc.wait_audit(rid, timeout=CUT_WITHIN)
        elapsed = time.monotonic() - t0
        assert rec["stream_error"] == "client_stalled", rec
        assert elapsed >= TIMEOUT * 0.9, f"cut off after {elapsed:.2f}s, before the timeout"
        assert _metric(sc, STREAMED) == 1.0
        assert bob.converse(**converse_args())["output"]["message"]["content"][0]["text"]
    finally:
        stream.stop.set()
        s.close()


def test_slow_reader_is_not_cut_off(start_sidecar_fn, fake_aws, mint):
    """A client that keeps reading, a little every 0.5 s, is progress toward
    the client: after three times the timeout its stream is still open and
    nothing was counted; it ends as `client_disconnected` when the client
    goes away."""
    sc = start_sidecar_fn({"aws": {"stream_idle_timeout_secs": TIMEOUT}})
    stream = LongStream()
    fake_aws.script(stream, operation="ConverseStream")
    s, status, headers = _send_and_read_head(sc, f"/model/{HAIKU}/converse-stream", CONVERSE_BODY, mint())
    rid = headers["x-tenantgate-request-id"]
    try:
        assert status == 200
        got, reads = 0, 0
        t0 = time.monotonic()
        while time.monotonic() < t0 + 3 * TIMEOUT:
            time.sleep(0.5)
            chunk = s.recv(8192)
            assert chunk, f"stream closed under a reading client after {time.monotonic() - t0:.1f}s"
            got += len(chunk)
            reads += 1
        assert reads >= 10 and got > 0
        assert got < BURST_EVENTS * len(EVENT_TEXT), "the client was not the bottleneck; the test proves nothing"
        assert not [r for r in sc.audit() if r.get("request_id") == rid], "stream ended under a reading client"
        assert _metric(sc, STREAMED) == 0.0
    finally:
        s.close()
        stream.stop.set()
    rec = sc.wait_audit(rid, timeout=TIMEOUT + 5)
    assert rec["stream_error"] == "client_disconnected", rec


@pytest.mark.parametrize("kind", ["buffered", "streamed"])
def test_whole_answer_never_read(start_sidecar_fn, fake_aws, mint, kind):
    """A plain (non-stream) answer of 8 MB whose client never reads past the
    head. `buffered`: redaction is on (the default), so the sidecar holds
    the answer whole, audits it, then writes it: after
    `server.client_write_timeout_secs` the connection is closed, counted and
    logged with the request id (its audit line was written before the
    write). `streamed`: with no redaction patterns the answer is forwarded as
    it arrives and holds the tenant's slot: after
    `aws.stream_idle_timeout_secs` it is cut off and audited
    `client_stalled`."""
    if kind == "buffered":
        # The 8 MB answer and its redacted copy are charged to the buffer
        # budget: give the tenant room for both (docs/operating.md "Memory").
        overrides = {"server": {"client_write_timeout_secs": TIMEOUT, "max_buffered_bytes": 64 << 20},
                     "aws": {"stream_idle_timeout_secs": LONG}}
    else:
        overrides = {"server": {"client_write_timeout_secs": LONG}, "aws": {"stream_idle_timeout_secs": TIMEOUT},
                     "redaction": {"patterns": []}}
    sc = start_sidecar_fn(overrides)
    fake_aws.reply_text = "y" * (8 << 20)
    s, status, headers = _send_and_read_head(sc, f"/model/{HAIKU}/converse", CONVERSE_BODY, mint())
    t0 = time.monotonic()
    rid = headers["x-tenantgate-request-id"]
    sample, other = (BUFFERED, STREAMED) if kind == "buffered" else (STREAMED, BUFFERED)
    try:
        assert status == 200, headers
        # The server resets the connection: the client's socket shows it
        # without reading anything.
        err = 0
        while not err and time.monotonic() < t0 + CUT_WITHIN:
            time.sleep(0.05)
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        elapsed = time.monotonic() - t0
        assert err == errno.ECONNRESET, f"connection of a client that reads nothing still open after {elapsed:.1f}s"
        assert elapsed >= TIMEOUT * 0.9, f"closed after {elapsed:.2f}s, before the timeout"
        assert _metric(sc, sample) == 1.0
        assert _metric(sc, other) == 0.0
        got, _how = _drain_until_closed(s)
        assert got < 8 << 20, "the whole answer arrived; nothing was cut off"
    finally:
        s.close()
    rec = sc.wait_audit(rid)
    assert (rec["decision"], rec["status"], rec["tenant"], rec["operation"]) == ("allow", 200, "acme", "Converse"), rec
    if kind == "buffered":
        assert "stream_error" not in rec, rec
        logged = [line for line in sc.stderr_text().splitlines() if rid in line and "connection closed" in line]
        assert logged, sc.stderr_tail()
    else:
        assert rec["stream_error"] == "client_stalled", rec
    # The sidecar serves on.
    ok = sc.request("POST", f"/model/{HAIKU}/converse", CONVERSE_BODY, token=mint())
    assert ok.status == 200
