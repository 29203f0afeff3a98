"""InvokeInlineAgent of the fake AWS (``POST /agents/{sessionId}``,
bedrock-agent-runtime), installed by every ``FakeAws`` when it starts.
Shapes follow botocore's ``bedrock-agent-runtime`` model:

- The request must carry what AWS requires of an inline agent:
  ``foundationModel``, ``instruction`` of at least 40 characters; every
  ``knowledgeBases[]`` entry a ``knowledgeBaseId`` and a ``description``,
  every ``actionGroups[]`` entry an ``actionGroupName``; the session id in
  the path is 2 to 100 of ``[0-9a-zA-Z._:-]``. Otherwise 400
  ``ValidationException``, as AWS answers.
- The answer is an event stream (``application/vnd.amazon.eventstream``,
  each message with its prelude and message CRC32): ``chunk`` events
  (``bytes`` is the answer text; ``attribution.citations`` when a part cites
  sources), optionally ``trace`` and ``returnControl`` events, with
  ``x-amz-bedrock-agent-session-id`` echoing the path's session id and
  ``x-amzn-bedrock-agent-content-type``.
- Sessions are the account's, as in AWS: ``fake.inline_sessions`` maps a
  session id to the inputs it received, whoever sent them, and survives
  ``reset()``. The default answer says which turn of its session it is.

``inline_reply(...)`` builds a scripted answer (``fake.script(...,
operation="InvokeInlineAgent")``) that validates the request the same way.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Callable

from fakeaws import FakeAws, agent_chunk_event, aws_error, event, event_stream, kb_reference

_SEG = r"([^/?]+)"
_SESSION_ID = re.compile(r"^[0-9a-zA-Z._:-]{2,100}$")
_INSTALLED = "_fake_inline_agent_installed"


def _sessions(fake: FakeAws) -> dict:
    if not hasattr(fake, "inline_sessions"):
        fake.inline_sessions = {}
    return fake.inline_sessions


def _invalid(rec):
    """The ValidationException AWS would answer, or None."""
    sid = rec.path_params.get("sessionId", "")
    if not _SESSION_ID.match(sid):
        return aws_error(400, "ValidationException", "1 validation error detected: Value at 'sessionId' failed to satisfy constraint")
    try:
        body = json.loads(rec.body or b"{}")
    except ValueError:
        return aws_error(400, "ValidationException", "The request body is not valid JSON")
    if not isinstance(body, dict):
        return aws_error(400, "ValidationException", "The request body must be a JSON object")
    if not isinstance(body.get("foundationModel"), str) or not body["foundationModel"]:
        return aws_error(400, "ValidationException", "foundationModel is required")
    if not isinstance(body.get("instruction"), str) or len(body["instruction"]) < 40:
        return aws_error(400, "ValidationException",
                         "1 validation error detected: Value at 'instruction' failed to satisfy constraint: "
                         "Member must have length greater than or equal to 40")
    for kb in body.get("knowledgeBases") or []:
        if not kb.get("knowledgeBaseId") or not kb.get("description"):
            return aws_error(400, "ValidationException", "knowledgeBases entries need knowledgeBaseId and description")
    for g in body.get("actionGroups") or []:
        if not g.get("actionGroupName"):
            return aws_error(400, "ValidationException", "actionGroups entries need actionGroupName")
    return None


def _remember(fake: FakeAws, rec) -> int:
    """Records the input under the session id; returns the turn number."""
    sid = rec.path_params["sessionId"]
    text = json.loads(rec.body or b"{}").get("inputText", "")
    with fake._lock:
        turns = _sessions(fake).setdefault(sid, [])
        turns.append(text)
        return len(turns)


def _headers(rec) -> list:
    return [
        ("x-amz-bedrock-agent-session-id", rec.path_params.get("sessionId", "")),
        ("x-amzn-bedrock-agent-content-type", "application/json"),
    ]


def inline_kb_trace_event(session_id: str, addresses) -> bytes:
    """An InvokeInlineAgent ``trace`` event: the orchestration step's
    knowledge-base lookup returned chunks from ``addresses``."""
    return event("trace", {
        "sessionId": session_id,
        "eventTime": "2026-12-04T21:00:00Z",
        "trace": {"orchestrationTrace": {"observation": {
            "type": "KNOWLEDGE_BASE",
            "knowledgeBaseLookupOutput": {"retrievedReferences": [kb_reference(a) for a in addresses]},
        }}},
    })


def return_control_event(action_group: str, function: str, parameters: dict, invocation_id: str | None = None) -> bytes:
    """A ``returnControl`` event: the agent asks the app to run
    ``action_group``'s ``function`` (a RETURN_CONTROL action group)."""
    return event("returnControl", {
        "invocationId": invocation_id or str(uuid.uuid4()),
        "invocationInputs": [{"functionInvocationInput": {
            "actionGroup": action_group,
            "function": function,
            "actionInvocationType": "RESULT",
            "parameters": [{"name": k, "type": "string", "value": v} for k, v in parameters.items()],
        }}],
    })


def inline_reply(parts=("Inline", " agent", " says hi"), cited: dict | None = None, before: list = (),
                 before_for: Callable | None = None) -> Callable:
    """A scripted InvokeInlineAgent answer, after AWS's validation: the raw
    events ``before`` (or ``before_for(rec)``), then ``chunk`` events for
    ``parts`` (``cited`` maps a part's index to the addresses it cites)."""

    def handler(fake, rec):
        bad = _invalid(rec)
        if bad is not None:
            return bad
        _remember(fake, rec)
        msgs = list(before_for(rec) if before_for else before)
        msgs += [agent_chunk_event(p, (cited or {}).get(i, ())) for i, p in enumerate(parts)]
        return event_stream(msgs, extra_headers=_headers(rec))

    return handler


def _invoke_inline_agent(fake, rec):
    bad = _invalid(rec)
    if bad is not None:
        return bad
    turn = _remember(fake, rec)
    text = f"Inline agent, turn {turn} of this session."
    parts = [text[:13], text[13:]]
    return event_stream([agent_chunk_event(p) for p in parts], extra_headers=_headers(rec))


def chunk_text(events) -> bytes:
    """The answer text of a boto3 ``completion`` (its chunks' bytes)."""
    return b"".join(e["chunk"]["bytes"] for e in events if "chunk" in e)


def install(fake: FakeAws) -> None:
    if getattr(fake, _INSTALLED, False):
        return
    setattr(fake, _INSTALLED, True)
    _sessions(fake)
    fake.route("POST", rf"/agents/{_SEG}", "InvokeInlineAgent", _invoke_inline_agent, ["sessionId"])

