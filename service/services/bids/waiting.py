"""Bids still waiting out their recipient's quiet hours: they follow the hours the recipient
keeps now, as their pushes do."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from service.clock import clock
from service.domain import bids as rules
from service.domain.quiet_hours import QuietHours
from service.models import Bid, User


def follow_quiet_hours(session: Session, recipient: User) -> int:
    """The recipient changed their time zone or quiet hours: the open bids of their couple
    that have not reached them yet (`reachable_at` still ahead) reach them when the new hours
    let them, from now; returns how many. A night they flew into is not time to answer, and
    one they left no longer holds the bid: `response_seconds` runs from when it could reach
    them, and its push goes then too (`push_outbox.follow_quiet_hours`).

    Read through the couple's open bids (`ix_bids_couple_status_created`), never the
    recipient's whole history. Run before the pushes are retimed: a response locks its bid
    before the push it withdraws, and this takes them in the same order."""
    if recipient.couple_id is None:
        return 0
    now = clock.now()
    quiet = QuietHours.of(recipient.quiet_start, recipient.quiet_end, recipient.timezone)
    moved = session.execute(
        update(Bid)
        .where(
            Bid.couple_id == recipient.couple_id,
            Bid.status.in_(rules.OPEN_STATUSES),
            Bid.recipient_id == recipient.id,
            Bid.reachable_at > now,
            Bid.expires_at > now,
        )
        .values(reachable_at=rules.reachable_at(now, quiet))
        .execution_options(synchronize_session=False)
    )
    return int(getattr(moved, "rowcount", 0) or 0)
