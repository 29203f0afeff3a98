"""The OpenAI-compatible Chat Completions API on bedrock-runtime
(docs/openai-compatible.md, docs/reference.md §5.1), end to end with the
real ``openai`` SDK pointed at the sidecar:
``OpenAI(base_url=SIDECAR + "/openai/v1", api_key=..., default_headers={"x-tenant-token": jwt})``.

The fake bedrock-runtime (fake_openai.py) verifies every SigV4 signature
with its own signer and records what arrived: the application's API key
and token never reach it, a denied call reaches nothing."""

from __future__ import annotations

import json

import openai
import pytest

import harness

OSS = "openai.gpt-oss-20b-1:0"
OSS_BIG = "openai.gpt-oss-120b-1:0"
PROFILE = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-oss"
IDENTITY_ID = "us-west-2:12345678-abcd-1234-462b-123456789abc"
API_KEY = "bedrock-api-key-ABSK" + "x" * 24
PATTERN = r"(?:us|eu|ap|sa|ca|me|af|il|mx)(?:-gov)?-[a-z]+-\d:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
MESSAGES = [{"role": "developer", "content": "You are terse."}, {"role": "user", "content": "Hello"}]

SIDECAR_OVERRIDES = {
    "redaction": {"patterns": [PATTERN], "replacement": "[redacted]"},
    "tenants": {
        "acme": {
            "models": ["openai.gpt-oss-*"],
            "model_map": {OSS: PROFILE},
            "rate_limit": {"tokens_per_minute": 1000000},
        },
        "globex": {
            "models": ["openai.gpt-oss-120b-*"],
            "guardrail": {"id": "gr-globex", "version": "4"},
        },
    },
}


def client(sc, token, **kw):
    return openai.OpenAI(base_url=sc.url + "/openai/v1", api_key=API_KEY, default_headers={"x-tenant-token": token},
                         max_retries=0, timeout=15, **kw)


@pytest.fixture
def acme(sidecar, mint):
    return client(sidecar, mint("acme", "alice"))


@pytest.fixture
def globex(sidecar, mint):
    return client(sidecar, mint("globex", "bob"))


def upstream_body(rec) -> dict:
    return json.loads(rec.body)


def assert_signed_as_tenant(rec, akid):
    """SigV4 by the tenant's keys with signing name bedrock; the app's API
    key, its Authorization and its token are nowhere in what arrived."""
    assert rec.signature_valid, rec.summary()
    assert (rec.access_key_id, rec.service, rec.region) == (akid, "bedrock", "us-east-1")
    assert rec.path == "/openai/v1/chat/completions"
    auths = [v for k, v in rec.header_list if k.lower() == "authorization"]
    assert len(auths) == 1 and auths[0].startswith("AWS4-HMAC-SHA256 "), auths
    for k, v in rec.header_list:
        assert API_KEY not in v and "Bearer" not in v, (k, v)
        assert k.lower() != "x-tenant-token"


def test_a_chat_completion_is_signed_as_the_tenant_mapped_and_audited(acme, sidecar, fake_aws, creds):
    """docs/reference.md §5.1 (OpenAI Chat Completions, models), §6, §9: the call is signed as the tenant, `model_map` applied, the body otherwise as sent, usage audited."""
    raw = acme.chat.completions.with_raw_response.create(model=OSS, messages=MESSAGES, temperature=0.2)
    completion = raw.parse()
    assert completion.choices[0].message.content == fake_aws.reply_text
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 7
    rec = harness.assert_one_valid_upstream(fake_aws, "ChatCompletions", creds["acme"].akid)
    assert_signed_as_tenant(rec, creds["acme"].akid)
    body = upstream_body(rec)
    # model_map applied; the rest of the body as the client sent it.
    assert body["model"] == PROFILE
    assert body["messages"] == MESSAGES and body["temperature"] == 0.2
    assert "stream_options" not in body
    audit = sidecar.wait_audit(raw.headers["x-tenantgate-request-id"])
    assert audit["operation"] == "ChatCompletions"
    assert audit["decision"] == "allow" and audit["status"] == 200
    assert audit["resource"] == OSS and audit["upstream_resource"] == PROFILE
    assert (audit["input_tokens"], audit["output_tokens"]) == (11, 7)
    assert harness.metric_value(
        sidecar, 'tenantgate_requests_total{tenant="acme",operation="ChatCompletions",decision="allow",status="200"}') >= 1


def test_a_stream_arrives_as_events_and_its_usage_is_charged(acme, sidecar, fake_aws, creds):
    """docs/reference.md §5.1 (token usage): a stream passes as server-sent events; a tenant with a token budget gets the usage chunk, audited."""
    fake_aws.stream_parts = ["Hello", " from", " the", " stream."]
    fake_aws.input_tokens, fake_aws.output_tokens = 23, 5
    with acme.chat.completions.with_streaming_response.create(model=OSS_BIG, messages=MESSAGES, stream=True) as resp:
        request_id = resp.headers["x-tenantgate-request-id"]
        assert resp.headers["content-type"].startswith("text/event-stream")
        chunks = list(resp.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the stream."
    # The tenant has a token budget: the sidecar asked for the usage chunk.
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 23
    rec = harness.assert_one_valid_upstream(fake_aws, "ChatCompletions", creds["acme"].akid)
    assert_signed_as_tenant(rec, creds["acme"].akid)
    body = upstream_body(rec)
    assert body["model"] == OSS_BIG and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    audit = sidecar.wait_audit(request_id)
    assert audit["operation"] == "ChatCompletions" and audit["status"] == 200
    assert (audit["input_tokens"], audit["output_tokens"]) == (23, 5)
    assert harness.metric_value(sidecar, 'tenantgate_tokens_total{tenant="acme",direction="input"}') >= 23


def test_a_model_outside_the_allowlist_is_refused_and_nothing_is_sent(acme, globex, sidecar, fake_aws):
    """docs/reference.md §5.1 (models): the body's model is judged as sent (no case folding); 403 `model_not_allowed`, nothing upstream."""
    for c, model in ((acme, "deepseek.v3-v1:0"), (globex, OSS), (acme, "OPENAI.GPT-OSS-20B-1:0")):
        with pytest.raises(openai.PermissionDeniedError) as err:
            c.chat.completions.create(model=model, messages=MESSAGES)
        assert err.value.status_code == 403
        assert err.value.response.headers["x-tenantgate-reason"] == "model_not_allowed"
        audit = sidecar.wait_audit(err.value.response.headers["x-tenantgate-request-id"])
        assert audit["operation"] == "ChatCompletions" and audit["reason"] == "model_not_allowed"
        assert audit["decision"] == "deny"
    # Streamed calls too.
    with pytest.raises(openai.PermissionDeniedError):
        acme.chat.completions.create(model="deepseek.v3-v1:0", messages=MESSAGES, stream=True)
    harness.assert_nothing_upstream(fake_aws)


def test_the_guardrail_is_bound_and_the_client_cannot_choose_or_narrow_it(globex, sidecar, fake_aws, creds):
    """docs/reference.md §5.1 (OpenAI Chat Completions, guardrail): the tenant's guardrail in signed headers; the client's guardrail headers or input tags are 400, nothing upstream."""
    out = globex.chat.completions.create(model=OSS_BIG, messages=MESSAGES)
    assert out.choices[0].message.content == fake_aws.reply_text
    rec = harness.assert_one_valid_upstream(fake_aws, "ChatCompletions", creds["globex"].akid)
    assert rec.headers["x-amzn-bedrock-guardrailidentifier"] == "gr-globex"
    assert rec.headers["x-amzn-bedrock-guardrailversion"] == "4"
    signed = set(rec.signed_headers)
    assert {"x-amzn-bedrock-guardrailidentifier", "x-amzn-bedrock-guardrailversion"} <= signed
    # No token budget: the client's stream options are left as sent.
    fake_aws.reset()
    chunks = list(globex.chat.completions.create(model=OSS_BIG, messages=MESSAGES, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from fake Bedrock"
    rec = harness.assert_one_valid_upstream(fake_aws, "ChatCompletions")
    assert "stream_options" not in upstream_body(rec)
    assert rec.headers["x-amzn-bedrock-guardrailidentifier"] == "gr-globex"
    fake_aws.reset()
    # Another guardrail in headers, or input tags that narrow what it evaluates: 400, nothing sent.
    with pytest.raises(openai.BadRequestError):
        globex.chat.completions.create(model=OSS_BIG, messages=MESSAGES,
                                       extra_headers={"X-Amzn-Bedrock-GuardrailIdentifier": "gr-other",
                                                      "X-Amzn-Bedrock-GuardrailVersion": "1"})
    with pytest.raises(openai.BadRequestError):
        globex.chat.completions.create(model=OSS_BIG, messages=MESSAGES, extra_headers={"X-Amzn-Bedrock-Trace": "ENABLED"})
    with pytest.raises(openai.BadRequestError) as err:
        globex.chat.completions.create(model=OSS_BIG, messages=MESSAGES,
                                       extra_body={"amazon-bedrock-guardrailConfig": {"tagSuffix": "xyz"}})
    assert "tagSuffix" in err.value.response.json()["message"]
    harness.assert_nothing_upstream(fake_aws)


def test_redaction_of_the_json_answer(acme, fake_aws):
    """docs/reference.md §7: a JSON answer is redacted."""
    fake_aws.reply_text = f"The caller is {IDENTITY_ID}."
    out = acme.chat.completions.create(model=OSS, messages=MESSAGES)
    assert out.choices[0].message.content == "The caller is [redacted]."


def test_redaction_of_an_id_split_across_two_stream_events(acme, sidecar, fake_aws):
    """docs/reference.md §7: a match split across two server-sent events is caught; the events keep their order."""
    a, b = IDENTITY_ID[:14], IDENTITY_ID[14:]
    fake_aws.stream_parts = ["Your id is ", a, b, ", keep it."]
    with acme.chat.completions.with_streaming_response.create(model=OSS, messages=MESSAGES, stream=True) as resp:
        request_id = resp.headers["x-tenantgate-request-id"]
        chunks = list(resp.parse())
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(deltas) == "Your id is [redacted], keep it."
    # The events upstream sent, in order: the replacement where the match
    # began, the rest of the match removed from the event after it.
    assert deltas == ["Your id is ", "[redacted]", ", keep it."]
    assert all(IDENTITY_ID[:8] not in d and IDENTITY_ID[-8:] not in d for d in deltas)
    audit = sidecar.wait_audit(request_id)
    assert audit["redactions"] == 1
    assert audit["input_tokens"] == 11


HOSTILE = [
    (b'{"model":"openai.gpt-oss-20b-1:0","model":"anthropic.claude-3-opus","messages":[]}', "duplicate model"),
    (b'{"model":"openai.gpt-oss-20b-1:0","mod\\u0065l":"x","messages":[]}', "duplicate via unicode escape"),
    (b'{"model":"openai.gpt-oss-20b-1:0","Model":"anthropic.claude-3-opus","messages":[]}', "Model in other case"),
    (b'{"Model":"openai.gpt-oss-20b-1:0","messages":[]}', "only Model"),
    (b'{"model":["openai.gpt-oss-20b-1:0"],"messages":[]}', "model an array"),
    (b'{"model":7,"messages":[]}', "model a number"),
    (b'{"model":null,"messages":[]}', "model null"),
    (b'{"messages":[]}', "no model"),
    (b'{"model":"openai.gpt-oss-20b-1:0","messages":"hi"}', "messages a string"),
    (b'{"model":"openai.gpt-oss-20b-1:0","messages":[],"stream":"yes"}', "stream a string"),
    (b'{"model":"openai.gpt-oss-20b-1:0","messages":[],"Stream":true}', "Stream in other case"),
    (b'[{"model":"openai.gpt-oss-20b-1:0","messages":[]}]', "an array"),
    (b'{"model":"openai.gpt-oss-20b-1:0","messages":[]', "truncated"),
    (b'{"model":"openai.gpt-oss-20b-1:0","messages":[' + b"[" * 100 + b"]" * 100 + b"]}", "deeply nested"),
]


@pytest.mark.parametrize("body,why", HOSTILE, ids=[w for _, w in HOSTILE])
def test_hostile_bodies_are_400_and_nothing_is_sent(sidecar, mint, fake_aws, body, why):
    """docs/reference.md §5.1 (OpenAI Chat Completions): duplicate or case-variant members, wrong types, deep nesting: 400, nothing upstream."""
    resp = sidecar.request("POST", "/openai/v1/chat/completions", body, token=mint("acme", "alice"))
    harness.assert_tenantgate_error(resp, 400, {"invalid_parameter", "invalid_json"})
    audit = sidecar.wait_audit(resp.headers["x-tenantgate-request-id"])
    assert audit["operation"] == "ChatCompletions"
    harness.assert_nothing_upstream(fake_aws)


def test_headers_the_sidecar_manages_cannot_be_dropped_or_smuggled(sidecar, mint, fake_aws, creds):
    """docs/reference.md §5 and §5.1: headers the sidecar manages cannot be named in Connection or sent; the app's Authorization alone is no identity; other OpenAI paths are 404."""
    body = json.dumps({"model": OSS, "messages": MESSAGES}).encode()
    token = mint("acme", "alice")
    for headers in ({"Connection": "authorization"}, {"Connection": "x-tenant-token"},
                    {"x-amz-security-token": "x", "x_amz_target": "y"}, {"Content-Encoding": "gzip"}):
        resp = sidecar.request("POST", "/openai/v1/chat/completions", body, token=token, headers=headers)
        harness.assert_tenantgate_error(resp, 400, "invalid_parameter")
    harness.assert_nothing_upstream(fake_aws)
    # Without a token: 401, nothing sent; with the app's Authorization only: the same.
    resp = sidecar.request("POST", "/openai/v1/chat/completions", body, headers={"Authorization": "Bearer " + API_KEY})
    assert resp.status == 401
    harness.assert_nothing_upstream(fake_aws)
    # Other paths of the OpenAI API are not served.
    for method, path in (("GET", "/openai/v1/models"), ("POST", "/openai/v1/responses"),
                         ("GET", "/openai/v1/chat/completions"), ("POST", "/openai/v1/chat/completions/x")):
        resp = sidecar.request(method, path, body if method == "POST" else b"", token=token)
        harness.assert_tenantgate_error(resp, 404, "unknown_operation")


def test_a_stream_cut_by_upstream_ends_with_an_error_the_sdk_raises(acme, sidecar, fake_aws):
    """docs/reference.md §7 and docs/openai-compatible.md: a stream upstream leaves silent ends with an error event the SDK raises."""
    from fakeaws import Stall  # noqa: PLC0415
    fake_aws.stream_parts = ["one.", " two.", " three."]
    fake_aws.script(Stall(after_events=2, seconds=8), operation="ChatCompletions")
    sc = sidecar
    got = []
    with pytest.raises((openai.APIError, openai.APIConnectionError)):
        for c in acme.chat.completions.create(model=OSS, messages=MESSAGES, stream=True):
            got.append(c)
    assert len(got) <= 2
    audit = sc.wait_audit(predicate=lambda r: r.get("operation") == "ChatCompletions" and r.get("stream_error"),
                          timeout=10)
    assert audit["stream_error"] == "upstream_idle_timeout"


def test_stream_usage_is_charged_to_tokens_per_minute(start_sidecar_fn, mint, fake_aws):
    """Each streamed call reports 18 tokens in its last event; with 30 tokens
    a minute the third call finds the budget spent: 429, nothing sent."""
    sc = start_sidecar_fn({"tenants": {"acme": {"models": ["openai.gpt-oss-*"],
                                                "rate_limit": {"tokens_per_minute": 30}}}})
    c = client(sc, mint("acme", "alice"))
    for _ in range(2):
        chunks = list(c.chat.completions.create(model=OSS, messages=MESSAGES, stream=True))
        assert chunks[-1].usage.total_tokens == 18
    assert len(fake_aws.recorded()) == 2
    fake_aws.reset()
    with pytest.raises(openai.RateLimitError) as err:
        c.chat.completions.create(model=OSS, messages=MESSAGES, stream=True)
    assert err.value.response.headers["x-tenantgate-reason"] == "token_budget_exhausted"
    harness.assert_nothing_upstream(fake_aws)


POLICIES = """
@id("chat-permit")
permit(principal, action == TenantGate::Action::"ChatCompletions", resource)
when { principal.groups.contains("eng") };

@id("chat-no-streaming-for-interns")
forbid(principal, action in TenantGate::Action::"ModelCall", resource)
when { context.streaming && principal.groups.contains("interns") };

@id("chat-token-cap")
forbid(principal, action, resource == TenantGate::Model::"openai.gpt-oss-120b-1:0")
when { !(context has max_tokens && context.max_tokens <= 512) };
"""


def test_cedar_policies_see_the_body_model_stream_and_token_limit(start_sidecar_fn, mint, fake_aws, tmp_path):
    """docs/reference.md §12 and docs/policies.md: a ChatCompletions call is a
    ModelCall on the body's model; `context.streaming` is the body's `stream`,
    `context.max_tokens` its `max_tokens` / `max_completion_tokens`. Denials
    are 403 `policy_denied` with nothing sent."""
    (tmp_path / "chat.cedar").write_text(POLICIES)
    sc = start_sidecar_fn({"identity": {"groups_claim": "groups"},
                           "policy": {"files": [str(tmp_path / "chat.cedar")]},
                           "tenants": {"acme": {"models": ["openai.gpt-oss-*"]}}})
    intern = client(sc, mint("acme", "ivy", groups=["eng", "interns"]))
    eng = client(sc, mint("acme", "erin", groups=["eng"]))
    other = client(sc, mint("acme", "olga", groups=["sales"]))

    def denied(call):
        with pytest.raises(openai.PermissionDeniedError) as err:
            call()
        assert err.value.response.headers["x-tenantgate-reason"] == "policy_denied"
        harness.assert_nothing_upstream(fake_aws)
        return err

    # Not streaming: the intern is permitted; streaming: forbidden.
    assert intern.chat.completions.create(model=OSS, messages=MESSAGES).choices[0].message.content
    assert len(fake_aws.recorded()) == 1
    fake_aws.reset()
    denied(lambda: intern.chat.completions.create(model=OSS, messages=MESSAGES, stream=True))
    denied(lambda: other.chat.completions.create(model=OSS, messages=MESSAGES))
    # The token cap on the large model, in either spelling; both at once is 400.
    denied(lambda: eng.chat.completions.create(model=OSS_BIG, messages=MESSAGES))
    denied(lambda: eng.chat.completions.create(model=OSS_BIG, messages=MESSAGES, max_completion_tokens=4096))
    assert eng.chat.completions.create(model=OSS_BIG, messages=MESSAGES, max_completion_tokens=256).choices
    assert eng.chat.completions.create(model=OSS_BIG, messages=MESSAGES, max_tokens=256).choices
    assert len(fake_aws.recorded()) == 2
    fake_aws.reset()
    with pytest.raises(openai.BadRequestError):
        eng.chat.completions.create(model=OSS_BIG, messages=MESSAGES, max_tokens=256, max_completion_tokens=256)
    harness.assert_nothing_upstream(fake_aws)
