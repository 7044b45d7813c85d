"""Figures for operators, over all couples: bids, response times, pushes, backlog; never words.

Every query names its columns: no note, message body or push payload is ever read here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from schemas.base import iso
from service.clock import clock
from service.models import Bid, PushAttempt, PushJob
from service.services.insights.counting import awake_response_seconds

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
# Partner response time buckets: (upper bound in seconds or None, label).
RESPONSE_BUCKETS: tuple[tuple[int | None, str], ...] = (
    (60, "< 1 min"),
    (5 * 60, "1-5 min"),
    (15 * 60, "5-15 min"),
    (60 * 60, "15-60 min"),
    (3 * 3600, "1-3 h"),
    (12 * 3600, "3-12 h"),
    (None, "> 12 h"),
)
# The latest answered bids that the median and p90 are computed from (counts cover them all).
RESPONSE_SAMPLE = 5000


def percentile(ordered: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when there are none)."""
    if not ordered:
        return None
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


def bids_per_hour(session: Session, now: datetime) -> list[dict[str, Any]]:
    """Bids created in each of the last 24 hours (rolling: the last bucket ends now)."""
    start = now - DAY
    bounds = [start + HOUR * i for i in range(25)]
    columns = []
    for i in range(24):
        inside = Bid.created_at >= bounds[i]
        if i < 23:
            inside = and_(inside, Bid.created_at < bounds[i + 1])
        columns.append(_count(inside))
    row = session.execute(select(*columns).where(Bid.created_at >= start)).one()
    return [{"start": iso(bounds[i]), "count": int(row[i] or 0)} for i in range(24)]


def _bucket_counts(answered: Any, seconds: Any) -> list[Any]:
    """One count per RESPONSE_BUCKETS bucket of the bids `answered` selects, summed in SQL."""
    columns, lower = [], 0
    for upper, _ in RESPONSE_BUCKETS:
        inside = and_(answered, seconds >= lower)
        if upper is not None:
            inside = and_(inside, seconds < upper)
        columns.append(_count(inside))
        lower = upper or lower
    return columns


def response_times(session: Session, now: datetime) -> dict[str, Any]:
    """How quickly partners answered bids sent in the last 24 hours: how many, the histogram
    (both over every one), median and p90 (over the latest RESPONSE_SAMPLE). A response time
    is the time the partner was awake to answer, as in the couple's insights."""
    answered = and_(Bid.created_at >= now - DAY, Bid.response_seconds.is_not(None))
    seconds = awake_response_seconds()
    counts = session.execute(select(*_bucket_counts(answered, seconds)).where(answered)).one()
    latest = session.scalars(
        select(seconds).where(answered).order_by(Bid.created_at.desc()).limit(RESPONSE_SAMPLE)
    )
    ordered = sorted(value for value in latest if value is not None)
    histogram = [
        {"label": label, "count": int(count or 0)}
        for (_, label), count in zip(RESPONSE_BUCKETS, counts, strict=True)
    ]
    return {
        "answered": sum(bucket["count"] for bucket in histogram),
        "median_seconds": percentile(ordered, 0.5),
        "p90_seconds": percentile(ordered, 0.9),
        "histogram": histogram,
    }


def push_outcomes(session: Session, since: datetime) -> list[dict[str, Any]]:
    """Push attempts since `since`, by outcome (most frequent first)."""
    rows = session.execute(
        select(PushAttempt.outcome, func.count())
        .where(PushAttempt.finished_at >= since)
        .group_by(PushAttempt.outcome)
    ).all()
    return [
        {"outcome": outcome, "count": int(count)}
        for outcome, count in sorted(rows, key=lambda r: (-r[1], r[0]))
    ]


def _count(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def push_backlog(session: Session, now: datetime) -> dict[str, Any]:
    """The outbox: jobs due and waiting (those a stopped worker held, once its lease has run
    out, too: the next pass takes them first), deferred on purpose, waiting to be tried again
    after a failure, being sent, dead; the oldest wait."""
    pending = PushJob.state == "pending"
    claimed = PushJob.state == "claimed"
    due = and_(pending, PushJob.available_at <= now)
    lapsed = and_(claimed, PushJob.claimed_until < now)
    later = and_(pending, PushJob.available_at > now)
    row = session.execute(
        select(
            _count(due),
            _count(lapsed),
            _count(and_(later, PushJob.attempts == 0)),
            _count(and_(later, PushJob.attempts > 0)),
            _count(claimed),
            _count(PushJob.state == "dead"),
        ).where(PushJob.state.in_(("pending", "claimed", "dead")))
    ).one()
    # Apart, so each reads the first row of ix_push_jobs_due however long the queue.
    waiting = [
        _as_time(session.scalar(select(func.min(PushJob.available_at)).where(kind)), now)
        for kind in (due, lapsed)
    ]
    oldest = min((at for at in waiting if at is not None), default=None)
    return {
        "backlog_due": int(row[0]) + int(row[1]),
        "deferred": int(row[2]),
        "retrying": int(row[3]),
        "claimed": int(row[4]) - int(row[1]),
        "dead": int(row[5]),
        "oldest_due_seconds": max(0.0, (now - oldest).total_seconds()) if oldest else None,
    }


def _as_time(value: Any, now: datetime) -> datetime | None:
    if isinstance(value, str):  # SQLite hands aggregates back untyped
        return datetime.fromisoformat(value).replace(tzinfo=now.tzinfo)
    return value


def push_figures(session: Session, now: datetime, window: timedelta = DAY) -> dict[str, Any]:
    outcomes = push_outcomes(session, now - window)
    attempts = sum(row["count"] for row in outcomes)
    sent = sum(row["count"] for row in outcomes if row["outcome"] == "sent")
    return {
        "window_seconds": int(window.total_seconds()),
        "attempts": attempts,
        "sent": sent,
        "success_rate": (sent / attempts) if attempts else None,
        "outcomes": outcomes,
        **push_backlog(session, now),
    }


def overview(
    session: Session, *, sockets: dict[str, Any], http: dict[str, Any], process: str
) -> dict[str, Any]:
    """Everything the overview page shows; the same shape goes out as `ops.overview`."""
    now = clock.now()
    per_hour = bids_per_hour(session, now)
    return {
        "at": iso(now),
        "process": process,
        "sockets": sockets,
        "bids": {
            "last_hour": per_hour[-1]["count"],
            "last_day": sum(bucket["count"] for bucket in per_hour),
            "per_hour": per_hour,
        },
        "response_time": response_times(session, now),
        "push": push_figures(session, now),
        "http": http,
    }


def scrape_figures(session: Session) -> dict[str, Any]:
    """What GET /metrics reads from the database at scrape time."""
    now = clock.now()
    bids_last_hour = session.scalar(select(func.count()).where(Bid.created_at >= now - HOUR))
    return {"push": push_figures(session, now, HOUR), "bids_last_hour": int(bids_last_hour or 0)}
