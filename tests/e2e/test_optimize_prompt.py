"""OptimizePrompt (docs/reference.md §5.1, docs/model-calls.md "OptimizePrompt"):
`targetModelId` is decided by the tenant's model globs as requested (no
`model_map`), the body goes upstream as judged, and the answer's event
stream is redacted event by event, end to end through boto3."""

from __future__ import annotations

import json

import harness
from harness import HAIKU

IDENTITY_ID = "us-west-2:12345678-abcd-1234-462b-123456789abc"

SIDECAR_OVERRIDES = {
    "redaction": {"patterns": [r"internal-user-\d{6}"], "replacement": "[redacted]"},
    "tenants": {
        "acme": {
            # A map that would send Haiku elsewhere: OptimizePrompt ignores it.
            "model_map": {HAIKU: "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku"},
        },
    },
}

PROMPT = {"textPrompt": {"text": "Summarise the refund policy for {{customer}}."}}


def agent_client(sidecar, mint, tenant="acme"):
    return harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint(tenant, "alice"))


def collect(out) -> list:
    return [e for e in out["optimizedPrompt"]]


def test_allowed_model_streams_both_events(sidecar, fake_aws, mint, creds):
    """An allowed target model: the body arrives as judged, unmapped, signed
    as the tenant; both events reach the app (botocore checks every CRC);
    the audit names the operation and the model."""
    ag = agent_client(sidecar, mint)
    out = ag.optimize_prompt(input=PROMPT, targetModelId=HAIKU)
    events = collect(out)
    assert events[0] == {"analyzePromptEvent": {"message": "The prompt is clear; adding structure."}}
    assert events[1]["optimizedPromptEvent"]["optimizedPrompt"]["textPrompt"]["text"] == (
        "You are a helpful assistant. Summarise the refund policy for {{customer}}.")
    rec = harness.assert_one_valid_upstream(fake_aws, "OptimizePrompt", creds["acme"].akid)
    assert rec.json() == {"input": PROMPT, "targetModelId": HAIKU}
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["operation"], audit["decision"], audit["status"]) == ("OptimizePrompt", "allow", 200)
    assert audit["resource"] == HAIKU


def test_model_outside_the_globs_is_refused(sidecar, fake_aws, mint):
    """acme may not use Nova; globex may not use Haiku: 403 model_not_allowed,
    nothing upstream, audited as a deny."""
    for tenant, model in (("acme", "amazon.nova-pro-v1:0"), ("globex", HAIKU)):
        ag = agent_client(sidecar, mint, tenant)
        e = harness.expect_client_error(
            ag, lambda: ag.optimize_prompt(input=PROMPT, targetModelId=model), 403, "model_not_allowed")
        audit = sidecar.wait_audit(harness.request_id_of(e))
        assert (audit["operation"], audit["decision"]) == ("OptimizePrompt", "deny")
    harness.assert_nothing_upstream(fake_aws)


def test_hostile_bodies_are_refused(sidecar, fake_aws, mint):
    """Raw bodies a hostile app could send: a duplicated targetModelId whose
    last value is not allowed, the member in another case, a non-string
    model, none at all, another tenant's model inside an ARN: refused,
    nothing upstream."""
    token = mint("acme", "alice")
    nova = "amazon.nova-pro-v1:0"
    bodies = [
        ('{"input":%s,"targetModelId":"%s","targetModelId":"%s"}' % (json.dumps(PROMPT), HAIKU, nova), {400, 403}),
        ('{"input":%s,"TargetModelId":"%s"}' % (json.dumps(PROMPT), nova), {400}),
        ('{"input":%s,"targetModelId":"%s","TargetModelId":"%s"}' % (json.dumps(PROMPT), HAIKU, nova), {400}),
        ('{"input":%s,"targetModelId":["%s"]}' % (json.dumps(PROMPT), HAIKU), {400}),
        ('{"input":%s}' % json.dumps(PROMPT), {400}),
        ('{"input":%s,"targetModelId":"arn:aws:bedrock:us-east-1::foundation-model/%s"}' % (json.dumps(PROMPT), nova),
         {403}),
        ('{"input":%s,"targetModelId":"\\u0061mazon.nova-pro-v1:0"}' % json.dumps(PROMPT), {403}),
    ]
    for body, statuses in bodies:
        resp = sidecar.request("POST", "/optimize-prompt", body.encode(), token=token)
        assert resp.status in statuses, (body, resp)
        harness.assert_tenantgate_error(resp, resp.status, {"invalid_parameter", "model_not_allowed"})
    harness.assert_nothing_upstream(fake_aws)


def test_other_methods_are_refused(sidecar, fake_aws, mint):
    for method in ("GET", "PUT", "DELETE"):
        resp = sidecar.request(method, "/optimize-prompt", b"" if method == "GET" else b"{}", token=mint())
        harness.assert_tenantgate_error(resp, 403, "operation_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_answer_events_are_redacted(sidecar, fake_aws, mint):
    """An id the redaction patterns name, in either event's text, never
    reaches the app; the rest of the text does."""
    fake_aws.optimize_analysis = "Mentions internal-user-123456 twice: internal-user-654321."
    fake_aws.optimize_prefix = "As internal-user-000042, "
    ag = agent_client(sidecar, mint)
    events = collect(ag.optimize_prompt(input=PROMPT, targetModelId=HAIKU))
    analysis = events[0]["analyzePromptEvent"]["message"]
    optimized = events[1]["optimizedPromptEvent"]["optimizedPrompt"]["textPrompt"]["text"]
    assert analysis == "Mentions [redacted] twice: [redacted]."
    assert optimized == "As [redacted], Summarise the refund policy for {{customer}}."
    assert "internal-user" not in json.dumps(events)
