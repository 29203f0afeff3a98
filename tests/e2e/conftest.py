"""Fixtures for the end-to-end suite.

- ``fake_aws``: one FakeAws per session, reset before every test
- ``keys``, ``jwks_path``, ``mint``: signing keys, the JWKS file, token minting
- ``creds``: per-tenant AWS keys, registered in the fake, given to the sidecar as env vars
- ``sidecar``: one tenantgate per test module; a module sets ``SIDECAR_OVERRIDES``
  (a dict deep-merged into harness.base_config) to change its config
- ``start_sidecar`` / ``start_sidecar_fn``: factories for extra sidecars
  (module- / function-scoped), ``start_sidecar(overrides, env=..., wait_ready=...)``
- ``bedrock``: a boto3 bedrock-runtime client for acme/alice on the module's sidecar
- ``client_for``: ``client_for(sidecar, token=..., service=...)``
- ``known_secrets``: what must never appear in a sidecar's output; every
  sidecar's stdout/stderr is checked against it when the sidecar stops
"""

from __future__ import annotations

import json
import os
import secrets

import pytest

import harness
from fakeaws import FakeAws
from fakests import random_secret

# The tests talk to 127.0.0.1 only; no AWS config of the machine applies.
os.environ["AWS_CONFIG_FILE"] = os.devnull
os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.1,localhost"
for _v in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
           "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_v, None)


class TenantCreds:
    def __init__(self, tenant, akid, secret, token=None):
        self.tenant, self.akid, self.secret, self.token = tenant, akid, secret, token


@pytest.fixture(scope="session")
def fake_aws():
    fake = FakeAws()
    yield fake
    fake.close()


@pytest.fixture(autouse=True)
def _fresh_fake(fake_aws, keys):
    fake_aws.reset()
    fake_aws.jwks = keys.jwks()
    yield
    fake_aws.reset()


@pytest.fixture(scope="session")
def keys():
    return harness.Keys()


@pytest.fixture(scope="session")
def jwks_path(keys, tmp_path_factory):
    p = tmp_path_factory.mktemp("jwks") / "jwks.json"
    p.write_text(json.dumps(keys.jwks(), indent=2))
    return p


@pytest.fixture(scope="session")
def mint(keys):
    return harness.Minter(keys)


@pytest.fixture(scope="session")
def creds(fake_aws):
    suffix = secrets.token_hex(6).upper()
    acme = TenantCreds("acme", "AKIAACME" + suffix, random_secret())
    globex = TenantCreds("globex", "ASIAGLOBEX" + suffix, random_secret(), token="FwoGZXIvYXdz" + random_secret(60))
    for c in (acme, globex):
        fake_aws.register_credentials(c.akid, c.secret, c.token, label=c.tenant)
    return {"acme": acme, "globex": globex}


@pytest.fixture(scope="session")
def sidecar_env(creds):
    """The sidecar's environment: the machine's, minus AWS and proxy
    settings, plus the per-tenant keys the config names."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AWS_") and "proxy" not in k.lower()}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        NO_PROXY="127.0.0.1,localhost",
        TENANTGATE_LOG=os.environ.get("TENANTGATE_TEST_LOG", "info"),
        TENANTGATE_SESSION_KEY="e2e-session-key-" + secrets.token_hex(16),
        ACME_AKID=creds["acme"].akid,
        ACME_SECRET=creds["acme"].secret,
        GLOBEX_AKID=creds["globex"].akid,
        GLOBEX_SECRET=creds["globex"].secret,
        GLOBEX_SESSION_TOKEN=creds["globex"].token,
    )
    env.pop("TENANTGATE_CONFIG", None)
    return env


@pytest.fixture(scope="session")
def known_secrets(fake_aws, creds, mint):
    """Everything that must never appear in a sidecar's stdout or stderr
    (docs/reference.md §1 "Nothing is logged that is a credential or token")."""

    def collect() -> dict:
        out = {}
        # Every key the fake AWS accepts: the tenants' static keys and any
        # temporary keys a fake STS issued and registered.
        for c in fake_aws.all_credentials():
            out[f"secret access key of {c.access_key_id}"] = c.secret_access_key
            if c.session_token:
                out[f"session token of {c.access_key_id}"] = c.session_token
        for i, tok in enumerate(mint.minted):
            out[f"minted JWT #{i}"] = tok
            sig = tok.rsplit(".", 1)[-1]
            if len(sig) >= 16:
                out[f"minted JWT #{i} signature"] = sig
        for sig in sorted(fake_aws.seen_signatures):
            out[f"upstream SigV4 signature {sig[:8]}..."] = sig
        for sig in sorted(harness.CLIENT_SIGNATURES):
            out[f"client SigV4 signature {sig[:8]}..."] = sig
        return out

    return collect


def _factory(fake_aws, jwks_path, sidecar_env, workdir):
    started = []
    counter = iter(range(1000))

    def start(overrides=None, *, env=None, wait_ready=True, extra_toml="", name=None, config=None,
              stdout_unread=False):
        cfg = config or harness.base_config(fake_aws, jwks_path, harness.free_port(), harness.free_port())
        cfg = harness.deep_merge(cfg, overrides or {})
        e = dict(sidecar_env)
        e.update(env or {})
        sc = harness.Sidecar(workdir, cfg, e, name=name or f"sidecar{next(counter)}", extra_toml=extra_toml)
        started.append(sc)
        sc.start(wait_ready=wait_ready, stdout_unread=stdout_unread)
        return sc

    return start, started


def _stop_all(started, known_secrets):
    """Stop every sidecar, then check none printed a secret (every sidecar
    of the suite gets this check, whatever its tests were about)."""
    leaks = []
    for sc in started:
        try:
            sc.stop()
        except Exception:  # noqa: BLE001 - teardown must stop the others too
            pass
        try:
            texts = {f"{sc.name} stdout": sc.stdout_text(), f"{sc.name} stderr": sc.stderr_text()}
        except OSError:
            continue
        leaks += harness.find_leaks(texts, known_secrets())
    assert not leaks, f"secrets in sidecar output: {leaks}"


@pytest.fixture(scope="module")
def start_sidecar(fake_aws, jwks_path, sidecar_env, tmp_path_factory, known_secrets):
    start, started = _factory(fake_aws, jwks_path, sidecar_env, tmp_path_factory.mktemp("sidecar"))
    yield start
    _stop_all(started, known_secrets)


@pytest.fixture
def start_sidecar_fn(fake_aws, jwks_path, sidecar_env, tmp_path, known_secrets):
    start, started = _factory(fake_aws, jwks_path, sidecar_env, tmp_path)
    yield start
    _stop_all(started, known_secrets)


@pytest.fixture(scope="module")
def sidecar(request, start_sidecar, creds):
    overrides = getattr(request.module, "SIDECAR_OVERRIDES", {})
    env = getattr(request.module, "SIDECAR_ENV", None)
    sc = start_sidecar(overrides, env=env, name="main")
    yield sc


@pytest.fixture
def client_for():
    def make(sc, token=None, service="bedrock-runtime", **kw):
        return harness.make_client(sc.url, service, token, **kw)

    return make


@pytest.fixture
def acme_token(mint):
    return mint("acme", "alice")


@pytest.fixture
def bedrock(sidecar, acme_token):
    return harness.make_client(sidecar.url, "bedrock-runtime", acme_token)
