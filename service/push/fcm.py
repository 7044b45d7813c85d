"""The FCM backend: push messages sent through the real firebase-admin SDK, outcomes mapped."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
import threading
import time
import uuid
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import firebase_admin
import requests
from firebase_admin import credentials, exceptions, messaging
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import TokenState
from google.auth.transport import requests as google_requests
from urllib3.util.retry import Retry

from service.config import SettingsError
from service.push import Outcome, PushMessage, PushResult
from service.push.cutoff import Send, Watchdog, WatchedAdapter
from service.push.timing import (
    CONNECT_ATTEMPTS,
    CUT_GRACE_SECONDS,
    deadline_passed,
    longest_fcm_send,
)

log = logging.getLogger("reach.push.fcm")

MAX_PAYLOAD_BYTES = 4096
ANDROID_CHANNEL = "bids"
PINNED_VERSION = "7.7.0"
GOOGLE_FCM = "https://fcm.googleapis.com"
SEND_PATH = "/v1/projects/{0}/messages:send"
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_WEB_TOPIC = re.compile(r"[A-Za-z0-9_-]{1,32}")
_token_warning_lock = threading.Lock()
# google-auth fetches a new access token inside a send from 3 min 45 s before the old one
# expires (its REFRESH_THRESHOLD). A batch fetches one before its first send unless the one it
# has stays further than this from its expiry until the batch's last answer.
TOKEN_KEPT_FROM_EXPIRY = timedelta(minutes=5)


def build_message(push: PushMessage, now: float | None = None) -> messaging.Message:
    """The firebase-admin Message for one push: visible when title or body is set, else
    data-only. `push.extra` may set `channel_id`, `sound` and `thread_id`."""
    visible = push.title is not None or push.body is not None
    android = apns = webpush = None
    if push.platform == "android":
        channel = push.extra.get("channel_id", ANDROID_CHANNEL)
        android = messaging.AndroidConfig(
            collapse_key=push.collapse_key or None,
            priority=push.priority,
            ttl=push.ttl_seconds,
            notification=messaging.AndroidNotification(channel_id=channel) if visible else None,
        )
    elif push.platform == "ios":
        apns = _apns_config(push, visible, time.time() if now is None else now)
    else:
        headers = {"TTL": str(push.ttl_seconds), "Urgency": push.priority}
        if push.collapse_key:
            headers["Topic"] = _web_topic(push.collapse_key)
        webpush = messaging.WebpushConfig(headers=headers)
    notification = messaging.Notification(title=push.title, body=push.body) if visible else None
    # FCM registration tokens belong in `token`; `fid` is for Firebase installation IDs.
    with _token_warning_lock, warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"Message\.token is deprecated", category=DeprecationWarning
        )
        return messaging.Message(
            token=push.token,
            data=dict(push.data) or None,
            notification=notification,
            android=android,
            apns=apns,
            webpush=webpush,
        )


def _apns_config(push: PushMessage, visible: bool, now: float) -> messaging.APNSConfig:
    headers = {
        "apns-priority": "10" if visible and push.priority == "high" else "5",
        "apns-push-type": "alert" if visible else "background",
        "apns-expiration": str(int(now) + push.ttl_seconds) if push.ttl_seconds > 0 else "0",
    }
    if push.collapse_key:
        headers["apns-collapse-id"] = apns_collapse_id(push.collapse_key)
    aps = messaging.Aps(
        alert=messaging.ApsAlert(title=push.title, body=push.body) if visible else None,
        badge=push.badge,
        sound=push.extra.get("sound", "default") if visible else None,
        category=push.category,
        thread_id=push.extra.get("thread_id", push.category),
        mutable_content=visible,
        content_available=not visible,
    )
    return messaging.APNSConfig(headers=headers, payload=messaging.APNSPayload(aps=aps))


def apns_collapse_id(collapse_key: str) -> str:
    """APNs allows 64 bytes: longer keys become their SHA-256 (64 hex characters)."""
    if len(collapse_key.encode()) <= 64:
        return collapse_key
    return hashlib.sha256(collapse_key.encode()).hexdigest()


def _web_topic(collapse_key: str) -> str:
    """Web Push `Topic`: at most 32 URL-safe base64 characters."""
    if _WEB_TOPIC.fullmatch(collapse_key):
        return collapse_key
    digest = hashlib.sha256(collapse_key.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:32]


def payload_size(message: messaging.Message) -> int:
    """Bytes of the encoded data + notification, the part FCM limits to 4096."""
    encoded = json.loads(str(message))
    part = {key: encoded[key] for key in ("data", "notification") if key in encoded}
    return len(json.dumps(part, separators=(",", ":"), ensure_ascii=False).encode())


def load_certificate(source: str) -> credentials.Certificate:
    """A service-account credential from FIREBASE_CREDENTIALS: a file path or the JSON itself."""
    text = source.strip()
    if not text:
        raise SettingsError("FIREBASE_CREDENTIALS is empty: set it to a service-account JSON file")
    cert: str | dict[str, Any]
    if text.startswith("{"):
        try:
            cert = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(
                f"FIREBASE_CREDENTIALS looks like JSON but does not parse "
                f"(line {exc.lineno}, column {exc.colno})"
            ) from None
    else:
        path = Path(text).expanduser()
        if not path.is_file():
            raise SettingsError(
                f"FIREBASE_CREDENTIALS points at {path}, which is not a file: set it to the "
                f"path of the service-account JSON file (or to that JSON itself)"
            )
        cert = str(path)
    try:
        return credentials.Certificate(cert)
    except (ValueError, OSError) as exc:
        raise SettingsError(
            f"FIREBASE_CREDENTIALS is not a usable service-account key: {exc}"
        ) from exc


def classify(exc: exceptions.FirebaseError) -> tuple[Outcome, str]:
    """Outcome and error code for an error the SDK raised for one message."""
    if isinstance(exc, messaging.UnregisteredError):
        return "unregistered", "UNREGISTERED"
    if isinstance(exc, messaging.SenderIdMismatchError):
        return "unregistered", "SENDER_ID_MISMATCH"
    if isinstance(exc, messaging.ThirdPartyAuthError):
        return "failed", "THIRD_PARTY_AUTH_ERROR"
    if isinstance(exc, exceptions.UnauthenticatedError):
        # Our access token was refused (revoked, or expired early): passing, once a new one is
        # fetched before the next batch.
        return "retry", "UNAUTHENTICATED"
    if isinstance(exc, messaging.QuotaExceededError):
        return "retry", "QUOTA_EXCEEDED"
    if isinstance(exc, exceptions.InvalidArgumentError):
        if token_refused(exc):
            return "unregistered", "INVALID_TOKEN"
        return "invalid", "INVALID_ARGUMENT"
    response = exc.http_response
    if isinstance(
        exc,
        exceptions.ResourceExhaustedError
        | exceptions.UnavailableError
        | exceptions.InternalError
        | exceptions.DeadlineExceededError,
    ) or (response is not None and response.status_code in _RETRY_STATUSES):
        return "retry", str(exc.code)
    if isinstance(exc, exceptions.UnknownError) and response is None:
        return "retry", str(exc.code)  # a transport failure without an HTTP answer
    return "failed", str(exc.code)


def token_refused(exc: exceptions.InvalidArgumentError) -> bool:
    """Whether FCM's INVALID_ARGUMENT is about the registration token itself rather than the
    message: FCM answers both with it, and firebase-admin raises the same InvalidArgumentError.
    Told apart by FCM's words (the exception's message, "The registration token is not a valid
    FCM registration token") or the field its details name (`message.token`)."""
    if "registration token" in str(exc).lower():
        return True
    response = exc.http_response
    try:
        error = response.json().get("error", {}) if response is not None else {}
        details = error.get("details") or []
    except (AttributeError, ValueError):
        return False
    return any(
        isinstance(violation, dict) and violation.get("field") == "message.token"
        for detail in details
        if isinstance(detail, dict)
        for violation in detail.get("fieldViolations") or []
    )


def retry_after(exc: exceptions.FirebaseError) -> float | None:
    """Seconds from the Retry-After header of the HTTP answer (delta seconds or HTTP date)."""
    response = exc.http_response
    value = response.headers.get("Retry-After") if response is not None else None
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


class FcmBackend:
    """Sends through one uniquely named firebase app, at most `max_concurrency` at a time.

    The SDK's own retries are switched off: each attempt reaches FCM once and the worker
    retries with backoff (honouring Retry-After) from the outcome we return. Nor does a send
    fetch an access token: the batch has one before its first send. And a send whose answer is
    still coming `longest_send` after it started is cut off (`service/push/cutoff.py`): an
    answer trickling in a byte at a time, each within the timeout, holds it no longer. So no
    send takes longer than `longest_send` (`service/push/timing.py`), which the worker's lease
    is measured by.
    """

    name = "fcm"

    def __init__(
        self,
        credentials_source: str,
        endpoint: str = "",
        *,
        max_concurrency: int = 16,
        timeout_seconds: float = 10.0,
    ) -> None:
        if max_concurrency < 1:
            raise SettingsError(f"PUSH_CONCURRENCY must be 1 or more, not {max_concurrency}")
        if endpoint and not endpoint.startswith(("http://", "https://")):
            raise SettingsError(
                f"FCM_ENDPOINT must be a base URL such as http://127.0.0.1:8681, not {endpoint!r}"
            )
        if firebase_admin.__version__ != PINNED_VERSION:
            log.warning(
                "firebase-admin %s: the FCM backend is written against %s",
                firebase_admin.__version__,
                PINNED_VERSION,
            )
        self.max_concurrency = max_concurrency
        self.longest_send = longest_fcm_send(timeout_seconds)
        certificate = load_certificate(credentials_source)
        self._credential = certificate.get_credential()
        self._token_lock = threading.Lock()
        # FCM refused the token (401): the next batch fetches a new one, however fresh it looks.
        self._token_refused = threading.Event()
        self._watchdog = Watchdog()
        self._token_session = requests.Session()
        for scheme in ("http://", "https://"):
            self._token_session.mount(scheme, WatchedAdapter())
        self._token_request = _TokenRequest(self._token_session, timeout_seconds)
        self._app: firebase_admin.App | None = firebase_admin.initialize_app(
            certificate, {"httpTimeout": timeout_seconds}, name=f"reach-push-{uuid.uuid4().hex}"
        )
        try:
            self.url, self._session = _point_service_at(
                self._app, endpoint.rstrip("/") or GOOGLE_FCM, max_concurrency
            )
        except Exception:
            firebase_admin.delete_app(self._app)
            self._watchdog.close()
            raise

    def send_batch(
        self, messages: Sequence[PushMessage], deadline: float | None = None
    ) -> list[PushResult]:
        if self._app is None:
            raise RuntimeError("the FCM backend is closed")
        results: list[PushResult | None] = [None] * len(messages)
        ready: list[tuple[int, PushMessage, messaging.Message]] = []
        for index, push in enumerate(messages):
            try:
                message = build_message(push)
                size = payload_size(message)
            except ValueError as exc:
                results[index] = PushResult(push.key, "invalid", error=f"INVALID_MESSAGE: {exc}")
                continue
            if size > MAX_PAYLOAD_BYTES:
                results[index] = PushResult(push.key, "invalid", error="PAYLOAD_TOO_LARGE")
                continue
            ready.append((index, push, message))
        if ready:
            for (index, _, _), result in zip(ready, self._send_ready(ready, deadline), strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def _send_ready(
        self, ready: list[tuple[int, PushMessage, messaging.Message]], deadline: float | None
    ) -> list[PushResult]:
        """The well-formed messages' results: each sent unless the deadline had come first."""
        if deadline_passed(deadline):  # not even a token: nothing would be sent with it
            return [PushResult(push.key, "unsent") for _, push, _ in ready]
        auth_outcome = self._refresh_token(deadline)
        if auth_outcome is not None:
            return [PushResult(push.key, auth_outcome, error="AUTH_FAILED") for _, push, _ in ready]
        workers = min(self.max_concurrency, len(ready))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fcm-send")
        futures = [
            pool.submit(self._send_one, push, message, deadline) for _, push, message in ready
        ]
        # Every send started is cut off `longest_send` after it began: all are back by then.
        # Should one not be (a thread held elsewhere), the batch does not wait for it: its
        # outcome is unknown, and it sends nothing more (`cutoff`).
        limit = None
        if deadline is not None:
            limit = max(0.0, deadline + self.longest_send + CUT_GRACE_SECONDS - time.monotonic())
        wait(futures, timeout=limit)
        pool.shutdown(wait=False, cancel_futures=True)
        return [
            _result_of(future, push) for future, (_, push, _) in zip(futures, ready, strict=True)
        ]

    def _refresh_token(self, deadline: float | None = None) -> Outcome | None:
        """Fetch the access token once for the batch rather than once per sending thread, nor
        inside a send, where it would take longer than `longest_send`."""
        with self._token_lock:
            if self._token_lasts(deadline):
                return None
            self._token_request.last_status = None
            try:
                with self._watchdog.watch(self.longest_send) as watched:
                    self._credential.refresh(self._token_request)
            except auth_exceptions.GoogleAuthError as exc:
                if watched.cut:
                    log.warning("push credential exchange cut off: its answer came too slowly")
                    return "retry"
                return _auth_failure(exc, self._token_request.last_status)
            except (TypeError, ValueError) as exc:
                # An answer google-auth cannot read (a proxy's or a portal's page, a JSON list)
                # is not a refusal of the key: passing, like a gateway's error.
                log.warning("push credential exchange failed: unreadable answer (%s)", exc)
                return "retry"
            self._token_refused.clear()
        return None

    def _token_lasts(self, deadline: float | None) -> bool:
        """Whether the access token serves every send of a batch that starts none after
        `deadline`: FCM has not refused it, and google-auth will not fetch another meanwhile."""
        credential = self._credential
        if credential.token_state != TokenState.FRESH or self._token_refused.is_set():
            return False
        expiry: datetime | None = credential.expiry
        if deadline is None or expiry is None:
            return True
        now = datetime.now(UTC)
        if expiry.tzinfo is None:  # google-auth keeps it as naive UTC
            now = now.replace(tzinfo=None)
        last_answer = max(0.0, deadline - time.monotonic()) + self.longest_send
        return now + timedelta(seconds=last_answer) < expiry - TOKEN_KEPT_FROM_EXPIRY

    def _send_one(
        self, push: PushMessage, message: messaging.Message, deadline: float | None
    ) -> PushResult:
        if deadline_passed(deadline):
            return PushResult(push.key, "unsent")
        with self._watchdog.watch(self.longest_send) as watched:
            try:
                message_id = messaging.send(message, app=self._app)
            except Exception as exc:
                return _cut_off(push, watched) if watched.cut else self._failed(push, exc)
        return PushResult(push.key, "sent", message_id=message_id)

    def _failed(self, push: PushMessage, exc: Exception) -> PushResult:
        """The result of a send that raised `exc`."""
        if isinstance(exc, exceptions.FirebaseError):
            outcome, code = classify(exc)
            if code == "UNAUTHENTICATED":
                self._token_refused.set()
            after = retry_after(exc) if outcome == "retry" else None
            log.info(
                "push %s: %s",
                outcome,
                code,
                extra={
                    "push_key": push.key,
                    "device_id": str(push.device_id),
                    "error": str(exc)[:300],
                },
            )
            return PushResult(push.key, outcome, error=code, retry_after=after)
        if isinstance(exc, auth_exceptions.GoogleAuthError):
            return PushResult(push.key, _auth_failure(exc), error="AUTH_FAILED")
        log.error("push failed unexpectedly", exc_info=exc, extra={"push_key": push.key})
        return PushResult(push.key, "failed", error="UNEXPECTED")

    def close(self) -> None:
        app, self._app = self._app, None
        if app is None:
            return
        self._session.close()
        self._token_session.close()
        self._watchdog.close()
        try:
            firebase_admin.delete_app(app)
        except Exception:
            log.warning("closing the firebase app failed", exc_info=True)


def _cut_off(push: PushMessage, watched: Send) -> PushResult:
    """A send cut off at its time. FCM answers 200 only once it has taken the message: with
    that status line come, the push went, whatever became of the rest of the answer. Without
    it, whether FCM took the message is unknown: tried again, as after a timeout."""
    log.warning(
        "push cut off: its answer came too slowly",
        extra={"push_key": push.key, "device_id": str(push.device_id), "status": watched.status},
    )
    if watched.status == 200:
        return PushResult(push.key, "sent", error="ANSWER_CUT_OFF")
    error = "DEADLINE_EXCEEDED" if watched.status is None else "ANSWER_CUT_OFF"
    return PushResult(push.key, "retry", error=error)


def _result_of(future: Future[PushResult], push: PushMessage) -> PushResult:
    """A send's result; one never started is unsent, one not back is of unknown outcome."""
    if future.cancelled():
        return PushResult(push.key, "unsent")
    if not future.done():
        log.warning("push not back after its cutoff", extra={"push_key": push.key})
        return PushResult(push.key, "retry", error="DEADLINE_EXCEEDED")
    return future.result()


class _TokenRequest:
    """google-auth's HTTP request for the OAuth exchange, with our timeout, remembering the
    status of its last answer: google-auth's errors do not say it, and a gateway's 502 in front
    of the token endpoint is as passing as a 503."""

    def __init__(self, session: requests.Session, timeout_seconds: float) -> None:
        self._request = google_requests.Request(session)
        self._timeout = timeout_seconds
        self.last_status: int | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self._timeout)
        response = self._request(*args, **kwargs)
        self.last_status = response.status
        return response


def _auth_failure(exc: auth_exceptions.GoogleAuthError, status: int | None = None) -> Outcome:
    """A token endpoint that cannot be reached or answers a passing error (429, 5xx) is
    passing; a refused key is not."""
    log.warning("push credential exchange failed: %s", exc)
    transient = (
        isinstance(exc, auth_exceptions.TransportError)
        or exc.retryable
        or status in _RETRY_STATUSES
    )
    return "retry" if transient else "failed"


def _point_service_at(
    app: firebase_admin.App, base_url: str, pool_size: int
) -> tuple[str, requests.Session]:
    """Aim the app's messaging service at `base_url` and switch off the SDK's retries.

    firebase-admin builds the send URL once, from the private `_MessagingService.FCM_URL`,
    into the service instance's `_fcm_url`; we overwrite it on this app's instance only. Its
    session (google-auth's `AuthorizedSession`) answers a 401 by fetching a new access token
    and sending again, twice: each of those exchanges may itself be tried three times, so one
    send could outlast any lease. Here a send reaches FCM once: a refused token is a retry
    (`classify`), and the next batch fetches a new one before its first send.
    """
    service = messaging._get_messaging_service(app)
    session = getattr(getattr(service, "_client", None), "session", None)
    if (
        not isinstance(getattr(service, "_fcm_url", None), str)
        or not isinstance(session, google_requests.AuthorizedSession)
        or not isinstance(getattr(session, "_max_refresh_attempts", None), int)
    ):
        raise RuntimeError(
            f"firebase-admin {firebase_admin.__version__} changed its messaging internals "
            f"(_fcm_url, _client.session, its _max_refresh_attempts); the FCM backend is "
            f"written against {PINNED_VERSION}"
        )
    url = base_url + SEND_PATH.format(app.project_id)
    service._fcm_url = url
    session._max_refresh_attempts = 0
    # Only a failed connect (the request never left) is tried again; never an answer.
    again = CONNECT_ATTEMPTS - 1
    retries = Retry(
        total=again, connect=again, read=0, status=0, other=0, redirect=0, raise_on_status=False
    )
    adapter = WatchedAdapter(pool_connections=1, pool_maxsize=pool_size, max_retries=retries)
    session.mount(base_url + "/", adapter)
    return url, session
