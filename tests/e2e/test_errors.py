"""Request-level errors (docs/reference.md §8) and the server's protective limits (SPEC
§3 `max_body_bytes`, `header_timeout_secs`, and tenantgate's own
`body_timeout_secs`)."""

from __future__ import annotations

import http.client
import json
import select
import socket
import time

import pytest

import harness
from harness import HAIKU

MAX_BODY = 1048576  # harness.base_config server.max_body_bytes
HEADER_TIMEOUT = 2  # harness.base_config server.header_timeout_secs


def test_malformed_json_to_converse(sidecar, fake_aws, mint):
    """docs/reference.md §5/§8: Converse bodies may be parsed (guardrail, requestMetadata):
    a malformed one is 400 invalid_json (nothing upstream) or forwarded as
    is; it is never a 5xx."""
    resp = sidecar.request("POST", f"/model/{HAIKU}/converse", b'{"messages": [ {"role": "user", ', token=mint())
    assert resp.status < 500, resp
    if resp.status == 400:
        harness.assert_tenantgate_error(resp, 400, "invalid_json")
        harness.assert_nothing_upstream(fake_aws)
    else:
        rec = harness.assert_one_valid_upstream(fake_aws, "Converse")
        assert rec.body == b'{"messages": [ {"role": "user", '


def test_non_object_json_to_converse(sidecar, fake_aws, mint):
    """docs/reference.md §8: valid JSON of the wrong shape is not a 5xx either."""
    for body in (b"[]", b'"x"', b"null", b""):
        fake_aws.reset()
        resp = sidecar.request("POST", f"/model/{HAIKU}/converse", body, token=mint())
        assert resp.status < 500, (body, resp)
        if resp.status == 400:
            harness.assert_tenantgate_error(resp, 400, {"invalid_json", "invalid_parameter"})
            harness.assert_nothing_upstream(fake_aws)


def _read_response(sock) -> http.client.HTTPResponse:
    sock.settimeout(10)
    resp = http.client.HTTPResponse(sock)
    resp.begin()
    resp.body = resp.read()
    return resp


def _send_big(port: int, head: bytes, chunks, limit_sent: int):
    """Send ``head`` then body ``chunks`` until the server answers (or
    ``limit_sent`` body bytes went out); return (response, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(head)
        sent = 0
        for chunk in chunks:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable or sent >= limit_sent:
                break
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                break
            sent += len(chunk)
        # Give the server a moment, then read what it said.
        select.select([sock], [], [], 10)
        return _read_response(sock), sent
    finally:
        sock.close()


def _as_raw(resp: http.client.HTTPResponse) -> harness.RawResponse:
    return harness.RawResponse(resp.status, resp.getheaders(), resp.body)


def test_content_length_over_limit(sidecar, fake_aws, mint):
    """docs/reference.md §3/§8: Content-Length over max_body_bytes -> 413 body_too_large,
    answered before the client sends the whole (50 MB) body."""
    total = 50 * 1024 * 1024
    head = (
        f"POST /model/{HAIKU}/invoke HTTP/1.1\r\nHost: 127.0.0.1:{sidecar.port}\r\n"
        f"Content-Type: application/json\r\nx-tenant-token: {mint()}\r\n"
        f"Content-Length: {total}\r\n\r\n"
    ).encode()
    chunks = (b"x" * 65536 for _ in range(total // 65536))
    resp, sent = _send_big(sidecar.port, head, chunks, limit_sent=MAX_BODY + 4 * 65536)
    harness.assert_tenantgate_error(_as_raw(resp), 413, "body_too_large")
    assert sent < total
    harness.assert_nothing_upstream(fake_aws)


def test_chunked_body_over_limit(sidecar, fake_aws, mint):
    """docs/reference.md §3/§8: a chunked body that grows past max_body_bytes -> 413."""
    head = (
        f"POST /model/{HAIKU}/invoke HTTP/1.1\r\nHost: 127.0.0.1:{sidecar.port}\r\n"
        f"Content-Type: application/json\r\nx-tenant-token: {mint()}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b"y" * 65536
    chunks = (b"%x\r\n" % len(piece) + piece + b"\r\n" for _ in range(100))
    resp, _ = _send_big(sidecar.port, head, chunks, limit_sent=MAX_BODY + 8 * 65536)
    harness.assert_tenantgate_error(_as_raw(resp), 413, "body_too_large")
    harness.assert_nothing_upstream(fake_aws)


def test_body_at_limit_passes_and_one_more_byte_fails(sidecar, fake_aws, mint, creds):
    """docs/reference.md §3: `max_body_bytes` is the largest accepted body."""
    client = harness.make_client(sidecar.url, token=mint())
    body = b'{"p":"' + b"a" * (MAX_BODY - 8) + b'"}'
    assert len(body) == MAX_BODY
    client.invoke_model(modelId=HAIKU, body=body)
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    assert rec.body == body
    fake_aws.reset()
    harness.expect_client_error(client, lambda: client.invoke_model(modelId=HAIKU, body=body + b" "), 413,
                                "body_too_large")
    harness.assert_nothing_upstream(fake_aws)


def _closed_within(sock, deadline: float, drip: bytes = b"") -> bool:
    """True once the server closes the connection (EOF, reset, or an error
    response followed by close) before ``deadline``. Sends ``drip`` one
    byte every 0.25 s meanwhile."""
    i = 0
    while time.monotonic() < deadline:
        readable, _, _ = select.select([sock], [], [], 0.25)
        if readable:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, OSError):
                return True
            if not data:
                return True
            continue  # e.g. a 408 response; wait for the close
        if drip:
            try:
                sock.send(drip[i % len(drip): i % len(drip) + 1])
            except (BrokenPipeError, ConnectionResetError, OSError):
                return True
            i += 1
    return False


@pytest.mark.parametrize("mode", ["stall", "drip"])
def test_header_timeout(sidecar, mode):
    """docs/reference.md §3 `header_timeout_secs`: a client that sends half a request
    line and stalls (or drips header bytes slowly) is disconnected after
    about header_timeout_secs."""
    sock = socket.create_connection(("127.0.0.1", sidecar.port), timeout=10)
    try:
        t0 = time.monotonic()
        sock.sendall(b"POST /model/anthropic.claude-3-haiku-20240307-v1:0/conv")
        closed = _closed_within(sock, t0 + HEADER_TIMEOUT + 6, drip=b"erse" if mode == "drip" else b"")
        elapsed = time.monotonic() - t0
    finally:
        sock.close()
    assert closed, f"connection still open {elapsed:.1f}s after a partial request ({mode})"
    assert elapsed >= HEADER_TIMEOUT * 0.5, f"closed after {elapsed:.2f}s, before the header timeout"
    assert sidecar.admin("/healthz").status == 200


BODY_TIMEOUT = 2


def _admitted_with_body_pending(sc, path: str, start: bytes, mint):
    """Sends ``start`` (headers and part of the body) and returns (socket,
    send time) once that request holds the tenant's only concurrency slot,
    shown by a probe getting 429. A probe is sent only after a pause, and
    an attempt is redone when the probe won the slot (413) or the pending
    request was refused meanwhile, so the probe never decides the race."""
    seen = []
    for attempt in range(1, 6):
        sock = socket.create_connection(("127.0.0.1", sc.port), timeout=10)
        t0 = time.monotonic()
        sock.sendall(start)
        time.sleep(0.2 * attempt)
        refused = select.select([sock], [], [], 0)[0]
        status = None if refused else _over_limit_probe(sc, path, mint())
        seen.append("refused" if refused else status)
        if status == 429 and not select.select([sock], [], [], 0)[0]:
            return sock, t0
        assert status in (None, 413, 429), seen
        sock.close()
    raise AssertionError(f"the pending request never held the slot: {seen}")


def _over_limit_probe(sc, path: str, token: str) -> int:
    """A chunked body over `max_body_bytes` (1000 here): past admission it
    is 413 (never upstream); while the tenant's slot is taken it is 429."""
    big = b"x" * 1001
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{sc.port}\r\nContent-Type: application/json\r\n"
           f"Transfer-Encoding: chunked\r\nConnection: close\r\nx-tenant-token: {token}\r\n\r\n").encode()
    req += f"{len(big):x}\r\n".encode() + big + b"\r\n0\r\n\r\n"
    with socket.create_connection(("127.0.0.1", sc.port), timeout=10) as s:
        s.sendall(req)
        return _read_response(s).status


@pytest.mark.parametrize("mode", ["stall", "drip"])
def test_body_timeout(start_sidecar_fn, fake_aws, mint, mode):
    """`server.body_timeout_secs` (docs/reference.md §3 leaves it to tenantgate; §8 error
    shape): the headers arrive, then the body stalls (or drips a byte every
    0.25 s). After about the timeout the client gets 400 `body_timeout` and
    the connection is closed. Nothing reaches upstream, the audit record
    says why, and the tenant's one concurrency slot is free again."""
    sc = start_sidecar_fn({"server": {"body_timeout_secs": BODY_TIMEOUT, "max_body_bytes": 1000},
                           "tenant_defaults": {"rate_limit": {"max_concurrent": 1}}})
    path = f"/model/{HAIKU}/converse"
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": "x" * 200}]}]}).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{sc.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nx-tenant-token: {mint()}\r\n\r\n").encode()
    sent = 10
    sock, t0 = _admitted_with_body_pending(sc, path, head + body[:sent], mint)
    try:
        while time.monotonic() < t0 + BODY_TIMEOUT + 6:
            readable, _, _ = select.select([sock], [], [], 0.25)
            if readable:
                break
            if mode == "drip" and sent < len(body) - 1:
                sock.sendall(body[sent:sent + 1])
                sent += 1
        elapsed = time.monotonic() - t0
        resp = _read_response(sock)
        assert resp.status == 400, (resp.status, resp.body)
        assert resp.getheader("x-tenantgate-reason") == "body_timeout"
        assert resp.getheader("x-amzn-errortype", "").startswith("ValidationException")
        assert json.loads(resp.body)["reason"] == "body_timeout"
        sock.settimeout(3)
        assert sock.recv(1) == b"", "connection left open after the body timeout"
    finally:
        sock.close()
    assert sent < len(body), "the body was completed; the test proves nothing"
    assert BODY_TIMEOUT * 0.9 <= elapsed < BODY_TIMEOUT + 4, f"answered after {elapsed:.2f}s"
    harness.assert_nothing_upstream(fake_aws)
    rec = sc.wait_audit(predicate=lambda r: r.get("reason") == "body_timeout")
    assert (rec["status"], rec["decision"], rec["tenant"], rec["upstream_status"]) == (400, "deny", "acme", None), rec
    # The slot came back: the next request of the tenant goes through.
    ok = sc.request("POST", path, body, token=mint())
    assert ok.status == 200, ok
    assert sc.admin("/healthz").status == 200


def test_errors_are_aws_shaped_for_the_sdk(sidecar, fake_aws, mint):
    """docs/reference.md §8: status, `x-amzn-ErrorType`, `x-tenantgate-reason`, JSON body
    {message, reason}; boto3 raises its usual ClientError with that code."""
    client = harness.make_client(sidecar.url, token=None)
    err = harness.expect_client_error(client, lambda: client.converse(**harness.converse_args()), 401,
                                      "missing_token")
    assert err.response["Error"]["Message"]
    body = json.loads(client.tap.body)
    assert set(body) >= {"message", "reason"}
    assert client.tap.headers["content-type"].startswith("application/json")


def test_refusal_before_the_body_is_read_never_breaks_the_next_request(sidecar, fake_aws, mint):
    """docs/reference.md §8 on a keep-alive connection: a request refused before its body
    was read answers `Connection: close` (the unread body makes the
    connection unusable), so a client sending its next request never hits a
    connection closed under it; a request refused after its body was read
    keeps the connection."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(sidecar.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    body = b'{"messages": [{"role": "user", "content": [{"text": "' + b"x" * 20000 + b'"}]}]}'
    try:
        for _ in range(5):
            conn.request("POST", "/model/not-allowed-model/converse", body,
                         {"x-tenant-token": mint(), "content-type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 403, resp.status
            assert resp.getheader("x-tenantgate-reason") == "model_not_allowed"
            assert (resp.getheader("connection") or "").lower() == "close"
    finally:
        conn.close()
    harness.assert_nothing_upstream(fake_aws)
