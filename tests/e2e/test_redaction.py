"""Response redaction (docs/reference.md §7, `[redaction]` in §3) of bodies that are not
event streams: every match of `redaction.patterns` in a JSON string value or
plain text is replaced, the JSON stays valid, the count is audited, and a
body with no match is forwarded byte for byte. (Event streams are forwarded
unredacted in this version; see docs/security.md "Limitations".)"""

from __future__ import annotations

import json

import pytest

import harness
from harness import HAIKU, converse_args

IDENTITY_ID = "us-west-2:12345678-abcd-1234-462b-123456789abc"


@pytest.fixture
def acme(sidecar, mint):
    return harness.make_client(sidecar.url, token=mint("acme", "alice"))


def test_identity_id_in_converse_json_is_redacted(acme, sidecar, fake_aws):
    """docs/reference.md §7: a Cognito identity id repeated by the model never reaches the app."""
    fake_aws.reply_text = f"Your identity is {IDENTITY_ID}, and {IDENTITY_ID} again."
    out = acme.converse(**converse_args())
    text = out["output"]["message"]["content"][0]["text"]
    assert IDENTITY_ID not in text
    assert text == "Your identity is [redacted], and [redacted] again."
    assert out["usage"]["inputTokens"] == 11  # the rest of the answer is intact
    rec = sidecar.wait_audit(harness.request_id_of(out))
    assert rec["redactions"] == 2
    assert rec["input_tokens"] == 11 and rec["output_tokens"] == 7


def test_identity_id_in_invoke_model_body_is_redacted(acme, fake_aws):
    """docs/reference.md §7: InvokeModel bodies (model-specific JSON) too."""
    fake_aws.reply_text = f"id={IDENTITY_ID}"
    out = acme.invoke_model(modelId=HAIKU, body=b"{}")
    raw = out["body"].read()
    assert IDENTITY_ID.encode() not in raw
    assert json.loads(raw)["content"][0]["text"] == "id=[redacted]"


def test_body_without_a_match_is_forwarded_byte_for_byte(acme, fake_aws):
    """docs/reference.md §7: a pattern that never matches changes no byte."""
    fake_aws.reply_text = "nothing to hide here: us-west-2 is a region"
    out = acme.invoke_model(modelId=HAIKU, body=b"{}")
    raw = out["body"].read()
    assert b"nothing to hide here: us-west-2 is a region" in raw
    assert json.loads(raw)["content"][0]["text"] == "nothing to hide here: us-west-2 is a region"
