"""The couple's insights and A.R.E. check-ins."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.base import QueryInteger, Schema, StrictInteger, UTCDateTime

WINDOWS = (7, 30, 90)


class InsightsArgsSchema(Schema):
    days = QueryInteger(load_default=30, validate=validate.OneOf(WINDOWS))


class PartnerInsightsSchema(Schema):
    user_id = fields.UUID(dump_only=True)
    display_name = fields.String(dump_only=True)
    bids_sent = fields.Integer(dump_only=True)
    bids_received = fields.Integer(dump_only=True)
    answered = fields.Integer(dump_only=True)
    missed = fields.Integer(
        dump_only=True,
        metadata={
            "description": "Over unanswered (`expires_at` passed), though they could reach this"
            " partner"
        },
    )
    unreachable = fields.Integer(
        dump_only=True,
        metadata={
            "description": "Unanswered bids whose `reachable_at` is at or after `expires_at`:"
            " quiet hours outlasted them. Not turning away: left out of `missed` and the rates"
        },
    )
    open = fields.Integer(
        dump_only=True,
        metadata={
            "description": "Received bids whose outcome is not known yet: no response and"
            " `expires_at` not passed (not `unreachable`), or a `later` whose `back_at` has not"
            " come. Left out of `turn_toward_rate` until decided"
        },
    )
    response_rate = fields.Float(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "answered / (answered + missed): open bids without a response are"
            " left out until answered or over; null when there are none of either"
        },
    )
    turn_toward_rate = fields.Float(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "(toward + kept later) / (bids received - unreachable - open): over"
            " the bids whose outcome is known; null when there are none"
        },
    )
    median_response_seconds = fields.Integer(dump_only=True, allow_none=True)
    p90_response_seconds = fields.Integer(dump_only=True, allow_none=True)
    median_delivery_seconds = fields.Integer(dump_only=True, allow_none=True)


class CoupleInsightsSchema(Schema):
    bids = fields.Integer(dump_only=True)
    repairs_started = fields.Integer(dump_only=True)
    repairs_resolved = fields.Integer(dump_only=True)
    median_seconds_to_resolution = fields.Integer(dump_only=True, allow_none=True)


class WeekSchema(Schema):
    week_start = UTCDateTime(dump_only=True)
    bids = fields.Integer(dump_only=True)
    unreachable = fields.Integer(
        dump_only=True, metadata={"description": "Of `bids`, those that could never reach"}
    )
    open = fields.Integer(
        dump_only=True,
        metadata={"description": "Of `bids`, those whose outcome is not known yet, as per partner"},
    )
    turned_toward = fields.Integer(dump_only=True)
    turn_toward_rate = fields.Float(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "turned_toward / (bids - unreachable - open); null when no bid's"
            " outcome is known"
        },
    )


class PatternEvidenceSchema(Schema):
    bids = fields.Integer(dump_only=True, metadata={"description": "Bids in the window"})
    share_sent_by_reaching_partner = fields.Float(dump_only=True)
    turn_toward_rate_of_other = fields.Float(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "Over the bids the other received whose outcome is known, as their"
            " `turn_toward_rate`: open bids and `later` answers whose back_at has not come are"
            " left out"
        },
    )
    median_response_seconds_of_other = fields.Integer(dump_only=True, allow_none=True)


class PatternSchema(Schema):
    name = fields.String(
        dump_only=True,
        metadata={
            "description": "`pursue_withdraw`, the only name today; later versions may add"
            " names: treat a name you do not know as no pattern (null)",
            "examples": ["pursue_withdraw"],
        },
    )
    reaching_partner_id = fields.String(dump_only=True, metadata={"format": "uuid"})
    withdrawing_partner_id = fields.String(dump_only=True, metadata={"format": "uuid"})
    message = fields.String(dump_only=True)
    evidence = fields.Nested(
        PatternEvidenceSchema, dump_only=True, metadata={"description": "The figures behind it"}
    )


class InsightsSchema(Schema):
    days = fields.Integer(dump_only=True)
    since = UTCDateTime(dump_only=True)
    until = UTCDateTime(dump_only=True)
    partners = fields.List(fields.Nested(PartnerInsightsSchema), dump_only=True)
    couple = fields.Nested(CoupleInsightsSchema, dump_only=True)
    weekly = fields.List(fields.Nested(WeekSchema), dump_only=True)
    pattern = fields.Nested(
        PatternSchema,
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "A cycle the figures show; null when there is none or too little data"
        },
    )


def _score() -> StrictInteger:
    return StrictInteger(required=True, validate=validate.Range(min=1, max=5))


class CheckInCreateSchema(Schema):
    client_id = fields.UUID(
        required=True,
        metadata={"description": "The phone's id for this answer: a retry sends it again"},
    )
    accessible = _score()
    responsive = _score()
    engaged = _score()
    couple_id = fields.UUID(
        load_default=None,
        metadata={
            "description": "The couple the answer was written in (`GET /couple`'s `id`): an "
            "answer kept past an unpair is refused (409) rather than given to a new partner"
        },
    )


class CheckInScoresSchema(Schema):
    accessible = fields.Integer(dump_only=True)
    responsive = fields.Integer(dump_only=True)
    engaged = fields.Integer(dump_only=True)
    answered_at = UTCDateTime(dump_only=True)


class CheckInRoundSchema(Schema):
    id = fields.UUID(dump_only=True, allow_none=True)
    number = fields.Integer(dump_only=True)
    opened_at = UTCDateTime(dump_only=True, allow_none=True)
    revealed_at = UTCDateTime(dump_only=True, allow_none=True)
    you = fields.Nested(CheckInScoresSchema, dump_only=True, allow_none=True)
    partner_answered = fields.Boolean(dump_only=True)
    partner = fields.Nested(
        CheckInScoresSchema,
        dump_only=True,
        allow_none=True,
        metadata={"description": "Hidden (null) until both partners have answered"},
    )


class CheckInListSchema(Schema):
    items = fields.List(fields.Nested(CheckInRoundSchema), dump_only=True)
    next = fields.String(dump_only=True, allow_none=True)
