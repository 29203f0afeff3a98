"""AgenticRetrieveStream of the fake AWS (``POST /agenticRetrieveStream``),
installed by every ``FakeAws`` when it starts. Shapes follow botocore's
``bedrock-agent-runtime`` model; the answer is an event stream (CRCs and
all, by fakeaws's encoder) of ``traceEvent`` steps, ``responseEvent`` text
parts and one ``result`` event.

Like Bedrock, the fake searches the knowledge bases the request names, over
documents of every tenant (``fake.agentic_docs``: knowledge-base id -> list
of documents with their metadata), keeping only those that satisfy each
retriever's ``retrievalOverrides.filter`` (every ``RetrievalFilter``
operator is evaluated), at most ``maxNumberOfResults`` per retriever. Each
result carries its source in ``metadata["x-amz-bedrock-kb-source-uri"]``,
as Bedrock knowledge bases do. With ``generateResponse`` (the default) the
answer cites every result.

``nextToken``: the ``result`` event carries a fresh token; a request's
``nextToken`` must be one the fake issued (400 ``ValidationException``
otherwise), as AWS refuses a token it did not issue.

``seed_doc(fake, kb, uri, text, **metadata)`` adds a document;
``agentic_reply(...)`` scripts an answer (a misbehaving upstream).
"""

from __future__ import annotations

import json
import secrets

from fakeaws import FakeAws, aws_error, event, event_stream

SOURCE_URI = "x-amz-bedrock-kb-source-uri"
_INSTALLED = "_fake_agentic_installed"

# Documents every fake starts with: one pooled knowledge base shared by acme
# and globex (tenant_id metadata), as a SaaS pools its tenants.
DEFAULT_DOCS = {
    "KBPOOLED01": [
        {"uri": "s3://docs/tenants/acme/refunds.pdf", "text": "acme refunds take 5 days",
         "metadata": {"tenant_id": "acme", "year": 2024, "group": "eng"}},
        {"uri": "s3://docs/tenants/acme/refunds-2023.pdf", "text": "acme refunds took 9 days",
         "metadata": {"tenant_id": "acme", "year": 2023, "group": "eng"}},
        {"uri": "s3://docs/tenants/globex/refunds.pdf", "text": "globex secret refund terms",
         "metadata": {"tenant_id": "globex", "year": 2024, "group": "eng"}},
    ],
    "KBGLOBEX99": [
        {"uri": "s3://docs/tenants/globex/roadmap.pdf", "text": "globex roadmap",
         "metadata": {"tenant_id": "globex", "year": 2024}},
    ],
}


def seed_doc(fake: FakeAws, kb: str, uri: str, text: str, **metadata):
    with fake._lock:
        fake.agentic_docs.setdefault(kb, []).append({"uri": uri, "text": text, "metadata": metadata})


def _cmp(op: str, have, want) -> bool:
    if op == "equals":
        return have == want
    if op == "notEquals":
        return have != want
    if op == "in":
        return isinstance(want, list) and have in want
    if op == "notIn":
        return isinstance(want, list) and have not in want
    if have is None:
        return False
    try:
        if op == "greaterThan":
            return have > want
        if op == "greaterThanOrEquals":
            return have >= want
        if op == "lessThan":
            return have < want
        if op == "lessThanOrEquals":
            return have <= want
    except TypeError:
        return False
    if op == "startsWith":
        return isinstance(have, str) and isinstance(want, str) and have.startswith(want)
    if op == "stringContains":
        return isinstance(have, str) and isinstance(want, str) and want in have
    if op == "listContains":
        return isinstance(have, list) and want in have
    raise ValueError(f"unknown filter operator {op}")


def matches(flt, metadata: dict) -> bool:
    """A Bedrock ``RetrievalFilter`` evaluated on one document's metadata."""
    if flt is None:
        return True
    if not isinstance(flt, dict) or len(flt) != 1:
        raise ValueError(f"malformed filter {flt!r}")
    (op, arg), = flt.items()
    if op == "andAll":
        return all(matches(f, metadata) for f in arg)
    if op == "orAll":
        return any(matches(f, metadata) for f in arg)
    return _cmp(op, metadata.get(arg["key"]), arg["value"])


def result_item(kb: str, uri: str, text: str, metadata: dict | None = None) -> dict:
    """One ``AgenticRetrieveResultItem`` as Bedrock sends it."""
    return {
        "content": {"mimeType": "text/plain", "text": text},
        "metadata": {SOURCE_URI: uri, "x-amz-bedrock-kb-chunk-id": f"{kb}-{secrets.token_hex(4)}",
                     "x-amz-bedrock-kb-data-source-id": "DSPOOLED01", **(metadata or {})},
        "sourceRetriever": {"identifier": kb},
    }


def trace_event(step: str, status: str, message: str, **attributes) -> bytes:
    return event("traceEvent", {"id": secrets.token_hex(8), "timestamp": 1764880000000,
                                "attributes": {"step": step, "status": status, "message": message, **attributes}})


def response_events(parts) -> list:
    return [event("responseEvent", {"text": p}) for p in parts]


def result_event(results: list, answer: str | None = None, cited=None, next_token: str | None = None) -> bytes:
    """The ``result`` event: ``cited`` lists, per citation, the result
    indices it references (default: one citation of every result)."""
    body = {"results": results}
    if answer is not None:
        if cited is None:
            cited = [list(range(len(results)))] if results else []
        body["generatedResponse"] = {"answer": answer, "citations": [
            {"startIndex": 0, "endIndex": len(answer), "references": [{"resultIndex": i} for i in refs]}
            for refs in cited]}
    if next_token is not None:
        body["nextToken"] = next_token
    return event("result", body)


def agentic_reply(results: list, parts=("Refunds", " take", " 5 days"), cited=None, trace_results: list | None = None,
                  next_token: str | None = None):
    """A scripted AgenticRetrieveStream answer (``fake.script(..., operation=
    "AgenticRetrieveStream")``): a planning trace, a retrieval trace with
    ``trace_results``, the text ``parts`` and a ``result`` event."""

    def handler(fake, rec):
        msgs = [trace_event("Planning", "SUCCEEDED", "planned one retrieval")]
        if trace_results is not None:
            msgs.append(trace_event("Retrieval", "SUCCEEDED", "retrieved", retrievalResponse=trace_results))
        msgs += response_events(parts)
        msgs.append(result_event(results, "".join(parts), cited, next_token))
        return event_stream(msgs)

    return handler


def _invalid(message: str):
    return aws_error(400, "ValidationException", message)


def _agentic(fake: FakeAws, rec):
    try:
        body = json.loads(rec.body or b"{}")
    except ValueError:
        return _invalid("request body is not JSON")
    for k in ("messages", "retrievers", "agenticRetrieveConfiguration"):
        if k not in body:
            return _invalid(f"{k} is required")
    token = body.get("nextToken")
    with fake._lock:
        if token is not None and token not in fake.agentic_tokens:
            return _invalid("nextToken is not valid")
        docs = {kb: list(d) for kb, d in fake.agentic_docs.items()}
    results = []
    for r in body["retrievers"]:
        kbc = r.get("configuration", {}).get("knowledgeBase")
        if not kbc:
            return _invalid("retriever configuration is required")
        kb = kbc["knowledgeBaseId"]
        if kb not in docs:
            return aws_error(404, "ResourceNotFoundException", f"knowledge base {kb} not found")
        overrides = kbc.get("retrievalOverrides", {})
        try:
            found = [d for d in docs[kb] if matches(overrides.get("filter"), d["metadata"])]
        except (ValueError, KeyError, TypeError) as e:
            return _invalid(f"invalid filter: {e}")
        found = found[: overrides.get("maxNumberOfResults", 10)]
        results += [result_item(kb, d["uri"], d["text"], d["metadata"]) for d in found]
    new_token = "arp-" + secrets.token_hex(12)
    with fake._lock:
        fake.agentic_tokens.add(new_token)
    msgs = [
        trace_event("Planning", "SUCCEEDED", "planned one retrieval per knowledge base"),
        trace_event("Retrieval", "SUCCEEDED", f"retrieved {len(results)} results",
                    retrievalMetadata=[{"identifier": r["sourceRetriever"]["identifier"],
                                        "retrievalType": "BedrockKnowledgeBase"} for r in results],
                    retrievalResponse=results),
    ]
    if body.get("generateResponse", True):
        parts = ["Based on", f" {len(results)} documents:"] + [f" {r['content']['text']}." for r in results]
        msgs += response_events(parts)
        msgs.append(result_event(results, "".join(parts), next_token=new_token))
    else:
        msgs.append(result_event(results, next_token=new_token))
    return event_stream(msgs)


def install(fake: FakeAws):
    if getattr(fake, _INSTALLED, False):
        return
    setattr(fake, _INSTALLED, True)
    # Account-wide state: survives reset(), as AWS's does.
    fake.agentic_docs = {kb: list(d) for kb, d in DEFAULT_DOCS.items()}
    fake.agentic_tokens = set()
    fake.route("POST", r"/agenticRetrieveStream", "AgenticRetrieveStream", _agentic)
