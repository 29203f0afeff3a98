"""Isolation hardening: nothing the sidecar does not understand reaches AWS.

- Headers the client names in `Connection` are removed before any rewrite,
  and a `Connection` token naming a header the sidecar manages is refused,
  so no forced header can be stripped (docs/security.md "Request validation").
- Only the headers and query parameters an operation's AWS model defines
  (plus a short documented list) are forwarded; `x-amz*` headers the model
  does not define, header names with `_`, and unknown query parameters are
  refused with 400 `invalid_parameter`, nothing upstream.
- Answers in a content coding are decoded before they are judged, redacted
  and counted, or refused with 502 (docs/reference.md §7 redaction; docs/security.md "Security
  model", row "Encodings").
"""

from __future__ import annotations

import gzip
import json
import zlib

import pytest

import fake_sagemaker
import harness
from fakeaws import Body, Respond
from harness import HAIKU, converse_args

IDENTITY_ID = "us-west-2:12345678-abcd-1234-462b-123456789abc"

SIDECAR_OVERRIDES = {
    "tenants": {
        "acme": {
            "guardrail": {"id": "gr-acme", "version": "3"},
            "knowledge_base": {
                "allowed": ["KBPOOLED01"],
                "filter_key": "tenant_id",
                "allowed_source_prefixes": ["s3://kb-docs/tenants/{tenant}/"],
            },
            "sagemaker": {
                "endpoints": {"classifier": "acme-classifier"},
                "target_model": "{tenant}.tar.gz",
                "allowed_target_models": ["{tenant}.tar.gz"],
            },
        },
    }
}

CONVERSE_BODY = json.dumps({k: v for k, v in converse_args().items() if k != "modelId"}).encode()
INVOKE_PATH = f"/model/{HAIKU}/invoke"
CONVERSE_PATH = f"/model/{HAIKU}/converse"


@pytest.fixture(autouse=True)
def _sagemaker_routes(fake_aws):
    fake_sagemaker.install(fake_aws)


@pytest.fixture
def token(mint):
    return mint("acme", "alice")


# --------------------------------------------------------------------------
# Connection-listed headers
# --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [INVOKE_PATH, f"/model/{HAIKU}/invoke-with-response-stream"])
@pytest.mark.parametrize(
    "connection",
    [
        "keep-alive, x-amzn-bedrock-guardrailidentifier, x-amzn-bedrock-guardrailversion",
        "X-Amzn-Bedrock-GuardrailIdentifier",
        "close,x-amzn-bedrock-guardrailversion",
    ],
)
def test_connection_cannot_strip_the_forced_guardrail(sidecar, fake_aws, token, path, connection):
    """A Connection token naming a header the sidecar sets is refused: it
    would strip the forced guardrail after the rewrite added it."""
    resp = sidecar.request("POST", path, b"{}", {"Connection": connection}, token=token)
    harness.assert_tenantgate_error(resp, 400, "invalid_parameter", "ValidationException")
    assert "connection" in resp.json()["message"].lower()
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize("named", ["x-tenant-token", "authorization", "content-type", "x-amz-date", "host"])
def test_connection_naming_other_managed_headers_is_refused(sidecar, fake_aws, token, named):
    resp = sidecar.request("POST", CONVERSE_PATH, CONVERSE_BODY, {"Connection": f"keep-alive, {named}"}, token=token)
    assert resp.status in (400, 401), resp
    harness.assert_nothing_upstream(fake_aws)


def test_connection_listed_client_headers_are_removed_before_the_rewrite(sidecar, fake_aws, token, creds):
    """A harmless Connection token is honoured (hop-by-hop), and the forced
    guardrail arrives exactly once with the tenant's values."""
    resp = sidecar.request(
        "POST", INVOKE_PATH, b"{}", {"Connection": "keep-alive, x-hop-me", "x-hop-me": "1"}, token=token
    )
    assert resp.status == 200, resp
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    assert "x-hop-me" not in rec.headers
    assert rec.header_values("x-amzn-bedrock-guardrailidentifier") == ["gr-acme"]
    assert rec.header_values("x-amzn-bedrock-guardrailversion") == ["3"]


# --------------------------------------------------------------------------
# Headers and query parameters the model does not define
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"x_amzn_sagemaker_target_model": "globex.tar.gz"},
        {"x-amz-sagemaker-target-model": "globex.tar.gz"},
        {"x-amz-target": "AmazonSageMakerRuntime.InvokeEndpoint"},
        {"x-amz-source-arn": "arn:aws:sagemaker:us-east-1:111122223333:endpoint/globex-classifier"},
        {"X-Amzn-SageMaker-Target-Model": "acme.tar.gz", "x-amzn-sagemaker-target-model": "globex.tar.gz"},
    ],
)
def test_sagemaker_header_variants_are_refused(sidecar, fake_aws, token, headers):
    """Spellings and neighbours of the target-model header never ride along
    with the injected one."""
    h = {"Content-Type": "application/json"}
    h.update(headers)
    resp = harness.http_request(
        "POST", sidecar.url + "/endpoints/classifier/invocations", b'{"x":1}', {**h, "x-tenant-token": token}
    )
    harness.assert_tenantgate_error(resp, 400, "invalid_parameter", "ValidationException")
    harness.assert_nothing_upstream(fake_aws)


def test_sagemaker_header_variants_through_boto3(sidecar, fake_aws, token):
    client = harness.make_client(
        sidecar.url, "sagemaker-runtime", token, extra_headers={"x-amz-sagemaker-target-model": "globex.tar.gz"}
    )
    err = harness.expect_client_error(
        client, lambda: client.invoke_endpoint(EndpointName="classifier", Body=b"{}"), 400, "invalid_parameter"
    )
    assert "x-amz-sagemaker-target-model" in err.response["Error"]["Message"]
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize(
    "query",
    ["X-Amz-Security-Token=zzz&Action=AssumeRole", "Action=AssumeRole", "x-id=Converse", "guardrailIdentifier=gr-x"],
)
def test_query_parameters_the_model_does_not_define_are_refused(sidecar, fake_aws, token, query):
    resp = sidecar.request("POST", f"{CONVERSE_PATH}?{query}", CONVERSE_BODY, token=token)
    harness.assert_tenantgate_error(resp, 400, "invalid_parameter", "ValidationException")
    harness.assert_nothing_upstream(fake_aws)


def test_unknown_plain_headers_are_dropped_not_forwarded(sidecar, fake_aws, token, creds):
    client = harness.make_client(sidecar.url, token=token, extra_headers={"x-custom": "1", "Accept-Encoding": "gzip"})
    client.converse(**converse_args())
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    assert "x-custom" not in rec.headers
    assert rec.header_values("accept-encoding") == ["identity"]


def test_compressed_request_body_is_refused(sidecar, fake_aws, token):
    """The sidecar cannot inspect a compressed body: never forward one."""
    resp = sidecar.request(
        "POST", CONVERSE_PATH, gzip.compress(CONVERSE_BODY), {"Content-Encoding": "gzip"}, token=token
    )
    harness.assert_tenantgate_error(resp, 400, "invalid_parameter", "ValidationException")
    harness.assert_nothing_upstream(fake_aws)


# --------------------------------------------------------------------------
# Compressed answers
# --------------------------------------------------------------------------


def _encoded(coding: str, payload: dict | bytes, content_type="application/json", status=200):
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    if coding in ("gzip", "x-gzip"):
        data = gzip.compress(data)
    elif coding == "deflate":
        data = zlib.compress(data)
    return Respond(status, {"Content-Type": content_type, "Content-Encoding": coding}, data)


def _converse_answer(text):
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18},
        "metrics": {"latencyMs": 5},
    }


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "deflate"])
def test_compressed_converse_answer_is_decoded_and_redacted(sidecar, fake_aws, token, coding):
    fake_aws.script(_encoded(coding, _converse_answer(f"your id is {IDENTITY_ID}")), operation="Converse")
    client = harness.make_client(sidecar.url, token=token, extra_headers={"Accept-Encoding": "gzip"})
    out = client.converse(**converse_args())
    assert out["output"]["message"]["content"][0]["text"] == "your id is [redacted]"
    assert "content-encoding" not in client.tap.headers
    rec = sidecar.wait_audit(harness.request_id_of(out))
    assert rec["decision"] == "allow" and rec["redactions"] == 1
    assert rec["input_tokens"] == 11 and rec["output_tokens"] == 7
    up = fake_aws.recorded("Converse")[-1]
    assert up.header_values("accept-encoding") == ["identity"]


def test_compressed_sagemaker_answer_is_decoded_and_redacted(sidecar, fake_aws, token):
    fake_aws.script(
        _encoded("gzip", {"label": f"user {IDENTITY_ID}"}), operation="InvokeEndpoint"
    )
    client = harness.make_client(sidecar.url, "sagemaker-runtime", token)
    out = client.invoke_endpoint(EndpointName="classifier", Body=b'{"x":1}', ContentType="application/json")
    raw = out["Body"].read()
    assert IDENTITY_ID.encode() not in raw
    assert json.loads(raw) == {"label": "user [redacted]"}


def test_compressed_retrieve_answer_is_filtered(sidecar, fake_aws, token):
    """Retrieve answers are decoded, then foreign results dropped (not 502)."""
    results = [
        {"content": {"text": "ours"}, "location": {"type": "S3", "s3Location": {"uri": "s3://kb-docs/tenants/acme/a.txt"}}},
        {"content": {"text": "theirs"}, "location": {"type": "S3", "s3Location": {"uri": "s3://kb-docs/tenants/globex/b.txt"}}},
    ]
    fake_aws.script(_encoded("gzip", {"retrievalResults": results}), operation="Retrieve")
    client = harness.make_client(sidecar.url, "bedrock-agent-runtime", token)
    out = client.retrieve(knowledgeBaseId="KBPOOLED01", retrievalQuery={"text": "q"})
    assert [r["content"]["text"] for r in out["retrievalResults"]] == ["ours"]
    assert client.tap.headers["x-tenantgate-dropped-results"] == "1"


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip, gzip", "compress"])
def test_answer_in_an_unknown_coding_is_refused(sidecar, fake_aws, token, coding):
    fake_aws.script(
        Respond(200, {"Content-Type": "application/json", "Content-Encoding": coding}, b"\x1f\x8b opaque"),
        operation="Converse",
    )
    resp = sidecar.request("POST", CONVERSE_PATH, CONVERSE_BODY, token=token)
    harness.assert_tenantgate_error(resp, 502, "upstream_error")
    rec = sidecar.wait_audit(resp.headers["x-tenantgate-request-id"])
    assert rec["reason"] == "upstream_error" and rec["status"] == 502


def test_compressed_event_stream_is_refused(sidecar, fake_aws, token):
    def gz_stream(fake, rec):
        return Body(200, [("Content-Type", "application/vnd.amazon.eventstream"), ("Content-Encoding", "gzip")],
                    gzip.compress(b"\x00" * 64))

    fake_aws.script(gz_stream, operation="ConverseStream")
    resp = sidecar.request("POST", f"/model/{HAIKU}/converse-stream", CONVERSE_BODY, token=token)
    harness.assert_tenantgate_error(resp, 502, "upstream_error")


def test_decompression_bomb_is_refused(sidecar, fake_aws, token):
    bomb = gzip.compress(b'{"output":"' + b"a" * (40 << 20) + b'"}')
    assert len(bomb) < 200_000
    fake_aws.script(
        Respond(200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, bomb), operation="Converse"
    )
    resp = sidecar.request("POST", CONVERSE_PATH, CONVERSE_BODY, token=token)
    harness.assert_tenantgate_error(resp, 502, "upstream_error")
