"""OpenAI's Create chat completion on the fake bedrock-runtime, installed by
every ``FakeAws`` when it starts (``POST /openai/v1/chat/completions``,
operation ``ChatCompletions``). Requests are verified like every other:
SigV4 with the fake's own signer (signing name ``bedrock``), the
application's token and its own Authorization never forwarded.

Answers take their shapes from OpenAI's API reference:

- ``stream`` false: one ``chat.completion`` object, ``usage`` with
  ``prompt_tokens`` / ``completion_tokens`` / ``total_tokens``
  (``fake.input_tokens`` / ``fake.output_tokens``).
- ``stream`` true: ``text/event-stream``, one ``data: {chat.completion.chunk}``
  event per HTTP chunk: the role, then one delta per ``fake.stream_parts``
  item, then the ``finish_reason``; with ``stream_options.include_usage``
  every chunk has ``"usage": null`` and a last chunk with no choices carries
  the usage; then ``data: [DONE]``.
- A body that is not an object with a string ``model`` and an array
  ``messages``: 400 with OpenAI's ``error`` object.

The answer names the model the request named (after the sidecar's
``model_map``), as Bedrock does.
"""

from __future__ import annotations

import json
import time
import uuid

from fakeaws import Body, FakeAws, Stream

_INSTALLED = "_fake_openai_installed"


def _openai_error(status: int, message: str) -> Body:
    data = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}})
    return Body(status, [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))], data.encode())


def _chunk(cid: str, model: str, created: int, choices: list, usage=...) -> bytes:
    obj = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
           "system_fingerprint": "fp_bedrock", "choices": choices}
    if usage is not ...:
        obj["usage"] = usage
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chat_completions(fake: FakeAws, rec):
    try:
        body = json.loads(rec.body)
    except ValueError:
        return _openai_error(400, "the body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not isinstance(body.get("messages"), list):
        return _openai_error(400, "model (a string) and messages (an array) are required")
    model = body["model"]
    cid = "chatcmpl-" + uuid.uuid4().hex[:24]
    created = int(time.time())
    usage = {"prompt_tokens": fake.input_tokens, "completion_tokens": fake.output_tokens,
             "total_tokens": fake.input_tokens + fake.output_tokens}
    if body.get("stream") is not True:
        answer = {
            "id": cid, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": fake.reply_text},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage,
        }
        return Body(200, [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))],
                    json.dumps(answer).encode())
    include_usage = (body.get("stream_options") or {}).get("include_usage") is True
    u = None if include_usage else ...
    events = [_chunk(cid, model, created, [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                             "logprobs": None, "finish_reason": None}], u)]
    for part in fake.stream_parts:
        events.append(_chunk(cid, model, created, [{"index": 0, "delta": {"content": part},
                                                     "logprobs": None, "finish_reason": None}], u))
    events.append(_chunk(cid, model, created, [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}], u))
    if include_usage:
        events.append(_chunk(cid, model, created, [], usage))
    events.append(b"data: [DONE]\n\n")
    return Stream(200, [("Content-Type", "text/event-stream; charset=utf-8"), ("x-amzn-RequestId", str(uuid.uuid4()))],
                  events)


def install(fake: FakeAws):
    if getattr(fake, _INSTALLED, False):
        return
    setattr(fake, _INSTALLED, True)
    fake.route("POST", r"/openai/v1/chat/completions", "ChatCompletions", _chat_completions)
