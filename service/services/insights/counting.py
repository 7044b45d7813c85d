"""The window's bids and repairs counted by the database: outcomes, weeks, percentiles."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, and_, case, cast, func, literal, or_, select, union_all
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from service.models import Bid, Couple

WEEK = 7 * 24 * 3600


def turned_toward() -> ColumnElement[bool]:
    """Toward at once, or a `later` kept by a toward response by back_at."""
    return or_(
        Bid.first_response == "toward",
        and_(
            Bid.first_response == "later", Bid.toward_at.is_not(None), Bid.toward_at <= Bid.back_at
        ),
    )


def awake_response_seconds() -> ColumnElement[Any]:
    """The time the recipient was awake to answer: their quiet hours between the bid reaching
    them and their first response do not count. A bid answered before the column existed (or
    by a process of the release before it) has only its `response_seconds`."""
    return func.coalesce(Bid.awake_response_seconds, Bid.response_seconds)


def unreachable() -> ColumnElement[bool]:
    """Unanswered, and the recipient's quiet hours last until the bid expires or beyond: it could
    never reach them (its push is never sent). Not turning away: left out of the rates."""
    return and_(Bid.responded_at.is_(None), Bid.reachable_at >= Bid.expires_at)


def missed(now: datetime) -> ColumnElement[bool]:
    """Over unanswered by `now` (its expires_at has come, whether or not the worker has marked
    it expired yet), though it could reach the recipient."""
    return and_(Bid.responded_at.is_(None), Bid.expires_at <= now, ~unreachable())


def decided(now: datetime) -> ColumnElement[bool]:
    """The outcome is known by `now`: toward, a `later` kept or broken (its back_at passed), or
    missed. Open bids (no answer yet, still able to get one) and promises not yet due are not:
    the rates and the pattern are read on these only, so a bid the partner could not have
    answered yet (asleep in quiet hours, or sent a minute ago) never lowers them."""
    return or_(
        Bid.first_response == "toward",
        and_(Bid.first_response == "later", or_(Bid.toward_at.is_not(None), Bid.back_at < now)),
        missed(now),
    )


def whole_seconds(session: Session, start: Any, end: Any) -> ColumnElement[Any]:
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


def number_of(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    """How many rows meet `condition` (0 when there are none)."""
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def percentiles(
    session: Session,
    measures: dict[str, Any],
    key: Any,
    where: list[ColumnElement[bool]],
) -> dict[tuple[str, Any], tuple[int, int]]:
    """Median and 90th percentile by nearest rank of each measure (name -> column) for each
    `key`, in one statement (window functions): `(name, key) -> (median, p90)`. A measure with
    no value for a key has no entry."""
    values = union_all(
        *(
            select(literal(name).label("measure"), key.label("key"), column.label("value")).where(
                *where, column.is_not(None)
            )
            for name, column in measures.items()
        )
    ).subquery()
    group = (values.c.measure, values.c.key)
    ranked = select(
        *group,
        values.c.value,
        func.row_number().over(partition_by=group, order_by=values.c.value).label("rank"),
        func.count().over(partition_by=group).label("n"),
    ).subquery()
    # ceil(p * n) with integer arithmetic: (n + 1) / 2 and (9n + 9) / 10.
    median_rank = (ranked.c.n + 1) // 2
    p90_rank = (9 * ranked.c.n + 9) // 10
    rows = session.execute(
        select(
            ranked.c.measure,
            ranked.c.key,
            func.max(case((ranked.c.rank == median_rank, ranked.c.value))),
            func.max(case((ranked.c.rank == p90_rank, ranked.c.value))),
        ).group_by(ranked.c.measure, ranked.c.key)
    ).all()
    return {(measure, k): (int(median), int(p90)) for measure, k, median, p90 in rows}


@dataclass(frozen=True)
class Window:
    """The insights' window: from `since` to `until` (the moment of asking), both included."""

    since: datetime
    until: datetime

    def of(self, column: Any) -> list[ColumnElement[bool]]:
        return [column >= self.since, column <= self.until]

    def weeks(self, count: int) -> ColumnElement[Any]:
        """Each bid's week by comparing it with the weeks' ends, to the microsecond (bucketing
        the seconds since `since` put a bid of a week's last second in the next). The last
        week ends at `until`: a bid of that very moment is in it too."""
        ends = [self.since + timedelta(seconds=(index + 1) * WEEK) for index in range(count)]
        return case(
            *((Bid.created_at < end, index) for index, end in enumerate(ends)), else_=count - 1
        )


@dataclass
class Counts:
    """Bids counted by their outcome, for a partner (received) or a week (both ways)."""

    bids: int = 0
    answered: int = 0
    turned: int = 0
    missed: int = 0
    unreachable: int = 0
    decided: int = 0

    def add(self, other: Counts) -> None:
        for name in ("bids", "answered", "turned", "missed", "unreachable", "decided"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def open(self) -> int:
        return self.bids - self.unreachable - self.decided


@dataclass
class BidCounts:
    """The window's bids counted once: by week, sent by and received by each partner."""

    weeks: dict[int, Counts]
    sent: dict[uuid.UUID, int]
    received: dict[uuid.UUID, Counts]


def count_bids(session: Session, couple: Couple, window: Window, weeks: int) -> BidCounts:
    """Every count of the window's bids in one statement, grouped by week, sender, recipient."""
    week = window.weeks(weeks)
    rows = session.execute(
        select(
            week,
            Bid.sender_id,
            Bid.recipient_id,
            func.count(),
            func.count(Bid.responded_at),
            number_of(turned_toward()),
            number_of(missed(window.until)),
            number_of(unreachable()),
            number_of(decided(window.until)),
        )
        .where(Bid.couple_id == couple.id, *window.of(Bid.created_at))
        .group_by(week, Bid.sender_id, Bid.recipient_id)
    ).all()
    counted = BidCounts({}, {}, {})
    for index, sender, recipient, *numbers in rows:
        counts = Counts(*(int(n) for n in numbers))
        counted.weeks.setdefault(int(index), Counts()).add(counts)
        counted.sent[sender] = counted.sent.get(sender, 0) + counts.bids
        counted.received.setdefault(recipient, Counts()).add(counts)
    return counted
