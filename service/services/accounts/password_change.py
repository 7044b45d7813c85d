"""A member changes their password: the other sign-in sessions of the account end."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.db import end_read
from service.domain.errors import Conflict, Unauthorized, invalid
from service.models import User
from service.security.passwords import check_password, hash_password
from service.services import members
from service.services.accounts.sessions import revoke_other_sessions
from service.services.members import Member

WRONG = "This is not the account's password."


def change_password(session: Session, member: Member, current: str, new: str) -> list[uuid.UUID]:
    """Give the account the password `new` if `current` is its password now (else 422 naming
    `current_password`), and end every other sign-in session of it: their refresh and access
    tokens stop working, their devices get no more pushes. The caller's session goes on.
    Returns the sessions ended, whose sockets the caller closes once this has committed.

    Both hashes are made outside any transaction (`end_read`), as a sign-in's check is. The
    account is then locked and read again. Its hash may have changed meanwhile: a sign-in
    made a stale hash of the same password again (`current` is checked once more against the
    new hash, and the change goes on), or a change committed (the same phone sending it twice:
    this one is a 409, as the password checked is no longer the account's). A session or
    account ended meanwhile is a 401."""
    new_hash: str | None = None
    for again in (False, True):
        stored = session.scalar(select(User.password_hash).where(User.id == member.user_id))
        end_read(session)
        if stored is None:
            raise Unauthorized(members.GONE)
        if not check_password(stored, current).matches:
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
        ended = revoke_other_sessions(session, user.id, member.session_id, "password_changed")
        session.commit()
        return ended
    raise _changed_meanwhile()  # changed again while it was checked again


def _changed_meanwhile() -> Conflict:
    return Conflict(
        "The password was changed by another request at the same moment: send the change "
        "again with the password that one set."
    )
