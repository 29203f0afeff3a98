"""Routing by method and path (docs/reference.md §5): unrecognised requests are 404
unknown_operation; known-but-unisolated operations are 403
operation_not_allowed; in both cases nothing reaches AWS."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

import harness
from harness import HAIKU


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/"),
        ("GET", "/"),
        ("POST", "/no/such/operation"),
        ("POST", f"/model/{HAIKU}/converse/extra"),
        ("POST", f"/model/{HAIKU}/invent"),
        ("GET", f"/model/{HAIKU}/converse"),  # right path, wrong method
        ("PUT", f"/model/{HAIKU}/invoke"),
        ("DELETE", f"/model/{HAIKU}/invoke"),
        ("POST", "/healthz"),
        ("GET", "/metrics"),
    ],
)
def test_unknown_operation(sidecar, fake_aws, mint, method, path):
    """docs/reference.md §5: any other path or method -> 404 UnknownOperationException
    `unknown_operation`."""
    resp = sidecar.request(method, path, b"{}" if method in ("POST", "PUT") else b"", token=mint())
    harness.assert_tenantgate_error(resp, 404, "unknown_operation", "UnknownOperationException")
    harness.assert_nothing_upstream(fake_aws)


def test_unknown_operation_without_token(sidecar, fake_aws):
    """docs/reference.md §5/§8: an unknown path never reaches upstream whatever the
    identity (404 from routing, or 401 if identity is checked first)."""
    resp = sidecar.request("POST", "/no/such/operation", b"{}")
    assert resp.status in (401, 404), resp
    harness.assert_tenantgate_error(resp, resp.status, {401: "missing_token", 404: "unknown_operation"}[resp.status])
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", f"/model/{HAIKU}/invoke-with-bidirectional-stream"),
        ("POST", "/async-invoke"),
        ("GET", "/async-invoke"),
        ("GET", "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aasync-invoke%2Fabc"),
        ("GET", "/optimize-prompt"),
        ("DELETE", "/flows/FLOW123456/aliases/ALIAS12345"),
        ("GET", "/flows/FLOW123456"),
        ("POST", "/flows/FLOW123456/aliases/ALIAS12345/executions/x"),
        ("GET", "/flows/FLOW123456/aliases/ALIAS12345/executions/x/other"),
        ("POST", "/agents/session-123"),  # InvokeInlineAgent, for a tenant without inline_agent
        ("GET", "/agents/session-123"),
        ("POST", "/agents/session-123/x"),
        ("POST", "/agents/AGENT12345/agentAliases/ALIAS6789/memories"),
        ("GET", "/agents/AGENT12345/agentAliases/ALIAS6789/memories/x"),
        ("GET", "/sessions/abc"),
        ("POST", "/sessions/abc/invocations"),
        # The Sessions API for a tenant without sessions.kms_key_arn.
        ("POST", "/sessions/"),
        ("PUT", "/sessions/"),
        ("GET", "/sessions/abc/"),
        ("PATCH", "/sessions/abc"),
        ("POST", "/guardrail/gr-acme/version/1/other"),
        ("POST", "/guardrail/gr-acme"),
    ],
)
def test_operation_not_allowed(sidecar, fake_aws, mint, method, path):
    """docs/reference.md §5: operations without isolation rules -> 403 operation_not_allowed."""
    resp = sidecar.request(method, path, b"{}" if method != "GET" else b"", token=mint())
    harness.assert_tenantgate_error(resp, 403, "operation_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


REFUSED = {403: "operation_not_allowed"}


@pytest.mark.parametrize(
    "method,path,expected",
    [
        # Routed now: refused for this tenant (no guardrail_checks, no
        # knowledge base) or for an empty body the AWS model refuses.
        ("POST", "/guardrail-checks/invoke", REFUSED),
        ("POST", "/generateQuery", {400: "invalid_parameter"}),
        ("POST", "/knowledgebases/KBPOOLED01/datasources/DS1/documents/D1/content",
         {403: "knowledge_base_not_allowed"}),
        ("POST", "/agenticRetrieveStream", {400: "invalid_parameter"}),
        # Flows are routed; this tenant has no flows.allowed.
        ("POST", "/flows/FLOW123456/aliases/ALIAS12345", {403: "flow_not_allowed"}),
        ("POST", "/flows/FLOW123456/aliases/ALIAS12345/executions", {403: "flow_not_allowed"}),
        ("GET", "/flows/FLOW123456/executions", {403: "flow_not_allowed"}),
        ("GET", "/tags/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aflow%2Fx", REFUSED),
        ("POST", "/model//converse", {403: "model_not_allowed", 404: "unknown_operation"}),
    ],
)
def test_other_paths_fail_closed(sidecar, fake_aws, mint, method, path, expected):
    """docs/reference.md §5 (silent on these newer operations and odd ids): fail closed
    with tenantgate's own error, never upstream."""
    resp = sidecar.request(method, path, b"{}" if method != "GET" else b"", token=mint())
    assert resp.status in expected, resp
    harness.assert_tenantgate_error(resp, resp.status, expected[resp.status])
    harness.assert_nothing_upstream(fake_aws)


def test_sdk_calls_of_unisolated_operations(sidecar, fake_aws, mint):
    """docs/reference.md §5 through the real SDK: StartAsyncInvoke and
    ListAsyncInvokes for a tenant without `async_invoke.output_prefix`,
    InvokeInlineAgent for a tenant without `inline_agent`, CreateSession
    and ListSessions for a tenant without `sessions.kms_key_arn` are
    denied; InvokeFlow for a tenant without `flows.allowed` too, as
    flow_not_allowed."""
    br = harness.make_client(sidecar.url, token=mint())
    ag = harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint())
    calls = [
        (br, lambda: br.start_async_invoke(
            modelId="amazon.nova-reel-v1:0", modelInput={},
            outputDataConfig={"s3OutputDataConfig": {"s3Uri": "s3://out/x"}})),
        (br, lambda: br.list_async_invokes()),
        (ag, lambda: ag.invoke_inline_agent(
            sessionId="s1", foundationModel=HAIKU, instruction="x" * 40, inputText="hi")),
        (ag, lambda: ag.create_session()),
        (ag, lambda: ag.list_sessions()),
    ]
    for client, call in calls:
        try:
            harness.expect_client_error(client, call, 403, "operation_not_allowed")
        except ClientError as e:  # pragma: no cover - message for the report
            raise AssertionError(str(e))
    harness.expect_client_error(ag, lambda: ag.invoke_flow(
        flowIdentifier="FLOW123456", flowAliasIdentifier="ALIAS12345",
        inputs=[{"content": {"document": "x"}, "nodeName": "in", "nodeOutputName": "document"}]), 403, "flow_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_operation_not_allowed_is_audited(sidecar, fake_aws, mint):
    """docs/reference.md §9: a refused operation is audited as a deny with its reason."""
    arn = "arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aagent%2FAGENT12345"
    resp = sidecar.request("POST", f"/tags/{arn}", b'{"tags":{"TenantID":"globex"}}', token=mint())
    harness.assert_tenantgate_error(resp, 403, "operation_not_allowed")
    rec = sidecar.wait_audit(resp.headers["x-tenantgate-request-id"])
    assert rec["decision"] == "deny" and rec["reason"] == "operation_not_allowed"
    assert rec["status"] == 403 and rec["upstream_status"] is None
    harness.assert_nothing_upstream(fake_aws)


def test_refused_on_purpose_named_in_error_and_audit(sidecar, fake_aws, mint):
    """docs/operations.md: operations refused for good (re-tagging escapes IAM
    ABAC) are 403 through the real SDK, the error says which and why, and the
    audit record names the operation; nothing reaches AWS."""
    ag = harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint())
    arn = "arn:aws:bedrock:us-east-1:111122223333:agent-alias/A/B"
    calls = [
        ("TagResource", lambda: ag.tag_resource(resourceArn=arn, tags={"TenantID": "globex"})),
        ("UntagResource", lambda: ag.untag_resource(resourceArn=arn, tagKeys=["TenantID"])),
        ("ListTagsForResource", lambda: ag.list_tags_for_resource(resourceArn=arn)),
    ]
    for name, call in calls:
        err = harness.expect_client_error(ag, call, 403, "operation_not_allowed", "AccessDeniedException")
        assert name in err.response["Error"]["Message"] and "ABAC" in err.response["Error"]["Message"], err.response
        rec = sidecar.wait_audit(harness.request_id_of(err))
        assert rec["operation"] == name and rec["decision"] == "deny", rec
    harness.assert_nothing_upstream(fake_aws)
