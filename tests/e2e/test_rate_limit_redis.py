"""Shared rate limits in Redis (docs/reference.md §3 `[rate_limit] backend = "redis"`,
§5.1 token budget, §8 429 / 503 `rate_limit_unavailable`, §9 metrics):
limits held in a real redis-server that the tests start on a free port,
shared by every sidecar pointed at it, and `on_backend_error` when Redis is
down at start or dies mid-run.

redis-server must be installed (scripts/test.sh installs Debian's); without
it these tests fail under CI=true and are skipped otherwise."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

import harness
from harness import converse_args

REDIS_SERVER = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server")
                                                else None)

if REDIS_SERVER is None:
    if os.environ.get("CI") == "true":
        pytest.fail("redis-server is required under CI=true (scripts/test.sh installs it)", pytrace=False)
    pytest.skip("redis-server not installed (scripts/test.sh installs it)", allow_module_level=True)


# --------------------------------------------------------------------------
# A redis-server of the test's own, and a minimal RESP client
# --------------------------------------------------------------------------


class RedisServer:
    def __init__(self, workdir, password: str | None = None):
        self.port = harness.free_port()
        self.workdir = workdir
        self.password = password
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}"

    def start(self):
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir)]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command("PING") == "PONG":
                    return self
            except OSError:
                pass
            assert self.proc.poll() is None, f"redis-server exited with {self.proc.returncode}"
            assert time.monotonic() < deadline, "redis-server did not answer PING within 10 s"
            time.sleep(0.02)

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def command(self, *args):
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
            f = s.makefile("rb")
            if self.password:
                s.sendall(_resp("AUTH", self.password))
                _read(f)
            s.sendall(_resp(*args))
            return _read(f)

    def keys(self) -> list[str]:
        return sorted(self.command("KEYS", "tenantgate:*"))

    def pttl(self, key: str) -> int:
        return self.command("PTTL", key)


def _resp(*args) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


def _read(f):
    line = f.readline()
    if not line:
        raise OSError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode()
    if kind == b"*":
        return [_read(f) for _ in range(int(rest))]
    raise OSError(f"unexpected RESP {line!r}")


@pytest.fixture
def redis_server(tmp_path):
    servers = []

    def make(password=None, start=True):
        r = RedisServer(tmp_path, password)
        servers.append(r)
        return r.start() if start else r

    yield make
    for r in servers:
        r.kill()


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _config(url, on_backend_error="local", limits=None, tenants=("acme",)):
    cfg = {"rate_limit": {"backend": "redis", "redis_url": url, "on_backend_error": on_backend_error}}
    if limits:
        cfg["tenants"] = {t: {"rate_limit": limits} for t in tenants}
    return cfg


def _call(client, model=harness.HAIKU):
    """One Converse; returns (status, reason, seconds)."""
    started = time.monotonic()
    try:
        client.converse(**converse_args(model))
        status, reason = 200, None
    except Exception:  # noqa: BLE001 - the tap holds the answer
        status, reason = client.tap.status, client.tap.headers.get("x-tenantgate-reason")
    return status, reason, time.monotonic() - started


def _throttled(client, call, reason, fake):
    before = len(fake.recorded())
    harness.expect_client_error(client, call, 429, reason)
    retry_after = client.tap.headers.get("retry-after")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, client.tap.headers
    assert len(fake.recorded()) == before, "a throttled request reached upstream"
    return int(retry_after)


def _metric(sc, name) -> float | None:
    for line in sc.admin("/metrics").body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def _wait_backend(sc, up: bool, timeout=6.0):
    deadline = time.monotonic() + timeout
    want = 1.0 if up else 0.0
    while _metric(sc, "tenantgate_rate_limit_backend_up") != want:
        assert time.monotonic() < deadline, f"backend_up never {want}\n{sc.stderr_tail()}"
        time.sleep(0.05)


def _last_audit(sc, client):
    rid = client.tap.headers.get("x-tenantgate-request-id")
    assert rid, client.tap.headers
    return sc.wait_audit(request_id=rid)


# --------------------------------------------------------------------------
# Shared limits
# --------------------------------------------------------------------------


def test_burst_then_throttled_other_tenant_unaffected(start_sidecar_fn, fake_aws, mint, redis_server):
    """docs/reference.md §3/§8: with backend = "redis" the tenant's burst is spent in
    Redis, then 429 ThrottlingException `rate_limited` with a truthful
    Retry-After; another tenant is unaffected; keys expire."""
    r = redis_server()
    sc = start_sidecar_fn(_config(r.url, "deny", {"requests_per_second": 0.2, "burst": 2}))
    acme = harness.make_client(sc.url, token=mint())
    assert _call(acme)[0] == 200
    assert _call(acme)[0] == 200
    retry = _throttled(acme, lambda: acme.converse(**converse_args()), "rate_limited", fake_aws)
    assert 1 <= retry <= 5, retry
    assert "rate_limit_fallback" not in _last_audit(sc, acme)
    globex = harness.make_client(sc.url, token=mint("globex", "gary"))
    globex.converse(**converse_args(harness.NOVA))
    assert len(fake_aws.recorded()) == 3
    # The state is in Redis, each key with a TTL that ends when its bucket
    # is full again: acme's two cells at 0.2/s in 10 s; globex's one cell at
    # 1000/s (the defaults) in 1 ms, so its key is already gone.
    keys = r.keys()
    assert keys == ["tenantgate:{acme}:r"], keys
    assert 5_000 < r.pttl("tenantgate:{acme}:r") <= 10_000, r.pttl("tenantgate:{acme}:r")
    assert _metric(sc, "tenantgate_rate_limit_backend_up") == 1.0


def test_per_user_limit(start_sidecar_fn, fake_aws, mint, redis_server):
    """docs/reference.md §3 `user_requests_per_second`: one user's limit, in Redis, does
    not touch a colleague's."""
    r = redis_server()
    limits = {"requests_per_second": 100, "burst": 100, "user_requests_per_second": 0.1, "user_burst": 1}
    sc = start_sidecar_fn(_config(r.url, "deny", limits))
    alice = harness.make_client(sc.url, token=mint("acme", "alice"))
    bob = harness.make_client(sc.url, token=mint("acme", "bob"))
    assert _call(alice)[0] == 200
    _throttled(alice, lambda: alice.converse(**converse_args()), "rate_limited", fake_aws)
    _throttled(alice, lambda: alice.converse(**converse_args()), "rate_limited", fake_aws)
    assert _call(bob)[0] == 200
    assert {"tenantgate:{acme}:u:alice", "tenantgate:{acme}:u:bob"} <= set(r.keys())


def test_token_budget_charged_in_redis(start_sidecar_fn, fake_aws, mint, redis_server):
    """docs/reference.md §5.1: usage is charged to the shared budget at the end of each
    response; once it is spent, 429 `token_budget_exhausted`."""
    r = redis_server()
    sc = start_sidecar_fn(_config(r.url, "deny", {"tokens_per_minute": 20}))  # each answer costs 11 + 7 = 18
    client = harness.make_client(sc.url, token=mint())
    client.converse(**converse_args())  # 20 -> 2
    client.converse(**converse_args())  # 2 > 0: admitted, -> -16
    # The charge is sent after the response, without holding it: wait for both.
    deadline = time.monotonic() + 5
    while r.pttl("tenantgate:{acme}:b") < 100_000:  # full again in 2 x 54 s
        assert time.monotonic() < deadline, r.pttl("tenantgate:{acme}:b")
        time.sleep(0.02)
    retry = _throttled(client, lambda: client.converse(**converse_args()), "token_budget_exhausted", fake_aws)
    assert 47 <= retry <= 49, retry
    assert len(fake_aws.recorded()) == 2


def test_two_sidecars_share_one_budget(start_sidecar_fn, fake_aws, mint, redis_server):
    """docs/reference.md §3: replicas sharing one Redis share one burst: 4 across both,
    the 5th on either is refused. The URL's password never reaches logs."""
    r = redis_server(password="e2e-redis-pw-" + os.urandom(6).hex())
    limits = {"requests_per_second": 0.1, "burst": 4}
    a = start_sidecar_fn(_config(r.url, "deny", limits))
    b = start_sidecar_fn(_config(r.url, "deny", limits))
    ca = harness.make_client(a.url, token=mint())
    cb = harness.make_client(b.url, token=mint())
    assert [_call(c)[0] for c in (ca, cb, ca, cb)] == [200, 200, 200, 200]
    _throttled(ca, lambda: ca.converse(**converse_args()), "rate_limited", fake_aws)
    _throttled(cb, lambda: cb.converse(**converse_args()), "rate_limited", fake_aws)
    assert len(fake_aws.recorded()) == 4
    for sc in (a, b):
        text = sc.stdout_text() + sc.stderr_text()
        assert r.password not in text


# --------------------------------------------------------------------------
# on_backend_error: down at start, killed mid-run, recovery
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["local", "deny", "allow"])
def test_backend_down_then_up_then_killed_then_back(mode, start_sidecar_fn, fake_aws, mint, redis_server):
    """docs/reference.md §3 `on_backend_error`, §8 503 `rate_limit_unavailable`: Redis
    down at start and killed mid-run -> every request is answered at once
    (no more than ~50 ms spent on Redis) by the fallback: local limits,
    503 with nothing upstream, or admitted; /readyz stays 200; the sidecar
    goes back to Redis when it answers again."""
    r = redis_server(start=False)
    limits = {"requests_per_second": 0.2, "burst": 2}
    sc = start_sidecar_fn(_config(r.url, mode, limits, tenants=("acme", "globex")))  # waits for /readyz
    assert _metric(sc, "tenantgate_rate_limit_backend_up") == 0.0
    acme = harness.make_client(sc.url, token=mint())
    globex = harness.make_client(sc.url, token=mint("globex", "gary"))

    def fallback_phase(client, model):
        before = len(fake_aws.recorded())
        results = [_call(client, model) for _ in range(3)]
        for _, _, secs in results:
            assert secs < 1.0, results
        statuses = [(s, why) for s, why, _ in results]
        if mode == "local":
            assert statuses == [(200, None), (200, None), (429, "rate_limited")], statuses
            assert len(fake_aws.recorded()) == before + 2
        elif mode == "deny":
            assert statuses == [(503, "rate_limit_unavailable")] * 3, statuses
            harness.assert_tenantgate_error(
                harness.RawResponse(client.tap.status, list(client.tap.headers.items()), client.tap.body),
                503, "rate_limit_unavailable")
            assert len(fake_aws.recorded()) == before, "a denied request reached upstream"
        else:
            assert statuses == [(200, None)] * 3, statuses
            assert len(fake_aws.recorded()) == before + 3
        assert _last_audit(sc, client).get("rate_limit_fallback") == mode
        assert sc.admin("/readyz").status == 200

    def redis_phase(client, model, tenant):
        before = len(fake_aws.recorded())
        assert _call(client, model)[0] == 200
        assert "rate_limit_fallback" not in _last_audit(sc, client)
        assert f"tenantgate:{{{tenant}}}:r" in r.keys()  # 1 of burst 2 at 0.2/s: 5 s TTL
        assert len(fake_aws.recorded()) == before + 1

    # 1. Down at start.
    fallback_phase(acme, harness.HAIKU)
    # 2. Redis comes up: found by the background probe.
    r.start()
    _wait_backend(sc, up=True)
    redis_phase(acme, harness.HAIKU, "acme")
    # 3. Killed mid-run (globex: its local state is fresh).
    r.kill()
    fallback_phase(globex, harness.NOVA)
    assert _metric(sc, "tenantgate_rate_limit_backend_up") == 0.0
    # 4. Back again.
    r.start()
    _wait_backend(sc, up=True)
    redis_phase(globex, harness.NOVA, "globex")
    assert _metric(sc, 'tenantgate_rate_limit_backend_transitions_total{state="down"}') >= 1
    assert _metric(sc, 'tenantgate_rate_limit_backend_transitions_total{state="up"}') >= 2
    assert _metric(sc, f'tenantgate_rate_limit_fallback_total{{action="{mode}"}}') == 6
    # Transitions are logged once each, not per request.
    log = sc.stderr_text()
    assert log.count("rate limit backend down") == 1, log[-3000:]
    assert log.count("answering again") == 2, log[-3000:]


def test_hung_redis_costs_a_request_about_50ms(start_sidecar_fn, fake_aws, mint, redis_server):
    """docs/reference.md §3: a Redis that accepts but does not answer (stopped) costs one
    request ~50 ms, then the backend is marked down and re-probed; it is
    used again once it answers."""
    r = redis_server()
    sc = start_sidecar_fn(_config(r.url, "allow", {"requests_per_second": 100, "burst": 100}))
    client = harness.make_client(sc.url, token=mint())
    assert _call(client)[0] == 200
    r.proc.send_signal(signal.SIGSTOP)
    try:
        results = [_call(client) for _ in range(4)]
        assert [s for s, _, _ in results] == [200] * 4, results
        assert all(secs < 1.0 for _, _, secs in results), results
        assert _last_audit(sc, client).get("rate_limit_fallback") == "allow"
        assert _metric(sc, "tenantgate_rate_limit_backend_up") == 0.0
    finally:
        r.proc.send_signal(signal.SIGCONT)
    _wait_backend(sc, up=True)
    assert _call(client)[0] == 200
    assert "rate_limit_fallback" not in _last_audit(sc, client)


def test_reload_switches_redis_url(start_sidecar_fn, fake_aws, mint, redis_server):
    """docs/reference.md §10: a reload that changes `redis_url` applies it (a new
    backend); one that switches to `backend = "local"` drops it."""
    dead = redis_server(start=False)
    live = redis_server()
    sc = start_sidecar_fn(_config(dead.url, "deny", {"requests_per_second": 1, "burst": 100}))  # keys live 1 s
    client = harness.make_client(sc.url, token=mint())
    assert _call(client)[:2] == (503, "rate_limit_unavailable")
    assert fake_aws.recorded() == []
    sc.rewrite_config({"rate_limit": {"redis_url": live.url}})
    sc.signal(signal.SIGHUP)
    _wait_backend(sc, up=True)
    assert _call(client)[0] == 200
    assert "tenantgate:{acme}:r" in live.keys()
    sc.rewrite_config({"rate_limit": {"backend": "local", "redis_url": harness.DELETE,
                                      "on_backend_error": harness.DELETE}})
    live.kill()
    sc.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "rate limits are now local" not in sc.stderr_text():
        assert time.monotonic() < deadline, sc.stderr_tail()
        time.sleep(0.05)
    assert _call(client)[0] == 200, "local limits: no backend to be down"
    assert _metric(sc, "tenantgate_rate_limit_backend_up") == 1.0
