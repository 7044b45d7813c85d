"""The export: everything a person wrote, in every couple they were part of."""

from __future__ import annotations

from marshmallow import fields

from schemas.accounts import QuietHoursSchema, SignInSchema
from schemas.base import Schema, UTCDateTime
from schemas.bids import STATUSES as BID_STATUSES
from schemas.devices import PLATFORMS
from service.domain.bids import KINDS, RESPONSE_KINDS
from service.domain.repairs import EMOTIONS, STEPS
from service.domain.sessions import ENDINGS


class ExportProfileSchema(Schema):
    id = fields.UUID(dump_only=True)
    email = fields.String(dump_only=True)
    display_name = fields.String(dump_only=True)
    timezone = fields.String(dump_only=True)
    quiet_hours = fields.Nested(QuietHoursSchema, allow_none=True, dump_only=True)
    notes_on_lock_screen = fields.Boolean(dump_only=True)
    created_at = UTCDateTime(dump_only=True)


class ExportCoupleSchema(Schema):
    id = fields.UUID(dump_only=True)
    paired_at = UTCDateTime(dump_only=True)
    ended_at = UTCDateTime(dump_only=True, allow_none=True)


class ExportDeviceSchema(Schema):
    id = fields.UUID(dump_only=True)
    platform = fields.String(dump_only=True, metadata={"enum": list(PLATFORMS)})
    app_version = fields.String(dump_only=True, allow_none=True)
    locale = fields.String(dump_only=True, allow_none=True)
    active = fields.Boolean(dump_only=True)
    created_at = UTCDateTime(dump_only=True)


class ExportSessionSchema(SignInSchema):
    ended_at = UTCDateTime(
        dump_only=True, allow_none=True, metadata={"description": "null while signed in"}
    )
    ended_because = fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "enum": list(ENDINGS),
            "description": "Why it ended (docs/mobile.md, *Export*); null while signed in",
        },
    )


class ExportBidSchema(Schema):
    id = fields.UUID(dump_only=True)
    couple_id = fields.UUID(dump_only=True)
    kind = fields.String(dump_only=True, metadata={"enum": list(KINDS)})
    note = fields.String(dump_only=True, allow_none=True)
    status = fields.String(dump_only=True, metadata={"enum": list(BID_STATUSES)})
    created_at = UTCDateTime(dump_only=True)


class ExportBidReceiptSchema(Schema):
    bid_id = fields.UUID(dump_only=True)
    couple_id = fields.UUID(dump_only=True, metadata={"description": "The couple of the bid"})
    delivered_at = UTCDateTime(
        dump_only=True, metadata={"description": "When the caller's phone got the bid"}
    )
    seen_at = UTCDateTime(
        dump_only=True, allow_none=True, metadata={"description": "When the caller opened it"}
    )


class ExportBidResponseSchema(Schema):
    id = fields.UUID(dump_only=True)
    bid_id = fields.UUID(dump_only=True)
    couple_id = fields.UUID(dump_only=True, metadata={"description": "The couple of the bid"})
    kind = fields.String(dump_only=True, metadata={"enum": list(RESPONSE_KINDS)})
    note = fields.String(dump_only=True, allow_none=True)
    back_at = UTCDateTime(dump_only=True, allow_none=True)
    created_at = UTCDateTime(dump_only=True)


class ExportRepairSchema(Schema):
    id = fields.UUID(dump_only=True)
    couple_id = fields.UUID(dump_only=True)
    topic = fields.String(dump_only=True, allow_none=True)
    created_at = UTCDateTime(dump_only=True)


class ExportRepairJoinedSchema(Schema):
    repair_id = fields.UUID(dump_only=True)
    couple_id = fields.UUID(dump_only=True)
    last_read_seq = fields.Integer(
        dump_only=True, metadata={"description": "How far the caller had read (0: nothing)"}
    )
    heard = fields.Boolean(dump_only=True, metadata={"description": "The caller feels heard"})
    resolved_at = UTCDateTime(
        dump_only=True, allow_none=True, metadata={"description": "When the caller said so"}
    )


class ExportRepairMessageSchema(Schema):
    id = fields.UUID(dump_only=True)
    repair_id = fields.UUID(dump_only=True)
    couple_id = fields.UUID(
        dump_only=True, metadata={"description": "The couple of the conversation"}
    )
    seq = fields.Integer(dump_only=True)
    body = fields.String(dump_only=True)
    step = fields.String(dump_only=True, allow_none=True, metadata={"enum": list(STEPS)})
    emotions = fields.List(fields.String(metadata={"enum": list(EMOTIONS)}), dump_only=True)
    written_at = UTCDateTime(dump_only=True, allow_none=True)
    created_at = UTCDateTime(dump_only=True)


class ExportRepairBreakSchema(Schema):
    repair_id = fields.UUID(dump_only=True)
    couple_id = fields.UUID(
        dump_only=True, metadata={"description": "The couple of the conversation"}
    )
    paused_until = UTCDateTime(
        dump_only=True, metadata={"description": "When the break the caller asked for ends"}
    )


def _score() -> fields.Integer:
    return fields.Integer(dump_only=True, metadata={"minimum": 1, "maximum": 5})


class ExportCheckInSchema(Schema):
    round_id = fields.UUID(dump_only=True)
    couple_id = fields.UUID(dump_only=True, metadata={"description": "The couple of the round"})
    round_number = fields.Integer(
        dump_only=True, metadata={"description": "The round's number in its couple (from 1)"}
    )
    accessible = _score()
    responsive = _score()
    engaged = _score()
    created_at = UTCDateTime(dump_only=True)


def _each(schema: type[Schema]) -> fields.List:
    return fields.List(fields.Nested(schema), dump_only=True)


class ExportSchema(Schema):
    """Everything the caller wrote, in every couple they were part of; each list oldest first."""

    exported_at = UTCDateTime(dump_only=True)
    profile = fields.Nested(ExportProfileSchema, dump_only=True)
    couples = _each(ExportCoupleSchema)
    devices = _each(ExportDeviceSchema)
    sessions = fields.List(
        fields.Nested(ExportSessionSchema),
        dump_only=True,
        metadata={
            "description": "The account's sign-ins: those signed in, and those ended, until "
            "their refresh tokens would have expired"
        },
    )
    bids_sent = _each(ExportBidSchema)
    bid_receipts = fields.List(
        fields.Nested(ExportBidReceiptSchema),
        dump_only=True,
        metadata={"description": "The bids the caller's phone said it got, or the caller opened"},
    )
    bid_responses = _each(ExportBidResponseSchema)
    repairs_started = _each(ExportRepairSchema)
    repairs_joined = _each(ExportRepairJoinedSchema)
    repair_messages = _each(ExportRepairMessageSchema)
    repair_breaks = fields.List(
        fields.Nested(ExportRepairBreakSchema),
        dump_only=True,
        metadata={
            "description": "The breaks the caller is taking now: a conversation keeps only the "
            "break being taken, not the ones before it"
        },
    )
    checkins = _each(ExportCheckInSchema)
