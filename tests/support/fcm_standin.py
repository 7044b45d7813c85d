"""A local FCM stand-in: the OAuth2 token endpoint and the FCM v1 send API, scriptable per token."""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
import urllib.parse
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

log = logging.getLogger("tests.fcm_standin")

TOKEN_PATH = "/token"
SEND_PREFIX = "/v1/projects/"
SEND_SUFFIX = "/messages:send"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
_FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
_STATUS = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass(frozen=True)
class Answer:
    """How the stand-in answers one send: HTTP status, FCM errorCode, Retry-After, delay."""

    status: int = 200
    error_code: str | None = None
    retry_after: str | None = None
    delay: float | None = None
    hang_up: bool = False  # close the connection without an answer
    message: str | None = None  # the error's message, as FCM words it
    # The fields FCM names as wrong (a google.rpc.BadRequest detail): {field: description}.
    violations: tuple[tuple[str, str], ...] = ()
    # Seconds between the bytes of the answer, each one well within a read timeout, the whole
    # answer taking far longer; from its first byte, or (`trickle_body`) once the status line
    # and headers are out.
    trickle: float | None = None
    trickle_body: bool = False

    def body(self, project: str) -> dict[str, Any]:
        if self.status == 200:
            return {"name": f"projects/{project}/messages/{uuid.uuid4().hex}"}
        error: dict[str, Any] = {
            "code": self.status,
            "message": self.message
            or f"stand-in {self.error_code or _STATUS.get(self.status, 'UNKNOWN')}",
            "status": _STATUS.get(self.status, "UNKNOWN"),
        }
        details: list[dict[str, Any]] = []
        if self.error_code:
            details.append({"@type": _FCM_ERROR_TYPE, "errorCode": self.error_code})
        if self.violations:
            violations = [{"field": f, "description": d} for f, d in self.violations]
            details.append({"@type": _BAD_REQUEST_TYPE, "fieldViolations": violations})
        if details:
            error["details"] = details
        return {"error": error}


SUCCESS = Answer()
UNREGISTERED = Answer(404, "UNREGISTERED")
SENDER_ID_MISMATCH = Answer(403, "SENDER_ID_MISMATCH")
INVALID_ARGUMENT = Answer(400, "INVALID_ARGUMENT")
# What FCM answers for a registration token that is not one (mangled, truncated, an APNs
# device token): INVALID_ARGUMENT as for a bad message, told apart only by its message...
INVALID_TOKEN = Answer(
    400,
    "INVALID_ARGUMENT",
    message="The registration token is not a valid FCM registration token",
)
# ... or, as FCM has also answered it, by the field it names.
INVALID_TOKEN_FIELD = Answer(
    400,
    "INVALID_ARGUMENT",
    message="Request contains an invalid argument.",
    violations=(("message.token", "Invalid registration token"),),
)
# A message FCM refuses whatever the token: a data value of the wrong type.
INVALID_DATA = Answer(
    400,
    "INVALID_ARGUMENT",
    message="Invalid value at 'message.data[0].value' (TYPE_STRING), 7",
    violations=(("message.data[0].value", "Invalid value at 'message.data[0].value'"),),
)
THIRD_PARTY_AUTH_ERROR = Answer(401, "THIRD_PARTY_AUTH_ERROR")


# FCM's limit on a message's payload, and APNs' on what FCM hands it for an Apple device.
MAX_PAYLOAD_BYTES = 4096
# What FCM answers a message over that limit (HTTP v1: 400 INVALID_ARGUMENT, "Message is too big").
TOO_BIG = Answer(400, "INVALID_ARGUMENT")


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def payload_bytes(message: dict[str, Any]) -> int:
    """The larger of the two sizes FCM limits: the message's data and notification as FCM
    reads them (UTF-8, no whitespace), and for an Apple device the APNs payload FCM makes (the
    `aps` dictionary, its alert from the notification unless `apns` sets one, beside the data
    keys)."""
    part = {key: message[key] for key in ("data", "notification") if key in message}
    size = _json_bytes(part)
    apns = message.get("apns")
    if isinstance(apns, dict):
        payload = dict(apns.get("payload") or {})
        aps = dict(payload.get("aps") or {})
        if "alert" not in aps and message.get("notification"):
            aps["alert"] = message["notification"]
        payload = {**(message.get("data") or {}), **payload, "aps": aps}
        size = max(size, _json_bytes(payload))
    return size


def quota_exceeded(retry_after: str | None = None) -> Answer:
    return Answer(429, "QUOTA_EXCEEDED", retry_after)


def internal(retry_after: str | None = None) -> Answer:
    return Answer(500, "INTERNAL", retry_after)


def unavailable(retry_after: str | None = None) -> Answer:
    return Answer(503, "UNAVAILABLE", retry_after)


def slow(delay: float) -> Answer:
    return Answer(delay=delay)


def trickling(gap: float, *, body_only: bool = False, answer: Answer = Answer()) -> Answer:
    """`answer`, written a byte every `gap` seconds (once its head is out, if `body_only`)."""
    return dataclasses.replace(answer, trickle=gap, trickle_body=body_only)


HANG_UP = Answer(hang_up=True)


@dataclass(frozen=True)
class Received:
    """One request the stand-in received."""

    kind: str  # "token" | "send" | "other" | "cut" (the client went away mid-body)
    path: str
    headers: dict[str, str]
    body: Any
    at: float
    answer: Answer | None = None


@lru_cache(maxsize=1)
def _private_key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@lru_cache(maxsize=1)
def _public_key_pem() -> bytes:
    key = serialization.load_pem_private_key(_private_key_pem(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def service_account_info(token_uri: str, project_id: str = "reach-test") -> dict[str, str]:
    """A throwaway service account (real RSA key) whose OAuth exchange goes to `token_uri`."""
    email = f"push@{project_id}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": uuid.uuid4().hex,
        "private_key": _private_key_pem().decode(),
        "client_email": email,
        "client_id": "100000000000000000000",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email}",
        "universe_domain": "googleapis.com",
    }


def write_service_account(path: Path, token_uri: str, project_id: str = "reach-test") -> Path:
    path.write_text(json.dumps(service_account_info(token_uri, project_id)))
    path.chmod(0o600)
    return path


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    received: list[Received] = field(default_factory=list)
    scripts: dict[str, deque[Answer]] = field(default_factory=lambda: defaultdict(deque))
    access_tokens: set[str] = field(default_factory=set)
    in_flight: int = 0
    max_in_flight: int = 0
    answers_cut: int = 0  # trickled answers whose client hung up before the last byte


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = urllib.parse.urlsplit(self.path).path
        if len(raw) < length:
            # The sender died or hung up mid-body (a killed worker does). FCM never acts on an
            # incomplete request, so it is recorded apart from the sends and left unanswered.
            self.server.standin.record(Received("cut", path, headers, raw, time.time()))
            self.close_connection = True
        elif path == TOKEN_PATH:
            form = dict(urllib.parse.parse_qsl(raw.decode()))
            self.server.standin.record(Received("token", path, headers, form, time.time()))
            self._token(form)
        elif path.startswith(SEND_PREFIX) and path.endswith(SEND_SUFFIX):
            project = path[len(SEND_PREFIX) : -len(SEND_SUFFIX)]
            self._send(project, path, headers, json.loads(raw or b"null"))
        else:
            self.server.standin.record(Received("other", path, headers, raw.decode(), time.time()))
            self._reply(404, {"error": {"code": 404, "message": "no such path"}})

    def _token(self, form: dict[str, str]) -> None:
        standin = self.server.standin
        if standin.token_failure is not None:
            status, content_type, raw = standin.token_failure
            self._reply_raw(status, content_type, raw)
            return
        try:
            # google-auth always addresses the assertion to Google's token endpoint.
            jwt.decode(
                form.get("assertion", ""),
                _public_key_pem(),
                algorithms=["RS256"],
                audience=GOOGLE_TOKEN_AUDIENCE,
            )
            valid = form.get("grant_type") == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        except jwt.PyJWTError:
            valid = False
        if not valid:
            self._reply(400, {"error": "invalid_grant", "error_description": "bad assertion"})
            return
        token = f"standin-{uuid.uuid4().hex}"
        with standin.state.lock:
            standin.state.access_tokens.add(token)
        lifetime = standin.token_seconds
        body = {"access_token": token, "expires_in": lifetime, "token_type": "Bearer"}
        if standin.token_trickle is not None:
            self._trickle_raw(200, json.dumps(body).encode(), {}, standin.token_trickle, False)
            return
        self._reply(200, body)

    def _send(self, project: str, path: str, headers: dict[str, str], body: Any) -> None:
        standin = self.server.standin
        state = standin.state
        message = body.get("message", {}) if isinstance(body, dict) else {}
        target = message.get("token") or message.get("fid") or ""
        with state.lock:
            authorized = headers.get("authorization", "").removeprefix("Bearer ")
            authorized_ok = authorized in state.access_tokens
            queue = state.scripts.get(target)
            answer = queue.popleft() if queue else SUCCESS
            if isinstance(message, dict) and payload_bytes(message) > MAX_PAYLOAD_BYTES:
                answer = TOO_BIG  # FCM refuses it whatever else would have happened
            state.received.append(Received("send", path, headers, body, time.time(), answer))
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            delay = standin.default_delay if answer.delay is None else answer.delay
            if delay > 0:
                standin.stopping.wait(delay)
            if answer.hang_up:
                self.close_connection = True
                return
            if not authorized_ok:
                self._reply(
                    401,
                    {"error": {"code": 401, "message": "bad token", "status": "UNAUTHENTICATED"}},
                )
                return
            extra = {"Retry-After": answer.retry_after} if answer.retry_after else {}
            if answer.trickle is not None:
                self._trickle(answer, project, extra)
                return
            self._reply(answer.status, answer.body(project), extra)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _trickle(self, answer: Answer, project: str, extra: dict[str, str]) -> None:
        assert answer.trickle is not None
        data = json.dumps(answer.body(project)).encode()
        self._trickle_raw(answer.status, data, extra, answer.trickle, answer.trickle_body)

    def _trickle_raw(
        self, status: int, data: bytes, extra: dict[str, str], gap: float, body_only: bool
    ) -> None:
        """The answer a byte every `gap` seconds (the body's, once the head is out, if
        `body_only`), until it is out or the client hangs up (counted in `answers_cut`)."""
        head = [f"HTTP/1.1 {status} {self.responses[status][0]}"]
        head += ["Content-Type: application/json; charset=UTF-8", f"Content-Length: {len(data)}"]
        head += [f"{name}: {value}" for name, value in extra.items()]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode()
        whole, start = raw + data, len(raw) if body_only else 0
        stopping = self.server.standin.stopping
        try:
            if start:
                self.wfile.write(raw)
                self.wfile.flush()
            for index in range(start, len(whole)):
                if stopping.wait(gap):
                    break
                self.wfile.write(whole[index : index + 1])
                self.wfile.flush()
        except OSError:
            with self.server.standin.state.lock:
                self.server.standin.state.answers_cut += 1
        self.close_connection = True

    def _reply(self, status: int, body: Any, extra: dict[str, str] | None = None) -> None:
        self._reply_raw(status, "application/json; charset=UTF-8", json.dumps(body).encode(), extra)

    def _reply_raw(
        self, status: int, content_type: str, data: bytes, extra: dict[str, str] | None = None
    ) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            log.debug("client went away before the reply")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, standin: FcmStandIn) -> None:
        self.standin = standin
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("stand-in request failed", exc_info=True)


class FcmStandIn:
    """The stand-in server. `script(token, *answers)` queues answers; others succeed."""

    def __init__(self, default_delay: float = 0.0, project_id: str = "reach-test") -> None:
        self.default_delay = default_delay
        self.token_seconds = 3600  # the access tokens' lifetime (expires_in)
        # Seconds between the bytes of the token endpoint's answers, if set (they trickle in).
        self.token_trickle: float | None = None
        # (status, content type, body) the token endpoint answers instead of a token, if set.
        self.token_failure: tuple[int, str, bytes] | None = None
        self.project_id = project_id
        self.state = _State()
        self.stopping = threading.Event()
        self._server = _Server(self)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def start(self) -> FcmStandIn:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def token_uri(self) -> str:
        return self.url + TOKEN_PATH

    def service_account(self) -> dict[str, str]:
        return service_account_info(self.token_uri, self.project_id)

    def write_credentials(self, path: Path) -> Path:
        return write_service_account(path, self.token_uri, self.project_id)

    def record(self, received: Received) -> None:
        with self.state.lock:
            self.state.received.append(received)

    def script(self, token: str, *answers: Answer) -> None:
        with self.state.lock:
            self.state.scripts[token].extend(answers)

    def received(self, kind: str | None = "send") -> list[Received]:
        """What arrived so far (sends only by default; kind=None for everything)."""
        with self.state.lock:
            return [r for r in self.state.received if kind is None or r.kind == kind]

    def messages(self) -> list[dict[str, Any]]:
        """The `message` objects of every send received, in arrival order."""
        return [r.body["message"] for r in self.received()]

    @property
    def answers_cut(self) -> int:
        with self.state.lock:
            return self.state.answers_cut

    @property
    def in_flight(self) -> int:
        """Sends received and not answered yet (their answer still trickling)."""
        with self.state.lock:
            return self.state.in_flight

    @property
    def max_in_flight(self) -> int:
        with self.state.lock:
            return self.state.max_in_flight

    def revoke_tokens(self) -> None:
        """Every access token handed out so far is refused from now on (401 UNAUTHENTICATED)."""
        with self.state.lock:
            self.state.access_tokens.clear()

    def reset(self) -> None:
        with self.state.lock:
            self.state.received.clear()
            self.state.scripts.clear()
            self.state.max_in_flight = 0
