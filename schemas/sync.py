"""The couple's event stream: sync pages and the socket envelope."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.base import QueryInteger, Schema, UTCDateTime, Variants
from schemas.bids import BidSchema
from schemas.couples import PartnerSchema
from schemas.repairs import RepairMessageSchema, RepairSchema

EVENT_TYPES = (
    "couple.paired",
    "couple.ended",
    # A partner's name or time zone changed: what `GET /couple` shows of them.
    "couple.partner_updated",
    "bid.created",
    "bid.delivered",
    "bid.seen",
    "bid.answered",
    "bid.expired",
    # The recipient's new quiet hours or time zone moved a bid's `reachable_at`.
    "bid.rescheduled",
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
    data: fields.Field = fields.Dict(
        dump_only=True, metadata={"description": "The resource as REST shows it"}
    )


class CouplePairedSchema(Schema):
    couple_id = fields.UUID(dump_only=True)
    partner_ids = fields.List(fields.UUID(), dump_only=True)
    partners = fields.List(
        fields.Nested(PartnerSchema),
        dump_only=True,
        metadata={
            "description": "Both partners as `GET /couple` shows a partner, in `partner_ids`'s"
            " order: each phone shows the one whose `id` is not the caller's"
        },
    )
    paired_at = UTCDateTime(dump_only=True)


class CoupleEndedSchema(Schema):
    couple_id = fields.UUID(dump_only=True)
    ended_by = fields.UUID(dump_only=True, metadata={"description": "Who unpaired"})
    ended_at = UTCDateTime(dump_only=True)
    reason = fields.String(
        dump_only=True,
        metadata={
            "enum": ["account_deleted"],
            "description": "Only when the partner deleted their account; absent after an unpair",
            "optional": True,
        },
    )


class CheckInAnsweredSchema(Schema):
    round_id = fields.UUID(dump_only=True)
    number = fields.Integer(dump_only=True)
    opened_at = UTCDateTime(dump_only=True, metadata={"description": "As the round shows it"})
    user_id = fields.UUID(dump_only=True, metadata={"description": "Who answered (never how)"})


class CheckInAnswersSchema(Schema):
    accessible = fields.Integer(dump_only=True, metadata={"minimum": 1, "maximum": 5})
    responsive = fields.Integer(dump_only=True, metadata={"minimum": 1, "maximum": 5})
    engaged = fields.Integer(dump_only=True, metadata={"minimum": 1, "maximum": 5})
    answered_at = UTCDateTime(dump_only=True)


class CheckInRevealedSchema(Schema):
    round_id = fields.UUID(dump_only=True)
    number = fields.Integer(dump_only=True)
    opened_at = UTCDateTime(dump_only=True)
    revealed_at = UTCDateTime(dump_only=True)
    answers = fields.Dict(
        keys=fields.UUID(),
        values=fields.Nested(CheckInAnswersSchema),
        dump_only=True,
        metadata={"description": "Each partner's user id -> their answers"},
    )


def _types(prefix: str, *names: str) -> list[str]:
    return [f"{prefix}.{name}" for name in names]


class CouplePairedEventSchema(EventSchema):
    type = fields.String(dump_only=True, metadata={"enum": ["couple.paired"]})
    data = fields.Nested(CouplePairedSchema, dump_only=True)


class CoupleEndedEventSchema(EventSchema):
    type = fields.String(dump_only=True, metadata={"enum": ["couple.ended"]})
    data = fields.Nested(CoupleEndedSchema, dump_only=True)


class CouplePartnerUpdatedEventSchema(EventSchema):
    type = fields.String(dump_only=True, metadata={"enum": ["couple.partner_updated"]})
    data = fields.Nested(
        PartnerSchema,
        dump_only=True,
        metadata={
            "description": "The partner who changed, as `GET /couple` shows a partner: the"
            " other partner's phone, or the author's own (`id` is the caller)"
        },
    )


class BidEventSchema(EventSchema):
    type = fields.String(
        dump_only=True,
        metadata={
            "enum": _types(
                "bid", "created", "delivered", "seen", "answered", "expired", "rescheduled"
            )
        },
    )
    data = fields.Nested(BidSchema, dump_only=True, metadata={"description": "The whole bid"})


class RepairEventSchema(EventSchema):
    type = fields.String(
        dump_only=True,
        metadata={
            "enum": _types("repair", "started", "read", "paused", "resumed", "heard", "resolved")
        },
    )
    data = fields.Nested(
        RepairSchema, dump_only=True, metadata={"description": "The whole conversation"}
    )


class RepairMessageEventSchema(EventSchema):
    type = fields.String(dump_only=True, metadata={"enum": ["repair.message"]})
    data = fields.Nested(RepairMessageSchema, dump_only=True)


class CheckInAnsweredEventSchema(EventSchema):
    type = fields.String(dump_only=True, metadata={"enum": ["checkin.answered"]})
    data = fields.Nested(CheckInAnsweredSchema, dump_only=True)


class CheckInRevealedEventSchema(EventSchema):
    type = fields.String(dump_only=True, metadata={"enum": ["checkin.revealed"]})
    data = fields.Nested(CheckInRevealedSchema, dump_only=True)


class OtherEventSchema(EventSchema):
    """An event of a type this version does not name: a later one may add types."""

    type = fields.String(
        dump_only=True,
        metadata={
            "description": "A type none of the other event shapes names: skip the event and"
            " still advance the cursor",
            "not": {"enum": list(EVENT_TYPES)},
        },
    )
    data = fields.Dict(dump_only=True, metadata={"description": "Whatever that type carries"})


EVENT_SCHEMAS: dict[str, type[EventSchema]] = {
    type_: schema
    for schema in (
        CouplePairedEventSchema,
        CoupleEndedEventSchema,
        CouplePartnerUpdatedEventSchema,
        BidEventSchema,
        RepairEventSchema,
        RepairMessageEventSchema,
        CheckInAnsweredEventSchema,
        CheckInRevealedEventSchema,
    )
    for type_ in schema._declared_fields["type"].metadata["enum"]
}


class SyncArgsSchema(Schema):
    since = QueryInteger(load_default=0, validate=validate.Range(min=0, max=2**31 - 1))
    limit = QueryInteger(load_default=200, validate=validate.Range(min=1, max=1000))
    couple_id = fields.UUID(
        metadata={
            "description": "The couple the phone's cursor belongs to: 404 when the caller is no"
            " longer paired in it"
        }
    )


class SyncPageSchema(Schema):
    couple_id = fields.UUID(dump_only=True, metadata={"description": "The caller's couple"})
    events = fields.List(
        Variants(EventSchema, discriminator="type", variants=EVENT_SCHEMAS, other=OtherEventSchema),
        dump_only=True,
        metadata={"description": "New event types may come: each is an `OtherEvent` until then"},
    )
    next = fields.Integer(dump_only=True, metadata={"description": "Pass as `since` next time"})
    has_more = fields.Boolean(dump_only=True)
