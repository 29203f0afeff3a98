"""Configuration rules that keep tenants apart (docs/reference.md §3 Merging, tenant ids;
§6 credentials; §5.4 SageMaker endpoint names).

- A table that names one identity (`static_credentials`) is never merged:
  a tenant's own table replaces the defaults' whole, so no tenant signs with
  its own key and another identity's session token.
- Tenant ids are case-sensitive, but AWS compares some names without case
  (SageMaker endpoint names, IAM role names): a token whose tenant id equals
  a listed one ignoring case, but not exactly, is 403 `unknown_tenant`, even
  with `allow_unlisted`; an unlisted tenant whose id is not lower case cannot
  reach SageMaker, nor any operation when `credentials.role_arn` uses
  `{tenant}` (its id could name another unlisted tenant's endpoint or role).
"""

from __future__ import annotations

import secrets

import pytest

import fake_sagemaker
import harness
import test_sts
from fakests import base_keys, fake_sts  # noqa: F401 - fixtures
from harness import converse_args

SM = "sagemaker-runtime"
SHARED_ENV = {"SHARED_AKID": "ASIASHARED" + secrets.token_hex(5).upper(),
              "SHARED_SECRET": secrets.token_urlsafe(30),
              "SHARED_TOKEN": "FwoGZXIvYXdzSHARED" + secrets.token_urlsafe(48)}

# The defaults name one complete identity, with a session token; acme has
# its own long-term keys and no token; anyone else (listed initech without
# a table, unlisted tenants) gets the defaults' identity whole.
SIDECAR_OVERRIDES = {
    "tenant_defaults": {
        "allow_unlisted": True,
        "models": ["anthropic.claude-3-haiku-*"],
        "static_credentials": {
            "access_key_id_env": "SHARED_AKID",
            "secret_access_key_env": "SHARED_SECRET",
            "session_token_env": "SHARED_TOKEN",
        },
        "sagemaker": {"endpoints": {"clf": "{tenant}-clf"}},
    },
    "tenants": {"initech": {"models": ["anthropic.claude-3-haiku-*"]}},
}
SIDECAR_ENV = SHARED_ENV


@pytest.fixture(autouse=True)
def _shared_identity(fake_aws):
    fake_aws.register_credentials(SHARED_ENV["SHARED_AKID"], SHARED_ENV["SHARED_SECRET"],
                                  SHARED_ENV["SHARED_TOKEN"], label="shared")
    fake_sagemaker.install(fake_aws)


# ---- identity tables are never merged ---------------------------------------


def test_own_static_credentials_do_not_inherit_the_defaults_session_token(sidecar, fake_aws, creds, mint, client_for):
    """docs/reference.md §3 Merging: acme's own `static_credentials` (no token) replaces
    the defaults' table whole; its requests carry acme's key and no
    `x-amz-security-token` (the defaults' token is another identity's)."""
    client = client_for(sidecar, token=mint("acme", "alice"))
    client.converse(**converse_args())
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    assert "x-amz-security-token" not in rec.headers, rec.summary()
    assert SHARED_ENV["SHARED_TOKEN"] not in str(rec.header_list)


def test_tenant_without_a_table_gets_the_defaults_identity_whole(sidecar, fake_aws, mint, client_for):
    """docs/reference.md §3 Merging: a tenant without `static_credentials` uses the
    defaults' table as a whole: key, secret and session token of one
    identity."""
    client = client_for(sidecar, token=mint("initech", "ivan"))
    client.converse(**converse_args())
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", SHARED_ENV["SHARED_AKID"])
    assert rec.headers.get("x-amz-security-token") == SHARED_ENV["SHARED_TOKEN"]


# ---- tenant ids that differ only in case ------------------------------------


@pytest.mark.parametrize("variant", ["ACME", "Acme", "acmE", "INITECH"])
def test_case_variant_of_a_listed_tenant_is_unknown(sidecar, fake_aws, mint, client_for, variant):
    """docs/reference.md §3 tenant ids, §8: a tenant id equal to a listed one ignoring
    case, but not exactly, is 403 `unknown_tenant` although `allow_unlisted`
    admits strangers: it would otherwise reach the listed tenant's
    case-insensitive names (SageMaker `{tenant}-clf`). Nothing upstream, on
    Bedrock and on SageMaker."""
    br = client_for(sidecar, token=mint(variant, "mallory"))
    harness.expect_client_error(br, lambda: br.converse(**converse_args()), 403, "unknown_tenant")
    sm = client_for(sidecar, token=mint(variant, "mallory"), service=SM)
    harness.expect_client_error(sm, lambda: sm.invoke_endpoint(EndpointName="clf", Body=b"{}"), 403, "unknown_tenant")
    harness.assert_nothing_upstream(fake_aws)
    audit = sidecar.wait_audit(predicate=lambda r: r.get("tenant") == variant and r.get("operation") == "InvokeEndpoint")
    assert audit["decision"] == "deny" and audit["reason"] == "unknown_tenant"


def test_listed_tenant_in_its_exact_spelling_reaches_its_endpoint(sidecar, fake_aws, creds, mint, client_for):
    """docs/reference.md §5.4: the exact listed id still works (`acme-clf`)."""
    sm = client_for(sidecar, token=mint("acme", "alice"), service=SM)
    sm.invoke_endpoint(EndpointName="clf", Body=b"{}")
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeEndpoint", creds["acme"].akid)
    assert rec.path == "/endpoints/acme-clf/invocations"


def test_unlisted_tenant_reaches_sagemaker_only_with_a_lower_case_id(sidecar, fake_aws, mint, client_for):
    """docs/reference.md §5.4 (endpoint names compare without case): unlisted `FOO`
    rendered into `{tenant}-clf` would be unlisted `foo`'s endpoint, so an
    unlisted tenant whose id is not lower case is 403 `unknown_tenant` on
    SageMaker, with nothing upstream; lower-case `foo` gets `foo-clf`."""
    for variant in ("FOO", "Foo"):
        sm = client_for(sidecar, token=mint(variant, "mallory"), service=SM)
        for call in (lambda: sm.invoke_endpoint(EndpointName="clf", Body=b"{}"),
                     lambda: sm.invoke_endpoint(EndpointName="foo-clf", Body=b"{}"),
                     lambda: sm.invoke_endpoint_with_response_stream(EndpointName="clf", Body=b"{}")):
            harness.expect_client_error(sm, call, 403, "unknown_tenant")
    harness.assert_nothing_upstream(fake_aws)

    sm = client_for(sidecar, token=mint("foo", "frank"), service=SM)
    sm.invoke_endpoint(EndpointName="clf", Body=b"{}")
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeEndpoint", SHARED_ENV["SHARED_AKID"])
    assert rec.path == "/endpoints/foo-clf/invocations"


def test_unlisted_upper_case_tenant_still_reaches_bedrock(sidecar, fake_aws, mint, client_for):
    """The SageMaker rule is narrow: Bedrock names nothing after the tenant
    id, so unlisted `FOO` is served there with the defaults."""
    br = client_for(sidecar, token=mint("FOO", "mallory"))
    br.converse(**converse_args())
    harness.assert_one_valid_upstream(fake_aws, "Converse", SHARED_ENV["SHARED_AKID"])


def test_unlisted_upper_case_tenant_never_renders_a_role_arn(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §6 (IAM role names compare without case): with
    `role_arn = ".../role/tenant-{tenant}"`, unlisted `FOO` would assume
    `tenant-FOO`, the role of unlisted `foo`. It is 403 `unknown_tenant` with
    no AssumeRole and nothing upstream; `foo` gets `tenant-foo`."""
    sc = test_sts.start(start_sidecar_fn, fake_sts, base_keys)
    resp = test_sts.converse(sc, mint("FOO", "mallory"), "FOO")
    harness.assert_tenantgate_error(resp, 403, "unknown_tenant")
    assert fake_sts.assume_role_calls("FOO") == [], fake_sts.describe()
    assert not any(c.role_arn.endswith("tenant-FOO") for c in fake_sts.assume_role_calls()), fake_sts.describe()
    harness.assert_nothing_upstream(fake_aws)

    resp = test_sts.converse(sc, mint("foo", "frank"), "foo")
    assert resp.status == 200, resp
    assert any(c.role_arn.endswith("role/tenant-foo") for c in fake_sts.assume_role_calls()), fake_sts.describe()


def test_pooled_role_serves_unlisted_upper_case_tenant(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """A role ARN without `{tenant}` (one pooled role, tenants told apart by
    the `TenantID` session tag, compared case-sensitively by IAM) renders
    nothing case-insensitive: unlisted `FOO` is served."""
    sc = test_sts.start(start_sidecar_fn, fake_sts, base_keys,
                        credentials={"role_arn": "arn:aws:iam::111122223333:role/tenant-pool"})
    resp = test_sts.converse(sc, mint("FOO", "mallory"), "FOO")
    assert resp.status == 200, resp
    calls = [c for c in fake_sts.assume_role_calls() if c.issued]
    assert calls and all(c.role_arn.endswith("role/tenant-pool") for c in calls), fake_sts.describe()
