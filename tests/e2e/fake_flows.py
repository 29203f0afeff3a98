"""Bedrock flows of the fake AWS (bedrock-agent-runtime), installed by every
``FakeAws`` when it starts. Shapes follow botocore's model:

- InvokeFlow (``POST /flows/{flow}/aliases/{alias}``): an event stream
  (CRCs, as Bedrock frames it) of ``flowTraceEvent`` (with ``enableTrace``),
  ``flowOutputEvent`` (``fake.flow_output``) and ``flowCompletionEvent``
  (``SUCCESS``); with ``fake.flow_ask_for_input`` set, a
  ``flowMultiTurnInputRequestEvent`` and ``INPUT_REQUIRED`` instead. The
  execution id is in the ``x-amz-bedrock-flow-execution-id`` header: a new
  one (a UUID) unless the body's ``executionId`` names one this fake issued
  for the same flow alias; an unknown one is 404 ``ResourceNotFoundException``.
- StartFlowExecution (``POST .../executions``): ``{"executionArn": ...}``,
  the execution named by ``flowExecutionName`` (a UUID without one); a name
  already used for the flow alias is 409 ``ConflictException``, a name
  outside AWS's pattern (1 to 36 of ``[a-zA-Z0-9-]``) 400.
- GetFlowExecution, StopFlowExecution, ListFlowExecutionEvents,
  GetExecutionFlowSnapshot (``.../executions/{execution}[/stop|/events|/flowsnapshot]``):
  the execution by id or ARN, whoever started it (as in AWS, executions are
  the account's); unknown: 404 ``ResourceNotFoundException``.
- ListFlowExecutions (``GET /flows/{flow}/executions``): every execution of
  the flow in the account (``flowAliasIdentifier`` filters), newest first,
  ``maxResults`` per page (AWS's default and maximum of 10 summaries), with
  an opaque ``nextToken`` while more remain.

``fake.flow_executions`` (execution ARN -> execution) survives ``reset()``,
as AWS's executions do; ``seed_execution(fake, flow, alias, name)`` adds one
started outside the sidecar (another tenant's, say) directly.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from urllib.parse import parse_qs

from fakeaws import FakeAws, aws_error, event, event_stream, json_body

_SEG = r"([^/?]+)"
ACCOUNT = "111122223333"
EXECUTION_HEADER = "x-amz-bedrock-flow-execution-id"
_NAME = re.compile(r"^[a-zA-Z0-9-]{1,36}$")
_INSTALLED = "_fake_flows_installed"


def execution_arn(flow: str, alias: str, name: str) -> str:
    return f"arn:aws:bedrock:us-east-1:{ACCOUNT}:flow/{flow}/alias/{alias}/execution/{name}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _executions(fake: FakeAws) -> dict:
    if not hasattr(fake, "flow_executions"):
        fake.flow_executions = {}
    return fake.flow_executions


def seed_execution(fake: FakeAws, flow: str, alias: str, name: str | None = None, status: str = "Running",
                   document="seeded input") -> str:
    """An execution in the account, as if started by anyone; returns its ARN."""
    name = name or str(uuid.uuid4())
    arn = execution_arn(flow, alias, name)
    with fake._lock:
        ex = _executions(fake)
        ex[arn] = {
            "executionArn": arn,
            "flowIdentifier": flow,
            "flowAliasIdentifier": alias,
            "flowVersion": "1",
            "status": status,
            "startedAt": _now(),
            "createdAt": _now(),
            "_order": len(ex),
            "_input": document,
        }
    return arn


def _public(ex: dict, keys=None) -> dict:
    return {k: v for k, v in ex.items() if not k.startswith("_") and (keys is None or k in keys)}


def _find(fake: FakeAws, rec):
    p = rec.path_params
    flow, alias, ident = p["flowIdentifier"], p["flowAliasIdentifier"], p["executionIdentifier"]
    arn = ident if ident.startswith("arn:") else execution_arn(flow, alias, ident)
    with fake._lock:
        ex = _executions(fake).get(arn)
    if ex is None or (ex["flowIdentifier"], ex["flowAliasIdentifier"]) != (flow, alias):
        return None, aws_error(404, "ResourceNotFoundException", f"Flow execution {ident} not found")
    return ex, None


def _invoke(fake: FakeAws, rec):
    p = rec.path_params
    flow, alias = p["flowIdentifier"], p["flowAliasIdentifier"]
    try:
        body = json.loads(rec.body or b"{}")
        document = body["inputs"][0]["content"]["document"]
    except (ValueError, KeyError, IndexError, TypeError):
        return aws_error(400, "ValidationException", "inputs[0].content.document is required")
    invocations = fake.__dict__.setdefault("flow_invocations", {})
    exec_id = body.get("executionId")
    if exec_id is not None:
        if invocations.get(exec_id) != (flow, alias):
            return aws_error(404, "ResourceNotFoundException", f"Execution {exec_id} not found")
    else:
        exec_id = str(uuid.uuid4())
        with fake._lock:
            invocations[exec_id] = (flow, alias)
    fake.flow_inputs = [*getattr(fake, "flow_inputs", []), (exec_id, document)]
    msgs = []
    if body.get("enableTrace"):
        msgs.append(event("flowTraceEvent", {"trace": {"nodeOutputTrace": {
            "nodeName": "FlowInputNode", "timestamp": _now(),
            "fields": [{"nodeOutputName": "document", "content": {"document": document}}]}}}))
    if getattr(fake, "flow_ask_for_input", None):
        msgs.append(event("flowMultiTurnInputRequestEvent", {
            "nodeName": "AgentNode", "nodeType": "AgentNode", "content": {"document": fake.flow_ask_for_input}}))
        msgs.append(event("flowCompletionEvent", {"completionReason": "INPUT_REQUIRED"}))
    else:
        msgs.append(event("flowOutputEvent", {
            "nodeName": "FlowOutputNode", "nodeType": "Output", "content": {"document": fake.flow_output}}))
        msgs.append(event("flowCompletionEvent", {"completionReason": "SUCCESS"}))
    return event_stream(msgs, extra_headers=[(EXECUTION_HEADER, exec_id)])


def _start(fake: FakeAws, rec):
    p = rec.path_params
    flow, alias = p["flowIdentifier"], p["flowAliasIdentifier"]
    try:
        body = json.loads(rec.body or b"{}")
        document = body["inputs"][0]["content"]["document"]
    except (ValueError, KeyError, IndexError, TypeError):
        return aws_error(400, "ValidationException", "inputs[0].content.document is required")
    name = body.get("flowExecutionName") or str(uuid.uuid4())
    if not _NAME.match(name):
        return aws_error(400, "ValidationException", f"flowExecutionName {name!r} does not match [a-zA-Z0-9-]{{1,36}}")
    arn = execution_arn(flow, alias, name)
    with fake._lock:
        if arn in _executions(fake):
            return aws_error(409, "ConflictException", f"An execution named {name} already exists")
    seed_execution(fake, flow, alias, name, document=document)
    return json_body({"executionArn": arn})


def _get(fake: FakeAws, rec):
    ex, err = _find(fake, rec)
    if err:
        return err
    out = _public(ex, {"executionArn", "flowIdentifier", "flowAliasIdentifier", "flowVersion", "status", "startedAt"})
    if ex["status"] != "Running":
        out["endedAt"] = _now()
    return json_body(out)


def _stop(fake: FakeAws, rec):
    ex, err = _find(fake, rec)
    if err:
        return err
    with fake._lock:
        ex["status"] = "Aborted"
    return json_body({"executionArn": ex["executionArn"], "status": "Aborted"})


def _events(fake: FakeAws, rec):
    ex, err = _find(fake, rec)
    if err:
        return err
    q = parse_qs(rec.query, keep_blank_values=True)
    kind = q.get("eventType", [""])[0]
    if kind not in ("Node", "Flow"):
        return aws_error(400, "ValidationException", "eventType must be Node or Flow")
    doc = ex["_input"]
    if kind == "Flow":
        events = [{"flowInputEvent": {"nodeName": "FlowInputNode", "timestamp": ex["startedAt"],
                                      "fields": [{"name": "document", "content": {"document": doc}}]}}]
    else:
        events = [{"nodeInputEvent": {"nodeName": "Prompt_1", "timestamp": ex["startedAt"],
                                      "fields": [{"name": "topic", "content": {"document": doc}}]}},
                  {"nodeOutputEvent": {"nodeName": "Prompt_1", "timestamp": _now(),
                                       "fields": [{"name": "modelCompletion", "content": {"document": fake.flow_output}}]}}]
    return json_body({"flowExecutionEvents": events})


def _snapshot(fake: FakeAws, rec):
    ex, err = _find(fake, rec)
    if err:
        return err
    definition = {"nodes": [{"name": "FlowInputNode", "type": "Input"}, {"name": "FlowOutputNode", "type": "Output"}],
                  "connections": []}
    return json_body({
        "definition": json.dumps(definition),
        "executionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/service-role/flows-role",
        "flowIdentifier": ex["flowIdentifier"],
        "flowAliasIdentifier": ex["flowAliasIdentifier"],
        "flowVersion": ex["flowVersion"],
    })


def _list(fake: FakeAws, rec):
    flow = rec.path_params["flowIdentifier"]
    q = parse_qs(rec.query, keep_blank_values=True)
    max_results = min(int(q.get("maxResults", ["10"])[0]), 10)
    start = int(base64.b64decode(q["nextToken"][0]).decode()) if "nextToken" in q else 0
    with fake._lock:
        items = sorted((e for e in _executions(fake).values() if e["flowIdentifier"] == flow), key=lambda e: -e["_order"])
    if "flowAliasIdentifier" in q:
        items = [e for e in items if e["flowAliasIdentifier"] == q["flowAliasIdentifier"][0]]
    page = items[start:start + max_results]
    keys = {"executionArn", "flowIdentifier", "flowAliasIdentifier", "flowVersion", "status", "createdAt"}
    out = {"flowExecutionSummaries": [_public(e, keys) for e in page]}
    if start + max_results < len(items):
        out["nextToken"] = base64.b64encode(str(start + max_results).encode()).decode()
    return json_body(out)


def _reset(fake: FakeAws):
    fake.flow_output = "Order 7 ships on Monday."
    fake.flow_ask_for_input = None
    fake.flow_inputs = []


def install(fake: FakeAws):
    if getattr(fake, _INSTALLED, False):
        return
    setattr(fake, _INSTALLED, True)
    _executions(fake)
    _reset(fake)
    fake.reset_hooks = [*getattr(fake, "reset_hooks", []), _reset]
    base = rf"/flows/{_SEG}/aliases/{_SEG}"
    names = ["flowIdentifier", "flowAliasIdentifier"]
    ex = names + ["executionIdentifier"]
    fake.route("POST", base, "InvokeFlow", _invoke, names)
    fake.route("POST", rf"{base}/executions", "StartFlowExecution", _start, names)
    fake.route("GET", rf"{base}/executions/{_SEG}", "GetFlowExecution", _get, ex)
    fake.route("POST", rf"{base}/executions/{_SEG}/stop", "StopFlowExecution", _stop, ex)
    fake.route("GET", rf"{base}/executions/{_SEG}/events", "ListFlowExecutionEvents", _events, ex)
    fake.route("GET", rf"{base}/executions/{_SEG}/flowsnapshot", "GetExecutionFlowSnapshot", _snapshot, ex)
    fake.route("GET", rf"/flows/{_SEG}/executions", "ListFlowExecutions", _list, ["flowIdentifier"])
