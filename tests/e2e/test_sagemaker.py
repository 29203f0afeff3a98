"""SageMaker runtime isolation (docs/reference.md §5.4): endpoint names (silo rewrite,
bridge templates, real names, case-insensitivity), the pool target model
(injection, allowlist), the routing headers tenantgate decides on
(`src/family/sagemaker.rs`), InvokeEndpointAsync input locations, and
opaque bodies and streams passed byte for byte (docs/reference.md §5). boto3's
`sagemaker-runtime` client talks to the sidecar; the fake AWS verifies every
upstream signature (signing name `sagemaker`, docs/reference.md §6)."""

from __future__ import annotations

import os
from urllib.parse import quote

import pytest

import fake_sagemaker
import harness

# acme: a pooled tenant (logical name, bridge endpoint, shared multi-model
# endpoint with its target model, async inputs under its prefix).
# globex: a silo tenant (its own endpoint, no pool keys).
SIDECAR_OVERRIDES = {
    "tenants": {
        "acme": {
            "sagemaker": {
                "endpoints": {"classifier": "acme-classifier", "bridge": "bridge-{tenant}"},
                "target_model": "{tenant}.tar.gz",
                "allowed_target_models": ["{tenant}.tar.gz", "{tenant}/*"],
                "allowed_input_prefixes": ["s3://async-in/{tenant}/"],
            }
        },
        "globex": {
            "sagemaker": {
                "endpoints": {"classifier": "globex-classifier", "bridge": "bridge-{tenant}"},
            }
        },
    }
}

SM = "sagemaker-runtime"
INPUT = "s3://async-in/acme/requests/in-1.json"


@pytest.fixture(autouse=True)
def _sagemaker_routes(fake_aws):
    fake_sagemaker.install(fake_aws)


@pytest.fixture
def acme(sidecar, mint, client_for):
    return client_for(sidecar, token=mint("acme", "alice"), service=SM)


@pytest.fixture
def globex(sidecar, mint, client_for):
    return client_for(sidecar, token=mint("globex", "gina"), service=SM)


def _upstream(fake_aws, operation, tenant_creds):
    """The one request that reached AWS: signed for service `sagemaker` with
    the tenant's own keys."""
    rec = harness.assert_one_valid_upstream(fake_aws, operation, tenant_creds.akid)
    assert rec.service == "sagemaker", rec.summary()
    assert rec.region == "us-east-1", rec.summary()
    return rec


def _path(endpoint, suffix="invocations"):
    return f"/endpoints/{quote(endpoint, safe='')}/{suffix}"


# ---- endpoint names ---------------------------------------------------------


def test_silo_logical_name_is_rewritten_to_the_tenants_endpoint(globex, fake_aws, creds, sidecar):
    """docs/reference.md §5.4: a key of `sagemaker.endpoints` is rewritten to its value;
    the new path is signed (service `sagemaker`) and verifies upstream; a
    silo tenant gets no target model; audit names the endpoint as requested (§9)."""
    out = globex.invoke_endpoint(EndpointName="classifier", Body=b'{"x": 1}', ContentType="application/json")
    assert out["Body"].read() == b'{"x": 1}'
    rec = _upstream(fake_aws, "InvokeEndpoint", creds["globex"])
    assert rec.path == _path("globex-classifier")
    assert rec.path_params["EndpointName"] == "globex-classifier"
    assert "x-amzn-sagemaker-target-model" not in rec.headers
    assert "x-tenant-token" not in rec.headers
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert audit["tenant"] == "globex" and audit["operation"] == "InvokeEndpoint"
    assert audit["resource"] == "classifier"
    assert audit["decision"] == "allow"


def test_bridge_endpoint_template_renders_each_tenant(acme, globex, fake_aws, creds):
    """docs/reference.md §5.4 + §3 templates: `{tenant}` in an endpoint value routes each
    tenant's `bridge` to its own endpoint."""
    acme.invoke_endpoint(EndpointName="bridge", Body=b"a")
    assert _upstream(fake_aws, "InvokeEndpoint", creds["acme"]).path == _path("bridge-acme")
    fake_aws.reset()
    globex.invoke_endpoint(EndpointName="bridge", Body=b"g")
    assert _upstream(fake_aws, "InvokeEndpoint", creds["globex"]).path == _path("bridge-globex")


@pytest.mark.parametrize("endpoint", ["globex-classifier", "bridge-globex", "acme-classifier-2", "shared"])
def test_other_tenants_endpoint_is_denied(acme, fake_aws, endpoint):
    """docs/reference.md §5.4: any name that is neither a key nor a rendered value of the
    tenant's `sagemaker.endpoints` is 403 `endpoint_not_allowed`; nothing
    reaches upstream."""
    harness.expect_client_error(
        acme, lambda: acme.invoke_endpoint(EndpointName=endpoint, Body=b"{}"), 403, "endpoint_not_allowed"
    )
    harness.assert_nothing_upstream(fake_aws)


def test_other_tenants_endpoint_denied_on_stream_and_async(globex, fake_aws):
    """docs/reference.md §5.4: the endpoint rule holds for all three operations."""
    harness.expect_client_error(
        globex,
        lambda: globex.invoke_endpoint_with_response_stream(EndpointName="acme-classifier", Body=b"{}"),
        403,
        "endpoint_not_allowed",
    )
    harness.expect_client_error(
        globex,
        lambda: globex.invoke_endpoint_async(EndpointName="acme-classifier", InputLocation=INPUT),
        403,
        "endpoint_not_allowed",
    )
    harness.assert_nothing_upstream(fake_aws)


def test_real_endpoint_name_of_the_tenant_passes(acme, fake_aws, creds):
    """docs/reference.md §5.4: a name equal to one of the rendered values passes."""
    acme.invoke_endpoint(EndpointName="acme-classifier", Body=b"{}")
    assert _upstream(fake_aws, "InvokeEndpoint", creds["acme"]).path == _path("acme-classifier")
    fake_aws.reset()
    acme.invoke_endpoint(EndpointName="bridge-acme", Body=b"{}")
    assert _upstream(fake_aws, "InvokeEndpoint", creds["acme"]).path == _path("bridge-acme")


@pytest.mark.parametrize("endpoint", ["CLASSIFIER", "Classifier", "ACME-Classifier", "Acme-CLASSIFIER"])
def test_endpoint_names_compare_case_insensitively(acme, fake_aws, creds, endpoint):
    """docs/reference.md §5.4: endpoint names compare case-insensitively, as in SageMaker;
    the configured spelling is sent."""
    acme.invoke_endpoint(EndpointName=endpoint, Body=b"{}")
    assert _upstream(fake_aws, "InvokeEndpoint", creds["acme"]).path == _path("acme-classifier")


@pytest.mark.parametrize("endpoint", ["bad_name", "acme.classifier", "-classifier", "classifier-"])
def test_invalid_endpoint_name_is_400(acme, fake_aws, endpoint):
    """docs/reference.md §5.4/§8: a name that breaks SageMaker's endpoint-name rule is 400
    `invalid_parameter`; nothing reaches upstream."""
    harness.expect_client_error(
        acme, lambda: acme.invoke_endpoint(EndpointName=endpoint, Body=b"{}"), 400, "invalid_parameter"
    )
    harness.assert_nothing_upstream(fake_aws)


# ---- target model (pool) --------------------------------------------------


def test_pool_target_model_is_injected(acme, fake_aws, creds):
    """docs/reference.md §5.4: with no client target model, the rendered `target_model`
    is injected as X-Amzn-SageMaker-Target-Model (signed and verified)."""
    acme.invoke_endpoint(EndpointName="classifier", Body=b"{}")
    rec = _upstream(fake_aws, "InvokeEndpoint", creds["acme"])
    assert rec.header_values("x-amzn-sagemaker-target-model") == ["acme.tar.gz"]


def test_pool_target_model_is_injected_on_stream_and_async(acme, fake_aws, creds):
    """docs/reference.md §5.4: injection applies to all three operations."""
    list(acme.invoke_endpoint_with_response_stream(EndpointName="classifier", Body=b"{}")["Body"])
    rec = _upstream(fake_aws, "InvokeEndpointWithResponseStream", creds["acme"])
    assert rec.header_values("x-amzn-sagemaker-target-model") == ["acme.tar.gz"]
    fake_aws.reset()
    acme.invoke_endpoint_async(EndpointName="classifier", InputLocation=INPUT)
    rec = _upstream(fake_aws, "InvokeEndpointAsync", creds["acme"])
    assert rec.header_values("x-amzn-sagemaker-target-model") == ["acme.tar.gz"]


@pytest.mark.parametrize("model", ["globex.tar.gz", "globex/v2.tar.gz", "acme/../globex.tar.gz", "acme.tar.gz.x"])
def test_client_naming_another_tenants_model_is_denied(acme, fake_aws, model):
    """docs/reference.md §5.4: a client target model outside the rendered
    `allowed_target_models` is 403 `cross_tenant`; `..` cannot climb out
    of `{tenant}/*`; nothing reaches upstream."""
    harness.expect_client_error(
        acme,
        lambda: acme.invoke_endpoint(EndpointName="classifier", Body=b"{}", TargetModel=model),
        403,
        "cross_tenant",
    )
    harness.assert_nothing_upstream(fake_aws)


def test_silo_tenant_may_not_name_a_target_model(globex, fake_aws):
    """docs/reference.md §5.4: with no `allowed_target_models`, any client target model
    is 403 `cross_tenant`."""
    harness.expect_client_error(
        globex,
        lambda: globex.invoke_endpoint(EndpointName="classifier", Body=b"{}", TargetModel="globex.tar.gz"),
        403,
        "cross_tenant",
    )
    harness.assert_nothing_upstream(fake_aws)


@pytest.mark.parametrize("model", ["acme/v2.tar.gz", "acme.tar.gz"])
def test_allowed_client_target_model_passes(acme, fake_aws, creds, model):
    """docs/reference.md §5.4: a client target model matching a rendered glob is kept as
    sent (not replaced by the injected default)."""
    acme.invoke_endpoint(EndpointName="classifier", Body=b"{}", TargetModel=model)
    rec = _upstream(fake_aws, "InvokeEndpoint", creds["acme"])
    assert rec.header_values("x-amzn-sagemaker-target-model") == [model]


# ---- other routing headers (src/family/sagemaker.rs) ----------------------


def test_target_variant_of_the_authorised_endpoint_passes(acme, fake_aws, creds):
    """docs/reference.md §5.4 (endpoint is the unit of authorisation): a production
    variant of the already authorised endpoint is forwarded."""
    out = acme.invoke_endpoint(EndpointName="classifier", Body=b"{}", TargetVariant="blue")
    assert out["InvokedProductionVariant"] == "blue"
    rec = _upstream(fake_aws, "InvokeEndpoint", creds["acme"])
    assert rec.header_values("x-amzn-sagemaker-target-variant") == ["blue"]


@pytest.mark.parametrize(
    "kwargs", [{"InferenceComponentName": "globex-llm"}, {"TargetContainerHostname": "globex-container"}]
)
def test_selecting_another_model_on_a_shared_endpoint_is_denied(acme, fake_aws, kwargs):
    """docs/reference.md §5.4, fail closed (§ intro): an inference component or container
    host name picks another model on the same endpoint; unless a rendered
    `allowed_target_models` glob names it, 403 `cross_tenant`."""
    harness.expect_client_error(
        acme, lambda: acme.invoke_endpoint(EndpointName="classifier", Body=b"{}", **kwargs), 403, "cross_tenant"
    )
    harness.assert_nothing_upstream(fake_aws)


def test_stateful_session_is_bound_to_the_tenant_and_user(acme, sidecar, mint, client_for, fake_aws, creds):
    """docs/reference.md §5.4 (stateful sessions, bound like §5.2 sessions): the id the model container issues reaches the app
    sealed for (tenant, user); only that tenant and user can continue or
    close it, upstream always sees the container's own id, and anyone else
    presenting it (or the bare id) is 403 `cross_tenant` with nothing sent."""
    out = acme.invoke_endpoint(EndpointName="classifier", Body=b"{}", SessionId="NEW_SESSION")
    sealed, expires = out["NewSessionId"].split(";", 1)
    assert expires.strip() == f"Expires={fake_sagemaker.SESSION_EXPIRES}"
    container_id, mac = sealed.rsplit(".", 1)
    assert container_id.startswith("sess-") and len(mac) == 32
    assert _upstream(fake_aws, "InvokeEndpoint", creds["acme"]).headers["x-amzn-sagemaker-session-id"] == "NEW_SESSION"

    fake_aws.reset()
    acme.invoke_endpoint(EndpointName="classifier", Body=b"{}", SessionId=sealed)
    assert _upstream(fake_aws, "InvokeEndpoint", creds["acme"]).headers["x-amzn-sagemaker-session-id"] == container_id
    fake_aws.reset()
    resp = acme.invoke_endpoint_with_response_stream(EndpointName="classifier", Body=b"{}", SessionId=sealed)
    list(resp["Body"])
    rec = _upstream(fake_aws, "InvokeEndpointWithResponseStream", creds["acme"])
    assert rec.headers["x-amzn-sagemaker-session-id"] == container_id

    fake_aws.reset()
    bob = client_for(sidecar, token=mint("acme", "bob"), service=SM)
    globex = client_for(sidecar, token=mint("globex", "alice"), service=SM)
    for c, sid in [(bob, sealed), (globex, sealed), (acme, container_id), (acme, container_id + ".0" * 16)]:
        harness.expect_client_error(
            c, lambda: c.invoke_endpoint(EndpointName="classifier", Body=b"{}", SessionId=sid), 403, "cross_tenant")
    harness.assert_nothing_upstream(fake_aws)

    out = acme.invoke_endpoint(EndpointName="classifier", Body=b"close", SessionId=sealed)
    assert out["ClosedSessionId"] == sealed


# ---- InvokeEndpointAsync ----------------------------------------------------


def test_async_input_location_under_the_prefix_is_allowed(acme, fake_aws, creds):
    """docs/reference.md §5.4: InvokeEndpointAsync with an InputLocation under the
    rendered `allowed_input_prefixes`: forwarded as sent, 202 parsed by boto3."""
    out = acme.invoke_endpoint_async(EndpointName="classifier", InputLocation=INPUT, ContentType="application/json")
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert out["InferenceId"]
    assert out["OutputLocation"] == f"s3://async-out/acme-classifier/{out['InferenceId']}.out"
    rec = _upstream(fake_aws, "InvokeEndpointAsync", creds["acme"])
    assert rec.path == _path("acme-classifier", "async-invocations")
    assert rec.header_values("x-amzn-sagemaker-inputlocation") == [INPUT]


@pytest.mark.parametrize(
    "location",
    [
        "s3://async-in/globex/in.json",
        "s3://async-in/acme-evil/in.json",
        "s3://async-in/acmeco/in.json",
        "s3://async-in-evil/acme/in.json",
        "s3://async-in/acme/../globex/in.json",
        "s3://async-in/acme/%2e%2e/globex/in.json",
        "s3://async-in/acme",
    ],
)
def test_async_input_location_outside_the_prefix_is_denied(acme, fake_aws, location):
    """docs/reference.md §5.4: an InputLocation not under `allowed_input_prefixes` is 403
    `location_not_allowed`: another tenant's prefix, a look-alike
    (`acme-evil` for `acme/`), `..` and percent-encoded escapes; nothing
    reaches upstream."""
    harness.expect_client_error(
        acme,
        lambda: acme.invoke_endpoint_async(EndpointName="classifier", InputLocation=location),
        403,
        "location_not_allowed",
    )
    harness.assert_nothing_upstream(fake_aws)


def test_async_without_input_location_is_400(acme, fake_aws):
    """docs/reference.md §5.4: InvokeEndpointAsync without X-Amzn-SageMaker-InputLocation
    is 400 `invalid_parameter` (even with an inline body)."""
    harness.expect_client_error(
        acme,
        lambda: acme.invoke_endpoint_async(EndpointName="classifier", Body=b'{"inline": true}'),
        400,
        "invalid_parameter",
    )
    harness.assert_nothing_upstream(fake_aws)


def test_async_for_a_tenant_without_prefixes_is_denied(globex, fake_aws):
    """docs/reference.md §5.4, fail closed: no `allowed_input_prefixes`, no input location."""
    harness.expect_client_error(
        globex,
        lambda: globex.invoke_endpoint_async(EndpointName="classifier", InputLocation="s3://async-in/globex/x"),
        403,
        "location_not_allowed",
    )
    harness.assert_nothing_upstream(fake_aws)


# ---- opaque bodies and streams ------------------------------------------------


def test_binary_body_is_forwarded_byte_exact(acme, fake_aws, creds):
    """docs/reference.md §5: bodies of operations that do not inspect them are forwarded
    byte for byte (random bytes, `application/octet-stream`), and the model's
    answer comes back unchanged."""
    data = os.urandom(64 * 1024)
    out = acme.invoke_endpoint(EndpointName="classifier", Body=data, ContentType="application/octet-stream")
    assert out["ContentType"] == "application/octet-stream"
    assert out["Body"].read() == data
    rec = _upstream(fake_aws, "InvokeEndpoint", creds["acme"])
    assert rec.body == data
    assert rec.headers["content-type"] == "application/octet-stream"


def test_response_stream_is_iterated_in_boto3(acme, fake_aws, creds):
    """docs/reference.md §5/§7: InvokeEndpointWithResponseStream comes back as an AWS
    event stream boto3 decodes into PayloadPart events whose bytes are the
    model's, binary included."""
    parts = [os.urandom(1000), b"plain text part", os.urandom(3), os.urandom(5000)]
    fake_aws.stream_parts = parts
    data = os.urandom(2048)
    resp = acme.invoke_endpoint_with_response_stream(
        EndpointName="classifier", Body=data, ContentType="application/octet-stream"
    )
    events = list(resp["Body"])
    assert events and all(set(e) == {"PayloadPart"} for e in events), events[:3]
    assert len(events) >= 2
    assert b"".join(e["PayloadPart"]["Bytes"] for e in events) == b"".join(parts)
    rec = _upstream(fake_aws, "InvokeEndpointWithResponseStream", creds["acme"])
    assert rec.path == _path("acme-classifier", "invocations-response-stream")
    assert rec.body == data
