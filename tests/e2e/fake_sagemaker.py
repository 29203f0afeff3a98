"""SageMaker runtime operations of the fake AWS (docs/reference.md §5.4): the
only SageMaker answers it has, installed by every ``FakeAws`` through
``FakeAws.route`` when it starts. ``install(fake)`` is idempotent, so a test
may still call it to say it depends on these answers. They echo what the
tests need to check; ``fake.stream_parts`` drives the stream.

Shapes follow botocore's ``sagemaker-runtime`` model (2017-05-13):

- InvokeEndpoint: the response body is the model's output, opaque bytes,
  ``Content-Type`` the model's; ``x-Amzn-Invoked-Production-Variant`` names
  the variant. The fake echoes the request body and content type and answers
  with the requested ``X-Amzn-SageMaker-Target-Variant`` (else
  ``AllTraffic``).
- InvokeEndpointWithResponseStream: ``application/vnd.amazon.eventstream``,
  one ``PayloadPart`` event per part. ``PayloadPart.Bytes`` is a blob marked
  ``eventpayload``: the event's payload *is* the bytes (no JSON, no base64),
  and boto3 hands them back as ``event["PayloadPart"]["Bytes"]``. Parts are
  ``fake.stream_parts`` (``str`` is UTF-8 encoded, ``bytes`` sent as they
  are, so a test can stream binary).
- InvokeEndpointAsync: 202; ``InferenceId`` in the JSON body, the result's
  S3 URI in the ``X-Amzn-SageMaker-OutputLocation`` header (where boto3
  reads ``OutputLocation``; the body carries it too, which boto3 ignores).
  Like SageMaker, a request without ``X-Amzn-SageMaker-InputLocation`` is
  400 ``ValidationError``.

The signature of every request is verified by ``fakeaws`` before these
handlers run (``rec.service`` is the signing name from the credential scope,
``sagemaker`` for this service).
"""

from __future__ import annotations

import json
import uuid

from fakeaws import Body, FakeAws, aws_error, encode_event_message, event_stream

_SEG = r"([^/?]+)"
_INSTALLED = "_fake_sagemaker_installed"

STREAM_CONTENT_TYPE = "application/vnd.amazon.eventstream"
OUTPUT_BUCKET = "s3://async-out"


def install(fake: FakeAws) -> FakeAws:
    """Add the three SageMaker runtime routes to ``fake`` (once)."""
    if getattr(fake, _INSTALLED, False):
        return fake
    fake.route("POST", rf"/endpoints/{_SEG}/invocations", "InvokeEndpoint", invoke_endpoint, ["EndpointName"])
    fake.route(
        "POST",
        rf"/endpoints/{_SEG}/invocations-response-stream",
        "InvokeEndpointWithResponseStream",
        invoke_endpoint_stream,
        ["EndpointName"],
    )
    fake.route(
        "POST", rf"/endpoints/{_SEG}/async-invocations", "InvokeEndpointAsync", invoke_endpoint_async, ["EndpointName"]
    )
    setattr(fake, _INSTALLED, True)
    return fake


def _variant(rec) -> str:
    return rec.headers.get("x-amzn-sagemaker-target-variant") or "AllTraffic"


SESSION_EXPIRES = "2026-12-03T18:00:00Z"


def _session_headers(rec) -> list:
    """A stateful model container's answer: ``NEW_SESSION`` opens a session
    (``X-Amzn-SageMaker-New-Session-Id: ID; Expires=...``); a request body of
    ``close`` on a session closes it (``X-Amzn-SageMaker-Closed-Session-Id``)."""
    sid = rec.headers.get("x-amzn-sagemaker-session-id")
    if sid == "NEW_SESSION":
        return [("X-Amzn-SageMaker-New-Session-Id", f"sess-{uuid.uuid4().hex[:12]}; Expires={SESSION_EXPIRES}")]
    if sid and rec.body == b"close":
        return [("X-Amzn-SageMaker-Closed-Session-Id", sid)]
    return []


def invoke_endpoint(fake, rec) -> Body:
    ct = rec.headers.get("content-type", "application/octet-stream")
    return Body(
        200,
        [
            ("Content-Type", ct),
            ("x-Amzn-Invoked-Production-Variant", _variant(rec)),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ] + _session_headers(rec),
        rec.body,
    )


def payload_part(data: bytes) -> bytes:
    """One ``PayloadPart`` event: the payload is the raw bytes."""
    return encode_event_message(
        [
            (":event-type", "PayloadPart"),
            (":content-type", "application/octet-stream"),
            (":message-type", "event"),
        ],
        data,
    )


def invoke_endpoint_stream(fake, rec):
    parts = [p if isinstance(p, (bytes, bytearray)) else str(p).encode() for p in fake.stream_parts]
    ct = rec.headers.get("content-type", "application/octet-stream")
    return event_stream(
        [payload_part(bytes(p)) for p in parts],
        extra_headers=[
            ("X-Amzn-SageMaker-Content-Type", ct),
            ("x-Amzn-Invoked-Production-Variant", _variant(rec)),
        ],
    )


def invoke_endpoint_async(fake, rec) -> Body:
    if not rec.headers.get("x-amzn-sagemaker-inputlocation"):
        return aws_error(400, "ValidationError", "InputLocation is required")
    inference_id = rec.headers.get("x-amzn-sagemaker-inference-id") or str(uuid.uuid4())
    endpoint = rec.path_params.get("EndpointName", "endpoint")
    output = f"{OUTPUT_BUCKET}/{endpoint}/{inference_id}.out"
    data = json.dumps({"InferenceId": inference_id, "OutputLocation": output}).encode()
    return Body(
        202,
        [
            ("Content-Type", "application/json"),
            ("X-Amzn-SageMaker-OutputLocation", output),
            ("x-amzn-RequestId", str(uuid.uuid4())),
        ],
        data,
    )
