"""A fake AWS for the end-to-end tests: one HTTP server on 127.0.0.1:0.

It runs in a thread of the pytest process, so tests read what it recorded
directly (``fake.requests``). Every request except the JWKS endpoint is checked
by a signature oracle built on botocore's own SigV4 implementation; a request
that fails the check is answered like AWS answers it (403
``InvalidSignatureException``) and recorded with ``signature_valid = False`` and
the reasons, so a test can assert ``all(r.signature_valid for r in ...)``.

Responses have the shapes real AWS sends (JSON bodies, token-count headers,
``application/vnd.amazon.eventstream`` bodies framed with CRCs). A test can
script how the next requests are answered: normally, after hanging, with a
stream that stalls or is reset part way, or with an AWS error.

Nothing here talks to anything but 127.0.0.1.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import hashlib
import hmac
import json
import re
import socket
import struct
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Iterable
from urllib.parse import parse_qs, unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials

# --------------------------------------------------------------------------
# AWS event-stream framing
# --------------------------------------------------------------------------

_STRING_HEADER = 7


def encode_event_message(headers: Iterable[tuple[str, str]], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (total length, headers length),
    prelude CRC32, string headers, payload, message CRC32 (all big-endian)."""
    hbytes = b""
    for name, value in headers:
        n = name.encode()
        v = value.encode()
        hbytes += struct.pack(">B", len(n)) + n + struct.pack(">BH", _STRING_HEADER, len(v)) + v
    total = 4 + 4 + 4 + len(hbytes) + len(payload) + 4
    prelude = struct.pack(">II", total, len(hbytes))
    prelude = prelude + struct.pack(">I", zlib.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + hbytes + payload
    return message + struct.pack(">I", zlib.crc32(message) & 0xFFFFFFFF)


def _compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def event(event_type: str, body: dict) -> bytes:
    """An ``event`` message with a JSON payload, as Bedrock sends it."""
    return encode_event_message(
        [
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        _compact(body),
    )


def exception_event(exception_type: str, message: str) -> bytes:
    """An ``exception`` message (modelled stream error) as Bedrock sends it."""
    return encode_event_message(
        [
            (":exception-type", exception_type),
            (":content-type", "application/json"),
            (":message-type", "exception"),
        ],
        _compact({"message": message}),
    )


def chunk_event(inner: dict) -> bytes:
    """An InvokeModelWithResponseStream / InvokeAgent ``chunk`` event."""
    return event("chunk", {"bytes": base64.b64encode(_compact(inner)).decode()})


# --------------------------------------------------------------------------
# Scripted behaviours
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Hang:
    """Say nothing for ``seconds`` (longer than the sidecar's response
    timeout), then answer normally if anyone still listens."""

    seconds: float = 30.0


@dataclasses.dataclass
class Stall:
    """Send the response head and the first ``after_events`` event-stream
    messages (for a plain body: the first half of it), then go silent for
    ``seconds`` and close."""

    after_events: int = 2
    seconds: float = 30.0


@dataclasses.dataclass
class Reset:
    """Like ``Stall`` but reset the TCP connection (RST) ``delay`` seconds
    after the last bytes instead of waiting (the delay lets the reader take
    those bytes first: an RST discards unread data). ``headers=False``
    resets before any response byte."""

    after_events: int = 2
    delay: float = 0.3
    headers: bool = True


@dataclasses.dataclass
class Error:
    """Answer with an AWS JSON error (e.g. 429 ThrottlingException)."""

    status: int
    error_type: str
    message: str = "error from fake AWS"


@dataclasses.dataclass
class Respond:
    """Answer with exactly this status, headers and body."""

    status: int = 200
    headers: dict = dataclasses.field(default_factory=dict)
    body: bytes = b""


# --------------------------------------------------------------------------
# What was received
# --------------------------------------------------------------------------


@dataclasses.dataclass
class RecordedRequest:
    method: str
    raw_path: str  # request-target exactly as received (path + ?query)
    path: str  # raw path without the query, still percent-encoded
    query: str
    header_list: list  # [(name, value)] in wire order, names as sent
    body: bytes
    operation: str | None = None
    path_params: dict = dataclasses.field(default_factory=dict)  # percent-decoded
    signature_valid: bool = False
    access_key_id: str | None = None
    service: str | None = None
    region: str | None = None
    signed_headers: list = dataclasses.field(default_factory=list)
    errors: list = dataclasses.field(default_factory=list)
    response_status: int | None = None
    received_at: float = dataclasses.field(default_factory=time.time)

    @property
    def error(self) -> str | None:
        return "; ".join(self.errors) if self.errors else None

    @property
    def headers(self) -> dict:
        """Lower-case header name -> value (the last one when repeated)."""
        return {k.lower(): v for k, v in self.header_list}

    def header_values(self, name: str) -> list:
        return [v for k, v in self.header_list if k.lower() == name.lower()]

    def json(self):
        return json.loads(self.body)

    def summary(self) -> str:
        return (
            f"{self.method} {self.raw_path} op={self.operation} sig_valid={self.signature_valid} "
            f"akid={self.access_key_id} svc={self.service} errors={self.errors}"
        )


# --------------------------------------------------------------------------
# Signature oracle (botocore's SigV4)
# --------------------------------------------------------------------------

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256 "
    r"Credential=(?P<cred>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*"
    r"Signature=(?P<sig>[0-9a-f]{64})$"
)


class _ExactHeadersSigV4(SigV4Auth):
    """botocore's SigV4 with the signed-header set taken from the request's
    own ``SignedHeaders`` instead of botocore's defaults, so canonicalisation,
    hashing and the key derivation are botocore's while the header list is
    exactly what the signer chose."""

    def __init__(self, credentials, service, region, signed: list[str]):
        super().__init__(credentials, service, region)
        self._signed = signed

    def headers_to_sign(self, request):
        out = HTTPHeaders()
        for name in self._signed:
            for value in request.headers.get_all(name) or []:
                out[name] = value
        return out


@dataclasses.dataclass
class Credential:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    label: str = ""


def verify_sigv4(
    method: str,
    raw_target: str,
    header_list: list,
    body: bytes,
    lookup: Callable[[str], Credential | None],
    now: _dt.datetime | None = None,
    max_skew: _dt.timedelta = _dt.timedelta(minutes=5),
) -> dict:
    """Verify a SigV4-signed request exactly as received.

    Returns ``{"valid", "errors", "access_key_id", "service", "region",
    "signed_headers"}``.
    """
    res = {
        "valid": False,
        "errors": [],
        "access_key_id": None,
        "service": None,
        "region": None,
        "signed_headers": [],
    }
    errors = res["errors"]
    lower = [(k.lower(), v) for k, v in header_list]

    auths = [v for k, v in lower if k == "authorization"]
    if not auths:
        errors.append("missing authorization header")
        return res
    if len(auths) > 1:
        errors.append(f"{len(auths)} authorization headers")
        return res
    m = _AUTH_RE.match(auths[0].strip())
    if not m:
        errors.append("malformed authorization header")
        return res
    cred_parts = m.group("cred").split("/")
    if len(cred_parts) != 5 or cred_parts[4] != "aws4_request":
        errors.append("malformed credential scope")
        return res
    akid, scope_date, region, service, _ = cred_parts
    res.update(access_key_id=akid, region=region, service=service)
    signed = m.group("signed").split(";")
    res["signed_headers"] = signed

    if signed != sorted(signed) or any(s != s.lower() for s in signed):
        errors.append("SignedHeaders not sorted lower-case")
    for required in ("host", "x-amz-date"):
        if required not in signed:
            errors.append(f"{required} not signed")
    for name in signed:
        if not any(k == name for k, _ in lower):
            errors.append(f"signed header {name} not present")

    dates = [v for k, v in lower if k == "x-amz-date"]
    if len(dates) != 1:
        errors.append(f"{len(dates)} x-amz-date headers")
        return res
    amz_date = dates[0].strip()
    try:
        ts = _dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        errors.append("malformed x-amz-date")
        return res
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if abs(now - ts) > max_skew:
        errors.append(f"x-amz-date {amz_date} more than {max_skew} from now")
    if scope_date != amz_date[:8]:
        errors.append("credential scope date differs from x-amz-date")

    sha_values = [v for k, v in lower if k == "x-amz-content-sha256"]
    if len(sha_values) > 1:
        errors.append("several x-amz-content-sha256 headers")
    elif sha_values and sha_values[0].strip() != hashlib.sha256(body).hexdigest():
        errors.append("x-amz-content-sha256 is not sha256(body)")

    cred = lookup(akid)
    if cred is None:
        errors.append(f"unknown access key id {akid!r}")
        return res
    tokens = [v for k, v in lower if k == "x-amz-security-token"]
    if len(tokens) > 1:
        errors.append("several x-amz-security-token headers")
    if cred.session_token is not None:
        if not tokens:
            errors.append("x-amz-security-token missing for temporary credentials")
        elif tokens[0] != cred.session_token:
            errors.append("x-amz-security-token does not match the credentials")
    elif tokens:
        errors.append("x-amz-security-token sent with long-term credentials")
    if tokens and "x-amz-security-token" not in signed:
        errors.append("x-amz-security-token not signed")

    req = AWSRequest(method=method, url="http://fake-aws" + raw_target, data=body)
    req.headers = HTTPHeaders()
    for k, v in header_list:
        req.headers[k.lower()] = v
    req.context["timestamp"] = amz_date
    signer = _ExactHeadersSigV4(
        Credentials(cred.access_key_id, cred.secret_access_key, cred.session_token),
        service,
        region,
        signed,
    )
    try:
        canonical = signer.canonical_request(req)
        sts = signer.string_to_sign(req, canonical)
        expected = signer.signature(sts, req)
    except Exception as e:  # noqa: BLE001 - any failure is an invalid request
        errors.append(f"cannot canonicalise request: {e!r}")
        return res
    if not hmac.compare_digest(expected, m.group("sig")):
        errors.append("signature mismatch")
    res["valid"] = not errors
    return res


# --------------------------------------------------------------------------
# Responses the handlers build; the server applies the scripted behaviour.
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Body:
    status: int
    headers: list
    body: bytes


@dataclasses.dataclass
class Stream:
    status: int
    headers: list
    messages: list  # encoded event-stream messages, one HTTP chunk each


def _request_id() -> str:
    return str(uuid.uuid4())


def json_body(obj, status=200, extra_headers=()) -> Body:
    data = _compact(obj)
    return Body(
        status,
        [("Content-Type", "application/json"), ("x-amzn-RequestId", _request_id()), *extra_headers],
        data,
    )


def aws_error(status: int, error_type: str, message: str) -> Body:
    return json_body(
        {"message": message},
        status=status,
        extra_headers=[("x-amzn-ErrorType", f"{error_type}:http://internal.amazon.com/coral/com.amazon.bedrock/")],
    )


def event_stream(messages: list, extra_headers=()) -> Stream:
    return Stream(
        200,
        [
            ("Content-Type", "application/vnd.amazon.eventstream"),
            ("x-amzn-RequestId", _request_id()),
            *extra_headers,
        ],
        messages,
    )


# --------------------------------------------------------------------------
# Knowledge-base and agent answers (bedrock-agent-runtime), for scripting:
#   fake.script(retrieve_reply([kb_result("s3://docs/tenants/acme/a.pdf")]), operation="Retrieve")
# Each ``*_reply`` returns a handler ``f(fake, rec) -> Body | Stream``.
# --------------------------------------------------------------------------

# RetrievalResultLocation.type -> (location member, field holding the address)
KB_LOCATION_FIELDS = {
    "S3": ("s3Location", "uri"),
    "WEB": ("webLocation", "url"),
    "CONFLUENCE": ("confluenceLocation", "url"),
    "SALESFORCE": ("salesforceLocation", "url"),
    "SHAREPOINT": ("sharePointLocation", "url"),
    "ONEDRIVE": ("oneDriveLocation", "url"),
    "GOOGLEDRIVE": ("googleDriveLocation", "url"),
    "KENDRA": ("kendraDocumentLocation", "uri"),
    "CUSTOM": ("customDocumentLocation", "id"),
    "SQL": ("sqlLocation", "query"),
}


def kb_location(address: str, kind: str = "S3") -> dict:
    """A ``RetrievalResultLocation`` of ``kind`` pointing at ``address``."""
    member, field = KB_LOCATION_FIELDS[kind]
    return {"type": kind, member: {field: address}}


def kb_result(address: str, text: str | None = None, kind: str = "S3", score: float = 0.5,
              metadata: dict | None = None, location: dict | None = None) -> dict:
    """One Retrieve ``retrievalResults[]`` entry (also the shape of a
    RetrieveAndGenerate ``retrievedReferences[]`` entry, minus the score)."""
    out = {
        "content": {"type": "TEXT", "text": text if text is not None else f"chunk from {address}"},
        "location": location if location is not None else kb_location(address, kind),
        "score": score,
    }
    if metadata is not None:
        out["metadata"] = metadata
    return out


def kb_reference(address: str, text: str | None = None, kind: str = "S3") -> dict:
    """A ``retrievedReferences[]`` entry of a citation."""
    r = kb_result(address, text, kind)
    r.pop("score")
    return r


def rag_citation(addresses, text: str = "cited answer part", kind: str = "S3") -> dict:
    """A RetrieveAndGenerate ``citations[]`` entry citing ``addresses``."""
    return {
        "generatedResponsePart": {"textResponsePart": {"text": text, "span": {"start": 0, "end": len(text) - 1}}},
        "retrievedReferences": [kb_reference(a, kind=kind) for a in addresses],
    }


def session_id_of(rec) -> str | None:
    """The ``sessionId`` of a recorded JSON request body, if any."""
    try:
        sid = json.loads(rec.body or b"{}").get("sessionId")
    except ValueError:
        return None
    return sid if isinstance(sid, str) else None


def retrieve_reply(results: list, extra: dict | None = None) -> Callable:
    """Retrieve answering ``{"retrievalResults": results, **extra}``."""

    def handler(fake, rec):
        return json_body({"retrievalResults": results, **(extra or {})})

    return handler


def rag_reply(text: str = "Answer from fake Bedrock", citations: list = (), session_id: str | None = None) -> Callable:
    """RetrieveAndGenerate: Bedrock continues the request's ``sessionId``
    when one is sent, else starts ``session_id`` (or a fresh UUID)."""

    def handler(fake, rec):
        sid = session_id_of(rec) or session_id or str(uuid.uuid4())
        return json_body({"sessionId": sid, "output": {"text": text}, "citations": list(citations)})

    return handler


def rag_output_event(text: str) -> bytes:
    return event("output", {"text": text})


def rag_citation_event(addresses, text: str = "cited answer part", kind: str = "S3") -> bytes:
    """A RetrieveAndGenerateStream ``citation`` event (current shape, plus the
    deprecated nested ``citation`` member Bedrock still sends)."""
    c = rag_citation(addresses, text, kind)
    return event("citation", {**c, "citation": c})


def rag_stream_reply(parts=("Answer", " from", " fake", " Bedrock"), citation_addresses: list = (),
                     session_id: str | None = None) -> Callable:
    """RetrieveAndGenerateStream: ``output`` events for ``parts``, then one
    ``citation`` event per entry of ``citation_addresses`` (each a list of
    addresses); the session id in ``x-amzn-bedrock-knowledge-base-session-id``
    continues the request's, else ``session_id`` (or a fresh UUID)."""

    def handler(fake, rec):
        sid = session_id_of(rec) or session_id or str(uuid.uuid4())
        msgs = [rag_output_event(p) for p in parts]
        msgs += [rag_citation_event(addrs) for addrs in citation_addresses]
        return event_stream(msgs, extra_headers=[("x-amzn-bedrock-knowledge-base-session-id", sid)])

    return handler


def agent_chunk_event(text: str, cited: list = ()) -> bytes:
    """An InvokeAgent ``chunk``; with ``cited`` addresses, its
    ``attribution.citations`` name them as Bedrock does for an agent with a
    knowledge base."""
    payload = {"bytes": base64.b64encode(text.encode()).decode()}
    if cited:
        payload["attribution"] = {"citations": [rag_citation(cited, text=text)]}
    return event("chunk", payload)


def agent_kb_trace_event(addresses) -> bytes:
    """An InvokeAgent ``trace`` event: the orchestration step's knowledge-base
    lookup returned chunks from ``addresses`` (sent with ``enableTrace``)."""
    return event("trace", {
        "agentId": "AGENT", "agentAliasId": "ALIAS", "sessionId": "s",
        "trace": {"orchestrationTrace": {"observation": {
            "type": "KNOWLEDGE_BASE",
            "knowledgeBaseLookupOutput": {"retrievedReferences": [kb_reference(a) for a in addresses]},
        }}},
    })


def agent_reply(parts=("Agent", " says", " hi"), memory_header: bool = False,
                cited: dict | None = None, before: list = ()) -> Callable:
    """InvokeAgent: ``chunk`` events for ``parts`` (their ``bytes`` are the
    text; ``cited`` maps a part's index to the addresses its attribution
    cites), after the raw events ``before`` (e.g. traces), the session id
    header echoing the path's id as Bedrock does, and with ``memory_header``
    the ``x-amz-bedrock-agent-memory-id`` header echoing the body's
    ``memoryId``."""

    def handler(fake, rec):
        msgs = list(before) + [agent_chunk_event(p, (cited or {}).get(i, ())) for i, p in enumerate(parts)]
        headers = [
            ("x-amz-bedrock-agent-session-id", rec.path_params.get("sessionId", "")),
            ("x-amzn-bedrock-agent-content-type", "application/json"),
        ]
        if memory_header:
            try:
                mem = json.loads(rec.body or b"{}").get("memoryId")
            except ValueError:
                mem = None
            if mem:
                headers.append(("x-amz-bedrock-agent-memory-id", mem))
        return event_stream(msgs, extra_headers=headers)

    return handler


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------

_SEG = r"([^/?]+)"


class FakeAws:
    """Fake bedrock-runtime / bedrock-agent-runtime / sagemaker-runtime."""

    # The access key id the application's SDK signs with; it must never reach AWS.
    CLIENT_ACCESS_KEY_IDS = {"app-has-no-real-keys"}
    FORBIDDEN_HEADERS = {"x-tenant-token"}

    def __init__(self):
        self._lock = threading.Lock()
        self.requests: list[RecordedRequest] = []
        self._credentials: dict[str, Credential] = {}
        self._rules: list = []
        self._wake = threading.Event()
        # Canned answer content.
        self.reply_text = "Hello from fake Bedrock"
        self.stream_parts = ["Hello", " from", " fake", " Bedrock"]
        self.input_tokens = 11
        self.output_tokens = 7
        # JWKS endpoint state.
        self.jwks: dict | None = None
        self.jwks_fail = False
        self.jwks_fetches = 0
        self.forbidden_headers = set(self.FORBIDDEN_HEADERS)
        # Every SigV4 signature received, for the whole session (never reset):
        # the leak checks make sure none of them shows up in the sidecar's output.
        self.seen_signatures: set[str] = set()
        # Agent memory, account-wide as in AWS: session summaries of every
        # user and tenant, (agentId, agentAliasId, sessionSummary dict).
        self.agent_memory: list = []
        # Entries GetAgentMemory adds to every answer whatever was asked
        # (a misbehaving upstream).
        self.agent_memory_extra: list = []
        # OptimizePrompt's canned analysis and the text put before the prompt.
        self.optimize_analysis = "The prompt is clear; adding structure."
        self.optimize_prefix = "You are a helpful assistant. "
        self._routes: list = []
        self._install_default_routes()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-aws", daemon=True)
        self._thread.start()

    # ---- set-up ------------------------------------------------------
    def register_credentials(self, access_key_id, secret_access_key, session_token=None, label=""):
        with self._lock:
            self._credentials[access_key_id] = Credential(
                access_key_id, secret_access_key, session_token, label
            )

    def all_credentials(self) -> list[Credential]:
        with self._lock:
            return list(self._credentials.values())

    def lookup_credentials(self, access_key_id) -> Credential | None:
        with self._lock:
            return self._credentials.get(access_key_id)

    def route(self, method: str, pattern: str, operation: str, handler: Callable, names=()):
        """Add an operation: ``pattern`` is a regex over the raw path (no
        query) whose groups are path parameters named ``names``;
        ``handler(fake, rec) -> Body | Stream``. Later routes win."""
        self._routes.insert(0, (method, re.compile("^" + pattern + "$"), operation, handler, names))

    def script(self, behaviour, *, operation: str | None = None, times: int | None = None):
        """Answer the matching requests (all, or one operation) with
        ``behaviour`` (Hang/Stall/Reset/Error/Respond/a callable
        ``f(fake, rec) -> Body|Stream``), ``times`` times or until reset."""
        with self._lock:
            self._rules.append([operation, behaviour, times])

    def reset(self):
        """Forget requests and scripts; wake every hanging handler."""
        self._wake.set()
        with self._lock:
            self._wake = threading.Event()
            self.requests = []
            self._rules = []
            self.jwks_fail = False
            self.forbidden_headers = set(self.FORBIDDEN_HEADERS)
            self.reply_text = "Hello from fake Bedrock"
            self.stream_parts = ["Hello", " from", " fake", " Bedrock"]
            self.input_tokens = 11
            self.output_tokens = 7
            self.agent_memory = []
            self.agent_memory_extra = []
            self.optimize_analysis = "The prompt is clear; adding structure."
            self.optimize_prefix = "You are a helpful assistant. "
        # Modules with canned content of their own (fake_flows).
        for hook in getattr(self, "reset_hooks", []):
            hook(self)

    def close(self):
        self._wake.set()
        self._server.shutdown()
        self._server.server_close()

    # ---- reading what happened ---------------------------------------
    def recorded(self, operation: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if operation is None or r.operation == operation]

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reqs = self.recorded()
            if len(reqs) >= n:
                return reqs
            time.sleep(0.02)
        return self.recorded()

    def describe(self) -> str:
        return "\n".join(r.summary() for r in self.recorded()) or "(no requests)"

    # ---- internals -----------------------------------------------------
    def _behaviour_for(self, rec: RecordedRequest):
        with self._lock:
            for rule in self._rules:
                op, behaviour, times = rule
                if op is not None and op != rec.operation:
                    continue
                if times is not None:
                    if times <= 0:
                        continue
                    rule[2] = times - 1
                return behaviour, self._wake
            return None, self._wake

    def _match(self, method: str, path: str):
        for m, rx, op, handler, names in self._routes:
            if m != method:
                continue
            mm = rx.match(path)
            if mm:
                params = {n: unquote(g) for n, g in zip(names, mm.groups())}
                return op, handler, params
        return None, None, {}

    # ---- canned operations -------------------------------------------
    def _install_default_routes(self):
        r = self.route
        # bedrock-runtime
        r("POST", rf"/model/{_SEG}/converse", "Converse", FakeAws._converse, ["modelId"])
        r("POST", rf"/model/{_SEG}/converse-stream", "ConverseStream", FakeAws._converse_stream, ["modelId"])
        r("POST", rf"/model/{_SEG}/invoke", "InvokeModel", FakeAws._invoke_model, ["modelId"])
        r(
            "POST",
            rf"/model/{_SEG}/invoke-with-response-stream",
            "InvokeModelWithResponseStream",
            FakeAws._invoke_model_stream,
            ["modelId"],
        )
        r("POST", rf"/model/{_SEG}/count-tokens", "CountTokens", FakeAws._count_tokens, ["modelId"])
        r(
            "POST",
            rf"/guardrail/{_SEG}/version/{_SEG}/apply",
            "ApplyGuardrail",
            FakeAws._apply_guardrail,
            ["guardrailIdentifier", "guardrailVersion"],
        )
        # bedrock-agent-runtime
        r("POST", rf"/knowledgebases/{_SEG}/retrieve", "Retrieve", FakeAws._retrieve, ["knowledgeBaseId"])
        r("POST", r"/retrieveAndGenerate", "RetrieveAndGenerate", FakeAws._retrieve_and_generate)
        r("POST", r"/retrieveAndGenerateStream", "RetrieveAndGenerateStream", FakeAws._rag_stream)
        r(
            "POST",
            rf"/agents/{_SEG}/agentAliases/{_SEG}/sessions/{_SEG}/text",
            "InvokeAgent",
            FakeAws._invoke_agent,
            ["agentId", "agentAliasId", "sessionId"],
        )
        r(
            "GET",
            rf"/agents/{_SEG}/agentAliases/{_SEG}/memories",
            "GetAgentMemory",
            FakeAws._get_agent_memory,
            ["agentId", "agentAliasId"],
        )
        r(
            "DELETE",
            rf"/agents/{_SEG}/agentAliases/{_SEG}/memories",
            "DeleteAgentMemory",
            FakeAws._delete_agent_memory,
            ["agentId", "agentAliasId"],
        )
        r("POST", r"/rerank", "Rerank", FakeAws._rerank)
        r("POST", r"/optimize-prompt", "OptimizePrompt", FakeAws._optimize_prompt)
        # bedrock-agent-runtime AgenticRetrieveStream: its own module.
        import fake_agentic

        fake_agentic.install(self)
        # bedrock-runtime async invocations: their own module.
        import fake_async

        fake_async.install(self)
        # bedrock-agent-runtime sessions: their own module.
        import fake_sessions

        fake_sessions.install(self)
        # Knowledge-base documents, generated queries, guardrail checks.
        import fake_kb_extras

        fake_kb_extras.install(self)
        # Flows and their executions.
        import fake_flows

        fake_flows.install(self)
        # bedrock-agent-runtime inline agents: their own module.
        import fake_inline_agent

        fake_inline_agent.install(self)
        # bedrock-runtime's OpenAI-compatible Chat Completions: its own module.
        import fake_openai

        fake_openai.install(self)
        # sagemaker-runtime: its own module, which imports this one.
        import fake_sagemaker

        fake_sagemaker.install(self)

    def _usage(self):
        return {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
            "totalTokens": self.input_tokens + self.output_tokens,
        }

    def _converse(self, rec):
        return json_body(
            {
                "output": {"message": {"role": "assistant", "content": [{"text": self.reply_text}]}},
                "stopReason": "end_turn",
                "usage": self._usage(),
                "metrics": {"latencyMs": 42},
            }
        )

    def _converse_stream(self, rec):
        msgs = [event("messageStart", {"role": "assistant"})]
        for part in self.stream_parts:
            msgs.append(event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": part}}))
        msgs.append(event("contentBlockStop", {"contentBlockIndex": 0}))
        msgs.append(event("messageStop", {"stopReason": "end_turn"}))
        msgs.append(event("metadata", {"usage": self._usage(), "metrics": {"latencyMs": 42}}))
        return event_stream(msgs)

    def _token_headers(self):
        return [
            ("x-amzn-bedrock-input-token-count", str(self.input_tokens)),
            ("x-amzn-bedrock-output-token-count", str(self.output_tokens)),
            ("x-amzn-bedrock-invocation-latency", "42"),
        ]

    def _invoke_model(self, rec):
        model = rec.path_params.get("modelId", "")
        if "embed" in model:
            body = {"embedding": [0.125, -0.5, 0.25], "inputTextTokenCount": self.input_tokens}
        elif "anthropic" in model:
            body = {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model.rsplit("/", 1)[-1],
                "content": [{"type": "text", "text": self.reply_text}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            }
        else:
            body = {"outputText": self.reply_text}
        return json_body(body, extra_headers=self._token_headers())

    def _invoke_model_stream(self, rec):
        msgs = [
            chunk_event(
                {
                    "type": "message_start",
                    "message": {"id": "msg_fake", "role": "assistant", "content": [],
                                "usage": {"input_tokens": self.input_tokens, "output_tokens": 1}},
                }
            )
        ]
        for part in self.stream_parts:
            msgs.append(
                chunk_event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": part}})
            )
        msgs.append(
            chunk_event(
                {
                    "type": "message_stop",
                    "amazon-bedrock-invocationMetrics": {
                        "inputTokenCount": self.input_tokens,
                        "outputTokenCount": self.output_tokens,
                        "invocationLatency": 42,
                        "firstByteLatency": 7,
                    },
                }
            )
        )
        return event_stream(msgs, extra_headers=[("X-Amzn-Bedrock-Content-Type", "application/json")])

    def _count_tokens(self, rec):
        return json_body({"inputTokens": self.input_tokens})

    def _apply_guardrail(self, rec):
        return json_body(
            {
                "usage": {
                    "topicPolicyUnits": 1,
                    "contentPolicyUnits": 1,
                    "wordPolicyUnits": 1,
                    "sensitiveInformationPolicyUnits": 1,
                    "sensitiveInformationPolicyFreeUnits": 0,
                    "contextualGroundingPolicyUnits": 0,
                },
                "action": "NONE",
                "outputs": [],
                "assessments": [],
            }
        )

    def _retrieve(self, rec):
        return json_body({"retrievalResults": []})

    def _retrieve_and_generate(self, rec):
        return json_body({"sessionId": "fake-session-1", "output": {"text": self.reply_text}, "citations": []})

    def _rag_stream(self, rec):
        msgs = [event("output", {"text": p}) for p in self.stream_parts]
        return event_stream(msgs, extra_headers=[("x-amzn-bedrock-knowledge-base-session-id", "fake-session-1")])

    def _invoke_agent(self, rec):
        # InvokeAgent chunk `bytes` are the answer text itself, not JSON.
        msgs = [event("chunk", {"bytes": base64.b64encode(p.encode()).decode()}) for p in self.stream_parts]
        return event_stream(
            msgs,
            extra_headers=[
                ("x-amz-bedrock-agent-session-id", rec.path_params.get("sessionId", "")),
                ("x-amzn-bedrock-agent-content-type", "application/json"),
            ],
        )

    def add_agent_memory(self, agent_id, alias_id, memory_id, session_id, text):
        with self._lock:
            self.agent_memory.append((agent_id, alias_id, {
                "memoryId": memory_id,
                "sessionId": session_id,
                "sessionStartTime": "2026-01-01T10:00:00Z",
                "sessionExpiryTime": "2026-01-31T10:00:00Z",
                "summaryText": text,
            }))

    def _memory_query(self, rec) -> dict:
        return {k: v[0] for k, v in parse_qs(rec.query, keep_blank_values=True).items()}

    def _get_agent_memory(self, rec):
        # Like AWS: every summary of the alias whose memoryId matches; with no
        # memoryId, every user's.
        q = self._memory_query(rec)
        agent, alias = rec.path_params["agentId"], rec.path_params["agentAliasId"]
        with self._lock:
            found = [
                {"sessionSummary": dict(s)}
                for a, al, s in self.agent_memory
                if (a, al) == (agent, alias) and ("memoryId" not in q or s["memoryId"] == q["memoryId"])
            ]
            found += [dict(e) for e in self.agent_memory_extra]
        limit = int(q.get("maxItems", "1000"))
        out = {"memoryContents": found[:limit]}
        if len(found) > limit:
            out["nextToken"] = "fake-next"
        return json_body(out)

    def _delete_agent_memory(self, rec):
        # Like AWS: with no memoryId, every user's memory of the alias goes.
        q = self._memory_query(rec)
        agent, alias = rec.path_params["agentId"], rec.path_params["agentAliasId"]

        def doomed(a, al, s):
            return (
                (a, al) == (agent, alias)
                and ("memoryId" not in q or s["memoryId"] == q["memoryId"])
                and ("sessionId" not in q or s["sessionId"] == q["sessionId"])
            )

        with self._lock:
            self.agent_memory = [m for m in self.agent_memory if not doomed(*m)]
        return Body(202, [("Content-Type", "application/json"), ("x-amzn-RequestId", _request_id())], b"")

    def _optimize_prompt(self, rec):
        # An analysis message, then the whole optimized prompt in one event.
        text = rec.json()["input"]["textPrompt"]["text"]
        return event_stream([
            event("analyzePromptEvent", {"message": self.optimize_analysis}),
            event("optimizedPromptEvent", {"optimizedPrompt": {"textPrompt": {"text": f"{self.optimize_prefix}{text}"}}}),
        ])

    def _rerank(self, rec):
        return json_body({"results": [{"index": 0, "relevanceScore": 0.9}]})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeAws


class _ConnectionReset(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeAWS/1.0"
    timeout = 60  # idle keep-alive connections end eventually

    def log_message(self, format, *args):  # noqa: A002 - silence access logs
        pass

    @property
    def fake(self) -> FakeAws:
        return self.server.fake

    # All methods go through one path.
    def do_GET(self):
        self._handle()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = b""
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline(65537)
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self):
        fake = self.fake
        body = self._read_body()
        raw = self.path
        path, _, query = raw.partition("?")
        header_list = list(self.headers.items())

        if self.command == "GET" and path == "/jwks.json":
            self._jwks()
            return

        rec = RecordedRequest(
            method=self.command, raw_path=raw, path=path, query=query, header_list=header_list, body=body
        )
        op, handler, params = fake._match(self.command, path)
        rec.operation, rec.path_params = op, params

        check = verify_sigv4(self.command, raw, header_list, body, fake.lookup_credentials)
        rec.signature_valid = check["valid"]
        rec.errors = list(check["errors"])
        rec.access_key_id = check["access_key_id"]
        rec.service = check["service"]
        rec.region = check["region"]
        rec.signed_headers = check["signed_headers"]
        lower_names = {k.lower() for k, _ in header_list}
        for name in sorted(fake.forbidden_headers & lower_names):
            rec.errors.append(f"forbidden header {name} forwarded")
            rec.signature_valid = False
        if rec.access_key_id in fake.CLIENT_ACCESS_KEY_IDS:
            rec.errors.append("the application's own Authorization was forwarded")
            rec.signature_valid = False
        sig = _AUTH_RE.match(rec.headers.get("authorization", "").strip())
        with fake._lock:
            fake.requests.append(rec)
            if sig:
                fake.seen_signatures.add(sig.group("sig"))

        if not rec.signature_valid:
            if any("unknown access key" in e for e in rec.errors):
                resp = aws_error(403, "UnrecognizedClientException",
                                 "The security token included in the request is invalid.")
            else:
                resp = aws_error(
                    403,
                    "InvalidSignatureException",
                    "The request signature we calculated does not match the signature you provided. "
                    "(fake AWS: " + "; ".join(rec.errors) + ")",
                )
            self._send(rec, resp, None, None)
            return

        behaviour, wake = fake._behaviour_for(rec)
        if isinstance(behaviour, Hang):
            wake.wait(behaviour.seconds)
            behaviour = None
        if isinstance(behaviour, Error):
            resp = aws_error(behaviour.status, behaviour.error_type, behaviour.message)
        elif isinstance(behaviour, Respond):
            resp = Body(behaviour.status, list(behaviour.headers.items()), behaviour.body)
        elif behaviour is not None and not isinstance(behaviour, (Stall, Reset)):
            resp = behaviour(fake, rec)
        elif handler is None:
            resp = aws_error(404, "UnknownOperationException", f"fake AWS has no operation at {self.command} {path}")
        else:
            resp = handler(fake, rec)
        self._send(rec, resp, behaviour, wake)

    def _jwks(self):
        fake = self.fake
        with fake._lock:
            fake.jwks_fetches += 1
            failing, keys = fake.jwks_fail, fake.jwks
        if failing or keys is None:
            data = b'{"message":"jwks unavailable"}'
            self.send_response(500)
        else:
            data = _compact(keys)
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reset_connection(self):
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        self.close_connection = True

    def _send(self, rec, resp, behaviour, wake):
        rec.response_status = resp.status
        if isinstance(behaviour, Reset) and not behaviour.headers:
            rec.response_status = None
            self._reset_connection()
            return
        try:
            self.send_response(resp.status)
            for k, v in resp.headers:
                self.send_header(k, v)
            if isinstance(resp, Stream):
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i, msg in enumerate(resp.messages):
                    if isinstance(behaviour, (Stall, Reset)) and i >= behaviour.after_events:
                        break
                    self.wfile.write(b"%x\r\n" % len(msg) + msg + b"\r\n")
                    self.wfile.flush()
                else:
                    if not isinstance(behaviour, (Stall, Reset)):
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                        return
            else:
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                if not isinstance(behaviour, (Stall, Reset)):
                    self.wfile.write(resp.body)
                    self.wfile.flush()
                    return
                self.wfile.write(resp.body[: len(resp.body) // 2])
                self.wfile.flush()
            # Stall or Reset part way.
            if isinstance(behaviour, Stall):
                wake.wait(behaviour.seconds)
                self.close_connection = True
            else:
                wake.wait(behaviour.delay)
                self._reset_connection()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
