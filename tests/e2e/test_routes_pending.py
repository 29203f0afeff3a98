"""Operations whose isolation rules have not landed yet (SPEC §5.4
SageMaker).

PENDING: until those features land they must fail closed: 403
operation_not_allowed and nothing upstream. These tests WILL CHANGE when
each feature lands: replace the matching test here with the feature's own
module (allow/deny by `sagemaker.endpoints`). Knowledge bases, agents and
Rerank have landed: see test_knowledge_base.py, test_agents.py,
test_rerank.py.
"""

from __future__ import annotations

import pytest

import harness


@pytest.fixture
def sagemaker(sidecar, mint):
    return harness.make_client(sidecar.url, "sagemaker-runtime", token=mint())


def _pending(client, call, fake):
    harness.expect_client_error(client, call, 403, "operation_not_allowed")
    harness.assert_nothing_upstream(fake)


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


def test_pending_denials_are_audited(sidecar, fake_aws, sagemaker):
    """PENDING SPEC §9: the deny is audited with its operation name."""
    try:
        sagemaker.invoke_endpoint(EndpointName="classifier", Body=b"{}")
    except Exception as e:  # noqa: BLE001
        rid = harness.request_id_of(e)
    rec = sidecar.wait_audit(rid)
    assert rec["decision"] == "deny" and rec["reason"] == "operation_not_allowed"
    assert rec["operation"] == "InvokeEndpoint"
    assert rec["tenant"] in ("acme", None)  # routing may deny before identity
