"""The harness checks itself, without tenantgate: the fake's event-stream
encoder decodes with botocore, the signature oracle accepts what botocore
signs and rejects what it must, scripted faults behave, tokens verify, and
the TOML writer round-trips. If these fail, no other result can be trusted.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import tomllib

import boto3
import jwt
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from botocore.exceptions import ClientError

import harness
from fakeaws import (
    Error,
    Hang,
    Reset,
    Respond,
    Stall,
    chunk_event,
    encode_event_message,
    event,
    verify_sigv4,
)
from harness import HAIKU, HAIKU_ARN, HAIKU_PROFILE_ARN, converse_args


def direct(fake, creds, tenant="acme", service="bedrock-runtime", read_timeout=10, **kw):
    """boto3 straight to the fake with a tenant's real (fake) keys."""
    c = creds[tenant]
    return boto3.session.Session().client(
        service,
        endpoint_url=fake.url,
        region_name="us-east-1",
        aws_access_key_id=kw.pop("akid", c.akid),
        aws_secret_access_key=kw.pop("secret", c.secret),
        aws_session_token=kw.pop("token", c.token),
        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}, read_timeout=read_timeout,
                      connect_timeout=5),
    )


# ---- event stream ---------------------------------------------------------

def test_event_stream_encoder_decodes_with_botocore():
    msg = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "héllo"}})
    buf = EventStreamBuffer()
    buf.add_data(msg[:7])  # partial prelude first
    assert list(buf) == []
    buf.add_data(msg[7:] + chunk_event({"a": 1}))
    decoded = list(buf)
    assert len(decoded) == 2
    first = decoded[0]
    assert first.headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert json.loads(first.payload) == {"contentBlockIndex": 0, "delta": {"text": "héllo"}}
    assert first.prelude.total_length == len(msg)
    inner = json.loads(base64.b64decode(json.loads(decoded[1].payload)["bytes"]))
    assert inner == {"a": 1}


def test_event_stream_crc_is_checked():
    msg = bytearray(encode_event_message([(":message-type", "event")], b"payload"))
    msg[-6] ^= 0xFF  # flip a payload byte: message CRC no longer matches
    buf = EventStreamBuffer()
    buf.add_data(bytes(msg))
    with pytest.raises(ChecksumMismatch):
        list(buf)


# ---- signature oracle -----------------------------------------------------

def _signed(method, url, body, akid="AKIDTEST", secret="s3cr3t", token=None, service="bedrock",
            headers=None):
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    SigV4Auth(Credentials(akid, secret, token), service, "us-east-1").add_auth(req)
    prepared = req.prepare()
    path = url.split("://", 1)[1]
    host, _, target = path.partition("/")
    hdrs = [("Host", host)] + list(prepared.headers.items())
    return "/" + target, hdrs


def _lookup(akid):
    from fakeaws import Credential
    return {
        "AKIDTEST": Credential("AKIDTEST", "s3cr3t"),
        "ASIATEST": Credential("ASIATEST", "s3cr3t", "tok123"),
    }.get(akid)


def test_oracle_accepts_botocore_signature_and_rejects_tampering():
    body = b'{"messages":[]}'
    url = "http://127.0.0.1:9/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fx/converse"
    target, hdrs = _signed("POST", url, body)
    ok = verify_sigv4("POST", target, hdrs, body, _lookup)
    assert ok["valid"], ok
    assert (ok["access_key_id"], ok["service"], ok["region"]) == ("AKIDTEST", "bedrock", "us-east-1")

    assert not verify_sigv4("POST", target, hdrs, body + b" ", _lookup)["valid"]
    assert not verify_sigv4("POST", target.replace("%2F", "/"), hdrs, body, _lookup)["valid"]
    assert not verify_sigv4("PUT", target, hdrs, body, _lookup)["valid"]
    bad_host = [(k, "127.0.0.1:10" if k == "Host" else v) for k, v in hdrs]
    assert not verify_sigv4("POST", target, bad_host, body, _lookup)["valid"]
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=6)
    skew = verify_sigv4("POST", target, hdrs, body, _lookup, now=later)
    assert not skew["valid"] and any("x-amz-date" in e for e in skew["errors"])
    # An unsigned extra header is fine; a second Authorization is not.
    assert verify_sigv4("POST", target, hdrs + [("x-extra", "1")], body, _lookup)["valid"]
    two = verify_sigv4("POST", target, hdrs + [("Authorization", "AWS4-HMAC-SHA256 x")], body, _lookup)
    assert not two["valid"]
    wrong_secret = _signed("POST", url, body, secret="other")
    assert not verify_sigv4("POST", *wrong_secret, body, _lookup)["valid"]
    unknown = _signed("POST", url, body, akid="AKIDNOPE")
    r = verify_sigv4("POST", *unknown, body, _lookup)
    assert not r["valid"] and "unknown access key" in r["errors"][0]


def test_oracle_session_token_and_content_sha():
    body = b"{}"
    url = "http://127.0.0.1:9/model/m/invoke"
    target, hdrs = _signed("POST", url, body, akid="ASIATEST", token="tok123")
    assert verify_sigv4("POST", target, hdrs, body, _lookup)["valid"]
    target, hdrs = _signed("POST", url, body, akid="ASIATEST", token="other-token")
    assert not verify_sigv4("POST", target, hdrs, body, _lookup)["valid"]
    target, hdrs = _signed("POST", url, body, akid="ASIATEST")  # token missing
    assert not verify_sigv4("POST", target, hdrs, body, _lookup)["valid"]
    import hashlib
    good = hashlib.sha256(body).hexdigest()
    target, hdrs = _signed("POST", url, body, headers={"X-Amz-Content-SHA256": good})
    assert verify_sigv4("POST", target, hdrs, body, _lookup)["valid"]
    target, hdrs = _signed("POST", url, body, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    r = verify_sigv4("POST", target, hdrs, body, _lookup)
    assert not r["valid"] and any("sha256" in e for e in r["errors"])


@pytest.mark.parametrize("model", [HAIKU, HAIKU_ARN, HAIKU_PROFILE_ARN])
def test_fake_serves_converse_to_boto3_with_valid_signature(fake_aws, creds, model):
    c = direct(fake_aws, creds)
    out = c.converse(**converse_args(model))
    assert out["output"]["message"]["content"][0]["text"] == fake_aws.reply_text
    assert out["usage"]["inputTokens"] == fake_aws.input_tokens
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    assert rec.path_params["modelId"] == model
    assert rec.service == "bedrock" and rec.region == "us-east-1"


def test_fake_session_token_credentials(fake_aws, creds):
    direct(fake_aws, creds, "globex").converse(**converse_args("amazon.nova-pro-v1:0"))
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["globex"].akid)
    assert rec.headers["x-amz-security-token"] == creds["globex"].token


def test_fake_rejects_bad_signature_like_aws(fake_aws, creds):
    c = direct(fake_aws, creds, secret="not-the-secret")
    with pytest.raises(ClientError) as ei:
        c.converse(**converse_args())
    assert ei.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    [rec] = fake_aws.recorded()
    assert not rec.signature_valid and "signature mismatch" in rec.errors


def test_fake_rejects_client_key_and_identity_header(fake_aws, creds):
    c = harness.make_client(fake_aws.url, token="some.jwt.token")
    with pytest.raises(ClientError):
        c.converse(**converse_args())
    [rec] = fake_aws.recorded()
    assert not rec.signature_valid
    assert any("x-tenant-token" in e for e in rec.errors)
    assert any("unknown access key" in e for e in rec.errors)


def test_fake_body_tampered_after_signing_is_rejected(fake_aws, creds):
    c = direct(fake_aws, creds)

    def tamper(request, **kw):
        request.body = request.body.replace(b"Hi there", b"Hi thera")

    c.meta.events.register("before-send.bedrock-runtime.Converse", tamper)
    with pytest.raises(ClientError):
        c.converse(**converse_args())
    [rec] = fake_aws.recorded()
    assert not rec.signature_valid


def test_fake_invoke_model_shapes(fake_aws, creds):
    c = direct(fake_aws, creds)
    out = c.invoke_model(modelId=HAIKU, body=b'{"anthropic_version":"bedrock-2023-05-31"}')
    headers = out["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amzn-bedrock-input-token-count"] == str(fake_aws.input_tokens)
    assert headers["x-amzn-bedrock-output-token-count"] == str(fake_aws.output_tokens)
    body = json.loads(out["body"].read())
    assert body["content"][0]["text"] == fake_aws.reply_text
    assert fake_aws.recorded()[0].body == b'{"anthropic_version":"bedrock-2023-05-31"}'


def test_fake_converse_stream_parses_in_boto3(fake_aws, creds):
    c = direct(fake_aws, creds)
    resp = c.converse_stream(**converse_args())
    events = list(resp["stream"])
    kinds = [next(iter(e)) for e in events]
    assert kinds == ["messageStart"] + ["contentBlockDelta"] * len(fake_aws.stream_parts) + [
        "contentBlockStop", "messageStop", "metadata"]
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e)
    assert text == "".join(fake_aws.stream_parts)
    assert events[-1]["metadata"]["usage"]["outputTokens"] == fake_aws.output_tokens


def test_fake_invoke_stream_parses_in_boto3(fake_aws, creds):
    c = direct(fake_aws, creds)
    resp = c.invoke_model_with_response_stream(modelId=HAIKU, body=b"{}")
    chunks = [json.loads(e["chunk"]["bytes"]) for e in resp["body"]]
    assert chunks[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == fake_aws.output_tokens
    text = "".join(c["delta"]["text"] for c in chunks if c["type"] == "content_block_delta")
    assert text == "".join(fake_aws.stream_parts)


def test_fake_other_services_parse_in_boto3(fake_aws, creds):
    sm = direct(fake_aws, creds, service="sagemaker-runtime")
    out = sm.invoke_endpoint(EndpointName="acme-classifier", Body=b"abc", ContentType="text/plain")
    assert out["Body"].read() == b"abc"
    parts = [e["PayloadPart"]["Bytes"] for e in
             sm.invoke_endpoint_with_response_stream(EndpointName="x", Body=b"{}")["Body"]]
    assert b"".join(parts).decode() == "".join(fake_aws.stream_parts)
    ag = direct(fake_aws, creds, service="bedrock-agent-runtime")
    assert ag.retrieve(knowledgeBaseId="KBPOOLED01", retrievalQuery={"text": "q"})["retrievalResults"] == []
    out = ag.invoke_agent(agentId="A", agentAliasId="B", sessionId="s-1", inputText="hi")
    text = b"".join(e["chunk"]["bytes"] for e in out["completion"] if "chunk" in e)
    assert text.decode() == "".join(fake_aws.stream_parts)
    recs = fake_aws.recorded()
    assert all(r.signature_valid for r in recs), fake_aws.describe()
    assert {r.service for r in recs} == {"sagemaker", "bedrock"}


# ---- scripted behaviours --------------------------------------------------

def test_script_error_passes_aws_error(fake_aws, creds):
    fake_aws.script(Error(429, "ThrottlingException", "Too many requests"), times=1)
    c = direct(fake_aws, creds)
    with pytest.raises(ClientError) as ei:
        c.converse(**converse_args())
    assert ei.value.response["Error"]["Code"] == "ThrottlingException"
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert len(fake_aws.recorded()) == 1  # the client never retries
    c.converse(**converse_args())  # times=1: next one is normal


def test_app_client_never_retries(fake_aws):
    fake_aws.script(Error(500, "InternalServerException", "boom"))
    c = harness.make_client(fake_aws.url, token=None)
    with pytest.raises(ClientError) as ei:
        c.converse(**converse_args())
    assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] in (403, 500)
    assert len(fake_aws.recorded()) == 1


def test_script_hang_and_stall_and_reset(fake_aws, creds):
    fake_aws.script(Hang(30), times=1)
    c = direct(fake_aws, creds, read_timeout=1)
    t0 = time.monotonic()
    with pytest.raises(Exception):
        c.converse(**converse_args())
    assert time.monotonic() - t0 < 5

    fake_aws.script(Stall(after_events=2, seconds=30), times=1)
    resp = c.converse_stream(**converse_args())
    got = []
    t0 = time.monotonic()
    with pytest.raises(Exception):
        for e in resp["stream"]:
            got.append(e)
    assert len(got) == 2 and time.monotonic() - t0 < 5

    fake_aws.script(Reset(after_events=1), times=1)
    resp = c.invoke_model_with_response_stream(modelId=HAIKU, body=b"{}")
    with pytest.raises(Exception):
        list(resp["body"])
    fake_aws.script(Respond(200, {"Content-Type": "application/json"}, b'{"x": 1}'), times=1)
    assert json.loads(c.invoke_model(modelId=HAIKU, body=b"{}")["body"].read()) == {"x": 1}


def test_jwks_endpoint_fails_and_serves(fake_aws, keys):
    fake_aws.jwks_fail = True
    r = harness.http_request("GET", fake_aws.url + "/jwks.json")
    assert r.status == 500
    fake_aws.jwks_fail = False
    r = harness.http_request("GET", fake_aws.url + "/jwks.json")
    assert r.status == 200 and {k["kid"] for k in r.json()["keys"]} == {"rsa-1", "ec-1"}
    assert fake_aws.jwks_fetches == 2
    assert fake_aws.recorded() == []  # JWKS fetches are not AWS requests


# ---- tokens and config ----------------------------------------------------

def test_minted_tokens_verify_with_jwks(keys, mint):
    jwks = jwt.PyJWKSet.from_dict(keys.jwks())
    tok = mint("acme", "alice")
    assert jwt.get_unverified_header(tok)["kid"] == "rsa-1"
    claims = jwt.decode(tok, jwks["rsa-1"].key, algorithms=["RS256"], audience=harness.AUDIENCE,
                        issuer=harness.ISSUER)
    assert claims[harness.TENANT_CLAIM] == "acme" and claims["sub"] == "alice"
    ec_tok = mint(alg="ES256", kid="ec-1")
    jwt.decode(ec_tok, jwks["ec-1"].key, algorithms=["ES256"], audience=harness.AUDIENCE)
    assert "sub" not in jwt.decode(mint(sub=None), options={"verify_signature": False})
    none_tok = mint.raw({"alg": "none", "typ": "JWT"}, mint.claims())
    assert none_tok.endswith(".")
    forged = mint.raw({"alg": "HS256", "kid": "rsa-1"}, mint.claims(), hs256_secret=keys.rsa_public_pem)
    with pytest.raises(jwt.InvalidTokenError):
        jwt.decode(forged, jwks["rsa-1"].key, algorithms=["RS256"], audience=harness.AUDIENCE)


def test_toml_writer_round_trips(fake_aws, jwks_path):
    cfg = harness.base_config(fake_aws, jwks_path, 1, 2)
    cfg = harness.deep_merge(cfg, {
        "tenants": {"acme": {"model_map": {HAIKU: "arn:x/y"}, "guardrail": {"id": "g", "version": "1"}}},
        "identity": {"leeway_secs": harness.DELETE},
        "redaction": {"patterns": ["a\\d+'\"b"]},
    })
    parsed = tomllib.loads(harness.to_toml(cfg))
    assert parsed == cfg
    assert "leeway_secs" not in parsed["identity"]


def test_leak_finder():
    texts = {"stderr": "header x-tenant-token: eyJabc.def.ghi redacted", "stdout": "{}"}
    assert harness.find_leaks(texts, {"jwt": "eyJabc.def.ghi", "key": "wJalrXUtnFEMI", "empty": ""}) == [
        ("jwt", "stderr")]


def test_reset_before_headers_is_a_bare_close(fake_aws, creds):
    fake_aws.script(Reset(headers=False), times=1)
    with pytest.raises(Exception) as ei:
        direct(fake_aws, creds).converse(**converse_args())
    assert not isinstance(ei.value, ClientError)  # no HTTP response at all

