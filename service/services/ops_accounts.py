"""Operator accounts and their dashboard sessions: random ids, stored hashed, new at sign-in."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, delete, select, update
from sqlalchemy.orm import Session

from service.clock import clock
from service.db import end_read
from service.domain import emails, passwords
from service.domain.errors import Conflict, NotFound, Unauthorized, invalid
from service.models import Operator, OperatorSession
from service.security.passwords import check_password, hash_password
from service.services import ops_audit

MIN_PASSWORD = 12


@dataclass(frozen=True)
class SignedIn:
    operator: Operator
    session_token: str


def normalize_email(email: str) -> str:
    """An operator's address as members' are read (`service.domain.emails`)."""
    return emails.normalize(email)


def _by_email(email: str) -> ColumnElement[bool]:
    """The operator of `email`, stored in today's form or as typed before it (as members')."""
    return Operator.email.in_(emails.stored_forms(email))


def hash_session_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _check_password(password: str) -> None:
    if passwords.length(password) < MIN_PASSWORD:
        raise invalid("password", f"Use at least {MIN_PASSWORD} characters.")


def create_operator(
    session: Session, email: str, password: str, *, by: ops_audit.Actor
) -> Operator:
    typed, email = email, normalize_email(email)
    if "@" not in email:
        raise invalid("email", "Give the operator's email address.")
    _check_password(password)
    if session.scalar(select(Operator.id).where(_by_email(typed))) is not None:
        raise Conflict(f"An operator {email} exists already.")
    operator = Operator(email=email, password_hash=hash_password(password), created_at=clock.now())
    session.add(operator)
    session.flush()  # its id, for the log
    _record(session, by, "operator.create", operator)
    session.commit()
    return operator


def sign_in(session: Session, email: str, password: str, hours: int) -> SignedIn:
    """Check the password and open a new session with a fresh random id (never a given one)."""
    operator = session.scalar(select(Operator).where(_by_email(email)))
    end_read(session)  # no transaction holds the database while the password is checked
    checked = check_password(operator.password_hash if operator else None, password)
    if not checked.matches:
        raise Unauthorized("Email or password is wrong.")
    assert operator is not None
    if operator.disabled_at is not None:
        raise Unauthorized("This operator account is disabled.")
    if checked.stale:
        operator.password_hash = hash_password(password)
    now = clock.now()
    session.execute(delete(OperatorSession).where(OperatorSession.expires_at < now))
    token = secrets.token_urlsafe(32)
    session.add(
        OperatorSession(
            id_hash=hash_session_token(token),
            operator_id=operator.id,
            created_at=now,
            expires_at=now + timedelta(hours=hours),
        )
    )
    operator.last_login_at = now
    ops_audit.record(
        session, operator, "operator.sign_in", ops_audit.Target("operator", str(operator.id))
    )
    session.commit()
    return SignedIn(operator, token)


def session_operator(session: Session, token: str | None) -> Operator | None:
    """The operator behind a session token, if the session is live and the account enabled."""
    if not token or not isinstance(token, str):
        return None
    return session.scalar(
        select(Operator)
        .join(OperatorSession, OperatorSession.operator_id == Operator.id)
        .where(
            OperatorSession.id_hash == hash_session_token(token),
            OperatorSession.revoked_at.is_(None),
            OperatorSession.expires_at > clock.now(),
            Operator.disabled_at.is_(None),
        )
    )


def live_session_hashes(session: Session, hashes: Collection[str]) -> set[str]:
    """Those of `hashes` (`hash_session_token`) whose session is live and account enabled."""
    if not hashes:
        return set()
    return set(
        session.scalars(
            select(OperatorSession.id_hash)
            .join(Operator, Operator.id == OperatorSession.operator_id)
            .where(
                OperatorSession.id_hash.in_(set(hashes)),
                OperatorSession.revoked_at.is_(None),
                OperatorSession.expires_at > clock.now(),
                Operator.disabled_at.is_(None),
            )
        )
    )


def sign_out(session: Session, operator: Operator, token: str) -> None:
    session.execute(
        update(OperatorSession)
        .where(
            OperatorSession.id_hash == hash_session_token(token),
            OperatorSession.revoked_at.is_(None),
        )
        .values(revoked_at=clock.now())
    )
    ops_audit.record(
        session, operator, "operator.sign_out", ops_audit.Target("operator", str(operator.id))
    )
    session.commit()


def disable_operator(session: Session, email: str, *, by: ops_audit.Actor) -> int:
    """Someone who leaves: their sign-in is refused and every session of theirs ends now (an
    open dashboard's socket at its next refresh). Returns the sessions ended."""
    operator = _operator(session, email)
    if operator.disabled_at is not None:
        raise Conflict(f"The operator {operator.email} is disabled already.")
    operator.disabled_at = clock.now()
    ended = _end_sessions(session, operator)
    _record(session, by, "operator.disable", operator, {"sessions_ended": ended})
    session.commit()
    return ended


def enable_operator(session: Session, email: str, *, by: ops_audit.Actor) -> None:
    """Let a disabled operator sign in again (their old sessions stay ended)."""
    operator = _operator(session, email)
    if operator.disabled_at is None:
        raise Conflict(f"The operator {operator.email} is not disabled.")
    operator.disabled_at = None
    _record(session, by, "operator.enable", operator)
    session.commit()


def set_password(session: Session, email: str, password: str, *, by: ops_audit.Actor) -> int:
    """A new password; every session signed in with the old one ends. Returns how many."""
    _check_password(password)
    hashed = hash_password(password)  # before the account is locked: it takes ~150 ms
    operator = _operator(session, email)
    operator.password_hash = hashed
    ended = _end_sessions(session, operator)
    _record(session, by, "operator.set_password", operator, {"sessions_ended": ended})
    session.commit()
    return ended


def _record(
    session: Session,
    by: ops_audit.Actor,
    action: str,
    operator: Operator,
    detail: dict[str, int] | None = None,
) -> None:
    target = ops_audit.Target("operator", str(operator.id))
    ops_audit.record(session, by, action, target, {"email": operator.email, **(detail or {})})


def _operator(session: Session, email: str) -> Operator:
    """The operator account of `email`, locked; 404 if there is none."""
    operator = session.scalar(select(Operator).where(_by_email(email)).with_for_update())
    if operator is None:
        raise NotFound(f"No operator {normalize_email(email)}.")
    return operator


def _end_sessions(session: Session, operator: Operator) -> int:
    """End the operator's live sessions; how many there were."""
    now = clock.now()
    ended = session.execute(
        update(OperatorSession)
        .where(
            OperatorSession.operator_id == operator.id,
            OperatorSession.revoked_at.is_(None),
            OperatorSession.expires_at > now,
        )
        .values(revoked_at=now)
    )
    return int(getattr(ended, "rowcount", 0) or 0)
