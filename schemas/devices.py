"""Devices that receive pushes."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import ValidationError, fields, validate

from schemas.base import Schema, UTCDateTime
from service.domain.devices import DISABLED_REASONS

PLATFORMS = ("ios", "android", "web")
# A token is unique, so PostgreSQL indexes its whole text, at most about 2700 bytes a row:
# FCM's tokens (about 160 ASCII characters) fit many times over.
PUSH_TOKEN_LENGTH = 2048
# An FCM registration token is printable ASCII without spaces (letters, digits, `:`, `-`, `_`).
_TOKEN_CHARACTERS = re.compile(r"[!-~]+")
# An APNs device token (32 bytes as hex) is never an FCM registration token: FCM refuses every
# push to it, and the token is then buried for good (`dead_push_tokens`).
_APNS_DEVICE_TOKEN = re.compile(r"[0-9A-Fa-f]{64}")


class PushToken(fields.String):
    """The token without the whitespace around it (a line break read with it, a paste): the
    same token, so the same device, rather than a second one FCM refuses as not a token."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


def _check_push_token(value: str) -> None:
    if not _TOKEN_CHARACTERS.fullmatch(value):
        raise ValidationError(
            "An FCM registration token has only printable ASCII characters: no spaces, no "
            "control characters."
        )
    if _APNS_DEVICE_TOKEN.fullmatch(value):
        raise ValidationError(
            "This is an APNs device token, not an FCM registration token: register the token "
            "Firebase Messaging gives (`Messaging.messaging().fcmToken`)."
        )


class DeviceCreateSchema(Schema):
    platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS))
    push_token = PushToken(
        required=True,
        validate=[validate.Length(min=8, max=PUSH_TOKEN_LENGTH), _check_push_token],
        metadata={
            "description": "The FCM registration token: printable ASCII characters, no spaces "
            "(whitespace around it is ignored)"
        },
    )
    app_version = fields.String(load_default=None, validate=validate.Length(max=40))
    locale = fields.String(load_default=None, validate=validate.Length(max=35))


class DeviceSchema(Schema):
    id = fields.UUID(dump_only=True)
    platform = fields.String(dump_only=True, metadata={"enum": list(PLATFORMS)})
    app_version = fields.String(dump_only=True, allow_none=True)
    locale = fields.String(dump_only=True, allow_none=True)
    active = fields.Boolean(dump_only=True)
    disabled_reason = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "enum": list(DISABLED_REASONS),
            "description": "Why pushes to it stopped; null while it is active",
        },
    )
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)


class DeviceListSchema(Schema):
    items = fields.List(fields.Nested(DeviceSchema), dump_only=True)
    next = fields.String(dump_only=True, allow_none=True)
