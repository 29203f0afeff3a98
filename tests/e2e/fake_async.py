"""Bedrock asynchronous invocations of the fake AWS: StartAsyncInvoke,
GetAsyncInvoke and ListAsyncInvokes, installed by every ``FakeAws`` when it
starts. Shapes follow botocore's ``bedrock-runtime`` model:

- StartAsyncInvoke (``POST /async-invoke``): 200 ``{"invocationArn": ...}``.
  Like AWS, the jobs are the account's: ``clientRequestToken`` is an
  idempotency token for the whole account, so a token seen before returns
  the job it first started, whoever asks. A request without
  ``outputDataConfig.s3OutputDataConfig.s3Uri`` is 400 ``ValidationException``.
- GetAsyncInvoke (``GET /async-invoke/{invocationArn}``, the ARN
  percent-encoded in one segment): the job (``invocationArn``, ``modelArn``,
  ``clientRequestToken``, ``status``, ``submitTime``, ``outputDataConfig``);
  an unknown ARN is 400 ``ValidationException`` (as AWS answers).
- ListAsyncInvokes (``GET /async-invoke``): every job of the account, of
  every tenant, newest first, ``maxResults`` per page (default 1000) with an
  opaque ``nextToken`` while more remain; ``statusEquals`` filters.

``fake.async_jobs`` (invocation ARN -> job) survives ``reset()``, as AWS's
jobs do; ``seed_job(fake, s3_uri)`` adds a job started outside the sidecar
(another tenant's, say) directly.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from urllib.parse import parse_qs

from fakeaws import FakeAws, aws_error, json_body

_SEG = r"([^/?]+)"
ACCOUNT = "111122223333"
_INSTALLED = "_fake_async_installed"


def _arn() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return f"arn:aws:bedrock:us-east-1:{ACCOUNT}:async-invoke/" + "".join(secrets.choice(alphabet) for _ in range(12))


def _model_arn(model_id: str) -> str:
    if model_id.startswith("arn:"):
        return model_id
    return f"arn:aws:bedrock:us-east-1::foundation-model/{model_id}"


def _jobs(fake: FakeAws) -> dict:
    if not hasattr(fake, "async_jobs"):
        fake.async_jobs = {}
    return fake.async_jobs


def seed_job(fake: FakeAws, s3_uri: str, model_id: str = "amazon.nova-reel-v1:0", status: str = "Completed",
             token: str | None = None) -> str:
    """A job in the account, as if started by anyone; returns its ARN."""
    arn = _arn()
    with fake._lock:
        jobs = _jobs(fake)
        job = {
            "invocationArn": arn,
            "modelArn": _model_arn(model_id),
            "status": status,
            "submitTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "lastModifiedTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": s3_uri}},
            "_order": len(jobs),
        }
        if token is not None:
            job["clientRequestToken"] = token
        jobs[arn] = job
    return arn


def _public(job: dict) -> dict:
    return {k: v for k, v in job.items() if not k.startswith("_")}


def _start(fake: FakeAws, rec):
    try:
        body = json.loads(rec.body or b"{}")
        uri = body["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]
        model = body["modelId"]
    except (ValueError, KeyError, TypeError):
        return aws_error(400, "ValidationException", "modelId and outputDataConfig.s3OutputDataConfig.s3Uri are required")
    token = body.get("clientRequestToken")
    with fake._lock:
        for job in _jobs(fake).values():
            if token is not None and job.get("clientRequestToken") == token:
                return json_body({"invocationArn": job["invocationArn"]})
    arn = seed_job(fake, uri, model, status="InProgress", token=token)
    with fake._lock:
        s3 = body["outputDataConfig"]["s3OutputDataConfig"]
        fake.async_jobs[arn]["outputDataConfig"]["s3OutputDataConfig"] = dict(s3)
    return json_body({"invocationArn": arn})


def _get(fake: FakeAws, rec):
    arn = rec.path_params["invocationArn"]
    with fake._lock:
        job = _jobs(fake).get(arn)
    if job is None:
        return aws_error(400, "ValidationException", f"Invocation {arn} not found")
    return json_body(_public(job))


def _list(fake: FakeAws, rec):
    q = parse_qs(rec.query, keep_blank_values=True)
    max_results = int(q.get("maxResults", ["1000"])[0])
    start = int(base64.b64decode(q["nextToken"][0]).decode()) if "nextToken" in q else 0
    with fake._lock:
        jobs = sorted(_jobs(fake).values(), key=lambda j: -j["_order"])
    if "statusEquals" in q:
        jobs = [j for j in jobs if j["status"] == q["statusEquals"][0]]
    page = jobs[start:start + max_results]
    out = {"asyncInvokeSummaries": [_public(j) for j in page]}
    if start + max_results < len(jobs):
        out["nextToken"] = base64.b64encode(str(start + max_results).encode()).decode()
    return json_body(out)


def install(fake: FakeAws):
    if getattr(fake, _INSTALLED, False):
        return
    setattr(fake, _INSTALLED, True)
    _jobs(fake)
    fake.route("POST", r"/async-invoke", "StartAsyncInvoke", _start)
    fake.route("GET", r"/async-invoke", "ListAsyncInvokes", _list)
    fake.route("GET", rf"/async-invoke/{_SEG}", "GetAsyncInvoke", _get, ["invocationArn"])
