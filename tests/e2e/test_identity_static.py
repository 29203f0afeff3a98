"""Static identity mode (docs/reference.md §4.2): the whole pod is one tenant, no token
needed; an identity header an app still sends is stripped all the same."""

from __future__ import annotations

import harness
from harness import DELETE, HAIKU, converse_args

SIDECAR_OVERRIDES = {
    "identity": {
        "mode": "static",
        "tenant": "acme",
        # JWT-only keys are configuration errors in a static [identity] table.
        "issuer": DELETE,
        "audiences": DELETE,
        "algorithms": DELETE,
        "jwks_file": DELETE,
        "leeway_secs": DELETE,
        "tenant_claim": DELETE,
        "user_claim": DELETE,
    }
}


def test_no_token_needed(sidecar, fake_aws, creds):
    """docs/reference.md §4.2: every request belongs to the static tenant."""
    client = harness.make_client(sidecar.url, token=None)
    out = client.converse(**converse_args())
    assert out["output"]["message"]["content"][0]["text"] == fake_aws.reply_text
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    assert "authorization" in rec.headers
    assert rec.headers["host"] == fake_aws.host


def test_identity_header_stripped(sidecar, fake_aws, creds, mint):
    """docs/reference.md §4.2: the identity header, if sent, is removed before upstream,
    and a token naming another tenant changes nothing."""
    client = harness.make_client(sidecar.url, token=mint("globex", "gary"))
    client.invoke_model(modelId=HAIKU, body=b"{}")
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    assert "x-tenant-token" not in rec.headers


def test_static_tenant_policy_still_applies(sidecar, fake_aws):
    """docs/reference.md §4.2 + §5.1: the static tenant gets its own allowlist."""
    client = harness.make_client(sidecar.url, token=None)
    harness.expect_client_error(
        client, lambda: client.converse(**converse_args(harness.NOVA)), 403, "model_not_allowed"
    )
    harness.assert_nothing_upstream(fake_aws)


def test_audit_user_is_dash(sidecar, fake_aws):
    """docs/reference.md §4.2: user id `-`."""
    client = harness.make_client(sidecar.url, token=None)
    out = client.converse(**converse_args())
    rid = harness.request_id_of(out)
    rec = sidecar.wait_audit(rid)
    assert rec["tenant"] == "acme" and rec["user"] == "-"
