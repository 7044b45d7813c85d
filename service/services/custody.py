"""Data custody: forget a couple's shared history; delete an account and the words in it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from schemas.base import iso
from service.clock import clock
from service.domain.errors import Conflict
from service.models import (
    AuthSession,
    Bid,
    BidResponse,
    CheckInAnswer,
    Couple,
    CoupleEvent,
    Invite,
    PushJob,
    RefreshToken,
    Repair,
    RepairMessage,
    User,
)
from service.services import events


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
