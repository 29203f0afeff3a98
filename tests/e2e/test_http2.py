"""HTTP/2 on the proxy listener (docs/operating.md "HTTP/2 on the listener",
docs/reference.md §3 `server.listen`): Debian's curl (nghttp2) talks HTTP/2
to a real `tenantgate run` process, by prior knowledge on the plain listener
and by ALPN on the TLS one, against the fake AWS that verifies every SigV4
signature (the upstream side stays HTTP/1.1). Allowed calls are signed as
the tenant, denials reach nothing upstream, event streams arrive whole, and
several requests share one connection."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

import harness
from harness import HAIKU, NOVA
from test_tls_listener import self_signed


def _curl_speaks_http2() -> bool:
    if shutil.which("curl") is None:
        return False
    out = subprocess.run(["curl", "--version"], capture_output=True, text=True, timeout=10)
    return "HTTP2" in out.stdout.split()


@pytest.fixture(autouse=True)
def _needs_curl_with_http2():
    """scripts/test.sh installs Debian's curl (with nghttp2) when missing;
    without it these tests fail under CI=true and are skipped otherwise."""
    if not _curl_speaks_http2():
        if os.environ.get("CI") == "true":
            pytest.fail("curl with HTTP/2 is required under CI=true (scripts/test.sh installs it)", pytrace=False)
        pytest.skip("needs curl with HTTP/2 (nghttp2)")


BODY = json.dumps({"messages": [{"role": "user", "content": [{"text": "hello over HTTP/2"}]}]})
WRITE_OUT = "%{http_version} %{http_code} %{num_connects}\\n"


def curl(args: list[str], tmp_path, n: int = 1) -> list[tuple[str, int, int]]:
    """Run curl; per transfer: (HTTP version, status, new connections)."""
    out = subprocess.run(["curl", "-sS", "--max-time", "20", "-w", WRITE_OUT, *args],
                         capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [line.split() for line in out.stdout.splitlines() if line.strip()][-n:]
    return [(v, int(code), int(conns)) for v, code, conns in lines]


def post_args(url: str, token: str | None, model: str, op: str, tag: str, body: bool = True) -> list[str]:
    """A POST; ``body=False`` for requests refused before their body is read:
    the sidecar answers those at once and then resets the stream with
    NO_ERROR (stop sending, keep the answer: RFC 9113 §8.1), which Debian
    12's curl reports as an error when it was still sending. The Rust tests
    (src/server_h2_tests.rs) cover a denial while the body is coming."""
    auth = ["-H", f"x-tenant-token: {token}"] if token else []
    data = ["--data-binary", BODY] if body else []
    return ["-X", "POST", f"{url}/model/{model}/{op}", "-H", "content-type: application/json", *auth,
            *data, "-D", f"{tag}.headers", "-o", f"{tag}.body"]


def headers_of(tmp_path, tag: str) -> dict:
    lines = (tmp_path / f"{tag}.headers").read_text().splitlines()
    return {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}


@pytest.fixture
def plain_sidecar(start_sidecar_fn):
    return start_sidecar_fn({}, name="h2c")


def test_curl_h2c_prior_knowledge_converse_signed_and_denial_sends_nothing(plain_sidecar, mint, fake_aws, creds,
                                                                          tmp_path):
    sc = plain_sidecar
    token = mint("acme", "alice")
    [(version, status, _)] = curl(["--http2-prior-knowledge", *post_args(sc.url, token, HAIKU, "converse", "ok")],
                                  tmp_path)
    assert (version, status) == ("2", 200), (tmp_path / "ok.body").read_text()
    answer = json.loads((tmp_path / "ok.body").read_text())
    assert answer["output"]["message"]["content"][0]["text"]
    rec = harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    assert "x-tenant-token" not in {k.lower() for k in rec.headers}, rec.summary()
    audit = sc.wait_audit(headers_of(tmp_path, "ok")["x-tenantgate-request-id"])
    assert (audit["status"], audit["tenant"], audit["user"]) == (200, "acme", "alice"), audit

    # A model acme may not use: 403 over HTTP/2 with the reason, nothing upstream.
    fake_aws.reset()
    [(version, status, _)] = curl(["--http2-prior-knowledge", *post_args(sc.url, token, NOVA, "converse", "deny", body=False)],
                                  tmp_path)
    assert (version, status) == ("2", 403)
    h = headers_of(tmp_path, "deny")
    assert h["x-tenantgate-reason"] == "model_not_allowed", h
    assert "connection" not in h, h
    harness.assert_nothing_upstream(fake_aws)
    audit = sc.wait_audit(h["x-tenantgate-request-id"])
    assert (audit["status"], audit["reason"]) == (403, "model_not_allowed"), audit

    # No token: 401 over HTTP/2, nothing upstream.
    [(version, status, _)] = curl(["--http2-prior-knowledge", *post_args(sc.url, None, HAIKU, "converse", "anon", body=False)],
                                  tmp_path)
    assert (version, status) == ("2", 401)
    assert headers_of(tmp_path, "anon")["x-tenantgate-reason"] == "missing_token"
    harness.assert_nothing_upstream(fake_aws)


def test_curl_h2c_converse_stream_and_requests_sharing_one_connection(plain_sidecar, mint, fake_aws, creds,
                                                                     tmp_path):
    sc = plain_sidecar
    token = mint("acme", "alice")
    [(version, status, _)] = curl(
        ["--http2-prior-knowledge", *post_args(sc.url, token, HAIKU, "converse-stream", "s")], tmp_path)
    assert (version, status) == ("2", 200)
    assert headers_of(tmp_path, "s")["content-type"] == "application/vnd.amazon.eventstream"
    body = (tmp_path / "s.body").read_bytes()
    assert b"messageStart" in body and b"messageStop" in body and b"metadata" in body, body[:200]
    harness.assert_one_valid_upstream(fake_aws, "ConverseStream", creds["acme"].akid)

    # Six transfers in one curl run, multiplexed: one TCP connection, every
    # request signed as acme.
    fake_aws.reset()
    args = ["--http2-prior-knowledge", "--parallel", "--parallel-immediate", "--parallel-max", "6"]
    for i in range(6):
        op = "converse-stream" if i % 2 else "converse"
        args += post_args(sc.url, token, HAIKU, op, f"p{i}") + (["--next"] if i < 5 else [])
        if i < 5:
            args += ["--http2-prior-knowledge", "--parallel", "--parallel-immediate"]
    results = curl(args, tmp_path, n=6)
    assert all(r[:2] == ("2", 200) for r in results), results
    assert sum(r[2] for r in results) == 1, f"more than one connection: {results}"
    reqs = fake_aws.recorded()
    assert len(reqs) == 6 and all(r.signature_valid and r.access_key_id == creds["acme"].akid for r in reqs), \
        fake_aws.describe()
    assert sorted(r.operation for r in reqs) == ["Converse"] * 3 + ["ConverseStream"] * 3


def test_curl_h2_over_tls_by_alpn_and_http11_beside_it(start_sidecar_fn, mint, fake_aws, creds, tmp_path):
    cert, key = self_signed(tmp_path)
    sc = start_sidecar_fn({"server": {"tls_cert_file": str(cert), "tls_key_file": str(key)}}, name="h2tls")
    url = sc.url.replace("http://", "https://")
    token = mint("acme", "alice")
    [(version, status, _)] = curl(["--http2", "--cacert", str(cert), *post_args(url, token, HAIKU, "converse", "t")],
                                  tmp_path)
    assert (version, status) == ("2", 200)
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
    fake_aws.reset()
    [(version, status, _)] = curl(["--http2", "--cacert", str(cert), *post_args(url, token, NOVA, "converse", "td", body=False)],
                                  tmp_path)
    assert (version, status) == ("2", 403)
    assert headers_of(tmp_path, "td")["x-tenantgate-reason"] == "model_not_allowed"
    harness.assert_nothing_upstream(fake_aws)
    # A client that offers only http/1.1 is served HTTP/1.1 on the same port.
    [(version, status, _)] = curl(["--http1.1", "--cacert", str(cert), *post_args(url, token, HAIKU, "converse", "t1")],
                                  tmp_path)
    assert (version, status) == ("1.1", 200)
    harness.assert_one_valid_upstream(fake_aws, "Converse", creds["acme"].akid)
