"""Identity in JWT mode (docs/reference.md §4.1, §3 tenant ids, §8 errors).

Every token is sent the way an application sends it: a boto3 client whose
endpoint_url is the sidecar and whose event hook adds ``x-tenant-token``.
Every deny must leave the fake AWS untouched.
"""

from __future__ import annotations

import time

import pytest

import harness
from harness import HAIKU, converse_args


def _deny(sidecar, fake, token, status, reason, **client_kw):
    client = harness.make_client(sidecar.url, token=token, **client_kw)
    err = harness.expect_client_error(client, lambda: client.converse(**converse_args()), status, reason)
    harness.assert_nothing_upstream(fake)
    return err


def _allow(sidecar, fake, token, model=HAIKU):
    client = harness.make_client(sidecar.url, token=token)
    out = client.converse(**converse_args(model))
    assert out["output"]["message"]["content"][0]["text"] == fake.reply_text
    return out


def test_valid_token_is_allowed(sidecar, fake_aws, mint, creds):
    """docs/reference.md §4.1: a verified token's tenant decides whose credentials sign."""
    _allow(sidecar, fake_aws, mint("acme", "alice"))
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)


def test_missing_token(sidecar, fake_aws):
    """docs/reference.md §4.1/§8: no identity header -> 401 missing_token."""
    _deny(sidecar, fake_aws, None, 401, "missing_token")


def test_empty_token(sidecar, fake_aws):
    """docs/reference.md §4.1/§8: an empty identity header is no identity (fail closed)."""
    _deny(sidecar, fake_aws, "", 401, {"missing_token", "invalid_token"})


def test_garbage_token(sidecar, fake_aws):
    """docs/reference.md §4.1: something that is not a JWT -> 401 invalid_token."""
    _deny(sidecar, fake_aws, "not-a-jwt", 401, "invalid_token")
    _deny(sidecar, fake_aws, "a.b.c", 401, "invalid_token")


def test_expired_token(sidecar, fake_aws, mint):
    """docs/reference.md §4.1: `exp` is checked (well past the 30 s leeway) -> 401."""
    now = int(time.time())
    _deny(sidecar, fake_aws, mint(exp=now - 3600, iat=now - 7200), 401, "invalid_token")


def test_expired_within_leeway_is_allowed(sidecar, fake_aws, mint):
    """docs/reference.md §3 `leeway_secs` applies to `exp`: 10 s late with 30 s leeway passes."""
    _allow(sidecar, fake_aws, mint(exp=int(time.time()) - 10))


def test_token_without_exp(sidecar, fake_aws, mint):
    """docs/reference.md §4.1: `exp` is required."""
    _deny(sidecar, fake_aws, mint(exp=None), 401, "invalid_token")


def test_not_yet_valid_token(sidecar, fake_aws, mint):
    """docs/reference.md §4.1: `nbf` in the future (beyond leeway) -> 401."""
    _deny(sidecar, fake_aws, mint(nbf=int(time.time()) + 3600), 401, "invalid_token")


def test_wrong_issuer(sidecar, fake_aws, mint):
    """docs/reference.md §4.1: `iss` must match exactly."""
    _deny(sidecar, fake_aws, mint(iss=harness.ISSUER + "-other"), 401, "invalid_token")
    _deny(sidecar, fake_aws, mint(iss=harness.ISSUER + "/"), 401, "invalid_token")
    _deny(sidecar, fake_aws, mint(iss=None), 401, "invalid_token")


def test_wrong_audience(sidecar, fake_aws, mint):
    """docs/reference.md §4.1: `aud` must be one of `identity.audiences`."""
    _deny(sidecar, fake_aws, mint(aud="someone-else"), 401, "invalid_token")


def test_audience_list(sidecar, fake_aws, mint):
    """docs/reference.md §4.1: `aud` may be a list; one match is enough, none is a deny."""
    _allow(sidecar, fake_aws, mint(aud=["other", harness.AUDIENCE]))
    fake_aws.reset()
    _deny(sidecar, fake_aws, mint(aud=["other", "another"]), 401, "invalid_token")


def test_cognito_access_token_client_id(sidecar, fake_aws, mint):
    """docs/reference.md §3 `audiences`: matched against `client_id` when there is no
    `aud` (Cognito access tokens)."""
    _allow(sidecar, fake_aws, mint(aud=None, client_id=harness.AUDIENCE, token_use="access"))
    fake_aws.reset()
    _deny(sidecar, fake_aws, mint(aud=None, client_id="other-client", token_use="access"), 401, "invalid_token")
    _deny(sidecar, fake_aws, mint(aud=None), 401, "invalid_token")


def test_client_id_does_not_rescue_a_wrong_aud(sidecar, fake_aws, mint):
    """docs/reference.md §4.1: `client_id` counts only when there is no `aud`."""
    _deny(sidecar, fake_aws, mint(aud="other", client_id=harness.AUDIENCE), 401, "invalid_token")


def test_alg_none(sidecar, fake_aws, mint):
    """docs/reference.md §3: "none" is never accepted."""
    tok = mint.raw({"alg": "none", "typ": "JWT", "kid": "rsa-1"}, mint.claims())
    _deny(sidecar, fake_aws, tok, 401, "invalid_token")
    tok = mint.raw({"alg": "None", "typ": "JWT"}, mint.claims())
    _deny(sidecar, fake_aws, tok, 401, "invalid_token")


def test_hs256_signed_with_rsa_public_key(sidecar, fake_aws, mint, keys):
    """docs/reference.md §4.1: an HS key never verifies an RS token and vice versa (the
    classic RS256 -> HS256 confusion with the public key as HMAC secret)."""
    for kid in ("rsa-1", None):
        header = {"alg": "HS256", "typ": "JWT"}
        if kid:
            header["kid"] = kid
        tok = mint.raw(header, mint.claims(), hs256_secret=keys.rsa_public_pem)
        _deny(sidecar, fake_aws, tok, 401, "invalid_token")


def test_es256_not_in_algorithms(sidecar, fake_aws, mint):
    """docs/reference.md §4.1: only `identity.algorithms` (RS256 here); the EC key is in
    the JWKS but ES256 is not allowed."""
    _deny(sidecar, fake_aws, mint(alg="ES256", kid="ec-1"), 401, "invalid_token")


def test_rs256_token_with_ec_kid(sidecar, fake_aws, mint):
    """docs/reference.md §4.1: the key is chosen by `kid`; an RSA signature under the EC
    key's kid does not verify."""
    _deny(sidecar, fake_aws, mint(kid="ec-1"), 401, "invalid_token")


def test_tampered_payload(sidecar, fake_aws, mint):
    """docs/reference.md §4.1: the signature covers the claims; swapping the payload of a
    valid acme token for a globex one is a deny."""
    good = mint("acme", "alice").split(".")
    other = mint("globex", "alice").split(".")
    _deny(sidecar, fake_aws, ".".join([good[0], other[1], good[2]]), 401, "invalid_token")
    _deny(sidecar, fake_aws, ".".join([good[0], good[1], good[2][:-4] + "AAAA"]), 401, "invalid_token")


def test_unknown_kid(sidecar, fake_aws, mint, keys):
    """docs/reference.md §4.1: a key not in the JWKS (signed by a rogue key) -> 401."""
    _deny(sidecar, fake_aws, mint(kid="rsa-2", key=keys.rogue), 401, "invalid_token")
    _deny(sidecar, fake_aws, mint(kid="rsa-1", key=keys.rogue), 401, "invalid_token")


def test_unlisted_tenant(sidecar, fake_aws, mint):
    """docs/reference.md §3: a tenant neither listed nor admitted by allow_unlisted -> 403."""
    _deny(sidecar, fake_aws, mint("initech"), 403, "unknown_tenant")


@pytest.mark.parametrize(
    "tenant",
    ["acme/../globex", "../acme", "acme/x", "..", ".acme", "acme\\x", "acme x", "a" * 65, "-acme", "acme%2F"],
)
def test_tenant_id_breaking_the_pattern(sidecar, fake_aws, mint, tenant):
    """docs/reference.md §3/§4.1: a string tenant id outside ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$
    is 403 unknown_tenant (never a path or ARN part)."""
    _deny(sidecar, fake_aws, mint(tenant), 403, "unknown_tenant")


def test_tenant_ids_are_case_sensitive(sidecar, fake_aws, mint):
    """docs/reference.md §3: `ACME` is not the listed tenant `acme`."""
    _deny(sidecar, fake_aws, mint("ACME"), 403, "unknown_tenant")


@pytest.mark.parametrize("value", [None, "", 123, ["acme"], {"id": "acme"}, True])
def test_missing_or_non_string_tenant_claim(sidecar, fake_aws, mint, value):
    """docs/reference.md §4.1: a missing, empty or non-string tenant claim is an invalid token (401)."""
    _deny(sidecar, fake_aws, mint(tenant=value), 401, "invalid_token")


def test_tenant_from_other_claim_is_ignored(sidecar, fake_aws, mint):
    """docs/reference.md §4.1: the tenant comes from `tenant_claim` only (`custom:tenantId`),
    not from a default-named `tenant_id` claim."""
    _deny(sidecar, fake_aws, mint(tenant=None, tenant_id="acme"), 401, "invalid_token")


@pytest.mark.parametrize("value", [None, "", 42])
def test_missing_user_claim(sidecar, fake_aws, mint, value):
    """docs/reference.md §4.1: a missing, empty or non-string user claim is an invalid token."""
    _deny(sidecar, fake_aws, mint(sub=value), 401, "invalid_token")


def test_bearer_prefix_accepted(sidecar, fake_aws, mint, creds):
    """docs/reference.md §3 `identity.header`: "Bearer " prefix optional."""
    _allow(sidecar, fake_aws, "Bearer " + mint())
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    assert "x-tenant-token" not in rec.headers


def test_token_for_other_tenant_uses_other_credentials(sidecar, fake_aws, mint, creds):
    """docs/reference.md §1/§6: globex's token -> globex's keys (and its session token)."""
    _allow(sidecar, fake_aws, mint("globex", "gary"), model=harness.NOVA)
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["globex"].akid)
    assert rec.headers["x-amz-security-token"] == creds["globex"].token


def test_token_in_body_or_other_header_is_not_identity(sidecar, fake_aws, mint):
    """docs/reference.md §1: identity never comes from the request body or another header."""
    tok = mint()
    client = harness.make_client(sidecar.url, token=None, extra_headers={"Authorization": "Bearer " + tok})
    harness.expect_client_error(client, lambda: client.converse(**converse_args(text=tok)), 401, "missing_token")
    harness.assert_nothing_upstream(fake_aws)


def test_deny_messages_never_echo_the_token(sidecar, fake_aws, mint):
    """docs/reference.md §8: messages never contain tokens."""
    now = int(time.time())
    tok = mint(exp=now - 3600)
    client = harness.make_client(sidecar.url, token=tok)
    harness.expect_client_error(client, lambda: client.converse(**converse_args()), 401, "invalid_token")
    assert tok.encode() not in client.tap.body
    assert tok.split(".")[2].encode() not in client.tap.body
    assert not any(tok in v for v in client.tap.headers.values())
