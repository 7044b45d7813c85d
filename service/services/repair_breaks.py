"""Breaks in a repair conversation: pause when flooded, resume, and the end of a break."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import clock
from service.domain import repairs as rules
from service.domain.errors import Conflict
from service.models import Couple, Repair, User
from service.services import events, push_outbox
from service.services.repairs import end_break_early, present, visible, wire


def pause(session: Session, user: User, repair_id: uuid.UUID, minutes: int) -> dict[str, Any]:
    """A break while flooded; both phones are reminded when it ends. A new pause replaces one."""
    repair, couple = visible(session, user, repair_id, lock=True)
    if repair.status == "resolved":
        raise Conflict("This conversation is resolved: there is nothing to pause.")
    push_outbox.cancel(session, f"repair.reminder:{repair.id}:")
    repair.paused_until = rules.pause_ends(clock.now(), minutes)
    repair.paused_by = user.id
    repair.pause_count += 1
    # Message pushes not sent yet wait for the end of this break, the last one's replaced.
    push_outbox.hold(session, f"repair.message:{repair.id}:", repair.paused_until)
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
    """End the breaks whose time has come (worker job), so both phones learn it. How many."""
    query = (
        select(Repair)
        .where(Repair.paused_until.is_not(None), Repair.paused_until <= now)
        .order_by(Repair.paused_until)
        .limit(batch)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    due = list(session.scalars(query))
    for repair in due:
        repair.paused_until = repair.paused_by = None
        # Locked and read again: an unpair that committed since the pick ends it here.
        couple = session.get(Couple, repair.couple_id, with_for_update=True, populate_existing=True)
        if couple is None or couple.ended_at is not None:
            # After an unpair nobody is told about a conversation they can no longer open.
            push_outbox.cancel(session, f"repair.reminder:{repair.id}:")
            push_outbox.cancel(session, f"repair.message:{repair.id}:")
            continue
        events.record(session, couple, "repair.resumed", wire(present(repair)))
    session.commit()
    return len(due)
