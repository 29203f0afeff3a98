"""Agent memory (docs/reference.md §5.3): GetAgentMemory and DeleteAgentMemory
through the sidecar with boto3 ``bedrock-agent-runtime``. The fake AWS keeps
memory account-wide, as AWS does, and answers whatever memoryId is asked
for (every user's when none is): these tests show that the sidecar's
namespacing, not the fake, keeps users and tenants apart."""

from __future__ import annotations

import pytest

import harness

AGENT, ALIAS = "AGENT12345", "ALIAS6789"
IDENTITY_ID = "us-west-2:12345678-abcd-1234-462b-123456789abc"
PATH = f"/agents/{AGENT}/agentAliases/{ALIAS}/memories"

SIDECAR_OVERRIDES = {
    "tenants": {
        "acme": {"agents": {"allowed": [f"{AGENT}/{ALIAS}"]}},
        "globex": {"agents": {"allowed": [f"{AGENT}/*"]}},
    }
}


def client(sc, mint, tenant="acme", user="alice"):
    return harness.make_client(sc.url, "bedrock-agent-runtime", token=mint(tenant, user))


@pytest.fixture
def alice(sidecar, mint):
    return client(sidecar, mint)


def get_memory(c, memory_id="my-memory", agent=AGENT, alias=ALIAS, **kw):
    return c.get_agent_memory(agentId=agent, agentAliasId=alias, memoryId=memory_id, memoryType="SESSION_SUMMARY", **kw)


def upstream_memory_id(fake, op="GetAgentMemory"):
    reqs = fake.recorded(op)
    assert len(reqs) == 1 and reqs[0].signature_valid, fake.describe()
    q = fake._memory_query(reqs[0])
    return q["memoryId"], reqs[0]


def seed_via_sidecar(fake, c, memory_id, text, session="tg-fake-session"):
    """Stores a summary under the upstream id the sidecar sends for this
    user's ``memory_id`` (learnt from one GetAgentMemory)."""
    fake.reset()
    get_memory(c, memory_id)
    up, _ = upstream_memory_id(fake)
    fake.reset()
    fake.add_agent_memory(AGENT, ALIAS, up, session, text)
    return up


def test_alice_reads_her_memory_under_her_own_id(alice, sidecar, fake_aws, creds):
    """docs/reference.md §5.3: memoryId goes upstream namespaced (tgm-...), the
    other parameters kept, signed with the tenant's keys; the answer gives
    alice her own memoryId back; audit names the operation and alias."""
    up = seed_via_sidecar(fake_aws, alice, "my-memory", "alice asked about order 7")
    assert up.startswith("tgm-") and up != "my-memory"
    out = get_memory(alice, "my-memory", maxItems=5)
    got, rec = upstream_memory_id(fake_aws)
    assert got == up and rec.access_key_id == creds["acme"].akid
    q = fake_aws._memory_query(rec)
    assert (q["memoryType"], q["maxItems"]) == ("SESSION_SUMMARY", "5")
    summaries = [m["sessionSummary"] for m in out["memoryContents"]]
    assert [(s["memoryId"], s["summaryText"]) for s in summaries] == [("my-memory", "alice asked about order 7")]
    # Session ids stay the upstream ones (one-way MACs).
    assert summaries[0]["sessionId"] == "tg-fake-session"
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["operation"], audit["resource"], audit["decision"]) == ("GetAgentMemory", f"{AGENT}/{ALIAS}", "allow")


def test_same_memory_id_of_another_user_or_tenant_is_another_memory(alice, sidecar, mint, fake_aws):
    """The same client memoryId from bob (same tenant) and from a globex user
    reaches a different upstream id, and never alice's summaries."""
    alice_up = seed_via_sidecar(fake_aws, alice, "shared-name", "alice's private summary")
    for tenant, user in (("acme", "bob"), ("globex", "alice")):
        fake_aws.reset()
        fake_aws.add_agent_memory(AGENT, ALIAS, alice_up, "tg-s", "alice's private summary")
        other = client(sidecar, mint, tenant, user)
        out = get_memory(other, "shared-name")
        got, _ = upstream_memory_id(fake_aws)
        assert got.startswith("tgm-") and got != alice_up, (tenant, user)
        assert out["memoryContents"] == [], (tenant, user)
        # Naming alice's upstream id directly is namespaced again.
        fake_aws.reset()
        fake_aws.add_agent_memory(AGENT, ALIAS, alice_up, "tg-s", "alice's private summary")
        out = get_memory(other, alice_up)
        got, _ = upstream_memory_id(fake_aws)
        assert got != alice_up and out["memoryContents"] == []


def test_foreign_summary_in_the_answer_is_dropped(alice, sidecar, fake_aws):
    """Defence in depth: an upstream answer that holds another memory's
    summary (or an entry of an unknown kind) loses it; the drop is counted in
    x-tenantgate-dropped-results and the audit record."""
    up = seed_via_sidecar(fake_aws, alice, "mine", "own summary")
    fake_aws.agent_memory_extra = [
        {"sessionSummary": {"memoryId": "tgm-someone-else", "sessionId": "tg-x", "summaryText": "bob's secret"}},
        {"sessionSummary": {"sessionId": "tg-y", "summaryText": "no memory id"}},
    ]
    out = get_memory(alice, "mine")
    texts = [m["sessionSummary"]["summaryText"] for m in out["memoryContents"]]
    assert texts == ["own summary"]
    assert out["memoryContents"][0]["sessionSummary"]["memoryId"] == "mine"
    assert "bob's secret" not in alice.tap.body.decode()
    assert up not in alice.tap.body.decode()
    assert out["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-dropped-results"] == "2"
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert audit["dropped_results"] == 2


def test_summary_text_is_redacted(alice, sidecar, fake_aws):
    """docs/reference.md §7: summaryText is model text, redacted like any JSON answer."""
    seed_via_sidecar(fake_aws, alice, "mine", f"user {IDENTITY_ID} asked twice")
    out = get_memory(alice, "mine")
    assert out["memoryContents"][0]["sessionSummary"]["summaryText"] == "user [redacted] asked twice"


@pytest.mark.parametrize("agent,alias", [(AGENT, "TSTALIASID"), ("AGENTXXXXX", ALIAS)])
def test_alias_not_allowed(alice, sidecar, fake_aws, agent, alias):
    """The alias decision InvokeAgent uses: 403 agent_not_allowed, nothing upstream."""
    for call in (
        lambda: get_memory(alice, "mine", agent=agent, alias=alias),
        lambda: alice.delete_agent_memory(agentId=agent, agentAliasId=alias, memoryId="mine"),
    ):
        e = harness.expect_client_error(alice, call, 403, "agent_not_allowed")
        harness.assert_nothing_upstream(fake_aws)
        rec = sidecar.wait_audit(harness.request_id_of(e))
        assert (rec["decision"], rec["reason"], rec["resource"]) == ("deny", "agent_not_allowed", f"{agent}/{alias}")


def test_delete_namespaces_memory_and_session(alice, sidecar, fake_aws):
    """DeleteAgentMemory: 202 empty; memoryId and sessionId namespaced as
    InvokeAgent's; bob's memory of the same name is untouched."""
    alice_up = seed_via_sidecar(fake_aws, alice, "doomed", "alice")
    fake_aws.add_agent_memory(AGENT, ALIAS, "tgm-bob-memory", "tg-b", "bob")
    out = alice.delete_agent_memory(agentId=AGENT, agentAliasId=ALIAS, memoryId="doomed", sessionId="chat-42")
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 202
    up, rec = upstream_memory_id(fake_aws, "DeleteAgentMemory")
    assert up == alice_up
    sid = fake_aws._memory_query(rec)["sessionId"]
    assert sid.startswith("tg-") and sid != "chat-42"
    fake_aws.reset()
    fake_aws.add_agent_memory(AGENT, ALIAS, "tgm-bob-memory", "tg-b", "bob")
    fake_aws.add_agent_memory(AGENT, ALIAS, alice_up, "tg-a", "alice")
    alice.delete_agent_memory(agentId=AGENT, agentAliasId=ALIAS, memoryId="doomed")
    assert [s["summaryText"] for _, _, s in fake_aws.agent_memory] == ["bob"]
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["operation"], audit["decision"]) == ("DeleteAgentMemory", "allow")


def test_memory_id_absent_is_400_for_both(sidecar, mint, fake_aws):
    """Without memoryId AWS would read or delete every user's memory: 400,
    nothing upstream (boto3 with its own validation off, and raw HTTP)."""
    loose = harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint("acme", "alice"))
    # boto3 refuses a GetAgentMemory without memoryId itself; with its
    # parameter validation unwrapped it sends what an app without it would.
    loose._serializer = getattr(loose._serializer, "_serializer", loose._serializer)
    fake_aws.add_agent_memory(AGENT, ALIAS, "tgm-x", "tg-x", "someone's")
    for call in (
        lambda: loose.delete_agent_memory(agentId=AGENT, agentAliasId=ALIAS),
        lambda: loose.get_agent_memory(agentId=AGENT, agentAliasId=ALIAS, memoryType="SESSION_SUMMARY"),
    ):
        e = harness.expect_client_error(loose, call, 400, "invalid_parameter")
        assert "memoryId" in e.response["Error"]["Message"]
        harness.assert_nothing_upstream(fake_aws)
    token = mint("acme", "alice")
    for method, q in (("GET", "?memoryType=SESSION_SUMMARY"), ("GET", ""), ("DELETE", ""), ("DELETE", "?sessionId=chat-42")):
        r = sidecar.request(method, PATH + q, token=token)
        harness.assert_tenantgate_error(r, 400, "invalid_parameter")
        harness.assert_nothing_upstream(fake_aws)
    assert len(fake_aws.agent_memory) == 1


@pytest.mark.parametrize(
    "query",
    [
        "memoryId=mine&memoryId=other&memoryType=SESSION_SUMMARY",
        "memoryId=mine&memoryType=SESSION_SUMMARY&tenant=globex",
        "memoryId=mine&MemoryId=other&memoryType=SESSION_SUMMARY",
        "memoryId=a%2Fb&memoryType=SESSION_SUMMARY",
        "memoryId=a+b&memoryType=SESSION_SUMMARY",
        "memoryId=x&memoryType=SESSION_SUMMARY",
        "memoryId=&memoryType=SESSION_SUMMARY",
        "memoryId=tgm-%00&memoryType=SESSION_SUMMARY",
        "memoryId=" + "a" * 101 + "&memoryType=SESSION_SUMMARY",
    ],
)
def test_hostile_query_strings_are_400(sidecar, mint, fake_aws, query):
    """memoryId twice, a parameter the model does not define, ids AWS
    refuses: 400, nothing upstream."""
    token = mint("acme", "alice")
    for method in ("GET", "DELETE"):
        r = sidecar.request(method, f"{PATH}?{query}", token=token)
        harness.assert_tenantgate_error(r, 400, "invalid_parameter")
        harness.assert_nothing_upstream(fake_aws)


def test_delete_with_foreign_session_id_twice_is_400(sidecar, mint, fake_aws):
    token = mint("acme", "alice")
    r = sidecar.request("DELETE", f"{PATH}?memoryId=mine&sessionId=a&sessionId=b", token=token)
    harness.assert_tenantgate_error(r, 400, "invalid_parameter")
    harness.assert_nothing_upstream(fake_aws)


def test_other_methods_on_memories_are_refused(sidecar, mint, fake_aws):
    token = mint("acme", "alice")
    for method in ("POST", "PUT", "PATCH"):
        r = sidecar.request(method, f"{PATH}?memoryId=mine", token=token)
        harness.assert_tenantgate_error(r, 403, "operation_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_without_a_token_nothing_is_read(sidecar, fake_aws):
    r = sidecar.request("GET", f"{PATH}?memoryId=mine&memoryType=SESSION_SUMMARY")
    assert r.status == 401, r
    harness.assert_nothing_upstream(fake_aws)
