"""Accounts and sessions: register, sign in, rotate refresh tokens, list and end sessions, sign
out, change and reset passwords, change the email."""

from service.services.accounts.email_change import (
    ChangeCode,
    EmailChanged,
    EmailInUse,
    change_mail,
    changed_mail,
    confirm_email_change,
    prune_expired_email_changes,
    request_email_change,
)
from service.services.accounts.password_change import change_password
from service.services.accounts.password_reset import (
    CODE_TTL,
    PasswordWasReset,
    ResetCode,
    prune_expired_resets,
    request_password_reset,
    reset_mail,
    reset_password,
)
from service.services.accounts.pruning import SignInsPruned, prune_expired_sign_ins
from service.services.accounts.rotation import refresh, rotating_session
from service.services.accounts.sessions import (
    SignedOutEverywhere,
    count_signed_in_sessions,
    end_session,
    list_sessions,
    logout,
    revoke_all_sessions,
    revoke_other_sessions,
    sign_out_everywhere,
)
from service.services.accounts.sign_in import (
    EMAIL_LENGTH,
    EmailTaken,
    SignedIn,
    account_by_email,
    email_is,
    login,
    normalize_email,
    register,
)
from service.services.accounts.sign_up_retry import (
    SIGN_UP_RETRY_WINDOW,
    may_be_a_retry,
    sign_up_again,
)

__all__ = [
    "CODE_TTL",
    "EMAIL_LENGTH",
    "SIGN_UP_RETRY_WINDOW",
    "ChangeCode",
    "EmailChanged",
    "EmailInUse",
    "EmailTaken",
    "PasswordWasReset",
    "ResetCode",
    "SignInsPruned",
    "SignedIn",
    "SignedOutEverywhere",
    "account_by_email",
    "change_mail",
    "change_password",
    "changed_mail",
    "confirm_email_change",
    "count_signed_in_sessions",
    "email_is",
    "end_session",
    "list_sessions",
    "login",
    "logout",
    "may_be_a_retry",
    "normalize_email",
    "prune_expired_email_changes",
    "prune_expired_resets",
    "prune_expired_sign_ins",
    "refresh",
    "register",
    "request_email_change",
    "request_password_reset",
    "reset_mail",
    "reset_password",
    "revoke_all_sessions",
    "revoke_other_sessions",
    "rotating_session",
    "sign_out_everywhere",
    "sign_up_again",
]
