"""Audit (docs/reference.md §9, §1 "Nothing is logged that is a credential or token"):
one JSON line per request on stdout with the fixed fields; denies carry
their reason; no line of stdout or stderr holds a token, key or signature.

This module's sidecar logs at debug level to give leaks every chance to show.
"""

from __future__ import annotations

import datetime as dt
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

import harness
from harness import HAIKU, NOVA, converse_args

SIDECAR_ENV = {"TENANTGATE_LOG": "debug"}

FIELDS = {
    "ts", "request_id", "tenant", "user", "operation", "resource", "decision", "reason", "status",
    "upstream_status", "latency_ms", "input_tokens", "output_tokens", "dropped_results", "redactions",
}


def _check_common(rec: dict):
    missing = FIELDS - set(rec)
    assert not missing, f"audit record lacks {missing}: {rec}"
    ts = rec["ts"]
    assert isinstance(ts, str) and (ts.endswith("Z") or ts.endswith("+00:00")), ts
    parsed = dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))
    assert parsed.utcoffset() == dt.timedelta(0)
    assert abs((dt.datetime.now(dt.timezone.utc) - parsed).total_seconds()) < 120
    assert isinstance(rec["latency_ms"], (int, float)) and rec["latency_ms"] >= 0
    assert rec["decision"] in ("allow", "deny")
    assert isinstance(rec["status"], int)


def test_allowed_converse_record(sidecar, fake_aws, mint):
    """docs/reference.md §9: allow line with tenant, user, operation, resource, statuses, tokens."""
    client = harness.make_client(sidecar.url, token=mint("acme", "alice"))
    out = client.converse(**converse_args())
    rec = sidecar.wait_audit(harness.request_id_of(out))
    _check_common(rec)
    assert rec["tenant"] == "acme" and rec["user"] == "alice"
    assert rec["operation"] == "Converse" and rec["resource"] == HAIKU
    assert rec["decision"] == "allow"
    assert rec["status"] == 200 and rec["upstream_status"] == 200
    assert rec["input_tokens"] == 11 and rec["output_tokens"] == 7
    assert rec["dropped_results"] in (0, None)
    assert rec["redactions"] == 0


def test_one_line_per_request(sidecar, fake_aws, mint):
    """docs/reference.md §9: exactly one record per request id."""
    client = harness.make_client(sidecar.url, token=mint())
    ids = [harness.request_id_of(client.converse(**converse_args())) for _ in range(3)]
    for rid in ids:
        sidecar.wait_audit(rid)
    recs = sidecar.audit()
    for rid in ids:
        assert sum(1 for r in recs if r.get("request_id") == rid) == 1


def test_invoke_model_tokens_from_headers(sidecar, fake_aws, mint):
    """docs/reference.md §5.1: InvokeModel usage from x-amzn-bedrock-*-token-count."""
    fake_aws.input_tokens, fake_aws.output_tokens = 21, 5
    client = harness.make_client(sidecar.url, token=mint())
    out = client.invoke_model(modelId=HAIKU, body=b"{}")
    out["body"].read()
    rec = sidecar.wait_audit(harness.request_id_of(out))
    assert rec["operation"] == "InvokeModel" and rec["resource"] == HAIKU
    assert (rec["input_tokens"], rec["output_tokens"]) == (21, 5)


def test_stream_tokens_recorded_when_stream_ends(sidecar, fake_aws, mint):
    """docs/reference.md §5.1/§9: stream `metadata` events and invocationMetrics give
    the tokens; the record is written when the stream ends."""
    fake_aws.input_tokens, fake_aws.output_tokens = 31, 9
    client = harness.make_client(sidecar.url, token=mint())
    resp = client.converse_stream(**converse_args())
    list(resp["stream"])
    rec = sidecar.wait_audit(harness.request_id_of(resp))
    assert rec["operation"] == "ConverseStream"
    assert (rec["input_tokens"], rec["output_tokens"]) == (31, 9)
    resp = client.invoke_model_with_response_stream(modelId=HAIKU, body=b"{}")
    list(resp["body"])
    rec = sidecar.wait_audit(harness.request_id_of(resp))
    assert rec["operation"] == "InvokeModelWithResponseStream"
    assert (rec["input_tokens"], rec["output_tokens"]) == (31, 9)


def test_deny_record(sidecar, fake_aws, mint):
    """docs/reference.md §9: deny lines have decision "deny" and the reason."""
    client = harness.make_client(sidecar.url, token=mint("acme", "alice"))
    with pytest.raises(ClientError) as ei:
        client.converse(**converse_args(NOVA))
    rec = sidecar.wait_audit(harness.request_id_of(ei.value))
    _check_common(rec)
    assert rec["decision"] == "deny" and rec["reason"] == "model_not_allowed"
    assert rec["status"] == 403 and rec["upstream_status"] is None
    assert rec["tenant"] == "acme" and rec["user"] == "alice"
    assert rec["operation"] == "Converse" and rec["resource"] == NOVA
    assert rec["input_tokens"] in (None, 0) and rec["output_tokens"] in (None, 0)


def test_user_null_before_identity_known(sidecar, fake_aws, mint):
    """docs/reference.md §9: `user` (and tenant) null when the token is missing or invalid."""
    for token, reason in ((None, "missing_token"), (mint(iss="https://evil"), "invalid_token")):
        client = harness.make_client(sidecar.url, token=token)
        with pytest.raises(ClientError) as ei:
            client.converse(**converse_args())
        rec = sidecar.wait_audit(harness.request_id_of(ei.value))
        _check_common(rec)
        assert rec["decision"] == "deny" and rec["reason"] == reason and rec["status"] == 401
        assert rec["user"] is None and rec["tenant"] is None


def test_unknown_route_is_audited(sidecar, fake_aws, mint):
    """docs/reference.md §9: every request gets a line, including unknown operations."""
    resp = sidecar.request("POST", "/no/such/thing", b"{}", token=mint())
    assert resp.status == 404
    rec = sidecar.wait_audit(resp.headers["x-tenantgate-request-id"])
    assert rec["decision"] == "deny" and rec["reason"] == "unknown_operation" and rec["status"] == 404


def test_unknown_tenant_audit_has_no_foreign_identity(sidecar, fake_aws, mint):
    """docs/reference.md §9: an unknown tenant is denied and audited (tenant as claimed
    or null, never another tenant)."""
    client = harness.make_client(sidecar.url, token=mint("initech", "ivan"))
    with pytest.raises(ClientError) as ei:
        client.converse(**converse_args())
    rec = sidecar.wait_audit(harness.request_id_of(ei.value))
    assert rec["reason"] == "unknown_tenant" and rec["tenant"] in ("initech", None)


def test_stdout_is_only_audit_json(sidecar):
    """docs/reference.md §2/§9: audit to stdout, diagnostics to stderr: every stdout line is a JSON object."""
    for line in sidecar.stdout_text().splitlines():
        if line.strip():
            assert isinstance(json.loads(line), dict), line


def test_no_secrets_in_output(sidecar, fake_aws, mint, known_secrets):
    """docs/reference.md §1/§8/§9: no line of stdout or stderr contains a JWT (or its
    signature), a secret access key, a session token or a SigV4 signature
    (client's or upstream's), even at debug level. Runs last in the module,
    over everything this sidecar printed; every other sidecar of the suite
    gets the same check when it stops."""
    client = harness.make_client(sidecar.url, token=mint("globex", "gary"))
    client.converse(**converse_args(NOVA))
    bad = harness.make_client(sidecar.url, token=mint("acme", "alice", exp=1))
    with pytest.raises(ClientError):
        bad.converse(**converse_args())
    texts = {"stdout": sidecar.stdout_text(), "stderr": sidecar.stderr_text()}
    assert texts["stderr"].strip(), "expected some debug diagnostics on stderr"
    assert not harness.find_leaks(texts, known_secrets())


def _metric(sc, name: str) -> float:
    hits = [line for line in sc.admin("/metrics").body.decode().splitlines() if line.startswith(name + " ")]
    assert hits, f"{name} not in /metrics"
    return float(hits[0].rsplit(" ", 1)[1])


def test_unread_stdout_drops_audit_lines_counts_them_and_never_blocks(start_sidecar_fn, fake_aws, mint):
    """docs/reference.md §9 and docs/operating.md "Audit records": stdout is a pipe nobody reads.
    The audit writer stalls once the pipe is full, the bounded queue
    (`server.audit_queue_lines`, here 16) fills, and further lines are
    dropped and counted in `tenantgate_audit_dropped_total`; requests keep
    being answered at full speed meanwhile (the proxy never waits on audit)."""
    sc = start_sidecar_fn({"server": {"audit_queue_lines": 16}}, stdout_unread=True)
    assert _metric(sc, "tenantgate_audit_dropped_total") == 0

    def denied(_):
        return sc.request("POST", f"/model/{HAIKU}/converse", b"{}", timeout=5).status

    # ~300 bytes per line: 1,500 lines are several times the 64 KiB pipe
    # buffer plus the writer's 64 KiB buffer plus the queue.
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(denied, range(1500)))
    assert statuses == [401] * 1500

    client = harness.make_client(sc.url, token=mint("acme", "alice"))
    out = client.converse(**converse_args())
    assert out["output"]["message"]["content"][0]["text"] == fake_aws.reply_text
    harness.assert_one_valid_upstream(fake_aws, "Converse")

    dropped = _metric(sc, "tenantgate_audit_dropped_total")
    assert dropped > 0, "a full audit queue must be visible in /metrics"
    # Dropped lines are still counted in the request metrics (counted
    # before the line is queued), and the drop is said on stderr.
    text = sc.admin("/metrics").body.decode()
    denied_total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("tenantgate_requests_total{") and 'status="401"' in line)
    assert denied_total >= 1500, denied_total
    assert "audit queue full" in sc.stderr_text()
