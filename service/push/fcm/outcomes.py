"""What became of one send: FCM's and google-auth's errors as outcomes, Retry-After read."""

from __future__ import annotations

import logging
import math
from concurrent.futures import Future
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from firebase_admin import exceptions, messaging
from google.auth import exceptions as auth_exceptions

from service.push import Outcome, PushMessage, PushResult
from service.push.cutoff import Send

log = logging.getLogger("reach.push.fcm")

_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


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
    return "registration token" in str(exc).lower() or "message.token" in violated_fields(exc)


def violated_fields(exc: exceptions.FirebaseError) -> list[str]:
    """The fields of the message FCM's answer names as wrong (its `google.rpc.BadRequest`
    detail), in its order; none if it names none or could not be read."""
    response = exc.http_response
    try:
        error = response.json().get("error", {}) if response is not None else {}
        details = error.get("details") or []
    except (AttributeError, ValueError):
        return []
    return [
        str(violation.get("field"))
        for detail in details
        if isinstance(detail, dict)
        for violation in detail.get("fieldViolations") or []
        if isinstance(violation, dict) and violation.get("field")
    ]


def said(exc: exceptions.FirebaseError, outcome: Outcome) -> str:
    """FCM's words about a send it refused, for the log. For a message it refused as such
    (`invalid`) only the fields it names: its text quotes the value it refused ("Invalid value
    at 'message.data[0].value' (TYPE_STRING), 7"), which may be a partner's words."""
    if outcome != "invalid":
        return str(exc)[:300]
    fields = violated_fields(exc)
    return (
        f"fields: {', '.join(fields)}"
        if fields
        else "FCM's text left out: it may quote the message"
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
