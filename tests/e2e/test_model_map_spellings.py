"""`model_map` applies to every spelling of a model (docs/reference.md §5.1): a
foundation-model ARN of any region or partition is mapped like the bare id,
keys may be written as ARNs, and a spelling of a mapped model that the map
does not cover (a `:200k` context-window variant, another case, an
inference-profile prefix such as `us.`) is 403 `model_not_allowed` with
nothing upstream, unless the configuration names that spelling exactly.

The tenants here allow every model (`models = ["*"]`), so that it is the
map, not the allowlist, that decides."""

from __future__ import annotations

from urllib.parse import quote

import pytest

import harness
from harness import HAIKU, converse_args

ACME_PROFILE = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acme-haiku"
GLOBEX_PROFILE = "arn:aws:bedrock:us-east-1:444455556666:application-inference-profile/globex-haiku"
SONNET = "anthropic.claude-3-sonnet-20240229-v1:0"

SIDECAR_OVERRIDES = {
    "tenants": {
        "acme": {"models": ["*"], "model_map": {HAIKU: ACME_PROFILE}},
        # A key written as a foundation-model ARN; the `us.` profile named
        # exactly in `models`, so it is covered (forwarded as asked).
        "globex": {
            "models": ["*", f"us.{HAIKU}"],
            "model_map": {f"arn:aws:bedrock:us-west-2::foundation-model/{HAIKU}": GLOBEX_PROFILE},
        },
    }
}


@pytest.fixture
def acme(sidecar, mint):
    return harness.make_client(sidecar.url, token=mint("acme", "alice"))


@pytest.fixture
def globex(sidecar, mint):
    return harness.make_client(sidecar.url, token=mint("globex", "bob"))


def upstream_model(fake_aws, op="Converse"):
    return harness.assert_one_valid_upstream(fake_aws, op).path_params["modelId"]


@pytest.mark.parametrize(
    "arn",
    [
        f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}",
        f"arn:aws:bedrock:eu-west-3::foundation-model/{HAIKU}",
        f"arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/{HAIKU}",
    ],
)
def test_foundation_model_arn_of_a_mapped_id_is_mapped(acme, sidecar, fake_aws, arn):
    """docs/reference.md §5.1: the ARN spelling of a mapped id (any region, any
    partition) is mapped like the id; the mapped ARN is signed in the path
    as SDKs encode it; the audit keeps what was asked for."""
    out = acme.converse(**converse_args(arn))
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse")
    assert rec.path_params["modelId"] == ACME_PROFILE
    assert rec.raw_path == "/model/" + quote(ACME_PROFILE, safe="") + "/converse"
    entry = sidecar.wait_audit(harness.request_id_of(out))
    assert entry["resource"] == arn
    assert entry["upstream_resource"] == ACME_PROFILE


@pytest.mark.parametrize("op", ["invoke_model", "invoke_model_with_response_stream", "count_tokens", "converse_stream"])
def test_every_path_operation_maps_the_arn_spelling(acme, fake_aws, op):
    """docs/reference.md §5.1: the same resolution for every operation that names a model
    in its path."""
    arn = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"
    if op == "invoke_model":
        acme.invoke_model(modelId=arn, body=b"{}")
        name = "InvokeModel"
    elif op == "invoke_model_with_response_stream":
        list(acme.invoke_model_with_response_stream(modelId=arn, body=b"{}")["body"])
        name = "InvokeModelWithResponseStream"
    elif op == "count_tokens":
        acme.count_tokens(modelId=arn, input={"converse": {"messages": converse_args()["messages"]}})
        name = "CountTokens"
    else:
        list(acme.converse_stream(**converse_args(arn))["stream"])
        name = "ConverseStream"
    assert upstream_model(fake_aws, name) == ACME_PROFILE


def test_key_written_as_an_arn_maps_the_bare_id_and_other_regions(globex, fake_aws):
    """docs/reference.md §5.1: a map key given as a foundation-model ARN covers the bare
    id and the ARN of any other region."""
    globex.converse(**converse_args(HAIKU))
    assert upstream_model(fake_aws) == GLOBEX_PROFILE
    fake_aws.reset()
    globex.converse(**converse_args(f"arn:aws:bedrock:ap-south-1::foundation-model/{HAIKU}"))
    assert upstream_model(fake_aws) == GLOBEX_PROFILE


@pytest.mark.parametrize(
    "spelling",
    [
        f"{HAIKU}:200k",
        f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}:200k",
        "Anthropic.Claude-3-Haiku-20240307-v1:0",
        HAIKU.upper(),
        f"us.{HAIKU}",
        f"eu.{HAIKU}",
        f"apac.{HAIKU}",
        f"global.{HAIKU}",
        f"arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.{HAIKU}",
    ],
)
def test_uncovered_spelling_of_a_mapped_model_is_denied(acme, sidecar, fake_aws, spelling):
    """docs/reference.md §5.1: a spelling of the mapped model the map does not cover
    (context-window variant, case variant, cross-region or global inference
    profile) would reach the model without the tenant's profile: 403
    model_not_allowed, nothing upstream, audited."""
    err = harness.expect_client_error(acme, lambda: acme.converse(**converse_args(spelling)), 403, "model_not_allowed")
    harness.assert_nothing_upstream(fake_aws)
    entry = sidecar.wait_audit(harness.request_id_of(err))
    assert entry["reason"] == "model_not_allowed" and entry["resource"] == spelling


def test_variant_is_denied_on_the_stream_too(acme, fake_aws):
    """docs/reference.md §5.1: the same for InvokeModelWithResponseStream."""
    harness.expect_client_error(
        acme,
        lambda: acme.invoke_model_with_response_stream(modelId=f"{HAIKU}:200k", body=b"{}"),
        403,
        "model_not_allowed",
    )
    harness.assert_nothing_upstream(fake_aws)


def test_profile_named_exactly_in_models_is_forwarded_as_asked(globex, fake_aws):
    """docs/reference.md §5.1: a geography profile the tenant's `models` names exactly
    (no wildcard) is covered: forwarded unmapped. A glob such as `*` is not
    enough (another geography of the same model stays denied)."""
    globex.converse(**converse_args(f"us.{HAIKU}"))
    assert upstream_model(fake_aws) == f"us.{HAIKU}"
    fake_aws.reset()
    harness.expect_client_error(
        globex, lambda: globex.converse(**converse_args(f"eu.{HAIKU}")), 403, "model_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_other_models_are_not_affected(acme, fake_aws):
    """docs/reference.md §5.1: a model that is not a spelling of a mapped one is
    forwarded as asked."""
    acme.converse(**converse_args(SONNET))
    assert upstream_model(fake_aws) == SONNET
