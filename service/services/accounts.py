"""Accounts and sessions: register, sign in, rotate refresh tokens, sign out."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, case, delete, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.clock import clock
from service.db import end_read
from service.domain import emails
from service.domain.errors import Conflict, Unauthorized, invalid
from service.models import AuthSession, Device, RefreshToken, User
from service.security.passwords import check_password, hash_password
from service.security.tokens import TokenIssuer, hash_refresh_token, new_refresh_token
from service.services import devices, members

# The longest email stored (as the schema takes it, and as the column holds it).
EMAIL_LENGTH = 254


@dataclass(frozen=True)
class SignedIn:
    user: User
    access_token: str
    refresh_token: str
    expires_in: int


def normalize_email(email: str) -> str:
    return emails.normalize(email)


def email_is(email: str) -> ColumnElement[bool]:
    """An account of this address, in whichever form it was stored (`emails.stored_forms`)."""
    return User.email.in_(emails.stored_forms(email))


def account_by_email(email: str) -> Select[User]:
    """The account this address signs in to: the one stored in today's form, else one stored
    in an older form as typed (both may exist: an old one in full-width letters, say)."""
    today = User.email == normalize_email(email)
    return select(User).where(email_is(email)).order_by(case((today, 0), else_=1)).limit(1)


def register(
    session: Session,
    issuer: TokenIssuer,
    refresh_days: int,
    *,
    email: str,
    password: str,
    display_name: str,
    timezone: str,
) -> SignedIn:
    taken = email_is(email)
    email = normalize_email(email)
    if len(email) > EMAIL_LENGTH:
        # Lower-casing can lengthen an address ("İ" becomes "i" and a combining dot).
        raise invalid("email", f"Longer than {EMAIL_LENGTH} characters once lower-cased.")
    if session.scalar(select(User.id).where(taken).limit(1)) is not None:
        raise Conflict("An account with this email exists: sign in instead.")
    end_read(session)
    user = User(
        email=email,
        password_hash=hash_password(password),
        display_name=display_name.strip(),
        timezone=timezone,
        created_at=clock.now(),
    )
    session.add(user)
    try:
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("An account with this email exists: sign in instead.") from exc
    signed_in = _start_session(session, issuer, refresh_days, user)
    session.commit()
    return signed_in


def login(
    session: Session, issuer: TokenIssuer, refresh_days: int, *, email: str, password: str
) -> SignedIn:
    user = session.scalar(account_by_email(email))
    end_read(session)
    checked = check_password(user.password_hash if user else None, password)
    if not checked.matches or user is None:
        raise Unauthorized("Email or password is wrong.")
    if user.disabled_at is not None:
        raise Unauthorized("This account is disabled. Contact support.")
    rehashed = hash_password(password) if checked.stale else None
    # Its new session names it: held against a deletion from another phone meanwhile, and
    # read again, as an operator disabling the account meanwhile ends only the sessions it sees.
    if not members.hold_account(session, user.id):
        session.rollback()
        raise Unauthorized("Email or password is wrong.")
    if session.scalar(select(User.disabled_at).where(User.id == user.id)) is not None:
        session.rollback()
        raise Unauthorized("This account is disabled. Contact support.")
    if rehashed is not None:
        user.password_hash = rehashed
    signed_in = _start_session(session, issuer, refresh_days, user)
    session.commit()
    return signed_in


def refresh(
    session: Session,
    issuer: TokenIssuer,
    refresh_days: int,
    token: str,
    *,
    grace: timedelta,
) -> SignedIn:
    """Rotate a refresh token. A token used twice revokes its whole session family: someone
    else holds it too.

    Except a retry of a rotation whose answer was lost: presented again within `grace` of its
    rotation, while the token that rotation issued is still unused (`_retried_successor`), it
    gets a new pair, and that unused token is set aside (only hashes are stored, so it cannot
    be sent again). The session keeps one live refresh token, the one this answer carries; the
    set-aside one, presented later, is a reuse: someone got the answer after all.

    The access token issued with the set-aside one is left to expire (ACCESS_TOKEN_SECONDS).
    In the case the window is for, it reached nobody. Access tokens are bound to the session,
    not to a refresh token, so refusing that one alone would take a record of refused tokens
    read on every request; and should its refresh token ever be presented, the session ends,
    and every access token of it with the session.
    """
    now = clock.now()
    stored = session.get(RefreshToken, hash_refresh_token(token), with_for_update=True)
    if stored is None:
        raise Unauthorized("The refresh token is not valid: sign in again.")
    auth_session = session.get(AuthSession, stored.session_id, with_for_update=True)
    assert auth_session is not None
    if auth_session.revoked_at is not None:
        raise Unauthorized("The session has ended: sign in again.")
    replaced = None
    if stored.used_at is not None:
        replaced = _retried_successor(session, stored, now, grace)
        if replaced is None:
            _revoke_for_reuse(session, auth_session, now)
            session.commit()
            raise Unauthorized("This refresh token was already used; the session is revoked.")
    if stored.expires_at <= now:
        raise Unauthorized("The refresh token has expired: sign in again.")
    user = session.get(User, auth_session.user_id)
    if user is None or user.disabled_at is not None:
        raise Unauthorized("This account cannot sign in.")
    if replaced is None:
        stored.used_at = now
    else:
        replaced.used_at = now
    auth_session.last_refreshed_at = now
    signed_in = _issue(session, issuer, refresh_days, user, auth_session, parent=stored)
    session.commit()
    return signed_in


def rotating_session(
    session: Session, token: str, now: datetime, grace: timedelta
) -> uuid.UUID | None:
    """The sign-in session that `refresh` would rotate for this token: it is unused, or its
    reuse is a retry within `grace`; None when it would be refused (unknown, of an ended
    session, or reused). Read without locks: the rate limit's key, decided before `refresh`."""
    row = session.execute(
        select(RefreshToken.session_id, RefreshToken.used_at, RefreshToken.successor_hash)
        .join(AuthSession, AuthSession.id == RefreshToken.session_id)
        .where(
            RefreshToken.token_hash == hash_refresh_token(token),
            AuthSession.revoked_at.is_(None),
        )
    ).first()
    if row is None:
        return None
    session_id, used_at, successor_hash = row
    if used_at is None:
        return session_id
    if successor_hash is None or not _within_grace(used_at, now, grace):
        return None
    unused = exists().where(
        RefreshToken.token_hash == successor_hash, RefreshToken.used_at.is_(None)
    )
    return session_id if session.scalar(select(unused)) else None


def _within_grace(used_at: datetime, now: datetime, grace: timedelta) -> bool:
    """A reuse this soon after the rotation may be its retry (never, with no grace)."""
    return now < used_at + grace


def _retried_successor(
    session: Session, stored: RefreshToken, now: datetime, grace: timedelta
) -> RefreshToken | None:
    """The token `stored`'s rotation issued, locked, if presenting `stored` again now is a
    retry of that rotation: within `grace` of it, and that token still unused (once used, the
    chain has moved on, and `stored` must have been copied). None otherwise.

    A refresh with the successor itself locks it before the session, which the caller holds:
    rather than wait for it (each would wait for the other), a successor locked by such a
    refresh is taken as used, as it is about to be. Both tokens shown at once is a copy anyway.
    """
    if stored.used_at is None or stored.successor_hash is None:
        return None
    if not _within_grace(stored.used_at, now, grace):
        return None
    return session.scalar(
        select(RefreshToken)
        .where(
            RefreshToken.token_hash == stored.successor_hash,
            RefreshToken.used_at.is_(None),
        )
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )


def _revoke_for_reuse(session: Session, auth_session: AuthSession, now: datetime) -> None:
    """End the session of a token presented twice, and stop its phones' pushes."""
    auth_session.revoked_at = now
    auth_session.revoked_reason = "refresh_token_reuse"
    devices.sign_out(session, Device.session_id == auth_session.id, now)


def logout(session: Session, token: str) -> None:
    """Revoke the session the refresh token belongs to (idempotent)."""
    stored = session.get(RefreshToken, hash_refresh_token(token))
    if stored is None:
        return
    now = clock.now()
    session.execute(
        update(AuthSession)
        .where(AuthSession.id == stored.session_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason="logout")
    )
    # The phone signed out: it shows no more of the couple's pushes.
    devices.sign_out(session, Device.session_id == stored.session_id, now)
    session.commit()


def count_usable_sessions(session: Session, user_id: uuid.UUID, now: datetime) -> int:
    """How many sign-in sessions of the account its phones can still use."""
    usable = select(func.count()).select_from(AuthSession)
    usable = usable.where(AuthSession.user_id == user_id, members.usable_session(now))
    return int(session.scalar(usable) or 0)


def revoke_all_sessions(session: Session, user_id: uuid.UUID, reason: str) -> int:
    """End every sign-in session of the account; none of its phones gets pushes any more
    (each turns on again when it signs in and registers). Returns how many of them were
    usable (`members.usable_session`): those whose refresh tokens expired end too (an access
    token of theirs may still be valid for a few minutes) but were over already."""
    now = clock.now()
    usable = count_usable_sessions(session, user_id, now)
    session.execute(
        update(AuthSession)
        .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
        .values(revoked_at=now, revoked_reason=reason)
    )
    devices.sign_out(session, Device.user_id == user_id, now)
    return usable


@dataclass(frozen=True)
class SignInsPruned:
    """What one call of `prune_expired_sign_ins` deleted, and whether it stopped short."""

    tokens: int
    sessions: int
    more: bool


def prune_expired_sign_ins(
    session: Session, now: datetime, *, batch: int = 1000, most_batches: int = 20
) -> SignInsPruned:
    """Delete the refresh tokens that have expired (refused anyway; a used one is kept until
    then to reveal its reuse), `batch` per transaction and at most `most_batches` of them, and
    the sign-in sessions left with no token: those phones are signed out, and so are their
    devices (`devices.sign_out`)."""
    tokens = sessions = 0
    for _ in range(most_batches):
        expired = session.execute(
            select(RefreshToken.token_hash, RefreshToken.session_id)
            .where(RefreshToken.expires_at <= now)
            .limit(batch)
        ).all()
        if not expired:
            return SignInsPruned(tokens, sessions, more=False)
        session.execute(
            delete(RefreshToken).where(RefreshToken.token_hash.in_([t for t, _ in expired]))
        )
        tokens += len(expired)
        # Sessions before their devices, in the order a registration takes them.
        ended = list(
            session.scalars(
                select(AuthSession.id)
                .where(
                    AuthSession.id.in_({s for _, s in expired}),
                    ~exists().where(RefreshToken.session_id == AuthSession.id),
                )
                .with_for_update()
            )
        )
        if ended:
            devices.sign_out(session, Device.session_id.in_(ended), now)
            session.execute(delete(AuthSession).where(AuthSession.id.in_(ended)))
            sessions += len(ended)
        session.commit()
        if len(expired) < batch:
            return SignInsPruned(tokens, sessions, more=False)
    return SignInsPruned(tokens, sessions, more=True)


def _start_session(
    session: Session, issuer: TokenIssuer, refresh_days: int, user: User
) -> SignedIn:
    auth_session = AuthSession(user_id=user.id, created_at=clock.now())
    session.add(auth_session)
    session.flush()
    return _issue(session, issuer, refresh_days, user, auth_session)


def _issue(
    session: Session,
    issuer: TokenIssuer,
    refresh_days: int,
    user: User,
    auth_session: AuthSession,
    *,
    parent: RefreshToken | None = None,
) -> SignedIn:
    """A new pair for the session; `parent`, the token traded for it, then names its hash."""
    now = clock.now()
    refresh_token = new_refresh_token()
    token_hash = hash_refresh_token(refresh_token)
    session.add(
        RefreshToken(
            token_hash=token_hash,
            session_id=auth_session.id,
            issued_at=now,
            expires_at=now + timedelta(days=refresh_days),
        )
    )
    if parent is not None:
        parent.successor_hash = token_hash
    access = issuer.access_token(user.id, auth_session.id, now)
    return SignedIn(user, access, refresh_token, issuer.access_seconds)
