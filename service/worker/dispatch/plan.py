"""Planning a pass: a delivery for every active device of each job's recipient, and what goes."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from service.domain.quiet_hours import QuietHours
from service.push import PushMessage
from service.worker.dispatch.statements import _Statements


@dataclass
class _Planned:
    """One delivery going out in this pass."""

    delivery_id: int
    job_id: int
    attempts: int  # before this try
    message: PushMessage


@dataclass
class _Plan:
    jobs: list[Row[Any]]  # the claimed jobs that are not expired, in claim order
    # every delivery state of those jobs, by job; the planned ones are overwritten in _record
    states: dict[int, dict[int, str]]
    sends: list[_Planned]
    # the quiet hours (start, end, time zone) of the recipients of the non-urgent jobs with a
    # pending delivery, by job: a job is deferred by them, and a retry waits them out
    quiet: dict[int, tuple[str | None, str | None, str]] = field(default_factory=dict)
    # the non-urgent jobs whose recipient is in quiet hours now (the workers were away when they
    # came due, or the hours changed): none of their pushes go, and they wait until these end
    deferred: dict[int, datetime] = field(default_factory=dict)
    # the end of this pass's lease, as written in its claim: the jobs are its own only while
    # they are still claimed by its worker with this very lease
    until: datetime | None = None
    # the jobs with a device that another transaction held as the pass read it (a registration
    # or a deletion of that phone), whether it had no delivery yet or one still pending (a
    # retry): that push is not sent in this pass, and its job waits for a later one
    held: set[int] = field(default_factory=set)

    def waits(self, job_id: int) -> bool:
        """Whether some push of this job is still to go: a pending delivery, or a held device."""
        return job_id in self.held or "pending" in self.states[job_id].values()


def _plan(session: Session, sql: _Statements, jobs: list[Row[Any]], now: datetime) -> _Plan:
    """A delivery for every active device of each recipient; the still pending ones go."""
    plan = _Plan(jobs, {job.id: {} for job in jobs}, [])
    if not jobs:
        return plan
    ids = [job.id for job in jobs]
    session.execute(sql.add_missing, {"ids": ids, "now": now})
    by_job: dict[int, list[Any]] = {job_id: [] for job_id in ids}
    for row in session.execute(sql.deliveries, {"ids": ids}):
        if row.held:  # a device held elsewhere: left out, not waited for
            plan.held.add(row.job_id)
        if row.id is None:  # (one still without a delivery)
            continue
        plan.states[row.job_id][row.id] = row.state
        if not row.held:
            by_job[row.job_id].append(row)
    skipped: list[int] = []
    for job in jobs:
        common = _common(job.payload, job.expires_at)
        for row in by_job[job.id]:
            if row.state != "pending":
                continue
            if not row.active or row.user_id != job.recipient_id:
                # Disabled, or moved to someone else, since: this push is not for it. Its
                # delivery ends here, or the job would wait for it forever.
                skipped.append(row.id)
                plan.states[job.id][row.id] = "skipped"
                continue
            if not job.urgent:
                plan.quiet[job.id] = (row.quiet_start, row.quiet_end, row.timezone)
                reachable = _reachable(plan.quiet[job.id], now)
                if reachable > now:
                    plan.deferred[job.id] = reachable
                    continue
            message = PushMessage(
                key=f"{job.id}:{row.device_id}",
                device_id=row.device_id,
                platform=row.platform,
                token=row.push_token,
                **{**common, "body": _body(job.payload, row.notes_on_lock_screen)},
            )
            plan.sends.append(_Planned(row.id, job.id, row.attempts, message))
    if skipped:
        session.execute(sql.skip, {"ids": skipped, "now": now})
    return plan


def _reachable(quiet: tuple[str | None, str | None, str], now: datetime) -> datetime:
    """When a recipient with these quiet hours (start, end, time zone) can be reached."""
    hours = QuietHours.of(*quiet)
    return now if hours is None else hours.reachable_from(now)


def _body(payload: dict[str, Any], notes_on_lock_screen: bool) -> str | None:
    """The notification's text: a bid's note only while its recipient shows notes on the lock
    screen, decided as it is sent (they may have stopped since the bid was queued)."""
    note = payload.get("note")
    if note and notes_on_lock_screen:
        return str(note)
    body = payload.get("body")
    return None if body is None else str(body)


def _common(payload: dict[str, Any], expires_at: datetime | None) -> dict[str, Any]:
    """The parts of a job's message that are the same for every device. One that expires
    (a bid's) lives what is left of it when it is sent; the others a day."""
    extra = {key: payload[key] for key in ("thread_id", "channel_id") if payload.get(key)}
    return {
        "data": {k: str(v) for k, v in payload["data"].items()},
        "collapse_key": payload["collapse_key"],
        "title": payload.get("title"),
        "body": payload.get("body"),
        "priority": payload.get("priority", "high"),
        "ttl_seconds": 86400,
        "expires_at": expires_at,
        "category": payload.get("category"),
        "extra": extra,
    }
