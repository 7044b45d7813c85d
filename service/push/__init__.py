"""Push notifications: the messages the worker sends and the backends that send them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

Outcome = Literal["sent", "retry", "unregistered", "invalid", "failed", "unsent"]
"""What became of one message:
- sent: FCM accepted it (message_id set);
- retry: a passing failure (429, 500, 503, timeout); try again after `retry_after` or backoff;
- unregistered: the token is dead (UNREGISTERED), not a registration token at all
  (INVALID_ARGUMENT about the token: INVALID_TOKEN), or of another Firebase project than the
  credentials (SENDER_ID_MISMATCH): disable the device;
- invalid: FCM rejected the message itself (INVALID_ARGUMENT about the message): do not retry;
- failed: any other permanent failure (auth, configuration): do not retry this attempt;
- unsent: not tried, the batch's deadline had come (or, error EXPIRED, what the push announces
  expired while it waited for its turn): nothing reached FCM, it is not an attempt.

A send cut off at its time (its answer trickling in) is `sent` if FCM's 200 had come, with
error ANSWER_CUT_OFF; otherwise `retry` (DEADLINE_EXCEEDED, or ANSWER_CUT_OFF after an error's
status line): whether FCM took it is unknown, as after a timeout.
"""


@dataclass(frozen=True)
class PushMessage:
    """One notification for one device. `key` is stable across retries (idempotency)."""

    key: str
    device_id: uuid.UUID
    platform: Literal["ios", "android", "web"]
    token: str
    data: dict[str, str]
    collapse_key: str
    title: str | None = None
    body: str | None = None
    priority: Literal["high", "normal"] = "high"
    ttl_seconds: int = 86400
    badge: int | None = None
    category: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    # When what it announces is over (a bid's expiry): its time to live is what is left of it
    # when it is sent (`ttl_at`), `ttl_seconds` only without one.
    expires_at: datetime | None = None

    def ttl_at(self, now: datetime) -> int:
        """The push's time to live if it is sent at `now`: at least a second."""
        if self.expires_at is None:
            return self.ttl_seconds
        return max(1, int((self.expires_at - now).total_seconds()))


# The error of a push not sent because what it announces (a bid) expired before its turn came.
EXPIRED = "EXPIRED"

# What the outbox keeps of a send's error (`push_attempts.error`, `push_deliveries.last_error`).
ERROR_MAX = 80


@dataclass(frozen=True)
class PushResult:
    key: str
    outcome: Outcome
    message_id: str | None = None
    # FCM's code, or a short reason; cut to ERROR_MAX (firebase-admin's text of a message it
    # refuses to build is as long as it likes, and a longer one failed the results' write).
    error: str | None = None
    retry_after: float | None = None

    def __post_init__(self) -> None:
        if self.error is not None and len(self.error) > ERROR_MAX:
            object.__setattr__(self, "error", self.error[: ERROR_MAX - 3] + "...")


class PushBackend(Protocol):
    """Sends a batch; returns one result per message, in the same order. Never raises for
    a per-message failure.

    Starts no send once `deadline` (a `time.monotonic()` reading) has come: those messages
    come back `unsent`. A send it started has its answer within `longest_send` seconds, so the
    worker knows when the last answer of a batch can come (`service/push/timing.py`).
    """

    name: str
    longest_send: float

    def send_batch(
        self, messages: Sequence[PushMessage], deadline: float | None = None
    ) -> list[PushResult]: ...
