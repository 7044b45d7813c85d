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
    type = fields.String(required=True, metadata={"description": "A URI naming the problem type"})
    title = fields.String(
        required=True, metadata={"description": "Short summary of the problem type"}
    )
    status = fields.Integer(required=True, metadata={"description": "The HTTP status code"})
    detail = fields.String(
        required=True, metadata={"description": "What went wrong and what to do"}
    )
    code = fields.String(
        required=True, metadata={"description": "Stable error code", "enum": list(ERROR_CODES)}
    )
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Field name -> messages (validation errors only)"},
    )
    retry_after = fields.Integer(
        metadata={
            "description": "Seconds to wait before trying again (429 and 503 only): the"
            " Retry-After header's value, also in socket acks, which have no headers"
        }
    )
