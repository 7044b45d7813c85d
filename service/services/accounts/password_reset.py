"""A forgotten password: a code mailed to the account's address, then a new password with it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.clock import clock
from service.db import end_read
from service.domain import invites
from service.domain import sessions as endings
from service.domain.errors import Unauthorized, invalid
from service.mail import Mail
from service.models import PasswordReset, User
from service.security.passwords import check_password, hash_password
from service.security.tokens import TokenIssuer
from service.services import members
from service.services.accounts import mailed_codes
from service.services.accounts.sessions import revoke_other_sessions
from service.services.accounts.sign_in import SignedIn, account_by_email, start_session

# How long a mailed code works; how many codes may be tried against it, right or wrong; how
# long after it set the password the same reset sent again (its answer lost) signs in.
CODE_TTL = timedelta(minutes=30)
MOST_ATTEMPTS = 5
RETRY_WINDOW = timedelta(minutes=5)

WRONG_CODE = (
    "This code is not the one last mailed for this email, has expired, or has been tried too "
    "often: ask for a new one."
)
DISABLED = "This account is disabled. Contact support."


@dataclass(frozen=True)
class ResetCode:
    """What to mail: the address as the account stores it, and the code as it reads there."""

    email: str
    code: str


@dataclass(frozen=True)
class PasswordWasReset:
    """The caller's new sign-in, and the account's sessions the reset ended (their sockets
    close once it has committed)."""

    signed_in: SignedIn
    ended: list[uuid.UUID]


def code_hash(issuer: TokenIssuer, code: str) -> str:
    """What is stored of a code: its HMAC under SECRET_KEY (`TokenIssuer.keyed_hash`), as
    normalised (`invites.normalize`: typed in any case, with or without its dash)."""
    return issuer.keyed_hash("password-reset", invites.normalize(code))


def request_password_reset(session: Session, issuer: TokenIssuer, email: str) -> ResetCode | None:
    """A new code for the account of `email`, replacing any code it had; None for an address
    without an account, or with a disabled one (the caller answers both the same way)."""
    user = session.scalar(account_by_email(email))
    end_read(session)
    if user is None or user.disabled_at is not None:
        return None
    # Two requests of one account at once: the second waits, then replaces the first's code.
    if not members.hold_account(session, user.id, to_change=True):
        session.rollback()
        return None
    if session.scalar(select(User.disabled_at).where(User.id == user.id)) is not None:
        session.rollback()
        return None
    now = clock.now()
    code = invites.new_code()
    session.execute(delete(PasswordReset).where(PasswordReset.user_id == user.id))
    session.add(
        PasswordReset(
            user_id=user.id,
            code_hash=code_hash(issuer, code),
            requested_at=now,
            expires_at=now + CODE_TTL,
        )
    )
    session.commit()
    return ResetCode(email=user.email, code=invites.display(code))


def reset_mail(code: ResetCode) -> Mail:
    """The mail that carries a code: plain text, the code on a line of its own."""
    minutes = int(CODE_TTL.total_seconds() // 60)
    text = (
        "Someone, most likely you, asked to reset the password of the Reach account of this "
        "address.\n\n"
        f"Your code: {code.code}\n\n"
        f"Type it in the app within {minutes} minutes to choose a new password. Every phone "
        "signed in to the account will be signed out.\n\n"
        "If you did not ask for this, ignore this mail: the password stays as it is.\n"
    )
    return Mail(
        to=code.email, subject="Reset your Reach password", text=text, kind="password_reset"
    )


def reset_password(
    session: Session,
    issuer: TokenIssuer,
    refresh_days: int,
    *,
    email: str,
    code: str,
    password: str,
) -> PasswordWasReset:
    """Give the account of `email` the password `password`, if `code` is the one last mailed
    for it, unexpired, and one of the first MOST_ATTEMPTS codes tried against it (else 422
    naming `code`). Every sign-in session of the account ends (refresh and access tokens stop
    working, devices get no more pushes) and the caller gets a new one: the phone that reset
    the password is signed in.

    Each try takes one of the code's attempts before it is compared, in one statement, so
    however many are sent at once no more than MOST_ATTEMPTS are ever checked. The same reset
    sent again within RETRY_WINDOW of the one that used the code (its answer was lost: the
    same code and the password it set) signs in again and changes nothing else.

    The new hash is made outside any transaction; the account and its code are then locked and
    read again: a new code requested meanwhile refuses this one (422); another reset that used
    this code first (a double tap) makes this one its retry, which signs in with the same
    password and is refused with another. Tries that took the code's last attempts meanwhile do
    not refuse it: this one had an attempt of its own."""
    user = session.scalar(account_by_email(email))
    if user is None:
        end_read(session)
        raise invalid("code", WRONG_CODE)
    tried = mailed_codes.take_attempt(
        session,
        PasswordReset,
        user.id,
        code_hash(issuer, code),
        most_attempts=MOST_ATTEMPTS,
        retry_window=RETRY_WINDOW,
    )
    session.commit()
    if tried is None:
        raise invalid("code", WRONG_CODE)
    if user.disabled_at is not None:
        raise Unauthorized(DISABLED)
    if tried.used_at is not None:
        again = _sign_in_again(session, issuer, refresh_days, user, password)
        return PasswordWasReset(again, [])
    new_hash = hash_password(password)
    if not members.hold_account(session, user.id, to_change=True):
        session.rollback()
        raise invalid("code", WRONG_CODE)
    reset = session.get(PasswordReset, user.id, populate_existing=True)
    account = session.get(User, user.id, populate_existing=True)
    now = clock.now()
    if reset is None or reset.code_hash != tried.code_hash:
        session.rollback()
        raise invalid("code", WRONG_CODE)
    if reset.used_at is not None:
        # A double tap: the same reset, sent again before the first was answered, used the
        # code while this one made its hash. Answered as its retry: signed in if it set the
        # same password.
        used_at = reset.used_at
        session.rollback()
        if now >= used_at + RETRY_WINDOW:
            raise invalid("code", WRONG_CODE)
        return PasswordWasReset(_sign_in_again(session, issuer, refresh_days, user, password), [])
    if account is None or account.disabled_at is not None:
        session.rollback()
        raise Unauthorized(DISABLED if account is not None else members.GONE)
    account.password_hash = new_hash
    account.password_changed_at = now
    account.password_changed_by = None  # no session's change: none of them retries it
    reset.used_at = now
    signed_in = start_session(session, issuer, refresh_days, account)
    ended = revoke_other_sessions(session, account.id, signed_in.session_id, endings.PASSWORD_RESET)
    session.commit()
    return PasswordWasReset(signed_in, ended)


def _sign_in_again(
    session: Session,
    issuer: TokenIssuer,
    refresh_days: int,
    user: User,
    password: str,
) -> SignedIn:
    """The retry of a reset that used this code: a new sign-in session if `password` is the
    one it set (the account's now), else the code is refused as used."""
    if not check_password(user.password_hash, password).matches:
        raise invalid("code", WRONG_CODE)
    if not members.hold_account(session, user.id):
        session.rollback()
        raise invalid("code", WRONG_CODE)
    now_hash = session.scalar(select(User.password_hash).where(User.id == user.id))
    if now_hash != user.password_hash:
        session.rollback()
        raise invalid("code", WRONG_CODE)
    signed_in = start_session(session, issuer, refresh_days, user)
    session.commit()
    return signed_in


def prune_expired_resets(session: Session, now: datetime, *, batch: int = 1000) -> bool:
    """Delete up to `batch` codes expired by `now` (refused anyway, a retry's included),
    passing over any another transaction holds; whether more may be left."""
    return mailed_codes.prune_expired(session, PasswordReset, now, batch=batch)
