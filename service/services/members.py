"""Who is calling: the live member behind a token, with their couple and partner, in one query.

Every request and socket write checks the account and the sign-in session again (a revoked
session or a disabled account stops working at once). The same query brings what most writes
need next, the caller's live couple and partner, so a bid costs no further lookups.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, bindparam, case, exists, func, or_, select
from sqlalchemy.orm import Session

from service.clock import clock
from service.domain.errors import Unauthorized
from service.models import AuthSession, Couple, RefreshToken, User
from service.models.base import table
from service.security.tokens import LEEWAY_SECONDS, TokenIssuer

# Refusing a request whose account (or sign-in session) has gone meanwhile.
GONE = "The account or session no longer exists: sign in again."


@dataclass(frozen=True, slots=True)
class Partner:
    """What a write needs to know about the other partner: who, and when they can be reached."""

    id: uuid.UUID
    display_name: str
    timezone: str
    quiet_start: str | None
    quiet_end: str | None
    notes_on_lock_screen: bool


class LiveCouple(NamedTuple):
    """The member's couple as the event stream needs it."""

    id: uuid.UUID
    partner_ids: tuple[uuid.UUID | None, uuid.UUID | None]


@dataclass(frozen=True, slots=True)
class Member:
    """A signed-in, enabled member; `couple_id`/`partner` only while the couple is live."""

    user_id: uuid.UUID
    session_id: uuid.UUID
    display_name: str
    couple_id: uuid.UUID | None
    partner: Partner | None

    @property
    def couple(self) -> LiveCouple | None:
        if self.couple_id is None or self.partner is None:
            return None
        return LiveCouple(self.couple_id, (self.user_id, self.partner.id))


_users = table(User)
_sessions = table(AuthSession)
_refresh_tokens = table(RefreshToken)
_couples = table(Couple)
_partners = _users.alias("partner")

_LIVE_MEMBER = (
    select(
        _users.c.display_name,
        _users.c.disabled_at,
        _sessions.c.revoked_at,
        _couples.c.id,
        _partners.c.id,
        _partners.c.display_name,
        _partners.c.timezone,
        _partners.c.quiet_start,
        _partners.c.quiet_end,
        _partners.c.notes_on_lock_screen,
    )
    .select_from(
        _users.join(_sessions, _sessions.c.user_id == _users.c.id)
        .outerjoin(
            _couples, and_(_couples.c.id == _users.c.couple_id, _couples.c.ended_at.is_(None))
        )
        .outerjoin(
            _partners,
            and_(
                _partners.c.id
                == case(
                    (_couples.c.partner_a_id == _users.c.id, _couples.c.partner_b_id),
                    else_=_couples.c.partner_a_id,
                ),
                _partners.c.couple_id == _couples.c.id,
            ),
        )
    )
    .where(_users.c.id == bindparam("user_id"), _sessions.c.id == bindparam("session_id"))
)


def live_member(
    session: Session,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    *,
    usable_at: datetime | None = None,
) -> Member:
    """The member of a signed-in session, refused once the session or the account is gone.

    With `usable_at`, also once the session can no longer be refreshed then (its refresh
    tokens expired, `usable_session`): a socket's, whose access token was read once, on
    connect, and which would otherwise write until the next sweep of the sessions."""
    query = _LIVE_MEMBER
    if usable_at is not None:
        query = query.add_columns(usable_session(usable_at).label("usable"))
    row = (
        session.connection().execute(query, {"user_id": user_id, "session_id": session_id}).first()
    )
    if row is None:
        raise Unauthorized(GONE)
    name, disabled_at, revoked_at, couple_id, partner_id = row[:5]
    if revoked_at is not None or (usable_at is not None and not row[10]):
        raise Unauthorized("The session has ended: sign in again.")
    if disabled_at is not None:
        raise Unauthorized("This account is disabled. Contact support.")
    partner = None
    if couple_id is not None and partner_id is not None:
        partner = Partner(partner_id, row[5], row[6], row[7], row[8], bool(row[9]))
    return Member(user_id, session_id, name, couple_id if partner else None, partner)


def authenticate(session: Session, issuer: TokenIssuer, token: str) -> Member:
    """The member behind an access token, if the token, session and account are all live."""
    claims = issuer.read_access_token(token, clock.now())
    return live_member(session, claims.user_id, claims.session_id)


# The member a write computed its rows from is still who they were: the session is live, the
# account enabled, and the couple and partner unchanged in every field a member carries.
# A write that takes a remembered member checks this in its own statement.
STILL_LIVE: ColumnElement[bool] = exists().where(
    _users.c.id == bindparam("member_user_id"),
    _users.c.display_name == bindparam("member_display_name"),
    _users.c.disabled_at.is_(None),
    _users.c.couple_id == bindparam("member_couple_id"),
    _sessions.c.id == bindparam("member_session_id"),
    _sessions.c.user_id == _users.c.id,
    _sessions.c.revoked_at.is_(None),
    _couples.c.id == _users.c.couple_id,
    _couples.c.ended_at.is_(None),
    _partners.c.id == bindparam("member_partner_id"),
    _partners.c.id
    == case(
        (_couples.c.partner_a_id == _users.c.id, _couples.c.partner_b_id),
        else_=_couples.c.partner_a_id,
    ),
    _partners.c.couple_id == _couples.c.id,
    _partners.c.display_name == bindparam("member_partner_display_name"),
    _partners.c.timezone == bindparam("member_partner_timezone"),
    _partners.c.quiet_start.is_not_distinct_from(bindparam("member_partner_quiet_start")),
    _partners.c.quiet_end.is_not_distinct_from(bindparam("member_partner_quiet_end")),
    _partners.c.notes_on_lock_screen == bindparam("member_partner_notes_on_lock_screen"),
)


def still_live_params(member: Member) -> dict[str, Any]:
    """The parameters of `STILL_LIVE` for a paired member."""
    partner = member.partner
    if member.couple_id is None or partner is None:
        raise ValueError("only a paired member can be proven still live")
    return {
        "member_user_id": member.user_id,
        "member_display_name": member.display_name,
        "member_couple_id": member.couple_id,
        "member_session_id": member.session_id,
        "member_partner_id": partner.id,
        "member_partner_display_name": partner.display_name,
        "member_partner_timezone": partner.timezone,
        "member_partner_quiet_start": partner.quiet_start,
        "member_partner_quiet_end": partner.quiet_end,
        "member_partner_notes_on_lock_screen": partner.notes_on_lock_screen,
    }


class RecentMembers:
    """Paired members this process looked up lately, by sign-in session (bounded, oldest out).

    What is remembered is never trusted on its own: a write that starts from it proves it in
    the same statement (`STILL_LIVE`) and looks the member up again if that fails.
    """

    def __init__(self, size: int = 20_000) -> None:
        self.size = size
        self._members: dict[tuple[uuid.UUID, uuid.UUID], Member] = {}

    def get(self, user_id: uuid.UUID, session_id: uuid.UUID) -> Member | None:
        return self._members.get((user_id, session_id))

    def remember(self, member: Member) -> None:
        key = (member.user_id, member.session_id)
        if member.partner is None:
            self._members.pop(key, None)
            return
        self._members[key] = member
        try:
            while len(self._members) > self.size:
                self._members.pop(next(iter(self._members)), None)
        except RuntimeError:  # another thread changed the map meanwhile: evict next time
            pass

    def forget_session(self, user_id: uuid.UUID, session_id: uuid.UUID) -> None:
        self._members.pop((user_id, session_id), None)


def hold_live_account(session: Session, user_id: uuid.UUID, *, to_change: bool = False) -> None:
    """`hold_account`, refused (401, the transaction rolled back) once the account is gone."""
    if not hold_account(session, user_id, to_change=to_change):
        session.rollback()
        raise Unauthorized(GONE)


def hold_account(session: Session, user_id: uuid.UUID, *, to_change: bool = False) -> bool:
    """Lock the account against its deletion until the transaction ends, before writing a row
    that names it (whose foreign key would wait for a deletion under way, then fail once it
    commits): FOR KEY SHARE, which only a deletion's or an operator's FOR UPDATE waits for.
    `to_change` the account row itself, read again once held: FOR NO KEY UPDATE, which another
    change of it waits for too, but a write naming it does not. False once the account is gone."""
    held = select(_users.c.id).where(_users.c.id == user_id)
    lock = held.with_for_update(read=not to_change, key_share=True)
    return session.execute(lock).first() is not None


def user_of(session: Session, member: Member) -> User:
    """The member's account row, for writes that change it or read more of it."""
    user = session.get(User, member.user_id)
    if user is None:
        raise Unauthorized(GONE)
    return user


def usable_session(now: datetime) -> ColumnElement[bool]:
    """A sign-in session its phone can still use at `now`: not ended, and holding a refresh
    token that is neither expired nor traded. One whose tokens have all expired is over (its
    refresh is refused), though the worker's hourly prune (`accounts.prune_expired_sign_ins`)
    deletes it only later."""
    live_token = exists().where(
        _refresh_tokens.c.session_id == _sessions.c.id,
        _refresh_tokens.c.expires_at > now,
        _refresh_tokens.c.used_at.is_(None),
    )
    return and_(_sessions.c.revoked_at.is_(None), live_token)


def signed_in_session(now: datetime, access_seconds: int) -> ColumnElement[bool]:
    """A sign-in session a phone is signed in with at `now`: usable (`usable_session`), or not
    ended and holding an access token that still works. Its refresh tokens may all have
    expired while the access token it got last, issued when it signed in or last refreshed,
    works for up to `access_seconds` more: until then it can still be seen, and ended."""
    issued = func.coalesce(_sessions.c.last_refreshed_at, _sessions.c.created_at)
    since = now - timedelta(seconds=access_seconds + LEEWAY_SECONDS)
    access_works = and_(_sessions.c.revoked_at.is_(None), issued > since)
    return or_(usable_session(now), access_works)


def live_sessions(session: Session, session_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Which of these sign-in sessions still hold: usable (`usable_session`), their account
    enabled."""
    rows = session.execute(
        select(_sessions.c.id)
        .join(_users, _users.c.id == _sessions.c.user_id)
        .where(
            _sessions.c.id.in_(session_ids),
            usable_session(clock.now()),
            _users.c.disabled_at.is_(None),
        )
    )
    return set(rows.scalars())
