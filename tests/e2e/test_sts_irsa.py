"""IRSA-style base credentials (docs/reference.md §6, §11): the sidecar has no access key
in its environment, only a web identity token file and a role ARN. The
standard chain exchanges the token with AssumeRoleWithWebIdentity; the
per-tenant AssumeRole is signed with those keys; Bedrock sees only the
tenant's keys. `aws.endpoints.sts`, else `AWS_ENDPOINT_URL_STS`, is the STS
endpoint for both steps.
"""

from __future__ import annotations

import pytest

import harness
from fakests import fake_sts  # noqa: F401 - fixture
from test_sts import assert_no_secrets, converse

SIDECAR_ROLE = "arn:aws:iam::111122223333:role/tenantgate-sidecar"
# A dummy projected service-account token (never verified by the fake).
WEB_IDENTITY_TOKEN = (
    "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZha2UifQ."
    "eyJpc3MiOiJodHRwczovL29pZGMuZWtzLnVzLWVhc3QtMS5hbWF6b25hd3MuY29tL2lkL0ZBS0UiLCJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDp0ZW5hbnRnYXRlIiwiYXVkIjoic3RzLmFtYXpvbmF3cy5jb20ifQ."
    "ZmFrZS1zaWduYXR1cmU"
)


def _overrides(fake_sts, sts_in_config: bool):
    return harness.assume_role_overrides(fake_sts.url if sts_in_config else None)


@pytest.mark.parametrize("where", ["env", "config"])
def test_irsa_web_identity_then_assume_role(start_sidecar_fn, fake_sts, fake_aws, mint, tmp_path, where):
    """docs/reference.md §6: base credentials from the web identity token file (EKS IRSA):
    AssumeRoleWithWebIdentity (unsigned, the file's token, AWS_ROLE_ARN,
    AWS_ROLE_SESSION_NAME), then the tenant's AssumeRole signed with the
    web-identity keys and their session token, then Bedrock signed with the
    tenant's keys. The STS endpoint comes from `AWS_ENDPOINT_URL_STS`
    (`where=env`, no `aws.endpoints.sts`) or from `aws.endpoints.sts`
    (`where=config`, no env var)."""
    token_file = tmp_path / "token"
    token_file.write_text(WEB_IDENTITY_TOKEN)
    env = {
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
        "AWS_ROLE_ARN": SIDECAR_ROLE,
        "AWS_ROLE_SESSION_NAME": "tenantgate-pod-1",
    }
    if where == "env":
        env["AWS_ENDPOINT_URL_STS"] = fake_sts.url
    sc = start_sidecar_fn(_overrides(fake_sts, where == "config"), env=env)
    assert "AWS_ACCESS_KEY_ID" not in sc.env and "AWS_SECRET_ACCESS_KEY" not in sc.env
    assert ("sts = " in sc.config_path.read_text()) == (where == "config")

    resp = converse(sc, mint("acme", "alice"), "acme", timeout=20)
    assert resp.status == 200, (
        f"{resp!r}\nSTS calls:\n{fake_sts.describe()}\n--- stderr ---\n{sc.stderr_tail(15)}"
    )

    wi = fake_sts.recorded("AssumeRoleWithWebIdentity")
    assert wi, fake_sts.describe()
    for c in wi:
        assert not c.signed, c.summary()
        assert c.params["RoleArn"] == SIDECAR_ROLE
        assert c.params["RoleSessionName"] == "tenantgate-pod-1"
        assert c.params["WebIdentityToken"] == WEB_IDENTITY_TOKEN
    wi_keys = {c.issued.access_key_id: c.issued for c in wi if c.issued}

    ar = [c for c in fake_sts.assume_role_calls("acme") if c.issued]
    assert ar, fake_sts.describe()
    for c in ar:
        assert c.signature_valid, c.summary()
        assert c.access_key_id in wi_keys, c.summary()
        assert c.security_token == wi_keys[c.access_key_id].session_token
        assert "x-amz-security-token" in c.signed_headers
        assert c.params["RoleArn"] == "arn:aws:iam::111122223333:role/tenant-acme"
    tenant_keys = {c.issued.access_key_id for c in ar}

    rec = harness.assert_one_valid_upstream(fake_aws, "Converse")
    assert rec.access_key_id in tenant_keys, rec.summary()
    assert rec.access_key_id not in wi_keys
    assert_no_secrets(sc, fake_sts)
