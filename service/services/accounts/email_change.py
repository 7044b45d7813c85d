"""A member changes the email of their account: a code mailed to the new address proves it is
theirs, then the account has it, and the old address is told."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from schemas.accounts import UserSchema
from service.clock import clock
from service.db import end_read
from service.domain import emails, invites
from service.domain.errors import Conflict, Unauthorized, invalid
from service.mail import Mail
from service.models import EmailChange, PasswordReset, User
from service.security.passwords import check_password
from service.security.tokens import TokenIssuer
from service.services import events, members
from service.services.accounts import mailed_codes
from service.services.accounts.sign_in import EMAIL_LENGTH, email_is, normalize_email
from service.services.members import Member
from service.services.profile import ME_UPDATED

# How long a mailed code works; how many codes may be tried against it, right or wrong; how
# long after it changed the address the same confirmation sent again (its answer lost) is
# answered again.
CODE_TTL = timedelta(minutes=30)
MOST_ATTEMPTS = 5
RETRY_WINDOW = timedelta(minutes=5)

WRONG_PASSWORD = "This is not the account's password."
SAME_EMAIL = "This is the account's email already."
WRONG_CODE = (
    "This code is not the one last mailed for a change of this account's email, has expired, "
    "or has been tried too often: ask for a new one."
)

_user_schema = UserSchema()


class EmailInUse(Conflict):
    """The new address is another account's (at the request, or by the confirmation)."""

    def __init__(self) -> None:
        super().__init__("Another account uses this email: choose another address.")


@dataclass(frozen=True)
class ChangeCode:
    """What to mail: the new address as the account will store it, and the code as it reads
    there."""

    email: str
    code: str


@dataclass(frozen=True)
class EmailChanged:
    """The account after a confirmation; `old_email`, the address it had, is None for a retry
    of the confirmation that changed it (nothing changed, nobody is told again)."""

    user: User
    old_email: str | None


def code_hash(issuer: TokenIssuer, code: str) -> str:
    """What is stored of a code: its HMAC under SECRET_KEY, as normalised (`invites.normalize`:
    typed in any case, with or without its dash), under a purpose of its own: a password-reset
    code is no change's."""
    return issuer.keyed_hash("email-change", invites.normalize(code))


def request_email_change(
    session: Session, issuer: TokenIssuer, member: Member, *, email: str, password: str
) -> ChangeCode:
    """A new code for changing the account's email to `email`, replacing any change it had
    waiting. `password` must be the account's (else 422 naming `password`); `email` neither
    the account's already nor too long once lower-cased (422 naming `email`), nor another
    account's (409). The password is checked outside any transaction, as a sign-in's is."""
    new_email = normalize_email(email)
    if len(new_email) > EMAIL_LENGTH:
        # Lower-casing can lengthen an address ("İ" becomes "i" and a combining dot).
        raise invalid("email", f"Longer than {EMAIL_LENGTH} characters once lower-cased.")
    account = session.execute(
        select(User.email, User.password_hash).where(User.id == member.user_id)
    ).first()
    end_read(session)
    if account is None:
        raise Unauthorized(members.GONE)
    if account.email in emails.stored_forms(email):
        raise invalid("email", SAME_EMAIL)
    if not check_password(account.password_hash, password).matches:
        raise invalid("password", WRONG_PASSWORD)
    # Two requests of one account at once: the second waits, then replaces the first's code.
    members.hold_live_account(session, member.user_id, to_change=True)
    try:
        members.live_member(session, member.user_id, member.session_id)
    except Unauthorized:
        session.rollback()
        raise
    if _taken(session, member.user_id, email):
        session.rollback()
        raise EmailInUse()
    now = clock.now()
    code = invites.new_code()
    session.execute(delete(EmailChange).where(EmailChange.user_id == member.user_id))
    session.add(
        EmailChange(
            user_id=member.user_id,
            new_email=new_email,
            code_hash=code_hash(issuer, code),
            requested_at=now,
            expires_at=now + CODE_TTL,
        )
    )
    session.commit()
    return ChangeCode(email=new_email, code=invites.display(code))


def change_mail(code: ChangeCode) -> Mail:
    """The mail to the new address that carries the code: plain text, the code on a line of
    its own."""
    minutes = int(CODE_TTL.total_seconds() // 60)
    text = (
        "Someone, most likely you, asked to make this address the email of their Reach "
        "account.\n\n"
        f"Your code: {code.code}\n\n"
        f"Type it in the app within {minutes} minutes to confirm the new address: the account "
        "then signs in with it, and its password-reset codes come here.\n\n"
        "If you did not ask for this, ignore this mail: no account gets this address.\n"
    )
    return Mail(
        to=code.email, subject="Confirm your new Reach email", text=text, kind="email_change"
    )


def confirm_email_change(
    session: Session, issuer: TokenIssuer, member: Member, code: str
) -> EmailChanged:
    """Give the account the address of its change waiting, if `code` is the one last mailed
    for it, unexpired, and one of the first MOST_ATTEMPTS codes tried against it (else 422
    naming `code`); 409, nothing changed, if another account has the address by then. The
    change is then used: a code mailed to the old address for a forgotten password stops
    working, and the account's phones are told its profile (`me.updated`). Its sessions go
    on: no phone is signed out.

    Each try takes one of the code's attempts before it is compared, in one statement, so
    however many are sent at once no more than MOST_ATTEMPTS are ever checked. The same
    confirmation sent again within RETRY_WINDOW of the one that made the change (its answer
    was lost), or at the same moment (a double tap), is answered with the account and changes
    nothing.

    The account is then locked (FOR UPDATE: the address is a key of the row) and the change
    read again: a new request meanwhile refuses this code (422). An account that took the
    address meanwhile is found, or its sign-up, under way, makes this one's write fail on
    the unique index (409 either way, as a sign-up of a taken address is)."""
    tried = mailed_codes.take_attempt(
        session,
        EmailChange,
        member.user_id,
        code_hash(issuer, code),
        most_attempts=MOST_ATTEMPTS,
        retry_window=RETRY_WINDOW,
    )
    session.commit()
    if tried is None:
        raise invalid("code", WRONG_CODE)
    account = session.get(User, member.user_id, with_for_update=True, populate_existing=True)
    if account is None:
        session.rollback()
        raise Unauthorized(members.GONE)
    try:
        members.live_member(session, member.user_id, member.session_id)
    except Unauthorized:
        session.rollback()
        raise
    change = session.get(EmailChange, member.user_id, populate_existing=True)
    now = clock.now()
    if change is None or change.code_hash != tried.code_hash:
        session.rollback()
        raise invalid("code", WRONG_CODE)
    if change.used_at is not None:
        # A double tap: the same confirmation, sent again before the first was answered,
        # made the change while this one waited for the account. Answered as its retry.
        session.rollback()
        return EmailChanged(_account(session, member.user_id), None)
    if _taken(session, member.user_id, change.new_email):
        session.rollback()
        raise EmailInUse()
    # A code mailed to the old address for a forgotten password stops working.
    session.execute(delete(PasswordReset).where(PasswordReset.user_id == member.user_id))
    old_email = account.email
    account.email = change.new_email
    account.profile_version += 1
    change.used_at = now
    # Kept only for the retry of this confirmation; the worker deletes it once over.
    change.expires_at = now + RETRY_WINDOW
    try:
        # The address is written here, not by a statement's autoflush: a sign-up that took
        # it meanwhile fails this write on the unique index, and nothing else.
        session.flush()
    except IntegrityError as exc:
        session.rollback()
        raise EmailInUse() from exc
    # The account's phones show the new address as `GET /me` does.
    events.notify_user(session, account.id, ME_UPDATED, _user_schema.dump(account))
    session.commit()
    return EmailChanged(account, old_email)


def changed_mail(changed: EmailChanged) -> Mail | None:
    """The notice to the address the account had (None for a retry: it was told): the
    account's email is now another one, shown masked, and what to do if this was not them.
    No code, no link: whoever reads the old mailbox learns nothing to act on."""
    if changed.old_email is None:
        return None
    text = (
        "The email of the Reach account of this address was changed to "
        f"{masked(changed.user.email)}. The account now signs in with that address, and its "
        "password-reset codes go there.\n\n"
        "If you made this change, there is nothing to do.\n\n"
        "If you did not, someone else may know your password. If the app is still signed in "
        "on your phone, change your password in it at once, then change the email back to "
        "this address. If it is not, contact Reach support, who can disable the account.\n"
    )
    return Mail(
        to=changed.old_email,
        subject="The email of your Reach account was changed",
        text=text,
        kind="email_changed",
    )


def masked(email: str) -> str:
    """The address with its local part hidden but its first character (`n***@example.com`):
    its owner recognises it, a stranger reading the old mailbox does not learn it."""
    local, at, domain = email.rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def _taken(session: Session, user_id: uuid.UUID, email: str) -> bool:
    """Whether another account has this address, in whichever form it was stored."""
    other = select(User.id).where(email_is(email), User.id != user_id).limit(1)
    return session.scalar(other) is not None


def _account(session: Session, user_id: uuid.UUID) -> User:
    account = session.get(User, user_id, populate_existing=True)
    end_read(session)
    if account is None:
        raise Unauthorized(members.GONE)
    return account


def prune_expired_email_changes(session: Session, now: datetime, *, batch: int = 1000) -> bool:
    """Delete up to `batch` changes expired by `now` (their codes refused anyway, a retry's
    included), passing over any another transaction holds; whether more may be left."""
    return mailed_codes.prune_expired(session, EmailChange, now, batch=batch)
