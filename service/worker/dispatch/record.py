"""Writing a pass's results, tried again while the database is away and the lease lasts."""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from service.errors import database_said, is_unavailable
from service.worker.dispatch.plan import _Plan
from service.worker.dispatch.policy import HELD_DEVICE_SECONDS
from service.worker.dispatch.results import GAVE_UP, _Recorded
from service.worker.dispatch.statements import _Statements

log = logging.getLogger("reach.push")

# While the database is away after a pass's pushes went out: the first wait before writing
# their results again, doubled after each failure up to the second.
RECORD_PAUSE_SECONDS = 0.2
RECORD_PAUSE_MAX_SECONDS = 2.0


def _record(
    session: Session,
    sql: _Statements,
    worker: str,
    plan: _Plan,
    recorded: _Recorded,
    lease_ends: float,
) -> None:
    """Write what became of the pushes sent, and commit. They have left: if the database
    drops the connection meanwhile (a restart), the write is tried again on a new one while
    the lease lasts. Given up, the lease would run out and the pushes go out a second time."""
    pause = RECORD_PAUSE_SECONDS
    while True:
        try:
            _write(session, sql, worker, plan, recorded)
            session.commit()
            return
        except Exception as exc:
            if not is_unavailable(exc) or time.monotonic() + pause >= lease_ends:
                raise
            log.warning(
                "recording pushes sent failed: database unavailable; trying again",
                extra={"worker": worker, "error": database_said(exc)},
            )
            session.rollback()
        time.sleep(pause)
        pause = min(2 * pause, RECORD_PAUSE_MAX_SECONDS)


def _write(
    session: Session, sql: _Statements, worker: str, plan: _Plan, recorded: _Recorded
) -> None:
    # The jobs, then the devices, then their deliveries: the order deleting an account (its
    # couple's jobs, then its devices, whose deliveries go with them) or a device takes
    # them. Any other order deadlocks with a deletion under way.
    #
    # Only what this pass still holds is recorded: a pass held up past its lease (by a lock,
    # a database away) must not write over the results of the worker that took its jobs
    # over. Its jobs are locked first, those still claimed with its lease, so none can be
    # taken over before this commits; the rest belong to someone else now.
    #
    # A job another transaction holds (a request withdrawing it, or one left open) is not
    # waited for: waited for, the statement timeout failed the write, again until the lease
    # ran out, and the pushes sent went out again after it. Still claimed with this lease
    # (read without a lock: only then, one statement more), its deliveries' results are
    # written now, so none of them goes twice; the job itself stays claimed, and the first
    # pass after its lease finishes it.
    now = recorded.now
    lease = {"worker": worker, "until": plan.until}
    held: set[int] = set()
    ours: set[int] = set()
    if plan.jobs:
        ids = [job.id for job in plan.jobs]
        held = ours = set(session.scalars(sql.holding, {"ids": ids, **lease}))
        rest = [job_id for job_id in ids if job_id not in held]
        if rest:
            busy = set(session.scalars(sql.ours, {"ids": rest, **lease}))
            ours = held | busy
            if busy:
                log.warning(
                    "push jobs held by another transaction: their pushes' results are "
                    "recorded, the jobs finish after their lease",
                    extra={"worker": worker, "jobs": sorted(busy)},
                )
    _finish_jobs(session, sql, plan, held, recorded.due, recorded.tried, now, lease)
    for reason, device_ids in recorded.unregistered.items():
        session.execute(sql.unregister, {"ids": device_ids, "reason": reason, "now": now})
    if recorded.dead_tokens:
        # Remembered beyond their devices: registering one again stays refused.
        dead = sorted(recorded.dead_tokens.items())  # one order for every worker
        rows = [{"token_sha256": h, "reason": r, "created_at": now} for h, r in dead]
        session.execute(sql.bury, rows)
    rows = [row for row in recorded.deliveries if recorded.job_of[row["delivery_id"]] in ours]
    if rows:
        session.execute(sql.delivered, rows)
    if recorded.attempts:  # what went out, whoever holds its job now
        session.execute(sql.attempts, recorded.attempts)


def _finish_jobs(
    session: Session,
    sql: _Statements,
    plan: _Plan,
    held: set[int],
    retry_due: dict[int, datetime],
    tried: set[int],
    now: datetime,
    lease: dict[str, Any],
) -> None:
    """Done, dead-lettered, or pending again -- from every delivery's state: after a backoff
    if FCM asked for a retry, at once if only pushes left unsent wait, and untouched (not an
    attempt, its place in the queue kept) if none of its pushes could be started, and a
    moment later if a device of its recipient was held by another transaction (`_Plan.held`).

    Only the jobs this worker still holds, locked (`held`): one cancelled meanwhile (an
    unpair, a deleted account) stays cancelled, one whose lease ran out belongs to whoever
    took it over, and one another transaction holds is not waited for.
    """
    done: list[int] = []
    dead: list[int] = []
    again: list[dict[str, Any]] = []
    released: list[int] = []
    deferred: list[dict[str, Any]] = []
    # A job with a device held elsewhere waits a moment, not an attempt: at once, a batch of
    # them would be claimed again pass after pass, ahead of every push behind them.
    held_until = now + timedelta(seconds=HELD_DEVICE_SECONDS)
    for job in plan.jobs:
        if job.id not in held:
            continue
        states = plan.states[job.id].values()
        if job.id in plan.deferred:
            until = plan.deferred[job.id]
            deferred.append({"job_id": job.id, "available_at": until, **lease})
        elif job.id in plan.held and job.id not in tried:
            deferred.append({"job_id": job.id, "available_at": held_until, **lease})
        elif plan.waits(job.id) and job.id not in tried:
            released.append(job.id)
        elif plan.waits(job.id):
            due = retry_due.get(job.id, now)
            if job.id in plan.held:
                due = max(due, held_until)
            again.append({"job_id": job.id, "available_at": due, **lease})
        elif any(state in GAVE_UP for state in states):
            dead.append(job.id)  # dead-lettered: operators can see it and send it again
        else:
            done.append(job.id)
    if done:
        session.execute(sql.done, {"ids": done, "now": now, **lease})
    if dead:
        session.execute(sql.dead, {"ids": dead, "now": now, **lease})
    if again:
        session.execute(sql.again, again)
    if released:
        session.execute(sql.release, {"ids": released, **lease})
    if deferred:
        session.execute(sql.defer, deferred)
