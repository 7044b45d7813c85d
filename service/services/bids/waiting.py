"""Bids still waiting out their recipient's quiet hours: they follow the hours the recipient
keeps now, as their pushes do."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.clock import clock
from service.domain import bids as rules
from service.domain.quiet_hours import QuietHours
from service.models import Bid, Couple, User
from service.services import events
from service.services.bids.reading import present, wire


def follow_quiet_hours(session: Session, recipient: User, couple: Couple | None) -> int:
    """The recipient changed their time zone or quiet hours: the open bids of their couple
    that have not reached them yet (`reachable_at` still ahead) reach them when the new hours
    let them, from now; returns how many moved. A night they flew into is not time to answer,
    and one they left no longer holds the bid: `response_seconds` runs from when it could
    reach them, and its push goes then too (`push_outbox.follow_quiet_hours`). Each bid that
    moves is a `bid.rescheduled` event with the whole bid, so the phones show it as GET does.

    `couple` is the recipient's live couple, locked by the caller before anything else: a
    response locks its couple, then its bid, and this takes them in the same order. Read
    through the couple's open bids (`ix_bids_couple_status_created_id`), never the recipient's
    whole history. Run before the pushes are retimed: a response locks its bid before the
    push it withdraws, and this takes them in the same order too."""
    if couple is None or recipient.couple_id != couple.id:
        return 0
    now = clock.now()
    quiet = QuietHours.of(recipient.quiet_start, recipient.quiet_end, recipient.timezone)
    reachable = rules.reachable_at(now, quiet)
    waiting = session.scalars(
        select(Bid)
        .where(
            Bid.couple_id == couple.id,
            Bid.status.in_(rules.OPEN_STATUSES),
            Bid.recipient_id == recipient.id,
            Bid.reachable_at > now,
            Bid.expires_at > now,
        )
        .order_by(Bid.created_at, Bid.id)
        .with_for_update()
    ).all()
    moved = [bid for bid in waiting if bid.reachable_at != reachable]
    for bid in moved:
        bid.reachable_at = reachable
        events.record(session, couple, "bid.rescheduled", wire(present(bid, now)))
    return len(moved)
