"""The tenant's guardrail is bound to every model call (docs/reference.md §5.1 `guardrail`,
§5.2): ConverseStream's stream processing mode is the tenant's
(`guardrail.stream_processing_mode`, default `sync`), `guardContent` blocks
(which narrow what the guardrail evaluates) are refused unless
`guardrail.allow_guard_content`, InvokeModelWithResponseStream's
`amazon-bedrock-guardrailConfig` follows the same rules, and
RetrieveAndGenerate(Stream), with a knowledge base or external sources,
carries the tenant's guardrail and its `model_map`ped model upstream."""

from __future__ import annotations

import json

import pytest

import harness
from harness import HAIKU, HAIKU_ARN, NOVA, converse_args

KB = "KBPOOLED01"
ACME_PROFILE = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku"
ACME_GUARDRAIL = {"guardrailId": "gr-acme", "guardrailVersion": "1"}
ACME_DOC = "s3://docs/tenants/acme/pricing.pdf"

SIDECAR_OVERRIDES = {
    "tenants": {
        # Defaults: synchronous streams, no guardContent.
        "acme": {
            "model_map": {HAIKU: ACME_PROFILE},
            "guardrail": {"id": "gr-acme", "version": "1"},
            "knowledge_base": {
                "allowed": [KB],
                "filter_key": "tenant_id",
                "allowed_source_prefixes": ["s3://docs/tenants/{tenant}/"],
            },
        },
        # Opted in to both.
        "globex": {
            "guardrail": {
                "id": "gr-globex",
                "version": "DRAFT",
                "stream_processing_mode": "async",
                "allow_guard_content": True,
            },
        },
    }
}

GUARD_TEXT = {"guardContent": {"text": {"text": "only this is checked"}}}


@pytest.fixture
def acme(sidecar, mint):
    return harness.make_client(sidecar.url, token=mint("acme", "alice"))


@pytest.fixture
def globex(sidecar, mint):
    return harness.make_client(sidecar.url, token=mint("globex", "bob"))


@pytest.fixture
def acme_kb(sidecar, mint):
    return harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint("acme", "alice"))


# --------------------------------------------------------------------------
# ConverseStream: stream processing mode
# --------------------------------------------------------------------------


def test_converse_stream_async_is_replaced_by_sync(acme, fake_aws):
    """docs/reference.md §5.1: the client's `streamProcessingMode: async` would let text
    stream out before the guardrail judged it; upstream gets the tenant's
    mode (default `sync`) with the tenant's guardrail, the client's `trace`
    kept."""
    args = converse_args()
    args["guardrailConfig"] = {
        "guardrailIdentifier": "gr-other",
        "guardrailVersion": "7",
        "trace": "enabled",
        "streamProcessingMode": "async",
    }
    resp = acme.converse_stream(**args)
    assert sum(1 for _ in resp["stream"]) == 8
    body = harness.assert_one_valid_upstream(fake_aws, "ConverseStream").json()
    assert body["guardrailConfig"] == {
        "guardrailIdentifier": "gr-acme",
        "guardrailVersion": "1",
        "trace": "enabled",
        "streamProcessingMode": "sync",
    }


def test_converse_stream_mode_is_set_when_the_client_sends_none(acme, fake_aws):
    """docs/reference.md §5.1: the mode is always set, not only when the client sent one."""
    list(acme.converse_stream(**converse_args())["stream"])
    body = harness.assert_one_valid_upstream(fake_aws, "ConverseStream").json()
    assert body["guardrailConfig"]["streamProcessingMode"] == "sync"


def test_tenant_async_mode_replaces_the_clients_sync(globex, fake_aws):
    """docs/reference.md §5.1: `guardrail.stream_processing_mode = "async"` is the
    tenant's choice, set whatever the client asks for."""
    args = converse_args(NOVA)
    args["guardrailConfig"] = {"guardrailIdentifier": "x", "guardrailVersion": "1", "streamProcessingMode": "sync"}
    list(globex.converse_stream(**args)["stream"])
    body = harness.assert_one_valid_upstream(fake_aws, "ConverseStream").json()
    assert body["guardrailConfig"] == {
        "guardrailIdentifier": "gr-globex",
        "guardrailVersion": "DRAFT",
        "streamProcessingMode": "async",
    }


# --------------------------------------------------------------------------
# guardContent
# --------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["messages", "system"])
@pytest.mark.parametrize("op", ["converse", "converse_stream"])
def test_guard_content_is_refused_with_nothing_upstream(acme, sidecar, fake_aws, op, where):
    """docs/reference.md §5.1: under a forced guardrail a `guardContent` block would make
    AWS evaluate only that block; refused (400 invalid_parameter, naming the
    member) unless the tenant allows it; nothing reaches upstream."""
    args = converse_args()
    if where == "messages":
        args["messages"][0]["content"].append(GUARD_TEXT)
    else:
        args["system"] = [{"text": "be brief"}, GUARD_TEXT]
    err = harness.expect_client_error(acme, lambda: getattr(acme, op)(**args), 400, "invalid_parameter")
    assert "guardContent" in err.response["Error"]["Message"]
    harness.assert_nothing_upstream(fake_aws)
    assert sidecar.wait_audit(harness.request_id_of(err))["reason"] == "invalid_parameter"


def test_guard_content_is_forwarded_when_the_tenant_allows_it(globex, fake_aws):
    """docs/reference.md §5.1: `guardrail.allow_guard_content = true` forwards the blocks
    as sent, with the tenant's guardrail."""
    args = converse_args(NOVA)
    args["messages"][0]["content"].append(GUARD_TEXT)
    args["system"] = [GUARD_TEXT]
    globex.converse(**args)
    body = harness.assert_one_valid_upstream(fake_aws, "Converse").json()
    assert body["messages"][0]["content"][1] == GUARD_TEXT
    assert body["system"] == [GUARD_TEXT]
    assert body["guardrailConfig"] == {"guardrailIdentifier": "gr-globex", "guardrailVersion": "DRAFT"}


# --------------------------------------------------------------------------
# InvokeModel(+stream): amazon-bedrock-guardrailConfig in the body
# --------------------------------------------------------------------------


def test_invoke_stream_async_body_mode_is_replaced(acme, fake_aws):
    """docs/reference.md §5.1: InvokeModelWithResponseStream takes its stream mode from
    the body's `amazon-bedrock-guardrailConfig.streamProcessingMode`; the
    tenant's (SYNCHRONOUS) replaces ASYNCHRONOUS, the rest of the body kept."""
    sent = {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "messages": [],
            "amazon-bedrock-guardrailConfig": {"streamProcessingMode": "ASYNCHRONOUS"}}
    list(acme.invoke_model_with_response_stream(modelId="anthropic.claude-3-haiku-20991231-v9:0",
                                                body=json.dumps(sent).encode())["body"])
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModelWithResponseStream")
    assert rec.json() == {**sent, "amazon-bedrock-guardrailConfig": {"streamProcessingMode": "SYNCHRONOUS"}}
    assert rec.header_values("x-amzn-bedrock-guardrailidentifier") == ["gr-acme"]


def test_invoke_model_input_tags_are_refused(acme, fake_aws):
    """docs/reference.md §5.1: `amazon-bedrock-guardrailConfig.tagSuffix` (input tags)
    narrows what the guardrail evaluates, like guardContent: refused."""
    sent = {"prompt": "<amazon-bedrock-guardrails-guardContent_x>hi</amazon-bedrock-guardrails-guardContent_x>",
            "amazon-bedrock-guardrailConfig": {"tagSuffix": "x"}}
    harness.expect_client_error(
        acme, lambda: acme.invoke_model(modelId=HAIKU, body=json.dumps(sent).encode()), 400, "invalid_parameter")
    harness.assert_nothing_upstream(fake_aws)


# --------------------------------------------------------------------------
# Knowledge bases: RetrieveAndGenerate(Stream), Retrieve
# --------------------------------------------------------------------------


def kb_configuration(**generation):
    cfg = {"knowledgeBaseId": KB, "modelArn": HAIKU_ARN}
    if generation:
        cfg["generationConfiguration"] = generation
    return {"type": "KNOWLEDGE_BASE", "knowledgeBaseConfiguration": cfg}


def external_configuration(**generation):
    cfg = {"modelArn": HAIKU, "sources": [{"sourceType": "S3", "s3Location": {"uri": ACME_DOC}}]}
    if generation:
        cfg["generationConfiguration"] = generation
    return {"type": "EXTERNAL_SOURCES", "externalSourcesConfiguration": cfg}


def rag_call(client, stream, config):
    if stream:
        out = client.retrieve_and_generate_stream(input={"text": "refunds?"}, retrieveAndGenerateConfiguration=config)
        list(out["stream"])
    else:
        client.retrieve_and_generate(input={"text": "refunds?"}, retrieveAndGenerateConfiguration=config)


@pytest.mark.parametrize("stream", [False, True], ids=["rag", "rag_stream"])
@pytest.mark.parametrize("kind", ["KNOWLEDGE_BASE", "EXTERNAL_SOURCES"])
def test_rag_generation_gets_the_tenant_guardrail_and_mapped_model(acme_kb, fake_aws, creds, stream, kind):
    """docs/reference.md §5.2/§5.1: the model that writes a RetrieveAndGenerate(Stream)
    answer gets the tenant's guardrail in
    `generationConfiguration.guardrailConfiguration` (created when absent)
    and its `model_map`ped model, for knowledge bases and external sources."""
    op = "RetrieveAndGenerateStream" if stream else "RetrieveAndGenerate"
    config = kb_configuration() if kind == "KNOWLEDGE_BASE" else external_configuration()
    rag_call(acme_kb, stream, config)
    rec = harness.assert_one_valid_upstream(fake_aws, op, creds["acme"].akid)
    member = "knowledgeBaseConfiguration" if kind == "KNOWLEDGE_BASE" else "externalSourcesConfiguration"
    sent = rec.json()["retrieveAndGenerateConfiguration"][member]
    assert sent["modelArn"] == ACME_PROFILE
    assert sent["generationConfiguration"] == {"guardrailConfiguration": ACME_GUARDRAIL}


@pytest.mark.parametrize("kind", ["KNOWLEDGE_BASE", "EXTERNAL_SOURCES"])
def test_rag_client_guardrail_is_replaced_and_generation_settings_kept(acme_kb, fake_aws, kind):
    """docs/reference.md §5.2: a client guardrail (another tenant's) is replaced; the
    other generation settings pass as sent."""
    generation = {
        "guardrailConfiguration": {"guardrailId": "gr-globex", "guardrailVersion": "DRAFT"},
        "inferenceConfig": {"textInferenceConfig": {"maxTokens": 64}},
        "promptTemplate": {"textPromptTemplate": "$search_results$"},
    }
    config = kb_configuration(**generation) if kind == "KNOWLEDGE_BASE" else external_configuration(**generation)
    rag_call(acme_kb, False, config)
    body = harness.assert_one_valid_upstream(fake_aws, "RetrieveAndGenerate").json()
    sent = next(iter(v for k, v in body["retrieveAndGenerateConfiguration"].items() if k != "type"))
    assert sent["generationConfiguration"] == {**generation, "guardrailConfiguration": ACME_GUARDRAIL}


def test_retrieve_gets_the_tenant_guardrail(acme_kb, fake_aws):
    """docs/reference.md §5.2: Retrieve's `guardrailConfiguration` is the tenant's too."""
    acme_kb.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "q"},
                     guardrailConfiguration={"guardrailId": "gr-other", "guardrailVersion": "3"})
    body = harness.assert_one_valid_upstream(fake_aws, "Retrieve").json()
    assert body["guardrailConfiguration"] == ACME_GUARDRAIL


def test_rag_unmapped_spelling_of_a_mapped_model_is_denied(acme_kb, fake_aws):
    """docs/reference.md §5.1: a RetrieveAndGenerate model ARN that spells the mapped model
    in a way the map does not cover (`:200k`) is 403 model_not_allowed."""
    config = kb_configuration()
    config["knowledgeBaseConfiguration"]["modelArn"] = HAIKU_ARN + ":200k"
    harness.expect_client_error(acme_kb, lambda: rag_call(acme_kb, False, config), 403, "model_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


# --------------------------------------------------------------------------
# The binding covers every guardrail member AWS's models define
# --------------------------------------------------------------------------

# Every member whose name says guardrail, per routed operation, and how the
# sidecar treats it (docs/model-calls.md "Guardrails: what each operation gets").
GUARDRAIL_MEMBERS = {
    ("bedrock-runtime", "Converse"): {"guardrailConfig": "forced"},
    ("bedrock-runtime", "ConverseStream"): {"guardrailConfig": "forced"},
    ("bedrock-runtime", "InvokeModel"): {"guardrailIdentifier": "forced", "guardrailVersion": "forced"},
    ("bedrock-runtime", "InvokeModelWithResponseStream"): {"guardrailIdentifier": "forced", "guardrailVersion": "forced"},
    ("bedrock-runtime", "CountTokens"): {},
    ("bedrock-runtime", "ApplyGuardrail"): {"guardrailIdentifier": "own only", "guardrailVersion": "own only"},
    ("bedrock-agent-runtime", "Retrieve"): {"guardrailConfiguration": "forced"},
    ("bedrock-agent-runtime", "RetrieveAndGenerate"): {
        "retrieveAndGenerateConfiguration.knowledgeBaseConfiguration.generationConfiguration.guardrailConfiguration": "forced",
        "retrieveAndGenerateConfiguration.externalSourcesConfiguration.generationConfiguration.guardrailConfiguration": "forced",
    },
    ("bedrock-agent-runtime", "RetrieveAndGenerateStream"): {
        "retrieveAndGenerateConfiguration.knowledgeBaseConfiguration.generationConfiguration.guardrailConfiguration": "forced",
        "retrieveAndGenerateConfiguration.externalSourcesConfiguration.generationConfiguration.guardrailConfiguration": "forced",
    },
    ("bedrock-agent-runtime", "Rerank"): {},
    # Only tunes how often the agent's own guardrail runs on a stream.
    ("bedrock-agent-runtime", "InvokeAgent"): {"streamingConfigurations.applyGuardrailInterval": "agent's own"},
}


def guardrail_members(service: str, operation: str) -> set:
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    found = set()

    def walk(shape, path, seen):
        for name, member in getattr(shape, "members", {}).items():
            p = f"{path}.{name}" if path else name
            if "guardrail" in name.lower():
                found.add(p)
                continue
            target = member
            while target.type_name in ("list", "map"):
                target = target.member if target.type_name == "list" else target.value
            if target.type_name == "structure" and target.name not in seen:
                walk(target, p, seen | {target.name})

    walk(model.operation_model(operation).input_shape, "", frozenset())
    return found


@pytest.mark.parametrize("service,operation", sorted(GUARDRAIL_MEMBERS))
def test_every_guardrail_member_of_a_routed_operation_is_accounted_for(service, operation):
    """docs/reference.md §5.1: a guard for SDK upgrades, not a reproduction: every member
    of a routed operation that AWS's model names `*guardrail*` is one the
    sidecar binds (or one that has nothing to bind). A new one fails here
    until it is bound and documented."""
    assert guardrail_members(service, operation) == set(GUARDRAIL_MEMBERS[(service, operation)])
