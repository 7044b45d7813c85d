"""Push health for operators: outcomes by platform and error, dead letters, and retrying them.

Push payloads can carry a bid note (when the partner opted in), so no query here reads them.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from schemas.base import iso, read_integer
from service.clock import clock
from service.domain.errors import Conflict, NotFound
from service.models import Operator, PushAttempt, PushDelivery, PushJob
from service.models.push import BIG_ID_MAX
from service.services import ops, ops_audit, push_outbox

# A delivery FCM refused the message of (`invalid`: too large, a field it will not take) is
# sent again too: what made it so may be gone (a note no longer shown, a release since).
RETRYABLE_DELIVERIES = ("dead", "failed", "invalid")
DEAD_LETTER_PAGE = 100
# Where a page of dead letters continues: the last one's finished_at and id.
DeadLetterCursor = tuple[datetime, int]


def outcomes_by_platform(session: Session, since: datetime) -> list[dict[str, Any]]:
    """Attempts since `since` by platform, outcome and FCM error code."""
    rows = session.execute(
        select(PushDelivery.platform, PushAttempt.outcome, PushAttempt.error, func.count())
        .join(PushDelivery, PushDelivery.id == PushAttempt.delivery_id)
        .where(PushAttempt.finished_at >= since)
        .group_by(PushDelivery.platform, PushAttempt.outcome, PushAttempt.error)
    ).all()
    return [
        {"platform": platform, "outcome": outcome, "error": error, "count": int(count)}
        for platform, outcome, error, count in sorted(
            rows, key=lambda r: (r[0], -r[3], r[1], r[2] or "")
        )
    ]


def _jobs(session: Session, query: Any) -> list[dict[str, Any]]:
    """Jobs as operators see them: ids, kind, state, times, attempts, per-device states."""
    jobs = session.execute(
        query.with_only_columns(
            PushJob.id,
            PushJob.kind,
            PushJob.state,
            PushJob.attempts,
            PushJob.last_error,
            PushJob.created_at,
            PushJob.available_at,
            PushJob.finished_at,
            PushJob.expires_at,
        )
    ).all()
    deliveries: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if jobs:
        for job_id, platform, state, attempts, error in session.execute(
            select(
                PushDelivery.job_id,
                PushDelivery.platform,
                PushDelivery.state,
                PushDelivery.attempts,
                PushDelivery.last_error,
            )
            .where(PushDelivery.job_id.in_([job.id for job in jobs]))
            .order_by(PushDelivery.id)
        ):
            deliveries[job_id].append(
                {"platform": platform, "state": state, "attempts": attempts, "error": error}
            )
    return [{**job._asdict(), "deliveries": deliveries[job.id]} for job in jobs]


def dead_letters(
    session: Session, before: DeadLetterCursor | None = None
) -> tuple[list[dict[str, Any]], DeadLetterCursor | None]:
    """A page of dead-lettered jobs, the most recently given up first, and the cursor of the
    page after it (None: this is the last)."""
    query = select(PushJob.id).where(PushJob.state == "dead")
    if before is not None:
        at, job_id = before
        query = query.where(
            or_(
                PushJob.finished_at < at,
                and_(PushJob.finished_at == at, PushJob.id < job_id),
            )
        )
    page = DEAD_LETTER_PAGE
    jobs = _jobs(
        session,
        query.order_by(PushJob.finished_at.desc(), PushJob.id.desc()).limit(page + 1),
    )
    if len(jobs) <= page:
        return jobs, None
    last = jobs[page - 1]
    return jobs[:page], (last["finished_at"], last["id"])


def dead_letter_cursor(value: str) -> DeadLetterCursor:
    """A cursor that `format_cursor` wrote (ValueError for anything else, a time that is not
    in the years 1-9999 in UTC too)."""
    at, _, job_id = value.partition("~")
    moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
    number = read_integer(job_id)
    if moment.tzinfo is None or not 0 < number <= BIG_ID_MAX:
        raise ValueError(value)
    try:
        return moment.astimezone(UTC), number
    except OverflowError as exc:
        raise ValueError(value) from exc


def format_cursor(cursor: DeadLetterCursor | None) -> str | None:
    return None if cursor is None else f"{iso(cursor[0])}~{cursor[1]}"


def recently_retried(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    """Jobs operators sent again lately, with the state they are in now."""
    ids = [int(i) for i in ops_audit.targets_of(session, "push.retry", limit=limit) if i.isdigit()]
    if not ids:
        return []
    rows = _jobs(session, select(PushJob.id).where(PushJob.id.in_(ids)))
    order = {job_id: index for index, job_id in enumerate(ids)}
    return sorted(rows, key=lambda row: order[row["id"]])


def health(
    session: Session,
    window: timedelta = timedelta(days=1),
    dead_before: DeadLetterCursor | None = None,
) -> dict[str, Any]:
    """Push figures, outcomes, a page of dead letters (`dead_letters_next`: the cursor of the
    next page) and what operators retried lately."""
    now = clock.now()
    dead, after = dead_letters(session, dead_before)
    return {
        "summary": ops.push_figures(session, now, window),
        "by_platform": outcomes_by_platform(session, now - window),
        "dead_letters": dead,
        "dead_letters_next": format_cursor(after),
        "recently_retried": recently_retried(session),
    }


def retry(session: Session, operator: Operator, job_id: int) -> PushJob:
    """Send a dead-lettered push again: the job and its failed deliveries start over, now or,
    for a push that waits out quiet hours or a break, when they end."""
    job = session.get(PushJob, job_id, with_for_update=True) if 0 < job_id <= BIG_ID_MAX else None
    if job is None:
        raise NotFound("There is no such push job.")
    if job.state != "dead":
        raise Conflict(f"Only dead-lettered pushes can be retried; this one is {job.state}.")
    now = clock.now()
    if job.expires_at is not None and job.expires_at <= now:
        raise Conflict("This push has expired with what it announced; it cannot be sent again.")
    job.state, job.attempts = "pending", 0
    # Now, or when the recipient's quiet hours end (a retry wakes nobody at night); a message's
    # push, once its conversation's break is over, as the messages written during it.
    start = max(now, push_outbox.break_end(session, job) or now)
    job.available_at = push_outbox.due_from(session, job, start)
    job.finished_at = job.claimed_by = job.claimed_until = None
    job.last_error = "retry requested by an operator"
    reset = session.execute(
        update(PushDelivery)
        .where(PushDelivery.job_id == job.id, PushDelivery.state.in_(RETRYABLE_DELIVERIES))
        .values(state="pending", attempts=0, last_error=None, updated_at=now)
    )
    ops_audit.record(
        session,
        operator,
        "push.retry",
        ops_audit.Target("push_job", str(job.id)),
        {"kind": job.kind, "deliveries_reset": int(getattr(reset, "rowcount", 0) or 0)},
    )
    session.commit()
    return job
