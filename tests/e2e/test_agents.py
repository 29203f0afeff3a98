"""Agents (docs/reference.md §5.3): InvokeAgent through the sidecar with boto3
``bedrock-agent-runtime``: the `agentId/aliasId` allowlist, session
attributes set from the token (never from the body), the user token and
tenant-scoped credentials injected only when configured, and session and
memory ids namespaced per (tenant, user), identically on every replica."""

from __future__ import annotations

import re

import pytest

import harness
from fakeaws import agent_kb_trace_event, agent_reply

AGENT, ALIAS = "AGENT12345", "ALIAS6789"
GLOB_AGENT = "AGENTABCDE"
KB = "KBPOOLED01"
BEDROCK_ID = re.compile(r"[0-9a-zA-Z._:-]{2,100}")

SIDECAR_OVERRIDES = {
    "tenants": {
        # acme: no token and no keys in the session.
        "acme": {
            "agents": {
                "allowed": [f"{AGENT}/{ALIAS}", f"{GLOB_AGENT}/*"],
                "session_attributes": {"tenantId": "{tenant}", "userId": "{user}"},
                "inject_user_token": False,
                "inject_scoped_credentials": False,
                "knowledge_bases": [KB],
            },
            "knowledge_base": {
                "allowed": [KB],
                "filter_key": "tenant_id",
                "allowed_source_prefixes": ["s3://docs/tenants/{tenant}/", "s3://docs/public/"],
            },
        },
        # globex: its action groups get the user's token and scoped keys.
        "globex": {
            "agents": {
                "allowed": [f"{AGENT}/*"],
                "session_attributes": {"tenantId": "{tenant}", "userId": "{user}"},
                "inject_user_token": True,
                "inject_scoped_credentials": True,
            },
        },
    }
}


def client(sc, mint, tenant="acme", user="alice", token=None):
    return harness.make_client(sc.url, "bedrock-agent-runtime", token=token or mint(tenant, user))


@pytest.fixture
def acme(sidecar, mint):
    return client(sidecar, mint)


def invoke(c, session="chat-42", agent=AGENT, alias=ALIAS, **kw):
    """InvokeAgent, the whole completion read (as an app does)."""
    out = c.invoke_agent(agentId=agent, agentAliasId=alias, sessionId=session, inputText=kw.pop("text", "hi"), **kw)
    out["events"] = list(out["completion"])
    return out


def upstream(fake, n=1):
    reqs = fake.recorded("InvokeAgent")
    assert len(reqs) == n and all(r.signature_valid for r in reqs), fake.describe()
    return reqs[-1]


def attrs_of(rec):
    return rec.json()["sessionState"]["sessionAttributes"]


def test_allowlist_exact_and_alias_glob(acme, fake_aws, creds, sidecar):
    """docs/reference.md §5.3: `agentId/aliasId` matching `agents.allowed` (exactly, or
    with a `*` alias) passes to that agent and alias, signed with the
    tenant's keys; audit resource is `agentId/aliasId`."""
    out = invoke(acme)
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeAgent", creds["acme"].akid)
    assert (rec.path_params["agentId"], rec.path_params["agentAliasId"]) == (AGENT, ALIAS)
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["operation"], audit["resource"], audit["decision"]) == ("InvokeAgent", f"{AGENT}/{ALIAS}", "allow")
    for alias in ("TSTALIASID", "PROD01"):
        fake_aws.reset()
        invoke(acme, agent=GLOB_AGENT, alias=alias)
        rec = harness.assert_one_valid_upstream(fake_aws, "InvokeAgent")
        assert (rec.path_params["agentId"], rec.path_params["agentAliasId"]) == (GLOB_AGENT, alias)


@pytest.mark.parametrize("agent,alias", [(AGENT, "TSTALIASID"), ("AGENTXXXXX", ALIAS), ("AGENT1234", ALIAS),
                                         ("AGENTABCDEF", "A1")])
def test_agent_not_allowed(acme, sidecar, fake_aws, agent, alias):
    """docs/reference.md §5.3, §8: an agent/alias outside `agents.allowed` -> 403
    agent_not_allowed, nothing upstream, audited."""
    e = harness.expect_client_error(acme, lambda: invoke(acme, agent=agent, alias=alias), 403, "agent_not_allowed")
    harness.assert_nothing_upstream(fake_aws)
    rec = sidecar.wait_audit(harness.request_id_of(e))
    assert (rec["decision"], rec["reason"], rec["resource"]) == ("deny", "agent_not_allowed", f"{agent}/{alias}")


def test_forged_session_attributes_overwritten(acme, fake_aws):
    """docs/reference.md §5.3, §1: `tenantId`/`userId` come from the token: a client's
    forged values (and case look-alikes) are replaced; other client keys,
    and the rest of sessionState, are kept; prompt attributes cannot claim
    another tenant either."""
    state = {
        "sessionAttributes": {"tenantId": "globex", "userId": "mallory", "TENANTID": "globex",
                              "locale": "de", "cart": "7"},
        "promptSessionAttributes": {"tenantId": "globex", "tone": "formal"},
        "invocationId": "inv-1",
    }
    invoke(acme, sessionState=state, text="refund order 7")
    body = upstream(fake_aws).json()
    assert body["inputText"] == "refund order 7"
    assert body["sessionState"]["sessionAttributes"] == {"tenantId": "acme", "userId": "alice", "locale": "de",
                                                         "cart": "7"}
    assert body["sessionState"]["promptSessionAttributes"] == {"tenantId": "acme", "userId": "alice",
                                                               "tone": "formal"}
    assert body["sessionState"]["invocationId"] == "inv-1"

    fake_aws.reset()
    invoke(acme)  # no sessionState at all: created with the attributes
    assert attrs_of(upstream(fake_aws)) == {"tenantId": "acme", "userId": "alice"}


def test_no_token_or_keys_unless_configured(acme, fake_aws, mint, creds):
    """docs/reference.md §5.3: without `inject_user_token` / `inject_scoped_credentials`
    nothing is injected, and client-forged `userJWT` and credential keys are
    removed, never reaching an action group."""
    forged = mint("globex", "gary")
    state = {"sessionAttributes": {"userJWT": forged, "accessKeyId": creds["globex"].akid,
                                   "secretAccessKey": "forged-secret", "sessionToken": "forged-token",
                                   "UserJwt": forged, "keep": "me"}}
    invoke(acme, sessionState=state)
    rec = upstream(fake_aws)
    assert attrs_of(rec) == {"tenantId": "acme", "userId": "alice", "keep": "me"}
    assert forged.encode() not in rec.body and b"forged-secret" not in rec.body


def test_token_and_scoped_credentials_injected(sidecar, fake_aws, mint, creds):
    """docs/reference.md §5.3: with `inject_user_token` the verified token is
    `userJWT`; with `inject_scoped_credentials` the tenant-scoped keys the
    request was signed with are `accessKeyId`/`secretAccessKey`/
    `sessionToken`; client values under those names are replaced."""
    token = mint("globex", "gary")
    c = client(sidecar, mint, token=token)
    state = {"sessionAttributes": {"userJWT": "forged", "accessKeyId": "AKIAFORGED", "secretAccessKey": "x",
                                   "sessionToken": "y", "tenantId": "acme", "locale": "fr"}}
    invoke(c, alias="ANYALIAS", sessionState=state)
    rec = upstream(fake_aws)
    g = creds["globex"]
    assert rec.access_key_id == g.akid
    assert attrs_of(rec) == {
        "tenantId": "globex",
        "userId": "gary",
        "userJWT": token,
        "accessKeyId": g.akid,
        "secretAccessKey": g.secret,
        "sessionToken": g.token,
        "locale": "fr",
    }
    # The token as sent with the optional "Bearer " prefix: the token alone.
    fake_aws.reset()
    token2 = mint("globex", "gary")
    invoke(client(sidecar, mint, token=f"Bearer {token2}"), alias="ANYALIAS")
    assert attrs_of(upstream(fake_aws))["userJWT"] == token2


def test_session_ids_namespaced_per_tenant_and_user(sidecar, fake_aws, mint):
    """docs/reference.md §5.3: the upstream session id is a function of (tenant, user,
    client id): the same client id gives a different Bedrock session for
    another user or tenant, the same one for the same principal, and is a
    valid Bedrock id that is not the client's."""
    def sid(tenant, user, session="chat-42"):
        fake_aws.reset()
        invoke(client(sidecar, mint, tenant, user), session=session)
        return upstream(fake_aws).path_params["sessionId"]

    alice, bob, gary = sid("acme", "alice"), sid("acme", "bob"), sid("globex", "gary")
    galice = sid("globex", "alice")
    assert len({alice, bob, gary, galice}) == 4
    assert sid("acme", "alice") == alice
    assert sid("acme", "alice", "chat-43") != alice
    for s in (alice, bob, gary, galice):
        assert BEDROCK_ID.fullmatch(s) and "chat-42" not in s, s
    # A client id may already look like a derived one: it is derived again.
    assert sid("acme", "bob", alice) != alice


def test_session_ids_identical_across_replicas(sidecar, fake_aws, mint, start_sidecar_fn):
    """docs/reference.md §5.3, §3 `session_key_env`: two sidecar processes with the same
    `TENANTGATE_SESSION_KEY` derive the same upstream session and memory ids;
    a different key derives different ones."""
    replica = start_sidecar_fn(SIDECAR_OVERRIDES, name="replica")
    other = start_sidecar_fn(SIDECAR_OVERRIDES, name="otherkey",
                             env={"TENANTGATE_SESSION_KEY": "another-key-0123456789abcdef0123456789"})

    def ids(sc):
        fake_aws.reset()
        invoke(client(sc, mint), memoryId="alice-memory")
        rec = upstream(fake_aws)
        return rec.path_params["sessionId"], rec.json()["memoryId"]

    main = ids(sidecar)
    assert ids(replica) == main
    other_ids = ids(other)
    assert other_ids[0] != main[0] and other_ids[1] != main[1]


def test_response_session_id_is_the_clients(acme, fake_aws, sidecar, mint):
    """docs/reference.md §5.3: the response's `x-amz-bedrock-agent-session-id` is the
    client's own id (boto3's `sessionId`), not the namespaced one."""
    out = invoke(acme, session="chat-99")
    assert out["sessionId"] == "chat-99"
    assert out["ResponseMetadata"]["HTTPHeaders"]["x-amz-bedrock-agent-session-id"] == "chat-99"
    assert upstream(fake_aws).path_params["sessionId"] != "chat-99"
    resp = sidecar.request("POST", f"/agents/{AGENT}/agentAliases/{ALIAS}/sessions/chat-99/text",
                           b'{"inputText":"hi"}', token=mint())
    assert resp.status == 200 and [v for k, v in resp.header_list
                                   if k.lower() == "x-amz-bedrock-agent-session-id"] == ["chat-99"]


def test_memory_id_namespaced(acme, sidecar, fake_aws, mint):
    """docs/reference.md §5.3: `memoryId` in the body is namespaced like the session id:
    a valid Bedrock id, stable for the same principal, different for
    another user or tenant."""
    invoke(acme, memoryId="alice-memory")
    m1 = upstream(fake_aws).json()["memoryId"]
    assert m1 != "alice-memory" and BEDROCK_ID.fullmatch(m1), m1
    fake_aws.reset()
    invoke(acme, memoryId="alice-memory", session="chat-other")
    assert upstream(fake_aws).json()["memoryId"] == m1
    others = []
    for tenant, user in (("acme", "bob"), ("globex", "alice")):
        fake_aws.reset()
        invoke(client(sidecar, mint, tenant, user), memoryId="alice-memory")
        others.append(upstream(fake_aws).json()["memoryId"])
    assert len({m1, *others}) == 3


def test_completion_stream_iterated(acme, fake_aws):
    """docs/reference.md §5.3, §7: the completion event stream reaches boto3 intact:
    every chunk, in order and as sent. Redaction (on by default) makes a
    chunk wait while its end could begin an identity id (the "s" of " is"
    could start "sa-east-1:…") until the next chunk decides it; chunks are
    never cut or merged."""
    fake_aws.script(agent_reply(["Your", " refund", " is", " on", " its way"]), operation="InvokeAgent")
    out = invoke(acme)
    chunks = [e["chunk"]["bytes"].decode() for e in out["events"] if "chunk" in e]
    assert chunks == ["Your", " refund", " is", " on", " its way"]
    fake_aws.reset()
    assert "".join(e["chunk"]["bytes"].decode() for e in invoke(acme)["events"]) == "Hello from fake Bedrock"


def test_knowledge_base_configurations_filtered(acme, fake_aws):
    """docs/reference.md §5.2 via §5.3: knowledge bases an agent session names in
    `sessionState.knowledgeBaseConfigurations` must be allowed and get the
    tenant filter, as in Retrieve."""
    client_filter = {"equals": {"key": "year", "value": 2024}}
    kbc = [{"knowledgeBaseId": KB, "retrievalConfiguration": {"vectorSearchConfiguration": {
        "numberOfResults": 3, "filter": client_filter}}}]
    invoke(acme, sessionState={"knowledgeBaseConfigurations": kbc})
    got = upstream(fake_aws).json()["sessionState"]["knowledgeBaseConfigurations"]
    assert got == [{"knowledgeBaseId": KB, "retrievalConfiguration": {"vectorSearchConfiguration": {
        "numberOfResults": 3,
        "filter": {"andAll": [{"equals": {"key": "tenant_id", "value": "acme"}}, client_filter]}}}}]
    fake_aws.reset()
    bad = [{"knowledgeBaseId": "KBGLOBEX99", "retrievalConfiguration": {"vectorSearchConfiguration": {}}}]
    harness.expect_client_error(acme, lambda: invoke(acme, sessionState={"knowledgeBaseConfigurations": bad}),
                                403, "knowledge_base_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_attached_knowledge_base_is_never_queried_unfiltered(acme, sidecar, mint, fake_aws):
    """docs/reference.md §5.2 via §5.3: a knowledge base attached to the agent
    (`agents.knowledge_bases`) is queried with the tenant filter even when
    the app sends no configuration for it: the sidecar adds one. Another
    tenant without the key gets nothing added."""
    invoke(acme, text="what do we charge?")
    got = upstream(fake_aws).json()["sessionState"]["knowledgeBaseConfigurations"]
    assert got == [{"knowledgeBaseId": KB, "retrievalConfiguration": {"vectorSearchConfiguration": {
        "filter": {"equals": {"key": "tenant_id", "value": "acme"}}}}}]
    fake_aws.reset()
    invoke(client(sidecar, mint, tenant="globex"))
    assert "knowledgeBaseConfigurations" not in upstream(fake_aws).json()["sessionState"]


def test_memory_id_header_mapped_back(acme, fake_aws):
    """docs/reference.md §5.3: the namespaced memory id never reaches the app; the
    response's memory id header is the client's own id, so the app can send
    it back and continue the same memory."""
    fake_aws.script(agent_reply(memory_header=True), operation="InvokeAgent")
    out = invoke(acme, memoryId="alice-memory")
    assert out["memoryId"] == "alice-memory"
    assert upstream(fake_aws).json()["memoryId"] != "alice-memory"


def test_answer_citing_own_sources_streams_with_its_attribution(acme, sidecar, fake_aws):
    """docs/reference.md §5.2 applied to agents: an answer whose citations (and traced
    knowledge-base lookups) name only the tenant's prefixes reaches boto3
    whole, attribution included."""
    own = ["s3://docs/tenants/acme/refunds.txt", "s3://docs/public/terms.txt"]
    fake_aws.script(agent_reply(["Refunds take", " five days."], cited={1: own},
                                before=[agent_kb_trace_event(own)]), operation="InvokeAgent")
    out = invoke(acme, enableTrace=True)
    chunks = [e["chunk"] for e in out["events"] if "chunk" in e]
    assert b"".join(c["bytes"] for c in chunks) == b"Refunds take five days."
    refs = chunks[-1]["attribution"]["citations"][0]["retrievedReferences"]
    assert [r["location"]["s3Location"]["uri"] for r in refs] == own
    assert any("trace" in e for e in out["events"])
    rec = sidecar.wait_audit(harness.request_id_of(out))
    assert rec["decision"] == "allow" and rec.get("stream_error") is None


@pytest.mark.parametrize("foreign", [
    "s3://docs/tenants/globex/pricing.txt",
    "s3://docs/tenants/acme-evil/pricing.txt",  # look-alike prefix
])
def test_answer_citing_a_foreign_source_is_withheld(acme, sidecar, fake_aws, foreign):
    """docs/reference.md §5.2 applied to agents: a chunk whose attribution cites a source
    outside the tenant's prefixes may carry another tenant's data: it is
    never forwarded; boto3 gets the chunks before it, then a modelled stream
    error, and the audit record says why."""
    fake_aws.script(agent_reply(["Hello.", " Globex pays 9 dollars."],
                                cited={1: ["s3://docs/public/terms.txt", foreign]}), operation="InvokeAgent")
    out = acme.invoke_agent(agentId=AGENT, agentAliasId=ALIAS, sessionId="chat-9", inputText="prices?")
    got, err = harness.events_until_stream_error(out["completion"])
    assert err.response["Error"]["Code"] == "badGatewayException"
    assert "outside the tenant's allowed prefixes" in str(err)
    text = b"".join(e["chunk"]["bytes"] for e in got if "chunk" in e)
    assert b"Globex" not in text and text.startswith(b"Hello")
    rec = sidecar.wait_audit(harness.request_id_of(out))
    assert rec["stream_error"] == "unauthorized_source_in_answer"
    assert rec["reason"] == "unauthorized_source_in_answer"
    assert "Globex pays" not in sidecar.stdout_text()


def test_trace_of_a_foreign_lookup_ends_the_stream_before_the_answer(acme, sidecar, fake_aws):
    """docs/reference.md §5.2 applied to agents: an agent whose knowledge-base lookup returned another tenant's chunks
    (a knowledge base attached to the agent, queried without the tenant
    filter) has read foreign data; its answer is withheld even when no
    citation names the source."""
    fake_aws.script(agent_reply(["Globex pays 9 dollars."],
                                before=[agent_kb_trace_event(["s3://docs/tenants/globex/pricing.txt"])]),
                    operation="InvokeAgent")
    out = acme.invoke_agent(agentId=AGENT, agentAliasId=ALIAS, sessionId="chat-9", inputText="prices?",
                            enableTrace=True)
    harness.events_until_stream_error(out["completion"])
    assert sidecar.wait_audit(harness.request_id_of(out))["stream_error"] == "unauthorized_source_in_answer"


def test_tenant_without_source_prefixes_is_not_post_filtered(sidecar, fake_aws, mint):
    """Without `allowed_source_prefixes` there is no post-filter (docs/reference.md §5.2):
    globex's agent answers pass whatever they cite."""
    fake_aws.script(agent_reply(["From elsewhere."], cited={0: ["s3://other/x.txt"]}), operation="InvokeAgent")
    out = invoke(client(sidecar, mint, tenant="globex"))
    assert [e["chunk"]["bytes"] for e in out["events"] if "chunk" in e] == [b"From elsewhere."]
