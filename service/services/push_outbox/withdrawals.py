"""Withdrawing the pushes not sent yet that have nothing left to say."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.clock import clock
from service.models import PushJob
from service.services.push_outbox.keys import _seq_of, message_pushes_of

# A job in one of these states has not gone out for good: a withdrawal cancels it. A claimed
# one may be on its way to FCM (if FCM asks for a retry, the worker keeps it cancelled); a
# dead-lettered one could be sent again by an operator.
UNSENT = ("pending", "claimed", "dead")


def cancel(session: Session, dedupe_prefix: str) -> int:
    """Cancel the unsent jobs whose dedupe key starts so: the worker never (again) sends them,
    and no operator sends a dead-lettered one again."""
    result = session.execute(
        update(PushJob)
        .where(
            PushJob.state.in_(UNSENT),
            PushJob.dedupe_key.startswith(dedupe_prefix, autoescape=True),
        )
        .values(state="cancelled", finished_at=clock.now(), last_error="cancelled")
    )
    return int(getattr(result, "rowcount", 0) or 0)


def withdraw_read_messages(
    session: Session, repair_id: uuid.UUID, reader_id: uuid.UUID, read_up_to: int
) -> int:
    """The reader has read up to `read_up_to`: their message pushes not sent yet (held by a
    break or quiet hours, queued, out to FCM, or dead-lettered) have nothing left to say.
    Returns how many."""
    prefix = message_pushes_of(repair_id)
    waiting = session.execute(
        select(PushJob.id, PushJob.dedupe_key).where(
            PushJob.state.in_(UNSENT),
            PushJob.kind == "repair.message",
            PushJob.recipient_id == reader_id,
            PushJob.dedupe_key.startswith(prefix, autoescape=True),
        )
    ).all()
    read = [job_id for job_id, key in waiting if _seq_of(key) <= read_up_to]
    if not read:
        return 0
    result = session.execute(
        update(PushJob)
        .where(PushJob.id.in_(read), PushJob.state.in_(UNSENT))
        .values(state="cancelled", finished_at=clock.now(), last_error="read")
    )
    return int(getattr(result, "rowcount", 0) or 0)
