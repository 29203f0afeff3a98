"""Anthropic's Messages API as bedrock-runtime answers it on InvokeModel and
InvokeModelWithResponseStream, for tests that drive the ``anthropic`` SDK's
``AnthropicBedrock`` client. A test installs them with ``script(fake_aws)``
(the scripts last until the fake's reset, so other tests keep the fake's
plain answers). Requests are verified and recorded by ``FakeAws`` first, as
every other.

Shapes, from Anthropic's Messages API and Bedrock's documentation of it:

- InvokeModel: one ``message`` object (``id``, ``type``, ``role``,
  ``model``, ``content`` text blocks, ``stop_reason``, ``stop_sequence``,
  ``usage`` with ``input_tokens`` / ``output_tokens``), and Bedrock's
  ``x-amzn-bedrock-input-token-count`` / ``-output-token-count`` headers.
- InvokeModelWithResponseStream: an event stream of ``chunk`` events whose
  ``bytes`` are base64 JSON events: ``message_start`` (the message with
  empty ``content`` and ``stop_reason`` null), ``content_block_start``,
  one ``content_block_delta`` (``text_delta``) per ``fake.stream_parts``
  item, ``content_block_stop``, ``message_delta`` (``stop_reason`` and
  ``usage.output_tokens``) and ``message_stop`` carrying
  ``amazon-bedrock-invocationMetrics``.

The request body must be an object with ``anthropic_version`` a string,
``max_tokens`` an integer and ``messages`` an array (else 400
``ValidationException``, as Bedrock answers), and must not carry ``model``
or ``stream`` (Bedrock takes them from the path). The answer names the
model of the path, after the sidecar's ``model_map``.
"""

from __future__ import annotations

import json
import uuid

from fakeaws import aws_error, chunk_event, event_stream, json_body


def _invalid(rec):
    try:
        body = json.loads(rec.body)
    except ValueError:
        return "the body is not JSON"
    if not isinstance(body, dict):
        return "the body is not an object"
    if not isinstance(body.get("anthropic_version"), str):
        return "anthropic_version: required string"
    if not isinstance(body.get("max_tokens"), int) or isinstance(body.get("max_tokens"), bool):
        return "max_tokens: required integer"
    if not isinstance(body.get("messages"), list):
        return "messages: required array"
    for extra in ("model", "stream"):
        if extra in body:
            return f"{extra}: Extra inputs are not permitted"
    return None


def _model(rec) -> str:
    return rec.path_params.get("modelId", "")


def invoke(fake, rec):
    problem = _invalid(rec)
    if problem:
        return aws_error(400, "ValidationException", problem)
    body = {
        "id": "msg_bdrk_" + uuid.uuid4().hex[:20],
        "type": "message",
        "role": "assistant",
        "model": _model(rec).rsplit("/", 1)[-1],
        "content": [{"type": "text", "text": fake.reply_text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": fake.input_tokens, "output_tokens": fake.output_tokens},
    }
    return json_body(body, extra_headers=fake._token_headers())


def invoke_stream(fake, rec):
    problem = _invalid(rec)
    if problem:
        return aws_error(400, "ValidationException", problem)
    msgs = [chunk_event({
        "type": "message_start",
        "message": {"id": "msg_bdrk_" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant",
                    "model": _model(rec).rsplit("/", 1)[-1], "content": [], "stop_reason": None,
                    "stop_sequence": None, "usage": {"input_tokens": fake.input_tokens, "output_tokens": 1}},
    })]
    msgs.append(chunk_event({"type": "content_block_start", "index": 0,
                             "content_block": {"type": "text", "text": ""}}))
    for part in fake.stream_parts:
        msgs.append(chunk_event({"type": "content_block_delta", "index": 0,
                                 "delta": {"type": "text_delta", "text": part}}))
    msgs.append(chunk_event({"type": "content_block_stop", "index": 0}))
    msgs.append(chunk_event({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                             "usage": {"output_tokens": fake.output_tokens}}))
    msgs.append(chunk_event({
        "type": "message_stop",
        "amazon-bedrock-invocationMetrics": {
            "inputTokenCount": fake.input_tokens,
            "outputTokenCount": fake.output_tokens,
            "invocationLatency": 42,
            "firstByteLatency": 7,
        },
    }))
    return event_stream(msgs, extra_headers=[("X-Amzn-Bedrock-Content-Type", "application/json")])


def script(fake):
    """Answer InvokeModel and InvokeModelWithResponseStream with the Messages
    API's shapes until the fake is reset."""
    fake.script(invoke, operation="InvokeModel")
    fake.script(invoke_stream, operation="InvokeModelWithResponseStream")
