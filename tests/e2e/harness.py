"""Helpers shared by the end-to-end tests (fixtures live in conftest.py).

- TOML writing and the default sidecar config (docs/reference.md §3)
- signing keys, JWKS and JWT minting (docs/reference.md §4.1)
- the sidecar process: start, wait for /readyz, audit lines, stop (docs/reference.md §2, §9)
- boto3 clients that talk to the sidecar the way the README tells apps to
- raw HTTP and the assertions on tenantgate's own errors (docs/reference.md §8)
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

import boto3
import jwt
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

REPO_ROOT = Path(__file__).resolve().parents[2]

ISSUER = "https://issuer.tenantgate.test/pool-1"
AUDIENCE = "app-client-id"
TENANT_CLAIM = "custom:tenantId"
CLIENT_AKID = "app-has-no-real-keys"

HAIKU = "anthropic.claude-3-haiku-20240307-v1:0"
HAIKU_ARN = f"arn:aws:bedrock:us-east-1::foundation-model/{HAIKU}"
HAIKU_PROFILE_ARN = (
    "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-haiku-20240307-v1:0"
)
TITAN_EMBED = "amazon.titan-embed-text-v2:0"
NOVA = "amazon.nova-pro-v1:0"  # globex's model, not acme's

# docs/reference.md §8: the AWS error type that goes with each status tenantgate generates.
ERROR_TYPES = {
    400: "ValidationException",
    401: "UnrecognizedClientException",
    403: "AccessDeniedException",
    404: "UnknownOperationException",
    413: "ValidationException",
    429: "ThrottlingException",
    502: "ServiceUnavailableException",
    503: "ServiceUnavailableException",
    504: "ServiceUnavailableException",
}


def tenantgate_bin() -> str:
    return _BIN


_BIN = os.path.abspath(os.environ.get("TENANTGATE_BIN") or REPO_ROOT / "target" / "debug" / "tenantgate")


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_EPHEMERAL_LOW = _ephemeral_low()
_HANDED_OUT: set[int] = set()
_PORT_RNG = random.Random(os.getpid() ^ time.time_ns())


def free_port() -> int:
    """A port on 127.0.0.1 that was free a moment ago, for a server a test
    starts. Two rules keep it from being taken before the server binds it:
    it is never one handed out before in this run (asking the kernel for
    port 0 twice can give the same port back), and it is below the
    kernel's ephemeral range, so no outgoing connection (boto3, the sidecar,
    the fake AWS) is given it as its local port meanwhile."""
    hi = min(_EPHEMERAL_LOW, 65536)
    lo = max(1024, hi - 12000)
    for _ in range(500):
        port = _PORT_RNG.randrange(lo, hi)
        if port in _HANDED_OUT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port found in 127.0.0.1:{lo}-{hi - 1}")


class ClosedPort:
    """A port bound on 127.0.0.1 that never listens: connecting is refused.
    Held open so nothing else can take it while the test runs."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def close(self):
        self.sock.close()


# --------------------------------------------------------------------------
# TOML
# --------------------------------------------------------------------------

DELETE = object()  # an override value that removes the key


def assume_role_overrides(sts_url: str | None = None) -> dict:
    """Overrides for `credentials.source = "assume_role"` with the role,
    session name and TenantID tag the STS tests expect, the tenants' static
    keys removed; with ``sts_url``, STS at that endpoint
    (`aws.endpoints.sts`)."""
    o = {
        "aws": {},
        "credentials": {
            "source": "assume_role",
            "role_arn": "arn:aws:iam::111122223333:role/tenant-{tenant}",
            "session_name": "tenantgate-{tenant}",
            "session_tags": {"TenantID": "{tenant}"},
            "duration_secs": 900,
            "refresh_before_secs": 60,
        },
        "tenants": {"acme": {"static_credentials": DELETE}, "globex": {"static_credentials": DELETE}},
    }
    if sts_url is not None:
        o["aws"]["endpoints"] = {"sts": sts_url}
    return o


def deep_merge(base: dict, overrides: dict) -> dict:
    """``overrides`` merged into a copy of ``base``: dicts recurse, anything
    else (lists too) replaces, ``DELETE`` removes the key."""
    out = copy.deepcopy(base)
    for k, v in (overrides or {}).items():
        if v is DELETE:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def to_toml(doc: dict, _prefix: tuple = ()) -> str:
    """Scalars and lists of a table first, then its sub-tables as
    ``[a.b]`` sections (dicts inside lists become inline tables)."""
    lines = []
    for k, v in doc.items():
        if not isinstance(v, dict):
            lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in doc.items():
        if isinstance(v, dict):
            path = _prefix + (k,)
            lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path) + "]")
            lines.append(to_toml(v, path))
    return "\n".join(line for line in lines if line is not None).strip("\n") + "\n"


def base_config(fake, jwks_path: Path, listen_port: int, admin_port: int) -> dict:
    """The config every sidecar in the suite starts from (docs/reference.md §3)."""
    return {
        "server": {
            "listen": f"127.0.0.1:{listen_port}",
            "admin_listen": f"127.0.0.1:{admin_port}",
            "max_body_bytes": 1048576,
            "header_timeout_secs": 2,
            "shutdown_grace_secs": 5,
        },
        "identity": {
            "mode": "jwt",
            "header": "x-tenant-token",
            "issuer": ISSUER,
            "audiences": [AUDIENCE],
            "algorithms": ["RS256"],
            "jwks_file": str(jwks_path),
            "leeway_secs": 30,
            "tenant_claim": TENANT_CLAIM,
            "user_claim": "sub",
        },
        "aws": {
            "region": "us-east-1",
            "connect_timeout_ms": 1000,
            "response_timeout_secs": 5,
            "stream_idle_timeout_secs": 5,
            "endpoints": {
                "bedrock_runtime": fake.url,
                "bedrock_agent_runtime": fake.url,
                "sagemaker_runtime": fake.url,
            },
        },
        "credentials": {"source": "static"},
        "rate_limit": {"backend": "local"},
        "tenant_defaults": {
            "allow_unlisted": False,
            "models": [],
            "rate_limit": {
                "requests_per_second": 1000,
                "burst": 1000,
                "max_concurrent": 64,
                "tokens_per_minute": 0,
            },
        },
        "tenants": {
            "acme": {
                "models": [
                    "anthropic.claude-3-haiku-*",
                    TITAN_EMBED,
                    "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.claude-3-haiku-*",
                ],
                "static_credentials": {
                    "access_key_id_env": "ACME_AKID",
                    "secret_access_key_env": "ACME_SECRET",
                },
            },
            "globex": {
                "models": ["amazon.nova-*", "meta.llama3-?-8b-instruct-v1:0"],
                "static_credentials": {
                    "access_key_id_env": "GLOBEX_AKID",
                    "secret_access_key_env": "GLOBEX_SECRET",
                    "session_token_env": "GLOBEX_SESSION_TOKEN",
                },
            },
        },
    }


# --------------------------------------------------------------------------
# Keys, JWKS, JWTs
# --------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Keys:
    """Signing keys made at session start. ``rsa`` (kid rsa-1) and ``ec``
    (kid ec-1) are published in the JWKS; ``rogue`` (kid rsa-2) is not."""

    def __init__(self):
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa_public_pem = self.rsa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def jwks(self) -> dict:
        rsa_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.rsa.public_key()))
        rsa_jwk.update(kid="rsa-1", use="sig", alg="RS256")
        ec_jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.ec.public_key()))
        ec_jwk.update(kid="ec-1", use="sig", alg="ES256")
        return {"keys": [rsa_jwk, ec_jwk]}


class Minter:
    """Makes tokens. ``mint(tenant="acme", user="alice", **overrides)``:
    any claim can be overridden (``None`` removes it); ``kid``, ``alg`` and
    ``key`` choose the signature; ``headers`` adds JOSE header fields."""

    def __init__(self, keys: Keys):
        self.keys = keys
        self.minted: list[str] = []  # every token handed out (for leak checks)

    def claims(self, tenant="acme", user="alice", **overrides) -> dict:
        now = int(time.time())
        c = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": user,
            TENANT_CLAIM: tenant,
            "iat": now,
            "exp": now + 600,
            "token_use": "id",
        }
        for k, v in overrides.items():
            c[k] = v
        return {k: v for k, v in c.items() if v is not None}

    def __call__(self, tenant="acme", user="alice", *, kid="rsa-1", alg="RS256", key=None, headers=None,
                 **overrides) -> str:
        claims = self.claims(tenant, user, **overrides)
        if key is None:
            key = {"RS256": self.keys.rsa, "ES256": self.keys.ec}.get(alg, self.keys.rsa)
        hdr = {"kid": kid} if kid is not None else {}
        hdr.update(headers or {})
        token = jwt.encode(claims, key, algorithm=alg, headers=hdr)
        self.minted.append(token)
        return token

    def raw(self, header: dict, claims: dict, signature: bytes = b"", hs256_secret: bytes | None = None) -> str:
        """A token assembled by hand (for ``alg: none``, HMAC with a public
        key as secret, and other forgeries no library will make)."""
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        if hs256_secret is not None:
            signature = hmac.new(hs256_secret, signing_input.encode(), hashlib.sha256).digest()
        token = signing_input + "." + _b64url(signature)
        self.minted.append(token)
        return token


# --------------------------------------------------------------------------
# The sidecar process
# --------------------------------------------------------------------------


class SidecarFailed(Exception):
    pass


class Sidecar:
    def __init__(self, workdir: Path, config: dict, env: dict, name: str = "sidecar", extra_toml: str = ""):
        self.workdir = workdir
        self.config = config
        self.name = name
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(to_toml(config) + extra_toml)
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        listen = config["server"]["listen"]
        admin = config["server"]["admin_listen"]
        self.port = int(listen.rsplit(":", 1)[1])
        self.admin_port = int(admin.rsplit(":", 1)[1])
        self.url = f"http://{listen}"
        self.admin_url = f"http://{admin}"
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    # ---- lifecycle ---------------------------------------------------
    def start(self, wait_ready: bool = True, timeout: float = 20.0, stdout_unread: bool = False):
        """``stdout_unread``: stdout (the audit stream) is a pipe nobody
        reads, like a log collector that stopped; ``stdout_text`` is then
        empty."""
        binary = tenantgate_bin()
        if not os.path.exists(binary):
            raise SidecarFailed(f"tenantgate binary not found at {binary} (set TENANTGATE_BIN)")
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            [binary, "run", "--config", str(self.config_path)],
            stdout=subprocess.PIPE if stdout_unread else self._out,
            stderr=self._err,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=str(self.workdir),
        )
        path = "/readyz" if wait_ready else "/healthz"
        self.wait_admin(path, 200, timeout)
        return self

    def wait_admin(self, path: str, status: int, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise SidecarFailed(
                    f"tenantgate exited with {self.proc.returncode} before {path} was {status}\n"
                    f"--- stderr tail ---\n{self.stderr_tail()}"
                )
            try:
                last = http_request("GET", self.admin_url + path, timeout=2).status
                if last == status:
                    return
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        raise SidecarFailed(
            f"{path} not {status} after {timeout}s (last: {last})\n--- stderr tail ---\n{self.stderr_tail()}"
        )

    def rewrite_config(self, overrides: dict | None = None, raw: str | None = None):
        """Replace the config file atomically (write + rename, like a
        ConfigMap swap): ``overrides`` merged into the current config, or
        ``raw`` text as is."""
        if raw is None:
            self.config = deep_merge(self.config, overrides or {})
            raw = to_toml(self.config)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(raw)
        os.replace(tmp, self.config_path)

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        for f in (self._out, self._err, self.proc.stdout):
            if f is not None:
                f.close()
        return self.returncode

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # ---- output --------------------------------------------------------
    def stdout_text(self) -> str:
        return self.stdout_path.read_bytes().decode("utf-8", "replace")

    def stderr_text(self) -> str:
        return self.stderr_path.read_bytes().decode("utf-8", "replace")

    def stderr_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.stderr_text().splitlines()[-n:])
        except OSError:
            return "(no stderr)"

    def audit(self) -> list[dict]:
        """Every stdout line that is a JSON object (docs/reference.md §9)."""
        out = []
        for line in self.stdout_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
        return out

    def wait_audit(self, request_id: str | None = None, predicate=None, timeout: float = 5.0) -> dict:
        """The audit record with ``request_id`` (or the last one matching
        ``predicate``); audit lines are written when the response ends."""
        deadline = time.monotonic() + timeout
        while True:
            for rec in reversed(self.audit()):
                if request_id is not None and rec.get("request_id") != request_id:
                    continue
                if predicate is not None and not predicate(rec):
                    continue
                return rec
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no audit line for request_id={request_id!r} within {timeout}s; stdout tail:\n"
                    + "\n".join(self.stdout_text().splitlines()[-10:])
                )
            time.sleep(0.05)

    # ---- requests ------------------------------------------------------
    def request(self, method: str, path: str, body: bytes = b"", headers: dict | None = None,
                token: str | None = None, timeout: float = 15.0) -> "RawResponse":
        h = {"Content-Type": "application/json"}
        if token is not None:
            h["x-tenant-token"] = token
        h.update(headers or {})
        return http_request(method, self.url + path, body, h, timeout)

    def admin(self, path: str, timeout: float = 5.0) -> "RawResponse":
        return http_request("GET", self.admin_url + path, timeout=timeout)


def find_leaks(texts: dict, secrets: dict) -> list:
    """``[(secret name, where)]`` for each secret value found in the texts."""
    return [(name, where) for name, value in secrets.items() if value
            for where, text in texts.items() if value in text]


# --------------------------------------------------------------------------
# HTTP and boto3
# --------------------------------------------------------------------------


class RawResponse:
    def __init__(self, status, header_list, body):
        self.status = status
        self.header_list = header_list
        self.headers = {k.lower(): v for k, v in header_list}
        self.body = body

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<RawResponse {self.status} {self.headers} {self.body[:300]!r}>"


def http_request(method, url, body=b"", headers=None, timeout=10.0) -> RawResponse:
    m = re.match(r"^http://([^/:]+):(\d+)(/.*)?$", url)
    host, port, path = m.group(1), int(m.group(2)), m.group(3) or "/"
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body if body else None, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, resp.getheaders(), data)
    finally:
        conn.close()


class Tap:
    """What a boto3 client sent, and the raw last response (botocore keeps
    no unknown error fields such as ``reason``)."""

    def __init__(self):
        self.sent = []  # (method, url, headers dict, body bytes)
        self.status = None
        self.headers = {}
        self.body = b""

    def json(self):
        return json.loads(self.body)


_SESSION = None
CLIENT_SIGNATURES: set = set()  # every signature an app client sent (leak checks)


def _boto_session():
    """One boto3 session for every client (service models load once)."""
    global _SESSION
    if _SESSION is None:
        _SESSION = boto3.session.Session()
    return _SESSION


def make_client(endpoint_url: str, service: str = "bedrock-runtime", token=None, *, read_timeout: float = 15,
                connect_timeout: float = 5, access_key=CLIENT_AKID, secret_key="x", session_token=None,
                extra_headers: dict | None = None, region: str = "us-east-1", verify=None,
                parameter_validation: bool = True):
    """A boto3 client as an application would build it for the sidecar: only
    ``endpoint_url`` changes, and an event hook adds the end user's token.

    ``token`` may be a string, a callable returning one, or None (no
    header). ``client.tap`` records what was sent and the raw response.
    ``parameter_validation=False`` lets the app leave out members boto3
    requires and the sidecar sets (InvokeInlineAgent's agent definition).
    """
    client = _boto_session().client(
        service,
        endpoint_url=endpoint_url,
        region_name=region,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=session_token,
        verify=verify,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            read_timeout=read_timeout,
            connect_timeout=connect_timeout,
            tcp_keepalive=False,
            parameter_validation=parameter_validation,
        ),
    )
    tap = Tap()
    event_service = client.meta.service_model.service_id.hyphenize()

    def add_token(request, **kwargs):
        value = token() if callable(token) else token
        if value is not None:
            request.headers["x-tenant-token"] = value
        for k, v in (extra_headers or {}).items():
            # request.headers is botocore's case-insensitive HeadersDict: set replaces.
            if v is None:
                request.headers.pop(k, None)
            else:
                request.headers[k] = v
        body = request.body
        if hasattr(body, "read"):
            body = None
        sent_headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        auth = sent_headers.get("Authorization", "")
        if "Signature=" in auth:
            CLIENT_SIGNATURES.add(auth.rsplit("Signature=", 1)[1])
        tap.sent.append((request.method, request.url, sent_headers, body))

    def capture(response_dict, **kwargs):
        tap.status = response_dict.get("status_code")
        tap.headers = {k.lower(): v for k, v in response_dict.get("headers", {}).items()}
        body = response_dict.get("body")
        tap.body = body if isinstance(body, (bytes, bytearray)) else b""

    client.meta.events.register(f"before-send.{event_service}.*", add_token)
    client.meta.events.register(f"before-parse.{event_service}.*", capture)
    client.tap = tap
    return client


def metric_value(sc, series: str) -> float:
    """The value of one series of the sidecar's /metrics (`name{labels}` as
    rendered), 0 before it first appears."""
    text = sc.admin("/metrics").body.decode()
    hits = [line for line in text.splitlines() if line.startswith(series + " ")]
    return float(hits[0].rsplit(" ", 1)[1]) if hits else 0.0


def converse_args(model=HAIKU, text="Hi there"):
    return {"modelId": model, "messages": [{"role": "user", "content": [{"text": text}]}]}


def request_id_of(resp_or_error) -> str | None:
    meta = resp_or_error.response["ResponseMetadata"] if isinstance(resp_or_error, ClientError) \
        else resp_or_error["ResponseMetadata"]
    return meta.get("HTTPHeaders", {}).get("x-tenantgate-request-id")


def events_until_stream_error(stream) -> tuple[list, EventStreamError]:
    """Iterate a boto3 event stream that must end with a modelled stream
    error: the events before it, and the error."""
    got = []
    try:
        for e in stream:
            got.append(e)
    except EventStreamError as err:
        return got, err
    raise AssertionError(f"stream ended without an error: {got}")


# --------------------------------------------------------------------------
# Assertions
# --------------------------------------------------------------------------


def assert_tenantgate_error(resp: RawResponse, status: int, reason, error_type: str | None = None):
    """A response tenantgate generated itself (docs/reference.md §8). ``reason`` may be a
    set of acceptable reasons where the reference (docs/reference.md) leaves a choice."""
    reasons = {reason} if isinstance(reason, str) else set(reason)
    error_type = error_type or ERROR_TYPES[status]
    assert resp.status == status, f"want {status} {reasons}, got {resp!r}"
    assert resp.headers.get("x-amzn-errortype", "").split(":")[0] == error_type, resp
    assert resp.headers.get("x-tenantgate-reason") in reasons, resp
    body = json.loads(resp.body)
    assert body.get("reason") in reasons, resp
    assert body["reason"] == resp.headers["x-tenantgate-reason"], resp
    assert isinstance(body.get("message"), str) and body["message"], resp
    assert resp.headers.get("x-tenantgate-request-id"), f"no x-tenantgate-request-id: {resp!r}"


def expect_client_error(client, call, status: int, reason, error_type: str | None = None) -> ClientError:
    """Run ``call()`` on a boto3 client, expect tenantgate's error."""
    try:
        call()
    except ClientError as e:
        tap = client.tap
        raw = RawResponse(tap.status, list(tap.headers.items()), tap.body)
        assert_tenantgate_error(raw, status, reason, error_type)
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == status
        assert e.response["Error"]["Code"] == (error_type or ERROR_TYPES[status])
        return e
    raise AssertionError(f"expected {status} {reason}, the call succeeded")


def assert_nothing_upstream(fake, settle: float = 0.1):
    """A deny must not reach AWS: the fake recorded nothing."""
    time.sleep(settle)
    assert fake.recorded() == [], "requests reached upstream:\n" + fake.describe()


def assert_one_valid_upstream(fake, operation: str | None = None, akid: str | None = None):
    reqs = fake.recorded()
    assert len(reqs) == 1, fake.describe()
    rec = reqs[0]
    assert rec.signature_valid, rec.summary()
    if operation:
        assert rec.operation == operation, rec.summary()
    if akid:
        assert rec.access_key_id == akid, rec.summary()
    return rec


def new_id() -> str:
    return uuid.uuid4().hex[:12]
