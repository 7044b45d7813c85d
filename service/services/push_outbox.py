"""Push work written in the same transaction as the change it announces (the outbox)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from service.clock import clock
from service.db import after_commit
from service.domain.quiet_hours import QuietHours
from service.models import Bid, PushJob, User

BID_BODIES = {
    "comfort": "They're having a hard time and would like you close.",
    "connect": "They're thinking of you.",
    "share": "They have something to tell you.",
    "help": "They could use a hand.",
}


_wakeups: list[Callable[[], None]] = []


def on_enqueued(wake: Callable[[], None]) -> None:
    """Call `wake` after a transaction that queued pushes commits (the in-process worker)."""
    _wakeups.append(wake)


def enqueue(
    session: Session,
    *,
    kind: str,
    dedupe_key: str,
    recipient: User,
    couple_id: Any,
    cursor: int | None,
    payload: dict[str, Any],
    urgent: bool,
    expires_at: datetime | None,
    not_before: datetime | None = None,
) -> PushJob:
    """Queue one push for `recipient`; non-urgent ones wait out the recipient's quiet hours."""
    now = clock.now()
    available = max(now, not_before) if not_before else now
    if not urgent:
        quiet = QuietHours.of(recipient.quiet_start, recipient.quiet_end, recipient.timezone)
        if quiet is not None:
            available = quiet.reachable_from(available)
    job = PushJob(
        kind=kind,
        dedupe_key=dedupe_key,
        couple_id=couple_id,
        recipient_id=recipient.id,
        cursor=cursor,
        payload=payload,
        urgent=urgent,
        state="pending",
        available_at=available,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(job)
    for wake in _wakeups:
        after_commit(session, wake)
    return job


def bid_created(
    session: Session,
    bid: Bid,
    sender: User,
    recipient: User,
    cursor: int,
) -> PushJob:
    """The partner's phone shows "<name> is reaching for you"; the note only if they opted in."""
    body = bid.note if (recipient.notes_on_lock_screen and bid.note) else BID_BODIES[bid.kind]
    payload = {
        "title": f"{sender.display_name} is reaching for you",
        "body": body,
        "data": {"type": "bid.created", "bid_id": str(bid.id), "cursor": str(cursor)},
        "collapse_key": f"bid:{bid.id}",
        "priority": "high",
        "category": "BID",
        "thread_id": f"couple:{bid.couple_id}",
    }
    return enqueue(
        session,
        kind="bid.created",
        dedupe_key=f"bid.created:{bid.id}",
        recipient=recipient,
        couple_id=bid.couple_id,
        cursor=cursor,
        payload=payload,
        urgent=False,
        expires_at=bid.expires_at,
    )
