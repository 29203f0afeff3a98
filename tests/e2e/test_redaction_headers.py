"""Response headers are redacted like bodies (docs/security.md "Redaction"): every
header upstream sent that reaches the app has its identity ids replaced, on
whole answers, event streams and upstream errors alike, and the matches are
counted in the audit record.
"""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

import fake_sagemaker
import harness
from fakeaws import Body, event_stream
from harness import converse_args

IDENTITY_ID = "us-east-1:12345678-abcd-1234-462b-123456789abc"

SIDECAR_OVERRIDES = {
    "tenants": {
        "acme": {
            "sagemaker": {
                "endpoints": {"classifier": "acme-classifier"},
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


def test_sagemaker_custom_attributes_and_variant_are_redacted(sidecar, fake_aws, token):
    fake_aws.script(
        lambda fake, rec: Body(200, [
            ("Content-Type", "application/json"),
            ("X-Amzn-SageMaker-Custom-Attributes", f"user={IDENTITY_ID};trace=1"),
            ("x-Amzn-Invoked-Production-Variant", f"v-{IDENTITY_ID}"),
        ], b'{"label":"ok"}'),
        operation="InvokeEndpoint",
    )
    client = harness.make_client(sidecar.url, "sagemaker-runtime", token)
    out = client.invoke_endpoint(EndpointName="classifier", Body=b'{"x":1}', ContentType="application/json")
    assert out["CustomAttributes"] == "user=[redacted];trace=1"
    assert out["InvokedProductionVariant"] == "v-[redacted]"
    assert IDENTITY_ID not in json.dumps(client.tap.headers)
    rec = sidecar.wait_audit(harness.request_id_of(out))
    assert rec["redactions"] == 2, rec


def test_stream_answer_headers_are_redacted_and_counted_with_the_body(sidecar, fake_aws, token):
    fake_aws.script(
        lambda fake, rec: event_stream(
            [fake_sagemaker.payload_part(f"id {IDENTITY_ID} end".encode())],
            extra_headers=[
                ("X-Amzn-SageMaker-Content-Type", "text/plain"),
                ("X-Amzn-SageMaker-Custom-Attributes", IDENTITY_ID),
            ],
        ),
        operation="InvokeEndpointWithResponseStream",
    )
    client = harness.make_client(sidecar.url, "sagemaker-runtime", token)
    out = client.invoke_endpoint_with_response_stream(EndpointName="classifier", Body=b"x", ContentType="text/plain")
    text = b"".join(e["PayloadPart"]["Bytes"] for e in out["Body"] if "PayloadPart" in e)
    assert IDENTITY_ID.encode() not in text
    assert out["CustomAttributes"] == "[redacted]"
    rec = sidecar.wait_audit(harness.request_id_of(out))
    # One in the header, one in the stream: neither count replaces the other.
    assert rec["redactions"] == 2, rec


def test_upstream_error_message_header_is_redacted(sidecar, fake_aws, token):
    message = f"identity {IDENTITY_ID} is not allowed"
    fake_aws.script(
        lambda fake, rec: Body(400, [
            ("Content-Type", "application/json"),
            ("x-amzn-ErrorType", "ValidationException"),
            ("x-amzn-ErrorMessage", message),
        ], json.dumps({"message": message}).encode()),
        operation="Converse",
    )
    client = harness.make_client(sidecar.url, token=token)
    with pytest.raises(ClientError) as info:
        client.converse(**converse_args())
    err = info.value
    assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "x-tenantgate-reason" not in client.tap.headers, "an upstream error passes through"
    assert IDENTITY_ID not in json.dumps(client.tap.headers)
    assert client.tap.headers["x-amzn-errormessage"] == "identity [redacted] is not allowed"
    assert IDENTITY_ID not in err.response["Error"]["Message"]
    harness.assert_one_valid_upstream(fake_aws, "Converse")
