"""The couple's insights, computed by the database: counts, rates, percentiles, weekly trend."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from service.clock import clock
from service.db import read_snapshot
from service.domain.insights import PartnerFigures, pursue_withdraw
from service.models import Bid, Couple, Repair, User
from service.services import pairing

WEEK = 7 * 24 * 3600


def _turned_toward() -> ColumnElement[bool]:
    """Toward at once, or a `later` kept by a toward response by back_at."""
    return or_(
        Bid.first_response == "toward",
        and_(
            Bid.first_response == "later", Bid.toward_at.is_not(None), Bid.toward_at <= Bid.back_at
        ),
    )


def _unreachable() -> ColumnElement[bool]:
    """Unanswered, and the recipient's quiet hours last until the bid expires or beyond: it could
    never reach them (its push is never sent). Not turning away: left out of the rates."""
    return and_(Bid.responded_at.is_(None), Bid.reachable_at >= Bid.expires_at)


def _missed(now: datetime) -> ColumnElement[bool]:
    """Over unanswered by `now` (its expires_at has come, whether or not the worker has marked
    it expired yet), though it could reach the recipient."""
    return and_(Bid.responded_at.is_(None), Bid.expires_at <= now, ~_unreachable())


def _decided(now: datetime) -> ColumnElement[bool]:
    """The outcome is known by `now`: toward, a `later` kept or broken (its back_at passed), or
    missed. Open bids (no answer yet, still able to get one) and promises not yet due are not:
    the rates and the pattern are read on these only, so a bid the partner could not have
    answered yet (asleep in quiet hours, or sent a minute ago) never lowers them."""
    return or_(
        Bid.first_response == "toward",
        and_(Bid.first_response == "later", or_(Bid.toward_at.is_not(None), Bid.back_at < now)),
        _missed(now),
    )


def _whole_seconds(session: Session, start: Any, end: Any) -> ColumnElement[Any]:
    """Whole seconds from `start` to `end`, the fraction dropped as a response time's is.

    PostgreSQL rounds when it casts to an integer, so the floor comes first. SQLite's
    `strftime('%s')` drops each timestamp's fraction on its own: its microseconds (characters
    21 to 26 of the stored text) are added back before dividing.
    """
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.floor(func.extract("epoch", end - start)), Integer)

    def micros(column: Any) -> ColumnElement[Any]:
        return cast(func.strftime("%s", column), Integer) * 1_000_000 + cast(
            func.substr(column, 21, 6), Integer
        )

    return (micros(end) - micros(start)) // 1_000_000


def _rate(part: int, whole: int) -> float | None:
    """`part / whole` to 4 places; None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """How many rows meet `condition` (0 when there are none)."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _percentiles(
    session: Session, column: Any, where: list[ColumnElement[bool]]
) -> tuple[int | None, int | None]:
    """Median and 90th percentile by nearest rank, in one query (window functions)."""
    ranked = (
        select(
            column.label("value"),
            func.row_number().over(order_by=column).label("rank"),
            func.count().over().label("n"),
        )
        .where(*where, column.is_not(None))
        .subquery()
    )
    # ceil(p * n) with integer arithmetic: (n + 1) / 2 and (9n + 9) / 10.
    median_rank = (ranked.c.n + 1) // 2
    p90_rank = (9 * ranked.c.n + 9) // 10
    rows = session.execute(
        select(
            func.max(case((ranked.c.rank == median_rank, ranked.c.value))),
            func.max(case((ranked.c.rank == p90_rank, ranked.c.value))),
        )
    ).one()
    return (
        int(rows[0]) if rows[0] is not None else None,
        int(rows[1]) if rows[1] is not None else None,
    )


@dataclass(frozen=True)
class _Window:
    """The insights' window: from `since` to `until` (the moment of asking), both included."""

    since: datetime
    until: datetime

    def of(self, column: Any) -> list[ColumnElement[bool]]:
        return [column >= self.since, column <= self.until]


def _partner(
    session: Session, couple: Couple, user: User, window: _Window
) -> tuple[dict[str, Any], PartnerFigures]:
    in_couple = [Bid.couple_id == couple.id, *window.of(Bid.created_at)]
    sent = int(
        session.scalar(select(func.count()).where(*in_couple, Bid.sender_id == user.id)) or 0
    )
    received_where = [*in_couple, Bid.recipient_id == user.id]
    counts = session.execute(
        select(
            func.count(),
            func.count(Bid.responded_at),
            _count(_turned_toward()),
            _count(_missed(window.until)),
            _count(_unreachable()),
            _count(_decided(window.until)),
        ).where(*received_where)
    ).one()
    received, answered, turned, missed, unreachable, decided = (int(v) for v in counts)
    median_response, p90_response = _percentiles(session, Bid.response_seconds, received_where)
    median_delivery, _ = _percentiles(session, Bid.delivery_seconds, received_where)
    figures = PartnerFigures(
        str(user.id), user.display_name, sent, decided, turned, answered, median_response
    )
    return {
        "user_id": user.id,
        "display_name": user.display_name,
        "bids_sent": sent,
        "bids_received": received,
        "answered": answered,
        "missed": missed,
        "unreachable": unreachable,
        "open": received - unreachable - decided,
        # A response is known once given (a `later` too); no response, once the bid is over.
        "response_rate": _rate(answered, answered + missed),
        "turn_toward_rate": figures.turn_toward_rate,
        "median_response_seconds": median_response,
        "p90_response_seconds": p90_response,
        "median_delivery_seconds": median_delivery,
    }, figures


def _weekly(session: Session, couple: Couple, window: _Window, weeks: int) -> list[dict[str, Any]]:
    # Each bid's week by comparing it with the weeks' ends, to the microsecond (bucketing the
    # seconds since `since` put a bid of a week's last second in the next). The last week ends
    # at `until`: a bid of that very moment is in it too.
    since = window.since
    ends = [since + timedelta(seconds=(index + 1) * WEEK) for index in range(weeks)]
    bucket = case(
        *((Bid.created_at < end, index) for index, end in enumerate(ends)), else_=weeks - 1
    )
    rows = session.execute(
        select(
            bucket.label("week"),
            func.count(),
            _count(_turned_toward()),
            _count(_unreachable()),
            _count(_decided(window.until)),
        )
        .where(Bid.couple_id == couple.id, *window.of(Bid.created_at))
        .group_by(bucket)
    ).all()
    by_week = {int(row[0]): tuple(int(v) for v in row[1:]) for row in rows}
    trend = []
    for index in range(weeks):
        n, turned, unreachable, decided = by_week.get(index, (0, 0, 0, 0))
        trend.append(
            {
                "week_start": since + timedelta(seconds=index * WEEK),
                "bids": n,
                "unreachable": unreachable,
                "open": n - unreachable - decided,
                "turned_toward": turned,
                "turn_toward_rate": _rate(turned, decided),
            }
        )
    return trend


def for_couple(session: Session, user: User, days: int) -> dict[str, Any]:
    read_snapshot(session)  # the figures agree with each other, however many statements
    couple = pairing.require_couple(session, user)
    now = clock.now()
    since = now - timedelta(days=days)
    window = _Window(since, now)
    ids = [uid for uid in couple.partner_ids if uid is not None]
    people = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}
    me = people[user.id]
    partner_id = couple.partner_of(user.id)
    partner = people.get(partner_id) if partner_id else None
    read = [_partner(session, couple, p, window) for p in (me, partner) if p is not None]
    partners = [shown for shown, _ in read]
    figures = [theirs for _, theirs in read]
    pattern = pursue_withdraw(figures[0], figures[1]) if len(figures) == 2 else None
    extra = _repair_figures(session, couple.id, window)
    return {
        "days": days,
        "since": since,
        "until": now,
        "partners": partners,
        "couple": {"bids": sum(p["bids_sent"] for p in partners), **extra},
        "weekly": _weekly(session, couple, window, max(1, -(-days // 7))),
        "pattern": pattern,
    }


def _repair_figures(session: Session, couple_id: uuid.UUID, window: _Window) -> dict[str, Any]:
    """Repairs started and resolved, and the median time to resolution."""
    where = [Repair.couple_id == couple_id, *window.of(Repair.created_at)]
    started = session.scalar(select(func.count()).select_from(Repair).where(*where)) or 0
    resolved = (
        session.scalar(
            select(func.count()).select_from(Repair).where(*where, Repair.resolved_at.is_not(None))
        )
        or 0
    )
    seconds = _whole_seconds(session, Repair.created_at, Repair.resolved_at)
    median, _ = _percentiles(session, seconds, where)
    return {
        "repairs_started": int(started),
        "repairs_resolved": int(resolved),
        "median_seconds_to_resolution": median,
    }
