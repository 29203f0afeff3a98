"""Config reload (docs/reference.md §10): SIGHUP and file changes reload; an invalid new
file leaves the old config in force; the sidecar keeps serving."""

from __future__ import annotations

import signal
import time

import harness
from harness import HAIKU, NOVA, converse_args

ACME_WITH_NOVA = {"tenants": {"acme": {"models": ["anthropic.claude-3-haiku-*", "amazon.nova-*"]}}}


def _nova_allowed(sc, token) -> bool:
    r = sc.request("POST", f"/model/{NOVA}/converse", b'{"messages":[]}', token=token)
    assert r.status in (200, 403), r
    return r.status == 200


def _eventually(pred, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return False


def test_sighup_reloads(start_sidecar_fn, fake_aws, mint):
    """docs/reference.md §10: SIGHUP reloads the config file."""
    sc = start_sidecar_fn()
    tok = mint()
    assert not _nova_allowed(sc, tok)
    sc.rewrite_config(ACME_WITH_NOVA)
    sc.signal(signal.SIGHUP)
    assert _eventually(lambda: _nova_allowed(sc, tok)), sc.stderr_tail()
    assert sc.running


def test_file_change_reloads(start_sidecar_fn, fake_aws, mint):
    """docs/reference.md §10: a change of the config file (atomic rename, as a ConfigMap
    symlink swap) reloads it without a signal."""
    sc = start_sidecar_fn()
    tok = mint()
    assert not _nova_allowed(sc, tok)
    sc.rewrite_config(ACME_WITH_NOVA)
    assert _eventually(lambda: _nova_allowed(sc, tok), timeout=15), sc.stderr_tail()


def test_invalid_new_config_keeps_old(start_sidecar_fn, fake_aws, mint):
    """docs/reference.md §10: an invalid new file is rejected whole; the old config stays
    in force, the sidecar stays up and ready."""
    sc = start_sidecar_fn()
    tok = mint()
    good = sc.config_path.read_text()
    sc.rewrite_config(raw=good.replace("[tenant_defaults]", "[tenant_defaults]\nmodles = []", 1)
                      .replace('"anthropic.claude-3-haiku-*"', '"anthropic.claude-3-haiku-*", "amazon.nova-*"'))
    sc.signal(signal.SIGHUP)
    time.sleep(1.5)
    assert sc.running and sc.admin("/readyz").status == 200
    assert not _nova_allowed(sc, tok)  # the half-good new file did not apply
    client = harness.make_client(sc.url, token=tok)
    client.converse(**converse_args(HAIKU))  # old config serves
    assert "error" in sc.stderr_text().lower()
