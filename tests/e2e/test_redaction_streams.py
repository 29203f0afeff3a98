"""Redaction of AWS event streams and of every other response kind (docs/reference.md §7,
`[redaction]` in §3), end to end through boto3.

Each stream the app receives is parsed by botocore, which checks every
prelude and message CRC: a stream that parses is a stream that was
re-encoded correctly. Identity ids repeated by a model, split across deltas
or chunks, or found in a knowledge-base chunk never reach the app; text that
cannot begin a match goes through unchanged and without delay."""

from __future__ import annotations

import base64
import json

import botocore.exceptions
import pytest

import fake_sagemaker
import harness
from fakeaws import Body, json_body, agent_chunk_event, agent_reply, chunk_event, encode_event_message, event, event_stream, kb_result, retrieve_reply
from harness import HAIKU, HAIKU_ARN

IDENTITY_ID = "us-west-2:12345678-abcd-1234-462b-123456789abc"
OTHER_ID = "eu-central-1:0badc0de-0000-4000-8000-00000000beef"
AGENT, ALIAS = "AGENT12345", "ALIAS12345"
KB = "KBPOOLED01"

SIDECAR_OVERRIDES = {
    "redaction": {
        # The default identity-id pattern (docs/reference.md §3) plus a literal one.
        "patterns": [
            r"(?:us|eu|ap|sa|ca|me|af|il|mx)(?:-gov)?-[a-z]+-\d:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            r"internal-user-\d{6}",
        ],
        "replacement": "[redacted]",
        "strip_response_headers": ["x-amzn-bedrock-trace-*", "x-internal-debug"],
    },
    "tenants": {
        "acme": {
            "agents": {"allowed": [f"{AGENT}/{ALIAS}"], "session_attributes": {"tenantId": "{tenant}"}},
            "knowledge_base": {"allowed": [KB], "filter_key": "tenant_id",
                               "allowed_source_prefixes": ["s3://docs/tenants/{tenant}/"]},
            "sagemaker": {"endpoints": {"classifier": "acme-classifier"}},
        },
    },
}


@pytest.fixture
def acme(sidecar, mint):
    return harness.make_client(sidecar.url, token=mint("acme", "alice"))


@pytest.fixture
def acme_agent(sidecar, mint):
    return harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint("acme", "alice"))


def redactions_metric(sc) -> float:
    """`tenantgate_redactions_total` (docs/reference.md §9), 0 before the first match."""
    text = sc.admin("/metrics").body.decode()
    hits = [line for line in text.splitlines() if line.startswith("tenantgate_redactions_total ")]
    return float(hits[0].rsplit(" ", 1)[1]) if hits else 0.0


def deltas_of(events) -> list[str]:
    return [e["contentBlockDelta"]["delta"]["text"] for e in events if "contentBlockDelta" in e]


def kinds_of(events) -> list[str]:
    return [next(iter(e)) for e in events]


def test_id_split_over_three_converse_stream_deltas_is_caught(acme, sidecar, fake_aws):
    """docs/reference.md §7: a match split across consecutive ConverseStream deltas is
    caught; the event sequence is the one upstream sent, every CRC valid."""
    a, b, c = IDENTITY_ID[:10], IDENTITY_ID[10:25], IDENTITY_ID[25:]
    fake_aws.stream_parts = [f"Your id is {a}", b, f"{c}, keep it safe."]
    before = redactions_metric(sidecar)
    resp = acme.converse_stream(**harness.converse_args())
    events = list(resp["stream"])  # botocore checks every CRC
    text = "".join(deltas_of(events))
    assert text == "Your id is [redacted], keep it safe."
    assert kinds_of(events) == (["messageStart"] + ["contentBlockDelta"] * 3
                                + ["contentBlockStop", "messageStop", "metadata"])
    assert events[-1]["metadata"]["usage"]["outputTokens"] == fake_aws.output_tokens
    rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"]
    rec = sidecar.wait_audit(rid)
    assert rec["redactions"] == 1
    assert rec["output_tokens"] == fake_aws.output_tokens
    assert redactions_metric(sidecar) == before + 1


def test_text_that_cannot_begin_a_match_is_not_held(acme, fake_aws):
    """docs/reference.md §7 hold-back: these deltas end in characters no match can start
    with, so each arrives at once, whole, in its own event."""
    fake_aws.stream_parts = ["Hello", ", world.", " 42 or", " 7!"]
    events = list(acme.converse_stream(**harness.converse_args())["stream"])
    assert deltas_of(events) == ["Hello", ", world.", " 42 or", " 7!"]


def test_a_possible_match_start_waits_for_the_next_delta_only(acme, fake_aws):
    """"Thus" ends in "us", which could begin "us-west-2:…": its event waits
    for the next delta, which rules the match out; events are never cut."""
    fake_aws.stream_parts = ["Thus", " far in us", "-west-2 all is well"]
    events = list(acme.converse_stream(**harness.converse_args())["stream"])
    assert deltas_of(events) == ["Thus", " far in us", "-west-2 all is well"]


def test_held_delta_is_sent_when_the_block_ends(acme, fake_aws):
    """A block ending while a delta waits: the stop decides it, it is sent
    as it was, before contentBlockStop, and nothing is added."""
    fake_aws.stream_parts = ["The region is us"]
    events = list(acme.converse_stream(**harness.converse_args())["stream"])
    assert deltas_of(events) == ["The region is us"]
    assert kinds_of(events)[-4:] == ["contentBlockDelta", "contentBlockStop", "messageStop", "metadata"]


def test_id_in_an_invoke_model_stream_chunk_is_redacted(acme, sidecar, fake_aws):
    """docs/reference.md §7: base64 `bytes` of InvokeModelWithResponseStream chunks are
    decoded, redacted at the same JSON path across chunks, re-encoded."""
    fake_aws.stream_parts = [f"id {IDENTITY_ID[:20]}", f"{IDENTITY_ID[20:]} and internal-user-", "123456 end"]
    resp = acme.invoke_model_with_response_stream(modelId=HAIKU, body=b"{}")
    chunks = [json.loads(e["chunk"]["bytes"]) for e in resp["body"]]
    text = "".join(c["delta"]["text"] for c in chunks if c.get("type") == "content_block_delta")
    assert text == "id [redacted] and [redacted] end"
    assert chunks[0]["type"] == "message_start"
    assert chunks[-1]["amazon-bedrock-invocationMetrics"]["outputTokenCount"] == fake_aws.output_tokens
    rec = sidecar.wait_audit(resp["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])
    assert rec["redactions"] == 2


def test_id_in_invoke_agent_chunks_is_redacted(acme_agent, sidecar, fake_aws):
    """docs/reference.md §7: InvokeAgent chunk bytes, split across chunks."""
    fake_aws.stream_parts = [f"The caller is {OTHER_ID[:7]}", OTHER_ID[7:30], f"{OTHER_ID[30:]}."]
    out = acme_agent.invoke_agent(agentId=AGENT, agentAliasId=ALIAS, sessionId="chat-1", inputText="who am I?")
    text = b"".join(e["chunk"]["bytes"] for e in out["completion"] if "chunk" in e)
    assert text == b"The caller is [redacted]."
    rec = sidecar.wait_audit(out["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])
    assert rec["redactions"] == 1


def test_id_in_a_retrieve_chunk_is_redacted(acme_agent, sidecar, fake_aws):
    """docs/reference.md §7: a knowledge-base chunk that contains an identity id."""
    fake_aws.script(retrieve_reply([kb_result("s3://docs/tenants/acme/a.pdf", text=f"owner {IDENTITY_ID} wrote")]),
                    operation="Retrieve")
    out = acme_agent.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "owner"})
    res = out["retrievalResults"]
    assert [r["content"]["text"] for r in res] == ["owner [redacted] wrote"]
    assert res[0]["location"]["s3Location"]["uri"] == "s3://docs/tenants/acme/a.pdf"
    assert sidecar.wait_audit(out["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])["redactions"] == 1


def test_rag_stream_answer_is_redacted_and_still_parses(acme_agent, fake_aws):
    """docs/reference.md §7: RetrieveAndGenerateStream (judged whole for citations, then
    redacted frame by frame)."""
    fake_aws.stream_parts = [f"Ask {IDENTITY_ID[:5]}", f"{IDENTITY_ID[5:]} about it"]
    out = acme_agent.retrieve_and_generate_stream(
        input={"text": "q"},
        retrieveAndGenerateConfiguration={
            "type": "KNOWLEDGE_BASE",
            "knowledgeBaseConfiguration": {"knowledgeBaseId": KB, "modelArn": HAIKU_ARN},
        },
    )
    text = "".join(e["output"]["text"] for e in out["stream"] if "output" in e)
    assert text == "Ask [redacted] about it"


def test_sagemaker_payload_parts_are_redacted_as_text(sidecar, mint, fake_aws):
    """docs/reference.md §7: PayloadPart bytes as UTF-8 text, a match split across parts."""
    fake_sagemaker.install(fake_aws)
    sm = harness.make_client(sidecar.url, "sagemaker-runtime", token=mint("acme", "alice"))
    fake_aws.stream_parts = ["{\"generated_text\": \"user ", IDENTITY_ID[:30].encode(), IDENTITY_ID[30:] + " ✓\"}"]
    resp = sm.invoke_endpoint_with_response_stream(EndpointName="classifier", Body=b"{}", ContentType="application/json")
    body = b"".join(e["PayloadPart"]["Bytes"] for e in resp["Body"])
    assert json.loads(body) == {"generated_text": "user [redacted] ✓"}


def test_stream_without_matches_is_forwarded_byte_for_byte(sidecar, mint, fake_aws):
    """docs/reference.md §7: with nothing that matches (or begins to), the client gets
    exactly the bytes upstream sent, frame for frame."""
    msgs = [event("messageStart", {"role": "assistant"})]
    msgs += [event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": t}}) for t in ["Hello", " world", "."]]
    msgs += [event("contentBlockStop", {"contentBlockIndex": 0}), event("messageStop", {"stopReason": "end_turn"})]
    fake_aws.script(lambda fake, rec: event_stream(msgs), operation="ConverseStream")
    resp = sidecar.request("POST", f"/model/{HAIKU}/converse-stream", b'{"messages":[]}', token=mint())
    assert resp.status == 200
    assert resp.body == b"".join(msgs)


def test_corrupt_upstream_frame_ends_the_stream_with_an_error_event(acme, sidecar, fake_aws):
    """docs/reference.md §7 robustness: a frame with a bad CRC from upstream is never
    forwarded; the events before it arrive, then boto3 raises a modelled
    stream error, and the audit record says why."""
    good = event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "fine so far"}})
    bad = bytearray(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": f"leak {IDENTITY_ID}"}}))
    bad[-6] ^= 0xFF  # payload byte flipped: message CRC no longer matches
    msgs = [event("messageStart", {"role": "assistant"}), good, bytes(bad),
            event("contentBlockStop", {"contentBlockIndex": 0})]
    fake_aws.script(lambda fake, rec: event_stream(msgs), operation="ConverseStream")
    resp = acme.converse_stream(**harness.converse_args())
    seen, err = harness.events_until_stream_error(resp["stream"])
    assert err.response["Error"]["Code"] == "serviceUnavailableException"
    assert deltas_of(seen) == ["fine so far"]
    rec = sidecar.wait_audit(resp["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])
    assert rec["stream_error"] == "upstream_stream_corrupt"
    assert IDENTITY_ID not in sidecar.stdout_text() and IDENTITY_ID not in sidecar.stderr_text()


def test_oversized_frame_from_upstream_is_refused(acme, sidecar, fake_aws):
    """docs/reference.md §7 robustness: a frame announcing more than the maximum is an
    error event at once, before anything of it is buffered."""
    huge = (64 * 1024 * 1024).to_bytes(4, "big") + b"\x00" * 12
    msgs = [event("messageStart", {"role": "assistant"}), huge]
    fake_aws.script(lambda fake, rec: event_stream(msgs), operation="ConverseStream")
    resp = acme.converse_stream(**harness.converse_args())
    with pytest.raises(botocore.exceptions.EventStreamError):
        list(resp["stream"])
    rec = sidecar.wait_audit(resp["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])
    assert rec["stream_error"] == "upstream_stream_corrupt"


def test_truncated_upstream_stream_ends_with_an_error_event(acme_agent, sidecar, fake_aws):
    """docs/reference.md §7 robustness: upstream ends inside a frame. The chunk that
    waited (it ends in a possible id start) is dropped, never sent
    unredacted."""
    whole = chunk_event_bytes(f"partial {IDENTITY_ID[:12]}")
    msgs = [whole, event("chunk", {"bytes": base64.b64encode(b"x").decode()})[:20]]
    fake_aws.script(lambda fake, rec: event_stream(msgs), operation="InvokeAgent")
    out = acme_agent.invoke_agent(agentId=AGENT, agentAliasId=ALIAS, sessionId="chat-2", inputText="hi")
    got, err = harness.events_until_stream_error(out["completion"])
    assert err.response["Error"]["Code"] == "badGatewayException"
    assert b"".join(e["chunk"]["bytes"] for e in got if "chunk" in e) == b""
    rec = sidecar.wait_audit(out["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])
    assert rec["stream_error"] == "upstream_stream_corrupt"


def chunk_event_bytes(text: str) -> bytes:
    return event("chunk", {"bytes": base64.b64encode(text.encode()).decode()})


def test_strip_response_headers_exact_and_prefix(acme, fake_aws):
    """docs/reference.md §7 / §3 strip_response_headers: exact names and `prefix*`,
    case-insensitive; other upstream headers pass."""
    def reply(fake, rec):
        body = json.dumps({"output": {"message": {"role": "assistant", "content": [{"text": "ok"}]}},
                           "stopReason": "end_turn",
                           "usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                           "metrics": {"latencyMs": 1}}).encode()
        return Body(200, [("Content-Type", "application/json"), ("X-Amzn-Bedrock-Trace-Id", "t-1"),
                          ("x-amzn-bedrock-trace-span", "s-1"), ("X-Internal-Debug", IDENTITY_ID),
                          ("x-amzn-RequestId", "r-1"), ("x-kept", "yes")], body)
    fake_aws.script(reply, operation="Converse")
    out = acme.converse(**harness.converse_args())
    h = out["ResponseMetadata"]["HTTPHeaders"]
    assert "x-amzn-bedrock-trace-id" not in h and "x-amzn-bedrock-trace-span" not in h
    assert "x-internal-debug" not in h
    assert h["x-kept"] == "yes"


def test_non_utf8_sagemaker_stream_passes_and_text_still_redacted(sidecar, mint, fake_aws):
    """docs/reference.md §7 robustness: binary PayloadParts are not text; they pass
    unchanged, and an id in a later text part is still redacted."""
    fake_sagemaker.install(fake_aws)
    sm = harness.make_client(sidecar.url, "sagemaker-runtime", token=mint("acme", "alice"))
    binary = bytes([0xff, 0xfe, 0x00, 0x80]) * 64
    fake_aws.stream_parts = [binary, f" then {IDENTITY_ID}"]
    resp = sm.invoke_endpoint_with_response_stream(EndpointName="classifier", Body=b"{}", ContentType="application/json")
    body = b"".join(e["PayloadPart"]["Bytes"] for e in resp["Body"])
    assert body == binary + b" then [redacted]"


def test_plain_event_exception_from_upstream_is_redacted(acme, fake_aws):
    """docs/reference.md §7: modelled exceptions in the stream carry JSON strings too."""
    msgs = [event("messageStart", {"role": "assistant"}),
            encode_event_message([(":exception-type", "validationException"), (":content-type", "application/json"),
                                  (":message-type", "exception")],
                                 json.dumps({"message": f"bad input from {IDENTITY_ID}"}).encode())]
    fake_aws.script(lambda fake, rec: event_stream(msgs), operation="ConverseStream")
    with pytest.raises(botocore.exceptions.EventStreamError) as err:
        list(acme.converse_stream(**harness.converse_args())["stream"])
    assert err.value.response["Error"]["Code"] == "validationException"
    assert IDENTITY_ID not in str(err.value)
    assert "[redacted]" in err.value.response["Error"]["Message"]


def test_case_insensitive_pattern_redacts_converse_and_converse_stream(start_sidecar_fn, mint, fake_aws):
    """docs/reference.md §3 `redaction.patterns` are ordinary regular expressions: a
    `(?i)` pattern (with a Unicode class and `\\b`) starts, and redacts every
    spelling of a match in a Converse answer and in ConverseStream deltas,
    also when a match is split across deltas (the stream hold-back's
    automaton is case-insensitive too)."""
    sc = start_sidecar_fn({"redaction": {"patterns": [r"(?i)\bacct-[\p{L}\d]{6}\b"], "replacement": "[redacted]"}})
    client = harness.make_client(sc.url, token=mint("acme", "alice"))

    fake_aws.reply_text = "Accounts ACCT-AB12CD, acct-ab12cd and Acct-Äb12cd; not xacct-ab12cd."
    out = client.converse(**harness.converse_args())
    text = out["output"]["message"]["content"][0]["text"]
    assert text == "Accounts [redacted], [redacted] and [redacted]; not xacct-ab12cd."
    assert sc.wait_audit(harness.request_id_of(out))["redactions"] == 3

    fake_aws.stream_parts = ["Your account is AC", "cT-Ab", "12Cd, and ", "acct-zz99yy."]
    resp = client.converse_stream(**harness.converse_args())
    events = list(resp["stream"])  # botocore checks every CRC
    assert "".join(deltas_of(events)) == "Your account is [redacted], and [redacted]."
    rid = resp["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"]
    assert sc.wait_audit(rid)["redactions"] == 2


def _files_event(files) -> bytes:
    return event("files", {"files": [
        {"name": n, "type": t, "bytes": base64.b64encode(b).decode()} for n, t, b in files
    ]})


def test_id_in_agent_text_files_is_redacted_binary_passes(acme_agent, sidecar, fake_aws):
    """InvokeAgent `files` events (code interpreter output): a file of a text
    media type is decoded, redacted and re-encoded; a binary one passes as it
    is (docs/security.md "Redaction": a documented limit)."""
    png = b"\x89PNG\r\n\x1a\n" + OTHER_ID.encode() + b"\x00\xff"
    fake_aws.script(
        agent_reply(parts=("done",), before=[_files_event([
            ("report.csv", "text/csv", f"user,{OTHER_ID}\n".encode()),
            ("data.json", "application/json", json.dumps({"id": OTHER_ID}).encode()),
            ("chart.png", "image/png", png),
        ])]),
        operation="InvokeAgent",
    )
    out = acme_agent.invoke_agent(agentId=AGENT, agentAliasId=ALIAS, sessionId="chat-1", inputText="export")
    files = [f for e in out["completion"] if "files" in e for f in e["files"]["files"]]
    by_name = {f["name"]: f["bytes"] for f in files}
    assert by_name["report.csv"] == b"user,[redacted]\n"
    assert json.loads(by_name["data.json"]) == {"id": "[redacted]"}
    assert by_name["chart.png"] == png
    rec = sidecar.wait_audit(out["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])
    assert rec["redactions"] == 2, rec


def test_id_split_around_a_ping_chunk_is_redacted(acme, sidecar, fake_aws):
    """Anthropic-style InvokeModelWithResponseStream: a `{"type":"ping"}`
    chunk between two text deltas of one id does not end the held text."""
    def delta(text):
        return chunk_event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})
    msgs = [
        chunk_event({"type": "message_start", "message": {"role": "assistant"}}),
        delta(f"id {IDENTITY_ID[:20]}"),
        chunk_event({"type": "ping"}),
        delta(f"{IDENTITY_ID[20:]} end"),
        chunk_event({"type": "content_block_stop", "index": 0}),
        chunk_event({"type": "message_stop", "amazon-bedrock-invocationMetrics": {"outputTokenCount": 3}}),
    ]
    fake_aws.script(lambda fake, rec: event_stream(msgs), operation="InvokeModelWithResponseStream")
    resp = acme.invoke_model_with_response_stream(modelId=HAIKU, body=b"{}")
    chunks = [json.loads(e["chunk"]["bytes"]) for e in resp["body"]]
    text = "".join(c["delta"]["text"] for c in chunks if c.get("type") == "content_block_delta")
    assert text == "id [redacted] end"
    kinds = [c["type"] for c in chunks]
    assert kinds.index("ping") < kinds.index("content_block_stop"), kinds
    assert kinds[-2:] == ["content_block_stop", "message_stop"], kinds
    rec = sidecar.wait_audit(resp["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])
    assert rec["redactions"] == 1, rec


def test_id_split_around_an_agent_trace_is_redacted(acme_agent, sidecar, fake_aws):
    """InvokeAgent: a `trace` event between two chunks of one id does not
    end the held text."""
    trace = event("trace", {"agentId": AGENT, "agentAliasId": ALIAS, "sessionId": "s",
                            "trace": {"orchestrationTrace": {"rationale": {"text": "thinking"}}}})
    fake_aws.script(
        lambda fake, rec: event_stream([
            agent_chunk_event(f"The caller is {OTHER_ID[:12]}"), trace, agent_chunk_event(f"{OTHER_ID[12:]}."),
        ], extra_headers=[("x-amz-bedrock-agent-session-id", rec.path_params.get("sessionId", ""))]),
        operation="InvokeAgent",
    )
    out = acme_agent.invoke_agent(agentId=AGENT, agentAliasId=ALIAS, sessionId="chat-1", inputText="who am I?",
                                  enableTrace=True)
    events = list(out["completion"])
    text = b"".join(e["chunk"]["bytes"] for e in events if "chunk" in e)
    assert text == b"The caller is [redacted]."
    assert any("trace" in e for e in events)
    rec = sidecar.wait_audit(out["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])
    assert rec["redactions"] == 1, rec


def model_stream(fake_aws, inners):
    fake_aws.script(lambda fake, rec: event_stream([chunk_event(i) for i in inners]),
                    operation="InvokeModelWithResponseStream", times=1)


def test_id_split_in_nova_tool_input_and_openai_reasoning_is_redacted(acme, sidecar, fake_aws):
    """Finding: string fields outside any list of text keys. A Nova-style
    `contentBlockDelta.delta.toolUse.input` and an OpenAI-style
    `choices[].delta.reasoning_content` split across chunks are one text per
    JSON path (and block or choice index)."""
    a, b = IDENTITY_ID[:17], IDENTITY_ID[17:]
    nova = lambda t: {"contentBlockDelta": {"delta": {"toolUse": {"input": t}}, "contentBlockIndex": 1}}
    oai = lambda i, t: {"id": "c1", "object": "chat.completion.chunk",
                        "choices": [{"index": i, "delta": {"reasoning_content": t}, "finish_reason": None}]}
    final = {"amazon-bedrock-invocationMetrics": {"inputTokenCount": 3, "outputTokenCount": 4}}
    model_stream(fake_aws, [nova('{"user":"' + a), nova(b + '"}'), final])
    resp = acme.invoke_model_with_response_stream(modelId=HAIKU, body=b"{}")
    chunks = [json.loads(e["chunk"]["bytes"]) for e in resp["body"]]
    assert "".join(c["contentBlockDelta"]["delta"]["toolUse"]["input"] for c in chunks[:2]) == '{"user":"[redacted]"}'
    assert sidecar.wait_audit(resp["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])["redactions"] == 1
    # Choice 1 streams between choice 0's halves; both are caught.
    model_stream(fake_aws, [oai(0, f"think {a}"), oai(1, f"other {a}"), oai(0, f"{b} ok"), oai(1, f"{b}!"), final])
    resp = acme.invoke_model_with_response_stream(modelId=HAIKU, body=b"{}")
    chunks = [json.loads(e["chunk"]["bytes"]) for e in resp["body"]]
    by_choice = {0: "", 1: ""}
    for c in chunks[:4]:
        ch = c["choices"][0]
        by_choice[ch["index"]] += ch["delta"]["reasoning_content"]
    assert by_choice == {0: "think [redacted] ok", 1: "other [redacted]!"}
    assert [c.get("object") for c in chunks] == ["chat.completion.chunk"] * 4 + [None]
    assert sidecar.wait_audit(resp["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])["redactions"] == 2


def test_match_longer_than_512_bytes_split_over_deltas_is_redacted(acme, sidecar, fake_aws):
    """Finding: a match longer than any fixed hold-back window. The default
    pattern's `[a-z]+` lets a "region" run to 700 bytes; split into 10-byte
    deltas it is still one match, and the client gets the same number of
    events."""
    long_id = "us-" + "q" * 700 + "-1:12345678-abcd-1234-462b-123456789abc"
    text = f"see {long_id} end"
    fake_aws.stream_parts = [text[i:i + 10] for i in range(0, len(text), 10)]
    resp = acme.converse_stream(**harness.converse_args())
    events = list(resp["stream"])
    assert "".join(deltas_of(events)) == "see [redacted] end"
    assert len(deltas_of(events)) == len(fake_aws.stream_parts)
    assert sidecar.wait_audit(resp["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])["redactions"] == 1


def test_a_would_be_match_that_never_ends_stops_the_stream_and_sends_nothing_of_it(acme, sidecar, fake_aws):
    """Fail closed at the hold-back bound: "us-" followed by 20 KiB of
    lowercase letters keeps a possible match open past 16 KiB. The stream ends
    with a modelled error event; none of the undecided text reaches the app."""
    fake_aws.stream_parts = ["fine. us-"] + ["z" * 1000] * 20 + [" end"]
    resp = acme.converse_stream(**harness.converse_args())
    seen, err = harness.events_until_stream_error(resp["stream"])
    assert err.response["Error"]["Code"] == "serviceUnavailableException"
    assert "z" * 100 not in "".join(deltas_of(seen))
    assert "us-" not in "".join(deltas_of(seen))
    rec = sidecar.wait_audit(resp["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])
    assert rec["stream_error"] == "redaction_hold_exceeded"


def test_id_split_around_rag_citations_is_redacted(acme_agent, sidecar, fake_aws):
    """RetrieveAndGenerateStream: a citation between two output events of
    one id does not end the text; events keep their order."""
    cite = event("citation", {"citation": {"generatedResponsePart": {"textResponsePart": {"text": "x"}},
                                           "retrievedReferences": []}})
    msgs = [event("output", {"text": f"Ask {IDENTITY_ID[:14]}"}), cite, event("output", {"text": f"{IDENTITY_ID[14:]}."})]
    fake_aws.script(lambda fake, rec: event_stream(msgs), operation="RetrieveAndGenerateStream")
    out = acme_agent.retrieve_and_generate_stream(
        input={"text": "q"},
        retrieveAndGenerateConfiguration={"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": {
            "knowledgeBaseId": KB, "modelArn": HAIKU_ARN}})
    events = list(out["stream"])
    assert [next(iter(e)) for e in events] == ["output", "citation", "output"]
    assert "".join(e["output"]["text"] for e in events if "output" in e) == "Ask [redacted]."
    rec = sidecar.wait_audit(out["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])
    assert rec["redactions"] == 1, rec


def test_id_as_base64_text_in_an_invoke_model_answer_is_redacted(acme, sidecar, fake_aws):
    """Finding: an id inside base64 in an InvokeModel JSON answer. A string
    that is standard base64 of UTF-8 text is decoded, redacted and encoded
    again; binary base64 passes unchanged."""
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(40))).decode()
    answer = {"output": base64.b64encode(f"user {IDENTITY_ID} done".encode()).decode(), "image": png}
    fake_aws.script(lambda fake, rec: json_body(answer), operation="InvokeModel")
    resp = acme.invoke_model(modelId=HAIKU, body=b"{}")
    got = json.loads(resp["body"].read())
    assert base64.b64decode(got["output"]) == b"user [redacted] done"
    assert got["image"] == png
    assert sidecar.wait_audit(resp["ResponseMetadata"]["HTTPHeaders"]["x-tenantgate-request-id"])["redactions"] == 1


def test_id_in_a_duplicate_member_of_a_stream_event_never_reaches_the_app(acme, sidecar, mint, fake_aws):
    """Hostile upstream JSON: a delta with two `text` members, the first an
    identity id. A parser keeps the last one, but the bytes of the first must
    not reach the app either (checked on the raw HTTP body, and through
    boto3)."""
    dup = ('{"contentBlockIndex":0,"delta":{"text":"' + IDENTITY_ID + '","text":"hi"}}').encode()
    msgs = [event("messageStart", {"role": "assistant"}),
            encode_event_message([(":event-type", "contentBlockDelta"), (":content-type", "application/json"),
                                  (":message-type", "event")], dup),
            event("contentBlockStop", {"contentBlockIndex": 0})]
    fake_aws.script(lambda fake, rec: event_stream(msgs), operation="ConverseStream")
    resp = sidecar.request("POST", f"/model/{HAIKU}/converse-stream", b'{"messages":[]}', token=mint())
    assert resp.status == 200
    assert IDENTITY_ID[10:].encode() not in resp.body
    events = list(acme.converse_stream(**harness.converse_args())["stream"])
    assert deltas_of(events) == ["hi"]
