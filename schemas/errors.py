"""The one error shape: RFC 9457 problem details with `code` and field `errors`."""

from __future__ import annotations

from marshmallow import fields

from schemas.base import Schema

ERROR_CODES = (
    "validation_error",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "rate_limited",
    "bad_request",
    "server_error",
)


class ProblemSchema(Schema):
    """Sent, never read: every field is in every problem but `errors` and `retry_after`."""

    type = fields.String(dump_only=True, metadata={"description": "A URI naming the problem type"})
    title = fields.String(
        dump_only=True, metadata={"description": "Short summary of the problem type"}
    )
    status = fields.Integer(dump_only=True, metadata={"description": "The HTTP status code"})
    detail = fields.String(
        dump_only=True, metadata={"description": "What went wrong and what to do"}
    )
    code = fields.String(
        dump_only=True, metadata={"description": "Stable error code", "enum": list(ERROR_CODES)}
    )
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        dump_only=True,
        metadata={
            "description": "Field name -> messages (validation errors only)",
            "optional": True,
        },
    )
    retry_after = fields.Integer(
        dump_only=True,
        metadata={
            "description": "Seconds to wait before trying again (429 and 503 only): the"
            " Retry-After header's value, also in socket acks, which have no headers",
            "minimum": 1,
            "optional": True,
        },
    )
