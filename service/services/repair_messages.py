"""Messages of a repair conversation: a gapless `seq` per conversation, written offline-first."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from schemas.repairs import RepairMessageSchema
from service.clock import clock
from service.domain import repairs as rules
from service.domain.errors import Conflict
from service.models import Repair, RepairMessage, User
from service.services import events, push_outbox
from service.services.repairs import Written, visible

_message_schema = RepairMessageSchema()


def present(message: RepairMessage) -> dict[str, Any]:
    """The message, ready for `RepairMessageSchema` (REST dumps it itself)."""
    return {name: getattr(message, name) for name in _message_schema.fields}


def wire(view: dict[str, Any]) -> dict[str, Any]:
    """The message as the wire shows it (event data, socket acks)."""
    dumped: dict[str, Any] = _message_schema.dump(view)
    return dumped


def next_seq(session: Session, repair: Repair) -> int:
    """Take the conversation's next seq in this transaction (gapless: a rollback returns it)."""
    seq = int(
        session.execute(
            update(Repair)
            .where(Repair.id == repair.id)
            .values(last_seq=Repair.last_seq + 1)
            .returning(Repair.last_seq)
            .execution_options(synchronize_session=False)
        ).scalar_one()
    )
    set_committed_value(repair, "last_seq", seq)
    return seq


def write(
    session: Session,
    author: User,
    repair_id: uuid.UUID,
    *,
    client_id: uuid.UUID,
    body: str,
    step: str | None,
    emotions: list[str],
    written_at: datetime | None,
) -> Written:
    """Add a message; a retry with the same `client_id` returns the original and adds nothing."""
    repair, couple = visible(session, author, repair_id, lock=True)
    # Looked up under the repair's lock: a racing retry that won is visible by now.
    words = _Words(body, step, frozenset(emotions))
    existing = _by_client_id(session, author.id, client_id)
    if existing is not None:
        return _replay(session, existing, repair, words)
    if repair.status == "resolved":
        raise Conflict("This conversation is resolved: start a new one to talk again.")
    now = clock.now()
    message = RepairMessage(
        repair_id=repair.id,
        seq=next_seq(session, repair),
        author_id=author.id,
        client_id=client_id,
        body=body,
        step=step,
        emotions=list(emotions),
        written_at=rules.believable_written_at(written_at, now),
        created_at=now,
    )
    session.add(message)
    try:
        session.flush()
    except IntegrityError:
        # The same client_id arrived for another conversation at the same moment.
        session.rollback()
        existing = _by_client_id(session, author.id, client_id)
        if existing is None:
            raise
        return _replay(session, existing, repair, words)
    view = present(message)
    cursor = events.record(session, couple, "repair.message", wire(view))
    partner = session.get(User, couple.partner_of(author.id))
    if partner is not None:
        push_outbox.repair_message(session, repair, message, author, partner, cursor)
    session.commit()
    return Written(view, created=True)


def list_for(
    session: Session, user: User, repair_id: uuid.UUID, *, after_seq: int, limit: int
) -> dict[str, Any]:
    """Messages after `after_seq`, in seq order; `next` is the last seq when more follow."""
    repair, _ = visible(session, user, repair_id)
    rows = list(
        session.scalars(
            select(RepairMessage)
            .where(RepairMessage.repair_id == repair.id, RepairMessage.seq > after_seq)
            .order_by(RepairMessage.seq)
            .limit(limit + 1)
        )
    )
    items = rows[:limit]
    return {
        "items": [present(message) for message in items],
        "next": items[-1].seq if len(rows) > limit else None,
    }


def _by_client_id(
    session: Session, author_id: uuid.UUID, client_id: uuid.UUID
) -> RepairMessage | None:
    return session.scalar(
        select(RepairMessage).where(
            RepairMessage.author_id == author_id, RepairMessage.client_id == client_id
        )
    )


@dataclass(frozen=True, slots=True)
class _Words:
    """What a message says: a retry says the same (its `written_at` is for display only)."""

    body: str
    step: str | None
    emotions: frozenset[str]


def _replay(session: Session, existing: RepairMessage, repair: Repair, words: _Words) -> Written:
    """The stored message again, for a retry of it. Other words under its client_id are
    another message, refused rather than answered with the first one (the phone would take
    them as sent, and they would reach nobody)."""
    said = _Words(existing.body, existing.step, frozenset(existing.emotions or ()))
    if existing.repair_id != repair.id or said != words:
        session.rollback()
        raise Conflict("This client_id was used for another message: generate a new one.")
    view = present(existing)
    session.rollback()
    return Written(view, created=False)
