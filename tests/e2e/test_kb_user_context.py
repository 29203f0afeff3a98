"""ACL-aware retrieval (docs/knowledge-bases.md "Access lists: userContext"):
`userContext.userId` on Retrieve, RetrieveAndGenerate and
RetrieveAndGenerateStream comes from the verified identity
(`knowledge_base.user_context`), never from the client. The client's
userContext (another user's e-mail, say) is dropped; without the key none is
sent; a claim the template needs and the token lacks is 403 missing_claim with
nothing upstream."""

from __future__ import annotations

import pytest

import harness
from harness import HAIKU_ARN

KB = "KBPOOLED01"

OVERRIDES = {
    "tenants": {
        "acme": {
            "models": ["anthropic.claude-3-haiku-*"],
            "knowledge_base": {"allowed": [KB], "user_context": "{claims.email}"},
        },
        # globex: no user_context key.
        "globex": {"models": ["anthropic.claude-3-haiku-*"], "knowledge_base": {"allowed": [KB]}},
    },
}

VICTIM = {"userId": "ceo@acme.example"}


@pytest.fixture(scope="module")
def sc(start_sidecar):
    return start_sidecar(OVERRIDES, name="user-context")


def _client(sc, mint, tenant="acme", user="alice", **claims):
    return harness.make_client(sc.url, "bedrock-agent-runtime", token=mint(tenant, user, **claims))


def _rag_config():
    return {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {"knowledgeBaseId": KB, "modelArn": HAIKU_ARN}}


def test_user_context_comes_from_the_token(sc, mint, fake_aws, creds):
    alice = _client(sc, mint, email="alice@acme.example")
    alice.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"}, userContext=VICTIM)
    rec = harness.assert_one_valid_upstream(fake_aws, "Retrieve", creds["acme"].akid)
    assert rec.json()["userContext"] == {"userId": "alice@acme.example"}
    fake_aws.reset()
    # Sent or not by the client, the same: set from the token.
    alice.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"})
    assert harness.assert_one_valid_upstream(fake_aws, "Retrieve").json()["userContext"] == {"userId": "alice@acme.example"}
    fake_aws.reset()
    alice.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration=_rag_config(), userContext=VICTIM)
    rec = harness.assert_one_valid_upstream(fake_aws, "RetrieveAndGenerate")
    assert rec.json()["userContext"] == {"userId": "alice@acme.example"}
    fake_aws.reset()
    out = alice.retrieve_and_generate_stream(input={"text": "q"}, retrieveAndGenerateConfiguration=_rag_config(),
                                             userContext=VICTIM)
    for _ in out["stream"]:
        pass
    rec = harness.assert_one_valid_upstream(fake_aws, "RetrieveAndGenerateStream")
    assert rec.json()["userContext"] == {"userId": "alice@acme.example"}


def test_a_token_without_the_claim_is_refused(sc, mint, fake_aws):
    bob = _client(sc, mint, user="bob")
    for call in (
        lambda: bob.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"}, userContext=VICTIM),
        lambda: bob.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration=_rag_config()),
    ):
        harness.expect_client_error(bob, call, 403, "missing_claim", "AccessDeniedException")
    harness.assert_nothing_upstream(fake_aws)


def test_without_the_key_no_user_context_is_sent(sc, mint, fake_aws, creds):
    gary = _client(sc, mint, tenant="globex", user="gary", email="gary@globex.example")
    gary.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"}, userContext=VICTIM)
    rec = harness.assert_one_valid_upstream(fake_aws, "Retrieve", creds["globex"].akid)
    assert "userContext" not in rec.json()
    fake_aws.reset()
    gary.retrieve_and_generate(input={"text": "q"}, retrieveAndGenerateConfiguration=_rag_config(), userContext=VICTIM)
    assert "userContext" not in harness.assert_one_valid_upstream(fake_aws, "RetrieveAndGenerate").json()


@pytest.mark.parametrize("raw", [
    b'{"retrievalQuery": {"text": "q"}, "UserContext": {"userId": "ceo@acme.example"}}',
    b'{"retrievalQuery": {"text": "q"}, "userContext": {"userId": "a@x"}, "userContext": {"userId": "ceo@acme.example"}}',
    b'{"retrievalQuery": {"text": "q"}, "userContext": {"userId": "ceo@acme.example", "groups": ["admins"]}}',
])
def test_hostile_spellings_are_refused(sc, mint, fake_aws, raw):
    """Other case, a duplicate member, an undefined member: 400 before anything is sent."""
    resp = sc.request("POST", f"/knowledgebases/{KB}/retrieve", raw, token=mint("acme", "alice", email="alice@acme.example"))
    assert resp.status == 400, resp
    harness.assert_nothing_upstream(fake_aws)
