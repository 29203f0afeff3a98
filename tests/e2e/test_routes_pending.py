"""Operations whose isolation rules have not landed yet (SPEC §5.2 knowledge
bases, §5.3 agents, §5.4 SageMaker, §5.1 Rerank).

PENDING: until those features land they must fail closed: 403
operation_not_allowed and nothing upstream. These tests WILL CHANGE when
each feature lands: replace the matching test here with the feature's own
module (allow/deny by `knowledge_base.allowed`, `agents.allowed`,
`sagemaker.endpoints`, rerank model globs).
"""

from __future__ import annotations

import pytest

import harness

RERANK_MODEL_ARN = "arn:aws:bedrock:us-west-2::foundation-model/amazon.rerank-v1:0"


@pytest.fixture
def agent_rt(sidecar, mint):
    return harness.make_client(sidecar.url, "bedrock-agent-runtime", token=mint())


@pytest.fixture
def sagemaker(sidecar, mint):
    return harness.make_client(sidecar.url, "sagemaker-runtime", token=mint())


def _pending(client, call, fake):
    harness.expect_client_error(client, call, 403, "operation_not_allowed")
    harness.assert_nothing_upstream(fake)


def test_retrieve_pending(agent_rt, fake_aws):
    """PENDING SPEC §5.2 Retrieve: for now 403 operation_not_allowed."""
    _pending(agent_rt, lambda: agent_rt.retrieve(knowledgeBaseId="KBPOOLED01", retrievalQuery={"text": "q"}), fake_aws)


def test_retrieve_and_generate_pending(agent_rt, fake_aws):
    """PENDING SPEC §5.2 RetrieveAndGenerate."""
    _pending(
        agent_rt,
        lambda: agent_rt.retrieve_and_generate(
            input={"text": "q"},
            retrieveAndGenerateConfiguration={
                "type": "KNOWLEDGE_BASE",
                "knowledgeBaseConfiguration": {"knowledgeBaseId": "KBPOOLED01", "modelArn": harness.HAIKU_ARN},
            },
        ),
        fake_aws,
    )


def test_retrieve_and_generate_stream_pending(agent_rt, fake_aws):
    """PENDING SPEC §5.2 RetrieveAndGenerateStream."""
    _pending(
        agent_rt,
        lambda: agent_rt.retrieve_and_generate_stream(
            input={"text": "q"},
            retrieveAndGenerateConfiguration={
                "type": "KNOWLEDGE_BASE",
                "knowledgeBaseConfiguration": {"knowledgeBaseId": "KBPOOLED01", "modelArn": harness.HAIKU_ARN},
            },
        ),
        fake_aws,
    )


def test_invoke_agent_pending(agent_rt, fake_aws):
    """PENDING SPEC §5.3 InvokeAgent."""
    _pending(
        agent_rt,
        lambda: agent_rt.invoke_agent(agentId="AGENT12345", agentAliasId="ALIAS6789", sessionId="s-1", inputText="hi"),
        fake_aws,
    )


def test_rerank_pending(agent_rt, fake_aws):
    """PENDING SPEC §5.1 Rerank."""
    _pending(
        agent_rt,
        lambda: agent_rt.rerank(
            queries=[{"type": "TEXT", "textQuery": {"text": "q"}}],
            sources=[{"type": "INLINE", "inlineDocumentSource": {"type": "TEXT", "textDocument": {"text": "d"}}}],
            rerankingConfiguration={
                "type": "BEDROCK_RERANKING_MODEL",
                "bedrockRerankingConfiguration": {"modelConfiguration": {"modelArn": RERANK_MODEL_ARN}},
            },
        ),
        fake_aws,
    )


def test_invoke_endpoint_pending(sagemaker, fake_aws):
    """PENDING SPEC §5.4 InvokeEndpoint."""
    _pending(sagemaker, lambda: sagemaker.invoke_endpoint(EndpointName="classifier", Body=b"{}"), fake_aws)


def test_invoke_endpoint_stream_pending(sagemaker, fake_aws):
    """PENDING SPEC §5.4 InvokeEndpointWithResponseStream."""
    _pending(
        sagemaker,
        lambda: sagemaker.invoke_endpoint_with_response_stream(EndpointName="classifier", Body=b"{}"),
        fake_aws,
    )


def test_invoke_endpoint_async_pending(sagemaker, fake_aws):
    """PENDING SPEC §5.4 InvokeEndpointAsync."""
    _pending(
        sagemaker,
        lambda: sagemaker.invoke_endpoint_async(EndpointName="classifier", InputLocation="s3://async-in/acme/x.json"),
        fake_aws,
    )


def test_pending_denials_are_audited(sidecar, fake_aws, agent_rt):
    """PENDING SPEC §9: the deny is audited with its operation name."""
    try:
        agent_rt.retrieve(knowledgeBaseId="KBPOOLED01", retrievalQuery={"text": "q"})
    except Exception as e:  # noqa: BLE001
        rid = harness.request_id_of(e)
    rec = sidecar.wait_audit(rid)
    assert rec["decision"] == "deny" and rec["reason"] == "operation_not_allowed"
    assert rec["operation"] == "Retrieve"
    assert rec["tenant"] in ("acme", None)  # routing may deny before identity
