"""More operations of the fake AWS, installed by every ``FakeAws`` when it
starts. Shapes follow botocore's models:

- GetDocumentContent (bedrock-agent-runtime, ``POST
  /knowledgebases/{kb}/datasources/{ds}/documents/{documentId}/content``):
  ``{"mimeType", "documentContentLength", "presignedUrl"}`` for a document of
  ``fake.documents`` (``(kb, ds, documentId) -> s3://bucket/key``, every
  tenant's documents in one store, as in a shared knowledge base); the URL is
  virtual-hosted S3 with a query string signature; an unknown document is
  404 ``ResourceNotFoundException``.
- GenerateQuery (``POST /generateQuery``): one ``REDSHIFT_SQL`` query
  naming the question's text.
- InvokeGuardrailChecks (bedrock-runtime, ``POST /guardrail-checks/invoke``):
  a result and a ``usage`` entry for each kind of check asked for; text
  units are one per started 1,000 characters of all message text, per kind
  (``fake.guardrail_unit_chars`` changes the divisor).
"""

from __future__ import annotations

import json
from urllib.parse import quote

from fakeaws import FakeAws, aws_error, json_body

_SEG = r"([^/?]+)"
_INSTALLED = "_fake_kb_extras_installed"


def _documents(fake: FakeAws) -> dict:
    if not hasattr(fake, "documents"):
        fake.documents = {}
    return fake.documents


def presigned_url(s3_uri: str) -> str:
    bucket, key = s3_uri[len("s3://"):].split("/", 1)
    return (f"https://{bucket}.s3.us-east-1.amazonaws.com/{quote(key)}"
            "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=300&X-Amz-SignedHeaders=host&X-Amz-Signature=0f0f")


def _get_document(fake: FakeAws, rec):
    p = rec.path_params
    with fake._lock:
        loc = _documents(fake).get((p["knowledgeBaseId"], p["dataSourceId"], p["documentId"]))
    if loc is None:
        return aws_error(404, "ResourceNotFoundException", f"Document {p['documentId']} not found")
    return json_body({"mimeType": "application/pdf", "documentContentLength": 4096, "presignedUrl": presigned_url(loc)})


def _generate_query(fake: FakeAws, rec):
    text = json.loads(rec.body)["queryGenerationInput"]["text"]
    return json_body({"queries": [{"type": "REDSHIFT_SQL", "sql": f"SELECT * FROM sales -- {text}"}]})


def _guardrail_checks(fake: FakeAws, rec):
    body = json.loads(rec.body)
    chars = sum(len(c.get("text", "")) for m in body["messages"] for c in m["content"])
    per = getattr(fake, "guardrail_unit_chars", 1000)
    units = max(1, -(-chars // per))
    results, usage = {}, {}
    checks = body["checks"]
    if "contentFilter" in checks:
        results["contentFilter"] = {"results": [
            {"category": c["category"], "severityScore": 0.1} for c in checks["contentFilter"]["categories"]]}
        usage["contentFilter"] = {"textUnits": units}
    if "promptAttack" in checks:
        results["promptAttack"] = {"results": [
            {"category": c["category"], "severityScore": 0.9} for c in checks["promptAttack"]["categories"]]}
        usage["promptAttack"] = {"textUnits": units}
    if "sensitiveInformation" in checks:
        results["sensitiveInformation"] = {"results": [], "truncated": False}
        usage["sensitiveInformation"] = {"textUnits": units}
    return json_body({"results": results, "usage": usage})


def install(fake: FakeAws):
    if getattr(fake, _INSTALLED, False):
        return
    setattr(fake, _INSTALLED, True)
    _documents(fake)
    fake.route("POST", rf"/knowledgebases/{_SEG}/datasources/{_SEG}/documents/{_SEG}/content", "GetDocumentContent",
               _get_document, ["knowledgeBaseId", "dataSourceId", "documentId"])
    fake.route("POST", r"/generateQuery", "GenerateQuery", _generate_query)
    fake.route("POST", r"/guardrail-checks/invoke", "InvokeGuardrailChecks", _guardrail_checks)
