"""Knowledge bases (docs/reference.md §5.2): Retrieve, RetrieveAndGenerate and
RetrieveAndGenerateStream through the sidecar with boto3
``bedrock-agent-runtime``: the knowledge-base allowlist, the forced metadata
filter (tenant clause, extra filters from claims, client filter ANDed last),
models in the body (§5.1), external-source prefixes, the Retrieve
post-filter (`x-tenantgate-dropped-results`, audit `dropped_results`, §9),
withheld answers citing foreign sources (502, §8) and RetrieveAndGenerate
sessions sealed to (tenant, user)."""

from __future__ import annotations

import json
import re

import pytest

import harness
from fakeaws import event, event_stream, kb_location, kb_reference, kb_result, rag_citation, rag_reply, rag_stream_reply, retrieve_reply
from harness import HAIKU, HAIKU_ARN, NOVA, TITAN_EMBED

KB = "KBPOOLED01"
GLOBEX_KB = "KBGLOBEX99"
NOVA_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{NOVA}"
RERANK_ARN = "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"
COHERE_RERANK_ARN = "arn:aws:bedrock:us-west-2::foundation-model/cohere.rerank-v3-5:0"

ACME_DOC = "s3://docs/tenants/acme/pricing.pdf"
PUBLIC_DOC = "s3://docs/public/faq.md"
GLOBEX_DOC = "s3://docs/tenants/globex/roadmap.pdf"
LOOKALIKE_DOC = "s3://docs/tenants/acme-evil/steal.pdf"
ACME_WIKI = "https://wiki.example.com/acme/runbook"

SIDECAR_OVERRIDES = {
    "identity": {"groups_claim": "cognito:groups"},
    "tenants": {
        "acme": {
            "models": ["anthropic.claude-3-haiku-*", TITAN_EMBED, "amazon.rerank-v1:0"],
            "knowledge_base": {
                "allowed": [KB],
                "filter_key": "tenant_id",
                "allowed_source_prefixes": [
                    "s3://docs/tenants/{tenant}/",
                    "s3://docs/public/",
                    "https://wiki.example.com/{tenant}/",
                ],
            },
        },
        # globex: another filter key, a group filter from the token, and no
        # source prefixes (no post-filter).
        "globex": {
            "knowledge_base": {
                "allowed": [KB, GLOBEX_KB],
                "filter_key": "org",
                "extra_filters": [{"in": {"key": "group", "value": "{groups}"}}],
            },
        },
    },
}

ACME_CLAUSE = {"equals": {"key": "tenant_id", "value": "acme"}}
SEALED = re.compile(r"^(?P<id>.+)\.(?P<tag>[0-9a-f]{32})$")


@pytest.fixture
def acme(sidecar, mint):
    return harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint("acme", "alice"))


def agent_client(sidecar, mint, tenant="acme", user="alice", **claims):
    return harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint(tenant, user, **claims))


def forwarded_filter(rec, path=("retrievalConfiguration",)):
    body = rec.json()
    for k in path:
        body = body[k]
    return body["vectorSearchConfiguration"]["filter"]


def kb_config(kb=KB, model=HAIKU_ARN, **extra):
    return {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {"knowledgeBaseId": kb, "modelArn": model, **extra}}


def dropped_header(out):
    return out["ResponseMetadata"]["HTTPHeaders"].get("x-tenantgate-dropped-results")


# --------------------------------------------------------------------------
# Retrieve: forced filter
# --------------------------------------------------------------------------


def test_retrieve_without_filter_gets_tenant_clause_alone(acme, fake_aws, creds):
    """docs/reference.md §5.2: with no client filter and no extra filters the forwarded
    filter is exactly the tenant `equals` clause (an `andAll` needs two
    members); the rest of the body is kept; signed with acme's keys."""
    acme.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "pricing"})
    rec = harness.assert_one_valid_upstream(fake_aws, "Retrieve", creds["acme"].akid)
    assert rec.path_params["knowledgeBaseId"] == KB
    assert rec.json() == {
        "retrievalQuery": {"text": "pricing"},
        "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": ACME_CLAUSE}},
    }


def test_retrieve_client_filter_narrows(acme, fake_aws):
    """docs/reference.md §5.2: a client `equals` is ANDed after the tenant clause; other
    vectorSearchConfiguration fields pass unchanged."""
    client_filter = {"equals": {"key": "year", "value": 2024}}
    acme.retrieve(
        knowledgeBaseId=KB,
        retrievalQuery={"text": "pricing"},
        retrievalConfiguration={
            "vectorSearchConfiguration": {"numberOfResults": 7, "overrideSearchType": "HYBRID", "filter": client_filter}
        },
    )
    rec = harness.assert_one_valid_upstream(fake_aws, "Retrieve")
    vsc = rec.json()["retrievalConfiguration"]["vectorSearchConfiguration"]
    assert vsc == {
        "numberOfResults": 7,
        "overrideSearchType": "HYBRID",
        "filter": {"andAll": [ACME_CLAUSE, client_filter]},
    }


def test_retrieve_client_or_all_cannot_widen(acme, fake_aws):
    """docs/reference.md §5.2: a client `orAll` naming another tenant stays one member of
    the `andAll` after the tenant clause, so it can narrow but never widen."""
    client_filter = {"orAll": [{"equals": {"key": "tenant_id", "value": "globex"}},
                               {"equals": {"key": "year", "value": 2024}}]}
    acme.retrieve(
        knowledgeBaseId=KB,
        retrievalQuery={"text": "pricing"},
        retrievalConfiguration={"vectorSearchConfiguration": {"filter": client_filter}},
    )
    rec = harness.assert_one_valid_upstream(fake_aws, "Retrieve")
    assert forwarded_filter(rec) == {"andAll": [ACME_CLAUSE, client_filter]}


def test_retrieve_client_and_all_is_flattened(acme, fake_aws):
    """docs/reference.md §5.2: a client `andAll` is flattened into the forced `andAll`,
    after the tenant clause, in the client's order."""
    a = {"equals": {"key": "year", "value": 2024}}
    b = {"startsWith": {"key": "title", "value": "Q3"}}
    c = {"orAll": [{"equals": {"key": "lang", "value": "en"}}, {"equals": {"key": "lang", "value": "de"}}]}
    acme.retrieve(
        knowledgeBaseId=KB,
        retrievalQuery={"text": "pricing"},
        retrievalConfiguration={"vectorSearchConfiguration": {"filter": {"andAll": [a, b, c]}}},
    )
    rec = harness.assert_one_valid_upstream(fake_aws, "Retrieve")
    assert forwarded_filter(rec) == {"andAll": [ACME_CLAUSE, a, b, c]}


def test_retrieve_group_filters_from_claims(sidecar, fake_aws, mint):
    """docs/reference.md §5.2, §3: `extra_filters` rendered from the token
    (`{groups}` = the `groups_claim` list) come right after the tenant clause
    (`filter_key = "org"`), before the client's filter; a token without
    groups gets a filter that matches nothing (never an empty `in`)."""
    org = {"equals": {"key": "org", "value": "globex"}}
    gary = agent_client(sidecar, mint, "globex", "gary", **{"cognito:groups": ["eng", "ops"]})
    gary.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
    rec = harness.assert_one_valid_upstream(fake_aws, "Retrieve")
    groups = {"in": {"key": "group", "value": ["eng", "ops"]}}
    assert forwarded_filter(rec) == {"andAll": [org, groups]}

    fake_aws.reset()
    client_filter = {"equals": {"key": "year", "value": 2024}}
    gary.retrieve(knowledgeBaseId=GLOBEX_KB, retrievalQuery={"text": "q"},
                  retrievalConfiguration={"vectorSearchConfiguration": {"filter": client_filter}})
    rec = harness.assert_one_valid_upstream(fake_aws, "Retrieve")
    assert rec.path_params["knowledgeBaseId"] == GLOBEX_KB
    assert forwarded_filter(rec) == {"andAll": [org, groups, client_filter]}

    fake_aws.reset()
    nogroups = agent_client(sidecar, mint, "globex", "gina")
    nogroups.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
    f = forwarded_filter(harness.assert_one_valid_upstream(fake_aws, "Retrieve"))
    assert f["andAll"][0] == org and len(f["andAll"]) == 2
    # matches nothing: `equals X` and `notEquals X` on the same key
    nothing = f["andAll"][1]
    assert set(nothing) == {"andAll"}, f
    ops = {op: attr for m in nothing["andAll"] for op, attr in m.items()}
    assert set(ops) == {"equals", "notEquals"} and ops["equals"] == ops["notEquals"], f
    assert ops["equals"]["key"] == "group", f


# --------------------------------------------------------------------------
# Retrieve: denials
# --------------------------------------------------------------------------


def test_retrieve_knowledge_base_not_allowed(acme, sidecar, fake_aws):
    """docs/reference.md §5.2, §8, §9: a KB outside `knowledge_base.allowed` -> 403
    knowledge_base_not_allowed, nothing upstream, audited as a deny."""
    e = harness.expect_client_error(
        acme, lambda: acme.retrieve(knowledgeBaseId=GLOBEX_KB, retrievalQuery={"text": "q"}),
        403, "knowledge_base_not_allowed",
    )
    harness.assert_nothing_upstream(fake_aws)
    rec = sidecar.wait_audit(harness.request_id_of(e))
    assert (rec["decision"], rec["reason"], rec["operation"], rec["resource"]) == \
        ("deny", "knowledge_base_not_allowed", "Retrieve", GLOBEX_KB)


def test_retrieve_reranking_model_checked(acme, fake_aws):
    """docs/reference.md §5.1: the reranking model inside
    `vectorSearchConfiguration.rerankingConfiguration` is checked like any
    model: allowed passes (with the filter forced), denied -> 403."""

    def cfg(model):
        return {"vectorSearchConfiguration": {"rerankingConfiguration": {
            "type": "BEDROCK_RERANKING_MODEL",
            "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": model}, "numberOfRerankedResults": 3},
        }}}

    acme.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"}, retrievalConfiguration=cfg(RERANK_ARN))
    rec = harness.assert_one_valid_upstream(fake_aws, "Retrieve")
    vsc = rec.json()["retrievalConfiguration"]["vectorSearchConfiguration"]
    assert vsc["rerankingConfiguration"] == cfg(RERANK_ARN)["vectorSearchConfiguration"]["rerankingConfiguration"]
    assert vsc["filter"] == ACME_CLAUSE
    fake_aws.reset()
    harness.expect_client_error(
        acme,
        lambda: acme.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"},
                              retrievalConfiguration=cfg(COHERE_RERANK_ARN)),
        403, "model_not_allowed",
    )
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize(
    "bad_filter",
    [
        {"equals": {"key": "year", "value": 2024}, "notEquals": {"key": "x", "value": 1}},  # two operators
        {},
        {"orAll": [{"equals": {"key": "tenant_id", "value": "globex"}}]},  # a single member
        {"andAll": {"equals": {"key": "a", "value": 1}}},
        {"equals": {"key": "year"}},
        {"equals": {"key": "", "value": 1}},
        {"equals": {"key": "year", "value": 1, "extra": 2}},
        {"matchesAnything": {"key": "year", "value": 1}},
        "tenant_id = acme",
        [{"equals": {"key": "year", "value": 1}}],
    ],
    ids=["two-operators", "empty", "orAll-one", "andAll-object", "no-value", "empty-key", "extra-member",
         "unknown-op", "string", "list"],
)
def test_retrieve_invalid_filter_shape(sidecar, fake_aws, mint, bad_filter):
    """docs/reference.md §5.2, §8: a client filter that is not a well-formed
    RetrievalFilter -> 400 invalid_parameter, nothing upstream (raw HTTP:
    boto3 would refuse to send most of these)."""
    body = {"retrievalQuery": {"text": "q"},
            "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": bad_filter}}}
    resp = sidecar.request("POST", f"/knowledgebases/{KB}/retrieve", json.dumps(body).encode(), token=mint())
    harness.assert_tenantgate_error(resp, 400, "invalid_parameter")
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize("raw", [b"{", b'{"retrievalQuery": {"text": "q"}', b"[1]", b'"x"', b"\xff\xfe"],
                         ids=["open-brace", "truncated", "array", "string", "not-utf8"])
def test_retrieve_malformed_json(sidecar, fake_aws, mint, raw):
    """docs/reference.md §8: a body that is not a JSON object -> 400 invalid_json,
    nothing upstream."""
    resp = sidecar.request("POST", f"/knowledgebases/{KB}/retrieve", raw, token=mint())
    harness.assert_tenantgate_error(resp, 400, "invalid_json")
    harness.assert_nothing_upstream(fake_aws)


# --------------------------------------------------------------------------
# Retrieve: post-filter
# --------------------------------------------------------------------------


def test_retrieve_foreign_chunks_dropped(acme, sidecar, fake_aws):
    """docs/reference.md §5.2, §9: results outside `allowed_source_prefixes` are dropped;
    the kept ones arrive in order and whole; `x-tenantgate-dropped-results`
    and the audit's `dropped_results` count the dropped ones."""
    own = kb_result(ACME_DOC, "acme pricing", score=0.91, metadata={"tenant_id": "acme", "year": 2024})
    public = kb_result(PUBLIC_DOC, "faq", score=0.52)
    results = [own, kb_result(GLOBEX_DOC, "globex roadmap", score=0.88), public,
               kb_result(LOOKALIKE_DOC, "evil", score=0.4)]
    fake_aws.script(retrieve_reply(results, {"nextToken": "page-2"}), operation="Retrieve")
    out = acme.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "pricing"})
    harness.assert_one_valid_upstream(fake_aws, "Retrieve")
    assert dropped_header(out) == "2"
    assert out["retrievalResults"] == [own, public]
    assert out["nextToken"] == "page-2"
    raw = acme.tap.json()
    assert [r["content"]["text"] for r in raw["retrievalResults"]] == ["acme pricing", "faq"]
    assert b"globex roadmap" not in acme.tap.body and b"evil" not in acme.tap.body
    rec = sidecar.wait_audit(harness.request_id_of(out))
    assert (rec["decision"], rec["operation"], rec["resource"], rec["dropped_results"]) == ("allow", "Retrieve", KB, 2)


def test_retrieve_prefix_lookalikes_dropped(acme, fake_aws):
    """docs/reference.md §5.2: "under a prefix" is by path segment, in canonical form:
    `s3://docs/tenants/acme-evil/...` is not under `s3://docs/tenants/acme/`,
    nor are the prefix itself without a key, another bucket, another case,
    or dot-segment escapes (plain or percent-encoded)."""
    foreign = [
        LOOKALIKE_DOC,
        "s3://docs/tenants/acme",
        "s3://docs/tenants/acmex/a.pdf",
        "s3://docs/tenants/ACME/a.pdf",
        "s3://docs-evil/tenants/acme/a.pdf",
        "s3://DOCS/tenants/acme/a.pdf",
        "s3://docs/tenants/acme/../globex/roadmap.pdf",
        "s3://docs/tenants/acme/%2e%2e/globex/roadmap.pdf",
        "s3://docs/tenants/acme/%252e%252e/globex/roadmap.pdf",
        "s3://docs/tenants/acme%2Fglobex/roadmap.pdf",
        "s3://docs/tenants/globex/acme/a.pdf",
        "https://docs/tenants/acme/a.pdf",
    ]
    own = kb_result("s3://docs/tenants/acme/deep/er/a.pdf", "mine")
    fake_aws.script(retrieve_reply([kb_result(u, f"foreign {i}") for i, u in enumerate(foreign)] + [own]),
                    operation="Retrieve")
    out = acme.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
    assert out["retrievalResults"] == [own], [r["location"] for r in out["retrievalResults"]]
    assert dropped_header(out) == str(len(foreign))


def test_retrieve_other_location_kinds(acme, fake_aws):
    """docs/reference.md §5.2: the other location kinds' URL/URI are checked against the
    prefixes too (web, Confluence, SharePoint, ...); a userinfo or host
    look-alike, a SQL query, an unknown kind, a declared kind without its
    field, or a second foreign location member are foreign."""
    kept = [
        kb_result(ACME_WIKI, kind="WEB"),
        kb_result("HTTPS://Wiki.Example.com/acme/Page?x=1#frag", kind="WEB"),
        kb_result("https://wiki.example.com/acme/space/page", kind="CONFLUENCE"),
        kb_result("https://wiki.example.com/acme/sites/a.docx", kind="SHAREPOINT"),
        kb_result("s3://docs/public/kendra.txt", kind="KENDRA"),
    ]
    dropped = [
        kb_result("https://wiki.example.com/globex/runbook", kind="WEB"),
        kb_result("https://wiki.example.com@evil.example/acme/x", kind="WEB"),
        kb_result("https://wiki.example.com.evil.example/acme/x", kind="WEB"),
        kb_result("https://wiki.example.com/acme/%2e%2e/globex/x", kind="WEB"),
        kb_result("http://wiki.example.com/acme/x", kind="WEB"),
        kb_result("https://globex.my.salesforce.com/x", kind="SALESFORCE"),
        kb_result("SELECT * FROM docs", kind="SQL"),
        kb_result("doc-17", kind="CUSTOM"),
        kb_result("x", location={"type": "FTP", "ftpLocation": {"url": "s3://docs/public/a"}}),
        kb_result("x", location={"type": "S3"}),
        kb_result("x", location={"type": "S3", "s3Location": {"uri": ACME_DOC},
                                 "webLocation": {"url": "https://evil.example/"}}),
        {"content": {"text": "no location"}, "score": 0.1},
    ]
    fake_aws.script(retrieve_reply(dropped[:3] + kept + dropped[3:]), operation="Retrieve")
    out = acme.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
    assert [r["location"] for r in acme.tap.json()["retrievalResults"]] == [r["location"] for r in kept]
    assert dropped_header(out) == str(len(dropped))


def test_retrieve_clean_response_reports_zero(acme, sidecar, fake_aws):
    """docs/reference.md §5.2, §9: every Retrieve response carries
    `x-tenantgate-dropped-results`, `0` when nothing was dropped (and the
    body passes byte for byte); an empty result list too."""
    results = [kb_result(ACME_DOC, "pricing"), kb_result(PUBLIC_DOC, "faq"), kb_result(ACME_WIKI, kind="WEB")]
    fake_aws.script(retrieve_reply(results), operation="Retrieve", times=1)
    out = acme.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
    assert dropped_header(out) == "0"
    assert out["retrievalResults"] == results
    assert acme.tap.body == json.dumps({"retrievalResults": results}, separators=(",", ":")).encode()
    assert sidecar.wait_audit(harness.request_id_of(out))["dropped_results"] == 0
    out = acme.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})  # default: no results
    assert dropped_header(out) == "0" and out["retrievalResults"] == []


def test_retrieve_without_prefixes_has_no_post_filter(sidecar, fake_aws, mint):
    """docs/reference.md §5.2: a tenant without `allowed_source_prefixes` has no
    post-filter: nothing is dropped and the header says 0."""
    results = [kb_result(GLOBEX_DOC), kb_result(ACME_DOC)]
    fake_aws.script(retrieve_reply(results), operation="Retrieve")
    gary = agent_client(sidecar, mint, "globex", "gary", **{"cognito:groups": ["eng"]})
    out = gary.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
    assert out["retrievalResults"] == results and dropped_header(out) == "0"


# --------------------------------------------------------------------------
# RetrieveAndGenerate
# --------------------------------------------------------------------------


def test_rag_knowledge_base_filter_forced(acme, sidecar, fake_aws, creds):
    """docs/reference.md §5.2: RetrieveAndGenerate: the KB id in the body is allowlisted,
    the forced filter lands at
    `knowledgeBaseConfiguration.retrievalConfiguration.vectorSearchConfiguration.filter`
    (client filter ANDed), the rest is kept; audit resource is the KB id."""
    client_filter = {"equals": {"key": "year", "value": 2024}}
    gen = {"promptTemplate": {"textPromptTemplate": "Answer: $search_results$"}}
    out = acme.retrieve_and_generate(
        input={"text": "What is our refund policy?"},
        retrieveAndGenerateConfiguration=kb_config(
            generationConfiguration=gen,
            retrievalConfiguration={"vectorSearchConfiguration": {"numberOfResults": 4, "filter": client_filter}},
        ),
    )
    assert out["output"]["text"] == "Hello from fake Bedrock"
    rec = harness.assert_one_valid_upstream(fake_aws, "RetrieveAndGenerate", creds["acme"].akid)
    assert rec.json() == {
        "input": {"text": "What is our refund policy?"},
        "retrieveAndGenerateConfiguration": {
            "type": "KNOWLEDGE_BASE",
            "knowledgeBaseConfiguration": {
                "knowledgeBaseId": KB,
                "modelArn": HAIKU_ARN,
                "generationConfiguration": gen,
                "retrievalConfiguration": {"vectorSearchConfiguration": {
                    "numberOfResults": 4, "filter": {"andAll": [ACME_CLAUSE, client_filter]}}},
            },
        },
    }
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["operation"], audit["resource"], audit["decision"]) == ("RetrieveAndGenerate", KB, "allow")

    fake_aws.reset()
    acme.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration=kb_config(model=HAIKU))
    f = forwarded_filter(harness.assert_one_valid_upstream(fake_aws, "RetrieveAndGenerate"),
                         ("retrieveAndGenerateConfiguration", "knowledgeBaseConfiguration", "retrievalConfiguration"))
    assert f == ACME_CLAUSE


def test_rag_knowledge_base_not_allowed(acme, fake_aws):
    """docs/reference.md §5.2: the body's knowledgeBaseId outside the allowlist -> 403
    knowledge_base_not_allowed, nothing upstream."""
    harness.expect_client_error(
        acme,
        lambda: acme.retrieve_and_generate(input={"text": "q"},
                                           retrieveAndGenerateConfiguration=kb_config(kb=GLOBEX_KB)),
        403, "knowledge_base_not_allowed",
    )
    harness.expect_client_error(
        acme,
        lambda: acme.retrieve_and_generate_stream(input={"text": "q"},
                                                  retrieveAndGenerateConfiguration=kb_config(kb=GLOBEX_KB)),
        403, "knowledge_base_not_allowed",
    )
    harness.assert_nothing_upstream(fake_aws)


def test_rag_model_not_allowed(acme, fake_aws):
    """docs/reference.md §5.1: the `modelArn` of the knowledge-base configuration (and of
    external sources, and the reranking model) is checked -> 403
    model_not_allowed, nothing upstream."""
    harness.expect_client_error(
        acme,
        lambda: acme.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration=kb_config(model=NOVA_ARN)),
        403, "model_not_allowed",
    )
    harness.expect_client_error(
        acme,
        lambda: acme.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration={
            "type": "EXTERNAL_SOURCES",
            "externalSourcesConfiguration": {"modelArn": NOVA_ARN,
                                             "sources": [{"sourceType": "S3", "s3Location": {"uri": ACME_DOC}}]}}),
        403, "model_not_allowed",
    )
    rerank = {"vectorSearchConfiguration": {"rerankingConfiguration": {
        "type": "BEDROCK_RERANKING_MODEL",
        "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": COHERE_RERANK_ARN}}}}}
    harness.expect_client_error(
        acme,
        lambda: acme.retrieve_and_generate_stream(input={"text": "q"},
                                                  retrieveAndGenerateConfiguration=kb_config(retrievalConfiguration=rerank)),
        403, "model_not_allowed",
    )
    harness.assert_nothing_upstream(fake_aws)


def test_rag_foreign_citation_withheld(acme, sidecar, fake_aws):
    """docs/reference.md §5.2, §8: an answer citing a source outside the prefixes (even
    next to own ones) is withheld whole: 502 unauthorized_source_in_answer,
    no answer text reaches the client; audited as a deny."""
    cites = [rag_citation([ACME_DOC]), rag_citation([PUBLIC_DOC, LOOKALIKE_DOC])]
    fake_aws.script(rag_reply("secret globex numbers", cites), operation="RetrieveAndGenerate")
    e = harness.expect_client_error(
        acme, lambda: acme.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration=kb_config()),
        502, "unauthorized_source_in_answer",
    )
    assert b"secret globex" not in acme.tap.body and b"acme-evil" not in acme.tap.body
    assert len(fake_aws.recorded("RetrieveAndGenerate")) == 1  # the answer was asked for, then withheld
    rec = sidecar.wait_audit(harness.request_id_of(e))
    assert (rec["decision"], rec["reason"], rec["status"]) == ("deny", "unauthorized_source_in_answer", 502)


def test_rag_own_citations_pass(acme, fake_aws):
    """docs/reference.md §5.2: citations only under the tenant's prefixes pass untouched."""
    cites = [rag_citation([ACME_DOC, PUBLIC_DOC]), rag_citation([ACME_WIKI], kind="WEB")]
    fake_aws.script(rag_reply("acme answer", cites, session_id="bedrock-sess-1"), operation="RetrieveAndGenerate")
    out = acme.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration=kb_config())
    assert out["output"]["text"] == "acme answer"
    assert out["citations"] == cites


def test_rag_session_sealed_and_continued(acme, fake_aws):
    """docs/reference.md §5.2: the `sessionId` returned is Bedrock's id + `.` + a MAC; the
    client sends it back and Bedrock gets its own id; the answer's id is
    sealed again (the same string)."""
    fake_aws.script(rag_reply("a1", session_id="3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60"),
                    operation="RetrieveAndGenerate")
    out = acme.retrieve_and_generate(input={"text": "q1"}, retrieveAndGenerateConfiguration=kb_config())
    assert "sessionId" not in harness.assert_one_valid_upstream(fake_aws, "RetrieveAndGenerate").json()
    sealed = out["sessionId"]
    m = SEALED.match(sealed)
    assert m and m["id"] == "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60", sealed
    assert re.fullmatch(r"[0-9a-zA-Z._:-]{2,100}", sealed)

    fake_aws.requests.clear()
    out2 = acme.retrieve_and_generate(input={"text": "q2"}, sessionId=sealed,
                                      retrieveAndGenerateConfiguration=kb_config())
    rec = harness.assert_one_valid_upstream(fake_aws, "RetrieveAndGenerate")
    assert rec.json()["sessionId"] == "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60"
    assert out2["sessionId"] == sealed


def test_rag_session_of_another_user_or_tenant(acme, sidecar, fake_aws, mint):
    """docs/reference.md §5.2: a sealed session id presented by another user of the same
    tenant, or by another tenant, -> 403 cross_tenant, nothing upstream."""
    fake_aws.script(rag_reply("a1", session_id="bedrock-sess-42"), operation="RetrieveAndGenerate")
    sealed = acme.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration=kb_config())["sessionId"]
    fake_aws.reset()
    bob = agent_client(sidecar, mint, "acme", "bob")
    gary = agent_client(sidecar, mint, "globex", "gary", **{"cognito:groups": ["eng"]})
    for client, model in ((bob, HAIKU_ARN), (gary, NOVA_ARN)):
        harness.expect_client_error(
            client,
            lambda: client.retrieve_and_generate(input={"text": "q"}, sessionId=sealed,
                                                 retrieveAndGenerateConfiguration=kb_config(model=model)),
            403, "cross_tenant",
        )
        harness.expect_client_error(
            client,
            lambda: client.retrieve_and_generate_stream(input={"text": "q"}, sessionId=sealed,
                                                        retrieveAndGenerateConfiguration=kb_config(model=model)),
            403, "cross_tenant",
        )
    # a user called "alice" in another tenant is still someone else
    galice = agent_client(sidecar, mint, "globex", "alice", **{"cognito:groups": ["eng"]})
    harness.expect_client_error(
        galice,
        lambda: galice.retrieve_and_generate(input={"text": "q"}, sessionId=sealed,
                                             retrieveAndGenerateConfiguration=kb_config(model=NOVA_ARN)),
        403, "cross_tenant",
    )
    harness.assert_nothing_upstream(fake_aws)


def test_rag_made_up_session_id(acme, fake_aws):
    """docs/reference.md §5.2: a session id tenantgate did not seal for this principal
    (made up, Bedrock's bare id, a forged or re-cased MAC) -> 403
    cross_tenant, nothing upstream."""
    fake_aws.script(rag_reply("a1", session_id="bedrock-sess-7"), operation="RetrieveAndGenerate")
    sealed = acme.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration=kb_config())["sessionId"]
    fake_aws.reset()
    bedrock_id, tag = sealed.rsplit(".", 1)
    flipped = tag[:-1] + ("0" if tag[-1] != "0" else "1")
    for sid in ("my-own-session", bedrock_id, f"{bedrock_id}.{flipped}", f"{bedrock_id}.{tag.upper()}",
                f"other-sess.{tag}", f"{bedrock_id}.{tag}0", f".{tag}", f"{sealed}.{tag}"):
        harness.expect_client_error(
            acme,
            lambda: acme.retrieve_and_generate(input={"text": "q"}, sessionId=sid,
                                               retrieveAndGenerateConfiguration=kb_config()),
            403, "cross_tenant",
        )
    harness.assert_nothing_upstream(fake_aws)


def test_rag_session_valid_on_another_replica(acme, fake_aws, start_sidecar_fn, mint):
    """docs/reference.md §3 `session_key_env`, §5.2: a replica with the same
    `TENANTGATE_SESSION_KEY` accepts the sealed id; one with another key
    refuses it (cross_tenant: fails closed)."""
    fake_aws.script(rag_reply("a1", session_id="bedrock-sess-r"), operation="RetrieveAndGenerate")
    sealed = acme.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration=kb_config())["sessionId"]
    same = start_sidecar_fn(SIDECAR_OVERRIDES, name="replica")
    other = start_sidecar_fn(SIDECAR_OVERRIDES, name="otherkey",
                             env={"TENANTGATE_SESSION_KEY": "another-key-0123456789abcdef0123456789"})
    fake_aws.reset()
    fake_aws.script(rag_reply("a2"), operation="RetrieveAndGenerate")
    c = agent_client(same, mint)
    out = c.retrieve_and_generate(input={"text": "q"}, sessionId=sealed, retrieveAndGenerateConfiguration=kb_config())
    assert harness.assert_one_valid_upstream(fake_aws).json()["sessionId"] == "bedrock-sess-r"
    assert out["sessionId"] == sealed
    fake_aws.requests.clear()
    c = agent_client(other, mint)
    harness.expect_client_error(
        c, lambda: c.retrieve_and_generate(input={"text": "q"}, sessionId=sealed,
                                           retrieveAndGenerateConfiguration=kb_config()),
        403, "cross_tenant",
    )
    harness.assert_nothing_upstream(fake_aws)


def test_rag_external_sources_prefixes(acme, sidecar, fake_aws, mint):
    """docs/reference.md §5.2: `externalSourcesConfiguration` passes when every S3 URI is
    under `allowed_source_prefixes` (forwarded as sent), else 403
    location_not_allowed with nothing upstream; with no prefixes configured
    no S3 source passes."""
    ext = {"modelArn": HAIKU_ARN, "sources": [
        {"sourceType": "S3", "s3Location": {"uri": ACME_DOC}},
        {"sourceType": "S3", "s3Location": {"uri": PUBLIC_DOC}},
        {"sourceType": "BYTE_CONTENT", "byteContent": {"identifier": "note.txt", "contentType": "text/plain",
                                                       "data": b"inline"}},
    ]}
    acme.retrieve_and_generate(input={"text": "q"},
                               retrieveAndGenerateConfiguration={"type": "EXTERNAL_SOURCES",
                                                                 "externalSourcesConfiguration": ext})
    body = harness.assert_one_valid_upstream(fake_aws, "RetrieveAndGenerate").json()
    sent = json.loads(acme.tap.sent[-1][3])
    assert body == sent
    fake_aws.reset()
    for uri in (GLOBEX_DOC, LOOKALIKE_DOC, "s3://docs/tenants/acme/../globex/x", "s3://other/tenants/acme/x"):
        bad = {"modelArn": HAIKU_ARN, "sources": [{"sourceType": "S3", "s3Location": {"uri": ACME_DOC}},
                                                  {"sourceType": "S3", "s3Location": {"uri": uri}}]}
        harness.expect_client_error(
            acme,
            lambda: acme.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration={
                "type": "EXTERNAL_SOURCES", "externalSourcesConfiguration": bad}),
            403, "location_not_allowed",
        )
    # Without prefixes (globex) no S3 source is allowed at all.
    gary = agent_client(sidecar, mint, "globex", "gary")
    harness.expect_client_error(
        gary,
        lambda: gary.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration={
            "type": "EXTERNAL_SOURCES", "externalSourcesConfiguration": {
                "modelArn": NOVA_ARN, "sources": [{"sourceType": "S3", "s3Location": {"uri": GLOBEX_DOC}}]}}),
        403, "location_not_allowed",
    )
    harness.assert_nothing_upstream(fake_aws)


# --------------------------------------------------------------------------
# RetrieveAndGenerateStream
# --------------------------------------------------------------------------


def test_rag_stream_clean(acme, fake_aws):
    """docs/reference.md §5.2: RetrieveAndGenerateStream with own citations: boto3
    iterates every event, the session id header comes back sealed, and the
    sealed id continues the session (Bedrock gets its own id)."""
    fake_aws.script(rag_stream_reply(["Refunds", " take", " 5 days"], [[ACME_DOC], [PUBLIC_DOC, ACME_WIKI]],
                                     session_id="stream-sess-1"),
                    operation="RetrieveAndGenerateStream")
    out = acme.retrieve_and_generate_stream(input={"text": "q"}, retrieveAndGenerateConfiguration=kb_config())
    events = list(out["stream"])
    text = "".join(e["output"]["text"] for e in events if "output" in e)
    cites = [e["citation"] for e in events if "citation" in e]
    assert text == "Refunds take 5 days"
    assert len(cites) == 2 and cites[0]["retrievedReferences"][0]["location"] == kb_location(ACME_DOC)
    rec = harness.assert_one_valid_upstream(fake_aws, "RetrieveAndGenerateStream")
    assert forwarded_filter(rec, ("retrieveAndGenerateConfiguration", "knowledgeBaseConfiguration",
                                  "retrievalConfiguration")) == ACME_CLAUSE
    m = SEALED.match(out["sessionId"])
    assert m and m["id"] == "stream-sess-1", out["sessionId"]

    fake_aws.requests.clear()
    out2 = acme.retrieve_and_generate_stream(input={"text": "q2"}, sessionId=out["sessionId"],
                                             retrieveAndGenerateConfiguration=kb_config())
    events2 = list(out2["stream"])
    # Same answer and citations; redaction (on by default) may carry the last
    # letter of the text ("s", which could begin "sa-east-1:…") in one more
    # `output` event before the citations.
    assert "".join(e["output"]["text"] for e in events2 if "output" in e) == "Refunds take 5 days"
    assert [next(iter(e)) for e in events2][-2:] == ["citation", "citation"]
    assert harness.assert_one_valid_upstream(fake_aws).json()["sessionId"] == "stream-sess-1"
    assert out2["sessionId"] == out["sessionId"]


def test_rag_stream_foreign_citation_withheld(acme, sidecar, fake_aws, mint):
    """docs/reference.md §5.2, §8: a stream with a foreign `citation` event is withheld
    whole: 502 unauthorized_source_in_answer and not one event delivered
    (the output events before the citation included)."""
    fake_aws.script(rag_stream_reply(["globex", " secret"], [[ACME_DOC], [GLOBEX_DOC]]),
                    operation="RetrieveAndGenerateStream")
    harness.expect_client_error(
        acme,
        lambda: acme.retrieve_and_generate_stream(input={"text": "q"}, retrieveAndGenerateConfiguration=kb_config()),
        502, "unauthorized_source_in_answer",
    )
    assert b"secret" not in acme.tap.body
    # The same on the wire: a JSON error, no event-stream bytes at all.
    body = {"input": {"text": "q"}, "retrieveAndGenerateConfiguration": kb_config()}
    resp = sidecar.request("POST", "/retrieveAndGenerateStream", json.dumps(body).encode(), token=mint())
    harness.assert_tenantgate_error(resp, 502, "unauthorized_source_in_answer")
    assert "eventstream" not in resp.headers.get("content-type", "")
    assert b":event-type" not in resp.body and b"globex" not in resp.body
    assert len(fake_aws.recorded("RetrieveAndGenerateStream")) == 2


def test_rag_stream_foreign_reference_in_deprecated_member(acme, fake_aws):
    """docs/reference.md §5.2: a citation event whose current `retrievedReferences` are
    clean but whose deprecated nested `citation.retrievedReferences` cites a
    foreign source is withheld too (502)."""
    clean = {"generatedResponsePart": {"textResponsePart": {"text": "t"}},
             "retrievedReferences": [kb_reference(ACME_DOC)]}
    payload = {**clean, "citation": {**clean, "retrievedReferences": [kb_reference(GLOBEX_DOC)]}}

    def reply(fake, rec):
        return event_stream([event("output", {"text": "hi"}), event("citation", payload)],
                            extra_headers=[("x-amzn-bedrock-knowledge-base-session-id", "s-1")])

    fake_aws.script(reply, operation="RetrieveAndGenerateStream")
    harness.expect_client_error(
        acme,
        lambda: acme.retrieve_and_generate_stream(input={"text": "q"}, retrieveAndGenerateConfiguration=kb_config()),
        502, "unauthorized_source_in_answer",
    )
