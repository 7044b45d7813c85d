"""Ending sign-in sessions: sign-out, every session of an account, one of them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select, true, update
from sqlalchemy.orm import Session

from service.clock import clock
from service.domain import sessions as endings
from service.domain.errors import NotFound, Unauthorized
from service.models import AuthSession, Device, RefreshToken, User
from service.security.tokens import hash_refresh_token
from service.services import devices, members, pages
from service.services.members import Member


def logout(session: Session, token: str) -> None:
    """Revoke the session the refresh token belongs to (idempotent)."""
    stored = session.get(RefreshToken, hash_refresh_token(token))
    if stored is None:
        return
    now = clock.now()
    session.execute(
        update(AuthSession)
        .where(AuthSession.id == stored.session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=endings.LOGOUT)
    )
    # The phone signed out: it shows no more of the couple's pushes.
    devices.sign_out(session, Device.session_id == stored.session_id, now)
    session.commit()


def count_signed_in_sessions(
    session: Session, user_id: uuid.UUID, now: datetime, access_seconds: int
) -> int:
    """How many sign-in sessions of the account a phone is signed in with: those it can still
    refresh, and those whose refresh tokens ran out while the access token it got last still
    works, `access_seconds` long (`members.signed_in_session`), as the member's own list shows
    them."""
    signed_in = select(func.count()).select_from(AuthSession)
    signed_in = signed_in.where(
        AuthSession.user_id == user_id, members.signed_in_session(now, access_seconds)
    )
    return int(session.scalar(signed_in) or 0)


def revoke_all_sessions(
    session: Session, user_id: uuid.UUID, reason: str, access_seconds: int
) -> int:
    """End every sign-in session of the account; none of its phones gets pushes any more
    (each turns on again when it signs in and registers). Returns how many of them a phone was
    signed in with (`count_signed_in_sessions`): those whose refresh and access tokens had
    all expired end too, but were over already."""
    now = clock.now()
    ended = _hold_live_sessions(session, user_id, true())
    signed_in = count_signed_in_sessions(session, user_id, now, access_seconds)
    _end_all(session, user_id, ended, reason, now)
    return signed_in


def _end_all(
    session: Session, user_id: uuid.UUID, ended: list[uuid.UUID], reason: str, now: datetime
) -> None:
    """End the account's sessions `ended` (held: all of them) and switch off its devices."""
    _end(session, ended, reason, now)
    devices.sign_out(session, Device.user_id == user_id, now)


def revoke_other_sessions(
    session: Session, user_id: uuid.UUID, keep: uuid.UUID, reason: str
) -> list[uuid.UUID]:
    """End every sign-in session of the account but `keep`, and stop pushing to the devices
    those sessions registered, and to those of no known session (registered before devices
    named theirs: migration 0012; the phone of `keep` turns its own on again by registering).
    Returns the sessions ended, to close their sockets once committed."""
    now = clock.now()
    ended = _hold_live_sessions(session, user_id, AuthSession.id != keep)
    _end(session, ended, reason, now)
    theirs = or_(Device.session_id.in_(ended), Device.session_id.is_(None))
    devices.sign_out(session, and_(Device.user_id == user_id, theirs), now)
    return ended


def _hold_live_sessions(
    session: Session, user_id: uuid.UUID, which: ColumnElement[bool]
) -> list[uuid.UUID]:
    """Lock the account's sessions not ended yet that `which` selects, to end them: the account
    row first, then the sessions in id order (their devices come after, as the caller switches
    them off). Every ending of more than one session of an account (signing out of every
    phone, a password change, an operator's disabling) takes them in this order, so two at once
    take turns: each taking the sessions in its own order, they deadlocked. The account is
    locked FOR NO KEY UPDATE: a sign-in, or a write naming the account (FOR KEY SHARE), goes on."""
    session.execute(select(User.id).where(User.id == user_id).with_for_update(key_share=True))
    return list(
        session.scalars(
            select(AuthSession.id)
            .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None), which)
            .order_by(AuthSession.id)
            .with_for_update()
        )
    )


def _end(session: Session, ended: list[uuid.UUID], reason: str, now: datetime) -> None:
    if ended:
        session.execute(
            update(AuthSession)
            .where(AuthSession.id.in_(ended))
            .values(revoked_at=now, revoked_reason=reason)
        )


@dataclass(frozen=True)
class SignedOutEverywhere:
    """What a sign-out of every phone ended, whose sockets the caller closes once committed:
    every session of the account (`sessions` None), or, answering its retry, the sessions it
    ended then (one signed in since goes on)."""

    sessions: tuple[uuid.UUID, ...] | None


def sign_out_everywhere(
    session: Session, user_id: uuid.UUID, session_id: uuid.UUID
) -> SignedOutEverywhere:
    """The member's own "sign out of all devices", asked with an access token of `session_id`:
    every session of the account ends.

    A session that this ended asking again is its retry (the phone never got the answer): it
    was done, and is answered so, ending nothing more; its sockets, and those of the other
    sessions it ended, close again (the first answer's closing may have been lost with it).
    Any other session ended, or account gone, is a 401."""
    try:
        members.live_member(session, user_id, session_id)
    except Unauthorized:
        ended = _ended_by_sign_out(session, user_id, session_id)
        if ended is None:
            raise
        return SignedOutEverywhere(tuple(ended))
    now = clock.now()
    ended = _hold_live_sessions(session, user_id, true())
    _end_all(session, user_id, ended, endings.SIGNED_OUT_EVERYWHERE, now)
    session.commit()
    return SignedOutEverywhere(None)


def _ended_by_sign_out(
    session: Session, user_id: uuid.UUID, session_id: uuid.UUID
) -> list[uuid.UUID] | None:
    """The sessions ended with `session_id` by one sign-out of every phone (its own first
    among them), if a sign-out of every phone ended it; else None."""
    ended_at = session.scalar(
        select(AuthSession.revoked_at).where(
            AuthSession.id == session_id,
            AuthSession.user_id == user_id,
            AuthSession.revoked_reason == endings.SIGNED_OUT_EVERYWHERE,
        )
    )
    if ended_at is None:
        return None
    ended = session.scalars(
        select(AuthSession.id).where(
            AuthSession.user_id == user_id,
            AuthSession.revoked_reason == endings.SIGNED_OUT_EVERYWHERE,
            AuthSession.revoked_at == ended_at,
        )
    )
    others = [ended_id for ended_id in ended if ended_id != session_id]
    return [session_id, *others]


def _signed_in(member: Member, now: datetime, access_seconds: int) -> ColumnElement[bool]:
    """The member's account's sessions that a phone is signed in with: those it can still use,
    or whose access token still works (`members.signed_in_session`), and the caller's own."""
    live = or_(members.signed_in_session(now, access_seconds), AuthSession.id == member.session_id)
    return and_(AuthSession.user_id == member.user_id, AuthSession.revoked_at.is_(None), live)


def list_sessions(
    session: Session, member: Member, access_seconds: int, *, limit: int, before: str | None
) -> dict[str, Any]:
    """Where the member's account is signed in, newest first, a page at a time (`pages`):
    each session with the device it registered last (None if none), the caller's marked.
    `access_seconds` is how long an access token works (ACCESS_TOKEN_SECONDS)."""
    query = select(AuthSession).where(_signed_in(member, clock.now(), access_seconds))
    if before:
        # One comparison of (created_at, id): ix_auth_sessions_user_live_created starts the
        # page where the last one ended, rather than reading every newer session first.
        query = query.where(pages.older_than_key(AuthSession, before))
    rows = list(
        session.scalars(
            query.order_by(AuthSession.created_at.desc(), AuthSession.id.desc()).limit(limit + 1)
        )
    )
    shown = rows[:limit]
    phones: dict[uuid.UUID, Device] = {}
    for device in session.scalars(
        select(Device)
        .where(Device.session_id.in_([row.id for row in shown]))
        .order_by(Device.updated_at, Device.id)
    ):
        assert device.session_id is not None
        phones[device.session_id] = device  # the one it registered last wins
    items = [
        {
            "id": row.id,
            "created_at": row.created_at,
            "last_refreshed_at": row.last_refreshed_at,
            "current": row.id == member.session_id,
            "device": phones.get(row.id),
        }
        for row in shown
    ]
    return {"items": items, "next": pages.next_of(rows, limit)}


def end_session(
    session: Session, member: Member, session_id: uuid.UUID, access_seconds: int
) -> None:
    """End one session of the member's account that a phone is signed in with (the caller's own
    too: a sign-out; one whose refresh tokens expired while an access token of it still works,
    `access_seconds` long, too), as signing out of every phone ends each: its refresh and access
    tokens stop working and its devices get no more pushes. Its sockets close once this has
    committed (the caller closes them). Any other session, of another account or ended, is a
    404."""
    now = clock.now()
    signed_in = _signed_in(member, now, access_seconds)
    ended = _hold_live_sessions(
        session, member.user_id, and_(AuthSession.id == session_id, signed_in)
    )
    if not ended:
        session.rollback()
        raise NotFound("No such session of yours: it has ended, or was never this account's.")
    _end(session, ended, endings.ENDED_BY_MEMBER, now)
    devices.sign_out(session, Device.session_id.in_(ended), now)
    session.commit()
