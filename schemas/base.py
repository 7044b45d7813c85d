"""The base schema and field helpers every wire schema uses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import fields, validate


class Schema(ma.Schema):
    """Rejects unknown fields; timestamps are UTC ISO-8601 with `Z`."""

    class Meta:
        unknown = ma.RAISE
        ordered = True


def iso(moment: datetime) -> str:
    """A timestamp as the wire shows it: UTC, microseconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class UTCDateTime(fields.DateTime):
    """Serialises as `2026-01-02T03:04:05.123456Z`; accepts any offset, stores UTC."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return iso(value)

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        parsed: datetime = super()._deserialize(value, attr, data, **kwargs)
        if parsed.tzinfo is None:
            raise self.make_error("invalid", input=value, obj_type="datetime with a time zone")
        return parsed.astimezone(UTC)


def text(max_length: int, *, required: bool = True, min_length: int = 1) -> fields.String:
    return fields.String(
        required=required, validate=validate.Length(min=min_length, max=max_length)
    )


class PageArgsSchema(Schema):
    """`limit` (1..200, default 50) and `before` (the `next` of the previous page)."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    before = fields.String(load_default=None, validate=validate.Length(max=200))
