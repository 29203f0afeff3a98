"""Tenant-scoped STS credentials end to end (docs/reference.md §3 `[credentials]`, §6, §8, §9).

Every sidecar here runs with `[credentials] source = "assume_role"`, its STS
endpoint pointed at the fake STS (`aws.endpoints.sts`), and base credentials
in its environment (`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`) that only
the fake STS knows. The fake STS verifies the SigV4 signature of every
AssumeRole, records it, and issues unique temporary keys that the fake
Bedrock accepts; so every upstream request can be traced back to the STS
call (and the tenant) that produced its key.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

import harness
from fakests import base_keys, fake_sts  # noqa: F401 - fixtures
from harness import DELETE, HAIKU

STS_TIMEOUT = 5.0  # src/aws/credentials.rs STS_TIMEOUT
ROLE = "arn:aws:iam::111122223333:role/tenant-{tenant}"
EXTERNAL_ID = "tg-external-7f3a"


def sts_overrides(fake_sts, credentials=None, **extra):
    """Overrides of harness.base_config for `assume_role`: no
    `static_credentials` left anywhere, unlisted tenants admitted (so tests
    can use tenants that are not pre-fetched at start-up)."""
    creds = {
        "source": "assume_role",
        "role_arn": ROLE,
        "session_name": "tenantgate-{tenant}",
        "session_tags": {"TenantID": "{tenant}"},
        "duration_secs": 900,
        "refresh_before_secs": 60,
    }
    creds.update(credentials or {})
    o = {
        "aws": {"endpoints": {"sts": fake_sts.url}},
        "credentials": creds,
        "tenant_defaults": {"allow_unlisted": True, "models": ["anthropic.claude-3-haiku-*"]},
        "tenants": {"acme": {"static_credentials": DELETE}, "globex": {"static_credentials": DELETE}},
    }
    for k, v in extra.items():  # (not deep_merge: it would deep-copy the DELETE markers)
        o[k] = harness.deep_merge(o[k], v) if isinstance(v, dict) and k in o else v
    return o


def start(start_sidecar_fn, fake_sts, base_keys, credentials=None, env=None, **extra):
    e = base_keys.env()
    e.update(env or {})
    sc = start_sidecar_fn(sts_overrides(fake_sts, credentials, **extra), env=e)
    text = sc.config_path.read_text()
    assert "static_credentials" not in text and 'source = "assume_role"' in text, text
    return sc


def converse(sc, token, tenant="?", timeout=15.0):
    """A Converse whose body names the tenant, so the upstream request can
    be matched to the token that caused it."""
    body = json.dumps({"messages": [{"role": "user", "content": [{"text": f"tenant-marker:{tenant}"}]}]})
    return sc.request("POST", f"/model/{HAIKU}/converse", body.encode(), token=token, timeout=timeout)


def marker_of(rec) -> str:
    return rec.json()["messages"][0]["content"][0]["text"].split(":", 1)[1]


def assert_no_secrets(sc, fake_sts):
    """docs/reference.md §1/§9: nothing logged is a credential (audit on stdout,
    diagnostics on stderr)."""
    out = sc.stdout_text() + "\n" + sc.stderr_text()
    leaked = [s[:12] + "..." for s in fake_sts.all_secrets() if s in out]
    assert not leaked, f"secret material in the sidecar's output: {leaked}"


def upstream_keys(fake_aws):
    return {r.access_key_id for r in fake_aws.recorded()}


# --------------------------------------------------------------------------


def test_assume_role_parameters_rendered_and_signed(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint,
                                                    tmp_path):
    """docs/reference.md §6: AssumeRole with the rendered role ARN, session name, session
    tags (TenantID + a claim), source identity (the user), the session policy
    template, the external id and duration_secs; signed (SigV4, `sts`,
    aws.region) with the base credentials. §6: the Bedrock request is signed
    with the issued keys and their session token."""
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Action": ["bedrock:InvokeModel", "bedrock:Converse"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:ResourceTag/TenantID": "{tenant}"}},
        }],
    }, indent=2))
    sc = start(start_sidecar_fn, fake_sts, base_keys, credentials={
        "session_tags": {"TenantID": "{tenant}", "Plan": "{claims.custom:plan}"},
        "source_identity": "{user}",
        "session_policy_file": str(policy),
        "external_id": EXTERNAL_ID,
    })
    resp = converse(sc, mint("acme", "alice", **{"custom:plan": "gold"}), "acme")
    assert resp.status == 200, resp

    calls = fake_sts.assume_role_calls()
    assert len(calls) == 1, fake_sts.describe()
    c = calls[0]
    p = c.params
    assert p["Version"] == "2011-06-15"
    assert p["RoleArn"] == "arn:aws:iam::111122223333:role/tenant-acme"
    assert p["RoleSessionName"] == "tenantgate-acme"
    assert c.tags == {"TenantID": "acme", "Plan": "gold"}
    assert p["SourceIdentity"] == "alice"
    assert p["ExternalId"] == EXTERNAL_ID
    assert p["DurationSeconds"] == "900"
    pol = json.loads(p["Policy"])
    assert pol["Statement"][0]["Condition"]["StringEquals"]["aws:ResourceTag/TenantID"] == "acme"
    assert "{tenant}" not in p["Policy"]
    assert c.signature_valid, c.summary()
    assert (c.access_key_id, c.service, c.region) == (base_keys.access_key_id, "sts", "us-east-1")
    assert c.security_token is None  # long-term base keys

    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", c.issued.access_key_id)
    assert rec.header_values("x-amz-security-token") == [c.issued.session_token]
    assert "x-amz-security-token" in rec.signed_headers
    assert (rec.service, rec.region) == ("bedrock", "us-east-1")
    assert_no_secrets(sc, fake_sts)


def test_listed_tenants_prefetched_at_startup(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §6: the listed tenants' credentials are fetched in the background
    at start-up; the first request then needs no STS call."""
    sc = start(start_sidecar_fn, fake_sts, base_keys)
    for tenant in ("acme", "globex"):
        assert len(fake_sts.wait_for(1, tenant=tenant)) == 1, fake_sts.describe()
    acme = fake_sts.assume_role_calls("acme")[0]
    resp = converse(sc, mint("acme", "alice"), "acme")
    assert resp.status == 200, resp
    assert len(fake_sts.assume_role_calls("acme")) == 1, fake_sts.describe()
    harness.assert_one_valid_upstream(fake_aws, "Converse", acme.issued.access_key_id)


def test_sequential_requests_one_sts_call(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §6: credentials are cached per tenant: many requests, one STS
    call (counted for the tenant: listed tenants are pre-fetched)."""
    sc = start(start_sidecar_fn, fake_sts, base_keys)
    for i in range(12):
        tenant = "initech" if i % 2 else "acme"
        resp = converse(sc, mint(tenant, f"user{i % 3}"), tenant)
        assert resp.status == 200, resp
    for tenant in ("initech", "acme"):
        calls = fake_sts.assume_role_calls(tenant)
        assert len(calls) == 1, fake_sts.describe()
    recs = fake_aws.recorded()
    assert len(recs) == 12 and all(r.signature_valid for r in recs), fake_aws.describe()
    for r in recs:
        assert fake_sts.issued_for(r.access_key_id).tenant == marker_of(r)
    assert len(upstream_keys(fake_aws)) == 2


def test_user_templates_mean_one_session_per_user(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §6: the cache key is the rendered request; templates using
    {user} mean one STS session per user (and no start-up pre-fetch)."""
    sc = start(start_sidecar_fn, fake_sts, base_keys, credentials={"source_identity": "{user}"})
    for user in ("alice", "bob", "alice", "bob", "alice"):
        assert converse(sc, mint("acme", user), "acme").status == 200
    calls = fake_sts.assume_role_calls("acme")
    assert sorted(c.params["SourceIdentity"] for c in calls) == ["alice", "bob"], fake_sts.describe()
    by_user = {c.params["SourceIdentity"]: c.issued.access_key_id for c in calls}
    used = [r.access_key_id for r in fake_aws.recorded()]
    assert used == [by_user[u] for u in ("alice", "bob", "alice", "bob", "alice")]


def test_concurrent_cold_tenant_single_flight(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §6: one STS call at a time per tenant, concurrent requests wait
    for it: 30 simultaneous requests of a cold tenant, one AssumeRole."""
    sc = start(start_sidecar_fn, fake_sts, base_keys)
    fake_sts.delay_seconds = 0.5  # keep the one call in flight while the others arrive
    tokens = [mint("coldco", f"u{i}") for i in range(30)]
    barrier = threading.Barrier(30, timeout=10)

    def one(tok):
        barrier.wait()
        return converse(sc, tok, "coldco")

    with ThreadPoolExecutor(30) as pool:
        results = list(pool.map(one, tokens, timeout=30))
    assert [r.status for r in results] == [200] * 30, [r for r in results if r.status != 200][:3]
    calls = fake_sts.assume_role_calls("coldco")
    assert len(calls) == 1, fake_sts.describe()
    recs = fake_aws.recorded()
    assert len(recs) == 30 and all(r.signature_valid for r in recs), fake_aws.describe()
    assert upstream_keys(fake_aws) == {calls[0].issued.access_key_id}


def test_refresh_before_expiry_in_background(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §6: credentials are refreshed `refresh_before_secs` before they
    expire, without failing or holding up requests; later requests use the
    new keys."""
    sc = start(start_sidecar_fn, fake_sts, base_keys, credentials={"refresh_before_secs": 10})
    fake_sts.ttl_seconds = 12  # enters the refresh window 2 s after issue
    tok = mint("renewco", "alice")
    assert converse(sc, tok, "renewco").status == 200
    first = fake_sts.assume_role_calls("renewco")
    assert len(first) == 1, fake_sts.describe()
    old = first[0].issued.access_key_id
    fake_sts.ttl_seconds = 3600

    time.sleep(3)
    t0 = time.monotonic()
    resp = converse(sc, tok, "renewco")
    assert resp.status == 200, resp
    assert time.monotonic() - t0 < 2.0, "the request waited for the refresh"
    calls = fake_sts.wait_for(2, tenant="renewco")
    assert len(calls) == 2, fake_sts.describe()
    new = calls[1].issued.access_key_id
    assert new != old
    assert fake_aws.recorded()[-1].access_key_id == old  # served while the refresh ran

    deadline = time.monotonic() + 5
    while fake_aws.recorded()[-1].access_key_id != new and time.monotonic() < deadline:
        assert converse(sc, tok, "renewco").status == 200
        time.sleep(0.05)
    assert fake_aws.recorded()[-1].access_key_id == new, fake_aws.describe()
    for _ in range(3):
        assert converse(sc, tok, "renewco").status == 200
    assert fake_aws.recorded()[-1].access_key_id == new
    assert len(fake_sts.assume_role_calls("renewco")) == 2, fake_sts.describe()
    assert all(r.signature_valid for r in fake_aws.recorded()), fake_aws.describe()


def test_sts_down_cached_credentials_keep_working(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §6: STS failing does not matter while unexpired credentials are
    cached: requests keep succeeding with them, also inside the refresh
    window where the background refresh fails."""
    sc = start(start_sidecar_fn, fake_sts, base_keys, credentials={"refresh_before_secs": 10})
    fake_sts.ttl_seconds = 13
    tok = mint("steadyco", "alice")
    assert converse(sc, tok, "steadyco").status == 200
    key = fake_sts.assume_role_calls("steadyco")[0].issued.access_key_id
    fake_sts.mode = "down"
    for _ in range(3):
        assert converse(sc, tok, "steadyco").status == 200
    assert len(fake_sts.assume_role_calls("steadyco")) == 1  # not even asked: the keys are fresh

    time.sleep(3.5)  # inside the refresh window, ~9 s of validity left
    for _ in range(3):
        resp = converse(sc, tok, "steadyco")
        assert resp.status == 200, resp
    failed = fake_sts.wait_for(2, tenant="steadyco")
    assert len(failed) >= 2 and all(c.status == 500 for c in failed[1:]), fake_sts.describe()
    recs = fake_aws.recorded()
    assert len(recs) == 7 and {r.access_key_id for r in recs} == {key}, fake_aws.describe()
    assert all(r.signature_valid for r in recs)


@pytest.mark.parametrize("mode", ["down", "denied", "close"])
def test_sts_failure_without_cache_is_503(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint, mode):
    """docs/reference.md §6/§8: STS failing with no cached credentials: 503
    `credentials_unavailable` (ServiceUnavailableException); never a
    fallback to the base credentials or another tenant's; nothing upstream."""
    sc = start(start_sidecar_fn, fake_sts, base_keys)
    fake_sts.wait_for(1, tenant="acme")  # acme's pre-fetch worked
    fake_sts.mode = mode
    t0 = time.monotonic()
    resp = converse(sc, mint("downco", "alice"), "downco")
    assert time.monotonic() - t0 < STS_TIMEOUT + 3
    harness.assert_tenantgate_error(resp, 503, "credentials_unavailable", "ServiceUnavailableException")
    assert resp.headers["x-amzn-errortype"].split(":")[0] == "ServiceUnavailableException"
    assert fake_sts.assume_role_calls("downco"), fake_sts.describe()
    # Again, and another cold tenant: still no fallback.
    harness.assert_tenantgate_error(converse(sc, mint("downco", "bob"), "downco"), 503, "credentials_unavailable")
    harness.assert_tenantgate_error(converse(sc, mint("otherco", "carol"), "otherco"), 503,
                                    "credentials_unavailable")
    harness.assert_nothing_upstream(fake_aws)
    rec = sc.wait_audit(resp.headers["x-tenantgate-request-id"])
    assert (rec["decision"], rec["reason"], rec["status"], rec["tenant"]) == (
        "deny", "credentials_unavailable", 503, "downco")

    # STS back: the tenant works again, with its own keys.
    fake_sts.mode = "ok"
    assert converse(sc, mint("downco", "alice"), "downco").status == 200
    ok = [c for c in fake_sts.assume_role_calls("downco") if c.issued]
    assert len(ok) == 1
    harness.assert_one_valid_upstream(fake_aws, "Converse", ok[0].issued.access_key_id)
    assert_no_secrets(sc, fake_sts)


def test_sts_hang_bounded_503(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §6/§8: an STS that does not answer costs a request at most the
    STS timeout (5 s): 503 `credentials_unavailable`, nothing upstream;
    concurrent requests of that tenant share the one attempt."""
    sc = start(start_sidecar_fn, fake_sts, base_keys)
    fake_sts.mode = "hang"
    toks = [mint("slowco", f"u{i}") for i in range(5)]
    t0 = time.monotonic()
    with ThreadPoolExecutor(5) as pool:
        results = list(pool.map(lambda t: converse(sc, t, "slowco", timeout=20), toks, timeout=25))
    elapsed = time.monotonic() - t0
    for r in results:
        harness.assert_tenantgate_error(r, 503, "credentials_unavailable")
    assert elapsed < STS_TIMEOUT + 3, f"took {elapsed:.1f}s"
    assert 1 <= len(fake_sts.assume_role_calls("slowco")) <= 2, fake_sts.describe()
    harness.assert_nothing_upstream(fake_aws)


def test_twenty_tenants_concurrent_no_cross_tenant(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §1/§6: every upstream request is signed with keys STS issued for
    the requesting token's tenant (TenantID tag) -- none of another tenant,
    none of the base credentials -- under concurrency across 20 tenants."""
    sc = start(start_sidecar_fn, fake_sts, base_keys)
    fake_sts.delay_seconds = 0.1
    # 19 unlisted tenants and a listed one (pre-fetched; globex may not use haiku).
    tenants = [f"tenant{i:02d}" for i in range(19)] + ["acme"]
    jobs = [(t, mint(t, f"user{j}")) for t in tenants for j in range(4)]
    random.Random(7).shuffle(jobs)
    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(lambda j: (j[0], converse(sc, j[1], j[0])), jobs, timeout=40))
    bad = [(t, r) for t, r in results if r.status != 200]
    assert not bad, bad[:3]

    recs = fake_aws.recorded()
    assert len(recs) == len(jobs), fake_aws.describe()
    cross = []
    for r in recs:
        assert r.signature_valid, r.summary()
        assert r.access_key_id != base_keys.access_key_id
        issued = fake_sts.issued_for(r.access_key_id)
        assert issued is not None and issued.action == "AssumeRole", r.summary()
        if issued.tenant != marker_of(r) or issued.role_arn != ROLE.format(tenant=marker_of(r)):
            cross.append((marker_of(r), issued.tenant, r.access_key_id))
    assert not cross, f"cross-tenant signing: {cross[:5]}"
    for t in tenants:
        calls = fake_sts.assume_role_calls(t)
        assert len(calls) == 1, f"{t}: {len(calls)} STS calls\n{fake_sts.describe()}"
        assert calls[0].signature_valid and calls[0].access_key_id == base_keys.access_key_id
    assert_no_secrets(sc, fake_sts)


def test_missing_claim_in_template_no_sts_call(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §3/§8: a template naming a claim the token lacks -> 403
    `missing_claim`; STS is not called (no empty tag value), nothing
    upstream."""
    sc = start(start_sidecar_fn, fake_sts, base_keys, credentials={
        "session_tags": {"TenantID": "{tenant}", "Plan": "{claims.custom:plan}"},
    })
    time.sleep(0.5)  # pre-fetch has nothing to render for listed tenants either
    for tenant in ("acme", "newco"):
        resp = converse(sc, mint(tenant, "alice"), tenant)
        harness.assert_tenantgate_error(resp, 403, "missing_claim", "AccessDeniedException")
    assert fake_sts.recorded() == [], fake_sts.describe()
    harness.assert_nothing_upstream(fake_aws)

    resp = converse(sc, mint("newco", "alice", **{"custom:plan": "free"}), "newco")
    assert resp.status == 200, resp
    calls = fake_sts.assume_role_calls()
    assert len(calls) == 1 and calls[0].tags == {"TenantID": "newco", "Plan": "free"}, fake_sts.describe()


def test_no_credential_material_in_output(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §1/§9: with debug logging, through successes, STS failures and a
    refresh, neither the audit (stdout) nor the log (stderr) contains a
    secret access key or session token (issued or base)."""
    sc = start(start_sidecar_fn, fake_sts, base_keys, credentials={"refresh_before_secs": 10},
               env={"TENANTGATE_LOG": "debug"})
    fake_sts.ttl_seconds = 12
    assert converse(sc, mint("leakco", "alice"), "leakco").status == 200
    fake_sts.mode = "denied"
    assert converse(sc, mint("leakco2", "alice"), "leakco2").status == 503
    fake_sts.mode = "ok"
    time.sleep(2.5)
    assert converse(sc, mint("leakco", "alice"), "leakco").status == 200
    fake_sts.wait_for(2, tenant="leakco")
    assert converse(sc, mint("leakco", "alice"), "leakco").status == 200
    assert sc.audit(), "no audit lines"
    assert len(fake_sts.issued) >= 2
    time.sleep(0.3)
    assert_no_secrets(sc, fake_sts)


def test_base_keys_rejected_by_sts_is_503(start_sidecar_fn, fake_sts, base_keys, fake_aws, mint):
    """docs/reference.md §6: the fake STS really checks the AssumeRole signature: base
    keys with a wrong secret are refused (SignatureDoesNotMatch), the request
    gets 503 `credentials_unavailable`, and nothing is sent upstream."""
    sc = start(start_sidecar_fn, fake_sts, base_keys,
               env={"AWS_SECRET_ACCESS_KEY": base_keys.secret_access_key[::-1]})
    resp = converse(sc, mint("acme", "alice"), "acme")
    harness.assert_tenantgate_error(resp, 503, "credentials_unavailable")
    calls = fake_sts.assume_role_calls("acme")
    assert calls and all(not c.signature_valid and c.error_code == "SignatureDoesNotMatch" for c in calls), \
        fake_sts.describe()
    assert calls[0].access_key_id == base_keys.access_key_id
    harness.assert_nothing_upstream(fake_aws)


def test_sts_sessions_survive_a_reload_that_keeps_the_credentials_settings(start_sidecar_fn, fake_sts, base_keys,
                                                                          fake_aws, mint):
    """docs/reference.md §10 with §6: a reload that changes only an allowlist keeps the
    cached STS sessions (no new AssumeRole); one that changes the role ARN
    builds new sessions, so nothing is ever signed as the old role."""
    sc = start(start_sidecar_fn, fake_sts, base_keys)
    tok = mint("tenant-r1", "alice")
    assert converse(sc, tok, "tenant-r1").status == 200
    assert len(fake_sts.assume_role_calls(tenant="tenant-r1")) == 1

    sc.rewrite_config({"tenant_defaults": {"models": ["anthropic.claude-3-*"]}})
    sc.signal(signal.SIGHUP)
    time.sleep(1.5)
    assert converse(sc, tok, "tenant-r1").status == 200
    assert len(fake_sts.assume_role_calls(tenant="tenant-r1")) == 1, fake_sts.describe()

    sc.rewrite_config({"credentials": {"role_arn": "arn:aws:iam::111122223333:role/pool-v2"}})
    sc.signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline:
        fake_aws.reset()
        assert converse(sc, tok, "tenant-r1").status == 200
        calls = fake_sts.assume_role_calls(tenant="tenant-r1")
        if calls[-1].role_arn == "arn:aws:iam::111122223333:role/pool-v2":
            break
        time.sleep(0.3)
    calls = fake_sts.assume_role_calls(tenant="tenant-r1")
    assert calls[-1].role_arn == "arn:aws:iam::111122223333:role/pool-v2", fake_sts.describe()
    by_key = {c.issued.access_key_id: c for c in fake_sts.assume_role_calls() if c.issued}
    assert all(by_key[k].role_arn.endswith("pool-v2") for k in upstream_keys(fake_aws)), fake_sts.describe()
