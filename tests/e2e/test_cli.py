"""Command line (docs/reference.md §2): `tenantgate check` and `tenantgate demo`, and the
`--config` / `TENANTGATE_CONFIG` ways to start `run`."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

import harness


def _run(args, timeout=30, env=None, cwd=None):
    return subprocess.run(
        [harness.tenantgate_bin(), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=cwd or str(harness.REPO_ROOT),
        stdin=subprocess.DEVNULL,
    )


def test_check_repo_example_config(sidecar_env):
    """docs/reference.md §2/§3: the annotated example `config.toml` at the repository root
    is valid: `tenantgate check --config config.toml` exits 0."""
    path = harness.REPO_ROOT / "config.toml"
    assert path.exists(), "config.toml (the annotated example) is missing at the repository root"
    r = _run(["check", "--config", str(path)], env=sidecar_env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_harness_config(fake_aws, jwks_path, sidecar_env, tmp_path):
    """docs/reference.md §2: the config every e2e sidecar starts from passes `check` (so
    the suite tests what users would write)."""
    cfg = harness.base_config(fake_aws, jwks_path, harness.free_port(), harness.free_port())
    path = tmp_path / "ok.toml"
    path.write_text(harness.to_toml(cfg))
    r = _run(["check", "--config", str(path)], env=sidecar_env)
    assert r.returncode == 0, r.stdout + r.stderr


def test_check_reports_every_error_with_its_key(fake_aws, jwks_path, sidecar_env, tmp_path):
    """docs/reference.md §2/§3: `check` prints every error with its TOML key and exits 1:
    an unknown key (typo), a template naming an unknown variable, and a
    tenant id outside the pattern, all in one run."""
    cfg = harness.base_config(fake_aws, jwks_path, harness.free_port(), harness.free_port())
    cfg = harness.deep_merge(cfg, {
        "server": {"listn": "127.0.0.1:1"},  # unknown key
        "credentials": {
            "source": "assume_role",
            "role_arn": "arn:aws:iam::111122223333:role/tenant-pool",
            "session_name": "tenantgate-{tenat}",  # bad template variable
            "session_tags": {"TenantID": "{tenant}"},
        },
    })
    for t in cfg["tenants"].values():
        t.pop("static_credentials")
    cfg["tenants"]["bad/id"] = {"models": ["amazon.nova-*"]}  # tenant id breaking the pattern
    path = tmp_path / "broken.toml"
    path.write_text(harness.to_toml(cfg))
    r = _run(["check", "--config", str(path)], env=sidecar_env)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    lines = out.splitlines()
    assert any("listn" in line for line in lines), out
    assert any("session_name" in line and "tenat" in line for line in lines), out
    assert any("bad/id" in line for line in lines), out
    assert len({i for i, line in enumerate(lines) if re.search(r"listn|session_name|bad/id", line)}) >= 3, out


def test_check_rejects_jwt_keys_in_static_identity(fake_aws, jwks_path, sidecar_env, tmp_path):
    """docs/reference.md §4.2: JWT-only keys in a static [identity] table are configuration errors."""
    cfg = harness.base_config(fake_aws, jwks_path, harness.free_port(), harness.free_port())
    cfg["identity"]["mode"] = "static"
    cfg["identity"]["tenant"] = "acme"
    path = tmp_path / "static.toml"
    path.write_text(harness.to_toml(cfg))
    r = _run(["check", "--config", str(path)], env=sidecar_env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "issuer" in r.stdout + r.stderr


def test_check_missing_file(tmp_path):
    """docs/reference.md §2: a file that does not exist is an error (exit 1), not a panic."""
    r = _run(["check", "--config", str(tmp_path / "nope.toml")])
    assert r.returncode == 1, r.stdout + r.stderr
    assert "panicked" not in r.stderr


def test_run_with_env_config_and_bare_flag(fake_aws, jwks_path, sidecar_env, tmp_path):
    """docs/reference.md §2: `tenantgate --config PATH` and `TENANTGATE_CONFIG` also run the sidecar."""
    for mode in ("flag", "env"):
        cfg = harness.base_config(fake_aws, jwks_path, harness.free_port(), harness.free_port())
        path = tmp_path / f"{mode}.toml"
        path.write_text(harness.to_toml(cfg))
        env = dict(sidecar_env)
        args = [harness.tenantgate_bin()]
        if mode == "flag":
            args += ["--config", str(path)]
        else:
            env["TENANTGATE_CONFIG"] = str(path)
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        try:
            admin = cfg["server"]["admin_listen"]
            deadline = time.monotonic() + 20
            ok = False
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if harness.http_request("GET", f"http://{admin}/readyz", timeout=1).status == 200:
                        ok = True
                        break
                except OSError:
                    pass
                time.sleep(0.1)
            assert ok, f"{mode}: not ready; exit={proc.poll()}"
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        assert proc.returncode == 0


def test_demo(tmp_path):
    """docs/reference.md §2: `tenantgate demo` runs self-contained (no AWS account, no
    network), exits 0 within 60 s and shows allowed and denied requests for
    two tenants."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and not k.startswith("TENANTGATE")}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
    try:
        r = _run(["demo"], timeout=60, env=env, cwd=str(tmp_path))
    except subprocess.TimeoutExpired:
        pytest.fail("tenantgate demo did not finish within 60 s")
    out = r.stdout + "\n" + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert re.search(r"\ballow(ed)?\b", out, re.I), out[-4000:]
    assert re.search(r"\bden(y|ied)\b", out, re.I), out[-4000:]
    tenants = set(re.findall(r'"tenant"\s*:\s*"([A-Za-z0-9._-]+)"', out))
    tenants |= set(re.findall(r"\btenant[ =:]+\"?([A-Za-z0-9][A-Za-z0-9._-]*)", out, re.I))
    tenants -= {"null", "none", "id", "is", "the"}
    assert len(tenants) >= 2, f"expected two tenants in the demo output, saw {tenants}\n{out[-4000:]}"


def test_check_accepts_redis_backend_without_redis(tmp_path):
    """docs/reference.md §2/§3 `[rate_limit] backend = "redis"`: `check` validates the
    URL as the client will open it and never connects (nothing listens on
    the port); an unusable URL is an error that does not echo its password."""
    closed = harness.ClosedPort()
    try:
        src = (harness.REPO_ROOT / "config.toml").read_text()
        assert 'backend = "local"' in src
        cfg = tmp_path / "redis.toml"
        cfg.write_text(src.replace(
            'backend = "local"',
            f'backend = "redis"\nredis_url = "redis://:pw@127.0.0.1:{closed.port}/0"\non_backend_error = "deny"', 1))
        out = _run(["check", "--config", str(cfg)], timeout=30)
        assert out.returncode == 0, (out.stdout, out.stderr)
        assert "OK" in out.stdout, out.stdout
        bad = tmp_path / "bad.toml"
        bad.write_text(src.replace('backend = "local"',
                                   'backend = "redis"\nredis_url = "redis://:topsecretpw@127.0.0.1:1/db"', 1))
        out = _run(["check", "--config", str(bad)], timeout=30)
        assert out.returncode == 1, (out.stdout, out.stderr)
        assert "rate_limit.redis_url" in out.stderr and "topsecretpw" not in out.stderr, out.stderr
    finally:
        closed.close()
