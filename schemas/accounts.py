"""Registration, sign-in, tokens and the caller's profile."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields, validate, validates, validates_schema

from schemas.base import Schema, StrictBoolean, UTCDateTime, name
from schemas.devices import PLATFORMS
from service.domain import emails, passwords
from service.domain.quiet_hours import (
    TIMEZONE_MESSAGE,
    is_known_zone,
    is_valid_timezone,
    parse_clock,
)


def _check_timezone(value: str) -> None:
    if not is_valid_timezone(value):
        raise ValidationError(TIMEZONE_MESSAGE)


def _check_known_zone(value: str) -> None:
    """A profile change may send back a zone stored before the place rule (the service refuses
    it unless it is the one stored: `profile.update_profile`)."""
    if not is_known_zone(value):
        raise ValidationError(TIMEZONE_MESSAGE)


_TIMEZONE = {
    "description": "An IANA place name (Area/Location) or UTC; not EST, GMT or Etc/GMT+5",
    "example": "Europe/Berlin",
}


class QuietHoursSchema(Schema):
    start = fields.String(required=True, metadata={"example": "22:00"})
    end = fields.String(required=True, metadata={"example": "07:00"})

    @validates("start")
    def _start(self, value: str, **_: Any) -> None:
        _check_clock(value)

    @validates("end")
    def _end(self, value: str, **_: Any) -> None:
        _check_clock(value)

    @validates_schema
    def _window(self, data: dict[str, str], **_: Any) -> None:
        """The same time twice would be no window at all (compared as times, not as text)."""
        try:
            same = parse_clock(data["start"]) == parse_clock(data["end"])
        except (KeyError, ValueError):
            return  # a missing or malformed time is already named by its own field
        if same:
            raise ValidationError("start and end must differ", "end")


def _check_clock(value: str) -> None:
    try:
        parse_clock(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from exc


class TrimmedEmail(fields.Email):
    """An email address without the spaces around it, which a keyboard's suggestion adds;
    sign-in drops them too. Its syntax is checked in NFKC (`emails.compatible`): a full-width
    at sign or a decomposed accent is a valid address, stored as the usual one."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        loaded: str = super()._deserialize(value, attr, data, **kwargs)
        return loaded.strip()

    def _validate(self, value: Any) -> None:
        super()._validate(emails.compatible(value))


class PasswordLength(validate.Length):
    """A password's length in characters once normalised (`passwords.length`): one password
    has one length whichever keyboard typed it (its accents composed or not)."""

    def __call__(self, value: Any) -> Any:
        super().__call__(passwords.normalize(value))
        return value


_PASSWORD = {"description": "Counted in characters in Unicode's NFKC form, which is what is hashed"}
# The length of a password an account is given: at sign-up, and when it is changed.
NEW_PASSWORD_LENGTH = PasswordLength(min=10, max=256)


class RegisterSchema(Schema):
    email = TrimmedEmail(required=True, validate=validate.Length(max=254))
    password = fields.String(
        required=True,
        load_only=True,
        validate=NEW_PASSWORD_LENGTH,
        metadata=_PASSWORD,
    )
    display_name = name(60)
    timezone = fields.String(required=True, validate=_check_timezone, metadata=_TIMEZONE)


class LoginSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    password = fields.String(
        required=True, load_only=True, validate=PasswordLength(max=256), metadata=_PASSWORD
    )


class PasswordChangeSchema(Schema):
    current_password = fields.String(
        required=True,
        load_only=True,
        validate=PasswordLength(min=1, max=256),
        metadata={"description": "The password the account signs in with now"},
    )
    new_password = fields.String(
        required=True,
        load_only=True,
        validate=NEW_PASSWORD_LENGTH,
        metadata={"description": "As at sign-up: 10-256 characters. " + _PASSWORD["description"]},
    )


class PasswordResetRequestSchema(Schema):
    email = fields.String(
        required=True,
        validate=validate.Length(min=1, max=254),
        metadata={"description": "The address the account signs in with"},
    )


class PasswordResetRequestedSchema(Schema):
    expires_in = fields.Integer(
        dump_only=True,
        metadata={"description": "Seconds the mailed code works for, from now"},
    )


class PasswordResetSchema(Schema):
    email = fields.String(required=True, validate=validate.Length(min=1, max=254))
    code = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "The code mailed, as typed: any case, with or without its dash",
            "example": "7KQ2-MX9D",
        },
    )
    password = fields.String(
        required=True,
        load_only=True,
        validate=NEW_PASSWORD_LENGTH,
        metadata={
            "description": "The new password, as at sign-up: 10-256 characters. "
            + _PASSWORD["description"]
        },
    )


class EmailChangeSchema(Schema):
    email = TrimmedEmail(
        required=True,
        validate=validate.Length(max=254),
        metadata={"description": "The new address, as at sign-up"},
    )
    password = fields.String(
        required=True,
        load_only=True,
        validate=PasswordLength(min=1, max=256),
        metadata={"description": "The password the account signs in with now"},
    )


class EmailChangeRequestedSchema(Schema):
    email = fields.String(
        dump_only=True,
        metadata={"description": "The new address, as the account will have it once confirmed"},
    )
    expires_in = fields.Integer(
        dump_only=True,
        metadata={"description": "Seconds the code mailed to it works for, from now"},
    )


class EmailChangeConfirmSchema(Schema):
    code = fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "The code mailed to the new address, as typed: any case, with or "
            "without its dash",
            "example": "7KQ2-MX9D",
        },
    )


# `Authorization`'s scheme copied into the body with the token ("Bearer rt_...").
_BEARER = re.compile(r"bearer\s", re.IGNORECASE)


class _RefreshTokenLength(validate.Length):
    """1-200 characters (the OpenAPI document says so), but an access token (a JWT: its header,
    base64 of `{"`, begins "eyJ") sent in the refresh token's place is named as such: "too
    long" would not tell the app which token to send. So is a token sent with a "Bearer "
    prefix: as an unknown token it would be refused (401, as if the session were over) or
    signed out of nothing (204)."""

    def __call__(self, value: Any) -> Any:
        if isinstance(value, str) and _BEARER.match(value):
            raise ValidationError(
                "Send the refresh token (rt_...) alone, without 'Bearer ': only the access token "
                "goes in the Authorization header with it."
            )
        if isinstance(value, str) and value.startswith("eyJ") and value.count(".") == 2:
            raise ValidationError(
                "This is the access token: send the refresh token (rt_...) that sign-in gave."
            )
        return super().__call__(value)


class RefreshSchema(Schema):
    refresh_token = fields.String(
        required=True,
        validate=_RefreshTokenLength(min=1, max=200),
        metadata={"description": "The refresh token (rt_...) of the last sign-in or refresh."},
    )


class UserSchema(Schema):
    id = fields.UUID(dump_only=True)
    email = fields.String(dump_only=True)
    display_name = fields.String(dump_only=True)
    timezone = fields.String(dump_only=True)
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True, dump_only=True)
    notes_on_lock_screen = fields.Boolean(dump_only=True)
    couple_id = fields.UUID(allow_none=True, dump_only=True)
    created_at = UTCDateTime(dump_only=True)
    profile_version = fields.Integer(
        dump_only=True,
        metadata={
            "description": "Counts the changes of the profile (a `PATCH /me` that changed it, a"
            " confirmed change of the email); of two copies of it (a `me.updated` and an answer)"
            " the higher is the later"
        },
    )


class ProfileUpdateSchema(Schema):
    display_name = name(60, required=False)
    timezone = fields.String(validate=_check_known_zone, metadata=_TIMEZONE)
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True)
    notes_on_lock_screen = StrictBoolean(
        metadata={"description": "Show bid notes in lock-screen notifications"}
    )


class TokenPairSchema(Schema):
    user = fields.Nested(UserSchema, dump_only=True)
    access_token = fields.String(dump_only=True)
    refresh_token = fields.String(dump_only=True)
    token_type = fields.String(dump_only=True, dump_default="Bearer", metadata={"enum": ["Bearer"]})
    expires_in = fields.Integer(dump_only=True, metadata={"description": "Access token seconds"})


class SessionDeviceSchema(Schema):
    """The device a sign-in session registered last (`POST /devices`)."""

    platform = fields.String(dump_only=True, metadata={"enum": list(PLATFORMS)})
    app_version = fields.String(dump_only=True, allow_none=True)


class SignInSchema(Schema):
    """A phone signed in to the account: when it signed in, and last refreshed."""

    id = fields.UUID(dump_only=True)
    created_at = UTCDateTime(dump_only=True, metadata={"description": "When it signed in"})
    last_refreshed_at = UTCDateTime(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "When it last traded its refresh token for a new pair (an app in "
            "use does about every 15 minutes); null before its first refresh"
        },
    )


class SessionSchema(SignInSchema):
    """A phone signed in to the caller's account."""

    current = fields.Boolean(
        dump_only=True, metadata={"description": "true for the session of the caller's token"}
    )
    device = fields.Nested(
        SessionDeviceSchema,
        dump_only=True,
        allow_none=True,
        metadata={"description": "The device it registered last; null if it registered none"},
    )


class SessionListSchema(Schema):
    items = fields.List(fields.Nested(SessionSchema), dump_only=True)
    next = fields.String(dump_only=True, allow_none=True)
