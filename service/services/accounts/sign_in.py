"""Sign-up and sign-in: accounts by email, new accounts, new sessions and the pairs they get."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, case, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service.clock import clock
from service.db import end_read
from service.domain import emails
from service.domain.errors import Conflict, Unauthorized, invalid
from service.models import AuthSession, RefreshToken, User
from service.security.passwords import check_password, hash_password
from service.security.tokens import TokenIssuer, hash_refresh_token, new_refresh_token
from service.services import members

# The longest email stored (as the schema takes it, and as the column holds it).
EMAIL_LENGTH = 254


class EmailTaken(Conflict):
    """A sign-up of an address that has an account (`sign_up_retry`: unless it signs in)."""

    def __init__(self) -> None:
        super().__init__("An account with this email exists: sign in instead.")


@dataclass(frozen=True)
class SignedIn:
    user: User
    access_token: str
    refresh_token: str
    expires_in: int
    session_id: uuid.UUID


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
        raise EmailTaken()
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
        raise EmailTaken() from exc
    signed_in = start_session(session, issuer, refresh_days, user)
    session.commit()
    return signed_in


def login(
    session: Session,
    issuer: TokenIssuer,
    refresh_days: int,
    *,
    email: str,
    password: str,
    made_after: datetime | None = None,
) -> SignedIn:
    """Start a session for the right password. The account's hash may change between the
    check and the session: a change of the password refuses it (401), while another sign-in
    that made a stale hash of the same password again does not, so the password is checked
    once more against the hash it finds (a 401 if that changed again meanwhile).

    `made_after`: only an account made after then signs in (an older one is refused as an
    unknown one is, after a check of the password that costs what a real one does)."""
    for _ in range(2):
        signed_in = _login(session, issuer, refresh_days, email, password, made_after)
        if signed_in is not None:
            return signed_in
    raise Unauthorized("Email or password is wrong.")


def _login(
    session: Session,
    issuer: TokenIssuer,
    refresh_days: int,
    email: str,
    password: str,
    made_after: datetime | None,
) -> SignedIn | None:
    """`login` once; None if the account's hash is no longer the one checked."""
    user = session.scalar(account_by_email(email))
    end_read(session)
    if user is not None and made_after is not None and user.created_at <= made_after:
        user = None
    password_hash = user.password_hash if user else None
    checked = check_password(password_hash, password)
    if not checked.matches or user is None:
        raise Unauthorized("Email or password is wrong.")
    if user.disabled_at is not None:
        raise Unauthorized("This account is disabled. Contact support.")
    rehashed = hash_password(password) if checked.stale else None
    # Its new session names it: held against a deletion from another phone meanwhile, and
    # read again, as an operator disabling the account, or a change of its password, meanwhile
    # ends only the sessions it sees: the password checked must still be the account's.
    if not members.hold_account(session, user.id):
        session.rollback()
        raise Unauthorized("Email or password is wrong.")
    now = session.execute(
        select(User.disabled_at, User.password_hash).where(User.id == user.id)
    ).one()
    if now.disabled_at is not None:
        session.rollback()
        raise Unauthorized("This account is disabled. Contact support.")
    if now.password_hash != password_hash:
        session.rollback()
        return None
    if rehashed is not None:
        user.password_hash = rehashed
    signed_in = start_session(session, issuer, refresh_days, user)
    session.commit()
    return signed_in


def start_session(session: Session, issuer: TokenIssuer, refresh_days: int, user: User) -> SignedIn:
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
    return SignedIn(user, access, refresh_token, issuer.access_seconds, auth_session.id)
