"""Asynchronous invocations (docs/reference.md §5.1, §16; docs/model-calls.md,
"Asynchronous invocations"): StartAsyncInvoke, GetAsyncInvoke and
ListAsyncInvokes through real boto3 clients. AWS keeps jobs per account; the
fake (fake_async.py) does too, so every tenant's jobs are in it and the
tests prove what the sidecar filters."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

import fake_async
import harness

REEL = "amazon.nova-reel-v1:0"
ACME_PROFILE = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/acmereel"
ACME_KMS = "arn:aws:kms:us-east-1:111122223333:alias/acme-out"
CLIENT_KMS = "arn:aws:kms:us-east-1:444455556666:key/11111111-2222-3333-4444-555555555555"

SIDECAR_OVERRIDES = {
    "tenant_defaults": {"async_invoke": {"tags": {"TenantID": "{tenant}"}}},
    "tenants": {
        "acme": {
            "models": ["anthropic.claude-3-haiku-*", "amazon.nova-reel-*"],
            "model_map": {REEL: ACME_PROFILE},
            "async_invoke": {
                "output_prefix": "s3://media-out/{tenant}/",
                "kms_key_id": "arn:aws:kms:us-east-1:111122223333:alias/{tenant}-out",
                "bucket_owner": "111122223333",
                "tags": {"TenantID": "{tenant}", "User": "{user}"},
            },
        },
        "globex": {"async_invoke": {"output_prefix": "s3://media-out/{tenant}/"}},
    },
}


@pytest.fixture
def acme(sidecar, mint):
    return harness.make_client(sidecar.url, token=mint("acme", "alice"))


@pytest.fixture
def globex(sidecar, mint):
    return harness.make_client(sidecar.url, token=mint("globex", "gary"))


def start_args(uri, model=REEL, token="tok-1", **extra):
    args = {
        "modelId": model,
        "modelInput": {"taskType": "TEXT_VIDEO", "textToVideoParams": {"text": "a cat on a skateboard"}},
        "outputDataConfig": {"s3OutputDataConfig": {"s3Uri": uri, "kmsKeyId": CLIENT_KMS, "bucketOwner": "444455556666"}},
        "clientRequestToken": token,
    }
    args.update(extra)
    return args


def test_start_allowed_is_rewritten_for_the_tenant(acme, sidecar, fake_aws, creds):
    """The model is judged and mapped; the output stays where asked (under
    the prefix) with the tenant's KMS key and bucket owner; the tenant's
    tags replace the client's with the same key; the token is namespaced."""
    out = acme.start_async_invoke(**start_args(
        "s3://media-out/acme/videos/", token="tok-allowed-" + harness.new_id(),
        tags=[{"key": "TenantID", "value": "globex"}, {"key": "app", "value": "studio"}]))
    rec = harness.assert_one_valid_upstream(fake_aws, "StartAsyncInvoke", creds["acme"].akid)
    sent = rec.json()
    client_token = json.loads(acme.tap.sent[-1][3])["clientRequestToken"]
    assert sent["modelId"] == ACME_PROFILE
    assert sent["outputDataConfig"] == {"s3OutputDataConfig": {
        "s3Uri": "s3://media-out/acme/videos/", "kmsKeyId": ACME_KMS, "bucketOwner": "111122223333"}}
    assert sent["tags"] == [{"key": "app", "value": "studio"}, {"key": "TenantID", "value": "acme"},
                            {"key": "User", "value": "alice"}]
    assert sent["clientRequestToken"].startswith("tga-") and len(sent["clientRequestToken"]) == 44
    assert client_token not in sent["clientRequestToken"]
    assert sent["modelInput"] == start_args("x")["modelInput"]
    assert out["invocationArn"] in fake_aws.async_jobs
    audit = sidecar.wait_audit(harness.request_id_of(out))
    assert (audit["operation"], audit["decision"], audit["status"]) == ("StartAsyncInvoke", "allow", 200)
    assert audit["upstream_resource"] == ACME_PROFILE


def test_start_without_tenant_kms_or_owner_drops_the_clients(globex, fake_aws, creds):
    """globex configures no KMS key or bucket owner: the client's are removed,
    never forwarded; the default tags apply."""
    globex.start_async_invoke(**start_args("s3://media-out/globex/", model="amazon.nova-reel-v1:1",
                                           token="tok-g-" + harness.new_id()))
    sent = harness.assert_one_valid_upstream(fake_aws, "StartAsyncInvoke", creds["globex"].akid).json()
    assert sent["outputDataConfig"] == {"s3OutputDataConfig": {"s3Uri": "s3://media-out/globex/"}}
    assert sent["tags"] == [{"key": "TenantID", "value": "globex"}]
    assert sent["modelId"] == "amazon.nova-reel-v1:1"


@pytest.mark.parametrize("uri", [
    "s3://media-out/globex/videos/",
    "s3://media-out/acme-evil/x/",
    "s3://media-out/acme",
    "s3://media-out/acme/../globex/",
    "s3://media-out/acme/%2e%2e/globex/",
    "s3://media-out/acme/a%2F..%2F..%2Fglobex/",
    "s3://media-out/acme/%252e%252e/globex/",
    "s3://media-out/ACME/x/",
    "s3://Media-Out/acme/x/",
    "s3://media-out/acme//x/",
    "s3://media-out/acme/./x/",
    "s3://media-out-2/acme/x/",
])
def test_start_output_outside_the_prefix_is_refused(acme, sidecar, fake_aws, uri):
    e = harness.expect_client_error(acme, lambda: acme.start_async_invoke(**start_args(uri)), 403, "location_not_allowed")
    harness.assert_nothing_upstream(fake_aws)
    audit = sidecar.wait_audit(harness.request_id_of(e))
    assert (audit["operation"], audit["reason"]) == ("StartAsyncInvoke", "location_not_allowed")


def test_start_model_not_allowed(acme, globex, fake_aws):
    for client, model in ((acme, "amazon.nova-pro-v1:0"), (acme, "anthropic.claude-3-sonnet-20240229-v1:0"),
                          (globex, "anthropic.claude-3-haiku-20240307-v1:0")):
        tenant = "acme" if client is acme else "globex"
        harness.expect_client_error(client, lambda: client.start_async_invoke(
            **start_args(f"s3://media-out/{tenant}/", model=model)), 403, "model_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_hostile_start_bodies_are_refused(sidecar, fake_aws, mint):
    """Duplicate keys (the judged copy and the sent copy could differ),
    members in another case, a non-string token: 400, nothing upstream."""
    token = mint("acme", "alice")
    good = '{"modelId":"%s","modelInput":{},"outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"%s"}}}'
    for body in [
        (good % (REEL, "s3://media-out/acme/"))[:-1] + ',"outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://media-out/globex/"}}}',
        '{"modelId":"%s","modelInput":{},"outputDataConfig":{"s3OutputDataConfig":{"S3Uri":"s3://media-out/globex/","s3Uri":"s3://media-out/acme/"}}}' % REEL,
        '{"ModelId":"amazon.nova-pro-v1:0","modelId":"%s","modelInput":{},"outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://media-out/acme/"}}}' % REEL,
        '{"modelId":"%s","modelInput":{},"outputDataConfig":{"s3OutputDataConfig":{"s3Uri":"s3://media-out/acme/"}},"clientRequestToken":7}' % REEL,
        '{"modelId":"%s","modelInput":{},"outputDataConfig":{}}' % REEL,
    ]:
        r = sidecar.request("POST", "/async-invoke", body.encode(), token=token)
        assert r.status == 400, (body, r)
    harness.assert_nothing_upstream(fake_aws)


def test_no_output_prefix_refuses_all_three(start_sidecar, fake_aws, mint):
    """A tenant without async_invoke.output_prefix gets 403
    operation_not_allowed for the three operations, nothing upstream."""
    sc = start_sidecar({"tenants": {"acme": {"models": ["amazon.nova-reel-*"]}}})
    client = harness.make_client(sc.url, token=mint("acme", "alice"))
    arn = fake_async.seed_job(fake_aws, "s3://media-out/acme/x/")
    for call in (lambda: client.start_async_invoke(**start_args("s3://media-out/acme/")),
                 lambda: client.get_async_invoke(invocationArn=arn),
                 lambda: client.list_async_invokes()):
        harness.expect_client_error(client, call, 403, "operation_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_the_same_token_from_two_tenants_reaches_aws_as_two_tokens(acme, globex, mint, sidecar, fake_aws):
    """AWS's idempotency token is account-wide: namespaced per (tenant,
    user), globex's token can never return acme's job; the same tenant and
    user get their own job back."""
    shared = "shared-" + harness.new_id()
    a = acme.start_async_invoke(**start_args("s3://media-out/acme/", token=shared))
    g = globex.start_async_invoke(**start_args("s3://media-out/globex/", model="amazon.nova-reel-v1:1", token=shared))
    again = acme.start_async_invoke(**start_args("s3://media-out/acme/", token=shared))
    bob = harness.make_client(sidecar.url, token=mint("acme", "bob"))
    b = bob.start_async_invoke(**start_args("s3://media-out/acme/", token=shared))
    tokens = [r.json()["clientRequestToken"] for r in fake_aws.recorded("StartAsyncInvoke")]
    assert len(tokens) == 4 and shared not in tokens
    assert tokens[0] == tokens[2] and len({tokens[0], tokens[1], tokens[3]}) == 3
    assert a["invocationArn"] == again["invocationArn"]
    assert len({a["invocationArn"], g["invocationArn"], b["invocationArn"]}) == 3


def test_get_shows_only_the_tenants_jobs(acme, sidecar, fake_aws):
    own = fake_async.seed_job(fake_aws, "s3://media-out/acme/own/")
    out = acme.get_async_invoke(invocationArn=own)
    assert (out["invocationArn"], out["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]) == (own, "s3://media-out/acme/own/")
    rec = fake_aws.recorded("GetAsyncInvoke")[0]
    assert rec.signature_valid and rec.raw_path == "/async-invoke/" + quote(own, safe="")
    for uri in ("s3://media-out/globex/v/", "s3://media-out/acme-evil/v/", "s3://media-out/acme/../globex/"):
        fake_aws.reset()
        foreign = fake_async.seed_job(fake_aws, uri)
        e = harness.expect_client_error(acme, lambda: acme.get_async_invoke(invocationArn=foreign), 403,
                                        "location_not_allowed")
        body = acme.tap.body.decode()
        assert foreign not in body and uri not in body and "nova" not in body, body
        assert len(fake_aws.recorded("GetAsyncInvoke")) == 1
        audit = sidecar.wait_audit(harness.request_id_of(e))
        assert (audit["operation"], audit["reason"]) == ("GetAsyncInvoke", "location_not_allowed")


def test_get_errors_and_bad_arns(acme, sidecar, fake_aws, mint):
    """An unknown job: AWS's error passes through. Not an invocation ARN, or
    any query string: 400, nothing upstream."""
    missing = "arn:aws:bedrock:us-east-1:111122223333:async-invoke/zzzzzzzzzzzz"
    with pytest.raises(acme.exceptions.ValidationException) as e:
        acme.get_async_invoke(invocationArn=missing)
    assert "not found" in str(e.value)
    assert "x-tenantgate-reason" not in acme.tap.headers
    assert len(fake_aws.recorded("GetAsyncInvoke")) == 1
    fake_aws.reset()
    for arn in ("arn:aws:bedrock:us-east-1:111122223333:async-invoke/ABC", "arn:aws:s3:::media-out/acme/x",
                "arn:aws:bedrock:us-east-1:111122223333:async-invoke/abcdef012345/..", "abcdef012345"):
        r = sidecar.request("GET", "/async-invoke/" + quote(arn, safe=""), token=mint("acme", "alice"))
        assert r.status == 400, (arn, r)
    own = fake_async.seed_job(fake_aws, "s3://media-out/acme/q/")
    r = sidecar.request("GET", "/async-invoke/" + quote(own, safe="") + "?maxResults=1", token=mint("acme", "alice"))
    assert r.status == 400, r
    harness.assert_nothing_upstream(fake_aws)


def test_list_is_filtered_to_the_tenants_jobs(acme, fake_aws):
    """A page of mixed jobs: only acme's come back, nextToken unchanged, so
    a page may be short or empty while more follow; the paginator still
    sees every acme job and no other."""
    for uri in ("s3://media-out/globex/1/", "s3://media-out/acme/1/", "s3://media-out/acme-evil/1/",
                "s3://media-out/globex/2/", "s3://media-out/globex/3/", "s3://media-out/acme/2/"):
        fake_async.seed_job(fake_aws, uri)
    expected = {arn for arn, j in fake_aws.async_jobs.items()
                if j["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].startswith("s3://media-out/acme/")
                and ".." not in j["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"]}
    seen, pages = [], []
    for page in acme.get_paginator("list_async_invokes").paginate(PaginationConfig={"PageSize": 2}):
        pages.append((len(page["asyncInvokeSummaries"]), "nextToken" in page))
        seen += [j["invocationArn"] for j in page["asyncInvokeSummaries"]]
        assert all(j["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"].startswith("s3://media-out/acme/")
                   for j in page["asyncInvokeSummaries"])
    assert set(seen) == expected and len(seen) == len(expected)
    assert any(n < 2 and more for n, more in pages), pages
    # The upstream tokens are the fake's own, passed unchanged.
    lists = fake_aws.recorded("ListAsyncInvokes")
    assert len(lists) == len(pages) and all(r.signature_valid for r in lists)
    assert "nextToken" not in lists[0].query and "nextToken=" in lists[1].query
    out = acme.list_async_invokes(maxResults=6)
    assert int(acme.tap.headers["x-tenantgate-dropped-results"]) == 6 - len(out["asyncInvokeSummaries"])


@pytest.mark.parametrize("query", [
    "maxResults=1&maxResults=1000",
    "nextToken=a&nextToken=b",
    "maxResults=0",
    "maxResults=5000",
    "statusEquals=Running",
    "sortOrder=descending",
    "tenant=globex",
    "prefix=s3://media-out/globex/",
    "maxResults=1%26tenant%3Dglobex",
    "nextToken=",
])
def test_hostile_list_queries_are_refused(sidecar, fake_aws, mint, query):
    r = sidecar.request("GET", "/async-invoke?" + query, token=mint("acme", "alice"))
    assert r.status == 400, (query, r)
    harness.assert_nothing_upstream(fake_aws)


def test_other_methods_on_the_async_paths_are_refused(sidecar, fake_aws, mint):
    token = mint("acme", "alice")
    for method, path in (("DELETE", "/async-invoke"), ("PUT", "/async-invoke"), ("POST", "/async-invoke/x"),
                         ("DELETE", "/async-invoke/arn%3Aaws%3Abedrock%3Aus-east-1%3A111122223333%3Aasync-invoke%2Fabcdef012345"),
                         ("GET", "/async-invoke/a/b")):
        r = sidecar.request(method, path, token=token)
        harness.assert_tenantgate_error(r, 403, "operation_not_allowed")
    harness.assert_nothing_upstream(fake_aws)
