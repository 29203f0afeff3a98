"""Bedrock runtime rewrites (docs/reference.md §5.1): `model_map`, enforced `guardrail`,
`request_metadata` templates, ApplyGuardrail for the tenant's own guardrail
only, and `missing_claim` (docs/reference.md §3 templates)."""

from __future__ import annotations

from urllib.parse import quote

import pytest

import harness
from harness import HAIKU, NOVA, converse_args

ACME_PROFILE = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku"

SIDECAR_OVERRIDES = {
    "tenants": {
        "acme": {
            "model_map": {HAIKU: ACME_PROFILE},
            "guardrail": {"id": "gr-acme", "version": "1"},
            "request_metadata": {"tenant": "{tenant}", "user": "{user}"},
        },
        "globex": {
            "request_metadata": {"plan": "{claims.custom:plan}"},
        },
    }
}


@pytest.fixture
def acme(sidecar, mint):
    return harness.make_client(sidecar.url, token=mint("acme", "alice"))


def test_model_map_rewrites_target(acme, fake_aws, creds, sidecar):
    """docs/reference.md §5.1: `model_map` replaces the model after the allowlist check;
    the new path is encoded as SDKs do and signed; audit keeps the id asked for."""
    out = acme.converse(**converse_args(HAIKU))
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    assert rec.path_params["modelId"] == ACME_PROFILE
    assert rec.raw_path == "/model/" + quote(ACME_PROFILE, safe="") + "/converse"
    assert sidecar.wait_audit(harness.request_id_of(out))["resource"] == HAIKU


def test_guardrail_injected_into_converse(acme, fake_aws):
    """docs/reference.md §5.1: Converse gets guardrailConfig id/version; the client's
    values are replaced."""
    args = converse_args("anthropic.claude-3-haiku-20991231-v9:0")
    args["guardrailConfig"] = {"guardrailIdentifier": "gr-other", "guardrailVersion": "7", "trace": "enabled"}
    acme.converse(**args)
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse")
    body = rec.json()
    assert body["guardrailConfig"]["guardrailIdentifier"] == "gr-acme"
    assert body["guardrailConfig"]["guardrailVersion"] == "1"
    assert body["messages"] == args["messages"]


def test_guardrail_injected_into_converse_stream(acme, fake_aws):
    """docs/reference.md §5.1: ConverseStream too (and the stream still works)."""
    resp = acme.converse_stream(**converse_args())
    assert sum(1 for _ in resp["stream"]) == 8
    body = harness.assert_one_valid_upstream(fake_aws, "ConverseStream").json()
    assert body["guardrailConfig"]["guardrailIdentifier"] == "gr-acme"


def test_guardrail_headers_on_invoke_model(acme, fake_aws):
    """docs/reference.md §5.1: InvokeModel and its stream get
    X-Amzn-Bedrock-GuardrailIdentifier/-GuardrailVersion (client's replaced)."""
    acme.invoke_model(modelId=HAIKU, body=b"{}", guardrailIdentifier="gr-other", guardrailVersion="9")
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel")
    assert rec.header_values("x-amzn-bedrock-guardrailidentifier") == ["gr-acme"]
    assert rec.header_values("x-amzn-bedrock-guardrailversion") == ["1"]
    assert rec.body == b"{}"
    fake_aws.reset()
    list(acme.invoke_model_with_response_stream(modelId=HAIKU, body=b"{}")["body"])
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModelWithResponseStream")
    assert rec.header_values("x-amzn-bedrock-guardrailidentifier") == ["gr-acme"]


def test_request_metadata_templates(acme, fake_aws):
    """docs/reference.md §5.1: requestMetadata entries set from the rendered templates;
    client entries with the same keys replaced, others kept."""
    args = converse_args()
    args["requestMetadata"] = {"tenant": "globex", "feature": "chat"}
    acme.converse(**args)
    body = harness.assert_one_valid_upstream(fake_aws, "Converse").json()
    assert body["requestMetadata"] == {"tenant": "acme", "user": "alice", "feature": "chat"}


def test_apply_guardrail_own_only(acme, fake_aws):
    """docs/reference.md §5.1: ApplyGuardrail only for the tenant's own guardrail id and
    version, else 403 guardrail_not_allowed."""
    content = [{"text": {"text": "hello"}}]
    out = acme.apply_guardrail(guardrailIdentifier="gr-acme", guardrailVersion="1", source="INPUT", content=content)
    assert out["action"] == "NONE"
    harness.assert_one_valid_upstream(fake_aws, "ApplyGuardrail")
    fake_aws.reset()
    for gid, ver in (("gr-globex", "1"), ("gr-acme", "2"), ("gr-acme", "DRAFT")):
        harness.expect_client_error(
            acme,
            lambda: acme.apply_guardrail(guardrailIdentifier=gid, guardrailVersion=ver, source="INPUT",
                                         content=content),
            403,
            "guardrail_not_allowed",
        )
    harness.assert_nothing_upstream(fake_aws)


def test_missing_claim(sidecar, fake_aws, mint):
    """docs/reference.md §3: a template naming a claim the token lacks -> 403
    missing_claim (never an empty value); with the claim it is rendered."""
    client = harness.make_client(sidecar.url, token=mint("globex", "gary"))
    harness.expect_client_error(client, lambda: client.converse(**converse_args(NOVA)), 403, "missing_claim")
    harness.assert_nothing_upstream(fake_aws)
    client = harness.make_client(sidecar.url, token=mint("globex", "gary", **{"custom:plan": "gold"}))
    client.converse(**converse_args(NOVA))
    body = harness.assert_one_valid_upstream(fake_aws, "Converse").json()
    assert body["requestMetadata"] == {"plan": "gold"}
