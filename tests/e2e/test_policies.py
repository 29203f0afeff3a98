"""Cedar policies on claims (docs/reference.md §12, docs/policies.md), through
boto3: permit, forbid, default deny, a claim list (groups), context
conditions (max_tokens, streaming), a policy that tries to widen beyond the
allowlist and cannot, per-tenant files, reload good and broken, `check`
errors with file and line, and the audit `policies` field. Every denial is
403 AccessDeniedException `policy_denied` with nothing sent upstream.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

import harness
from harness import HAIKU, NOVA, converse_args

SONNET = "anthropic.claude-3-sonnet-20240229-v1:0"

COMMON = """
@id("eng-models")
permit(principal, action in TenantGate::Action::"ModelCall", resource)
when { principal.groups.contains("eng") };

@id("analysts-large")
permit(principal, action in TenantGate::Action::"ModelCall", resource)
when { principal.groups.contains("analysts") };

@id("free-tier-limit")
forbid(principal, action in TenantGate::Action::"ModelCall", resource)
when {
  principal.claims has "custom:plan" && principal.claims["custom:plan"] == "free" &&
  !(context has max_tokens && context.max_tokens <= 1024)
};

@id("no-streaming-for-interns")
forbid(principal, action, resource)
when { context.streaming && principal.groups.contains("interns") };
"""

# A policy that names a model outside acme's allowlist: it cannot widen it.
WIDEN = """
@id("widen-to-sonnet")
permit(principal, action, resource == TenantGate::Model::"anthropic.claude-3-sonnet-20240229-v1:0");
"""


def _write(dirpath, name, text):
    p = dirpath / name
    p.write_text(text)
    return p


def _overrides(tmp_path):
    _write(tmp_path, "common.cedar", COMMON)
    _write(tmp_path, "widen.cedar", WIDEN)
    return {
        "identity": {"groups_claim": "groups"},
        "policy": {"files": [str(tmp_path / "common.cedar")], "claims": ["custom:plan"]},
        "tenants": {"acme": {"policy": {"files": [str(tmp_path / "widen.cedar")]}}},
    }


@pytest.fixture
def sc(start_sidecar_fn, tmp_path):
    return start_sidecar_fn(_overrides(tmp_path))


def _client(sc, mint, tenant="acme", user="alice", **claims):
    return harness.make_client(sc.url, token=mint(tenant, user, **claims))


def _denied(client, fake, call):
    err = harness.expect_client_error(client, call, 403, "policy_denied", "AccessDeniedException")
    harness.assert_nothing_upstream(fake)
    return err


def test_permit_by_group_and_audit_names_the_policy(sc, mint, fake_aws, creds):
    c = _client(sc, mint, groups=["eng"])
    resp = c.converse(**converse_args(HAIKU))
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    rec = sc.wait_audit(harness.request_id_of(resp))
    assert rec["decision"] == "allow"
    assert rec["policies"] == ["eng-models"]


def test_default_deny_without_a_permit(sc, mint, fake_aws):
    c = _client(sc, mint, groups=["sales"])
    err = _denied(c, fake_aws, lambda: c.converse(**converse_args(HAIKU)))
    rec = sc.wait_audit(harness.request_id_of(err))
    assert rec["reason"] == "policy_denied" and rec["decision"] == "deny"
    assert rec["policies"] == []


def test_no_groups_claim_is_no_group(sc, mint, fake_aws):
    c = _client(sc, mint)
    _denied(c, fake_aws, lambda: c.converse(**converse_args(HAIKU)))


def test_forbid_on_a_claim_and_the_stated_token_limit(sc, mint, fake_aws, creds):
    free = _client(sc, mint, groups=["eng"], **{"custom:plan": "free"})
    # No stated limit, or above 1,024: forbidden.
    err = _denied(free, fake_aws, lambda: free.converse(**converse_args(HAIKU)))
    assert sc.wait_audit(harness.request_id_of(err))["policies"] == ["free-tier-limit"]
    args = converse_args(HAIKU)
    args["inferenceConfig"] = {"maxTokens": 4096}
    _denied(free, fake_aws, lambda: free.converse(**args))
    # InvokeModel states it in the body.
    body = json.dumps({"max_tokens": 2000, "messages": []}).encode()
    _denied(free, fake_aws, lambda: free.invoke_model(modelId=HAIKU, body=body))
    # Within the limit: allowed.
    args["inferenceConfig"] = {"maxTokens": 1024}
    free.converse(**args)
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    fake_aws.reset()
    ok = json.dumps({"max_tokens": 512, "messages": []}).encode()
    free.invoke_model(modelId=HAIKU, body=ok)
    harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    # A paid plan is not limited.
    fake_aws.reset()
    paid = _client(sc, mint, groups=["eng"], **{"custom:plan": "pro"})
    paid.converse(**converse_args(HAIKU))
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)


def test_a_limit_stated_twice_is_refused(sc, mint, fake_aws):
    """The model may read another copy than the policy did: 400, nothing upstream."""
    free = _client(sc, mint, groups=["eng"], **{"custom:plan": "free"})
    for body in [
        b'{"max_tokens": 100, "max_tokens": 100000, "messages": []}',
        b'{"max_tokens": 100, "maxTokens": 100000}',
        b'{"max\\u005ftokens": 100, "max_tokens": 100000}',
        b'{"max_tokens": 100, "MAX_TOKENS": 100000}',
        b'{"max_tokens": 100, "inferenceConfig": {"maxTokens": 100000}}',
        b'{"inferenceConfig": {"maxTokens": 100, "max_new_tokens": 100000}}',
    ]:
        harness.expect_client_error(free, lambda: free.invoke_model(modelId=HAIKU, body=body), 400, "invalid_parameter")
        harness.assert_nothing_upstream(fake_aws)
    # Converse: a model-specific limit in additionalModelRequestFields (the
    # model reads it too) beside inferenceConfig.maxTokens.
    args = converse_args(HAIKU)
    args["inferenceConfig"] = {"maxTokens": 100}
    args["additionalModelRequestFields"] = {"max_tokens": 100000}
    harness.expect_client_error(free, lambda: free.converse(**args), 400, "invalid_parameter")
    harness.assert_nothing_upstream(fake_aws)


def test_a_limit_in_any_provider_spelling_is_the_limit(sc, mint, fake_aws, creds):
    """Other case, nested (Nova, Titan) and additionalModelRequestFields
    spellings are all read, so none of them slips past the free-tier rule."""
    free = _client(sc, mint, groups=["eng"], **{"custom:plan": "free"})
    for body in [
        {"MAX_TOKENS": 4000, "messages": []},
        {"Max-Tokens": 4000, "messages": []},
        {"schemaVersion": "messages-v1", "messages": [], "inferenceConfig": {"maxTokens": 4000}},
        {"inputText": "hi", "textGenerationConfig": {"maxTokenCount": 4000}},
        {"prompt": "hi", "max_tokens_to_sample": 4000},
    ]:
        raw = json.dumps(body).encode()
        _denied(free, fake_aws, lambda: free.invoke_model(modelId=HAIKU, body=raw))
    ok = json.dumps({"schemaVersion": "messages-v1", "messages": [], "inferenceConfig": {"maxTokens": 512}}).encode()
    free.invoke_model(modelId=HAIKU, body=ok)
    harness.assert_one_valid_upstream(fake_aws, "InvokeModel", creds["acme"].akid)
    fake_aws.reset()
    args = converse_args(HAIKU)
    args["additionalModelRequestFields"] = {"max_tokens": 4000}
    _denied(free, fake_aws, lambda: free.converse(**args))
    args["additionalModelRequestFields"] = {"max_tokens": 800}
    free.converse(**args)
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)


def test_streaming_forbidden_for_a_group(sc, mint, fake_aws, creds):
    intern = _client(sc, mint, groups=["eng", "interns"])
    err = _denied(intern, fake_aws, lambda: intern.converse_stream(**converse_args(HAIKU)))
    assert sc.wait_audit(harness.request_id_of(err))["policies"] == ["no-streaming-for-interns"]
    intern.converse(**converse_args(HAIKU))
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)


def test_a_policy_cannot_widen_the_allowlist(sc, mint, fake_aws):
    """widen.cedar permits Sonnet for acme; acme's allowlist does not list it:
    the allowlist decides first, 403 model_not_allowed."""
    c = _client(sc, mint, groups=["analysts"])
    harness.expect_client_error(c, lambda: c.converse(**converse_args(SONNET)), 403, "model_not_allowed")
    harness.assert_nothing_upstream(fake_aws)


def test_tenant_files_apply_to_that_tenant_only(sc, mint, fake_aws, creds):
    """globex gets the global policies only: its own model, permitted by group."""
    g = _client(sc, mint, tenant="globex", user="gary", groups=["eng"])
    g.converse(**converse_args(NOVA))
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["globex"].akid)
    fake_aws.reset()
    g2 = _client(sc, mint, tenant="globex", user="gina")
    _denied(g2, fake_aws, lambda: g2.converse(**converse_args(NOVA)))


def test_denial_costs_nothing_of_the_rate_limit(start_sidecar_fn, tmp_path, mint, fake_aws, creds):
    o = _overrides(tmp_path)
    o["tenants"]["acme"]["rate_limit"] = {"requests_per_second": 0.001, "burst": 1}
    sc = start_sidecar_fn(o)
    denied = _client(sc, mint, groups=["sales"])
    for _ in range(3):
        _denied(denied, fake_aws, lambda: denied.converse(**converse_args(HAIKU)))
    ok = _client(sc, mint, groups=["eng"])
    ok.converse(**converse_args(HAIKU))
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)


def test_no_policies_no_field_value(start_sidecar_fn, mint, fake_aws):
    sc = start_sidecar_fn()
    c = harness.make_client(sc.url, token=mint())
    resp = c.converse(**converse_args(HAIKU))
    assert sc.wait_audit(harness.request_id_of(resp))["policies"] is None


def _allowed(sc, tok):
    r = harness.make_client(sc.url, token=tok)
    try:
        r.converse(**converse_args(HAIKU))
        return True
    except Exception:  # noqa: BLE001 - any refusal
        return False


def _eventually(pred, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_reload_of_a_policy_file_good_and_broken(start_sidecar_fn, tmp_path, mint, fake_aws):
    sc = start_sidecar_fn(_overrides(tmp_path))
    tok = mint(groups=["sales"])
    assert not _allowed(sc, tok)
    # Editing the policy file alone reloads the configuration.
    _write(tmp_path, "common.cedar", COMMON + '\npermit(principal, action, resource) when { principal.groups.contains("sales") };\n')
    assert _eventually(lambda: _allowed(sc, tok), timeout=15), sc.stderr_tail()
    # A broken file keeps the set in force (and is counted).
    _write(tmp_path, "common.cedar", "permit(principal, action, resource) when { principal.nope };\n")
    sc.signal(signal.SIGHUP)
    assert _eventually(lambda: 'tenantgate_config_reloads_total{result="error"} 1' in sc.admin("/metrics").body.decode(),
                       timeout=10), sc.stderr_tail()
    assert "common.cedar:1" in sc.stderr_text(), sc.stderr_tail()
    assert _allowed(sc, tok)
    assert not _allowed(sc, mint(groups=["other"]))
    # A decision remembered under the old set does not outlive it: the same
    # request, permitted (and cached) above, is refused once a forbid lands.
    _write(tmp_path, "common.cedar", COMMON + '\npermit(principal, action, resource) when { principal.groups.contains("sales") };\n'
           'forbid(principal, action, resource) when { principal.groups.contains("sales") };\n')
    assert _eventually(lambda: not _allowed(sc, tok), timeout=15), sc.stderr_tail()


def test_check_reports_policy_errors_with_file_and_line(tmp_path, fake_aws, jwks_path, sidecar_env):
    cfg = harness.base_config(fake_aws, jwks_path, harness.free_port(), harness.free_port())
    _write(tmp_path, "bad.cedar", 'permit(principal, action, resource);\n\nforbid(principal, action == TenantGate::Action::"Delete", resource);\n')
    cfg = harness.deep_merge(cfg, {"policy": {"files": ["bad.cedar"], "inline": "permit(principal, action, resource) when { context.nope };"}})
    path = tmp_path / "c.toml"
    path.write_text(harness.to_toml(cfg))
    r = subprocess.run([harness.tenantgate_bin(), "check", "--config", str(path)], env=sidecar_env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r
    assert "bad.cedar:3:" in r.stderr, r.stderr
    assert "policy.inline:1:" in r.stderr, r.stderr
    # A tenant_defaults policy table is refused (policies for all tenants go in [policy]).
    cfg2 = harness.deep_merge(harness.base_config(fake_aws, jwks_path, 1, 2), {"tenant_defaults": {"policy": {"files": []}}})
    path.write_text(harness.to_toml(cfg2))
    r = subprocess.run([harness.tenantgate_bin(), "check", "--config", str(path)], env=sidecar_env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "tenant_defaults.policy" in r.stderr, r.stderr


def test_policy_schema_command_prints_the_configured_claims(tmp_path, fake_aws, jwks_path, sidecar_env):
    cfg = harness.deep_merge(harness.base_config(fake_aws, jwks_path, 1, 2),
                             {"policy": {"claims": ["custom:plan", "level"], "claim_types": {"level": "Long"}}})
    path = tmp_path / "c.toml"
    path.write_text(harness.to_toml(cfg))
    r = subprocess.run([harness.tenantgate_bin(), "policy-schema", "--config", str(path)], env=sidecar_env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert 'namespace TenantGate' in r.stdout
    assert '"custom:plan"?: String' in r.stdout and '"level"?: Long' in r.stdout
    assert 'action "Converse" in ["ModelCall"]' in r.stdout
