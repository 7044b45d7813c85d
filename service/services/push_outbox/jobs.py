"""A push job's row, written in the transaction of the change it announces; the workers woken."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import insert
from sqlalchemy.orm import Session

from service.clock import clock
from service.db import after_commit
from service.domain.quiet_hours import QuietHours
from service.models import PushJob
from service.models.base import table

_wakeups: list[Callable[[], None]] = []
_QUEUE = insert(table(PushJob))


class Recipient(Protocol):
    """Who a push is for and when they can be reached (a `User` or a member's partner)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def timezone(self) -> str: ...

    @property
    def quiet_start(self) -> str | None: ...

    @property
    def quiet_end(self) -> str | None: ...


def on_enqueued(wake: Callable[[], None]) -> None:
    """Call `wake` after a transaction that queued pushes commits (once, however often it is
    registered)."""
    if wake not in _wakeups:
        _wakeups.append(wake)


def job(
    *,
    kind: str,
    dedupe_key: str,
    recipient: Recipient,
    couple_id: Any,
    payload: dict[str, Any],
    urgent: bool,
    expires_at: datetime | None,
    not_before: datetime | None = None,
) -> dict[str, Any]:
    """One push for `recipient`, as a `push_jobs` row; non-urgent ones wait out quiet hours.

    The row gets the cursor of the event it announces when it is queued (`queue`).
    """
    now = clock.now()
    available = max(now, not_before) if not_before else now
    if not urgent:
        quiet = QuietHours.of(recipient.quiet_start, recipient.quiet_end, recipient.timezone)
        if quiet is not None:
            available = quiet.reachable_from(available)
    return {
        "kind": kind,
        "dedupe_key": dedupe_key,
        "couple_id": couple_id,
        "recipient_id": recipient.id,
        "payload": payload,
        "urgent": urgent,
        "state": "pending",
        "attempts": 0,
        "available_at": available,
        "expires_at": expires_at,
        "created_at": now,
    }


def queue(session: Session, row: dict[str, Any], cursor: int) -> None:
    """Write the job in the current transaction; its payload's data carries the cursor."""
    payload = {**row["payload"], "data": {**row["payload"]["data"], "cursor": str(cursor)}}
    session.connection().execute(_QUEUE, {**row, "cursor": cursor, "payload": payload})
    wake_after_commit(session)


def wake_after_commit(session: Session) -> None:
    """Tell the workers (in-process, or separate ones over Redis) once the transaction that
    queued pushes commits."""
    for wake in _wakeups:
        after_commit(session, wake)
