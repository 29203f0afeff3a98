"""The Sessions API of the fake AWS (bedrock-agent-runtime), installed by
every ``FakeAws`` when it starts. Shapes follow botocore's
``bedrock-agent-runtime`` model; like AWS, sessions belong to the account:

- a ``sessionIdentifier`` is the session's UUID or its ARN
  (``arn:aws:bedrock:us-east-1:ACCOUNT:session/UUID``); anything else is 400
  ``ValidationException``, an unknown session 404
  ``ResourceNotFoundException``, whoever asks;
- CreateSession (``PUT /sessions/``): 201 ``sessionId``, ``sessionArn``,
  ``sessionStatus`` ``ACTIVE``, ``createdAt``; ``encryptionKeyArn``,
  ``sessionMetadata`` and ``tags`` are kept;
- GetSession (``GET /sessions/{id}/``), UpdateSession (``PUT``, replaces
  ``sessionMetadata``), EndSession (``PATCH /sessions/{id}``, status
  ``ENDED``), DeleteSession (``DELETE /sessions/{id}/``, empty answer);
- CreateInvocation (``PUT .../invocations/``, 201; an ended session is 400),
  ListInvocations (``POST .../invocations/``), PutInvocationStep
  (``PUT .../invocationSteps/``, 201; the invocation must be the session's,
  else 404), GetInvocationStep (``POST .../invocationSteps/{stepId}``, the
  step must be of the session and invocation asked, else 404),
  ListInvocationSteps (``POST .../invocationSteps/``, optionally for one
  invocation);
- ListSessions (``POST /sessions/``): every session of the account;
- lists: ``maxResults`` per page (default 1000) and an opaque ``nextToken``
  while more remain.

``fake.bedrock_sessions`` (UUID -> session) survives ``reset()``, as AWS's
sessions do. ``fake.sessions_extra_summaries`` (cleared by ``reset()``) are
entries put first in every ListInvocations / ListInvocationSteps listing
(an upstream that answers with another session's entries).
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from urllib.parse import parse_qs

from fakeaws import FakeAws, aws_error, json_body

_SEG = r"([^/?]+)"
ACCOUNT = "111122223333"
_INSTALLED = "_fake_sessions_installed"
_UUID = re.compile(r"^[a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12}$")
_ARN = re.compile(r"^arn:aws(-[^:]+)?:bedrock:[a-z0-9-]+:[0-9]{12}:session/([a-f0-9]{8}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{4}-[a-f0-9]{12})$")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def session_arn(sid: str) -> str:
    return f"arn:aws:bedrock:us-east-1:{ACCOUNT}:session/{sid}"


def sessions(fake: FakeAws) -> dict:
    if not hasattr(fake, "bedrock_sessions"):
        fake.bedrock_sessions = {}
    return fake.bedrock_sessions


def _extra(fake: FakeAws) -> list:
    if not hasattr(fake, "sessions_extra_summaries"):
        fake.sessions_extra_summaries = []
    return fake.sessions_extra_summaries


def seed_session(fake: FakeAws, metadata: dict | None = None, kms: str | None = None) -> str:
    """A session in the account, as if created by anyone; returns its id."""
    sid = str(uuid.uuid4())
    with fake._lock:
        sessions(fake)[sid] = {
            "sessionId": sid,
            "sessionArn": session_arn(sid),
            "sessionStatus": "ACTIVE",
            "createdAt": _now(),
            "lastUpdatedAt": _now(),
            "sessionMetadata": dict(metadata or {}),
            "encryptionKeyArn": kms,
            "tags": {},
            "_invocations": {},
        }
    return sid


def add_invocation(fake: FakeAws, sid: str) -> str:
    """An invocation in session ``sid`` (anyone's); returns its id."""
    inv = str(uuid.uuid4())
    with fake._lock:
        sessions(fake)[sid]["_invocations"][inv] = {"createdAt": _now(), "_order": 0, "steps": {}}
    return inv


def add_step(fake: FakeAws, sid: str, inv: str, text: str = "step") -> str:
    step = str(uuid.uuid4())
    with fake._lock:
        sessions(fake)[sid]["_invocations"][inv]["steps"][step] = {
            "invocationStepTime": _now(), "payload": {"contentBlocks": [{"text": text}]}}
    return step


def _body(rec) -> dict:
    try:
        v = json.loads(rec.body or b"{}")
    except ValueError:
        return {}
    return v if isinstance(v, dict) else {}


def _resolve(fake: FakeAws, rec):
    """(session, None) or (None, error response) for the path's identifier."""
    ident = rec.path_params["sessionIdentifier"]
    m = _ARN.match(ident)
    sid = m.group(2) if m else ident
    if not _UUID.match(sid):
        return None, aws_error(400, "ValidationException",
                               f"1 validation error detected: Value '{ident}' at 'sessionIdentifier' failed to satisfy "
                               "constraint: Member must satisfy regular expression pattern")
    with fake._lock:
        s = sessions(fake).get(sid)
    if s is None:
        return None, aws_error(404, "ResourceNotFoundException", f"Session {sid} not found")
    return s, None


def _page(rec, items: list, key: str) -> dict:
    q = parse_qs(rec.query, keep_blank_values=True)
    max_results = int(q.get("maxResults", ["1000"])[0])
    start = int(base64.b64decode(q["nextToken"][0]).decode()) if "nextToken" in q else 0
    out = {key: items[start:start + max_results]}
    if start + max_results < len(items):
        out["nextToken"] = base64.b64encode(str(start + max_results).encode()).decode()
    return out


def _create(fake: FakeAws, rec):
    b = _body(rec)
    sid = seed_session(fake, b.get("sessionMetadata"), b.get("encryptionKeyArn"))
    with fake._lock:
        s = sessions(fake)[sid]
        s["tags"] = dict(b.get("tags") or {})
    return json_body({"sessionId": sid, "sessionArn": s["sessionArn"], "sessionStatus": "ACTIVE",
                      "createdAt": s["createdAt"]}, status=201)


def _public(s: dict) -> dict:
    out = {k: v for k, v in s.items() if not k.startswith("_") and k != "tags" and v is not None}
    return out


def _get(fake: FakeAws, rec):
    s, err = _resolve(fake, rec)
    return err or json_body(_public(s))


def _update(fake: FakeAws, rec):
    s, err = _resolve(fake, rec)
    if err:
        return err
    b = _body(rec)
    with fake._lock:
        if "sessionMetadata" in b:
            s["sessionMetadata"] = dict(b["sessionMetadata"])
        s["lastUpdatedAt"] = _now()
    return json_body({k: s[k] for k in ("sessionId", "sessionArn", "sessionStatus", "createdAt", "lastUpdatedAt")})


def _end(fake: FakeAws, rec):
    s, err = _resolve(fake, rec)
    if err:
        return err
    with fake._lock:
        s["sessionStatus"] = "ENDED"
    return json_body({k: s[k] for k in ("sessionId", "sessionArn", "sessionStatus")})


def _delete(fake: FakeAws, rec):
    s, err = _resolve(fake, rec)
    if err:
        return err
    with fake._lock:
        sessions(fake).pop(s["sessionId"], None)
    return json_body({})


def _create_invocation(fake: FakeAws, rec):
    s, err = _resolve(fake, rec)
    if err:
        return err
    if s["sessionStatus"] != "ACTIVE":
        return aws_error(400, "ValidationException", f"Session {s['sessionId']} is {s['sessionStatus']}")
    b = _body(rec)
    inv = b.get("invocationId") or str(uuid.uuid4())
    with fake._lock:
        invs = s["_invocations"]
        if inv in invs:
            return aws_error(409, "ConflictException", f"Invocation {inv} exists")
        invs[inv] = {"createdAt": _now(), "_order": len(invs), "steps": {}}
        if b.get("description"):
            invs[inv]["description"] = b["description"]
    return json_body({"sessionId": s["sessionId"], "invocationId": inv, "createdAt": invs[inv]["createdAt"]}, status=201)


def _list_invocations(fake: FakeAws, rec):
    s, err = _resolve(fake, rec)
    if err:
        return err
    with fake._lock:
        items = [{"sessionId": s["sessionId"], "invocationId": i, "createdAt": v["createdAt"]}
                 for i, v in s["_invocations"].items()]
        items = [e for e in _extra(fake) if "invocationStepId" not in e] + items
    return json_body(_page(rec, items, "invocationSummaries"))


def _put_step(fake: FakeAws, rec):
    s, err = _resolve(fake, rec)
    if err:
        return err
    b = _body(rec)
    inv = b.get("invocationIdentifier")
    with fake._lock:
        invocation = s["_invocations"].get(inv)
        if invocation is None:
            return aws_error(404, "ResourceNotFoundException", f"Invocation {inv} not found in session {s['sessionId']}")
        step = b.get("invocationStepId") or str(uuid.uuid4())
        invocation["steps"][step] = {"invocationStepTime": b.get("invocationStepTime"), "payload": b.get("payload")}
    return json_body({"invocationStepId": step}, status=201)


def _get_step(fake: FakeAws, rec):
    s, err = _resolve(fake, rec)
    if err:
        return err
    b = _body(rec)
    inv, step_id = b.get("invocationIdentifier"), rec.path_params["invocationStepId"]
    with fake._lock:
        step = s["_invocations"].get(inv, {}).get("steps", {}).get(step_id)
    if step is None:
        return aws_error(404, "ResourceNotFoundException", f"Invocation step {step_id} not found")
    return json_body({"invocationStep": {"sessionId": s["sessionId"], "invocationId": inv,
                                         "invocationStepId": step_id, **step}})


def _list_steps(fake: FakeAws, rec):
    s, err = _resolve(fake, rec)
    if err:
        return err
    inv = _body(rec).get("invocationIdentifier")
    with fake._lock:
        items = [{"sessionId": s["sessionId"], "invocationId": i, "invocationStepId": sid,
                  "invocationStepTime": st["invocationStepTime"]}
                 for i, v in s["_invocations"].items() if inv is None or i == inv
                 for sid, st in v["steps"].items()]
        items = [e for e in _extra(fake) if "invocationStepId" in e] + items
    return json_body(_page(rec, items, "invocationStepSummaries"))


def _list_sessions(fake: FakeAws, rec):
    with fake._lock:
        items = [{k: s[k] for k in ("sessionId", "sessionArn", "sessionStatus", "createdAt", "lastUpdatedAt")}
                 for s in sessions(fake).values()]
    return json_body(_page(rec, items, "sessionSummaries"))


def install(fake: FakeAws):
    if getattr(fake, _INSTALLED, False):
        return
    setattr(fake, _INSTALLED, True)
    sessions(fake)
    _extra(fake)
    plain_reset = fake.reset

    def reset():
        plain_reset()
        with fake._lock:
            fake.sessions_extra_summaries = []

    fake.reset = reset
    r = fake.route
    r("PUT", r"/sessions/", "CreateSession", _create)
    r("POST", r"/sessions/", "ListSessions", _list_sessions)
    r("GET", rf"/sessions/{_SEG}/", "GetSession", _get, ["sessionIdentifier"])
    r("PUT", rf"/sessions/{_SEG}/", "UpdateSession", _update, ["sessionIdentifier"])
    r("PATCH", rf"/sessions/{_SEG}", "EndSession", _end, ["sessionIdentifier"])
    r("DELETE", rf"/sessions/{_SEG}/", "DeleteSession", _delete, ["sessionIdentifier"])
    r("PUT", rf"/sessions/{_SEG}/invocations/", "CreateInvocation", _create_invocation, ["sessionIdentifier"])
    r("POST", rf"/sessions/{_SEG}/invocations/", "ListInvocations", _list_invocations, ["sessionIdentifier"])
    r("PUT", rf"/sessions/{_SEG}/invocationSteps/", "PutInvocationStep", _put_step, ["sessionIdentifier"])
    r("POST", rf"/sessions/{_SEG}/invocationSteps/", "ListInvocationSteps", _list_steps, ["sessionIdentifier"])
    r("POST", rf"/sessions/{_SEG}/invocationSteps/{_SEG}", "GetInvocationStep", _get_step,
      ["sessionIdentifier", "invocationStepId"])
