"""Upstream faults (docs/reference.md §3 `[aws]` timeouts, §7, §8): refused, hanging,
stalling and reset upstreams, and AWS errors passing through. Every test is
bounded: a sidecar that does not time out fails the test, it never hangs it.
"""

from __future__ import annotations

import time

import pytest
from botocore.exceptions import ClientError

import harness
from fakeaws import Error, Hang, Reset, Stall
from harness import HAIKU, converse_args

RESPONSE_TIMEOUT = 2
STREAM_IDLE = 2
SLACK = 4  # scheduling slack on a loaded 2-core CI machine

SIDECAR_OVERRIDES = {
    "aws": {"response_timeout_secs": RESPONSE_TIMEOUT, "stream_idle_timeout_secs": STREAM_IDLE,
            "connect_timeout_ms": 1000},
}


@pytest.fixture
def client(sidecar, mint):
    # The SDK's own read timeout is well past the sidecar's, so a test can
    # tell which one fired.
    return harness.make_client(sidecar.url, token=mint(), read_timeout=20)


def _still_serves(sidecar, fake, client):
    """After a fault the sidecar keeps serving normally."""
    fake.reset()
    client.converse(**converse_args())
    assert len(fake.recorded()) == 1


def test_upstream_refused(start_sidecar, fake_aws, mint):
    """docs/reference.md §8: connection refused upstream -> 502 upstream_error."""
    closed = harness.ClosedPort()
    try:
        sc = start_sidecar({"aws": {"endpoints": {"bedrock_runtime": closed.url}}})
        c = harness.make_client(sc.url, token=mint())
        t0 = time.monotonic()
        err = harness.expect_client_error(c, lambda: c.converse(**converse_args()), 502, "upstream_error")
        assert time.monotonic() - t0 < 5
        rec = sc.wait_audit(harness.request_id_of(err))
        assert rec["status"] == 502 and rec["reason"] == "upstream_error"
    finally:
        closed.close()


def test_upstream_hangs_past_response_timeout(sidecar, fake_aws, client):
    """docs/reference.md §3 `response_timeout_secs`/§8: no response headers in time -> 504
    upstream_timeout, after about response_timeout_secs."""
    fake_aws.script(Hang(30))
    t0 = time.monotonic()
    err = harness.expect_client_error(client, lambda: client.converse(**converse_args()), 504, "upstream_timeout")
    elapsed = time.monotonic() - t0
    assert RESPONSE_TIMEOUT * 0.8 <= elapsed < RESPONSE_TIMEOUT + SLACK, elapsed
    assert len(fake_aws.recorded()) == 1  # it did reach upstream
    rec = sidecar.wait_audit(harness.request_id_of(err))
    assert rec["status"] == 504 and rec["reason"] == "upstream_timeout"
    _still_serves(sidecar, fake_aws, client)


def test_stream_request_hangs_past_response_timeout(sidecar, fake_aws, client):
    """docs/reference.md §8: the response timeout applies to streaming operations too."""
    fake_aws.script(Hang(30))
    t0 = time.monotonic()
    harness.expect_client_error(client, lambda: client.converse_stream(**converse_args()), 504, "upstream_timeout")
    assert time.monotonic() - t0 < RESPONSE_TIMEOUT + SLACK


@pytest.mark.parametrize("op", ["converse_stream", "invoke_stream"])
def test_stream_goes_silent_mid_stream(sidecar, fake_aws, client, op):
    """docs/reference.md §3 `stream_idle_timeout_secs`: upstream silent mid-stream -> the
    response is cut off; the SDK raises while iterating, within about the
    idle timeout (not its own 20 s read timeout)."""
    fake_aws.script(Stall(after_events=2, seconds=30))
    if op == "converse_stream":
        stream = client.converse_stream(**converse_args())["stream"]
    else:
        stream = client.invoke_model_with_response_stream(modelId=HAIKU, body=b"{}")["body"]
    got = []
    t0 = time.monotonic()
    with pytest.raises(Exception):
        for ev in stream:
            got.append(ev)
    elapsed = time.monotonic() - t0
    assert len(got) == 2, got
    assert elapsed < STREAM_IDLE + SLACK, f"stream cut after {elapsed:.1f}s"
    _still_serves(sidecar, fake_aws, client)


def test_plain_body_goes_silent(sidecar, fake_aws, client):
    """docs/reference.md §3 `stream_idle_timeout_secs` is the longest upstream silence
    between body bytes for any response: a half-sent InvokeModel body fails
    the call in time (truncated body or a 5xx), never a hang."""
    fake_aws.script(Stall(seconds=30))
    t0 = time.monotonic()
    with pytest.raises(Exception) as ei:
        out = client.invoke_model(modelId=HAIKU, body=b"{}")
        out["body"].read()
    elapsed = time.monotonic() - t0
    assert elapsed < STREAM_IDLE + SLACK, f"failed after {elapsed:.1f}s"
    if isinstance(ei.value, ClientError):
        assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] in (502, 504)
    _still_serves(sidecar, fake_aws, client)


@pytest.mark.parametrize("op", ["converse_stream", "invoke_stream"])
def test_stream_reset_mid_stream(sidecar, fake_aws, client, op):
    """docs/reference.md §7: upstream resets mid-stream -> the SDK raises while
    iterating (the stream is not completed as if whole), sidecar stays up."""
    fake_aws.script(Reset(after_events=2))
    if op == "converse_stream":
        stream = client.converse_stream(**converse_args())["stream"]
    else:
        stream = client.invoke_model_with_response_stream(modelId=HAIKU, body=b"{}")["body"]
    got = []
    t0 = time.monotonic()
    with pytest.raises(Exception):
        for ev in stream:
            got.append(ev)
    assert len(got) <= 2
    assert time.monotonic() - t0 < SLACK
    _still_serves(sidecar, fake_aws, client)


@pytest.mark.parametrize("op", ["converse", "converse_stream"])
def test_upstream_resets_before_responding(sidecar, fake_aws, client, op):
    """docs/reference.md §8: the upstream connection dies before response headers ->
    502 upstream_error (a tenantgate error, not a dropped client connection)."""
    fake_aws.script(Reset(headers=False))
    call = getattr(client, op)
    t0 = time.monotonic()
    err = harness.expect_client_error(client, lambda: call(**converse_args()), 502, "upstream_error")
    assert time.monotonic() - t0 < SLACK
    assert len(fake_aws.recorded()) >= 1
    rec = sidecar.wait_audit(harness.request_id_of(err))
    assert rec["status"] == 502 and rec["reason"] == "upstream_error"
    _still_serves(sidecar, fake_aws, client)


@pytest.mark.parametrize(
    "status,error_type",
    [
        (429, "ThrottlingException"),
        (500, "InternalServerException"),
        (503, "ServiceUnavailableException"),
        (400, "ValidationException"),
        (424, "ModelErrorException"),
    ],
)
def test_upstream_errors_pass_through(sidecar, fake_aws, client, status, error_type):
    """docs/reference.md §7/§8: AWS errors pass through with the upstream status, type and
    message; they are not tenantgate's (no `x-tenantgate-reason`); the
    request is not retried by the sidecar."""
    fake_aws.script(Error(status, error_type, f"upstream says {status}"))
    with pytest.raises(ClientError) as ei:
        client.converse(**converse_args())
    e = ei.value
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert e.response["Error"]["Code"] == error_type
    assert e.response["Error"]["Message"] == f"upstream says {status}"
    assert "x-tenantgate-reason" not in client.tap.headers
    assert client.tap.headers.get("x-tenantgate-request-id")
    assert len(fake_aws.recorded()) == 1
    rec = sidecar.wait_audit(harness.request_id_of(e))
    assert rec["status"] == status and rec["upstream_status"] == status


def test_upstream_error_on_stream_operation(sidecar, fake_aws, client):
    """docs/reference.md §7: an AWS error answering ConverseStream passes through too."""
    fake_aws.script(Error(429, "ThrottlingException", "slow down"))
    with pytest.raises(ClientError) as ei:
        client.converse_stream(**converse_args())
    assert ei.value.response["Error"]["Code"] == "ThrottlingException"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
