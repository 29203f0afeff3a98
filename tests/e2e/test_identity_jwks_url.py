"""JWKS from a URL (docs/reference.md §3 `jwks_url`, §4.1, §9 /readyz): fetch failures do
not crash the sidecar; requests get 503 jwks_unavailable and /readyz is not
ready until keys arrive; then tokens verify."""

from __future__ import annotations

import time

import harness
from harness import DELETE, converse_args


def test_jwks_outage_then_recovery(start_sidecar_fn, fake_aws, mint, creds):
    """docs/reference.md §4.1: 503 until keys are available; §9: /readyz reports not ready."""
    fake_aws.jwks_fail = True
    sc = start_sidecar_fn(
        {"identity": {"jwks_file": DELETE, "jwks_url": fake_aws.url + "/jwks.json", "jwks_refresh_secs": 2}},
        wait_ready=False,
    )
    # Alive, not ready, denying with 503.
    assert sc.admin("/healthz").status == 200
    deadline = time.monotonic() + 10
    while fake_aws.jwks_fetches == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert fake_aws.jwks_fetches >= 1, "the sidecar never tried the JWKS URL"
    assert sc.admin("/readyz").status == 503
    client = harness.make_client(sc.url, token=mint())
    harness.expect_client_error(client, lambda: client.converse(**converse_args()), 503, "jwks_unavailable")
    harness.assert_nothing_upstream(fake_aws)
    assert sc.running

    # Keys come back: ready within the refresh cadence (bounded), then allowed.
    fake_aws.jwks_fail = False
    deadline = time.monotonic() + 45
    ready = False
    while time.monotonic() < deadline:
        if sc.admin("/readyz").status == 200:
            ready = True
            break
        time.sleep(0.25)
    assert ready, "/readyz never became 200 after the JWKS endpoint recovered\n" + sc.stderr_tail()
    out = client.converse(**converse_args())
    assert out["output"]["message"]["content"][0]["text"] == fake_aws.reply_text
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
