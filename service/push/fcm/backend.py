"""The FcmBackend: batches sent through one firebase app, each send cut off at its time."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta

import firebase_admin
import requests
from firebase_admin import exceptions, messaging
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import TokenState

from service.clock import clock
from service.config import SettingsError
from service.push import EXPIRED, Outcome, PushMessage, PushResult
from service.push.cutoff import Watchdog, WatchedAdapter
from service.push.fcm.credentials import _TokenRequest, load_certificate
from service.push.fcm.messages import MAX_PAYLOAD_BYTES, build_message, payload_size
from service.push.fcm.outcomes import (
    _auth_failure,
    _cut_off,
    _result_of,
    classify,
    retry_after,
    said,
)
from service.push.fcm.sdk import GOOGLE_FCM, PINNED_VERSION, _point_service_at
from service.push.timing import CUT_GRACE_SECONDS, deadline_passed, longest_fcm_send

log = logging.getLogger("reach.push.fcm")
# google-auth fetches a new access token inside a send from 3 min 45 s before the old one
# expires (its REFRESH_THRESHOLD). A batch fetches one before its first send unless the one it
# has stays further than this from its expiry until the batch's last answer.
TOKEN_KEPT_FROM_EXPIRY = timedelta(minutes=5)


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
        built = clock.now()
        for index, push in enumerate(messages):
            try:
                message = build_message(push, built)
                size = payload_size(message)
            except ValueError as exc:
                results[index] = PushResult(push.key, "invalid", error=f"INVALID_MESSAGE: {exc}")
                continue
            if size > MAX_PAYLOAD_BYTES:
                results[index] = PushResult(push.key, "invalid", error="PAYLOAD_TOO_LARGE")
                continue
            ready.append((index, push, message))
        if ready:
            sent = self._send_ready(ready, built, deadline)
            for (index, _, _), result in zip(ready, sent, strict=True):
                results[index] = result
        return [result for result in results if result is not None]

    def _send_ready(
        self,
        ready: list[tuple[int, PushMessage, messaging.Message]],
        built: datetime,
        deadline: float | None,
    ) -> list[PushResult]:
        """The well-formed messages' results: each sent unless the deadline had come first.
        `built`: when the messages were built, for their time to live."""
        if deadline_passed(deadline):  # not even a token: nothing would be sent with it
            return [PushResult(push.key, "unsent") for _, push, _ in ready]
        auth_outcome = self._refresh_token(deadline)
        if auth_outcome is not None:
            return [PushResult(push.key, auth_outcome, error="AUTH_FAILED") for _, push, _ in ready]
        workers = min(self.max_concurrency, len(ready))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fcm-send")
        futures = [
            pool.submit(self._send_one, push, message, built, deadline)
            for _, push, message in ready
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
        self,
        push: PushMessage,
        message: messaging.Message,
        built: datetime,
        deadline: float | None,
    ) -> PushResult:
        if deadline_passed(deadline):
            return PushResult(push.key, "unsent")
        if push.expires_at is not None:
            now = clock.now()
            if push.expires_at <= now:
                # What it announces expired while it waited for its turn: it has nothing left
                # to say. Not an attempt: the next pass finds its job expired.
                return PushResult(push.key, "unsent", error=EXPIRED)
            if push.ttl_at(now) != push.ttl_at(built):
                # Built again as it leaves: its time to live is what is left then, not when
                # the batch began (a send may wait for a thread while FCM answers slowly).
                message = build_message(push, now)
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
                    "error": said(exc, outcome),
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
