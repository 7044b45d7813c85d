"""When held pushes may go: at a break's end, after quiet hours, as those hours change."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.clock import clock
from service.domain.quiet_hours import QuietHours
from service.models import PushAttempt, PushDelivery, PushJob, Repair, User
from service.services.push_outbox.jobs import wake_after_commit
from service.services.push_outbox.keys import _break_of, _repair_of


def release(session: Session, dedupe_prefix: str, held_until: datetime | None = None) -> int:
    """Let held jobs go now; non-urgent ones still wait out quiet hours. `held_until`: the end
    of the break that held them, from which a job FCM asked to try again (held with the rest,
    `hold`) goes now too; one due before it waits out only its own backoff, as before."""
    released = _retime(session, dedupe_prefix, clock.now(), held_only=True, held_until=held_until)
    if released:
        wake_after_commit(session)
    return released


def hold(session: Session, dedupe_prefix: str, until: datetime) -> int:
    """Hold the jobs not sent yet until `until` (a break's end, a new break's included), then
    non-urgent ones still wait out quiet hours; one FCM asked to try again later than that
    keeps its own time. Returns how many."""
    return _retime(session, dedupe_prefix, until, held_only=False)


def _retime(
    session: Session,
    dedupe_prefix: str,
    moment: datetime,
    *,
    held_only: bool,
    held_until: datetime | None = None,
) -> int:
    now = clock.now()
    moment = max(now, moment)
    conditions = [
        PushJob.state == "pending",
        PushJob.dedupe_key.startswith(dedupe_prefix, autoescape=True),
    ]
    if held_only:
        conditions.append(PushJob.available_at > now)
    retimed = 0
    for job in session.scalars(select(PushJob).where(*conditions)):
        due = due_from(session, job, moment)
        if job.attempts == 0:
            job.available_at = due
        elif not held_only:
            # Tried already: due again after its backoff (FCM's Retry-After), or the break.
            job.available_at = max(job.available_at, due)
        elif held_until is not None and job.available_at >= held_until:
            job.available_at = due
        else:
            continue
        retimed += 1
    return retimed


def follow_quiet_hours(session: Session, recipient_id: uuid.UUID) -> int:
    """The recipient changed their quiet hours or time zone: their pushes held are due from
    now (or the end of the break they wait for) as the new hours say, not at night in a zone
    they left, nor after hours they no longer keep. One FCM asked to try again is due from
    when it asked, no sooner (`_asked_for`). Returns how many."""
    now = clock.now()
    held = session.scalars(
        select(PushJob).where(
            PushJob.recipient_id == recipient_id,
            PushJob.state == "pending",
            PushJob.urgent.is_(False),
            PushJob.available_at > now,
        )
    )
    retimed = 0
    for job in held:
        start = max(now, break_end(session, job) or now)
        if job.attempts:
            start = max(start, _asked_for(session, job))
        job.available_at = due_from(session, job, start)
        retimed += 1
    if retimed:
        wake_after_commit(session)
    return retimed


def _asked_for(session: Session, job: PushJob) -> datetime:
    """When a job FCM asked to try again was due again, whatever quiet hours held it: its
    last try's end and the Retry-After FCM gave then (the longest of that pass's pushes; the
    worker's own backoff of seconds to minutes is not kept), at most the time it has now."""
    tried = (
        select(PushAttempt.finished_at, PushAttempt.retry_after)
        .join(PushDelivery, PushDelivery.id == PushAttempt.delivery_id)
        .where(PushDelivery.job_id == job.id)
    )
    last = tried.with_only_columns(func.max(PushAttempt.finished_at)).scalar_subquery()
    rows = session.execute(tried.where(PushAttempt.finished_at == last)).all()
    if not rows:
        return job.available_at
    finished: datetime = rows[0].finished_at
    wait = max(row.retry_after or 0.0 for row in rows)
    # Its time now is at least the one asked for: an absurd Retry-After is cut to it.
    most = max(0.0, (job.available_at - finished).total_seconds())
    return finished + timedelta(seconds=min(wait, most))


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
