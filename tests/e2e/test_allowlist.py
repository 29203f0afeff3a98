"""Model allowlists (docs/reference.md §5.1, glob rules in §3): a model outside the
tenant's `models` globs is 403 model_not_allowed and nothing reaches AWS.

acme:   anthropic.claude-3-haiku-*, amazon.titan-embed-text-v2:0,
        arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-haiku-*
globex: amazon.nova-*, meta.llama3-?-8b-instruct-v1:0
"""

from __future__ import annotations

import json

import pytest

import harness
from harness import HAIKU, NOVA, converse_args


@pytest.fixture
def acme(sidecar, mint):
    return harness.make_client(sidecar.url, token=mint("acme", "alice"))


@pytest.fixture
def globex(sidecar, mint):
    return harness.make_client(sidecar.url, token=mint("globex", "gary"))


def _denied(client, fake, model, op="converse"):
    calls = {
        "converse": lambda: client.converse(**converse_args(model)),
        "converse_stream": lambda: client.converse_stream(**converse_args(model)),
        "invoke": lambda: client.invoke_model(modelId=model, body=b"{}"),
        "invoke_stream": lambda: client.invoke_model_with_response_stream(modelId=model, body=b"{}"),
        "count_tokens": lambda: client.count_tokens(
            modelId=model, input={"converse": {"messages": converse_args()["messages"]}}
        ),
    }
    err = harness.expect_client_error(client, calls[op], 403, "model_not_allowed")
    harness.assert_nothing_upstream(fake)
    return err


@pytest.mark.parametrize(
    "model",
    [
        "anthropic.claude-3-haiku-20240307-v1:0",
        "anthropic.claude-3-haiku-20991231-v9:0",  # glob `*`
        "amazon.titan-embed-text-v2:0",  # exact entry
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",  # ARN -> id
        "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
    ],
)
def test_allowed_models(acme, fake_aws, creds, model):
    """docs/reference.md §5.1: ids matching a glob (and foundation-model ARNs whose id
    matches) are allowed."""
    acme.converse(**converse_args(model))
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    assert rec.path_params["modelId"] == model


@pytest.mark.parametrize(
    "model",
    [
        NOVA,  # globex's model
        "anthropic.claude-3-sonnet-20240229-v1:0",
        "amazon.titan-embed-text-v2:1",  # exact entry: no prefix match
        "amazon.titan-embed-text-v2:0x",
        "Anthropic.claude-3-haiku-20240307-v1:0",  # case-sensitive
        "xanthropic.claude-3-haiku-20240307-v1:0",  # anchored at the start
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-pro-v1:0",
        "arn:aws:bedrock:us-east-1:999999999999:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0",
        "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/anthropic.claude-3-haiku-x",
    ],
)
def test_denied_models(acme, fake_aws, model):
    """docs/reference.md §5.1: anything else is 403 model_not_allowed, nothing upstream."""
    _denied(acme, fake_aws, model)


@pytest.mark.parametrize("op", ["converse", "converse_stream", "invoke", "invoke_stream", "count_tokens"])
def test_every_model_operation_checks_the_allowlist(acme, fake_aws, op):
    """docs/reference.md §5.1: the check applies to every operation naming a model."""
    _denied(acme, fake_aws, NOVA, op)


def test_tenant_b_cannot_use_tenant_a_model(globex, fake_aws, creds):
    """docs/reference.md §1/§5.1: globex's token cannot use acme's haiku, but its own nova works."""
    _denied(globex, fake_aws, HAIKU)
    _denied(globex, fake_aws, harness.HAIKU_ARN)
    globex.converse(**converse_args(NOVA))
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["globex"].akid)


def test_question_mark_glob(globex, fake_aws):
    """docs/reference.md §3 globs: `?` matches exactly one character."""
    globex.invoke_model(modelId="meta.llama3-1-8b-instruct-v1:0", body=b"{}")
    assert len(fake_aws.recorded()) == 1
    fake_aws.reset()
    _denied(globex, fake_aws, "meta.llama3-10-8b-instruct-v1:0", "invoke")
    _denied(globex, fake_aws, "meta.llama3--8b-instruct-v1:0", "invoke")


def test_percent_encoded_ids_are_decoded_before_matching(sidecar, fake_aws, mint):
    """docs/reference.md §5: model ids are percent-decoded before matching, so an encoded
    spelling of a denied id is denied too."""
    token = mint()
    for raw_model in ["amazon.nova-pro-v1%3A0", "%61mazon.nova-pro-v1:0", "amazon%2Enova-pro-v1%3a0"]:
        resp = sidecar.request("POST", f"/model/{raw_model}/converse", b'{"messages":[]}', token=token)
        harness.assert_tenantgate_error(resp, 403, "model_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_encoded_slash_stays_inside_the_model_id(sidecar, fake_aws, mint):
    """docs/reference.md §5: an encoded `/` in a model id is part of the id (ARNs need
    it), and it reaches AWS still encoded as one path segment."""
    raw_model = "arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Ainference-profile%2Fus.anthropic.claude-3-haiku-20240307-v1%3A0"
    resp = sidecar.request("POST", f"/model/{raw_model}/invoke", b"{}", token=mint())
    assert resp.status == 200, resp
    rec = harness.assert_one_valid_upstream(fake_aws, "InvokeModel")
    assert rec.raw_path == f"/model/{raw_model}/invoke"
    assert rec.path_params["modelId"] == (
        "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0")


@pytest.mark.parametrize("raw_model", [
    # matches the `anthropic.claude-3-haiku-*` glob, but hides dot-segments
    "anthropic.claude-3-haiku-x%2F..%2F..%2Fmodel%2Famazon.nova-pro-v1%3A0",
    "anthropic.claude-3-haiku-x%2F.%2Fy",
    "anthropic.claude-3-haiku-x%2F%2Fy",
    "anthropic.claude-3-haiku-x%20y",
    "anthropic.claude-3-haiku-x%0D%0Ay",
    "anthropic.claude-3-haiku-x%3Fy",
    "%2F",  # an id that is only a separator
    # `/` in an id that is not an ARN (found by fuzzing route classification)
    "anthropic.claude-3-haiku-x%2Fy",
    "anthropic.claude-3-haiku-xu2F..%2Fy",
])
def test_model_id_no_aws_id_could_be_is_400(sidecar, fake_aws, mint, raw_model):
    """docs/reference.md §5 and §8: a decoded model id with characters or path segments
    no Bedrock id has (dot-segments, empty segments, spaces, control
    characters, `?`) is refused as 400 `invalid_parameter` even when an
    allowlist glob would match it, and nothing is sent."""
    resp = sidecar.request("POST", f"/model/{raw_model}/invoke", b"{}", token=mint())
    harness.assert_tenantgate_error(resp, 400, "invalid_parameter")
    harness.assert_nothing_upstream(fake_aws)


def test_deny_message_names_model_and_tenant_only(acme, fake_aws):
    """docs/reference.md §8: messages help the operator and carry no other tenant's data."""
    _denied(acme, fake_aws, NOVA)
    body = json.loads(acme.tap.body)
    assert NOVA in body["message"] and "acme" in body["message"]
    assert "globex" not in body["message"]
