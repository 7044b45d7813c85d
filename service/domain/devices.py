"""Why a device stopped getting pushes: its `disabled_reason`, null while it is active."""

from __future__ import annotations

# FCM said the token no longer reaches an app: it is never sent to again.
UNREGISTERED = "unregistered"
# FCM said the token is not a registration token at all (INVALID_ARGUMENT about the token,
# not the message): it never becomes one, and is never sent to again either.
INVALID_TOKEN = "invalid_token"
# The reasons a token is dead for good: registering it again is refused.
DEAD = frozenset({UNREGISTERED, INVALID_TOKEN})
# FCM said the token belongs to another Firebase project than the credentials' (usually wrong
# credentials): switched off, and back on when the phone registers it again.
OTHER_PROJECT = "sender_id_mismatch"
# The sign-in session that registered the token ended (signed out, revoked).
SIGNED_OUT = "signed_out"
# The account registered more devices since than it keeps.
REPLACED = "replaced"
# An operator disabled the account, or switched off this one device.
ACCOUNT_DISABLED = "account_disabled"
OPERATOR = "operator"

DISABLED_REASONS = (
    UNREGISTERED,
    INVALID_TOKEN,
    OTHER_PROJECT,
    SIGNED_OUT,
    REPLACED,
    ACCOUNT_DISABLED,
    OPERATOR,
)
