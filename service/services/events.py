"""The couple's event stream: written with each change, published after commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from schemas.base import iso
from service.clock import clock
from service.db import after_commit
from service.domain.errors import NotFound
from service.models import Couple, CoupleEvent
from service.models.base import table

log = logging.getLogger("reach.events")


class Publisher(Protocol):
    """Tells connected phones about a change (realtime adapter)."""

    def couple_event(self, user_ids: Sequence[uuid.UUID], envelope: dict[str, Any]) -> None: ...

    def user_event(self, user_id: uuid.UUID, name: str, payload: dict[str, Any]) -> None: ...


class _NoPublisher:
    def couple_event(self, user_ids: Sequence[uuid.UUID], envelope: dict[str, Any]) -> None:
        return None

    def user_event(self, user_id: uuid.UUID, name: str, payload: dict[str, Any]) -> None:
        return None


_publisher: Publisher = _NoPublisher()


def set_publisher(publisher: Publisher) -> None:
    global _publisher
    _publisher = publisher


def publisher() -> Publisher:
    return _publisher


def envelope(event: CoupleEvent, couple_id: str) -> dict[str, Any]:
    """The event as sync serves it and the sockets carry it; `couple_id` names its stream."""
    return {
        "cursor": event.cursor,
        "couple_id": couple_id,
        "type": event.type,
        "at": iso(event.at),
        "data": event.data,
    }


class Stream(Protocol):
    """The couple an event belongs to: a `Couple` row or a live member's couple."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def partner_ids(self) -> tuple[uuid.UUID | None, uuid.UUID | None]: ...


_couples = table(Couple)
_events = table(CoupleEvent)
_NEXT_CURSOR = (
    update(_couples)
    .where(_couples.c.id == bindparam("couple_id"), _couples.c.ended_at.is_(None))
    .values(last_cursor=_couples.c.last_cursor + 1)
    .returning(_couples.c.last_cursor)
)
_APPEND = insert(_events)


def next_cursor(session: Session, couple_id: uuid.UUID) -> int:
    """Take the couple's next cursor; the row lock makes concurrent writers queue up.

    An ended couple hands out none: a write that waited on the unpair's lock finds the couple
    ended once it gets it, and fails with 404 (its transaction rolls back), whatever it checked
    before. The unpair's own `couple.ended` is numbered before `ended_at` is set.
    """
    result = session.connection().execute(_NEXT_CURSOR, {"couple_id": couple_id}).scalar()
    if result is None:
        raise NotFound("You are not paired.")
    return int(result)


def record(
    session: Session,
    couple: Stream,
    type_: str,
    data: dict[str, Any],
    *,
    audience: Sequence[uuid.UUID] | None = None,
    at: datetime | None = None,
) -> int:
    """Append an event to the couple's stream in the current transaction; returns its cursor.

    After the transaction commits, the envelope goes to the partners' sockets.
    """
    # Rows the caller added (a new couple, a message) go first: the statements below are Core.
    session.flush()
    cursor = next_cursor(session, couple.id)
    moment = at or clock.now()
    append(session, couple.id, cursor, {"type": type_, "at": moment, "data": data})
    announce(session, couple, cursor, type_, moment, data, audience=audience)
    return cursor


def append(session: Session, couple_id: uuid.UUID, cursor: int, event: dict[str, Any]) -> None:
    """Write the event row (`type`, `at`, `data`) under a cursor taken with `next_cursor`."""
    session.connection().execute(_APPEND, {**event, "couple_id": couple_id, "cursor": cursor})


def announce(
    session: Session,
    couple: Stream,
    cursor: int,
    type_: str,
    at: datetime,
    data: dict[str, Any],
    *,
    audience: Sequence[uuid.UUID] | None = None,
) -> None:
    """Once the transaction that appended the event commits, send it to the partners' sockets."""
    recipients = (
        list(audience)
        if audience is not None
        else [uid for uid in couple.partner_ids if uid is not None]
    )
    body = {
        "cursor": cursor,
        "couple_id": str(couple.id),
        "type": type_,
        "at": iso(at),
        "data": data,
    }
    after_commit(session, _publish(recipients, body))


def _publish(user_ids: list[uuid.UUID], body: dict[str, Any]) -> Callable[[], None]:
    def send() -> None:
        try:
            _publisher.couple_event(user_ids, body)
        except Exception:
            # The stream is the truth; a phone that missed this catches up through sync.
            log.exception("publishing event failed", extra={"event_type": body["type"]})

    return send


def notify_user(session: Session, user_id: uuid.UUID, name: str, payload: dict[str, Any]) -> None:
    """Tell one user's phones something outside the couple stream, after commit."""

    def send() -> None:
        try:
            _publisher.user_event(user_id, name, payload)
        except Exception:
            log.exception("publishing user event failed", extra={"event_type": name})

    after_commit(session, send)


def page(
    session: Session, couple_id: uuid.UUID, since: int, limit: int
) -> tuple[list[CoupleEvent], bool]:
    rows = list(
        session.scalars(
            select(CoupleEvent)
            .where(CoupleEvent.couple_id == couple_id, CoupleEvent.cursor > since)
            .order_by(CoupleEvent.cursor)
            .limit(limit + 1)
        )
    )
    return rows[:limit], len(rows) > limit


def head(session: Session, couple_id: uuid.UUID) -> int:
    """The couple's last cursor (0 before its first event)."""
    return int(session.scalar(select(Couple.last_cursor).where(Couple.id == couple_id)) or 0)
