"""Data custody: export what a person wrote; delete an account and the words in it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from sqlalchemy import Select, delete, or_, select, update
from sqlalchemy.orm import Session

from schemas.base import iso
from service.clock import clock
from service.db import read_snapshot
from service.domain.errors import Conflict, Unauthorized
from service.domain.quiet_hours import is_known_zone
from service.models import (
    AuthSession,
    Bid,
    BidResponse,
    CheckInAnswer,
    CheckInRound,
    Couple,
    CoupleEvent,
    Device,
    Invite,
    PushJob,
    RefreshToken,
    Repair,
    RepairMessage,
    RepairPartner,
    User,
)
from service.services import events
from service.services.members import GONE


def export(session: Session, user: User) -> dict[str, Any]:
    """Everything the caller wrote, across every couple they were in; nothing the partner wrote.
    Each list oldest first, rows of the same instant by id: the same order on every database.
    Each item names its couple, so an export made after several pairings says which one it was
    about. Rows are read as plain columns: a large account's export builds no ORM objects.
    Every list, and the profile, is read from one snapshot: a write committing meanwhile (a
    conversation and its first message) is wholly in the export or wholly out of it."""
    read_snapshot(session)
    me = user.id
    profile = session.get(User, me, populate_existing=True)
    if profile is None:
        raise Unauthorized(GONE)
    bids = select(Bid.id, Bid.couple_id, Bid.kind, Bid.note, Bid.status, Bid.created_at).where(
        Bid.sender_id == me
    )
    responses = (
        select(
            BidResponse.id,
            BidResponse.bid_id,
            Bid.couple_id,
            BidResponse.kind,
            BidResponse.note,
            BidResponse.back_at,
            BidResponse.created_at,
        )
        .join(Bid, Bid.id == BidResponse.bid_id)
        .where(BidResponse.responder_id == me)
    )
    started = select(Repair.id, Repair.couple_id, Repair.topic, Repair.created_at).where(
        Repair.started_by == me
    )
    joined = (
        select(
            RepairPartner.repair_id,
            Repair.couple_id,
            RepairPartner.last_read_seq,
            RepairPartner.resolved_at.is_not(None).label("heard"),
            RepairPartner.resolved_at,
        )
        .join(Repair, Repair.id == RepairPartner.repair_id)
        .where(RepairPartner.user_id == me)
    )
    messages = (
        select(
            RepairMessage.id,
            RepairMessage.repair_id,
            Repair.couple_id,
            RepairMessage.seq,
            RepairMessage.body,
            RepairMessage.step,
            RepairMessage.emotions,
            RepairMessage.written_at,
            RepairMessage.created_at,
        )
        .join(Repair, Repair.id == RepairMessage.repair_id)
        .where(RepairMessage.author_id == me)
    )
    checkins = (
        select(
            CheckInAnswer.round_id,
            CheckInRound.couple_id,
            CheckInRound.number.label("round_number"),
            CheckInAnswer.accessible,
            CheckInAnswer.responsive,
            CheckInAnswer.engaged,
            CheckInAnswer.created_at,
        )
        .join(CheckInRound, CheckInRound.id == CheckInAnswer.round_id)
        .where(CheckInAnswer.user_id == me)
    )
    couples = (
        select(Couple.id, Couple.paired_at, Couple.ended_at)
        .where(or_(Couple.partner_a_id == me, Couple.partner_b_id == me))
        .order_by(Couple.paired_at, Couple.id)
    )
    devices = select(
        Device.id,
        Device.platform,
        Device.app_version,
        Device.locale,
        Device.active,
        Device.created_at,
    ).where(Device.user_id == me)

    def rows(query: Select[*tuple[Any, ...]], *order: Any) -> list[Any]:
        return list(session.execute(query.order_by(*order)).mappings())

    # Dumped by schemas.custody.ExportSchema, the document's `Export`.
    return {
        "exported_at": clock.now(),
        "profile": profile,
        "couples": rows(couples),
        "devices": rows(devices, Device.created_at, Device.id),
        "bids_sent": rows(bids, Bid.created_at, Bid.id),
        "bid_responses": rows(responses, BidResponse.created_at, BidResponse.id),
        "repairs_started": rows(started, Repair.created_at, Repair.id),
        "repairs_joined": rows(joined, Repair.created_at, Repair.id),
        "repair_messages": rows(messages, RepairMessage.created_at, RepairMessage.id),
        "checkins": rows(checkins, CheckInAnswer.created_at, CheckInAnswer.id),
    }


def export_disposition(exported: dict[str, Any]) -> str:
    """The export offered as a file, named for the day it was made in the caller's time zone
    (in UTC for a zone this server cannot load: the export never fails on its name)."""
    zone = exported["profile"].timezone
    made: datetime = exported["exported_at"]
    day = made.astimezone(ZoneInfo(zone)).date() if is_known_zone(zone) else made.date()
    return f'attachment; filename="reach-export-{day.isoformat()}.json"'


def forget_couple_history(session: Session, couple_id: Any) -> None:
    """An ended couple's stream and pushes hold both partners' words: drop them.

    No push of the couple goes out any more: the unsent ones are cancelled, and so are the
    dead-lettered ones an operator could otherwise send again. Every push's payload (a bid's
    note, when the partner showed notes on the lock screen) is emptied, sent ones included.
    """
    session.execute(delete(CoupleEvent).where(CoupleEvent.couple_id == couple_id))
    session.execute(
        update(PushJob)
        .where(PushJob.couple_id == couple_id, PushJob.state.in_(("pending", "claimed", "dead")))
        .values(state="cancelled", finished_at=clock.now(), last_error="couple ended")
    )
    session.execute(update(PushJob).where(PushJob.couple_id == couple_id).values(payload={}))


def delete_account(session: Session, user: User) -> None:
    """Delete the account and the caller's words; the partner keeps only their own."""
    now = clock.now()
    for _ in range(3):
        locked = _lock_for_deletion(session, user, now)
        if locked is not None:
            break
        session.rollback()  # a join, an unpair or a new conversation committed meanwhile
    else:
        raise Conflict("Your pairing changed while the account was being deleted: try again.")
    account, couple_id = locked
    if account is None:  # another of the account's phones deleted it meanwhile
        session.rollback()
        return
    if couple_id is not None:
        couple = session.get(Couple, couple_id)
        if couple is not None and couple.ended_at is None:
            # The last cursor is taken while the couple is live (an ended one hands out none).
            events.record(
                session,
                couple,
                "couple.ended",
                {
                    "couple_id": str(couple.id),
                    "ended_by": str(user.id),
                    "ended_at": iso(now),
                    "reason": "account_deleted",
                },
            )
            couple.ended_at = now
            session.execute(update(User).where(User.couple_id == couple.id).values(couple_id=None))
    mine = or_(Couple.partner_a_id == user.id, Couple.partner_b_id == user.id)
    # Every couple the account was in is locked before its bids: the worker expiring a bid of
    # a former couple locks the couple, then the bid (and the account's row going clears each
    # couple's partner: the other order would deadlock with it).
    couples = select(Couple.id).where(mine).order_by(Couple.id).with_for_update()
    for ended_id in list(session.scalars(couples)):
        # The couple.ended event above is already on its way (published after commit).
        forget_couple_history(session, ended_id)
    session.execute(update(Bid).where(Bid.sender_id == user.id).values(note=None))
    session.execute(
        update(BidResponse).where(BidResponse.responder_id == user.id).values(note=None)
    )
    session.execute(update(Repair).where(Repair.started_by == user.id).values(topic=None))
    session.execute(delete(RepairMessage).where(RepairMessage.author_id == user.id))
    session.execute(delete(CheckInAnswer).where(CheckInAnswer.user_id == user.id))
    # Its sign-in sessions go with it, and their refresh tokens. The tokens are locked first:
    # a refresh locks its token before its session, which the account's cascade takes first.
    session.execute(
        select(RefreshToken.token_hash)
        .join(AuthSession, AuthSession.id == RefreshToken.session_id)
        .where(AuthSession.user_id == user.id)
        .order_by(RefreshToken.token_hash)
        .with_for_update(of=RefreshToken)
    ).all()
    session.delete(user)
    session.commit()


class _Locked(NamedTuple):
    account: User | None
    couple_id: uuid.UUID | None


def _lock_for_deletion(session: Session, user: User, now: datetime) -> _Locked | None:
    """Lock what the deletion changes, in the order every other write takes it: the account
    (None if it is gone) and its couple as they stand once both are locked, or None when a join
    or an unpair moved the account between the couple's read and the account's lock, or when
    the account started or paused a conversation meanwhile (which this did not lock first).

    1. The account's unused invites: a join claims its invite before it locks the two accounts,
       so a join under way finishes first (and the account is then seen paired), and a later
       one finds the code gone.
    2. The conversations the account started or paused: a repair write, and the worker ending a
       break, lock the conversation before the couple.
    3. The couple, then the account, read again: unpairing locks the couple before the accounts.
    """
    session.execute(
        update(Invite)
        .where(Invite.inviter_id == user.id, Invite.used_at.is_(None))
        .values(expires_at=now)
    )
    theirs = select(Repair.id).where(or_(Repair.started_by == user.id, Repair.paused_by == user.id))
    conversations = set(session.scalars(theirs.order_by(Repair.id).with_for_update()))
    couple_id = session.scalar(select(User.couple_id).where(User.id == user.id))
    if couple_id is not None:
        session.get(Couple, couple_id, with_for_update=True, populate_existing=True)
    account = session.get(User, user.id, with_for_update=True, populate_existing=True)
    if account is not None and account.couple_id != couple_id:
        return None
    # Read again under the couple's lock, which starting or pausing one takes: one that
    # committed while this waited for the couple is locked before it on the next try (its
    # partner writing in it would lock it, then wait for the couple this holds).
    if account is not None and not set(session.scalars(theirs)) <= conversations:
        return None
    return _Locked(account, couple_id)
