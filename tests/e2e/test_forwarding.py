"""Allowed requests reach AWS intact and correctly signed (docs/reference.md §4 header
stripping, §5 routing and path encoding, §6 signing, §7 responses).

Every upstream request is checked by the fake's botocore SigV4 oracle.
"""

from __future__ import annotations

import hashlib
import json
import threading
from urllib.parse import quote

import pytest

import harness
from fakeaws import Respond
from harness import HAIKU, HAIKU_ARN, HAIKU_PROFILE_ARN, NOVA, TITAN_EMBED, converse_args


def _sent_body(client) -> bytes:
    return client.tap.sent[-1][3]


def test_converse_forwarded_and_signed_with_tenant_key(sidecar, fake_aws, mint, creds):
    """docs/reference.md §6: signed with SigV4 by acme's key (not globex's, not the
    app's), signing name `bedrock`, region aws.region; §4: identity header
    and client Authorization removed, `host` is the upstream's; §7 request id."""
    client = harness.make_client(sidecar.url, token=mint("acme", "alice"))
    out = client.converse(**converse_args(text="hello acme"))
    assert out["output"]["message"]["content"][0]["text"] == fake_aws.reply_text
    assert out["usage"] == {"inputTokens": 11, "outputTokens": 7, "totalTokens": 18}
    assert harness.request_id_of(out)

    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    assert rec.access_key_id != creds["globex"].akid
    assert (rec.service, rec.region) == ("bedrock", "us-east-1")
    assert rec.path_params["modelId"] == HAIKU
    assert "x-tenant-token" not in rec.headers
    assert len(rec.header_values("authorization")) == 1
    assert harness.CLIENT_AKID not in rec.headers["authorization"]
    assert rec.header_values("host") == [fake_aws.host]
    assert len(rec.header_values("x-amz-date")) == 1
    assert "x-amz-security-token" not in rec.headers  # acme's keys are long-term
    assert json.loads(rec.body) == json.loads(_sent_body(client))


def test_globex_signed_with_its_session_token(sidecar, fake_aws, mint, creds):
    """docs/reference.md §6: `x-amz-security-token` is sent and signed when the tenant's
    credentials have one (static `session_token_env`)."""
    client = harness.make_client(sidecar.url, token=mint("globex", "gary"))
    client.converse(**converse_args(NOVA))
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["globex"].akid)
    assert rec.header_values("x-amz-security-token") == [creds["globex"].token]
    assert "x-amz-security-token" in rec.signed_headers


def test_client_aws_headers_not_forwarded(sidecar, fake_aws, mint, creds):
    """docs/reference.md §4: the client's `authorization`, `x-amz-date`,
    `x-amz-security-token`, `x-amz-content-sha256` and `x-forwarded-*` never
    reach AWS (the sidecar signs afresh)."""
    client = harness.make_client(
        sidecar.url,
        token=mint("acme", "alice"),
        session_token="client-session-token-must-not-leak",
        extra_headers={
            "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
            "x-forwarded-for": "203.0.113.9",
            "x-forwarded-host": "evil.example",
            "x-forwarded-proto": "https",
        },
    )
    client.converse(**converse_args())
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    text = "\n".join(f"{k}: {v}" for k, v in rec.header_list)
    assert "client-session-token-must-not-leak" not in text
    assert harness.CLIENT_AKID not in text
    assert not any(k.lower().startswith("x-forwarded-") for k, _ in rec.header_list), text
    for v in rec.header_values("x-amz-content-sha256"):
        assert v == hashlib.sha256(rec.body).hexdigest()


def test_hop_by_hop_request_headers_removed(sidecar, fake_aws, mint, creds):
    """docs/reference.md §4: hop-by-hop headers (incl. those named in `Connection`) are
    not forwarded."""
    resp = sidecar.request(
        "POST",
        f"/model/{HAIKU}/converse",
        json.dumps({"messages": converse_args()["messages"]}).encode(),
        headers={
            "Connection": "keep-alive, x-hop-secret",
            "X-Hop-Secret": "hop-value",
            "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic c2VjcmV0OnNlY3JldA==",
        },
        token=mint(),
    )
    assert resp.status == 200, resp
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    for name in ("x-hop-secret", "keep-alive", "proxy-authorization"):
        assert name not in rec.headers, rec.header_list


def test_invoke_model_bytes_forwarded_exactly(sidecar, fake_aws, mint, creds):
    """docs/reference.md §5: bodies of operations that do not inspect them are forwarded
    byte for byte; §7 the upstream body and headers come back unchanged."""
    body = b'{ "anthropic_version" : "bedrock-2023-05-31",\n\t"max_tokens":5, "x":"\xc3\xa9\\u00e9 \xf0\x9f\x98\x80" }  '
    answer = b'{"completion" :  "odd  spacing",\n "emoji":"\xf0\x9f\x98\x80"}\r\n'
    fake_aws.script(
        Respond(
            200,
            {
                "Content-Type": "application/json",
                "x-amzn-RequestId": "req-123",
                "x-amzn-bedrock-input-token-count": "13",
                "x-amzn-bedrock-output-token-count": "5",
            },
            answer,
        )
    )
    client = harness.make_client(sidecar.url, token=mint())
    out = client.invoke_model(modelId=HAIKU, body=body, contentType="application/json", accept="application/json")
    assert out["body"].read() == answer
    headers = out["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-input-token-count"] == "13"
    assert headers["x-amzn-bedrock-output-token-count"] == "5"
    assert headers.get("x-tenantgate-request-id")
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    assert rec.body == body
    assert rec.headers.get("content-type") == "application/json"


def test_invoke_model_default_response(sidecar, fake_aws, mint, creds):
    """docs/reference.md §5.1 InvokeModel: allowed model, upstream JSON passed through."""
    client = harness.make_client(sidecar.url, token=mint())
    out = client.invoke_model(modelId=HAIKU, body=json.dumps({"messages": []}))
    assert json.loads(out["body"].read())["content"][0]["text"] == fake_aws.reply_text
    assert out["ResponseMetadata"]["RequestId"]  # upstream x-amzn-RequestId passes
    harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)


def test_converse_stream_iterated_by_boto3(sidecar, fake_aws, mint, creds):
    """docs/reference.md §5 ConverseStream: the event stream reaches the SDK intact."""
    client = harness.make_client(sidecar.url, token=mint())
    resp = client.converse_stream(**converse_args())
    events = [ev for ev in resp["stream"]]
    kinds = [next(iter(e)) for e in events]
    assert kinds == ["messageStart"] + ["contentBlockDelta"] * 4 + ["contentBlockStop", "messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "".join(fake_aws.stream_parts)
    assert events[-1]["metadata"]["usage"]["totalTokens"] == 18
    assert harness.request_id_of(resp)
    harness.assert_one_valid_upstream(fake_aws, "ConverseStream", creds["acme"].akid)


def test_invoke_model_stream_iterated_by_boto3(sidecar, fake_aws, mint, creds):
    """docs/reference.md §5 InvokeModelWithResponseStream: chunks and invocation metrics intact."""
    client = harness.make_client(sidecar.url, token=mint())
    resp = client.invoke_model_with_response_stream(modelId=HAIKU, body=b'{"messages":[]}')
    chunks = [json.loads(ev["chunk"]["bytes"]) for ev in resp["body"]]
    text = "".join(c["delta"]["text"] for c in chunks if c["type"] == "content_block_delta")
    assert text == "".join(fake_aws.stream_parts)
    assert chunks[-1]["amazon-bedrock-invocationMetrics"]["inputTokenCount"] == 11
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModelWithResponseStream", creds["acme"].akid)
    assert rec.body == b'{"messages":[]}'


@pytest.mark.parametrize("model", [HAIKU_ARN, HAIKU_PROFILE_ARN], ids=["foundation-model-arn", "profile-arn"])
def test_arn_model_ids(sidecar, fake_aws, mint, creds, model):
    """docs/reference.md §5: ARNs arrive percent-encoded, are decoded for matching and
    re-encoded exactly as AWS SDKs do when forwarded and signed."""
    client = harness.make_client(sidecar.url, token=mint())
    client.converse(**converse_args(model))
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    assert rec.path_params["modelId"] == model
    expected_path = "/model/" + quote(model, safe="") + "/converse"
    assert rec.raw_path == expected_path
    assert client.tap.sent[-1][1].endswith(expected_path)  # what boto3 sent to the sidecar


def test_count_tokens_and_embedding_model(sidecar, fake_aws, mint, creds):
    """docs/reference.md §5 CountTokens; §3 an exact (wildcard-free) model id entry."""
    client = harness.make_client(sidecar.url, token=mint())
    out = client.count_tokens(modelId=HAIKU, input={"converse": {"messages": converse_args()["messages"]}})
    assert out["inputTokens"] == 11
    out = client.invoke_model(modelId=TITAN_EMBED, body=json.dumps({"inputText": "x"}))
    assert json.loads(out["body"].read())["embedding"]
    recs = fake_aws.recorded()
    assert [r.operation for r in recs] == ["CountTokens", "InvokeModel"]
    assert all(r.signature_valid and r.access_key_id == creds["acme"].akid for r in recs), fake_aws.describe()


def test_request_ids_unique(sidecar, fake_aws, mint):
    """docs/reference.md §7: every response has `x-tenantgate-request-id`; ids differ."""
    client = harness.make_client(sidecar.url, token=mint())
    ids = {harness.request_id_of(client.converse(**converse_args())) for _ in range(3)}
    assert len(ids) == 3 and None not in ids


def test_concurrent_tenants_never_mix_credentials(sidecar, fake_aws, mint, creds):
    """docs/reference.md §1/§6: under concurrency each upstream request carries the
    requesting tenant's signature."""
    errors = []

    def run(tenant, user, model, n):
        try:
            client = harness.make_client(sidecar.url, token=mint(tenant, user))
            for i in range(n):
                client.converse(**converse_args(model, text=f"from {tenant} #{i}"))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [
        threading.Thread(target=run, args=("acme", f"a{i}", HAIKU, 5)) for i in range(3)
    ] + [threading.Thread(target=run, args=("globex", f"g{i}", NOVA, 5)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    recs = fake_aws.wait_for_requests(30)
    assert len(recs) == 30
    for r in recs:
        assert r.signature_valid, r.summary()
        tenant = "acme" if "from acme" in r.body.decode() else "globex"
        assert r.access_key_id == creds[tenant].akid, r.summary()
