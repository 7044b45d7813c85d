"""Pairing: invites, joining, the couple as each partner sees it."""

from __future__ import annotations

from marshmallow import fields, validate

from schemas.base import Schema, UTCDateTime


class InviteSchema(Schema):
    code = fields.String(dump_only=True, metadata={"example": "7KQ2-M9XD"})
    expires_at = UTCDateTime(dump_only=True)


class JoinSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=20))


class UnpairArgsSchema(Schema):
    couple_id = fields.UUID(
        metadata={
            "description": "The couple to end (`GET /couple`'s `id`): 404 when the caller is no"
            " longer paired in it, so an unpair sent again ends no later couple"
        }
    )


class PartnerSchema(Schema):
    id = fields.UUID(dump_only=True)
    display_name = fields.String(dump_only=True)
    timezone = fields.String(dump_only=True)


class CoupleSchema(Schema):
    id = fields.UUID(dump_only=True)
    partner = fields.Nested(PartnerSchema, dump_only=True)
    paired_at = UTCDateTime(dump_only=True)
