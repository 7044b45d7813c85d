"""Codes mailed to prove an address is the member's (a forgotten password, a new email): one
row per account, its HMAC, a few attempts, an expiry, and a retry window once it was used."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.clock import clock
from service.models import EmailChange, PasswordReset

# The tables of such codes: the same columns (user_id, code_hash, expires_at, attempts, used_at).
CodeTable = type[PasswordReset] | type[EmailChange]


@dataclass(frozen=True)
class Tried:
    """The code a try matched: its hash, and when it was used (None: not yet)."""

    code_hash: str
    used_at: datetime | None


def take_attempt(
    session: Session,
    table: CodeTable,
    user_id: uuid.UUID,
    tried_hash: str,
    *,
    most_attempts: int,
    retry_window: timedelta,
) -> Tried | None:
    """Take one attempt of the account's code, if it has one left and has not expired, and
    compare: None unless the code tried is it (and, once used, within `retry_window` of it).
    One statement, so however many tries are sent at once no more than `most_attempts` are
    ever checked."""
    now = clock.now()
    taken = session.execute(
        update(table)
        .where(
            table.user_id == user_id,
            table.attempts < most_attempts,
            table.expires_at > now,
        )
        .values(attempts=table.attempts + 1)
        .returning(table.code_hash, table.used_at)
    ).first()
    if taken is None or not hmac.compare_digest(taken.code_hash, tried_hash):
        return None
    if taken.used_at is not None and now >= taken.used_at + retry_window:
        return None
    return Tried(taken.code_hash, taken.used_at)


def prune_expired(session: Session, table: CodeTable, now: datetime, *, batch: int) -> bool:
    """Delete up to `batch` codes expired by `now` (refused anyway, a retry's included),
    passing over any another transaction holds; whether more may be left."""
    expired = select(table.user_id).where(table.expires_at <= now)
    held = expired.limit(batch).with_for_update(skip_locked=True)
    gone = list(session.scalars(held))
    if gone:
        session.execute(delete(table).where(table.user_id.in_(gone)))
    session.commit()
    return len(gone) == batch
