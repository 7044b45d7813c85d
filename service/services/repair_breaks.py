"""Breaks in a repair conversation: pause when flooded, resume, and the end of a break."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import clock
from service.db import Busy, lock_unless_busy
from service.domain import repairs as rules
from service.domain.errors import Conflict
from service.models import Couple, Repair, User
from service.services import events, push_outbox
from service.services.repairs import end_break_early, present, visible, wire


def pause(session: Session, user: User, repair_id: uuid.UUID, minutes: int) -> dict[str, Any]:
    """A break while flooded; both phones are reminded when it ends. A new pause replaces a
    break still running, and its reminders; a break whose time has come ended on time (the
    worker may not have ended it yet), and its reminders are owed and still go, as on `resume`.
    """
    repair, couple = visible(session, user, repair_id, lock=True)
    if repair.status == "resolved":
        raise Conflict("This conversation is resolved: there is nothing to pause.")
    now = clock.now()
    if rules.is_paused(repair.paused_until, now):
        push_outbox.cancel(session, push_outbox.reminders_of_break(repair.id, repair.pause_count))
    repair.paused_until = rules.pause_ends(now, minutes)
    repair.paused_by = user.id
    repair.pause_count += 1
    # Message pushes not sent yet wait for the end of this break, the last one's replaced.
    push_outbox.hold(session, push_outbox.message_pushes_of(repair.id), repair.paused_until)
    view = present(repair)
    cursor = events.record(session, couple, "repair.paused", wire(view))
    partner = session.get(User, couple.partner_of(user.id))
    if partner is not None:
        push_outbox.repair_reminders(session, repair, user, partner, cursor)
    session.commit()
    return view


def resume(session: Session, user: User, repair_id: uuid.UUID) -> dict[str, Any]:
    """End a break early: its reminders are cancelled, held message pushes go now.

    A break whose time has come, which the worker has not ended yet, ended on time: its
    reminders are due, and go as promised."""
    repair, couple = visible(session, user, repair_id, lock=True)
    if repair.paused_until is None:
        session.rollback()
        return present(repair)
    if repair.paused_until <= clock.now():
        repair.paused_until = repair.paused_by = None
    else:
        end_break_early(session, repair)
    view = present(repair)
    events.record(session, couple, "repair.resumed", wire(view))
    session.commit()
    return view


def resume_due(session: Session, now: datetime, batch: int = 200) -> int:
    """End the breaks whose time has come (worker job), so both phones learn it. How many.

    Each break in a transaction of its own that locks the conversation, then its couple: the
    order every repair write takes them. One transaction for the batch held the couples of the
    breaks before while it waited for the next one's, and another worker's pass (or an account's
    deletion, which locks each couple it was in) taking two of them in the other order deadlocked
    with it.

    On PostgreSQL a break whose conversation or couple another transaction holds is not
    picked (each row locked as it is read, until the pick commits): it would be left for a
    later pass, and a batch of them picked first, pass after pass, kept every other break from
    ending.
    """
    due = list(
        session.scalars(
            select(Repair.id)
            .join(Couple, Couple.id == Repair.couple_id)
            .where(Repair.paused_until.is_not(None), Repair.paused_until <= now)
            .order_by(Repair.paused_until)
            .limit(batch)
            .with_for_update(of=(Repair, Couple), skip_locked=True)
        )
    )
    session.commit()
    resumed = 0
    for repair_id in due:
        query = (
            select(Repair)
            .where(Repair.id == repair_id, Repair.paused_until <= now)
            .execution_options(populate_existing=True)
        )
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        repair = session.scalar(query)
        if repair is None:  # resumed meanwhile, or another worker is ending it
            session.rollback()
            continue
        # Locked and read again: an unpair that committed since the pick ends it here. A couple
        # another transaction holds is left for a later pass, as a held conversation is.
        try:
            couple = lock_unless_busy(session, Couple, repair.couple_id)
        except Busy:
            session.rollback()
            continue
        repair.paused_until = repair.paused_by = None
        resumed += 1
        if couple is None or couple.ended_at is not None:
            # After an unpair nobody is told about a conversation they can no longer open.
            push_outbox.cancel(session, push_outbox.reminders_of(repair.id))
            push_outbox.cancel(session, push_outbox.message_pushes_of(repair.id))
        else:
            events.record(session, couple, "repair.resumed", wire(present(repair)))
        session.commit()
    return resumed
