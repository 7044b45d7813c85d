"""Devices that receive pushes."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.base import Schema, UTCDateTime

PLATFORMS = ("ios", "android", "web")


class DeviceCreateSchema(Schema):
    platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS))
    push_token = fields.String(required=True, validate=validate.Length(min=8, max=4096))
    app_version = fields.String(load_default=None, validate=validate.Length(max=40))
    locale = fields.String(load_default=None, validate=validate.Length(max=35))


class DeviceSchema(Schema):
    id = fields.UUID(dump_only=True)
    platform = fields.String(dump_only=True)
    app_version = fields.String(dump_only=True, allow_none=True)
    locale = fields.String(dump_only=True, allow_none=True)
    active = fields.Boolean(dump_only=True)
    disabled_reason = fields.String(dump_only=True, allow_none=True)
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)


class DeviceListSchema(Schema):
    items = fields.List(fields.Nested(DeviceSchema), dump_only=True)
    next = fields.String(dump_only=True, allow_none=True)
