"""Deleting what the outbox no longer needs, a batch at a time: the jobs that finished long
enough ago, and the dead tokens remembered long enough."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.db import groups_held
from service.models import DeadPushToken, PushAttempt, PushDelivery, PushJob
from service.models.base import table

# A job in one of these states is over: nothing will send it again.
FINISHED = ("done", "cancelled", "expired", "dead")
_JOBS = table(PushJob)
_DELIVERIES = table(PushDelivery)
_ATTEMPTS = table(PushAttempt)


@dataclass(frozen=True)
class Pruned:
    """What one call of a prune did: rows deleted, and whether it stopped short (`more`). For
    `prune_finished`, `after` is where the next call goes on (0 once it is done)."""

    deleted: int
    more: bool
    after: int = 0


def prune_finished(
    session: Session,
    before: datetime,
    *,
    after: int = 0,
    batch: int = 1000,
    most_batches: int = 20,
) -> Pruned:
    """Delete the jobs that finished before `before`, with their deliveries and attempts (the
    foreign keys cascade). Walks the jobs oldest first by primary key from past `after` (the
    `after` of the call before, which stopped short; 0 to begin), a batch per transaction, and
    stops at the first batch that reaches jobs created since `before` (done), or after
    `most_batches` (`more`: call again with its `after` to go on). Every call moves on by at
    least a batch, whatever it deletes: a share of jobs it must keep (still to be sent, or held)
    is not read again until the next prune starts over. Pending and claimed jobs are never
    deleted. A job another transaction holds (one left open: a `psql` session, a stuck
    request), or one of its deliveries or attempts, is passed over, not waited for: a later
    prune deletes it."""
    deleted = 0
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
            free = session.scalars(
                select(_JOBS.c.id)
                .where(_JOBS.c.id.in_(over), _JOBS.c.state.in_(FINISHED))
                .with_for_update(skip_locked=True)
            ).all()
            free = _whole(session, free)
            if free:
                result = session.execute(
                    delete(_JOBS).where(_JOBS.c.id.in_(free), _JOBS.c.state.in_(FINISHED))
                )
                deleted += int(getattr(result, "rowcount", 0) or 0)
        session.commit()
        after = rows[-1].id
        if rows[-1].created_at >= before:
            return Pruned(deleted, more=False)
    return Pruned(deleted, more=True, after=after)


def _whole(session: Session, jobs: Sequence[int]) -> list[int]:
    """Of `jobs` (locked), those none of whose deliveries and attempts another transaction
    holds, each of them locked now: deleting a job deletes them with it (the foreign keys
    cascade), which would wait for one held until the statement timeout."""
    if not jobs:
        return []
    deliveries = select(_DELIVERIES.c.id, _DELIVERIES.c.job_id).where(
        _DELIVERIES.c.job_id.in_(jobs)
    )
    held = groups_held(session, deliveries, _DELIVERIES)
    whole = [job for job in jobs if job not in held]
    if not whole:
        return []
    attempts = (
        select(_ATTEMPTS.c.id, _DELIVERIES.c.job_id)
        .join_from(_ATTEMPTS, _DELIVERIES, _DELIVERIES.c.id == _ATTEMPTS.c.delivery_id)
        .where(_DELIVERIES.c.job_id.in_(whole))
    )
    held = groups_held(session, attempts, _ATTEMPTS)
    return [job for job in whole if job not in held]


def prune_dead_tokens(
    session: Session, before: datetime, *, batch: int = 1000, most_batches: int = 20
) -> Pruned:
    """Forget the tokens FCM declared dead before `before` (`DeadPushToken`): registering one
    again is no longer refused, unless a device still has it. `batch` per transaction, at most
    `most_batches` of them (`more`: call again to go on). One another transaction holds is
    passed over, not waited for: a later prune forgets it."""
    deleted = 0
    for _ in range(most_batches):
        old = session.scalars(
            select(DeadPushToken.token_sha256)
            .where(DeadPushToken.created_at < before)
            .limit(batch)
            .with_for_update(skip_locked=True)
        ).all()
        if old:
            result = session.execute(
                delete(DeadPushToken).where(
                    DeadPushToken.token_sha256.in_(old), DeadPushToken.created_at < before
                )
            )
            deleted += int(getattr(result, "rowcount", 0) or 0)
        session.commit()
        if len(old) < batch:
            return Pruned(deleted, more=False)
    return Pruned(deleted, more=True)
