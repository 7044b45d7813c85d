"""Refresh-token rotation: a new pair for an unused token, a lost answer's retry, a reuse."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from service.clock import clock
from service.domain import sessions as endings
from service.domain.errors import Unauthorized
from service.models import AuthSession, Device, RefreshToken, User
from service.security.tokens import TokenIssuer, hash_refresh_token
from service.services import devices
from service.services.accounts.sign_in import SignedIn, _issue


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
            raise Unauthorized(
                "This refresh token was already used; the session is revoked: sign in again."
            )
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
    auth_session.revoked_reason = endings.REFRESH_TOKEN_REUSE
    devices.sign_out(session, Device.session_id == auth_session.id, now)
