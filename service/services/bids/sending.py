"""Sending a bid: reach for the partner, once per `client_id`, row, event and push together."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service import metrics
from service.clock import clock
from service.db import finish
from service.domain import bids as rules
from service.domain.errors import Conflict, NotFound, of_an_ended_pairing
from service.domain.quiet_hours import QuietHours
from service.models import Bid
from service.services import bid_writes, events, push_outbox
from service.services.bids.reading import _VIEW_COLUMNS, Written, _with_outcome, present, wire
from service.services.members import Member


def send(
    session: Session,
    sender: Member,
    *,
    client_id: uuid.UUID,
    kind: str,
    note: str | None,
    ttl_seconds: int,
    couple_id: uuid.UUID | None = None,
    recheck: Callable[[], Member] | None = None,
) -> Written:
    """Reach for the partner. A retry with the same `client_id` returns the first bid (200).
    With `couple_id` (the couple the phone wrote it in), a bid of an ended pairing is refused.

    With `recheck`, `sender` was remembered rather than looked up in this transaction: the
    write proves it still holds (`members.STILL_LIVE`) and, if it does not (or the bid is a
    retry), `recheck()` looks the member up and the send runs as usual.
    """
    request = _BidRequest(client_id, kind, note, ttl_seconds)
    if recheck is not None:
        if _written_in(sender, couple_id):
            written = _write(session, sender, request, proof=sender)
            if written is not None:
                return written
            session.rollback()
        sender = recheck()  # remembered in another couple, or no longer as remembered
    if not _written_in(sender, couple_id):
        raise of_an_ended_pairing("bid")
    written = _write(session, sender, request)
    if written is not None:
        return written
    # A retry, even one racing its original: nothing was written, the first bid answers.
    session.rollback()
    existing = _by_client_id(session, sender.user_id, client_id)
    if existing is None:
        # Not a retry (a conflicting row is committed by now): the couple ended meanwhile.
        raise NotFound("You are not paired.")
    if sender.couple is None or existing.couple_id != sender.couple.id:
        # A bid of an earlier pairing: it, and the ex-partner's answers, are not the caller's.
        raise Conflict("This client_id was used for another bid: generate a new one.")
    if (existing.kind, existing.note) != (kind, note or None):
        # Another bid, not a retry: answered with the first, the phone would take it as sent.
        raise Conflict("This client_id was used for another bid: generate a new one.")
    return Written(present(existing), created=False)


def _written_in(sender: Member, couple_id: uuid.UUID | None) -> bool:
    """Whether a bid the phone wrote in `couple_id` (None: not said) is for the sender's couple;
    one not paired at all gets the usual 404 from the write."""
    return couple_id is None or sender.couple is None or sender.couple.id == couple_id


@dataclass(frozen=True, slots=True)
class _BidRequest:
    client_id: uuid.UUID
    kind: str
    note: str | None
    ttl_seconds: int


def _write(
    session: Session, sender: Member, request: _BidRequest, proof: Member | None = None
) -> Written | None:
    """Write the bid, its event and its push job and commit; None if nothing was written.
    `proof`: the sender, not looked up in this transaction (`bid_writes.write_new`)."""
    couple, recipient = sender.couple, sender.partner
    if couple is None or recipient is None:
        raise NotFound("You are not paired.")
    now = clock.now()
    quiet = QuietHours.of(recipient.quiet_start, recipient.quiet_end, recipient.timezone)
    row: dict[str, Any] = {
        "id": uuid.uuid4(),
        "couple_id": couple.id,
        "sender_id": sender.user_id,
        "recipient_id": recipient.id,
        "client_id": request.client_id,
        "kind": request.kind,
        "note": request.note or None,
        "status": "sent",
        "created_at": now,
        "reachable_at": rules.reachable_at(now, quiet),
        "expires_at": now + timedelta(seconds=request.ttl_seconds),
    }
    view = _with_outcome({column: row.get(column) for column in _VIEW_COLUMNS}, [], now)
    event: dict[str, Any] = {"type": "bid.created", "at": now, "data": wire(view)}
    job = push_outbox.bid_created(
        row, sender.display_name, recipient, recipient.notes_on_lock_screen
    )
    cursor = bid_writes.write_new(session, row, event, job, proof=proof)
    if cursor is None:
        return None
    events.announce(session, couple, cursor, event["type"], now, event["data"])
    finish(session)
    metrics.bid_created()
    return Written(view, created=True, wired=event["data"])


def _by_client_id(session: Session, sender_id: uuid.UUID, client_id: uuid.UUID) -> Bid | None:
    return session.scalar(select(Bid).where(Bid.sender_id == sender_id, Bid.client_id == client_id))
