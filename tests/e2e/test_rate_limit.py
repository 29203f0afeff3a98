"""Rate limits (docs/reference.md §3 `[tenant_defaults.rate_limit]`, §5.1 token budget,
§8 429 + Retry-After): a throttled request never reaches AWS."""

from __future__ import annotations

import threading

import pytest
from botocore.exceptions import ClientError

import harness
from fakeaws import Hang
from harness import HAIKU, converse_args


def _limited(overrides):
    return {"tenants": {"acme": {"rate_limit": overrides}}}


def _assert_throttled(client, call, reason, fake_before, fake):
    err = harness.expect_client_error(client, call, 429, reason)
    retry_after = client.tap.headers.get("retry-after")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1, client.tap.headers
    assert len(fake.recorded()) == fake_before, "a throttled request reached upstream"
    return err


def test_requests_per_second(start_sidecar, fake_aws, mint):
    """docs/reference.md §8: over requests_per_second/burst -> 429 rate_limited with
    Retry-After; other tenants are unaffected."""
    sc = start_sidecar(_limited({"requests_per_second": 1, "burst": 2}))
    client = harness.make_client(sc.url, token=mint())
    client.converse(**converse_args())
    client.converse(**converse_args())
    _assert_throttled(client, lambda: client.converse(**converse_args()), "rate_limited", 2, fake_aws)
    globex = harness.make_client(sc.url, token=mint("globex", "gary"))
    globex.converse(**converse_args(harness.NOVA))
    assert len(fake_aws.recorded()) == 3


def test_max_concurrent(start_sidecar, fake_aws, mint):
    """docs/reference.md §3 `max_concurrent` (in-flight requests incl. open streams) -> 429 concurrency_limited."""
    sc = start_sidecar(_limited({"max_concurrent": 1}))
    fake_aws.script(Hang(2), times=1)
    first = harness.make_client(sc.url, token=mint())
    t = threading.Thread(target=lambda: first.converse(**converse_args()))
    t.start()
    try:
        fake_aws.wait_for_requests(1, timeout=5)
        second = harness.make_client(sc.url, token=mint())
        _assert_throttled(second, lambda: second.converse(**converse_args()), "concurrency_limited", 1, fake_aws)
    finally:
        t.join(15)


def test_token_budget(start_sidecar, fake_aws, mint):
    """docs/reference.md §5.1: tokens are charged at the end of the response; a request
    is admitted while the remaining budget is above zero, then 429
    token_budget_exhausted."""
    sc = start_sidecar(_limited({"tokens_per_minute": 20}))  # each answer costs 11 + 7 = 18
    client = harness.make_client(sc.url, token=mint())
    client.converse(**converse_args())  # 20 -> 2
    client.converse(**converse_args())  # 2 > 0: admitted, -> -16
    _assert_throttled(client, lambda: client.converse(**converse_args()), "token_budget_exhausted", 2, fake_aws)
    with pytest.raises(ClientError):
        client.invoke_model(modelId=HAIKU, body=b"{}")
    assert len(fake_aws.recorded()) == 2
