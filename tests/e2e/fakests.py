"""A fake AWS STS for the end-to-end tests: one HTTP server on 127.0.0.1:0.

AWS Query protocol, as the SDKs speak it: ``POST /`` with a form-encoded body
(``Action=AssumeRole&Version=2011-06-15&RoleArn=...&Tags.member.1.Key=...``),
answered with the XML documents real STS sends, errors as
``<ErrorResponse><Error><Type/><Code/><Message/></Error><RequestId/>``.

- ``AssumeRole`` must be SigV4-signed (service ``sts``) with credentials
  registered here (``register_base``) or issued here by
  ``AssumeRoleWithWebIdentity``; the signature is checked by the same botocore
  oracle the fake Bedrock uses (``fakeaws.verify_sigv4``). Each call issues
  fresh temporary credentials (``ASIA...``, secret, session token) expiring
  ``ttl_seconds`` from now, and registers them with the FakeAws so the fake
  Bedrock accepts requests signed with them (``x-amz-security-token`` too).
- ``AssumeRoleWithWebIdentity`` is unsigned (as in AWS); it issues the
  sidecar's "base" credentials for IRSA-style set-ups. They are NOT
  registered with the FakeAws: a Bedrock request signed with them is a bug.

Every call is recorded (``calls``) with its parameters, its tags, whether its
signature was valid and with which key, and what it issued. ``mode`` scripts
the answers: ``"ok"``, ``"down"`` (500 InternalFailure), ``"denied"`` (403
AccessDenied), ``"close"`` (the connection is closed without an answer) or
``"hang"`` (no answer for ``hang_seconds``, then the connection is closed).
``delay_seconds`` slows every answer down (to widen race windows).

Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import itertools
import secrets
import string
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

import pytest

from fakeaws import Credential, verify_sigv4

STS_NS = "https://sts.amazonaws.com/doc/2011-06-15/"
ACCOUNT = "111122223333"
MODES = ("ok", "down", "denied", "close", "hang")


def _random(alphabet: str, n: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def random_secret(n: int = 40) -> str:
    return _random(string.ascii_letters + string.digits + "/+", n)


def iso8601(t: _dt.datetime) -> str:
    """``2026-03-01T12:00:00.123Z``, the form STS uses for ``Expiration``."""
    t = t.astimezone(_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@dataclasses.dataclass
class Issued:
    """Temporary credentials this fake handed out."""

    access_key_id: str
    secret_access_key: str
    session_token: str
    expiration: _dt.datetime
    action: str
    tenant: str | None  # the TenantID session tag of the AssumeRole call
    role_arn: str
    session_name: str
    call_index: int


@dataclasses.dataclass
class StsCall:
    index: int
    action: str | None
    params: dict  # form fields as received (one value each)
    tags: dict  # Tags.member.N.Key -> Tags.member.N.Value
    mode: str  # the behaviour in force when it arrived
    signed: bool  # carried an Authorization header
    signature_valid: bool = False
    signature_errors: list = dataclasses.field(default_factory=list)
    access_key_id: str | None = None  # the key it was signed with
    service: str | None = None
    region: str | None = None
    signed_headers: list = dataclasses.field(default_factory=list)
    security_token: str | None = None
    status: int | None = None  # None: no answer (close / hang)
    error_code: str | None = None
    issued: Issued | None = None
    finished: bool = False  # the handler is done with it (answered, or gave up for close / hang)
    received_at: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def role_arn(self):
        return self.params.get("RoleArn")

    @property
    def session_name(self):
        return self.params.get("RoleSessionName")

    @property
    def tenant(self):
        return self.tags.get("TenantID")

    def summary(self) -> str:
        return (
            f"#{self.index} {self.action} mode={self.mode} status={self.status} role={self.role_arn} "
            f"session={self.session_name} tags={self.tags} signed_by={self.access_key_id} "
            f"sig_valid={self.signature_valid} errors={self.signature_errors} "
            f"issued={self.issued.access_key_id if self.issued else None}"
        )


def _tags(params: dict) -> dict:
    out = {}
    for n in itertools.count(1):
        k = params.get(f"Tags.member.{n}.Key")
        if k is None:
            return out
        out[k] = params.get(f"Tags.member.{n}.Value", "")


def _credentials_xml(c: Issued) -> str:
    return (
        "<Credentials>"
        f"<AccessKeyId>{escape(c.access_key_id)}</AccessKeyId>"
        f"<SecretAccessKey>{escape(c.secret_access_key)}</SecretAccessKey>"
        f"<SessionToken>{escape(c.session_token)}</SessionToken>"
        f"<Expiration>{iso8601(c.expiration)}</Expiration>"
        "</Credentials>"
    )


def _assumed_role_user_xml(role_arn: str, session_name: str) -> str:
    role_name = role_arn.rsplit("/", 1)[-1]
    return (
        "<AssumedRoleUser>"
        f"<AssumedRoleId>AROA{ACCOUNT}EXAMPLE:{escape(session_name)}</AssumedRoleId>"
        f"<Arn>arn:aws:sts::{ACCOUNT}:assumed-role/{escape(role_name)}/{escape(session_name)}</Arn>"
        "</AssumedRoleUser>"
    )


def _response_xml(action: str, result: str) -> bytes:
    return (
        f'<{action}Response xmlns="{STS_NS}">\n'
        f"  <{action}Result>{result}</{action}Result>\n"
        f"  <ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>\n"
        f"</{action}Response>\n"
    ).encode()


def error_xml(kind: str, code: str, message: str) -> bytes:
    return (
        f'<ErrorResponse xmlns="{STS_NS}">\n'
        f"  <Error><Type>{kind}</Type><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>\n"
        f"  <RequestId>{uuid.uuid4()}</RequestId>\n"
        "</ErrorResponse>\n"
    ).encode()


class _Reply(Exception):
    def __init__(self, status, kind, code, message):
        super().__init__(message)
        self.status, self.kind, self.code, self.message = status, kind, code, message


def _validate_assume_role(p: dict):
    def bad(msg):
        raise _Reply(400, "Sender", "ValidationError", msg)

    arn = p.get("RoleArn", "")
    if not (20 <= len(arn) <= 2048) or not arn.startswith("arn:aws:iam::"):
        bad(f"1 validation error detected: Value '{arn}' at 'roleArn' failed to satisfy constraint")
    name = p.get("RoleSessionName", "")
    allowed = set(string.ascii_letters + string.digits + "+=,.@-_")
    if not (2 <= len(name) <= 64) or set(name) - allowed:
        bad(f"1 validation error detected: Value '{name}' at 'roleSessionName' failed to satisfy constraint")
    if "SourceIdentity" in p:
        si = p["SourceIdentity"]
        if not (2 <= len(si) <= 64) or set(si) - allowed:
            bad(f"1 validation error detected: Value '{si}' at 'sourceIdentity' failed to satisfy constraint")
    if "DurationSeconds" in p:
        try:
            d = int(p["DurationSeconds"])
        except ValueError:
            d = -1
        if not 900 <= d <= 43200:
            bad(f"1 validation error detected: Value '{p['DurationSeconds']}' at 'durationSeconds' failed")
    if len(p.get("Policy", "")) > 2048:
        bad("1 validation error detected: Value at 'policy' failed to satisfy constraint")
    tags = _tags(p)
    if len(tags) > 50:
        bad("1 validation error detected: Value at 'tags' failed to satisfy constraint: at most 50")
    for k, v in tags.items():
        if not (1 <= len(k) <= 128) or len(v) > 256:
            bad(f"1 validation error detected: tag {k!r} failed to satisfy constraint")


class FakeSts:
    def __init__(self, fake_aws=None, ssl_context=None):
        """``ssl_context``: serve https with it (a server-side
        ``ssl.SSLContext``) instead of plain http."""
        self.fake_aws = fake_aws
        self._lock = threading.Lock()
        self._base: dict[str, Credential] = {}
        self.issued: dict[str, Issued] = {}
        self.calls: list[StsCall] = []
        self.mode = "ok"
        self.ttl_seconds = 3600
        self.hang_seconds = 30.0
        self.delay_seconds = 0.0
        self._wake = threading.Event()
        self._counter = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.sts = self
        if ssl_context is not None:
            # A failed handshake (a client that does not trust the
            # certificate) surfaces as an OSError in accept and is dropped.
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self.url = f"{'https' if ssl_context is not None else 'http'}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-sts", daemon=True)
        self._thread.start()

    # ---- set-up --------------------------------------------------------
    def register_base(self, access_key_id, secret_access_key, session_token=None, label="base"):
        """Credentials AssumeRole calls may be signed with."""
        with self._lock:
            self._base[access_key_id] = Credential(access_key_id, secret_access_key, session_token, label)

    def _lookup(self, akid):
        with self._lock:
            return self._base.get(akid)

    def reset(self):
        """Forget calls, answer normally again, wake every hanging handler."""
        self._wake.set()
        with self._lock:
            self._wake = threading.Event()
            self.calls = []
            self.mode = "ok"
            self.ttl_seconds = 3600
            self.delay_seconds = 0.0

    def close(self):
        self._wake.set()
        self._server.shutdown()
        self._server.server_close()

    # ---- reading what happened -------------------------------------------
    def recorded(self, action: str | None = None, tenant: str | None = None) -> list[StsCall]:
        with self._lock:
            return [c for c in self.calls
                    if (action is None or c.action == action) and (tenant is None or c.tenant == tenant)]

    def assume_role_calls(self, tenant: str | None = None) -> list[StsCall]:
        return self.recorded("AssumeRole", tenant)

    def wait_for(self, n: int, action: str | None = "AssumeRole", tenant: str | None = None,
                 timeout: float = 5.0) -> list[StsCall]:
        deadline = time.monotonic() + timeout
        while True:
            calls = self.recorded(action, tenant)
            if (len(calls) >= n and all(c.finished for c in calls)) or time.monotonic() > deadline:
                return calls
            time.sleep(0.02)

    def issued_for(self, access_key_id: str) -> Issued | None:
        with self._lock:
            return self.issued.get(access_key_id)

    def all_secrets(self) -> list[str]:
        """Every secret access key and session token handed out."""
        with self._lock:
            out = [c.secret_access_key for c in self.issued.values()]
            out += [c.session_token for c in self.issued.values()]
            out += [c.secret_access_key for c in self._base.values()]
            out += [c.session_token for c in self._base.values() if c.session_token]
        return out

    def describe(self) -> str:
        return "\n".join(c.summary() for c in self.recorded()) or "(no STS calls)"

    # ---- issuing -----------------------------------------------------------
    def _issue(self, call: StsCall, action: str) -> Issued:
        n = next(self._counter)
        akid = f"ASIA{n:04d}" + _random(string.ascii_uppercase + string.digits, 12)
        c = Issued(
            access_key_id=akid,
            secret_access_key=random_secret(),
            session_token="FQoGZXIvYXdzE" + _random(string.ascii_letters + string.digits + "/+", 300) + "==",
            expiration=_dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(seconds=self.ttl_seconds),
            action=action,
            tenant=call.tags.get("TenantID"),
            role_arn=call.role_arn or "",
            session_name=call.session_name or "",
            call_index=call.index,
        )
        with self._lock:
            self.issued[akid] = c
            if action == "AssumeRoleWithWebIdentity":
                self._base[akid] = Credential(akid, c.secret_access_key, c.session_token, "web-identity")
        if action == "AssumeRole" and self.fake_aws is not None:
            self.fake_aws.register_credentials(akid, c.secret_access_key, c.session_token,
                                               label=f"sts:{c.tenant}")
        return c

    def _handle(self, method, raw_path, header_list, body) -> tuple[StsCall, bytes | None, int | None]:
        """(call, body, status); body None: answer nothing."""
        call, data, status = self._answer(method, raw_path, header_list, body)
        call.finished = True
        return call, data, status

    def _answer(self, method, raw_path, header_list, body):
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)) \
            if method == "POST" else dict(parse_qsl(raw_path.partition("?")[2], keep_blank_values=True))
        lower = {k.lower(): v for k, v in header_list}
        with self._lock:
            mode = self.mode
            call = StsCall(index=len(self.calls), action=params.get("Action"), params=params,
                           tags=_tags(params), mode=mode, signed="authorization" in lower,
                           security_token=lower.get("x-amz-security-token"))
            self.calls.append(call)
            wake, hang, delay = self._wake, self.hang_seconds, self.delay_seconds
        if call.signed:
            check = verify_sigv4(method, raw_path, header_list, body, self._lookup)
            call.signature_valid = check["valid"]
            call.signature_errors = list(check["errors"])
            call.access_key_id = check["access_key_id"]
            call.service, call.region = check["service"], check["region"]
            call.signed_headers = check["signed_headers"]
            if check["valid"] and call.service != "sts":
                call.signature_valid = False
                call.signature_errors.append(f"signed for service {call.service!r}, not 'sts'")
        if delay:
            wake.wait(delay)
        if mode == "hang":
            wake.wait(hang)
            return call, None, None
        if mode == "close":
            return call, None, None
        try:
            if mode == "down":
                raise _Reply(500, "Receiver", "InternalFailure", "fake STS is down")
            if mode == "denied":
                raise _Reply(403, "Sender", "AccessDenied",
                             f"User is not authorized to perform: sts:AssumeRole on resource: {call.role_arn}")
            if params.get("Version") != "2011-06-15":
                raise _Reply(400, "Sender", "InvalidParameterValue", "Version must be 2011-06-15")
            if call.action == "AssumeRole":
                if not call.signed:
                    raise _Reply(403, "Sender", "MissingAuthenticationToken", "Request is missing Authentication Token")
                if not call.signature_valid:
                    if any("unknown access key" in e for e in call.signature_errors):
                        raise _Reply(403, "Sender", "InvalidClientTokenId",
                                     "The security token included in the request is invalid.")
                    raise _Reply(403, "Sender", "SignatureDoesNotMatch",
                                 "The request signature we calculated does not match the signature you provided. "
                                 "(fake STS: " + "; ".join(call.signature_errors) + ")")
                _validate_assume_role(params)
                c = self._issue(call, "AssumeRole")
                result = _credentials_xml(c) + _assumed_role_user_xml(c.role_arn, c.session_name)
                result += f"<PackedPolicySize>{min(99, 3 * len(call.tags))}</PackedPolicySize>"
                if "SourceIdentity" in params:
                    result += f"<SourceIdentity>{escape(params['SourceIdentity'])}</SourceIdentity>"
            elif call.action == "AssumeRoleWithWebIdentity":
                for required in ("RoleArn", "RoleSessionName", "WebIdentityToken"):
                    if not params.get(required):
                        raise _Reply(400, "Sender", "ValidationError", f"{required} is required")
                c = self._issue(call, "AssumeRoleWithWebIdentity")
                result = (
                    "<Audience>sts.amazonaws.com</Audience>"
                    + _assumed_role_user_xml(c.role_arn, c.session_name)
                    + "<Provider>arn:aws:iam::111122223333:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/FAKE</Provider>"
                    + _credentials_xml(c)
                    + "<SubjectFromWebIdentityToken>system:serviceaccount:default:tenantgate</SubjectFromWebIdentityToken>"
                )
            else:
                raise _Reply(400, "Sender", "InvalidAction", f"Could not find operation {call.action}")
        except _Reply as r:
            call.status, call.error_code = r.status, r.code
            return call, error_xml(r.kind, r.code, r.message), r.status
        call.issued = c
        call.status = 200
        return call, _response_xml(call.action, result), 200


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sts: FakeSts


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSTS/1.0"
    timeout = 60

    def log_message(self, format, *args):  # noqa: A002 - silence access logs
        pass

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        _, data, status = self.server.sts._handle(self.command, self.path, list(self.headers.items()), body)
        if data is None:
            self.close_connection = True
            return
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    do_GET = do_POST


# --------------------------------------------------------------------------
# Fixtures (import them into a test module: ``from fakests import fake_sts, base_keys``)
# --------------------------------------------------------------------------


@pytest.fixture
def fake_sts(fake_aws):
    sts = FakeSts(fake_aws)
    yield sts
    sts.close()


@dataclasses.dataclass
class BaseKeys:
    access_key_id: str
    secret_access_key: str

    def env(self) -> dict:
        return {"AWS_ACCESS_KEY_ID": self.access_key_id, "AWS_SECRET_ACCESS_KEY": self.secret_access_key}


@pytest.fixture
def base_keys(fake_sts):
    """The sidecar's own long-term keys: valid for STS only (the fake
    Bedrock does not know them, and no Bedrock request may use them)."""
    k = BaseKeys("AKIABASE" + _random(string.ascii_uppercase + string.digits, 12), random_secret())
    fake_sts.register_base(k.access_key_id, k.secret_access_key)
    return k
