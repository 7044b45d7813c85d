"""Repair conversations: start, list, read receipts, feel heard; each change is a couple event."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schemas.repairs import RepairSchema
from service.clock import clock
from service.domain import repairs as rules
from service.domain.errors import Conflict, NotFound, invalid, of_an_ended_pairing
from service.models import Bid, Couple, Repair, RepairPartner, User
from service.services import events, pages, pairing, push_outbox

_repair_schema = RepairSchema()


@dataclass(frozen=True)
class Written:
    """A write's result: the resource as GET shows it, and whether this call created it."""

    resource: dict[str, Any]
    created: bool


def present(repair: Repair) -> dict[str, Any]:
    """The conversation with each partner's place in it, ready for `RepairSchema`."""
    view = {name: getattr(repair, name) for name in _repair_schema.fields if name != "partners"}
    view["partners"] = [
        {
            "user_id": partner.user_id,
            "last_read_seq": partner.last_read_seq,
            "heard": partner.resolved_at is not None,
            "resolved_at": partner.resolved_at,
        }
        for partner in sorted(repair.partners, key=lambda place: place.user_id)
    ]
    return view


def wire(view: dict[str, Any]) -> dict[str, Any]:
    """The conversation as the wire shows it (event data)."""
    dumped: dict[str, Any] = _repair_schema.dump(view)
    return dumped


def start(
    session: Session,
    user: User,
    *,
    client_id: uuid.UUID,
    topic: str | None,
    bid_id: uuid.UUID | None,
    couple_id: uuid.UUID | None = None,
) -> Written:
    """Start a conversation; a retry with the same `client_id` returns it again. With
    `couple_id` (the couple the phone started it in), one of an ended pairing is refused."""
    couple = pairing.require_couple(session, user)
    if couple_id is not None and couple_id != couple.id:
        raise of_an_ended_pairing("conversation")
    asked = (topic or None, bid_id)
    existing = _by_client_id(session, user.id, client_id)
    if existing is not None:
        return _replay(existing, couple, asked)
    # Before the new row names the bid (a key-share lock on it): a bid write locks the couple,
    # then the bid, and the other order would deadlock with it.
    _lock_cursor(session, couple)
    if couple.ended_at is not None:
        raise NotFound("You are not paired.")
    if bid_id is not None:
        bid = session.get(Bid, bid_id)
        if bid is None or bid.couple_id != couple.id:
            raise invalid("bid_id", "No such bid: name one of your couple's bids, or none.")
    partners = [RepairPartner(user_id=uid) for uid in couple.partner_ids if uid is not None]
    repair = Repair(
        couple_id=couple.id,
        started_by=user.id,
        client_id=client_id,
        topic=(topic or None),
        bid_id=bid_id,
        status="open",
        created_at=clock.now(),
        last_seq=0,
        pause_count=0,
        partners=partners,
    )
    session.add(repair)
    try:
        session.flush()
    except IntegrityError:
        # The same phone retried concurrently: the first write wins, this one returns it.
        session.rollback()
        existing = _by_client_id(session, user.id, client_id)
        if existing is None:
            raise
        return _replay(existing, couple, asked)
    view = present(repair)
    events.record(session, couple, "repair.started", wire(view))
    session.commit()
    return Written(view, created=True)


def get(session: Session, user: User, repair_id: uuid.UUID) -> dict[str, Any]:
    repair, _ = visible(session, user, repair_id)
    return present(repair)


def list_for(
    session: Session, user: User, *, limit: int, before: str | None, status: str | None = None
) -> dict[str, Any]:
    couple = pairing.require_couple(session, user)
    query = select(Repair).where(Repair.couple_id == couple.id)
    if status:
        query = query.where(Repair.status == status)
    if before:
        # One comparison of (created_at, id): ix_repairs_couple_created_id (or its status's)
        # starts the page where the last one ended, rather than reading every newer one first.
        query = query.where(pages.older_than_key(Repair, before))
    order = (Repair.created_at.desc(), Repair.id.desc())
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    return {
        "items": [present(repair) for repair in rows[:limit]],
        "next": pages.next_of(rows, limit),
    }


def read(session: Session, user: User, repair_id: uuid.UUID, seq: int) -> dict[str, Any]:
    """A read receipt: this partner has read up to `seq`. It never moves back."""
    repair, couple = visible(session, user, repair_id, lock=True)
    if seq > repair.last_seq:
        raise invalid("seq", f"There is no message {seq}: the latest is {repair.last_seq}.")
    me = _place_of(repair, user)
    read_up_to = rules.read_up_to(me.last_read_seq, seq)
    if read_up_to == me.last_read_seq:
        session.rollback()
        return present(repair)
    me.last_read_seq = read_up_to
    push_outbox.withdraw_read_messages(session, repair.id, user.id, read_up_to)
    view = present(repair)
    events.record(session, couple, "repair.read", wire(view))
    session.commit()
    return view


def resolve(session: Session, user: User, repair_id: uuid.UUID) -> dict[str, Any]:
    """This partner feels heard (`repair.heard`); once both do, `repair.resolved`."""
    repair, couple = visible(session, user, repair_id, lock=True)
    me = _place_of(repair, user)
    if me.resolved_at is not None:
        session.rollback()
        return present(repair)
    now = clock.now()
    me.resolved_at = now
    kind = "repair.heard"
    if rules.is_resolved([partner.resolved_at is not None for partner in repair.partners]):
        repair.status, repair.resolved_at, kind = "resolved", now, "repair.resolved"
        # Every reminder goes, one of a break that ended already waiting out quiet hours too:
        # nothing is left to come back to.
        every_reminder = push_outbox.reminders_of(repair.id)
        if repair.paused_until is not None:
            end_break_early(session, repair, reminders=every_reminder)
        else:
            push_outbox.cancel(session, every_reminder)
    view = present(repair)
    events.record(session, couple, kind, wire(view))
    session.commit()
    return view


def visible(
    session: Session, user: User, repair_id: uuid.UUID, *, lock: bool = False
) -> tuple[Repair, Couple]:
    """The conversation if it belongs to the caller's couple; 404 otherwise (never 403).

    With `lock`, the repair row is locked first and the couple row (the cursor) right after
    it, the same order for every repair write, and before any push row: an unpair locks the
    couple and then cancels the couple's pushes, so a write holding a push (a reminder it
    replaces, a message push it holds or withdraws) while it waits for the couple would
    deadlock with it. A write that waited on an unpair finds the couple ended.
    """
    if user.couple_id is None:
        raise NotFound("No such repair conversation.")
    couple = session.get(Couple, user.couple_id)
    repair = session.get(Repair, repair_id, with_for_update=lock)
    if repair is None or couple is None or repair.couple_id != couple.id:
        raise NotFound("No such repair conversation.")
    if lock:
        _lock_cursor(session, couple)
    if couple.ended_at:
        raise NotFound("No such repair conversation.")
    return repair, couple


def of_couple(session: Session, repair_id: uuid.UUID, couple_id: uuid.UUID) -> bool:
    """Whether the conversation is the couple's: one lookup by primary key (a `typing` asks)."""
    found = select(Repair.id).where(Repair.id == repair_id, Repair.couple_id == couple_id)
    return session.execute(found).first() is not None


def _lock_cursor(session: Session, couple: Couple) -> None:
    """Lock the couple's row as taking its next cursor does (FOR NO KEY UPDATE), and read it
    again: an unpair that committed meanwhile shows in `ended_at`."""
    session.get(Couple, couple.id, with_for_update={"key_share": True}, populate_existing=True)


def end_break_early(session: Session, repair: Repair, *, reminders: str | None = None) -> None:
    """The break ends before its time: no reminder of it (or of `reminders`, a dedupe prefix),
    and held message pushes (those FCM asked to try again included) go now. A reminder of an
    earlier break, which ended on time and waits out quiet hours, is owed: it still goes."""
    this_break = push_outbox.reminders_of_break(repair.id, repair.pause_count)
    push_outbox.cancel(session, reminders or this_break)
    messages = push_outbox.message_pushes_of(repair.id)
    push_outbox.release(session, messages, held_until=repair.paused_until)
    repair.paused_until = repair.paused_by = None


def _place_of(repair: Repair, user: User) -> RepairPartner:
    place = next((p for p in repair.partners if p.user_id == user.id), None)
    if place is None:
        raise NotFound("No such repair conversation.")
    return place


def _by_client_id(session: Session, user_id: uuid.UUID, client_id: uuid.UUID) -> Repair | None:
    return session.scalar(
        select(Repair).where(Repair.started_by == user_id, Repair.client_id == client_id)
    )


def _replay(
    existing: Repair, couple: Couple, asked: tuple[str | None, uuid.UUID | None]
) -> Written:
    """The conversation again, for a retry of its start. Another topic or bid under its
    client_id is another conversation, refused rather than answered with the first one."""
    if existing.couple_id != couple.id or (existing.topic, existing.bid_id) != asked:
        raise Conflict("This client_id was used for another conversation: generate a new one.")
    return Written(present(existing), created=False)
