"""Request validation against the AWS service models (docs/security.md "Request
validation against the AWS service models"): every hostile request in
`validation_cases.py` is refused with 400 before anything reaches upstream,
its message names what is wrong, the refusal is audited for the tenant,
and what boto3 itself sends still goes through.
"""

from __future__ import annotations

import json

import pytest

import fake_sagemaker
import harness
import validation_cases as vc

SIDECAR_OVERRIDES = {
    # Room for the 10 MiB memory-attack bodies: they must meet the JSON caps,
    # not the body size limit.
    "server": {"max_body_bytes": 12 << 20, "max_buffered_bytes": 64 << 20},
    "tenants": {
        "acme": {
            "guardrail": {"id": "gr-acme", "version": "3"},
            "sagemaker": {
                "endpoints": {vc.ENDPOINT: "acme-classifier"},
                "target_model": "{tenant}.tar.gz",
                "allowed_target_models": ["{tenant}.tar.gz"],
            },
        },
    }
}


@pytest.fixture(autouse=True)
def _sagemaker_routes(fake_aws):
    fake_sagemaker.install(fake_aws)


@pytest.fixture
def token(mint):
    return mint("acme", "alice")


def _send(sidecar, case: vc.Case, token: str) -> harness.RawResponse:
    if isinstance(case.body, dict):
        body = json.dumps(case.body).encode()
    else:
        body = case.body or b""
    headers = {"x-tenant-token": token}
    headers.update(case.headers)
    return harness.http_request("POST", sidecar.url + case.path, body, headers, timeout=30)


@pytest.mark.parametrize("case", vc.ALL_CASES, ids=lambda c: f"{c.operation}:{c.expected[:48]}")
def test_hostile_request_is_refused_before_upstream(sidecar, fake_aws, token, case):
    resp = _send(sidecar, case, token)
    harness.assert_tenantgate_error(resp, 400, case.reason, "ValidationException")
    message = resp.json()["message"]
    assert case.expected in message, message
    if "not a member of" in case.expected:
        # Unknown members say how to update the models if the SDK is newer.
        assert vc.UPDATE_HINT in message, message
    harness.assert_nothing_upstream(fake_aws)
    rec = [a for a in sidecar.audit() if a.get("operation") == case.operation][-1]
    assert rec["decision"] == "deny" and rec["reason"] == case.reason, rec
    assert rec["tenant"] == "acme", rec


def test_boto3_headers_are_forwarded(sidecar, fake_aws, token, creds):
    """What boto3 sends (content-type, user-agent, amz-sdk-*) still arrives;
    the identity header never does."""
    client = harness.make_client(sidecar.url, "bedrock-runtime", token)
    client.converse(**harness.converse_args())
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    for name in vc.BOTO3_FORWARDED:
        assert rec.header_values(name), (name, rec.headers)
    assert not rec.header_values("x-tenant-token")


def test_unknown_plain_headers_are_dropped_not_forwarded(sidecar, fake_aws, token, creds):
    """A header that is neither AWS's nor on the forwarded list is dropped
    (not refused): proxies and meshes add such headers."""
    body = json.dumps({k: v for k, v in harness.converse_args().items() if k != "modelId"}).encode()
    resp = sidecar.request("POST", vc.CONVERSE, body, {"x-custom": "1", "x-b3-traceid": "abc"}, token=token)
    assert resp.status == 200, resp
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    assert not rec.header_values("x-custom") and not rec.header_values("x-b3-traceid")


def test_other_case_member_cannot_ride_next_to_the_forced_filter(sidecar, fake_aws, token):
    """The finding this validator exists for: `Filter` next to the forced
    `filter` used to reach AWS (which reads member names without case)."""
    body = {"retrievalQuery": {"text": "q"}, "retrievalConfiguration": {"vectorSearchConfiguration": {
        "Filter": vc.GLOBEX_FILTER}}}
    resp = sidecar.request("POST", vc.RETRIEVE, json.dumps(body).encode(), token=token)
    harness.assert_tenantgate_error(resp, 400, "invalid_parameter", "ValidationException")
    assert "Filter" in resp.json()["message"]
    harness.assert_nothing_upstream(fake_aws)


def test_unicode_escaped_member_name_is_the_member_it_spells(sidecar, fake_aws, token):
    """`\\u0046ilter` is `Filter` once decoded: refused like it."""
    raw = (b'{"retrievalQuery":{"text":"q"},"retrievalConfiguration":{"vectorSearchConfiguration":'
           b'{"\\u0046ilter":{"equals":{"key":"tenant_id","value":"globex"}}}}}')
    resp = sidecar.request("POST", vc.RETRIEVE, raw, token=token)
    harness.assert_tenantgate_error(resp, 400, "invalid_parameter", "ValidationException")
    assert "Filter: not a member" in resp.json()["message"]
    harness.assert_nothing_upstream(fake_aws)
