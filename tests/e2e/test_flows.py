"""Flows (docs/reference.md §16, docs/flows.md): InvokeFlow and the flow
executions through the sidecar with boto3 ``bedrock-agent-runtime``. The
fake AWS keeps executions account-wide, as AWS does, and answers for any
execution it knows whoever asks: these tests show that the sidecar, not the
fake, keeps users and tenants apart."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

import fake_flows
import harness

FLOW, ALIAS = "FLOW123456", "ALIAS12345"
WILD_FLOW = "FLOWABCDEF"
PATH = f"/flows/{FLOW}/aliases/{ALIAS}"

SIDECAR_OVERRIDES = {
    "redaction": {"patterns": [r"internal-user-\d{6}"], "replacement": "[redacted]"},
    "tenants": {
        "acme": {"flows": {"allowed": [f"{FLOW}/{ALIAS}", f"{WILD_FLOW}/*"]}},
        "globex": {"flows": {"allowed": [f"{FLOW}/*"]}},
    },
}

INPUTS = [{"nodeName": "FlowInputNode", "nodeOutputName": "document", "content": {"document": "Where is order 7?"}}]


def client(sc, mint, tenant="acme", user="alice"):
    return harness.make_client(sc.url, "bedrock-agent-runtime", token=mint(tenant, user))


@pytest.fixture
def alice(sidecar, mint):
    return client(sidecar, mint)


@pytest.fixture(autouse=True)
def _no_executions(fake_aws):
    """Executions outlive fake.reset() (as AWS's do); each test starts with none."""
    with fake_aws._lock:
        fake_aws.flow_executions.clear()


def invoke(c, flow=FLOW, alias=ALIAS, **kw):
    out = c.invoke_flow(flowIdentifier=flow, flowAliasIdentifier=alias, inputs=INPUTS, **kw)
    events = list(out["responseStream"])
    return out, events


def start(c, flow=FLOW, alias=ALIAS, **kw):
    return c.start_flow_execution(flowIdentifier=flow, flowAliasIdentifier=alias, inputs=INPUTS, **kw)


def exec_id(arn: str) -> str:
    return arn.rsplit("/execution/", 1)[1]


def one_upstream(fake, op, creds=None):
    reqs = fake.recorded(op)
    assert len(reqs) == 1 and reqs[0].signature_valid, fake.describe()
    if creds is not None:
        assert reqs[0].access_key_id == creds.akid, reqs[0].summary()
    return reqs[0]


def deny_audited(sidecar, err, reason, resource=None):
    rec = sidecar.wait_audit(harness.request_id_of(err))
    assert (rec["decision"], rec["reason"]) == ("deny", reason), rec
    if resource is not None:
        assert rec["resource"] == resource, rec
    return rec


# ---- InvokeFlow ---------------------------------------------------------


def test_invoke_flow_streams_every_event_and_seals_the_execution_id(alice, sidecar, fake_aws, creds):
    """The events arrive (botocore checks every CRC); Bedrock's execution id
    reaches the app sealed for acme/alice; the request is signed as acme;
    the audit names the operation and the flow alias."""
    out, events = invoke(alice, enableTrace=True)
    assert [next(iter(e)) for e in events] == ["flowTraceEvent", "flowOutputEvent", "flowCompletionEvent"]
    assert events[1]["flowOutputEvent"]["content"]["document"] == "Order 7 ships on Monday."
    assert events[2]["flowCompletionEvent"]["completionReason"] == "SUCCESS"
    rec = one_upstream(fake_aws, "InvokeFlow", creds["acme"])
    assert "executionId" not in rec.json()
    (bedrock_id, _), = fake_aws.flow_inputs
    sealed = out["executionId"]
    assert sealed.startswith(bedrock_id + ".") and len(sealed) == len(bedrock_id) + 33, sealed
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["operation"], audit["resource"], audit["decision"]) == ("InvokeFlow", f"{FLOW}/{ALIAS}", "allow")


def test_multi_turn_continues_with_the_sealed_id(alice, sidecar, fake_aws):
    """A flow asking for input: the app sends the sealed id back, Bedrock
    gets its own id, and the same sealed id comes back."""
    fake_aws.flow_ask_for_input = "Which order do you mean?"
    out, events = invoke(alice)
    assert [next(iter(e)) for e in events] == ["flowMultiTurnInputRequestEvent", "flowCompletionEvent"]
    assert events[0]["flowMultiTurnInputRequestEvent"]["content"]["document"] == "Which order do you mean?"
    assert events[1]["flowCompletionEvent"]["completionReason"] == "INPUT_REQUIRED"
    sealed = out["executionId"]
    (bedrock_id, _), = fake_aws.flow_inputs
    fake_aws.reset()
    out2, events2 = invoke(alice, executionId=sealed)
    rec = one_upstream(fake_aws, "InvokeFlow")
    assert rec.json()["executionId"] == bedrock_id
    assert out2["executionId"] == sealed
    assert next(iter(events2[0])) == "flowOutputEvent"


def test_another_users_execution_id_is_cross_tenant(alice, sidecar, mint, fake_aws):
    """alice's sealed id from bob, from a globex user, the bare Bedrock id, or
    a sealed id with a forged MAC: 403 cross_tenant, nothing upstream."""
    fake_aws.flow_ask_for_input = "Which order?"
    out, _ = invoke(alice)
    sealed = out["executionId"]
    (bedrock_id, _), = fake_aws.flow_inputs
    fake_aws.reset()
    for tenant, user, sent in (
        ("acme", "bob", sealed),
        ("globex", "alice", sealed),
        ("acme", "alice", bedrock_id),
        ("acme", "alice", bedrock_id + "." + "0" * 32),
        ("acme", "alice", sealed.upper()),
    ):
        c = client(sidecar, mint, tenant, user)
        err = harness.expect_client_error(c, lambda: invoke(c, executionId=sent), 403, "cross_tenant")
        harness.assert_nothing_upstream(fake_aws)
        deny_audited(sidecar, err, "cross_tenant")


def test_invoke_flow_events_are_redacted(alice, fake_aws):
    """docs/reference.md §7: the flow's output is model text, redacted event
    by event; the rest of the text arrives."""
    fake_aws.flow_output = "Ticket of internal-user-123456 is closed."
    _, events = invoke(alice)
    assert events[0]["flowOutputEvent"]["content"]["document"] == "Ticket of [redacted] is closed."
    assert b"internal-user-123456" not in alice.tap.body


# ---- the allowlist ------------------------------------------------------


@pytest.mark.parametrize("flow,alias", [(FLOW, "TSTALIASID"), (FLOW, "ALIAS12346"), ("FLOW999999", ALIAS)])
def test_flow_alias_not_allowed(alice, sidecar, fake_aws, flow, alias):
    """Every flow operation decides the flow alias first: 403
    flow_not_allowed, nothing upstream, audited."""
    name = "order-1"
    calls = [
        lambda: invoke(alice, flow, alias),
        lambda: start(alice, flow, alias, flowExecutionName=name),
        lambda: alice.get_flow_execution(flowIdentifier=flow, flowAliasIdentifier=alias, executionIdentifier=name),
        lambda: alice.stop_flow_execution(flowIdentifier=flow, flowAliasIdentifier=alias, executionIdentifier=name),
        lambda: alice.list_flow_execution_events(flowIdentifier=flow, flowAliasIdentifier=alias, executionIdentifier=name,
                                                 eventType="Flow"),
        lambda: alice.get_execution_flow_snapshot(flowIdentifier=flow, flowAliasIdentifier=alias, executionIdentifier=name),
        lambda: alice.list_flow_executions(flowIdentifier=flow, flowAliasIdentifier=alias),
    ]
    for i, call in enumerate(calls):
        err = harness.expect_client_error(alice, call, 403, "flow_not_allowed")
        listing = i == len(calls) - 1
        named = flow if listing and flow != FLOW else f"{flow}/{alias}"
        assert f'flow "{named}" is not allowed' in err.response["Error"]["Message"]
        harness.assert_nothing_upstream(fake_aws)
        # ListFlowExecutions' path names the flow; the alias is a filter.
        deny_audited(sidecar, err, "flow_not_allowed", flow if listing else f"{flow}/{alias}")


def test_listing_a_flow_without_any_allowed_alias_is_refused(alice, sidecar, fake_aws):
    err = harness.expect_client_error(alice, lambda: alice.list_flow_executions(flowIdentifier="FLOW999999"), 403,
                                      "flow_not_allowed")
    harness.assert_nothing_upstream(fake_aws)
    deny_audited(sidecar, err, "flow_not_allowed", "FLOW999999")


def test_flow_and_alias_arns_are_refused(alice, fake_aws):
    """Flows are allowed by id: an ARN, even of an allowed flow, is 403."""
    flow_arn = f"arn:aws:bedrock:us-east-1:111122223333:flow/{FLOW}"
    alias_arn = f"{flow_arn}/alias/{ALIAS}"
    for flow, alias in ((flow_arn, ALIAS), (FLOW, alias_arn), (flow_arn, alias_arn)):
        err = harness.expect_client_error(alice, lambda: invoke(alice, flow, alias), 403, "flow_not_allowed")
        assert "never by ARN" in err.response["Error"]["Message"]
        harness.assert_nothing_upstream(fake_aws)
    harness.expect_client_error(alice, lambda: alice.list_flow_executions(flowIdentifier=FLOW, flowAliasIdentifier=alias_arn),
                                403, "flow_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_wildcard_alias_and_another_tenants_list(sidecar, mint, fake_aws):
    """`FLOWABCDEF/*` admits any alias of that flow; globex's `FLOW123456/*`
    admits TSTALIASID, which acme's list does not."""
    acme = client(sidecar, mint)
    _, events = invoke(acme, WILD_FLOW, "ANYALIAS01")
    assert next(iter(events[0])) == "flowOutputEvent"
    globex = client(sidecar, mint, "globex", "gina")
    _, events = invoke(globex, FLOW, "TSTALIASID")
    assert next(iter(events[0])) == "flowOutputEvent"


# ---- executions ---------------------------------------------------------


def test_start_binds_the_name_and_every_operation_reaches_the_execution(alice, sidecar, fake_aws, creds):
    """StartFlowExecution: the name goes upstream with a MAC of acme/alice,
    the executionArn names it; Get (by id and by ARN), events, snapshot and
    stop reach it with the bare id, signed as acme."""
    out = start(alice, flowExecutionName="order-42")
    rec = one_upstream(fake_aws, "StartFlowExecution", creds["acme"])
    sent = rec.json()["flowExecutionName"]
    assert sent.startswith("order-42-") and len(sent) == 29 and sent != "order-42"
    assert out["executionArn"] == fake_flows.execution_arn(FLOW, ALIAS, sent)
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["operation"], audit["resource"], audit["decision"]) == ("StartFlowExecution", f"{FLOW}/{ALIAS}", "allow")
    ident = {"flowIdentifier": FLOW, "flowAliasIdentifier": ALIAS}
    for named in (sent, out["executionArn"]):
        fake_aws.reset()
        got = alice.get_flow_execution(executionIdentifier=named, **ident)
        assert (got["executionArn"], got["status"]) == (out["executionArn"], "Running")
        rec = one_upstream(fake_aws, "GetFlowExecution", creds["acme"])
        assert rec.path == f"{PATH}/executions/{sent}", rec.path
    fake_aws.reset()
    ev = alice.list_flow_execution_events(executionIdentifier=sent, eventType="Flow", **ident)
    assert ev["flowExecutionEvents"][0]["flowInputEvent"]["fields"][0]["content"]["document"] == "Where is order 7?"
    snap = alice.get_execution_flow_snapshot(executionIdentifier=out["executionArn"], **ident)
    assert json.loads(snap["definition"])["nodes"][0]["name"] == "FlowInputNode"
    stopped = alice.stop_flow_execution(executionIdentifier=sent, **ident)
    assert stopped["status"] == "Aborted"
    assert [r.operation for r in fake_aws.recorded()] == [
        "ListFlowExecutionEvents", "GetExecutionFlowSnapshot", "StopFlowExecution"]
    assert all(r.signature_valid and r.access_key_id == creds["acme"].akid for r in fake_aws.recorded())
    audit = sidecar.wait_audit(harness.request_id_of(stopped))
    assert (audit["operation"], audit["decision"]) == ("StopFlowExecution", "allow")


def test_start_without_a_name_gets_a_bound_random_one(alice, fake_aws):
    out = start(alice)
    sent = one_upstream(fake_aws, "StartFlowExecution").json()["flowExecutionName"]
    assert exec_id(out["executionArn"]) == sent and len(sent) == 33
    out2 = start(alice)
    assert exec_id(out2["executionArn"]) != sent
    got = alice.get_flow_execution(flowIdentifier=FLOW, flowAliasIdentifier=ALIAS, executionIdentifier=sent)
    assert got["executionArn"] == out["executionArn"]


def test_same_name_from_two_users_is_two_executions(alice, sidecar, mint, fake_aws):
    """Names are bound per user: bob's "order-42" does not collide with
    alice's (AWS would answer 409 for one name twice), and alice's twice does."""
    a = start(alice, flowExecutionName="order-42")
    bob = client(sidecar, mint, "acme", "bob")
    b = start(bob, flowExecutionName="order-42")
    assert a["executionArn"] != b["executionArn"]
    with pytest.raises(alice.exceptions.ConflictException) as err:
        start(alice, flowExecutionName="order-42")
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409


@pytest.mark.parametrize("tenant,user", [("acme", "bob"), ("globex", "alice")])
def test_another_users_execution_is_cross_tenant(alice, sidecar, mint, fake_aws, tenant, user):
    """alice's execution named by bob or by a globex user (by id, by ARN,
    the id percent-encoded): 403 cross_tenant on every operation, nothing
    upstream, audited; the execution keeps running."""
    out = start(alice, flowExecutionName="mine")
    arn, sent = out["executionArn"], exec_id(out["executionArn"])
    fake_aws.reset()
    other = client(sidecar, mint, tenant, user)
    ident = {"flowIdentifier": FLOW, "flowAliasIdentifier": ALIAS}
    for named in (sent, arn):
        for call in (
            lambda: other.get_flow_execution(executionIdentifier=named, **ident),
            lambda: other.stop_flow_execution(executionIdentifier=named, **ident),
            lambda: other.list_flow_execution_events(executionIdentifier=named, eventType="Node", **ident),
            lambda: other.get_execution_flow_snapshot(executionIdentifier=named, **ident),
        ):
            err = harness.expect_client_error(other, call, 403, "cross_tenant")
            harness.assert_nothing_upstream(fake_aws)
            deny_audited(sidecar, err, "cross_tenant", f"{FLOW}/{ALIAS}")
    token = mint(tenant, user)
    for raw in (quote(sent, safe=""), "".join(f"%{b:02X}" for b in sent.encode())):
        r = sidecar.request("GET", f"{PATH}/executions/{raw}", token=token)
        harness.assert_tenantgate_error(r, 403, "cross_tenant")
        harness.assert_nothing_upstream(fake_aws)
    with fake_aws._lock:
        assert fake_aws.flow_executions[arn]["status"] == "Running"


def test_executions_started_elsewhere_are_cross_tenant(alice, fake_aws):
    """An execution with AWS's own id (started outside the sidecar), or with
    a name that imitates the bound form: 403 cross_tenant, nothing upstream."""
    plain = fake_flows.seed_execution(fake_aws, FLOW, ALIAS)
    forged = fake_flows.seed_execution(fake_aws, FLOW, ALIAS, "order-42-" + "a" * 20)
    for arn in (plain, forged):
        for named in (exec_id(arn), arn):
            harness.expect_client_error(alice, lambda: alice.get_flow_execution(
                flowIdentifier=FLOW, flowAliasIdentifier=ALIAS, executionIdentifier=named), 403, "cross_tenant")
            harness.assert_nothing_upstream(fake_aws)


def test_execution_arn_of_another_flow_alias_is_400(alice, fake_aws):
    """An ARN naming another alias than the path's (even an allowed one, even
    the caller's own execution) is refused before anything is sent."""
    out = start(alice, WILD_FLOW, "ALIASONE01", flowExecutionName="x1")
    fake_aws.reset()
    for flow, alias in ((WILD_FLOW, "ALIASTWO02"), (FLOW, ALIAS)):
        harness.expect_client_error(alice, lambda: alice.get_flow_execution(
            flowIdentifier=flow, flowAliasIdentifier=alias, executionIdentifier=out["executionArn"]), 400, "invalid_parameter")
        harness.assert_nothing_upstream(fake_aws)


# ---- ListFlowExecutions -------------------------------------------------


def test_list_shows_only_the_callers_executions_page_by_page(alice, sidecar, mint, fake_aws):
    """The page keeps alice's executions of allowed aliases only; others'
    (bob's, globex's, started outside, alice's own name on an alias she may
    not use) are dropped and counted; nextToken passes, so pages are short."""
    mine = [start(alice, flowExecutionName=f"a{i}")["executionArn"] for i in range(3)]
    start(client(sidecar, mint, "acme", "bob"), flowExecutionName="a0")
    start(client(sidecar, mint, "globex", "gina"), flowExecutionName="a0")
    fake_flows.seed_execution(fake_aws, FLOW, ALIAS)
    fake_flows.seed_execution(fake_aws, FLOW, "TSTALIASID", exec_id(mine[0]))
    fake_aws.reset()
    out = alice.list_flow_executions(flowIdentifier=FLOW)
    assert sorted(s["executionArn"] for s in out["flowExecutionSummaries"]) == sorted(mine)
    assert out["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-dropped-results"] == "4"
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["operation"], audit["resource"], audit["dropped_results"]) == ("ListFlowExecutions", FLOW, 4)
    # Two at a time: every page passes nextToken on, some pages are short.
    seen, sizes, token = [], [], None
    while True:
        kw = {"nextToken": token} if token else {}
        page = alice.list_flow_executions(flowIdentifier=FLOW, maxResults=2, **kw)
        seen += [s["executionArn"] for s in page["flowExecutionSummaries"]]
        sizes.append(len(page["flowExecutionSummaries"]))
        token = page.get("nextToken")
        if not token:
            break
    assert sorted(seen) == sorted(mine) and min(sizes) < 2, sizes
    # With the alias named, the listing is for that alias.
    out = alice.list_flow_executions(flowIdentifier=FLOW, flowAliasIdentifier=ALIAS)
    assert sorted(s["executionArn"] for s in out["flowExecutionSummaries"]) == sorted(mine)
    assert one_upstream_query(fake_aws)["flowAliasIdentifier"] == [ALIAS]


def one_upstream_query(fake):
    from urllib.parse import parse_qs
    return parse_qs(fake.recorded("ListFlowExecutions")[-1].query)


def test_execution_events_are_redacted(alice, fake_aws):
    """docs/reference.md §7: execution events are JSON answers, redacted."""
    arn = alice.start_flow_execution(flowIdentifier=FLOW, flowAliasIdentifier=ALIAS, flowExecutionName="r1", inputs=[
        {"nodeName": "FlowInputNode", "nodeOutputName": "document", "content": {"document": "for internal-user-654321"}}
    ])["executionArn"]
    ev = alice.list_flow_execution_events(flowIdentifier=FLOW, flowAliasIdentifier=ALIAS, executionIdentifier=arn,
                                          eventType="Flow")
    assert ev["flowExecutionEvents"][0]["flowInputEvent"]["fields"][0]["content"]["document"] == "for [redacted]"


# ---- hostile requests ---------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "maxResults=2&maxResults=3",
        "flowAliasIdentifier=ALIAS12345&flowAliasIdentifier=TSTALIASID",
        "FlowAliasIdentifier=TSTALIASID",
        "maxResults=0",
        "maxResults=1001",
        "maxResults=%2B2",
        "nextToken=a+b",
        "flowAliasIdentifier=ALIAS%2D1",
        "tenant=globex",
    ],
)
def test_hostile_list_queries_are_400(sidecar, mint, fake_aws, query):
    r = sidecar.request("GET", f"/flows/{FLOW}/executions?{query}", token=mint())
    harness.assert_tenantgate_error(r, 400, "invalid_parameter")
    harness.assert_nothing_upstream(fake_aws)


def test_hostile_bodies_and_paths_are_refused(sidecar, mint, fake_aws, alice):
    """Duplicate keys (the last naming another execution), members in
    another case, names the binding cannot take, ids with `/` or `.`
    segments, query parameters twice or outside the model: 400, nothing
    upstream."""
    own = exec_id(start(alice, flowExecutionName="h1")["executionArn"])
    fake_aws.reset()
    token = mint()
    doc = '"inputs":[{"nodeName":"FlowInputNode","nodeOutputName":"document","content":{"document":"x"}}]'
    bodies = [
        ("POST", f"{PATH}/executions", '{"flowExecutionName":"a","flowExecutionName":"b",' + doc + "}"),
        ("POST", f"{PATH}/executions", '{"FlowExecutionName":"a",' + doc + "}"),
        ("POST", f"{PATH}/executions", '{"flowExecutionName":"' + "a" * 16 + '",' + doc + "}"),
        ("POST", f"{PATH}/executions", '{"flowExecutionName":"a_b",' + doc + "}"),
        ("POST", f"{PATH}/executions", '{"flowExecutionName":"",' + doc + "}"),
        ("POST", PATH, '{"executionId":"x.y","executionId":"z.w",' + doc + "}"),
        ("POST", PATH, '{"ExecutionId":"abc",' + doc + "}"),
        ("POST", PATH, '{"executionId":7,' + doc + "}"),
        ("GET", f"{PATH}/executions/a%2F..%2Fb", ""),
        ("GET", f"{PATH}/executions/..", ""),
        ("GET", f"{PATH}/executions/a.b", ""),
        ("GET", f"{PATH}/executions/a%20b/events?eventType=Node", ""),
        ("GET", f"/flows/{FLOW}%2Fx/aliases/{ALIAS}/executions/a", ""),
        ("GET", f"{PATH}/executions/{own}/events?eventType=Node&eventType=Flow", ""),
        ("GET", f"{PATH}/executions/{own}/events?eventType=node", ""),
        ("GET", f"{PATH}/executions/{own}/events?eventType=Node&maxResults=0", ""),
        ("GET", f"{PATH}/executions/{own}?eventType=Node", ""),
    ]
    for method, path, body in bodies:
        r = sidecar.request(method, path, body.encode(), token=token)
        harness.assert_tenantgate_error(r, 400, {"invalid_parameter", "invalid_json"})
        harness.assert_nothing_upstream(fake_aws)


def test_other_methods_and_paths_under_flows_are_refused(sidecar, mint, fake_aws):
    token = mint()
    for method, path in (("GET", PATH), ("DELETE", PATH), ("PUT", f"{PATH}/executions"),
                         ("DELETE", f"{PATH}/executions/a"), ("GET", f"/flows/{FLOW}/aliases")):
        r = sidecar.request(method, path, b"" if method == "GET" else b"{}", token=token)
        harness.assert_tenantgate_error(r, 403, "operation_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_without_a_token_nothing_is_sent(sidecar, fake_aws):
    for method, path in (("POST", PATH), ("GET", f"/flows/{FLOW}/executions")):
        r = sidecar.request(method, path, b"{}" if method == "POST" else b"")
        assert r.status == 401, r
    harness.assert_nothing_upstream(fake_aws)


def test_every_flow_operation_is_named_in_audit_and_metrics(alice, sidecar, fake_aws):
    """docs/reference.md §9: the seven operations are audited and counted
    under their own names, allowed and denied."""
    ident = {"flowIdentifier": FLOW, "flowAliasIdentifier": ALIAS}
    out, _ = invoke(alice)
    started = start(alice, flowExecutionName="m1")
    arn = started["executionArn"]
    calls = {
        "InvokeFlow": out,
        "StartFlowExecution": started,
        "GetFlowExecution": alice.get_flow_execution(executionIdentifier=arn, **ident),
        "ListFlowExecutionEvents": alice.list_flow_execution_events(executionIdentifier=arn, eventType="Node", **ident),
        "GetExecutionFlowSnapshot": alice.get_execution_flow_snapshot(executionIdentifier=arn, **ident),
        "ListFlowExecutions": alice.list_flow_executions(flowIdentifier=FLOW),
        "StopFlowExecution": alice.stop_flow_execution(executionIdentifier=arn, **ident),
    }
    for op, resp in calls.items():
        rec = sidecar.wait_audit(harness.request_id_of(resp))
        assert (rec["operation"], rec["decision"], rec["tenant"], rec["user"]) == (op, "allow", "acme", "alice"), rec
    harness.expect_client_error(alice, lambda: invoke(alice, FLOW, "TSTALIASID"), 403, "flow_not_allowed")
    text = sidecar.admin("/metrics").body.decode()
    lines = [line for line in text.splitlines() if line.startswith("tenantgate_requests_total{")]
    for op in calls:
        assert any(f'operation="{op}"' in line and 'decision="allow"' in line and 'tenant="acme"' in line
                   for line in lines), (op, lines)
    assert any('operation="InvokeFlow"' in line and 'decision="deny"' in line and 'status="403"' in line
               for line in lines), lines


FLOW_POLICY = """
@id("flows-for-staff")
permit(principal, action in TenantGate::Action::"Flow", resource is TenantGate::Flow)
when { resource.flow == "FLOW123456" };

@id("only-ops-stop")
forbid(principal, action == TenantGate::Action::"StopFlowExecution", resource)
unless { principal.groups.contains("ops") };

@id("no-test-alias")
forbid(principal, action in TenantGate::Action::"Flow", resource)
when { resource has alias && resource.alias == "TSTALIASID" };
"""


def test_cedar_policies_decide_flow_operations(start_sidecar_fn, mint, fake_aws, tmp_path):
    """docs/flows.md "Policies": the Flow action group and resource. A
    permit on the flow, a forbid on StopFlowExecution outside the ops group
    and one on an alias the allowlist admits: 403 policy_denied, nothing
    upstream, the deciding policy in the audit record."""
    (tmp_path / "flows.cedar").write_text(FLOW_POLICY)
    sc = start_sidecar_fn(harness.deep_merge(SIDECAR_OVERRIDES, {
        "identity": {"groups_claim": "groups"},
        "policy": {"files": [str(tmp_path / "flows.cedar")]},
        "tenants": {"acme": {"flows": {"allowed": [f"{FLOW}/*", f"{WILD_FLOW}/*"]}}},
    }))
    dev = harness.make_client(sc.url, "bedrock-agent-runtime", token=mint("acme", "dev", groups=["eng"]))
    ops = harness.make_client(sc.url, "bedrock-agent-runtime", token=mint("acme", "dev", groups=["eng", "ops"]))
    arn = start(dev, flowExecutionName="p1")["executionArn"]
    ident = {"flowIdentifier": FLOW, "flowAliasIdentifier": ALIAS}
    assert dev.get_flow_execution(executionIdentifier=arn, **ident)["status"] == "Running"
    assert dev.list_flow_executions(flowIdentifier=FLOW)["flowExecutionSummaries"]
    fake_aws.reset()
    for client, call, policy in (
        (dev, lambda: dev.stop_flow_execution(executionIdentifier=arn, **ident), "only-ops-stop"),
        (dev, lambda: invoke(dev, FLOW, "TSTALIASID"), "no-test-alias"),
        (dev, lambda: dev.list_flow_executions(flowIdentifier=FLOW, flowAliasIdentifier="TSTALIASID"), "no-test-alias"),
        (dev, lambda: invoke(dev, WILD_FLOW, "ANYALIAS01"), None),
    ):
        err = harness.expect_client_error(client, call, 403, "policy_denied")
        harness.assert_nothing_upstream(fake_aws)
        rec = sc.wait_audit(harness.request_id_of(err))
        assert rec["reason"] == "policy_denied" and rec["policies"] == ([policy] if policy else []), rec
    # The same user with the ops group stops the execution (same tenant and
    # user: the execution is theirs).
    assert ops.stop_flow_execution(executionIdentifier=arn, **ident)["status"] == "Aborted"
