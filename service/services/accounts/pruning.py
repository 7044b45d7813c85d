"""The worker's prune of expired sign-ins: their refresh tokens, then the sessions left with none,
whose devices are signed out."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from service.db import groups_held
from service.models import AuthSession, Device, RefreshToken
from service.services import devices


@dataclass(frozen=True)
class SignInsPruned:
    """What one call of `prune_expired_sign_ins` deleted, and whether it stopped short; the
    sessions it passed over (a device of theirs held), for the next call to pass over too."""

    tokens: int
    sessions: int
    more: bool
    passed_over: frozenset[uuid.UUID] = field(default_factory=frozenset)


def prune_expired_sign_ins(
    session: Session,
    now: datetime,
    *,
    batch: int = 1000,
    most_batches: int = 20,
    passed_over: Collection[uuid.UUID] = (),
) -> SignInsPruned:
    """Delete the refresh tokens that have expired (refused anyway; a used one is kept until
    then to reveal its reuse), `batch` per transaction and at most `most_batches` of them, and
    the sign-in sessions left with no token: those phones are signed out, and so are their
    devices (`devices.sign_out`). A token, or its session, that another transaction holds (one
    left open: a `psql` session, a stuck request) is passed over, not waited for: the session
    keeps its expired tokens until a later prune, which ends it. So is a session that would
    end, one of whose devices another transaction holds: it keeps its tokens, and is one of
    the call's `passed_over`, which the calls that go on after it (`more`) are given, so as
    not to read it again."""
    tokens = sessions = 0
    passed = set(passed_over)
    for _ in range(most_batches):
        # Each token with its session, as a refresh takes them, and before their devices, in
        # the order a registration takes them.
        query = (
            select(RefreshToken.token_hash, RefreshToken.session_id)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .where(RefreshToken.expires_at <= now)
        )
        if passed:
            query = query.where(RefreshToken.session_id.not_in(passed))
        expired = session.execute(
            query.limit(batch).with_for_update(of=(RefreshToken, AuthSession), skip_locked=True)
        ).all()
        if not expired:
            return SignInsPruned(tokens, sessions, False, frozenset(passed))
        ending = _ending(session, expired)
        held = _phones_held(session, ending)
        passed |= held
        gone = [token for token, of in expired if of not in held]
        if gone:
            session.execute(delete(RefreshToken).where(RefreshToken.token_hash.in_(gone)))
            tokens += len(gone)
        ended = [of for of in ending if of not in held]
        if ended:
            devices.sign_out(session, Device.session_id.in_(ended), now)
            session.execute(delete(AuthSession).where(AuthSession.id.in_(ended)))
            sessions += len(ended)
        session.commit()
        if len(expired) < batch:
            return SignInsPruned(tokens, sessions, False, frozenset(passed))
    return SignInsPruned(tokens, sessions, True, frozenset(passed))


def _ending(session: Session, expired: Collection[tuple[str, uuid.UUID]]) -> list[uuid.UUID]:
    """The sessions of `expired` (token, session; each locked) left with no token once those
    go: none is added meanwhile, as adding one locks its session."""
    hashes = [token for token, _ in expired]
    others = exists().where(
        RefreshToken.session_id == AuthSession.id, RefreshToken.token_hash.not_in(hashes)
    )
    return list(
        session.scalars(
            select(AuthSession.id).where(AuthSession.id.in_({s for _, s in expired}), ~others)
        )
    )


def _phones_held(session: Session, ending: Collection[uuid.UUID]) -> set[uuid.UUID]:
    """The sessions of `ending` one of whose devices another transaction holds; the others'
    devices locked. Ending a session writes each of its devices (switched off, then no longer
    of the session deleted): one held would be waited for until the statement timeout."""
    if not ending:
        return set()
    phones = select(Device.id, Device.session_id).where(Device.session_id.in_(ending))
    return groups_held(session, phones)
