"""The couple's insights, computed by the database: counts, rates, percentiles, weekly trend."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.clock import clock
from service.db import read_snapshot
from service.domain.insights import PartnerFigures, pursue_withdraw
from service.models import Bid, Repair, User
from service.services import pairing
from service.services.insights.counting import (
    WEEK,
    BidCounts,
    Counts,
    Window,
    awake_response_seconds,
    count_bids,
    percentiles,
    whole_seconds,
)


def _rate(part: int, whole: int) -> float | None:
    """`part / whole` to 4 places; None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None


def _partner(
    user: User, counted: BidCounts, times: dict[tuple[str, Any], tuple[int, int]]
) -> tuple[dict[str, Any], PartnerFigures]:
    sent = counted.sent.get(user.id, 0)
    received = counted.received.get(user.id, Counts())
    median_response, p90_response = times.get(("response", user.id), (None, None))
    median_delivery, _ = times.get(("delivery", user.id), (None, None))
    figures = PartnerFigures(
        str(user.id),
        user.display_name,
        sent,
        received.decided,
        received.turned,
        received.answered,
        median_response,
    )
    return {
        "user_id": user.id,
        "display_name": user.display_name,
        "bids_sent": sent,
        "bids_received": received.bids,
        "answered": received.answered,
        "missed": received.missed,
        "unreachable": received.unreachable,
        "open": received.open,
        # A response is known once given (a `later` too); no response, once the bid is over.
        "response_rate": _rate(received.answered, received.answered + received.missed),
        "turn_toward_rate": figures.turn_toward_rate,
        "median_response_seconds": median_response,
        "p90_response_seconds": p90_response,
        "median_delivery_seconds": median_delivery,
    }, figures


def _weekly(counted: BidCounts, window: Window, weeks: int) -> list[dict[str, Any]]:
    trend = []
    for index in range(weeks):
        week = counted.weeks.get(index, Counts())
        trend.append(
            {
                "week_start": window.since + timedelta(seconds=index * WEEK),
                "bids": week.bids,
                "unreachable": week.unreachable,
                "open": week.open,
                "turned_toward": week.turned,
                "turn_toward_rate": _rate(week.turned, week.decided),
            }
        )
    return trend


def for_couple(session: Session, user: User, days: int) -> dict[str, Any]:
    read_snapshot(session)  # the figures agree with each other, however many statements
    couple = pairing.require_couple(session, user)
    now = clock.now()
    since = now - timedelta(days=days)
    window = Window(since, now)
    weeks = max(1, -(-days // 7))
    ids = [uid for uid in couple.partner_ids if uid is not None]
    people = {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))}
    me = people[user.id]
    partner_id = couple.partner_of(user.id)
    partner = people.get(partner_id) if partner_id else None
    # The window's bids are read twice, whatever the couple's history: once for every count
    # (each partner's and each week's), once for every median.
    counted = count_bids(session, couple, window, weeks)
    times = percentiles(
        session,
        {"response": awake_response_seconds(), "delivery": Bid.delivery_seconds},
        Bid.recipient_id,
        [Bid.couple_id == couple.id, *window.of(Bid.created_at)],
    )
    read = [_partner(p, counted, times) for p in (me, partner) if p is not None]
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
        "weekly": _weekly(counted, window, weeks),
        "pattern": pattern,
    }


def _repair_figures(session: Session, couple_id: uuid.UUID, window: Window) -> dict[str, Any]:
    """Repairs started and resolved, and the median time to resolution."""
    where = [Repair.couple_id == couple_id, *window.of(Repair.created_at)]
    started, resolved = session.execute(
        select(func.count(), func.count(Repair.resolved_at)).select_from(Repair).where(*where)
    ).one()
    seconds = whole_seconds(session, Repair.created_at, Repair.resolved_at)
    times = percentiles(session, {"resolution": seconds}, Repair.couple_id, where)
    median, _ = times.get(("resolution", couple_id), (None, None))
    return {
        "repairs_started": int(started),
        "repairs_resolved": int(resolved),
        "median_seconds_to_resolution": median,
    }
