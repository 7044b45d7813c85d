"""Push work written in the same transaction as the change it announces (the outbox)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from service.clock import clock
from service.db import after_commit
from service.domain.quiet_hours import QuietHours
from service.models import PushJob, Repair, RepairMessage, User
from service.models.base import table

BID_BODIES = {
    "comfort": "They're having a hard time and would like you close.",
    "connect": "They're thinking of you.",
    "share": "They have something to tell you.",
    "help": "They could use a hand.",
}


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


# Dedupe keys: what a job is about, made here only. A bid's push; a conversation's message
# pushes, one per `seq`; its break reminders, one per break and person. The `*_of` prefixes
# name every job of one bid or conversation (`reminders_of_break`: of one break), for `cancel`,
# `hold` and `release`.
def bid_push_of(bid_id: Any) -> str:
    return f"bid.created:{bid_id}"


def message_pushes_of(repair_id: Any) -> str:
    return f"repair.message:{repair_id}:"


def reminders_of(repair_id: Any) -> str:
    return f"repair.reminder:{repair_id}:"


def reminders_of_break(repair_id: Any, pause_count: int) -> str:
    """The reminders of one break: the conversation's `pause_count` when it was taken."""
    return f"{reminders_of(repair_id)}{pause_count}:"


def _repair_of(dedupe_key: str) -> uuid.UUID:
    """The conversation of a repair push's key (`message_pushes_of` or `reminders_of`, + ...)."""
    return uuid.UUID(dedupe_key.split(":")[1])


def _break_of(dedupe_key: str) -> int:
    """The break (the conversation's `pause_count` then) of a reminder's key (`reminders_of` +
    pause_count:person)."""
    return int(dedupe_key.split(":")[2])


def _seq_of(dedupe_key: str) -> int:
    """The `seq` of a message push's key (`message_pushes_of` + seq)."""
    return int(dedupe_key.rsplit(":", 1)[1])


def bid_created(
    bid: Mapping[str, Any], sender_name: str, recipient: Recipient, show_note: bool
) -> dict[str, Any]:
    """The partner's phone shows "<name> is reaching for you"; the note only if they opted in.

    The note is kept apart from the body, and only for a partner who shows notes now: the
    worker sends it as the body only if they still do when it sends (`dispatch.plan._body`)."""
    payload: dict[str, Any] = {
        "title": f"{sender_name} is reaching for you",
        "body": BID_BODIES[bid["kind"]],
        "data": {"type": "bid.created", "bid_id": str(bid["id"])},
        "collapse_key": f"bid:{bid['id']}",
        "priority": "high",
        "category": "BID",
        "thread_id": f"couple:{bid['couple_id']}",
    }
    if show_note and bid["note"]:
        payload["note"] = bid["note"]
    return job(
        kind="bid.created",
        dedupe_key=bid_push_of(bid["id"]),
        recipient=recipient,
        couple_id=bid["couple_id"],
        payload=payload,
        urgent=False,
        expires_at=bid["expires_at"],
    )


def _repair_payload(repair: Repair, title: str, body: str, data: dict[str, str]) -> dict[str, Any]:
    return {
        "title": title,
        "body": body,
        "data": {**data, "repair_id": str(repair.id)},
        "collapse_key": f"repair:{repair.id}",
        "priority": "normal",
        "category": "REPAIR",
        "thread_id": f"repair:{repair.id}",
        # Their own Android channel, so people can quiet repair pushes apart from bids.
        "channel_id": "repairs",
    }


def repair_message(
    session: Session,
    repair: Repair,
    message: RepairMessage,
    author: User,
    recipient: User,
    cursor: int,
) -> None:
    """The partner sees that a message came, never its words; held while on a break."""
    data = {"type": "repair.message", "seq": str(message.seq)}
    title = f"{author.display_name} wrote in your repair conversation"
    paused = repair.paused_until
    row = job(
        kind="repair.message",
        dedupe_key=f"{message_pushes_of(repair.id)}{message.seq}",
        recipient=recipient,
        couple_id=repair.couple_id,
        payload=_repair_payload(repair, title, "Open Reach to read it.", data),
        urgent=False,
        expires_at=None,
        not_before=paused if paused and paused > clock.now() else None,
    )
    queue(session, row, cursor)


def repair_reminders(
    session: Session, repair: Repair, pauser: User, partner: User, cursor: int
) -> None:
    """Both phones are reminded when the break ends.

    Not urgent: the worker marks the break over at the promised time (`repair.resumed`), but a
    break that ends in someone's quiet hours reminds them when those hours end, not at night.
    """
    assert repair.paused_until is not None
    texts = {
        pauser.id: ("Your break is over", "Come back to your repair conversation when ready."),
        partner.id: (
            f"{pauser.display_name}'s break is over",
            "You can come back to your repair conversation together.",
        ),
    }
    data = {"type": "repair.reminder"}
    for person in (pauser, partner):
        row = job(
            kind="repair.reminder",
            dedupe_key=f"{reminders_of(repair.id)}{repair.pause_count}:{person.id}",
            recipient=person,
            couple_id=repair.couple_id,
            payload=_repair_payload(repair, *texts[person.id], data),
            urgent=False,
            expires_at=None,
            not_before=repair.paused_until,
        )
        queue(session, row, cursor)


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


# A job in one of these states is over: nothing will send it again.
FINISHED = ("done", "cancelled", "expired", "dead")
_JOBS = table(PushJob)


@dataclass(frozen=True)
class Pruned:
    """What one call of `prune_finished` did: jobs deleted, and whether it stopped short."""

    deleted: int
    more: bool


def prune_finished(
    session: Session, before: datetime, *, batch: int = 1000, most_batches: int = 20
) -> Pruned:
    """Delete the jobs that finished before `before`, with their deliveries and attempts (the
    foreign keys cascade). Walks the jobs oldest first by primary key, a batch per transaction,
    and stops at the first batch that reaches jobs created since `before` (done), or after
    `most_batches` (`more`: call again to go on). Pending and claimed jobs are never deleted."""
    deleted, after = 0, 0
    for _ in range(most_batches):
        rows = session.execute(
            select(_JOBS.c.id, _JOBS.c.state, _JOBS.c.finished_at, _JOBS.c.created_at)
            .where(_JOBS.c.id > after)
            .order_by(_JOBS.c.id)
            .limit(batch)
        ).all()
        if not rows:
            return Pruned(deleted, more=False)
        over = [
            row.id
            for row in rows
            if row.state in FINISHED and row.finished_at is not None and row.finished_at < before
        ]
        if over:
            result = session.execute(
                delete(_JOBS).where(_JOBS.c.id.in_(over), _JOBS.c.state.in_(FINISHED))
            )
            deleted += int(getattr(result, "rowcount", 0) or 0)
        session.commit()
        after = rows[-1].id
        if rows[-1].created_at >= before:
            return Pruned(deleted, more=False)
    return Pruned(deleted, more=True)


def release(session: Session, dedupe_prefix: str) -> int:
    """Let held jobs (never tried yet) go now; non-urgent ones still wait out quiet hours."""
    released = _retime(session, dedupe_prefix, clock.now(), held_only=True)
    if released:
        wake_after_commit(session)
    return released


def hold(session: Session, dedupe_prefix: str, until: datetime) -> int:
    """Hold the jobs not tried yet until `until` (a break's end, a new break's included), then
    non-urgent ones still wait out quiet hours. Returns how many."""
    return _retime(session, dedupe_prefix, until, held_only=False)


def _retime(session: Session, dedupe_prefix: str, moment: datetime, *, held_only: bool) -> int:
    now = clock.now()
    moment = max(now, moment)
    conditions = [
        PushJob.state == "pending",
        PushJob.attempts == 0,
        PushJob.dedupe_key.startswith(dedupe_prefix, autoescape=True),
    ]
    if held_only:
        conditions.append(PushJob.available_at > now)
    retimed = 0
    for job in session.scalars(select(PushJob).where(*conditions)):
        job.available_at = due_from(session, job, moment)
        retimed += 1
    return retimed


def follow_quiet_hours(session: Session, recipient_id: uuid.UUID) -> int:
    """The recipient changed their quiet hours or time zone: their pushes held and never tried
    yet are due from now (or the end of the break they wait for) as the new hours say, not at
    night in a zone they left, nor after hours they no longer keep. Returns how many."""
    now = clock.now()
    held = session.scalars(
        select(PushJob).where(
            PushJob.recipient_id == recipient_id,
            PushJob.state == "pending",
            PushJob.attempts == 0,
            PushJob.urgent.is_(False),
            PushJob.available_at > now,
        )
    )
    retimed = 0
    for job in held:
        job.available_at = due_from(session, job, max(now, break_end(session, job) or now))
        retimed += 1
    if retimed:
        wake_after_commit(session)
    return retimed


def break_end(session: Session, job: PushJob) -> datetime | None:
    """When the break that a repair push (a message's, or a break's reminder) waits for ends:
    its conversation's `paused_until`, or None (no break, or not a repair push). A reminder
    waits only for its own break: one of a break that has ended, which a new break followed,
    waits for nothing more."""
    if job.kind not in ("repair.message", "repair.reminder"):
        return None
    repair_id = _repair_of(job.dedupe_key)
    row = session.execute(
        select(Repair.paused_until, Repair.pause_count).where(Repair.id == repair_id)
    ).first()
    if row is None:
        return None
    if job.kind == "repair.reminder" and _break_of(job.dedupe_key) != row.pause_count:
        return None
    paused_until: datetime | None = row.paused_until
    return paused_until


def due_from(session: Session, job: PushJob, moment: datetime) -> datetime:
    """When `job` may go out, from `moment` on: a non-urgent one waits out its recipient's
    quiet hours (as they are now)."""
    recipient = session.get(User, job.recipient_id)
    if recipient is None or job.urgent:
        return moment
    quiet = QuietHours.of(recipient.quiet_start, recipient.quiet_end, recipient.timezone)
    return quiet.reachable_from(moment) if quiet else moment
