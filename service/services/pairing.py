"""Pairing: invite codes, joining a partner, the couple, unpairing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select, update
from sqlalchemy.orm import Session

from schemas.base import iso
from schemas.couples import PartnerSchema
from service.clock import clock
from service.domain import invites
from service.domain.errors import Conflict, NotFound, Unauthorized, invalid
from service.models import Couple, Invite, User
from service.services import custody, events, members

_partners = PartnerSchema(many=True)
_PAIRED = "You are already paired: invite codes are for finding a partner."

# PostgreSQL advisory locks (two-key form) of a member's invite codes: the first key names them.
_INVITES_LOCK = 0x494E5654  # "INVT"


@dataclass(frozen=True)
class CoupleView:
    """The couple as one partner sees it."""

    id: uuid.UUID
    partner: User
    paired_at: datetime


@dataclass(frozen=True)
class Joined:
    """A join's result: the couple as the joiner sees it, and whether this call paired them."""

    couple: CoupleView
    created: bool


def create_invite(session: Session, user: User, ttl_minutes: int) -> Invite:
    if user.couple_id is not None:
        raise Conflict("You are already paired. Unpair first to invite someone else.")
    _one_change_of_codes_at_a_time(session, user.id)
    now = clock.now()
    # Older unused invites of this user stop working: one live code at a time.
    _end_live_codes(session, user.id, now)
    # The invite names the account: held against a deletion (after its invites, in the
    # deletion's order), and read again, as a join of the caller's last code may have paired
    # them meanwhile.
    members.hold_live_account(session, user.id)
    if session.scalar(select(User.couple_id).where(User.id == user.id)) is not None:
        session.rollback()
        raise Conflict("You are already paired. Unpair first to invite someone else.")
    for _ in range(5):
        code = invites.new_code()
        if session.get(Invite, code) is None:
            break
    invite = Invite(
        code=code,
        inviter_id=user.id,
        created_at=now,
        expires_at=now + timedelta(minutes=ttl_minutes),
    )
    session.add(invite)
    session.commit()
    return invite


def live_invite(session: Session, user: User) -> Invite:
    """The caller's code that still pairs: theirs alone to read back (an app restarted)."""
    if user.couple_id is not None:
        raise Conflict(_PAIRED)
    invite = session.scalar(_live_codes(user.id, clock.now()).order_by(Invite.created_at.desc()))
    if invite is None:
        raise NotFound("You have no invite code that still works: create one.")
    return invite


def withdraw_invite(session: Session, user: User) -> None:
    """The caller's code stops working; nothing to withdraw is no error (a retried withdrawal)."""
    if user.couple_id is not None:
        raise Conflict(_PAIRED)
    _one_change_of_codes_at_a_time(session, user.id)
    _end_live_codes(session, user.id, clock.now())
    # A join of the code may have paired them while this waited for the code's row.
    if session.scalar(select(User.couple_id).where(User.id == user.id)) is not None:
        session.rollback()
        raise Conflict(_PAIRED)
    session.commit()


def _live_codes(user_id: uuid.UUID, now: datetime) -> Select[Invite]:
    """The member's codes a join would still take: unused, unexpired, made since they last
    paired with anyone."""
    partner = or_(Couple.partner_a_id == user_id, Couple.partner_b_id == user_id)
    return select(Invite).where(
        Invite.inviter_id == user_id,
        Invite.used_at.is_(None),
        Invite.expires_at > now,
        ~exists().where(partner, Couple.paired_at > Invite.created_at),
    )


def _end_live_codes(session: Session, user_id: uuid.UUID, now: datetime) -> None:
    """The member's live codes stop working. Their expiry becomes the moment they were made,
    not now: a join on its way read the clock before this, and would find a code expiring
    now still unexpired (its claim compares the expiry with the time it read)."""
    session.execute(
        update(Invite)
        .where(Invite.inviter_id == user_id, Invite.used_at.is_(None), Invite.expires_at > now)
        .values(expires_at=Invite.created_at)
    )


def _one_change_of_codes_at_a_time(session: Session, user_id: uuid.UUID) -> None:
    """Wait for any other request changing this member's codes to end. Two asked for at once
    each expired the codes it could see, not the other's uncommitted one, and both added
    theirs: two live codes. Not the account's row: a join holds its code's row while it waits
    for the accounts, and this request expires that code, so the other order would deadlock.
    SQLite runs one write transaction at a time already."""
    if session.get_bind().dialect.name != "postgresql":
        return
    member = int.from_bytes(user_id.bytes[-4:], "big", signed=True)
    session.execute(select(func.pg_advisory_xact_lock(_INVITES_LOCK, member)))


def join(session: Session, user: User, typed_code: str) -> Joined:
    """Pair the caller with the code's maker. The same code sent again by the person it paired,
    while that couple lasts (a phone whose answer was lost), answers the couple again."""
    now = clock.now()
    code = invites.normalize(typed_code)
    if user.couple_id is not None:
        earlier = _joined_with(session, user, code)
        if earlier is not None:
            return Joined(earlier, created=False)
        # Read again: an unpair may have ended the couple since the caller was read (a join
        # sent again as the partner unpairs), and the caller, now unpaired, joins as anyone.
        if session.scalar(select(User.couple_id).where(User.id == user.id)) is not None:
            raise Conflict("You are already paired. Unpair first to join someone else.")
        session.rollback()
    # Claim the invite atomically: of two people racing for one code, one wins. Who used it is
    # written once both accounts are locked: writing it here would lock the caller's account
    # (its foreign key) before the inviter's, and two people joining each other's codes at
    # once would each hold one account and wait for the other.
    claim = session.execute(
        update(Invite)
        .where(Invite.code == code, Invite.used_at.is_(None), Invite.expires_at > now)
        .values(used_at=now)
        .returning(Invite.inviter_id, Invite.created_at)
    ).one_or_none()
    if claim is None:
        session.rollback()
        # Sent again while the first join was pairing them: that join has committed by now.
        earlier = _joined_with(session, user, code)
        if earlier is not None:
            return Joined(earlier, created=False)
        raise invalid("code", "This code is not valid: it may be mistyped, used or expired.")
    inviter_id, invited_at = claim
    if inviter_id == user.id:
        session.rollback()
        raise invalid("code", "This is your own code: share it with your partner.")
    # Both locked in one order and read again: a join of either of them may have committed
    # since they were read.
    accounts = {
        account.id: account
        for account in session.scalars(
            select(User)
            .where(User.id.in_((inviter_id, user.id)))
            .order_by(User.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    }
    inviter, me = accounts.get(inviter_id), accounts.get(user.id)
    if (
        inviter is None
        or inviter.couple_id is not None
        or inviter.disabled_at is not None
        or _paired_since(session, inviter.id, invited_at)
    ):
        session.rollback()
        raise invalid("code", "This code is no longer valid: ask your partner for a new one.")
    if me is None:  # deleted from another phone meanwhile
        session.rollback()
        raise Unauthorized(members.GONE)
    if me.couple_id is not None:
        session.rollback()
        raise Conflict("You are already paired. Unpair first to join someone else.")
    session.execute(update(Invite).where(Invite.code == code).values(used_by_id=me.id))
    couple = Couple(partner_a_id=inviter.id, partner_b_id=me.id, paired_at=now)
    session.add(couple)
    session.flush()
    inviter.couple_id = couple.id
    me.couple_id = couple.id
    events.record(
        session,
        couple,
        "couple.paired",
        {
            "couple_id": str(couple.id),
            "partner_ids": [str(inviter.id), str(me.id)],
            # The inviter's phone learns whom it paired with from this event alone.
            "partners": _partners.dump([inviter, me]),
            "paired_at": iso(now),
        },
    )
    session.commit()
    return Joined(CoupleView(couple.id, inviter, couple.paired_at), created=True)


def _joined_with(session: Session, user: User, code: str) -> CoupleView | None:
    """The caller's live couple if this code made it: the caller used it, and the couple pairs
    them with its maker at the moment it was used."""
    made = session.scalar(
        select(Couple)
        .join(User, User.couple_id == Couple.id)
        .join(
            Invite,
            and_(
                Invite.code == code,
                Invite.used_by_id == User.id,
                Invite.inviter_id == Couple.partner_a_id,
                Invite.used_at == Couple.paired_at,
            ),
        )
        .where(User.id == user.id, Couple.partner_b_id == user.id, Couple.ended_at.is_(None))
    )
    inviter = session.get(User, made.partner_a_id) if made and made.partner_a_id else None
    if made is None or inviter is None:
        session.rollback()
        return None
    session.commit()
    return CoupleView(made.id, inviter, made.paired_at)


def _paired_since(session: Session, user_id: uuid.UUID, moment: datetime) -> bool:
    """Whether the user paired with anyone after `moment`: a code they made before then was
    for a pairing that is over, and stays spent after an unpair."""
    partner = or_(Couple.partner_a_id == user_id, Couple.partner_b_id == user_id)
    return bool(session.scalar(select(exists().where(partner, Couple.paired_at > moment))))


def current_couple(session: Session, user: User) -> CoupleView:
    if user.couple_id is None:
        raise NotFound("You are not paired.")
    couple = session.get(Couple, user.couple_id)
    partner_id = couple.partner_of(user.id) if couple else None
    partner = session.get(User, partner_id) if partner_id else None
    if couple is None or partner is None:
        raise NotFound("You are not paired.")
    return CoupleView(couple.id, partner, couple.paired_at)


def require_couple(session: Session, user: User) -> Couple:
    """The caller's live couple, locked for nothing; 404 when unpaired."""
    couple = session.get(Couple, user.couple_id) if user.couple_id else None
    if couple is None or couple.ended_at is not None:
        raise NotFound("You are not paired.")
    return couple


def unpair(session: Session, user: User, couple_id: uuid.UUID | None = None) -> None:
    """End the caller's couple. With `couple_id`, only that couple: an unpair sent again after
    its answer was lost, once the caller has paired anew, ends nothing."""
    couple = session.get(Couple, user.couple_id, with_for_update=True) if user.couple_id else None
    if couple is None or couple.ended_at is not None:
        raise NotFound("You are not paired.")
    if couple_id is not None and couple.id != couple_id:
        raise NotFound("You are not paired in that couple any more: see GET /couple.")
    now = clock.now()
    data: dict[str, Any] = {
        "couple_id": str(couple.id),
        "ended_by": str(user.id),
        "ended_at": iso(now),
    }
    # The last cursor is taken while the couple is live (an ended one hands out none).
    events.record(session, couple, "couple.ended", data)
    couple.ended_at = now
    session.execute(update(User).where(User.couple_id == couple.id).values(couple_id=None))
    # The stream and unsent pushes quote both partners; each keeps their own words (export).
    custody.forget_couple_history(session, couple.id)
    session.commit()
    session.expire(user, ["couple_id"])
