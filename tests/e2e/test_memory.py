"""Memory (docs/reference.md §3 `[server]` `max_json_nodes`, `max_json_depth`,
`max_buffered_bytes`, `max_buffered_bytes_per_tenant`; §8 429
`memory_limited`, 503 `overloaded`): one tenant's worst-case bodies cannot
exhaust the sidecar's memory, and another tenant's requests keep working
while it tries.

The peak resident set of the sidecar (VmHWM in /proc/PID/status) is printed
(`pytest -s`) and named in the assertion message."""

from __future__ import annotations

import http.client
import json
import select
import socket
import threading
import time

import pytest

import harness
from harness import HAIKU, NOVA, converse_args

KB = "KBPOOLED01"
MIB = 1024 * 1024
BODY_BYTES = 10 * MIB
PEAK_RSS_LIMIT = 64 * MIB

# The allocator setting of the shipped image (docker/Dockerfile): freed
# large buffers go back to the OS instead of staying resident per arena.
SIDECAR_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}

SIDECAR_OVERRIDES = {
    # The body limit is not what refuses these bodies.
    "server": {"max_body_bytes": 11 * MIB},
    "tenants": {
        # The attacker: its Converse bodies are rewritten (forced guardrail),
        # so today they are parsed into a tree.
        "acme": {
            "guardrail": {"id": "gr-acme", "version": "1"},
            "knowledge_base": {"allowed": [KB], "filter_key": "tenant_id"},
        },
        "globex": {"knowledge_base": {"allowed": [KB], "filter_key": "org"}},
    },
}


def _fill(prefix: bytes, item: bytes, suffix: bytes) -> bytes:
    n = (BODY_BYTES - len(prefix) - len(suffix)) // (len(item) + 1)
    return prefix + b",".join([item] * n) + suffix


def _many_keys(prefix: bytes, suffix: bytes) -> bytes:
    # "k0000000":0 is 12 bytes with its comma.
    n = (BODY_BYTES - len(prefix) - len(suffix)) // 13
    return prefix + b",".join(b'"k%07d":0' % i for i in range(n)) + suffix


def test_the_image_sets_the_allocator_setting_measured_here():
    """What the memory test measures is what the image runs with."""
    dockerfile = (harness.REPO_ROOT / "docker" / "Dockerfile").read_text()
    for k, v in SIDECAR_ENV.items():
        assert f"ENV {k}={v}" in dockerfile, dockerfile


def hostile_bodies() -> dict:
    """The worst shapes per byte: empty arrays (3 bytes a value) and an
    object of many short keys, inside members the sidecar parses."""
    retrieve = b'{"retrievalQuery":{"text":"q"},"x":['
    converse = (b'{"messages":[{"role":"user","content":[{"text":"hi"}]}],'
                b'"additionalModelRequestFields":{"x":[')
    bodies = {
        "retrieve_arrays": ("/knowledgebases/%s/retrieve" % KB, _fill(retrieve, b"[]", b"]}")),
        "converse_arrays": (f"/model/{HAIKU}/converse", _fill(converse, b"[]", b"]}}")),
        "retrieve_object": ("/knowledgebases/%s/retrieve" % KB,
                            _many_keys(b'{"retrievalQuery":{"text":"q"},"x":{', b"}}")),
    }
    for name, (_, body) in bodies.items():
        assert BODY_BYTES - 64 <= len(body) <= BODY_BYTES, (name, len(body))
        json.loads(body)  # well-formed: only its size and shape are hostile
    return bodies


def _rss(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value, _unit = line.split()
                out[key.rstrip(":")] = int(value) * 1024
    return out


def _send(port: int, path: str, token: str, body: bytes, chunked: bool) -> harness.RawResponse:
    """One request over a raw socket, sending the body until the sidecar
    answers (it may refuse before reading it all)."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"x-tenant-token: {token}\r\n")
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {len(body)}\r\n\r\n"
    piece = 64 * 1024
    pieces = [body[i:i + piece] for i in range(0, len(body), piece)]
    if chunked:
        pieces = [b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces] + [b"0\r\n\r\n"]
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    try:
        sock.sendall(head.encode())
        for p in pieces:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break
            try:
                sock.sendall(p)
            except (BrokenPipeError, ConnectionResetError):
                break
        select.select([sock], [], [], 60)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return harness.RawResponse(resp.status, resp.getheaders(), resp.read())
    finally:
        sock.close()


def test_eight_worst_case_bodies_keep_peak_rss_low_and_other_tenants_served(sidecar, fake_aws, mint, creds):
    """docs/reference.md §3/§8: eight concurrent 10 MiB bodies of the worst shapes from
    one tenant are all refused (400 `invalid_parameter` for the parsed
    structure cap, 429 `memory_limited` for the tenant's buffer share, 503
    `overloaded` for the process budget), then each shape alone is 400
    naming `max_json_nodes`, with nothing upstream; the
    sidecar's peak RSS stays under 64 MiB, and another tenant's Converse and
    Retrieve calls made meanwhile all succeed."""
    bodies = hostile_bodies()
    pid = sidecar.proc.pid
    before = _rss(pid)
    token = mint("acme", "mallory")
    plan = [
        ("retrieve_arrays", False), ("retrieve_arrays", True), ("retrieve_arrays", False),
        ("converse_arrays", False), ("converse_arrays", True), ("converse_arrays", False),
        ("retrieve_object", False), ("retrieve_object", True),
    ]
    results: list = [None] * len(plan)
    attack_done = threading.Event()
    samples = []

    def sample():
        while not attack_done.is_set():
            samples.append(_rss(pid)["VmRSS"])
            time.sleep(0.005)

    def attack(i, name, chunked):
        path, body = bodies[name]
        try:
            results[i] = (name, chunked, _send(sidecar.port, path, token, body, chunked))
        except Exception as e:  # noqa: BLE001 - reported below with the others
            results[i] = (name, chunked, e)

    globex_calls = {"converse": 0, "retrieve": 0}
    globex_errors = []

    def globex_traffic():
        gtoken = mint("globex", "bob")
        rt = harness.make_client(sidecar.url, "bedrock-runtime", token=gtoken)
        kb = harness.make_client(sidecar.url, "bedrock-agent-runtime", token=gtoken)
        rounds = 0
        while not attack_done.is_set() or rounds < 3:
            rounds += 1
            try:
                rt.converse(**converse_args(NOVA))
                globex_calls["converse"] += 1
                kb.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "pricing"})
                globex_calls["retrieve"] += 1
            except Exception as e:  # noqa: BLE001 - every failure is reported
                globex_errors.append(repr(e))

    sampler = threading.Thread(target=sample)
    victim = threading.Thread(target=globex_traffic)
    attackers = [threading.Thread(target=attack, args=(i, n, c)) for i, (n, c) in enumerate(plan)]
    sampler.start()
    victim.start()
    for t in attackers:
        t.start()
    for t in attackers:
        t.join(180)
    # Then each shape alone (the tenant's share free again): each is refused
    # by the structure cap, never parsed into a tree.
    alone = {name: _send(sidecar.port, path, token, body, False) for name, (path, body) in bodies.items()}
    attack_done.set()
    victim.join(60)
    sampler.join(5)
    peak = _rss(pid)["VmHWM"]
    figure = (f"sidecar RSS before {before['VmRSS'] / MIB:.1f} MiB, peak (VmHWM) {peak / MIB:.1f} MiB, "
              f"highest sample {max(samples, default=0) / MIB:.1f} MiB under 8 concurrent 10 MiB bodies")
    print("\n" + figure)

    assert sidecar.running, f"the sidecar died ({figure}):\n{sidecar.stderr_tail()}"
    assert peak < PEAK_RSS_LIMIT, figure
    seen = []
    for name, chunked, resp in results:
        assert isinstance(resp, harness.RawResponse), (name, chunked, resp, figure)
        seen.append((name, chunked, resp.status, resp.headers.get("x-tenantgate-reason")))
        harness.assert_tenantgate_error(resp, resp.status, {"invalid_parameter", "memory_limited", "overloaded"})
        assert resp.status in (400, 429, 503), (name, chunked, resp)
        if resp.status == 400:
            assert "max_json_nodes" in resp.json()["message"], resp
        if resp.status in (429, 503):
            assert resp.headers.get("retry-after") == "1", resp
    print("hostile requests:", seen)
    for name, resp in alone.items():
        harness.assert_tenantgate_error(resp, 400, "invalid_parameter")
        assert "max_json_nodes" in resp.json()["message"], (name, resp)
    upstream = fake_aws.recorded()
    assert all(r.access_key_id == creds["globex"].akid for r in upstream), fake_aws.describe()
    assert not globex_errors, globex_errors
    assert globex_calls["converse"] >= 3 and globex_calls["retrieve"] >= 3, globex_calls
    assert len(upstream) == globex_calls["converse"] + globex_calls["retrieve"], fake_aws.describe()
    # Every refusal is audited with its reason.
    reasons = {a.get("reason") for a in sidecar.audit() if a.get("tenant") == "acme"}
    assert reasons <= {"invalid_parameter", "memory_limited", "overloaded"}, reasons


def test_memory_limited_is_throttling_with_retry_after(start_sidecar, fake_aws, mint):
    """docs/reference.md §8: a request whose buffers (body, parsed tree, rewritten body)
    would take more than the tenant's share is 429 `memory_limited`
    (ThrottlingException, Retry-After 1) before the tree is built; another
    tenant is unaffected; `tenantgate_throttled_total` counts it and
    `tenantgate_buffered_bytes` is back to 0 afterwards."""
    kb = {"allowed": [KB], "filter_key": "tenant_id"}
    sc = start_sidecar({"server": {"max_buffered_bytes": 4 * MIB, "max_buffered_bytes_per_tenant": MIB,
                                   "max_body_bytes": MIB},
                        "tenants": {"acme": {"knowledge_base": kb}, "globex": {"knowledge_base": kb}}})
    body = json.dumps({"retrievalQuery": {"text": "a" * (MIB * 6 // 10)}}).encode()
    resp = sc.request("POST", f"/knowledgebases/{KB}/retrieve", body, token=mint("acme", "mallory"))
    harness.assert_tenantgate_error(resp, 429, "memory_limited")
    assert resp.headers.get("retry-after") == "1", resp
    harness.assert_nothing_upstream(fake_aws)
    ok = harness.make_client(sc.url, "bedrock-agent-runtime", token=mint("globex", "bob"))
    ok.retrieve(knowledgeBaseId=KB, retrievalQuery={"text": "a" * 1000})
    assert len(fake_aws.recorded()) == 1
    metrics = sc.admin("/metrics").body.decode()
    assert 'tenantgate_throttled_total{tenant="acme",reason="memory_limited"} 1' in metrics, metrics
    assert "tenantgate_buffered_bytes 0" in metrics, metrics
    rec = sc.wait_audit(resp.headers["x-tenantgate-request-id"])
    assert rec["reason"] == "memory_limited" and rec["status"] == 429, rec


@pytest.mark.parametrize("shape", ["deep", "wide"])
def test_json_structure_caps(start_sidecar, fake_aws, mint, shape):
    """docs/reference.md §3: a request body deeper than `max_json_depth` or with more
    values than `max_json_nodes` is 400 `invalid_parameter` naming the
    limit, before any tree is built; nothing goes upstream. Bodies forwarded
    untouched (Converse with nothing to rewrite) are checked too."""
    sc = start_sidecar({"server": {"max_json_depth": 8, "max_json_nodes": 50}})
    if shape == "deep":
        inner = {"a": [[[[[[[[1]]]]]]]]}
        key = "max_json_depth"
    else:
        inner = {"a": list(range(60))}
        key = "max_json_nodes"
    body = json.dumps({**converse_args(), "additionalModelRequestFields": inner}).encode()
    resp = sc.request("POST", f"/model/{HAIKU}/converse", body, token=mint("acme", "alice"))
    harness.assert_tenantgate_error(resp, 400, "invalid_parameter")
    assert key in resp.json()["message"], resp
    harness.assert_nothing_upstream(fake_aws)
    # Within the caps: forwarded.
    ok = harness.make_client(sc.url, token=mint("acme", "alice"))
    ok.converse(**converse_args(), additionalModelRequestFields={"a": [[1]]})
    assert len(fake_aws.recorded()) == 1
