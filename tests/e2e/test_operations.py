"""Operations (docs/reference.md §2 signals, §9 readiness and metrics, §10 reload, §11
deployment): what a rolling upgrade or a config change does to live traffic.

- a reload while requests flow drops none of them, and the change applies;
- SIGTERM lets an open stream finish, with readiness off and the listener
  closed at once, and exits 0 within ``shutdown_grace_secs``;
- a stream still open when the grace period ends is cut, and the process
  still exits 0, on time;
- every example config (``examples/*.toml``, ``config.toml``) passes
  ``tenantgate check``.
"""

from __future__ import annotations

import http.client
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

import harness
from fakeaws import event, event_stream
from harness import HAIKU, NOVA, converse_args

LLAMA = "meta.llama3-1-8b-instruct-v1:0"


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def slow_converse_stream(parts, gap: float, stop: threading.Event):
    """A scripted ConverseStream answer (fake AWS ``script`` API) that sends
    ``messageStart``, then one ``contentBlockDelta`` per part ``gap`` seconds
    apart, then ``contentBlockStop``, ``messageStop`` and ``metadata``, each
    event flushed as it is produced. ``stop`` ends it early (test teardown)."""

    def messages():
        yield event("messageStart", {"role": "assistant"})
        for part in parts:
            if stop.wait(gap):
                return
            yield event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": part}})
        yield event("contentBlockStop", {"contentBlockIndex": 0})
        yield event("messageStop", {"stopReason": "end_turn"})
        yield event("metadata", {"usage": {"inputTokens": 5, "outputTokens": len(parts), "totalTokens": 5 + len(parts)},
                                 "metrics": {"latencyMs": 42}})

    def handler(fake, rec):
        return event_stream(messages())

    return handler


class StreamReader(threading.Thread):
    """Reads a ConverseStream through boto3 in a thread, recording every
    event and when it arrived, and the error if the stream broke."""

    def __init__(self, client, model=HAIKU):
        super().__init__(daemon=True)
        self.client, self.model = client, model
        self.events: list[tuple[float, dict]] = []
        self.error: BaseException | None = None
        self.done_at: float | None = None

    def run(self):
        try:
            resp = self.client.converse_stream(**converse_args(self.model))
            for ev in resp["stream"]:
                self.events.append((time.monotonic(), ev))
        except BaseException as e:  # noqa: BLE001 - recorded for the assertions
            self.error = e
        finally:
            self.done_at = time.monotonic()

    def kinds(self) -> list[str]:
        return [next(iter(ev)) for _, ev in self.events]

    def text(self) -> str:
        return "".join(ev["contentBlockDelta"]["delta"]["text"] for _, ev in self.events if "contentBlockDelta" in ev)

    def wait_for_deltas(self, n: int, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.kinds().count("contentBlockDelta") >= n or self.done_at is not None:
                break
            time.sleep(0.01)
        assert self.kinds().count("contentBlockDelta") >= n, (self.kinds(), self.error)


def _eventually(pred, timeout=10.0, step=0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False


def _allowed(sc, token, model) -> bool:
    r = sc.request("POST", f"/model/{model}/converse", b'{"messages":[]}', token=token)
    assert r.status in (200, 403), r
    return r.status == 200


def _metric(sc, sample_prefix: str) -> float:
    text = sc.admin("/metrics").body.decode()
    hits = [line for line in text.splitlines() if line.startswith(sample_prefix + " ")]
    assert len(hits) == 1, (sample_prefix, hits)
    return float(hits[0].rsplit(" ", 1)[1])


def _proxy_accepts(sc) -> bool:
    try:
        socket.create_connection(("127.0.0.1", sc.port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _readyz_on(conn: http.client.HTTPConnection) -> int:
    conn.request("GET", "/readyz")
    resp = conn.getresponse()
    resp.read()
    return resp.status


# --------------------------------------------------------------------------
# (a) reload under traffic
# --------------------------------------------------------------------------


def test_reload_during_traffic_drops_no_request(start_sidecar_fn, fake_aws, mint):
    """docs/reference.md §10: SIGHUP and file changes reload the config; "in-flight
    requests finish under the config they started with". Two clients keep
    keep-alive connections busy (Converse and ConverseStream) while the file
    is rewritten ten times (four changes one after the other, three applied
    by SIGHUP and one picked up by the file watch, then six SIGHUPs 0.1 s
    apart): not one request fails or sees its connection reset, every change
    takes effect, and every reload counts as ``result="ok"`` (docs/reference.md §9)."""
    sc = start_sidecar_fn()
    tok = mint()
    stop = threading.Event()
    results = {"converse": 0, "stream": 0}
    errors: list[str] = []

    def converse_loop():
        client = harness.make_client(sc.url, token=tok)
        while not stop.is_set():
            try:
                out = client.converse(**converse_args(HAIKU))
                assert out["output"]["message"]["content"][0]["text"] == fake_aws.reply_text
                results["converse"] += 1
            except Exception as e:  # noqa: BLE001 - every failure is the finding
                errors.append(f"Converse: {e!r}")

    def stream_loop():
        client = harness.make_client(sc.url, token=tok)
        while not stop.is_set():
            try:
                resp = client.converse_stream(**converse_args(HAIKU))
                kinds = [next(iter(ev)) for ev in resp["stream"]]
                assert kinds[0] == "messageStart" and kinds[-1] == "metadata", kinds
                results["stream"] += 1
            except Exception as e:  # noqa: BLE001
                errors.append(f"ConverseStream: {e!r}")

    threads = [threading.Thread(target=f, daemon=True) for f in (converse_loop, converse_loop, stream_loop)]
    for t in threads:
        t.start()
    try:
        assert _eventually(lambda: results["converse"] >= 10 and results["stream"] >= 3, 10), (results, errors)
        models = ["anthropic.claude-3-haiku-*"]
        steps = [
            ("amazon.nova-*", NOVA, "sighup"),
            ("meta.llama3-*", LLAMA, "file-watch"),
            (None, None, "sighup"),  # limits only: rate-limit state must survive
            ("amazon.titan-*", "amazon.titan-text-express-v1", "sighup"),
        ]
        for pattern, model, how in steps:
            before = results["converse"] + results["stream"]
            if pattern:
                assert not _allowed(sc, tok, model), f"{model} allowed before the reload"
                models = models + [pattern]
                sc.rewrite_config({"tenants": {"acme": {"models": models}}})
            else:
                sc.rewrite_config({"tenant_defaults": {"rate_limit": {"burst": 999}}})
            if how == "sighup":
                sc.signal(signal.SIGHUP)
            if model:
                assert _eventually(lambda m=model: _allowed(sc, tok, m), 15), (how, model, sc.stderr_tail())
            # Traffic went on across this reload.
            assert _eventually(lambda b=before: results["converse"] + results["stream"] >= b + 10, 10), results
        # And a quick series of reloads, 0.1 s apart, under the same traffic.
        before = results["converse"] + results["stream"]
        for burst in range(900, 906):
            sc.rewrite_config({"tenant_defaults": {"rate_limit": {"burst": burst}}})
            sc.signal(signal.SIGHUP)
            time.sleep(0.1)
        assert _eventually(lambda: results["converse"] + results["stream"] >= before + 10, 10), results
        expected_reloads = len(steps) + 6
        assert _eventually(lambda: _metric(sc, 'tenantgate_config_reloads_total{result="ok"}') >= expected_reloads, 5)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert not errors, f"{len(errors)} of {sum(results.values()) + len(errors)} requests failed: {errors[:5]}"
    assert results["converse"] >= 40 and results["stream"] >= 10, results
    assert _metric(sc, 'tenantgate_config_reloads_total{result="error"}') == 0
    assert _metric(sc, "tenantgate_config_last_reload_successful") == 1
    assert all(r.signature_valid for r in fake_aws.recorded()), fake_aws.describe()
    assert sc.running and sc.admin("/readyz").status == 200


# --------------------------------------------------------------------------
# (b) SIGTERM drains an open stream
# --------------------------------------------------------------------------


def test_sigterm_lets_an_open_stream_finish(start_sidecar_fn, fake_aws, mint):
    """docs/reference.md §2: SIGTERM stops accepting, finishes in-flight requests (bounded
    by ``server.shutdown_grace_secs``) and exits 0; §9: ``/readyz`` is false
    "from the moment shutdown starts". A ConverseStream whose upstream sends
    an event every 0.3 s is open when SIGTERM arrives: ``/readyz`` answers
    503 at once, the proxy port refuses new connections, the stream still
    delivers every event, and the process exits 0 once it has ended, well
    within the grace period."""
    grace = 8
    sc = start_sidecar_fn({"server": {"shutdown_grace_secs": grace}})
    parts = [f"part{i} " for i in range(8)]
    stop = threading.Event()
    fake_aws.script(slow_converse_stream(parts, 0.3, stop), operation="ConverseStream", times=1)
    admin = http.client.HTTPConnection("127.0.0.1", sc.admin_port, timeout=2)  # keep-alive, like a prober
    try:
        assert _readyz_on(admin) == 200
        reader = StreamReader(harness.make_client(sc.url, token=mint(), read_timeout=15))
        reader.start()
        reader.wait_for_deltas(1)

        t0 = time.monotonic()
        sc.signal(signal.SIGTERM)
        # Readiness goes false at once (within signal delivery).
        ready_status, not_ready_at = 200, None
        while time.monotonic() - t0 < 1.0:
            ready_status = _readyz_on(admin)
            if ready_status == 503:
                not_ready_at = time.monotonic()
                break
            time.sleep(0.01)
        assert ready_status == 503, f"/readyz still {ready_status} 1 s after SIGTERM"
        assert not_ready_at - t0 < 0.5
        # A fresh probe connection sees "not ready" too, and liveness holds
        # while the process drains (docs/reference.md §9: /healthz 200 while it runs).
        assert harness.http_request("GET", sc.admin_url + "/readyz", timeout=1).status == 503
        assert harness.http_request("GET", sc.admin_url + "/healthz", timeout=1).status == 200
        # No new proxy connections while the stream drains.
        assert _eventually(lambda: not _proxy_accepts(sc), 1.0, 0.02), "proxy port still accepts after SIGTERM"
        assert reader.done_at is None, "the stream ended before the checks ran; make it slower"

        reader.join(15)
        sc.proc.wait(grace + 5)
        exited = time.monotonic()
    finally:
        stop.set()
        admin.close()
    assert reader.error is None, f"the open stream failed on shutdown: {reader.error!r}"
    assert reader.kinds() == (["messageStart"] + ["contentBlockDelta"] * len(parts)
                              + ["contentBlockStop", "messageStop", "metadata"]), reader.kinds()
    assert reader.text() == "".join(parts)
    assert sc.proc.returncode == 0, sc.stderr_tail()
    assert reader.done_at <= exited
    assert exited - t0 < grace, f"exit took {exited - t0:.1f}s, grace is {grace}s"
    rec = sc.wait_audit(predicate=lambda r: r.get("operation") == "ConverseStream")
    assert rec["status"] == 200 and rec["decision"] == "allow" and "stream_error" not in rec, rec
    assert rec["output_tokens"] == len(parts), rec


# --------------------------------------------------------------------------
# (c) grace period ends with a stream still open
# --------------------------------------------------------------------------


def test_stream_open_past_the_grace_period_is_cut_and_exit_is_0(start_sidecar_fn, fake_aws, mint):
    """docs/reference.md §2: draining is "bounded by ``server.shutdown_grace_secs``". A
    stream that would run for ~9 s more is open at SIGTERM with a 1 s grace:
    the process exits 0 right after the grace period (not when the stream
    would have ended), the client's stream is cut short (an error, never a
    made-up ending) and the request still has its audit record, marked with
    a ``stream_error``."""
    grace = 1
    sc = start_sidecar_fn({"server": {"shutdown_grace_secs": grace}})
    parts = [f"p{i} " for i in range(30)]
    stop = threading.Event()
    fake_aws.script(slow_converse_stream(parts, 0.3, stop), operation="ConverseStream", times=1)
    try:
        reader = StreamReader(harness.make_client(sc.url, token=mint(), read_timeout=10))
        reader.start()
        reader.wait_for_deltas(1)
        t0 = time.monotonic()
        sc.signal(signal.SIGTERM)
        try:
            sc.proc.wait(grace + 4)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {grace + 4}s after SIGTERM with grace {grace}s\n{sc.stderr_tail()}")
        exited = time.monotonic()
        reader.join(10)
    finally:
        stop.set()
    assert sc.proc.returncode == 0, sc.stderr_tail()
    assert grace - 0.2 <= exited - t0 < grace + 3, f"exit after {exited - t0:.1f}s with grace {grace}s"
    assert not reader.is_alive(), "the client is still reading a stream of a process that exited"
    kinds = reader.kinds()
    assert "messageStop" not in kinds and kinds.count("contentBlockDelta") < len(parts), kinds
    assert reader.error is not None, f"a cut stream must surface as an error to the SDK, got {kinds}"
    assert "grace" in sc.stderr_text().lower(), sc.stderr_tail()
    # docs/reference.md §1 "Every decision is audited": the cut stream too, as abnormal.
    rec = sc.wait_audit(predicate=lambda r: r.get("operation") == "ConverseStream")
    assert rec["decision"] == "allow" and rec.get("stream_error"), rec


# --------------------------------------------------------------------------
# (d) example configs
# --------------------------------------------------------------------------

EXAMPLES = sorted((harness.REPO_ROOT / "examples").glob("*.toml"))


def test_the_documented_examples_exist():
    """docs/reference.md §11 / docs/operating.md "Upgrade and rollback": the starting points a
    platform team is pointed at are all there."""
    names = {p.name for p in EXAMPLES}
    assert {"silo-static.toml", "pooled-jwt-assume-role.toml", "sagemaker-silo.toml", "sagemaker-pool.toml",
            "sagemaker-bridge.toml"} <= names, names


@pytest.mark.parametrize("path", EXAMPLES + [harness.REPO_ROOT / "config.toml"],
                         ids=lambda p: p.relative_to(harness.REPO_ROOT).as_posix())
def test_example_config_passes_check(path, sidecar_env, tmp_path):
    """docs/reference.md §2: ``tenantgate check --config PATH`` exits 0 for every example
    config, run from another directory (relative key files such as
    ``jwks_file`` resolve against the config file's directory, docs/reference.md §3)."""
    r = subprocess.run([harness.tenantgate_bin(), "check", "--config", str(path)], capture_output=True, text=True,
                       timeout=30, env=sidecar_env, cwd=str(tmp_path), stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r": OK \(", r.stdout), r.stdout
