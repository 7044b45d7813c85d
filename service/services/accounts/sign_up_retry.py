"""A sign-up sent again whose answer was lost: a sign-in to the account it made, while new."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from service.clock import clock
from service.db import end_read
from service.domain.errors import Unauthorized
from service.security.tokens import TokenIssuer
from service.services.accounts.sign_in import EmailTaken, SignedIn, account_by_email, login

# How long after an account was made a sign-up of it with its password signs in to it: a
# phone retries a request whose answer it lost within seconds, not days.
SIGN_UP_RETRY_WINDOW = timedelta(minutes=10)


def may_be_a_retry(session: Session, email: str) -> bool:
    """Whether a sign-up of `email` (taken) may be one sent again: its account is new. Only
    then is its password checked, and the sign-up held to the sign-in's limits."""
    user = session.scalar(account_by_email(email))
    end_read(session)
    return user is not None and user.created_at > clock.now() - SIGN_UP_RETRY_WINDOW


def sign_up_again(
    session: Session, issuer: TokenIssuer, refresh_days: int, *, email: str, password: str
) -> SignedIn:
    """A new sign-in session of the account, as `login` starts one, if it was made within
    SIGN_UP_RETRY_WINDOW and `password` is its password; the account as stored (the retry's
    name and time zone are not looked at). Anything else is the sign-up's 409 (`EmailTaken`),
    which says no more than before: not whether the password was right, nor why."""
    made_after = clock.now() - SIGN_UP_RETRY_WINDOW
    try:
        return login(
            session, issuer, refresh_days, email=email, password=password, made_after=made_after
        )
    except Unauthorized as exc:
        raise EmailTaken() from exc
