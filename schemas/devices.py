"""Devices that receive pushes."""

from __future__ import annotations

from marshmallow import ValidationError, fields, validate

from schemas.base import Schema, UTCDateTime
from service.domain.devices import DISABLED_REASONS

PLATFORMS = ("ios", "android", "web")
# A token is unique, so PostgreSQL indexes its whole text, at most about 2700 bytes a row:
# FCM's tokens (about 160 ASCII characters) fit many times over.
PUSH_TOKEN_LENGTH = 2048


def _check_push_token(value: str) -> None:
    if not value.isascii():
        raise ValidationError("An FCM registration token has only ASCII characters.")


class DeviceCreateSchema(Schema):
    platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS))
    push_token = fields.String(
        required=True,
        validate=[validate.Length(min=8, max=PUSH_TOKEN_LENGTH), _check_push_token],
        metadata={"description": "The FCM registration token: ASCII characters"},
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
