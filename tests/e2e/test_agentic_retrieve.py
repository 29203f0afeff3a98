"""AgenticRetrieveStream (docs/reference.md §5.2, docs/knowledge-bases.md
"Agentic retrieval") through boto3 ``bedrock-agent-runtime``: every
retriever's knowledge base on the allowlist with the forced filter (the fake
AWS evaluates it over a knowledge base pooling two tenants' documents), the
models decided, the tenant's guardrail bound, userContext from the token,
nextToken sealed to (tenant, user), members without an isolation rule
refused, hostile spellings refused, Cedar asked about every knowledge base,
and the answer judged whole: foreign results dropped and counted, an answer
citing one withheld. Every refusal leaves the fake AWS untouched."""

from __future__ import annotations

import json
import re

import pytest

import harness
from fake_agentic import agentic_reply, result_item, seed_doc
from fakeaws import Respond, encode_event_message, event, event_stream
from harness import HAIKU_ARN

KB = "KBPOOLED01"
GLOBEX_KB = "KBGLOBEX99"
RERANK_ARN = "arn:aws:bedrock:us-east-1::foundation-model/amazon.rerank-v1:0"
COHERE_RERANK_ARN = "arn:aws:bedrock:us-east-1::foundation-model/cohere.rerank-v3-5:0"
OPUS_ARN = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-opus-20240229-v1:0"

ACME_DOC = "s3://docs/tenants/acme/refunds.pdf"
PUBLIC_DOC = "s3://docs/public/faq.md"
GLOBEX_DOC = "s3://docs/tenants/globex/refunds.pdf"
LOOKALIKE_DOC = "s3://docs/tenants/acme-evil/steal.pdf"
IDENTITY_ID = "us-west-2:12345678-abcd-1234-462b-123456789abc"

ACME_GUARDRAIL = {"guardrailId": "gracme", "guardrailVersion": "1"}
ACME_CLAUSE = {"equals": {"key": "tenant_id", "value": "acme"}}
VICTIM = {"userId": "ceo@acme.example"}
SEALED = re.compile(r"^(?P<id>.+)\.(?P<tag>[0-9a-f]{32})$")

SIDECAR_OVERRIDES = {
    "identity": {"groups_claim": "cognito:groups"},
    "redaction": {
        "patterns": [
            r"(?:us|eu|ap|sa|ca|me|af|il|mx)(?:-gov)?-[a-z]+-\d:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
        ],
        "replacement": "[redacted]",
    },
    "tenants": {
        "acme": {
            "models": ["anthropic.claude-3-haiku-*", "amazon.rerank-v1:0"],
            "guardrail": {"id": "gracme", "version": "1"},
            "knowledge_base": {
                "allowed": [KB],
                "filter_key": "tenant_id",
                "user_context": "{claims.email}",
                "allowed_source_prefixes": ["s3://docs/tenants/{tenant}/", "s3://docs/public/"],
            },
        },
        # globex: no guardrail, no user_context, no source prefixes (no
        # post-filter), a group filter from the token.
        "globex": {
            "models": ["anthropic.claude-3-haiku-*"],
            "knowledge_base": {
                "allowed": [KB, GLOBEX_KB],
                "filter_key": "tenant_id",
                "extra_filters": [{"in": {"key": "group", "value": "{groups}"}}],
            },
        },
    },
}


def _token(mint, tenant="acme", user="alice", groups=None, **claims):
    if tenant == "acme" and "email" not in claims:
        claims["email"] = f"{user}@acme.example"
    if groups is not None:
        claims["cognito:groups"] = groups
    return mint(tenant, user, **claims)


def _client(sidecar, mint, tenant="acme", user="alice", **claims):
    return harness.make_client(sidecar.url, "bedrock-agent-runtime", token=_token(mint, tenant, user, **claims))


@pytest.fixture
def acme(sidecar, mint):
    return _client(sidecar, mint)


def kb(kb_id=KB, **overrides):
    r = {"configuration": {"knowledgeBase": {"knowledgeBaseId": kb_id}}}
    if overrides:
        r["configuration"]["knowledgeBase"]["retrievalOverrides"] = overrides
    return r


def config(model=HAIKU_ARN, **extra):
    c = {"foundationModelConfiguration": {"type": "BEDROCK_FOUNDATION_MODEL",
                                          "bedrockFoundationModelConfiguration": {"modelConfiguration": {"modelArn": model}}},
         "rerankingModelType": "NONE"}
    c.update(extra)
    return c


def args(retrievers=None, **extra):
    a = {"messages": [{"role": "user", "content": {"text": "How long do refunds take?"}}],
         "retrievers": retrievers if retrievers is not None else [kb()],
         "agenticRetrieveConfiguration": config()}
    a.update(extra)
    return a


def run(client, **kw):
    """Calls the operation and reads the whole stream: (response, events)."""
    out = client.agentic_retrieve_stream(**kw)
    return out, list(out["stream"])


def of(events, kind):
    return [e[kind] for e in events if kind in e]


def filter_of(rec, i=0):
    return rec.json()["retrievers"][i]["configuration"]["knowledgeBase"]["retrievalOverrides"]["filter"]


def dropped_header(out):
    return out["ResponseMetadata"]["HTTPHeaders"].get("x-tenantgate-dropped-results")


# --------------------------------------------------------------------------
# Allowed
# --------------------------------------------------------------------------


def test_routed_with_the_forced_filter_guardrail_and_user_context(acme, sidecar, fake_aws, creds):
    """docs/reference.md §5.2: the client's filter (an `orAll` naming globex) is ANDed after the
    tenant clause, so the pooled knowledge base answers with acme's 2024
    document only; the client's guardrail and userContext are replaced;
    every other member goes as sent."""
    evil = {"orAll": [{"equals": {"key": "tenant_id", "value": "globex"}}, {"equals": {"key": "year", "value": 2024}}]}
    out, events = run(acme, **args(
        [kb(filter=evil, maxNumberOfResults=5)],
        agenticRetrieveConfiguration=config(maxAgentIteration=3),
        policyConfiguration={"bedrockGuardrailConfiguration": {"guardrailId": "grglobex", "guardrailVersion": "9"}},
        userContext=VICTIM, generateResponse=True))
    rec = harness.assert_one_valid_upstream(fake_aws, "AgenticRetrieveStream", creds["acme"].akid)
    sent = rec.json()
    assert filter_of(rec) == {"andAll": [ACME_CLAUSE, evil]}
    assert sent["retrievers"][0]["configuration"]["knowledgeBase"]["retrievalOverrides"]["maxNumberOfResults"] == 5
    assert sent["policyConfiguration"] == {"bedrockGuardrailConfiguration": ACME_GUARDRAIL}
    assert sent["userContext"] == {"userId": "alice@acme.example"}
    assert sent["agenticRetrieveConfiguration"] == config(maxAgentIteration=3)
    assert sent["messages"] == args()["messages"] and sent["generateResponse"] is True
    # What the app reads: traces, text, one result; only acme's document.
    assert [t["attributes"]["step"] for t in of(events, "traceEvent")] == ["Planning", "Retrieval"]
    (result,) = of(events, "result")
    assert [r["metadata"]["x-amz-bedrock-kb-source-uri"] for r in result["results"]] == [ACME_DOC]
    text = "".join(e["text"] for e in of(events, "responseEvent"))
    assert text == result["generatedResponse"]["answer"] and "acme refunds take 5 days" in text
    assert "globex" not in json.dumps(events)
    assert dropped_header(out) == "0"
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["decision"], audit["operation"], audit["resource"], audit["status"], audit["dropped_results"]) == \
        ("allow", "AgenticRetrieveStream", KB, 200, 0)
    metrics = sidecar.admin("/metrics").body.decode()
    assert re.search(r'tenantgate_requests_total\{[^}]*operation="AgenticRetrieveStream"[^}]*\} [1-9]', metrics), metrics


def test_every_retriever_gets_the_filter_and_every_model_is_checked(acme, sidecar, fake_aws):
    """docs/reference.md §5.2: two retrievers, a reranking model on the globs: each retriever gets
    its own forced filter, the models go as sent."""
    rerank = {"type": "BEDROCK_RERANKING_MODEL",
              "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": RERANK_ARN}}}
    year = {"equals": {"key": "year", "value": 2023}}
    out, events = run(acme, **args([kb(), kb(filter=year)],
                                 agenticRetrieveConfiguration=config(rerankingModelType="CUSTOM", rerankingConfiguration=rerank)))
    rec = harness.assert_one_valid_upstream(fake_aws, "AgenticRetrieveStream")
    assert filter_of(rec, 0) == ACME_CLAUSE
    assert filter_of(rec, 1) == {"andAll": [ACME_CLAUSE, year]}
    assert rec.json()["agenticRetrieveConfiguration"]["rerankingConfiguration"] == rerank
    uris = [r["metadata"]["x-amz-bedrock-kb-source-uri"] for r in of(events, "result")[0]["results"]]
    assert uris == [ACME_DOC, "s3://docs/tenants/acme/refunds-2023.pdf", "s3://docs/tenants/acme/refunds-2023.pdf"]
    # The audit names the knowledge base once.
    assert sidecar.wait_audit(harness.request_id_of(out))["resource"] == KB


def test_next_token_is_sealed_to_tenant_and_user(acme, sidecar, mint, fake_aws):
    """docs/reference.md §5.2: the `result` event's nextToken comes back sealed; the same user sends
    it back and Bedrock gets its own token; another user, another tenant,
    the bare token or a token sealed for something else: 403 cross_tenant."""
    _, events = run(acme, **args())
    token = of(events, "result")[0]["nextToken"]
    m = SEALED.match(token)
    assert m and m["id"] in fake_aws.agentic_tokens, token
    fake_aws.requests.clear()
    run(acme, **args(nextToken=token))
    assert harness.assert_one_valid_upstream(fake_aws).json()["nextToken"] == m["id"]
    fake_aws.requests.clear()
    bob = _client(sidecar, mint, user="bob")
    gary = _client(sidecar, mint, tenant="globex", user="alice", groups=["eng"])
    for client, t in [(bob, token), (gary, token), (acme, m["id"]), (acme, m["id"] + "." + "0" * 32),
                      (acme, token.upper())]:
        harness.expect_client_error(client, lambda: run(client, **args(nextToken=t)), 403, "cross_tenant")
    harness.assert_nothing_upstream(fake_aws)


def test_globex_has_its_group_filter_its_guardrail_left_and_no_post_filter(sidecar, mint, fake_aws):
    """docs/reference.md §5.2: A tenant without a guardrail: the client's goes as sent; no
    user_context: none is sent; no source prefixes: nothing dropped."""
    gary = _client(sidecar, mint, tenant="globex", user="gary", groups=["eng"])
    own = {"bedrockGuardrailConfiguration": {"guardrailId": "grglobex", "guardrailVersion": "2"}}
    out, events = run(gary, **args([kb(GLOBEX_KB)], policyConfiguration=own, userContext=VICTIM))
    rec = harness.assert_one_valid_upstream(fake_aws, "AgenticRetrieveStream")
    assert filter_of(rec) == {"andAll": [{"equals": {"key": "tenant_id", "value": "globex"}},
                                         {"in": {"key": "group", "value": ["eng"]}}]}
    assert rec.json()["policyConfiguration"] == own and "userContext" not in rec.json()
    assert dropped_header(out) == "0"
    assert of(events, "result")[0]["results"] == []  # the roadmap has no group


# --------------------------------------------------------------------------
# Refused before anything is sent
# --------------------------------------------------------------------------


@pytest.mark.parametrize("retrievers", [
    [kb(), kb(GLOBEX_KB)],
    [kb(GLOBEX_KB)],
    [kb("kbpooled01")],
    [kb("KBPOOLED0")],
])
def test_a_knowledge_base_off_the_allowlist_is_refused(acme, fake_aws, retrievers):
    """docs/reference.md §5.2: every retriever's knowledge base must be on the allowlist (ids are exact)."""
    harness.expect_client_error(acme, lambda: run(acme, **args(retrievers)), 403, "knowledge_base_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize("kb_id", [
    "arn:aws:bedrock:us-east-1:111122223333:knowledge-base/KBPOOLED01",
    "KBPOOLED01%2F..",
    "KBPOOLED01 ",
])
def test_arns_and_encoded_ids_are_refused(sidecar, mint, fake_aws, kb_id):
    """docs/reference.md §5.2: an ARN, an encoded or padded id is not the listed id."""
    body = json.dumps(args([kb(kb_id)])).encode()
    resp = sidecar.request("POST", "/agenticRetrieveStream", body, token=_token(mint))
    harness.assert_tenantgate_error(resp, 403, "knowledge_base_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize("cfg,reason", [
    (config(OPUS_ARN), "model_not_allowed"),
    (config(foundationModelType="MANAGED"), "model_not_allowed"),
    (config(rerankingModelType="MANAGED"), "model_not_allowed"),
    (config(rerankingModelType="CUSTOM", rerankingConfiguration={
        "type": "BEDROCK_RERANKING_MODEL",
        "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": COHERE_RERANK_ARN}}}), "model_not_allowed"),
    ({"foundationModelConfiguration": {"type": "MANTLE_FOUNDATION_MODEL", "mantleFoundationModelConfiguration": {
        "modelConfiguration": {"modelArn": "openai.gpt-oss-120b-1:0"}}}, "rerankingModelType": "NONE"}, "model_not_allowed"),
    ({"foundationModelConfiguration": {"type": "MANTLE_FOUNDATION_MODEL", "mantleFoundationModelConfiguration": {
        "modelConfiguration": {"modelArn": HAIKU_ARN, "projectId": "proj_globex"}}}, "rerankingModelType": "NONE"},
     "operation_not_allowed"),
    ({"rerankingModelType": "NONE"}, "invalid_parameter"),
    ({"foundationModelConfiguration": config()["foundationModelConfiguration"]}, "invalid_parameter"),
])
def test_models_are_decided(acme, fake_aws, cfg, reason):
    """docs/reference.md §5.2 (models, §5.1): every model named is decided; a model AWS would choose, or none, is refused."""
    status = 400 if reason == "invalid_parameter" else 403
    harness.expect_client_error(acme, lambda: run(acme, **args(agenticRetrieveConfiguration=cfg)), status, reason)
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize("member,value", [
    ("memoryConfiguration", {"memoryId": "globexmemory-0123456789",
                             "sessionBinding": {"actorId": "alice", "sessionId": "s1"}}),
    ("retrievalInstructionConfiguration", {"retrievalInstructionId": "abc123", "version": "1"}),
])
def test_members_without_an_isolation_rule_are_refused(acme, sidecar, fake_aws, member, value):
    """docs/reference.md §5.2: memory and retrieval instructions are account-wide: 403 operation_not_allowed, named in the message and the audit record."""
    err = harness.expect_client_error(acme, lambda: run(acme, **args(**{member: value})), 403, "operation_not_allowed")
    assert member in err.response["Error"]["Message"] and "account-wide" in err.response["Error"]["Message"]
    rec = sidecar.wait_audit(harness.request_id_of(err))
    assert (rec["decision"], rec["operation"], rec["reason"]) == ("deny", "AgenticRetrieveStream", "operation_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_a_token_without_the_user_context_claim_is_refused(sidecar, mint, fake_aws):
    """docs/reference.md §5.2 (access lists): a claim `user_context` needs and the token lacks is 403 missing_claim."""
    bob = harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint("acme", "bob"))
    harness.expect_client_error(bob, lambda: run(bob, **args()), 403, "missing_claim")
    harness.assert_nothing_upstream(fake_aws)


KB_JSON = '{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBPOOLED01"}}}'
REST = ('"messages": [{"role": "user", "content": {"text": "q"}}], "agenticRetrieveConfiguration": '
        + json.dumps(config()))


@pytest.mark.parametrize("raw", [
    '{"retrievers": [' + KB_JSON + '], "Retrievers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBGLOBEX99"}}}], ' + REST + '}',
    '{"retrievers": [' + KB_JSON + '], "retrievers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBGLOBEX99"}}}], ' + REST + '}',
    '{"retrievers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBPOOLED01", "knowledgeBaseId": "KBGLOBEX99"}}}], ' + REST + '}',
    '{"retrievers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBPOOLED01", "KnowledgeBaseId": "KBGLOBEX99"}}}], ' + REST + '}',
    '{"retrievers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBPOOLED01", "retrievalOverrides": {"Filter": {"equals": {"key": "tenant_id", "value": "globex"}}}}}}], ' + REST + '}',
    '{"retrievers": [' + KB_JSON + '], "UserContext": {"userId": "ceo@acme.example"}, ' + REST + '}',
    '{"retrievers": [' + KB_JSON + '], "MemoryConfiguration": {"memoryId": "globexmemory-0123456789"}, ' + REST + '}',
    '{"retrievers": [' + KB_JSON + '], "policyConfiguration": {"BedrockGuardrailConfiguration": {"guardrailId": "x", "guardrailVersion": "1"}}, ' + REST + '}',
    '{"retrievers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBPOOLED01"}, "webSearch": {}}}], ' + REST + '}',
    '{"retrievers": [' + KB_JSON + '], "nextToken": null, ' + REST + '}',
    '{"retrievers": [' + KB_JSON + '], "retr\\u0069evers": [{"configuration": {"knowledgeBase": {"knowledgeBaseId": "KBGLOBEX99"}}}], ' + REST + '}',
])
def test_hostile_spellings_are_refused(sidecar, mint, fake_aws, raw):
    """docs/reference.md §5.2: other case, a duplicate member, an undefined member, null: 400 before anything is sent."""
    resp = sidecar.request("POST", "/agenticRetrieveStream", raw.encode(), token=_token(mint))
    harness.assert_tenantgate_error(resp, 400, "invalid_parameter")
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize("method,path,status,reason", [
    ("POST", "/agenticRetrieveStream?knowledgeBaseId=KBGLOBEX99", 400, "invalid_parameter"),
    ("POST", "/agenticRetrieveStream/KBGLOBEX99", 404, "unknown_operation"),
    ("GET", "/agenticRetrieveStream", 404, "unknown_operation"),
])
def test_other_methods_paths_and_query_strings_fail_closed(sidecar, mint, fake_aws, method, path, status, reason):
    """docs/reference.md §5: a query parameter the model does not define is 400; other methods and paths are 404."""
    resp = sidecar.request(method, path, json.dumps(args()).encode(), token=_token(mint))
    harness.assert_tenantgate_error(resp, status, reason)
    harness.assert_nothing_upstream(fake_aws)


def test_cedar_is_asked_about_every_knowledge_base(start_sidecar, mint, fake_aws):
    """docs/reference.md §5.2: A forbid on the second knowledge base denies the request (403
    policy_denied, nothing sent); the first alone is permitted."""
    policy = ('@id("kb-reader") permit(principal, action, resource);\n'
              '@id("no-globex-archive") forbid(principal, action == TenantGate::Action::"AgenticRetrieveStream", '
              'resource == TenantGate::KnowledgeBase::"KBGLOBEX99");\n')
    sc = start_sidecar({**SIDECAR_OVERRIDES, "policy": {"inline": policy}}, name="agentic-cedar")
    gary = _client(sc, mint, tenant="globex", user="gary", groups=["eng"])
    err = harness.expect_client_error(gary, lambda: run(gary, **args([kb(), kb(GLOBEX_KB)])), 403, "policy_denied")
    assert sc.wait_audit(harness.request_id_of(err))["policies"] == ["kb-reader", "no-globex-archive"]
    harness.assert_nothing_upstream(fake_aws)
    out, _ = run(gary, **args([kb()]))
    assert sc.wait_audit(harness.request_id_of(out))["policies"] == ["kb-reader"]
    harness.assert_one_valid_upstream(fake_aws, "AgenticRetrieveStream")


# --------------------------------------------------------------------------
# The answer
# --------------------------------------------------------------------------


def test_foreign_results_are_dropped_counted_and_citations_follow(acme, sidecar, fake_aws):
    """docs/reference.md §5.2: A misbehaving upstream returns results of another tenant, a
    look-alike prefix and one without a source: dropped from the result and
    the retrieval trace, counted in x-tenantgate-dropped-results and the
    audit; the citation of the kept results points at their new places."""
    own, public = result_item(KB, ACME_DOC, "acme refunds"), result_item(KB, PUBLIC_DOC, "public faq")
    foreign = [result_item(KB, GLOBEX_DOC, "globex secret"), result_item(KB, LOOKALIKE_DOC, "evil lookalike"),
               {"content": {"mimeType": "text/plain", "text": "sourceless secret"}, "sourceRetriever": {"identifier": KB}}]
    results = [foreign[0], own, foreign[1], public, foreign[2]]
    fake_aws.script(agentic_reply(results, cited=[[1, 3]], trace_results=[foreign[0], own]),
                    operation="AgenticRetrieveStream")
    out, events = run(acme, **args())
    (result,) = of(events, "result")
    assert result["results"] == [own, public]
    assert result["generatedResponse"]["citations"][0]["references"] == [{"resultIndex": 0}, {"resultIndex": 1}]
    retrieval = [t for t in of(events, "traceEvent") if t["attributes"]["step"] == "Retrieval"]
    assert retrieval[0]["attributes"]["retrievalResponse"] == [own]
    assert "".join(e["text"] for e in of(events, "responseEvent")) == "Refunds take 5 days"
    for secret in (b"globex secret", b"evil lookalike", b"sourceless secret"):
        assert secret not in acme.tap.body
    assert dropped_header(out) == "4"
    assert sidecar.wait_audit(harness.request_id_of(out))["dropped_results"] == 4


def test_an_answer_citing_a_foreign_result_is_withheld(acme, sidecar, fake_aws, mint):
    """docs/reference.md §5.2: the answer cites a globex document: 502
    unauthorized_source_in_answer and not one event (the text before the
    result included)."""
    results = [result_item(KB, ACME_DOC, "acme refunds"), result_item(KB, GLOBEX_DOC, "globex secret")]
    fake_aws.script(agentic_reply(results, parts=("globex", " secret", " terms"), cited=[[0], [1]]),
                    operation="AgenticRetrieveStream")
    harness.expect_client_error(acme, lambda: run(acme, **args()), 502, "unauthorized_source_in_answer")
    assert b"secret" not in acme.tap.body
    resp = sidecar.request("POST", "/agenticRetrieveStream", json.dumps(args()).encode(), token=_token(mint))
    harness.assert_tenantgate_error(resp, 502, "unauthorized_source_in_answer")
    assert b":event-type" not in resp.body and b"globex" not in resp.body
    assert len(fake_aws.recorded("AgenticRetrieveStream")) == 2


def test_an_event_the_model_does_not_define_is_withheld(acme, fake_aws):
    """docs/reference.md §5.2: A `Result` event (another spelling) carrying a globex result cannot
    be judged: 502 and nothing of the answer."""
    def reply(fake, rec):
        return event_stream([event("responseEvent", {"text": "globex secret"}),
                             event("Result", {"results": [result_item(KB, GLOBEX_DOC, "globex secret")]})])

    fake_aws.script(reply, operation="AgenticRetrieveStream")
    harness.expect_client_error(acme, lambda: run(acme, **args()), 502, "upstream_error")
    assert b"secret" not in acme.tap.body


def test_a_citation_of_no_result_is_withheld(acme, fake_aws):
    """docs/reference.md §5.2: a citation whose resultIndex names no result cannot be judged: withheld."""
    fake_aws.script(agentic_reply([result_item(KB, ACME_DOC, "acme refunds")], cited=[[0, 5]]),
                    operation="AgenticRetrieveStream")
    harness.expect_client_error(acme, lambda: run(acme, **args()), 502, "unauthorized_source_in_answer")


def test_a_truncated_or_corrupt_upstream_stream_is_withheld(acme, fake_aws):
    """docs/reference.md §5.2, §8: a stream that does not decode (cut short, bad CRC) is withheld with 502 upstream_error."""
    whole = encode_event_message([(":event-type", "responseEvent"), (":content-type", "application/json"),
                                  (":message-type", "event")], b'{"text":"partial"}')
    corrupt = bytearray(whole)
    corrupt[-1] ^= 0xFF
    for body in (whole[:-5], bytes(corrupt)):
        fake_aws.reset()
        fake_aws.script(Respond(200, {"Content-Type": "application/vnd.amazon.eventstream"}, body),
                        operation="AgenticRetrieveStream")
        harness.expect_client_error(acme, lambda: run(acme, **args()), 502, "upstream_error")
        assert b"partial" not in acme.tap.body


def test_response_text_is_redacted_across_events(acme, sidecar, fake_aws):
    """docs/reference.md §5.2: an identity id split across two responseEvent texts, with a trace
    between them, is redacted; so is the result's answer."""
    parts = (f"The owner is {IDENTITY_ID[:14]}", f"{IDENTITY_ID[14:]}.")
    fake_aws.script(agentic_reply([result_item(KB, ACME_DOC, "acme refunds")], parts=parts, trace_results=[]),
                    operation="AgenticRetrieveStream")
    out, events = run(acme, **args())
    assert "".join(e["text"] for e in of(events, "responseEvent")) == "The owner is [redacted]."
    assert of(events, "result")[0]["generatedResponse"]["answer"] == "The owner is [redacted]."
    assert IDENTITY_ID.encode() not in acme.tap.body
    assert sidecar.wait_audit(harness.request_id_of(out))["redactions"] == 2


def test_documents_seeded_for_another_tenant_never_reach_acme(acme, fake_aws):
    """docs/reference.md §5.2: A document added to the pooled knowledge base under globex's
    tenant id with acme's year and group: the forced filter keeps it out."""
    seed_doc(fake_aws, KB, "s3://docs/tenants/globex/late.pdf", "globex late addition",
             tenant_id="globex", year=2024, group="eng")
    try:
        _, events = run(acme, **args([kb(filter={"equals": {"key": "year", "value": 2024}})]))
        uris = [r["metadata"]["x-amz-bedrock-kb-source-uri"] for r in of(events, "result")[0]["results"]]
        assert uris == [ACME_DOC]
    finally:
        fake_aws.agentic_docs[KB] = [d for d in fake_aws.agentic_docs[KB] if d["uri"] != "s3://docs/tenants/globex/late.pdf"]
