"""The couple's event stream: written with each change, published after commit."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from schemas.base import iso
from service.clock import clock
from service.db import after_commit
from service.models import Couple, CoupleEvent

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


def envelope(event: CoupleEvent) -> dict[str, Any]:
    return {
        "cursor": event.cursor,
        "type": event.type,
        "at": iso(event.at),
        "data": event.data,
    }


def next_cursor(session: Session, couple_id: uuid.UUID) -> int:
    """Take the couple's next cursor; the row lock makes concurrent writers queue up."""
    result = session.execute(
        update(Couple)
        .where(Couple.id == couple_id)
        .values(last_cursor=Couple.last_cursor + 1)
        .returning(Couple.last_cursor)
    ).scalar_one()
    return int(result)


def record(
    session: Session,
    couple: Couple,
    type_: str,
    data: dict[str, Any],
    *,
    audience: Sequence[uuid.UUID] | None = None,
) -> CoupleEvent:
    """Append an event to the couple's stream in the current transaction.

    After the transaction commits, the envelope goes to the partners' sockets.
    """
    cursor = next_cursor(session, couple.id)
    event = CoupleEvent(couple_id=couple.id, cursor=cursor, type=type_, at=clock.now(), data=data)
    session.add(event)
    recipients = (
        list(audience)
        if audience is not None
        else [uid for uid in couple.partner_ids if uid is not None]
    )
    body = envelope(event)
    after_commit(session, _publish(recipients, body))
    return event


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
