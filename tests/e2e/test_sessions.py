"""The Sessions API (docs/reference.md §5.3; docs/agents.md, "Sessions"):
CreateSession, GetSession, UpdateSession, EndSession, DeleteSession,
CreateInvocation, ListInvocations, PutInvocationStep, GetInvocationStep and
ListInvocationSteps through boto3 ``bedrock-agent-runtime``. The fake AWS
(fake_sessions.py) keeps sessions account-wide and answers for any session
id or ARN, as AWS does: these tests show that the sidecar's sealing, not the
fake, keeps tenants and users apart."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote

import pytest

import fake_sessions
import harness
from fakeaws import Error, Respond

ACME_KMS = "arn:aws:kms:us-east-1:111122223333:key/acme-sessions"
GLOBEX_KMS = "arn:aws:kms:us-east-1:111122223333:key/globex-sessions"
CLIENT_KMS = "arn:aws:kms:us-east-1:444455556666:key/11111111-2222-3333-4444-555555555555"
SEALED = re.compile(r"^([a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})\.[0-9a-f]{32}$")
OWNER = {"tenantgate.tenant": "acme", "tenantgate.user": "alice"}
PNG = b"\x89PNG\r\n\x1a\nfake image"

SIDECAR_OVERRIDES = {
    "tenant_defaults": {"sessions": {"tags": {"TenantID": "{tenant}"}}},
    "tenants": {
        "acme": {"sessions": {"kms_key_arn": "arn:aws:kms:us-east-1:111122223333:key/{tenant}-sessions",
                              "tags": {"TenantID": "{tenant}", "User": "{user}"}}},
        "globex": {"sessions": {"kms_key_arn": GLOBEX_KMS}},
        "initech": {"models": [], "static_credentials": {"access_key_id_env": "ACME_AKID",
                                                        "secret_access_key_env": "ACME_SECRET"}},
    },
}


def client(sc, mint, tenant="acme", user="alice"):
    return harness.make_client(sc.url, "bedrock-agent-runtime", token=mint(tenant, user))


@pytest.fixture
def alice(sidecar, mint):
    return client(sidecar, mint)


@pytest.fixture
def bob(sidecar, mint):
    return client(sidecar, mint, "acme", "bob")


@pytest.fixture
def gary(sidecar, mint):
    return client(sidecar, mint, "globex", "alice")


def new_session(c, fake, **kw) -> tuple[str, str]:
    """A session created through the sidecar: (sealed id, Bedrock's id)."""
    out = c.create_session(**kw)
    sealed = out["sessionId"]
    m = SEALED.match(sealed)
    assert m, out
    assert m.group(1) in fake.bedrock_sessions
    fake.reset()
    return sealed, m.group(1)


def only_upstream(fake, op, akid=None):
    rec = harness.assert_one_valid_upstream(fake, op, akid)
    return rec


def test_create_forces_the_tenants_key_tags_and_owner(alice, sidecar, fake_aws, creds):
    """The client's KMS key, TenantID tag and tenantgate.* metadata never go
    upstream; the answer's id is sealed and carries no ARN."""
    out = alice.create_session(
        encryptionKeyArn=CLIENT_KMS, tags={"TenantID": "globex", "tenantId": "globex", "app": "support"},
        sessionMetadata={"topic": "refunds", "tenantgate.tenant": "globex", "TenantGate.User": "mallory"})
    rec = only_upstream(fake_aws, "CreateSession", creds["acme"].akid)
    assert (rec.method, rec.path) == ("PUT", "/sessions/")
    assert rec.json() == {
        "encryptionKeyArn": ACME_KMS,
        "tags": {"TenantID": "acme", "User": "alice", "app": "support"},
        "sessionMetadata": {"topic": "refunds", **OWNER},
    }
    m = SEALED.match(out["sessionId"])
    assert m and m.group(1) in fake_aws.bedrock_sessions, out
    assert "sessionArn" not in out and out["sessionStatus"] == "ACTIVE"
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert m.group(1) not in json.dumps({k: v for k, v in out.items() if k != "sessionId"}, default=str)
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["operation"], audit["decision"], audit["status"]) == ("CreateSession", "allow", 201)


def test_a_whole_session_with_sealed_ids(alice, sidecar, fake_aws, creds):
    """Every operation on the session takes the sealed id, sends Bedrock's,
    and gives the sealed one back; invocations and steps live in it."""
    sealed, sid = new_session(alice, fake_aws, sessionMetadata={"topic": "refunds"})

    got = alice.get_session(sessionIdentifier=sealed)
    rec = only_upstream(fake_aws, "GetSession", creds["acme"].akid)
    assert rec.path == f"/sessions/{sid}/"
    assert got["sessionId"] == sealed and "sessionArn" not in got
    assert got["sessionMetadata"] == {"topic": "refunds", **OWNER}
    assert got["encryptionKeyArn"] == ACME_KMS
    audit = sidecar.wait_audit(harness.request_id_of(got))
    assert (audit["operation"], audit["resource"], audit["upstream_resource"]) == ("GetSession", sealed, sid)
    fake_aws.reset()

    up = alice.update_session(sessionIdentifier=sealed, sessionMetadata={"topic": "billing", "tenantgate.user": "bob"})
    rec = only_upstream(fake_aws, "UpdateSession")
    assert rec.path == f"/sessions/{sid}/"
    assert rec.json() == {"sessionMetadata": {"topic": "billing", **OWNER}}
    assert up["sessionId"] == sealed and "sessionArn" not in up
    assert fake_aws.bedrock_sessions[sid]["sessionMetadata"] == {"topic": "billing", **OWNER}
    fake_aws.reset()

    inv = alice.create_invocation(sessionIdentifier=sealed, description="turn 1")
    assert only_upstream(fake_aws, "CreateInvocation").path == f"/sessions/{sid}/invocations/"
    assert inv["sessionId"] == sealed and inv["ResponseMetadata"]["HTTPStatusCode"] == 201
    fake_aws.reset()

    put = alice.put_invocation_step(
        sessionIdentifier=sealed, invocationIdentifier=inv["invocationId"], invocationStepTime="2026-01-01T00:00:00Z",
        payload={"contentBlocks": [{"text": "where is order 7?"}, {"image": {"format": "png", "source": {"bytes": PNG}}}]})
    rec = only_upstream(fake_aws, "PutInvocationStep")
    assert rec.path == f"/sessions/{sid}/invocationSteps/"
    assert rec.json()["invocationIdentifier"] == inv["invocationId"]
    assert base64.b64decode(rec.json()["payload"]["contentBlocks"][1]["image"]["source"]["bytes"]) == PNG
    fake_aws.reset()

    step = alice.get_invocation_step(sessionIdentifier=sealed, invocationIdentifier=inv["invocationId"],
                                     invocationStepId=put["invocationStepId"])["invocationStep"]
    rec = only_upstream(fake_aws, "GetInvocationStep")
    assert rec.path == f"/sessions/{sid}/invocationSteps/{put['invocationStepId']}"
    assert step["sessionId"] == sealed and step["invocationId"] == inv["invocationId"]
    assert step["payload"]["contentBlocks"][0] == {"text": "where is order 7?"}
    assert step["payload"]["contentBlocks"][1]["image"]["source"]["bytes"] == PNG
    fake_aws.reset()

    invs = alice.list_invocations(sessionIdentifier=sealed)
    assert [(i["sessionId"], i["invocationId"]) for i in invs["invocationSummaries"]] == [(sealed, inv["invocationId"])]
    steps = alice.list_invocation_steps(sessionIdentifier=sealed, invocationIdentifier=inv["invocationId"])
    assert [(s["sessionId"], s["invocationStepId"]) for s in steps["invocationStepSummaries"]] == [
        (sealed, put["invocationStepId"])]
    fake_aws.reset()

    end = alice.end_session(sessionIdentifier=sealed)
    assert only_upstream(fake_aws, "EndSession").path == f"/sessions/{sid}"
    assert (end["sessionId"], end["sessionStatus"]) == (sealed, "ENDED") and "sessionArn" not in end
    fake_aws.reset()
    alice.delete_session(sessionIdentifier=sealed)
    assert only_upstream(fake_aws, "DeleteSession").path == f"/sessions/{sid}/"
    assert sid not in fake_aws.bedrock_sessions


def _every_call(c, ident, inv="11111111-2222-4333-8444-555555555555", step="66666666-7777-4888-9999-aaaaaaaaaaaa"):
    return [
        ("GetSession", lambda: c.get_session(sessionIdentifier=ident)),
        ("UpdateSession", lambda: c.update_session(sessionIdentifier=ident, sessionMetadata={"x": "y"})),
        ("EndSession", lambda: c.end_session(sessionIdentifier=ident)),
        ("DeleteSession", lambda: c.delete_session(sessionIdentifier=ident)),
        ("CreateInvocation", lambda: c.create_invocation(sessionIdentifier=ident)),
        ("ListInvocations", lambda: c.list_invocations(sessionIdentifier=ident)),
        ("PutInvocationStep", lambda: c.put_invocation_step(
            sessionIdentifier=ident, invocationIdentifier=inv, invocationStepTime="2026-01-01T00:00:00Z",
            payload={"contentBlocks": [{"text": "x"}]})),
        ("GetInvocationStep", lambda: c.get_invocation_step(
            sessionIdentifier=ident, invocationIdentifier=inv, invocationStepId=step)),
        ("ListInvocationSteps", lambda: c.list_invocation_steps(sessionIdentifier=ident)),
    ]


@pytest.mark.parametrize("who", ["bob", "gary"])
def test_another_users_or_tenants_session_is_cross_tenant(who, alice, bob, gary, sidecar, fake_aws):
    """alice's sealed id from bob (same tenant) or from a globex user named
    alice: 403 cross_tenant for every operation, nothing upstream, and
    alice's session untouched."""
    sealed, sid = new_session(alice, fake_aws)
    other = {"bob": bob, "gary": gary}[who]
    for name, call in _every_call(other, sealed):
        e = harness.expect_client_error(other, call, 403, "cross_tenant")
        audit = sidecar.wait_audit(harness.request_id_of(e))
        assert (audit["operation"], audit["reason"], audit["decision"]) == (name, "cross_tenant", "deny")
    harness.assert_nothing_upstream(fake_aws)
    assert fake_aws.bedrock_sessions[sid]["sessionStatus"] == "ACTIVE"


def test_raw_ids_arns_and_forged_seals_are_cross_tenant(alice, fake_aws):
    """Bedrock's own id, its ARN (which AWS would accept), a seal moved to
    another id or to the ARN, an upper-cased or cut seal: none opens."""
    sealed, sid = new_session(alice, fake_aws)
    other = fake_sessions.seed_session(fake_aws, metadata=OWNER)
    arn = fake_sessions.session_arn(sid)
    mac = sealed.split(".")[1]
    for ident in [sid, arn, f"{arn}.{mac}", f"{other}.{mac}", sealed.upper(), sealed[:-1], sealed + "0",
                  f"{sid}.{mac}.{mac}", f"{sid}..{mac}", "x" + sealed]:
        for name, call in _every_call(alice, ident):
            harness.expect_client_error(alice, call, 403, "cross_tenant")
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize("path", [
    "/sessions/{raw}/",
    "/sessions/{arn_enc}/",
    "/sessions/{sealed_enc}/",
    "/sessions/{sealed_dot_enc}/",
])
def test_url_encoded_identifiers(path, alice, sidecar, mint, fake_aws):
    """Percent-encoded spellings of ids are decoded before the check: the
    caller's own sealed id still works encoded, a raw id or ARN never does."""
    sealed, sid = new_session(alice, fake_aws)
    p = path.format(raw=sid, arn_enc=quote(fake_sessions.session_arn(sid), safe=""),
                    sealed_enc="".join(f"%{b:02X}" for b in sealed.encode()),
                    sealed_dot_enc=sealed.replace(".", "%2E"))
    resp = sidecar.request("GET", p, b"", token=mint("acme", "alice"))
    if "sealed" in path:
        assert resp.status == 200, resp
        assert resp.json()["sessionId"] == sealed
        assert only_upstream(fake_aws, "GetSession").path == f"/sessions/{sid}/"
    else:
        harness.assert_tenantgate_error(resp, 403, "cross_tenant")
        harness.assert_nothing_upstream(fake_aws)
    fake_aws.reset()
    resp = sidecar.request("GET", p, b"", token=mint("acme", "bob"))
    harness.assert_tenantgate_error(resp, 403, "cross_tenant")
    harness.assert_nothing_upstream(fake_aws)


def test_a_tenant_without_sessions_config_is_refused(sidecar, mint, fake_aws):
    """initech has no sessions.kms_key_arn: every operation is 403
    operation_not_allowed, its own sealed ids included."""
    c = client(sidecar, mint, "initech", "ivan")
    e = harness.expect_client_error(c, lambda: c.create_session(), 403, "operation_not_allowed")
    assert "sessions.kms_key_arn" in e.response["Error"]["Message"]
    for _, call in _every_call(c, "3f1c2a9e-5d6b-4c8e-9a0f-1b2c3d4e5f60.9b1e0c6f5a7d4e2b8c3f1a0d9e8b7c6a") + [
            ("ListSessions", lambda: c.list_sessions())]:
        harness.expect_client_error(c, call, 403, "operation_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_list_sessions_shows_only_the_callers_sessions(sidecar, mint, fake_aws, creds):
    """The account holds sessions of other users, tenants and of nobody (made
    outside the sidecar): each listed one is looked up as the tenant and only
    the caller's come back, sealed, without ARN, a page at a time with
    nextToken kept."""
    user = "lister-" + harness.new_id()
    me = client(sidecar, mint, "acme", user)
    mine = [SEALED.match(me.create_session()["sessionId"]).group(1) for _ in range(3)]
    client(sidecar, mint, "acme", "bob").create_session()
    client(sidecar, mint, "globex", user).create_session()
    fake_sessions.seed_session(fake_aws)
    fake_sessions.seed_session(fake_aws, metadata={"tenantgate.tenant": "acme"})
    fake_aws.reset()
    seen, sealed_ids, token, pages, dropped = [], [], None, 0, 0
    while True:
        page = me.list_sessions(maxResults=4, **({"nextToken": token} if token else {}))
        pages += 1
        for s in page["sessionSummaries"]:
            m = SEALED.match(s["sessionId"])
            assert m and "sessionArn" not in s, s
            seen.append(m.group(1))
            sealed_ids.append(s["sessionId"])
        dropped += int(page["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-dropped-results"])
        assert sidecar.wait_audit(harness.request_id_of(page))["operation"] == "ListSessions"
        token = page.get("nextToken")
        if not token:
            break
    assert sorted(seen) == sorted(mine)
    listed = fake_aws.recorded("ListSessions")
    assert len(listed) == pages and all(r.query.startswith("maxResults=4") for r in listed)
    assert dropped == len(fake_aws.bedrock_sessions) - 3
    lookups = fake_aws.recorded("GetSession")
    assert len(lookups) == len(fake_aws.bedrock_sessions)
    assert all(r.signature_valid and r.access_key_id == creds["acme"].akid for r in lookups)
    # Every sealed id works for its owner.
    got = me.get_session(sessionIdentifier=sealed_ids[0])
    assert got["sessionMetadata"] == {"tenantgate.tenant": "acme", "tenantgate.user": user}


def test_list_sessions_pages_are_capped(sidecar, mint, fake_aws):
    me = client(sidecar, mint, "acme", "cap-" + harness.new_id())
    me.list_sessions(maxResults=1000)
    assert fake_aws.recorded("ListSessions")[0].query == "maxResults=20"
    assert 0 < len(fake_aws.recorded("GetSession")) <= 20


def test_list_sessions_lookup_failures(sidecar, mint, fake_aws):
    """A look-up that fails withholds the page (502); a session gone in
    between (404) is left out."""
    user = "gone-" + harness.new_id()
    me = client(sidecar, mint, "acme", user)
    mine = SEALED.match(me.create_session()["sessionId"]).group(1)
    fake_aws.reset()
    fake_aws.script(Error(500, "InternalServerException"), operation="GetSession", times=1)
    harness.expect_client_error(me, lambda: me.list_sessions(), 502, "upstream_error")
    fake_aws.reset()
    fake_aws.script(Error(404, "ResourceNotFoundException"), operation="GetSession")
    page = me.list_sessions()
    assert page["sessionSummaries"] == [] and mine in fake_aws.bedrock_sessions
    # An upstream page longer than asked for is not looked up at all.
    fake_aws.reset()
    summaries = [{"sessionId": mine, "sessionArn": fake_sessions.session_arn(mine), "sessionStatus": "ACTIVE",
                  "createdAt": "2026-01-01T00:00:00Z", "lastUpdatedAt": "2026-01-01T00:00:00Z"}] * 21
    fake_aws.script(Respond(200, {"Content-Type": "application/json"},
                            json.dumps({"sessionSummaries": summaries}).encode()), operation="ListSessions")
    harness.expect_client_error(me, lambda: me.list_sessions(), 502, "upstream_error")
    assert fake_aws.recorded("GetSession") == []


def test_an_unconfigured_tenant_cannot_list(sidecar, mint, fake_aws):
    c = client(sidecar, mint, "initech", "ivan")
    e = harness.expect_client_error(c, lambda: c.list_sessions(), 403, "operation_not_allowed")
    assert "ListSessions" in e.response["Error"]["Message"]
    harness.assert_nothing_upstream(fake_aws)


def test_malformed_requests_are_400_and_never_sent(alice, sidecar, mint, fake_aws):
    """Duplicate keys, members in another case, ids that are not Bedrock
    UUIDs (an ARN, an upper-case UUID), repeated query parameters."""
    sealed, sid = new_session(alice, fake_aws)
    inv = alice.create_invocation(sessionIdentifier=sealed)["invocationId"]
    fake_aws.reset()
    tok = mint("acme", "alice")
    raw_cases = [
        ("PUT", "/sessions/", b'{"encryptionKeyArn": "%s", "encryptionKeyArn": "%s"}' % (ACME_KMS.encode(), CLIENT_KMS.encode())),
        ("PUT", "/sessions/", b'{"EncryptionKeyArn": "%s"}' % CLIENT_KMS.encode()),
        ("PUT", "/sessions/", b'{"sessionMetadata": {"tenantgate.user": "alice", "tenantgate.user": "bob"}}'),
        ("PUT", f"/sessions/{sealed}/", b'{"SessionMetadata": {"a": "b"}}'),
        ("PUT", f"/sessions/{sealed}/invocations/", b'{"invocationId": "inv-1"}'),
        ("PUT", f"/sessions/{sealed}/invocations/", json.dumps({"invocationId": inv.upper()}).encode()),
        ("PUT", f"/sessions/{sealed}/invocationSteps/", json.dumps({
            "invocationIdentifier": fake_sessions.session_arn(sid), "invocationStepTime": "2026-01-01T00:00:00Z",
            "payload": {"contentBlocks": [{"text": "x"}]}}).encode()),
        ("POST", f"/sessions/{sealed}/invocationSteps/not-a-step", json.dumps({"invocationIdentifier": inv}).encode()),
        ("POST", f"/sessions/{sealed}/invocationSteps/", b'{"invocationIdentifier": "%s", "InvocationIdentifier": "x"}' % inv.encode()),
        ("POST", f"/sessions/{sealed}/invocations/?maxResults=1&maxResults=2", b""),
        ("POST", f"/sessions/{sealed}/invocations/?maxResults=0", b""),
        ("POST", f"/sessions/{sealed}/invocations/?sessionId=x", b""),
        ("POST", "/sessions/?maxResults=5&maxResults=6", b""),
        ("POST", "/sessions/", b'{"maxResults": 5}'),
    ]
    for method, path, body in raw_cases:
        resp = sidecar.request(method, path, body, token=tok)
        harness.assert_tenantgate_error(resp, 400, {"invalid_parameter", "invalid_json"})
    harness.assert_nothing_upstream(fake_aws)


def test_step_images_from_s3_are_refused(alice, sidecar, fake_aws):
    sealed, sid = new_session(alice, fake_aws)
    inv = alice.create_invocation(sessionIdentifier=sealed)["invocationId"]
    fake_aws.reset()
    e = harness.expect_client_error(alice, lambda: alice.put_invocation_step(
        sessionIdentifier=sealed, invocationIdentifier=inv, invocationStepTime="2026-01-01T00:00:00Z",
        payload={"contentBlocks": [{"image": {"format": "png", "source": {
            "s3Location": {"uri": "s3://globex-private/scan.png"}}}}]}), 403, "location_not_allowed")
    assert sidecar.wait_audit(harness.request_id_of(e))["operation"] == "PutInvocationStep"
    harness.assert_nothing_upstream(fake_aws)


def test_lists_drop_foreign_entries_and_page_honestly(alice, sidecar, fake_aws):
    """An upstream page holding another session's entries: they are dropped
    and counted, the page may be shorter than maxResults, nextToken is kept,
    and paging to the end yields exactly the session's own invocations."""
    sealed, sid = new_session(alice, fake_aws)
    mine = [alice.create_invocation(sessionIdentifier=sealed)["invocationId"] for _ in range(3)]
    other = fake_sessions.seed_session(fake_aws, metadata={"tenantgate.tenant": "globex", "tenantgate.user": "gary"})
    foreign_inv = fake_sessions.add_invocation(fake_aws, other)
    fake_aws.reset()
    fake_aws.sessions_extra_summaries = [
        {"sessionId": other, "invocationId": foreign_inv, "createdAt": "2026-01-01T00:00:00Z"},
        {"sessionId": other, "invocationId": foreign_inv, "invocationStepId": "66666666-7777-4888-9999-aaaaaaaaaaaa",
         "invocationStepTime": "2026-01-01T00:00:00Z"},
    ]
    seen, token, shape = [], None, []
    while True:
        kw = {"nextToken": token} if token else {}
        page = alice.list_invocations(sessionIdentifier=sealed, maxResults=2, **kw)
        rows = page["invocationSummaries"]
        assert all(r["sessionId"] == sealed for r in rows), rows
        assert other not in json.dumps(page, default=str) and foreign_inv not in json.dumps(page, default=str)
        seen += [r["invocationId"] for r in rows]
        dropped = int(page["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-dropped-results"])
        assert sidecar.wait_audit(harness.request_id_of(page))["dropped_results"] == dropped
        token = page.get("nextToken")
        shape.append((len(rows), dropped, token is not None))
        if not token:
            break
    # The first upstream page held the foreign entry and one of alice's:
    # a page of one with a nextToken, then the last two.
    assert shape == [(1, 1, True), (2, 0, False)]
    assert sorted(seen) == sorted(mine)
    up = [dict(p.split("=", 1) for p in r.query.split("&")) for r in fake_aws.recorded("ListInvocations")]
    assert up[0] == {"maxResults": "2"} and set(up[1]) == {"maxResults", "nextToken"}
    steps = alice.list_invocation_steps(sessionIdentifier=sealed)
    assert steps["invocationStepSummaries"] == []
    assert steps["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-dropped-results"] == "1"


def test_get_session_whose_owner_metadata_is_not_the_callers(alice, sidecar, fake_aws):
    """The owner metadata changed outside the sidecar (someone with account
    access): GetSession is 403 cross_tenant and shows nothing of it."""
    sealed, sid = new_session(alice, fake_aws, sessionMetadata={"topic": "secret plans"})
    fake_aws.bedrock_sessions[sid]["sessionMetadata"] = {"topic": "secret plans", "tenantgate.tenant": "globex",
                                                         "tenantgate.user": "alice"}
    e = harness.expect_client_error(alice, lambda: alice.get_session(sessionIdentifier=sealed), 403, "cross_tenant")
    assert "secret plans" not in json.dumps(e.response, default=str)
    assert "secret plans" not in alice.tap.body.decode()
    assert len(fake_aws.recorded("GetSession")) == 1
    audit = sidecar.wait_audit(harness.request_id_of(e))
    assert (audit["operation"], audit["reason"]) == ("GetSession", "cross_tenant")


@pytest.mark.parametrize("op", ["GetSession", "UpdateSession", "CreateInvocation", "GetInvocationStep"])
def test_an_answer_about_another_session_is_withheld(op, alice, fake_aws):
    """An upstream answering about another session (or invocation) than the
    one asked: 403 cross_tenant, its content never reaches the client."""
    sealed, sid = new_session(alice, fake_aws)
    inv = alice.create_invocation(sessionIdentifier=sealed)["invocationId"]
    fake_aws.reset()
    other = fake_sessions.seed_session(fake_aws, metadata=OWNER)
    bodies = {
        "GetSession": {"sessionId": other, "sessionArn": fake_sessions.session_arn(other), "sessionStatus": "ACTIVE",
                       "createdAt": "2026-01-01T00:00:00Z", "lastUpdatedAt": "2026-01-01T00:00:00Z",
                       "sessionMetadata": {**OWNER, "topic": "not yours"}},
        "UpdateSession": {"sessionId": other, "sessionArn": fake_sessions.session_arn(other), "sessionStatus": "ACTIVE",
                          "createdAt": "2026-01-01T00:00:00Z", "lastUpdatedAt": "2026-01-01T00:00:00Z"},
        "CreateInvocation": {"sessionId": other, "invocationId": inv, "createdAt": "2026-01-01T00:00:00Z"},
        "GetInvocationStep": {"invocationStep": {"sessionId": sid, "invocationId": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                                                 "invocationStepId": "66666666-7777-4888-9999-aaaaaaaaaaaa",
                                                 "invocationStepTime": "2026-01-01T00:00:00Z",
                                                 "payload": {"contentBlocks": [{"text": "not yours"}]}}},
    }
    fake_aws.script(Respond(200, {"Content-Type": "application/json"}, json.dumps(bodies[op]).encode()), operation=op)
    calls = dict(_every_call(alice, sealed, inv=inv))
    harness.expect_client_error(alice, calls[op], 403, "cross_tenant")
    assert "not yours" not in alice.tap.body.decode() and other not in alice.tap.body.decode()
    assert len(fake_aws.recorded(op)) == 1


def test_upstream_errors_pass_and_deleted_sessions_are_gone(alice, fake_aws):
    """AWS's own errors (an ended session, a deleted one) reach the client
    as AWS sent them."""
    sealed, sid = new_session(alice, fake_aws)
    alice.end_session(sessionIdentifier=sealed)
    with pytest.raises(Exception) as e:
        alice.create_invocation(sessionIdentifier=sealed)
    assert e.value.response["Error"]["Code"] == "ValidationException"
    alice.delete_session(sessionIdentifier=sealed)
    with pytest.raises(Exception) as e:
        alice.get_session(sessionIdentifier=sealed)
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_operations_are_counted_in_metrics(alice, sidecar, fake_aws):
    sealed, _ = new_session(alice, fake_aws)
    alice.get_session(sessionIdentifier=sealed)
    text = sidecar.admin("/metrics").body.decode()
    for op in ("CreateSession", "GetSession"):
        assert re.search(rf'tenantgate_requests_total\{{[^}}]*operation="{op}"[^}}]*\}} [1-9]', text), op


def test_policies_decide_the_sessions_actions(start_sidecar_fn, mint, fake_aws, creds):
    """docs/policies.md: the Sessions action group, `Session` resources with
    Bedrock's id once the sealed one is verified, none for Create/List."""
    policies = """
@id("sessions-for-eng")
permit(principal, action in TenantGate::Action::"Sessions", resource) when { principal.groups.contains("eng") };
@id("interns-do-not-list")
forbid(principal, action == TenantGate::Action::"ListSessions", resource)
when { principal.groups.contains("interns") && !(resource has id) };
@id("one-session-frozen")
forbid(principal, action == TenantGate::Action::"UpdateSession", resource)
when { resource has id && resource.id == "FROZEN" };
"""
    eng = ["eng"]

    def start(frozen="none"):
        overrides = harness.deep_merge(SIDECAR_OVERRIDES, {
            "identity": {"groups_claim": "groups"},
            "policy": {"inline": policies.replace("FROZEN", frozen)},
        })
        return start_sidecar_fn(overrides)

    sc = start()
    alice_eng = harness.make_client(sc.url, "bedrock-agent-runtime", token=mint("acme", "alice", groups=eng))
    out = alice_eng.create_session()
    assert sc.wait_audit(harness.request_id_of(out))["policies"] == ["sessions-for-eng"]
    sealed = out["sessionId"]
    sid = SEALED.match(sealed).group(1)
    fake_aws.reset()
    sales = harness.make_client(sc.url, "bedrock-agent-runtime", token=mint("acme", "alice", groups=["sales"]))
    for call in (lambda: sales.create_session(), lambda: sales.get_session(sessionIdentifier=sealed),
                 lambda: sales.list_sessions()):
        harness.expect_client_error(sales, call, 403, "policy_denied")
    intern = harness.make_client(sc.url, "bedrock-agent-runtime", token=mint("acme", "alice", groups=["eng", "interns"]))
    e = harness.expect_client_error(intern, lambda: intern.list_sessions(), 403, "policy_denied")
    assert sc.wait_audit(harness.request_id_of(e))["policies"] == ["interns-do-not-list"]
    harness.assert_nothing_upstream(fake_aws)
    assert intern.get_session(sessionIdentifier=sealed)["sessionId"] == sealed
    sc.stop()
    fake_aws.reset()
    # The resource is Bedrock's id: a policy can name one session.
    sc = start(frozen=sid)
    alice_eng = harness.make_client(sc.url, "bedrock-agent-runtime", token=mint("acme", "alice", groups=eng))
    e = harness.expect_client_error(alice_eng, lambda: alice_eng.update_session(
        sessionIdentifier=sealed, sessionMetadata={"a": "b"}), 403, "policy_denied")
    assert sc.wait_audit(harness.request_id_of(e))["policies"] == ["one-session-frozen"]
    harness.assert_nothing_upstream(fake_aws)
