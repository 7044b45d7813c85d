"""Why a sign-in session ended (`auth_sessions.revoked_reason`; the export's `ended_because`)."""

from __future__ import annotations

LOGOUT = "logout"  # the phone signed out (POST /auth/logout)
ENDED_BY_MEMBER = "ended_by_member"  # the member ended it from another phone
SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"  # the member signed out of every phone
PASSWORD_CHANGED = "password_changed"  # the member changed the password on another phone
PASSWORD_RESET = "password_reset"  # the password was reset with a mailed code (on any phone)
REFRESH_TOKEN_REUSE = "refresh_token_reuse"  # a used refresh token came back: taken as stolen
REVOKED_BY_OPERATOR = "revoked_by_operator"
DISABLED_BY_OPERATOR = "disabled_by_operator"  # the account was disabled

ENDINGS = (
    LOGOUT,
    ENDED_BY_MEMBER,
    SIGNED_OUT_EVERYWHERE,
    PASSWORD_CHANGED,
    PASSWORD_RESET,
    REFRESH_TOKEN_REUSE,
    REVOKED_BY_OPERATOR,
    DISABLED_BY_OPERATOR,
)
