"""Admin listener (docs/reference.md §3 `admin_listen`, §9): /healthz, /readyz, /metrics
live there and never on the proxy listener; and process lifecycle (docs/reference.md §2
SIGTERM: finish in-flight requests, exit 0)."""

from __future__ import annotations

import socket
import threading
import time

import harness
from fakeaws import Hang
from harness import converse_args


def test_healthz_and_readyz(sidecar):
    """docs/reference.md §9: /healthz 200 while running; /readyz 200 once ready."""
    assert sidecar.admin("/healthz").status == 200
    assert sidecar.admin("/readyz").status == 200


def test_admin_paths_not_on_proxy_port(sidecar, fake_aws, mint):
    """docs/reference.md §3: admin endpoints "never on `listen`": 404 there, with or
    without a token, and nothing upstream."""
    for path in ("/healthz", "/readyz", "/metrics"):
        for token in (None, mint()):
            resp = harness.http_request("GET", sidecar.url + path,
                                        headers={"x-tenant-token": token} if token else {})
            # 404 from routing; without a token an identity-first 401 is also closed.
            allowed = (404,) if token else (404, 401)
            assert resp.status in allowed, (path, resp)
            assert b"tenantgate_requests_total" not in resp.body
    harness.assert_nothing_upstream(fake_aws)


def test_metrics(sidecar, fake_aws, mint):
    """docs/reference.md §9: Prometheus text on the admin port with the request counter
    labelled tenant/operation/decision/status."""
    client = harness.make_client(sidecar.url, token=mint())
    client.converse(**converse_args())
    try:
        client.converse(**converse_args(harness.NOVA))
    except Exception:  # noqa: BLE001 - the deny is the point
        pass
    resp = sidecar.admin("/metrics")
    assert resp.status == 200
    assert resp.headers.get("content-type", "").startswith("text/plain")
    text = resp.body.decode()
    for name in ("tenantgate_requests_total", "tenantgate_request_duration_seconds",
                 "tenantgate_tokens_total"):
        assert name in text, f"{name} missing from /metrics"
    lines = [line for line in text.splitlines() if line.startswith("tenantgate_requests_total{")]
    assert any('tenant="acme"' in line and 'operation="Converse"' in line and 'decision="allow"' in line
               and 'status="200"' in line for line in lines), lines
    assert any('decision="deny"' in line and 'status="403"' in line for line in lines), lines


def _gauge(sc, name: str) -> float:
    hits = [line for line in sc.admin("/metrics").body.decode().splitlines() if line.startswith(name + " ")]
    assert len(hits) == 1, (name, hits)
    return float(hits[0].rsplit(" ", 1)[1])


def test_verified_tokens_cached_gauge(start_sidecar_fn, fake_aws, mint):
    """docs/reference.md §9 metrics: `tenantgate_verified_tokens_cached` counts distinct
    verified tokens; a repeated token is a cache hit, a rejected token is
    never cached."""
    sc = start_sidecar_fn()
    assert _gauge(sc, "tenantgate_verified_tokens_cached") == 0
    tokens = [mint(user=u) for u in ("alice", "bob", "carol")]
    for tok in tokens + tokens:
        harness.make_client(sc.url, token=tok).converse(**converse_args())
    assert _gauge(sc, "tenantgate_verified_tokens_cached") == 3
    expired = mint(user="dave", exp=int(time.time()) - 3600)
    r = sc.request("POST", f"/model/{harness.HAIKU}/converse", b'{"messages":[]}', token=expired)
    assert r.status == 401, r
    assert _gauge(sc, "tenantgate_verified_tokens_cached") == 3


def test_unknown_admin_path(sidecar):
    """docs/reference.md §9: the admin listener serves its three paths only."""
    assert sidecar.admin("/model/x/converse").status == 404


def test_sigterm_finishes_in_flight_then_exits_0(start_sidecar_fn, fake_aws, mint):
    """docs/reference.md §2: SIGTERM stops accepting, finishes in-flight requests
    (bounded by shutdown_grace_secs) and exits 0; §9 /readyz goes false."""
    sc = start_sidecar_fn({"server": {"shutdown_grace_secs": 10}})
    fake_aws.script(Hang(1.5), times=1)
    client = harness.make_client(sc.url, token=mint(), read_timeout=15)
    result = {}

    def call():
        try:
            result["out"] = client.converse(**converse_args())
        except Exception as e:  # noqa: BLE001
            result["err"] = e

    t = threading.Thread(target=call)
    t.start()
    fake_aws.wait_for_requests(1, timeout=5)
    t0 = time.monotonic()
    sc.signal()
    # While the request drains: not ready, and no new proxy connections.
    not_ready = refused = False
    while time.monotonic() - t0 < 1.2 and not (not_ready and refused):
        try:
            not_ready = not_ready or harness.http_request("GET", sc.admin_url + "/readyz", timeout=1).status != 200
        except OSError:
            not_ready = True
        try:
            socket.create_connection(("127.0.0.1", sc.port), timeout=1).close()
        except OSError:
            refused = True
        time.sleep(0.05)
    t.join(15)
    assert "out" in result, f"in-flight request failed on shutdown: {result.get('err')!r}"
    sc.proc.wait(15)
    assert sc.proc.returncode == 0, sc.stderr_tail()
    assert time.monotonic() - t0 < 10
    assert not_ready, "/readyz stayed 200 after SIGTERM"
    assert refused, "the proxy port still accepted connections after SIGTERM"


def test_sigint_exits_0(start_sidecar_fn):
    """docs/reference.md §2: SIGINT like SIGTERM."""
    import signal

    sc = start_sidecar_fn()
    sc.signal(signal.SIGINT)
    sc.proc.wait(15)
    assert sc.proc.returncode == 0, sc.stderr_tail()
