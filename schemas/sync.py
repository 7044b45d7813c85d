"""The couple's event stream: sync pages and the socket envelope."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.base import Schema

EVENT_TYPES = (
    "couple.paired",
    "couple.ended",
    "bid.created",
    "bid.delivered",
    "bid.seen",
    "bid.answered",
    "bid.expired",
    "repair.started",
    "repair.message",
    "repair.read",
    "repair.paused",
    "repair.resumed",
    # One partner feels heard; `repair.resolved` follows once the other does too.
    "repair.heard",
    "repair.resolved",
    # A.R.E. check-in: one partner answered (no answers shown); both answered (both shown).
    "checkin.answered",
    "checkin.revealed",
)


class EventSchema(Schema):
    cursor = fields.Integer(dump_only=True)
    couple_id = fields.UUID(
        dump_only=True,
        metadata={"description": "The couple whose stream this is; cursors count per couple"},
    )
    type = fields.String(dump_only=True, metadata={"enum": list(EVENT_TYPES)})
    at = fields.String(dump_only=True, metadata={"format": "date-time"})
    data = fields.Dict(dump_only=True, metadata={"description": "The resource as REST shows it"})


class SyncArgsSchema(Schema):
    since = fields.Integer(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))
    limit = fields.Integer(load_default=200, validate=validate.Range(min=1, max=1000))
    couple_id = fields.UUID(
        metadata={
            "description": "The couple the phone's cursor belongs to: 404 when the caller is no"
            " longer paired in it"
        }
    )


class SyncPageSchema(Schema):
    couple_id = fields.UUID(dump_only=True, metadata={"description": "The caller's couple"})
    events = fields.List(fields.Nested(EventSchema), dump_only=True)
    next = fields.Integer(dump_only=True, metadata={"description": "Pass as `since` next time"})
    has_more = fields.Boolean(dump_only=True)
