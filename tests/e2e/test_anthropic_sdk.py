"""Anthropic's Messages API through the ``anthropic`` SDK's Bedrock client
(docs/openai-compatible.md, "Anthropic SDK (AnthropicBedrock)";
docs/reference.md §5.1), end to end with the real package pointed at the
sidecar:
``AnthropicBedrock(base_url=SIDECAR, aws_region=..., aws_access_key=..., aws_secret_key=..., default_headers={"x-tenant-token": jwt})``.

The SDK turns ``messages.create`` into InvokeModel
(``POST /model/{model}/invoke``) and a stream into
InvokeModelWithResponseStream (``/invoke-with-response-stream``), signs
them with botocore's SigV4 under the app's placeholder keys, and reads the
stream's ``chunk`` events. The fake bedrock-runtime answers with the
Messages API's shapes (fake_anthropic.py), verifies every signature with
its own signer and records what arrived: the app's keys, signature and
token never reach it, a denied call reaches nothing."""

from __future__ import annotations

import json
from urllib.parse import quote

import anthropic
import pytest

import fake_anthropic
import harness

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
SONNET = "anthropic.claude-3-5-sonnet-20240620-v1:0"
OPUS = "anthropic.claude-3-opus-20240229-v1:0"
PROFILE = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-sonnet"
IDENTITY_ID = "us-west-2:12345678-abcd-1234-462b-123456789abc"
PATTERN = r"(?:us|eu|ap|sa|ca|me|af|il|mx)(?:-gov)?-[a-z]+-\d:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
APP_SECRET = "app-placeholder-secret-" + "s" * 20
APP_SESSION_TOKEN = "app-placeholder-session-token-" + "t" * 30
MESSAGES = [{"role": "user", "content": "Hello"}]

SIDECAR_OVERRIDES = {
    "redaction": {"patterns": [PATTERN], "replacement": "[redacted]"},
    "tenants": {
        "acme": {
            "models": ["anthropic.claude-3-haiku-*", "anthropic.claude-3-5-sonnet-*"],
            "model_map": {SONNET: PROFILE},
            "rate_limit": {"tokens_per_minute": 1000000},
        },
        "globex": {
            "models": ["anthropic.claude-3-haiku-*"],
            "guardrail": {"id": "gr-globex", "version": "4"},
        },
    },
}


def client(sc, token, *, default_headers=None, **kw):
    headers = {"x-tenant-token": token}
    headers.update(default_headers or {})
    kw.setdefault("aws_access_key", harness.CLIENT_AKID)
    kw.setdefault("aws_secret_key", APP_SECRET)
    return anthropic.AnthropicBedrock(base_url=sc.url, aws_region="us-east-1", default_headers=headers,
                                      max_retries=0, timeout=15, **kw)


@pytest.fixture(autouse=True)
def _messages_api(fake_aws):
    fake_anthropic.script(fake_aws)


@pytest.fixture
def acme(sidecar, mint):
    return client(sidecar, mint("acme", "alice"))


@pytest.fixture
def globex(sidecar, mint):
    return client(sidecar, mint("globex", "bob"))


def assert_signed_as_tenant(rec, akid, path):
    """SigV4 by the tenant's keys (signing name bedrock) over the path the
    sidecar chose; the app's key id, signature, session token and tenant
    token are nowhere in what arrived."""
    assert rec.signature_valid, rec.summary()
    assert (rec.access_key_id, rec.service, rec.region) == (akid, "bedrock", "us-east-1")
    assert rec.raw_path == path
    auths = [v for k, v in rec.header_list if k.lower() == "authorization"]
    assert len(auths) == 1 and auths[0].startswith(f"AWS4-HMAC-SHA256 Credential={akid}/"), auths
    for k, v in rec.header_list:
        assert harness.CLIENT_AKID not in v and APP_SESSION_TOKEN not in v, (k, v)
        assert not any(sig in v for sig in harness.CLIENT_SIGNATURES), (k, v)
        assert k.lower() != "x-tenant-token"
    assert harness.CLIENT_AKID.encode() not in rec.body


def app_signature_of(raw) -> str:
    """The SigV4 signature the SDK put on the request it sent."""
    auth = raw.http_request.headers["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={harness.CLIENT_AKID}/"), auth
    return auth.rsplit("Signature=", 1)[1]


def test_create_is_signed_as_the_tenant_and_audited(acme, sidecar, fake_aws, creds):
    """docs/reference.md §5.1 (models, token usage), §6, §9: `messages.create` is InvokeModel, signed as the tenant, the app's signature discarded, the body as sent, usage audited."""
    raw = acme.messages.with_raw_response.create(model=HAIKU, max_tokens=64, messages=MESSAGES, system="Be terse.")
    harness.CLIENT_SIGNATURES.add(app_signature_of(raw))
    message = raw.parse()
    assert message.content[0].text == fake_aws.reply_text
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 7)
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    assert_signed_as_tenant(rec, creds["acme"].akid, f"/model/{quote(HAIKU, safe='')}/invoke")
    body = json.loads(rec.body)
    assert body["messages"] == MESSAGES and body["max_tokens"] == 64 and body["system"] == "Be terse."
    assert isinstance(body["anthropic_version"], str) and "model" not in body
    audit = sidecar.wait_audit(raw.headers["x-tenantgate-request-id"])
    assert audit["operation"] == "InvokeModel" and audit["decision"] == "allow" and audit["status"] == 200
    # Nothing rewrote the model: no upstream_resource (docs/operating.md, "Audit records").
    assert audit["resource"] == HAIKU and "upstream_resource" not in audit
    assert (audit["input_tokens"], audit["output_tokens"]) == (11, 7)


def test_model_map_is_applied_to_the_path(acme, sidecar, fake_aws, creds):
    """docs/model-calls.md (`model_map`): the model the SDK puts in the path is mapped; the answer and the audit say so."""
    raw = acme.messages.with_raw_response.create(model=SONNET, max_tokens=64, messages=MESSAGES)
    assert raw.parse().model == "acme-sonnet"
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    assert_signed_as_tenant(rec, creds["acme"].akid, f"/model/{quote(PROFILE, safe='')}/invoke")
    audit = sidecar.wait_audit(raw.headers["x-tenantgate-request-id"])
    assert audit["resource"] == SONNET and audit["upstream_resource"] == PROFILE


def test_messages_stream_arrives_whole_and_its_usage_is_audited(acme, sidecar, fake_aws, creds):
    """docs/reference.md §5.1 (token usage), §7: `messages.stream` is InvokeModelWithResponseStream; the SDK assembles the events; usage from `amazon-bedrock-invocationMetrics` is audited and counted."""
    fake_aws.stream_parts = ["Hello", " from", " the", " stream."]
    fake_aws.input_tokens, fake_aws.output_tokens = 23, 5
    before = harness.metric_value(sidecar, 'tenantgate_tokens_total{tenant="acme",direction="input"}')
    with acme.messages.stream(model=SONNET, max_tokens=64, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
        request_id = stream.response.headers["x-tenantgate-request-id"]
        assert stream.response.headers["content-type"] == "application/vnd.amazon.eventstream"
    assert text == "Hello from the stream."
    assert final.stop_reason == "end_turn" and final.model == "acme-sonnet"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (23, 5)
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModelWithResponseStream", creds["acme"].akid)
    assert_signed_as_tenant(rec, creds["acme"].akid,
                            f"/model/{quote(PROFILE, safe='')}/invoke-with-response-stream")
    body = json.loads(rec.body)
    assert "stream" not in body and "model" not in body and body["messages"] == MESSAGES
    audit = sidecar.wait_audit(request_id)
    assert audit["operation"] == "InvokeModelWithResponseStream" and audit["status"] == 200
    assert audit["resource"] == SONNET and audit["upstream_resource"] == PROFILE
    assert (audit["input_tokens"], audit["output_tokens"]) == (23, 5)
    after = harness.metric_value(sidecar, 'tenantgate_tokens_total{tenant="acme",direction="input"}')
    assert after - before == 23


def test_create_with_stream_true_yields_every_event(acme, fake_aws):
    """docs/reference.md §7: `stream=True` yields the Messages API's events in order, as upstream sent them."""
    events = list(acme.messages.create(model=HAIKU, max_tokens=64, messages=MESSAGES, stream=True))
    assert [e.type for e in events] == ["message_start", "content_block_start"] + ["content_block_delta"] * 4 + [
        "content_block_stop", "message_delta", "message_stop"]
    assert "".join(e.delta.text for e in events if e.type == "content_block_delta") == "Hello from fake Bedrock"
    harness.assert_one_valid_upstream(fake_aws, "InvokeModelWithResponseStream")


@pytest.mark.parametrize("who,model", [("acme", OPUS), ("globex", SONNET), ("acme", SONNET.upper()),
                                       ("acme", f"{SONNET}:200k"), ("acme", f"us.{SONNET}")])
@pytest.mark.parametrize("streaming", [False, True], ids=["create", "stream"])
def test_a_model_not_allowed_is_403_and_nothing_is_sent(sidecar, mint, fake_aws, who, model, streaming):
    """docs/reference.md §5.1 (models), docs/model-calls.md (`model_map`): a model off the allowlist, in another case, a variant or a profile of a mapped model: 403 `model_not_allowed`, audited, nothing upstream."""
    c = client(sidecar, mint(who, "eve"))
    with pytest.raises(anthropic.PermissionDeniedError) as err:
        if streaming:
            with c.messages.stream(model=model, max_tokens=8, messages=MESSAGES) as s:
                list(s)
        else:
            c.messages.create(model=model, max_tokens=8, messages=MESSAGES)
    assert err.value.status_code == 403
    assert err.value.response.headers["x-tenantgate-reason"] == "model_not_allowed"
    audit = sidecar.wait_audit(err.value.response.headers["x-tenantgate-request-id"])
    assert audit["decision"] == "deny" and audit["reason"] == "model_not_allowed"
    assert audit["operation"] == ("InvokeModelWithResponseStream" if streaming else "InvokeModel")
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize("model", [f"{HAIKU};x", f"{HAIKU}/../../guardrail/g/version/1/apply", "anthropic claude",
                                   "anthropic.claude-3-haiku-%2e%2e"])
def test_model_ids_outside_the_aws_alphabet_are_400(acme, sidecar, fake_aws, model):
    """docs/model-calls.md (Operations): the SDK percent-encodes the model into the path leaving `:` and `;`; an id AWS could not accept is 400 before any allowlist, nothing upstream."""
    with pytest.raises(anthropic.BadRequestError) as err:
        acme.messages.create(model=model, max_tokens=8, messages=MESSAGES)
    assert err.value.response.headers["x-tenantgate-reason"] == "invalid_parameter"
    harness.assert_nothing_upstream(fake_aws)


def test_the_guardrail_is_bound_and_the_sdk_cannot_choose_another(sidecar, mint, fake_aws, creds):
    """docs/model-calls.md (Guardrails): the tenant's guardrail in signed headers for create and streams (stream mode in the body); guardrail headers the app adds with `default_headers` are replaced, never forwarded."""
    rogue = client(sidecar, mint("globex", "bob"), default_headers={
        "X-Amzn-Bedrock-GuardrailIdentifier": "gr-other", "X-Amzn-Bedrock-GuardrailVersion": "1"})
    plain = client(sidecar, mint("globex", "bob"))
    for c, extra in ((plain, None), (rogue, {"amazon-bedrock-guardrailConfig": {"streamProcessingMode": "ASYNCHRONOUS"}})):
        out = c.messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES, extra_body=extra)
        assert out.content[0].text == fake_aws.reply_text
        rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["globex"].akid)
        guard = [(k.lower(), v) for k, v in rec.header_list if k.lower().startswith("x-amzn-bedrock-guardrail")]
        assert sorted(guard) == [("x-amzn-bedrock-guardrailidentifier", "gr-globex"),
                                 ("x-amzn-bedrock-guardrailversion", "4")], guard
        assert {"x-amzn-bedrock-guardrailidentifier", "x-amzn-bedrock-guardrailversion"} <= set(rec.signed_headers)
        fake_aws.reset()
        fake_anthropic.script(fake_aws)
        if extra is None:
            # InvokeModel's body has no stream mode: none is added.
            assert "amazon-bedrock-guardrailConfig" not in json.loads(rec.body)
        else:
            assert json.loads(rec.body)["amazon-bedrock-guardrailConfig"] == {}
        fake_aws.reset()
        fake_anthropic.script(fake_aws)
        with c.messages.stream(model=HAIKU, max_tokens=8, messages=MESSAGES, extra_body=extra) as s:
            assert "".join(s.text_stream) == "Hello from fake Bedrock"
        rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModelWithResponseStream", creds["globex"].akid)
        assert rec.header_values("x-amzn-bedrock-guardrailidentifier") == ["gr-globex"]
        assert rec.header_values("x-amzn-bedrock-guardrailversion") == ["4"]
        body = json.loads(rec.body)
        if extra is None:
            # A synchronous tenant and no member: AWS's default mode, synchronous.
            assert "amazon-bedrock-guardrailConfig" not in body
        else:
            # The app asked for the asynchronous mode: the tenant's replaces it.
            assert body["amazon-bedrock-guardrailConfig"] == {"streamProcessingMode": "SYNCHRONOUS"}
        fake_aws.reset()
        fake_anthropic.script(fake_aws)
    # Input tags narrow what the guardrail evaluates: 400 without allow_guard_content, nothing sent.
    with pytest.raises(anthropic.BadRequestError) as err:
        plain.messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES,
                              extra_body={"amazon-bedrock-guardrailConfig": {"tagSuffix": "xyz"}})
    assert "allow_guard_content" in err.value.response.json()["message"]
    harness.assert_nothing_upstream(fake_aws)


def test_redaction_of_the_json_answer(acme, fake_aws):
    """docs/reference.md §7: a JSON answer is redacted."""
    fake_aws.reply_text = f"The caller is {IDENTITY_ID}."
    out = acme.messages.create(model=HAIKU, max_tokens=64, messages=MESSAGES)
    assert out.content[0].text == "The caller is [redacted]."


def test_redaction_of_an_id_split_across_two_content_block_deltas(acme, sidecar, fake_aws):
    """docs/reference.md §7: a match split across two `content_block_delta` events is caught; the events keep their order and their count."""
    a, b = IDENTITY_ID[:14], IDENTITY_ID[14:]
    fake_aws.stream_parts = ["Your id is ", a, b, ", keep it."]
    with acme.messages.with_streaming_response.create(model=HAIKU, max_tokens=64, messages=MESSAGES,
                                                      stream=True) as resp:
        request_id = resp.headers["x-tenantgate-request-id"]
        events = list(resp.parse())
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    # The replacement in the event where the match began, the rest of the
    # match removed from the event after it.
    assert deltas == ["Your id is ", "[redacted]", "", ", keep it."]
    assert all(IDENTITY_ID[:8] not in d and IDENTITY_ID[-8:] not in d for d in deltas)
    assert events[-1].type == "message_stop"
    audit = sidecar.wait_audit(request_id)
    assert audit["redactions"] == 1 and audit["input_tokens"] == 11


def test_the_apps_keys_and_session_token_never_reach_aws(sidecar, mint, fake_aws, creds):
    """docs/reference.md §6: the app's placeholder keys, session token and signature are discarded; the fake (which refuses the app's key id) sees only the tenant's."""
    c = client(sidecar, mint("acme", "alice"), aws_session_token=APP_SESSION_TOKEN)
    raw = c.messages.with_raw_response.create(model=HAIKU, max_tokens=8, messages=MESSAGES)
    assert raw.http_request.headers["x-amz-security-token"] == APP_SESSION_TOKEN
    harness.CLIENT_SIGNATURES.add(app_signature_of(raw))
    assert raw.parse().content[0].text == fake_aws.reply_text
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    assert_signed_as_tenant(rec, creds["acme"].akid, f"/model/{quote(HAIKU, safe='')}/invoke")
    assert "x-amz-security-token" not in {k.lower() for k, _ in rec.header_list}


def test_a_bedrock_api_key_is_no_identity_and_is_never_forwarded(sidecar, mint, fake_aws, creds):
    """docs/reference.md §4, §6: with `api_key` the SDK sends `Authorization: Bearer`; the sidecar still needs the token, drops the Bearer and signs as the tenant."""
    key = "ABSKQmVkcm9ja0FQSUtleS1" + "k" * 40
    c = anthropic.AnthropicBedrock(base_url=sidecar.url, aws_region="us-east-1", api_key=key, max_retries=0,
                                   timeout=15, default_headers={"x-tenant-token": mint("acme", "alice")})
    assert c.messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES).content[0].text == fake_aws.reply_text
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    assert_signed_as_tenant(rec, creds["acme"].akid, f"/model/{quote(HAIKU, safe='')}/invoke")
    assert all(key not in v and "Bearer" not in v for _, v in rec.header_list)
    fake_aws.reset()
    no_token = anthropic.AnthropicBedrock(base_url=sidecar.url, aws_region="us-east-1", api_key=key,
                                          max_retries=0, timeout=15)
    with pytest.raises(anthropic.AuthenticationError) as err:
        no_token.messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES)
    assert err.value.response.headers["x-tenantgate-reason"] == "missing_token"
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize("headers", [{"Connection": "x-tenant-token"}, {"Connection": "keep-alive, X-Tenant-Token"},
                                     {"Connection": "authorization"}, {"Connection": "x-amz-date"}],
                         ids=["token", "token-in-list", "authorization", "x-amz-date"])
def test_connection_may_not_name_a_header_the_sidecar_manages(sidecar, mint, fake_aws, headers):
    """docs/reference.md §5 (validate): a `Connection` header from `default_headers` naming the token or a signing header is 400, nothing upstream."""
    c = client(sidecar, mint("acme", "alice"), default_headers=headers)
    for call in (lambda: c.messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES),
                 lambda: list(c.messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES, stream=True))):
        with pytest.raises(anthropic.BadRequestError) as err:
            call()
        assert err.value.response.headers["x-tenantgate-reason"] == "invalid_parameter"
    harness.assert_nothing_upstream(fake_aws)


def test_the_sdks_own_headers_are_not_forwarded_as_aws_headers(acme, fake_aws, creds):
    """docs/reference.md §5: `anthropic-beta` and the SDK's `x-stainless-*` headers are not AWS parameters; they stay at the sidecar; the betas travel in the body, where the SDK also puts them."""
    out = acme.messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES,
                               extra_headers={"anthropic-beta": "token-efficient-tools-2025-02-19"})
    assert out.content[0].text == fake_aws.reply_text
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    assert json.loads(rec.body)["anthropic_beta"] == ["token-efficient-tools-2025-02-19"]
    names = {k.lower() for k, _ in rec.header_list}
    assert not any(n.startswith(("x-stainless-", "anthropic-")) for n in names), names
    assert rec.headers["accept"] == "application/json" and rec.headers["content-type"] == "application/json"


def _deep(n: int):
    v: list = []
    for _ in range(n):
        v = [v]
    return v


@pytest.mark.parametrize("streaming", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("extra,why", [
    ({"pad": _deep(200)}, "nested deeper than the parser reads"),
    ({"Amazon-Bedrock-GuardrailConfig": {"tagSuffix": "xyz"}}, "member in another case"),
    ({"amazon-bedrock-guardrailConfig": {"tagSuffix": "xyz", "streamProcessingMode": "ASYNCHRONOUS"}}, "with a mode"),
], ids=["deep", "case", "mode"])
def test_input_tags_cannot_hide_in_a_body_the_sidecar_would_not_read(sidecar, mint, fake_aws, extra, why, streaming):
    """docs/model-calls.md (Guardrails): a guardrail tenant's input tags are refused however the body hides them; a body too deep for the sidecar to read is refused rather than forwarded unjudged. 400, nothing upstream."""
    c = client(sidecar, mint("globex", "bob"))
    body = {"amazon-bedrock-guardrailConfig": {"tagSuffix": "xyz"}}
    body.update(extra)
    with pytest.raises(anthropic.BadRequestError) as err:
        if streaming:
            with c.messages.stream(model=HAIKU, max_tokens=8, messages=MESSAGES, extra_body=body) as s:
                list(s)
        else:
            c.messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES, extra_body=body)
    assert err.value.response.headers["x-tenantgate-reason"] == "invalid_parameter", why
    harness.assert_nothing_upstream(fake_aws)


def test_a_lone_surrogate_escape_cannot_smuggle_input_tags(sidecar, mint, fake_aws):
    """docs/model-calls.md (Guardrails): `\\ud800` is JSON other readers accept; a body the sidecar cannot read that may carry the guardrail member is 400, nothing upstream. A body that is no JSON object goes as sent."""
    token = mint("globex", "bob")
    body = (b'{"anthropic_version":"bedrock-2023-05-31","max_tokens":8,"messages":[{"role":"user","content":"\\ud800"}],'
            b'"amazon-bedrock-guardrailConfig":{"tagSuffix":"xyz"}}')
    for path in (f"/model/{HAIKU}/invoke", f"/model/{HAIKU}/invoke-with-response-stream"):
        resp = sidecar.request("POST", path, body, token=token)
        harness.assert_tenantgate_error(resp, 400, "invalid_parameter")
    harness.assert_nothing_upstream(fake_aws)
    fake_aws.reset()
    resp = sidecar.request("POST", f"/model/{HAIKU}/invoke", b"\\u0041 not json", token=token)
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel")
    assert rec.body == b"\\u0041 not json"
    assert rec.header_values("x-amzn-bedrock-guardrailidentifier") == ["gr-globex"]


def test_a_stream_upstream_leaves_silent_ends_with_an_error_the_sdk_raises(acme, sidecar, fake_aws):
    """docs/reference.md §3 `stream_idle_timeout_secs`, §7: upstream silent mid-stream; the SDK raises while iterating, within about the idle timeout, never a hang; the audit record says why."""
    import time  # noqa: PLC0415

    from fakeaws import Stall  # noqa: PLC0415
    fake_aws.reset()  # the fake's own stream, stalled after two events
    fake_aws.script(Stall(after_events=2, seconds=30), operation="InvokeModelWithResponseStream")
    got = []
    t0 = time.monotonic()
    with pytest.raises((anthropic.APIError, anthropic.APIConnectionError)):
        for event in acme.messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES, stream=True):
            got.append(event)
    assert time.monotonic() - t0 < 12
    assert [e.type for e in got] == ["message_start", "content_block_delta"]
    audit = sidecar.wait_audit(predicate=lambda r: r.get("operation") == "InvokeModelWithResponseStream"
                               and r.get("stream_error"), timeout=10)
    assert audit["stream_error"] == "upstream_idle_timeout"


def test_beta_messages_are_served_and_the_managed_agents_apis_are_not(acme, fake_aws, creds):
    """docs/reference.md §5: `client.beta.messages` is InvokeModel like `client.messages`, its betas in the body; the SDK's managed-agents APIs (AWS serves them on another endpoint) have no route: 404 `unknown_operation`, nothing upstream."""
    out = acme.beta.messages.create(model=HAIKU, max_tokens=8, messages=MESSAGES,
                                    betas=["interleaved-thinking-2025-05-14"])
    assert out.content[0].text == fake_aws.reply_text
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    assert json.loads(rec.body)["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    fake_aws.reset()
    with pytest.raises(anthropic.NotFoundError) as err:
        acme.beta.agents.list()
    assert err.value.response.headers["x-tenantgate-reason"] == "unknown_operation"
    harness.assert_nothing_upstream(fake_aws)


TOKEN_CAP = """
@id("model-calls")
permit(principal, action in TenantGate::Action::"ModelCall", resource);

@id("token-cap")
forbid(principal, action in TenantGate::Action::"ModelCall", resource)
when { context has max_tokens && context.max_tokens > 1024 };
"""


def test_cedar_policies_see_the_sdks_max_tokens_and_a_body_they_cannot_read_is_refused(start_sidecar_fn, mint,
                                                                                       fake_aws, tmp_path):
    """docs/reference.md §12, docs/policies.md: `context.max_tokens` is the Messages body's `max_tokens`, for create and streams; a body that opens a JSON object the sidecar cannot read (byte order mark, trailing text, which other readers accept) is 400, never judged as stating no limit. Nothing upstream on any refusal."""
    (tmp_path / "cap.cedar").write_text(TOKEN_CAP)
    sc = start_sidecar_fn({"policy": {"files": [str(tmp_path / "cap.cedar")]},
                           "tenants": {"acme": {"models": ["anthropic.claude-3-haiku-*"]}}})
    fake_anthropic.script(fake_aws)
    c = client(sc, mint("acme", "alice"))
    assert c.messages.create(model=HAIKU, max_tokens=1024, messages=MESSAGES).content[0].text
    with c.messages.stream(model=HAIKU, max_tokens=512, messages=MESSAGES) as s:
        assert "".join(s.text_stream) == "Hello from fake Bedrock"
    assert len(fake_aws.recorded()) == 2
    fake_aws.reset()
    for call in (lambda: c.messages.create(model=HAIKU, max_tokens=100000, messages=MESSAGES),
                 lambda: list(c.messages.create(model=HAIKU, max_tokens=100000, messages=MESSAGES, stream=True))):
        with pytest.raises(anthropic.PermissionDeniedError) as err:
            call()
        assert err.value.response.headers["x-tenantgate-reason"] == "policy_denied"
    token = mint("acme", "alice")
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 100000, "messages": MESSAGES}).encode()
    for raw in (b"\xef\xbb\xbf" + body, body + b" trailing", body + b"{}"):
        for path in (f"/model/{HAIKU}/invoke", f"/model/{HAIKU}/invoke-with-response-stream"):
            resp = sc.request("POST", path, raw, token=token)
            harness.assert_tenantgate_error(resp, 400, "invalid_parameter")
    harness.assert_nothing_upstream(fake_aws)
