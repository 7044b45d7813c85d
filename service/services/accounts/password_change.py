"""A member changes their password: the other sign-in sessions of the account end."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from service.clock import clock
from service.db import end_read
from service.domain import sessions as endings
from service.domain.errors import Conflict, Unauthorized, invalid
from service.models import AuthSession, User
from service.security.passwords import check_password, hash_password
from service.services import members
from service.services.accounts.sessions import revoke_other_sessions
from service.services.members import Member

WRONG = "This is not the account's password."
# A change sent again this soon after by the session that made it is its retry: the phone never
# got the first answer (a tunnel, the app suspended mid-request).
RETRY_WINDOW = timedelta(minutes=5)


def change_password(session: Session, member: Member, current: str, new: str) -> list[uuid.UUID]:
    """Give the account the password `new` if `current` is its password now (else 422 naming
    `current_password`), and end every other sign-in session of it: their refresh and access
    tokens stop working, their devices get no more pushes. The caller's session goes on.
    Returns the sessions ended, whose sockets the caller closes once this has committed.

    The same change sent again by the session that made it, within RETRY_WINDOW (its answer
    was lost: `current` is now the old password, `new` the account's), is answered again and
    changes nothing: it returns the sessions that change ended, whose sockets may still be
    open (the first answer's closing of them may have been lost with it).

    Both hashes are made outside any transaction (`end_read`), as a sign-in's check is. The
    account is then locked and read again. Its hash may have changed meanwhile: a sign-in
    made a stale hash of the same password again (`current` is checked once more against the
    new hash, and the change goes on), or a change committed (the same phone sending it twice:
    this one is a 409, as the password checked is no longer the account's, unless it was the
    same change). A session or account ended meanwhile is a 401."""
    new_hash: str | None = None
    for again in (False, True):
        account = session.execute(
            select(User.password_hash, User.password_changed_at, User.password_changed_by).where(
                User.id == member.user_id
            )
        ).first()
        end_read(session)
        if account is None:
            raise Unauthorized(members.GONE)
        stored = account.password_hash
        if not check_password(stored, current).matches:
            if _retried(account, member, new):
                return _ended_by_change(session, member, account.password_changed_at)
            raise _changed_meanwhile() if again else invalid("current_password", WRONG)
        new_hash = new_hash or hash_password(new)
        user = session.get(User, member.user_id, with_for_update=True, populate_existing=True)
        if user is None:
            session.rollback()
            raise Unauthorized(members.GONE)
        try:
            members.live_member(session, member.user_id, member.session_id)
        except Unauthorized:
            session.rollback()
            raise
        if user.password_hash != stored:
            session.rollback()
            continue
        user.password_hash = new_hash
        user.password_changed_at = clock.now()
        user.password_changed_by = member.session_id
        ended = revoke_other_sessions(session, user.id, member.session_id, endings.PASSWORD_CHANGED)
        session.commit()
        return ended
    raise _changed_meanwhile()  # changed again while it was checked again


def _retried(
    account: Row[str, datetime | None, uuid.UUID | None], member: Member, new: str
) -> bool:
    """Whether a change whose `current` is not the account's password is the retry of the one
    that made `new` its password: made by this session, within RETRY_WINDOW."""
    changed_at, changed_by = account.password_changed_at, account.password_changed_by
    if changed_by != member.session_id or changed_at is None:
        return False
    if clock.now() >= changed_at + RETRY_WINDOW:
        return False
    return check_password(account.password_hash, new).matches


def _ended_by_change(
    session: Session, member: Member, changed_at: datetime | None
) -> list[uuid.UUID]:
    """The sessions the change made at `changed_at` ended, whose sockets its retry closes (the
    first answer may never have closed them: its process stopped after the commit, or the word
    to the other processes was lost). Later changes and sign-ins end none of these."""
    ended = list(
        session.scalars(
            select(AuthSession.id).where(
                AuthSession.user_id == member.user_id,
                AuthSession.id != member.session_id,
                AuthSession.revoked_reason == endings.PASSWORD_CHANGED,
                AuthSession.revoked_at >= changed_at,
            )
        )
    )
    end_read(session)
    return ended


def _changed_meanwhile() -> Conflict:
    return Conflict(
        "The password was changed by another request at the same moment: send the change "
        "again with the password that one set."
    )
