"""Rerank (docs/reference.md §5.1): the reranking model named in the body is checked
against the tenant's `models` globs like any other model; the body is not
rewritten."""

from __future__ import annotations

import json

import pytest

import harness
from harness import TITAN_EMBED

RERANK_ID = "amazon.rerank-v1:0"
RERANK_ARN = f"arn:aws:bedrock:us-west-2::foundation-model/{RERANK_ID}"
COHERE_RERANK_ARN = "arn:aws:bedrock:us-west-2::foundation-model/cohere.rerank-v3-5:0"
# Not a foundation-model ARN: the bare-id rule does not apply (docs/reference.md §5.1).
PROFILE_RERANK_ARN = f"arn:aws:bedrock:us-west-2:111122223333:inference-profile/{RERANK_ID}"

SIDECAR_OVERRIDES = {
    "tenants": {
        "acme": {"models": ["anthropic.claude-3-haiku-*", TITAN_EMBED, RERANK_ID]},
    }
}


@pytest.fixture
def acme(sidecar, mint):
    return harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint("acme", "alice"))


def rerank_args(model):
    return {
        "queries": [{"type": "TEXT", "textQuery": {"text": "refund policy"}}],
        "sources": [
            {"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": "refunds: 5 days"}}},
            {"type": "INLINE", "inlineDocumentSource": {"type": "JSON", "jsonDocument": {"title": "shipping"}}},
        ],
        "rerankingConfiguration": {
            "type": "BEDROCK_RERANKING_MODEL",
            "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": model}, "numberOfResults": 2},
        },
    }


def test_rerank_model_allowed(acme, sidecar, fake_aws, creds):
    """docs/reference.md §5.1: an allowed reranking model (a foundation-model ARN whose id
    matches the globs) passes; the body forwarded is the one judged (same
    JSON; re-serialised so duplicate keys cannot smuggle a model), signed
    with the tenant's keys; the answer reaches the client."""
    out = acme.rerank(**rerank_args(RERANK_ARN))
    assert out["results"] == [{"index": 0, "relevanceScore": 0.9}]
    rec = harness.assert_one_valid_upstream(fake_aws, "Rerank", creds["acme"].akid)
    assert rec.json() == json.loads(acme.tap.sent[-1][3])
    assert rec.json()["rerankingConfiguration"]["bedrockRerankingConfiguration"]["modelConfiguration"] == {
        "modelArn": RERANK_ARN}
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["operation"], audit["decision"], audit["status"]) == ("Rerank", "allow", 200)


@pytest.mark.parametrize("model", [COHERE_RERANK_ARN, PROFILE_RERANK_ARN, "cohere.rerank-v3-5:0"])
def test_rerank_model_denied(acme, sidecar, fake_aws, mint, model):
    """docs/reference.md §5.1, §8: a reranking model outside the tenant's globs -> 403
    model_not_allowed, nothing upstream; another tenant is judged by its own
    globs (globex has no rerank model)."""
    e = harness.expect_client_error(acme, lambda: acme.rerank(**rerank_args(model)), 403, "model_not_allowed")
    harness.assert_nothing_upstream(fake_aws)
    rec = sidecar.wait_audit(harness.request_id_of(e))
    assert (rec["decision"], rec["reason"], rec["operation"]) == ("deny", "model_not_allowed", "Rerank")
    globex = harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint("globex", "gary"))
    harness.expect_client_error(globex, lambda: globex.rerank(**rerank_args(RERANK_ARN)), 403, "model_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_rerank_without_model_is_invalid(sidecar, fake_aws, mint):
    """docs/reference.md §8, fail closed: a Rerank body naming no model (or not a string)
    cannot be judged -> 400 invalid_parameter; a broken body -> 400
    invalid_json; nothing upstream."""
    args = rerank_args(RERANK_ARN)
    for cfg in (None, {"type": "BEDROCK_RERANKING_MODEL"},
                {"type": "BEDROCK_RERANKING_MODEL",
                 "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": 7}}}):
        body = dict(args)
        if cfg is None:
            body.pop("rerankingConfiguration")
        else:
            body["rerankingConfiguration"] = cfg
        resp = sidecar.request("POST", "/rerank", json.dumps(body).encode(), token=mint())
        harness.assert_tenantgate_error(resp, 400, "invalid_parameter")
    resp = sidecar.request("POST", "/rerank", b'{"queries": [', token=mint())
    harness.assert_tenantgate_error(resp, 400, "invalid_json")
    harness.assert_nothing_upstream(fake_aws)


def _all_values(raw: bytes, key: str) -> list:
    """Every value of ``key`` anywhere in a JSON text, duplicates included
    (a parser that keeps the first duplicate sees what this one drops)."""
    found = []

    def hook(pairs):
        found.extend(v for k, v in pairs if k == key)
        return dict(pairs)

    json.loads(raw, object_pairs_hook=hook)
    return found


def test_rerank_duplicate_model_keys_cannot_smuggle_a_model(sidecar, fake_aws, mint):
    """docs/reference.md §5.1 "every model in the body is checked", §1 fail closed: a body
    naming a forbidden model and an allowed one under duplicate `modelArn`
    keys must not reach Bedrock with the forbidden one in it (JSON parsers
    disagree on which duplicate wins): refused with 400, or forwarded with
    only the model tenantgate judged."""
    head = json.dumps(rerank_args(RERANK_ARN))[:-1].rsplit('"rerankingConfiguration"', 1)[0]
    body = (head + '"rerankingConfiguration": {"type": "BEDROCK_RERANKING_MODEL", '
            '"bedrockRerankingConfiguration": {"modelConfiguration": '
            f'{{"modelArn": "{COHERE_RERANK_ARN}", "modelArn": "{RERANK_ARN}"}}}}}}}}').encode()
    assert _all_values(body, "modelArn") == [COHERE_RERANK_ARN, RERANK_ARN]
    resp = sidecar.request("POST", "/rerank", body, token=mint())
    if resp.status == 400:
        harness.assert_tenantgate_error(resp, 400, {"invalid_json", "invalid_parameter"})
        harness.assert_nothing_upstream(fake_aws)
        return
    for rec in fake_aws.recorded():
        assert _all_values(rec.body, "modelArn") == [RERANK_ARN], (
            f"forwarded with an unchecked model (status {resp.status}): {rec.body!r}")
