"""Errors the domain and the use cases raise; mapped to the wire shape in one place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class ReachError(Exception):
    """Base of every expected failure; `code` is the contract's stable error code."""

    code = "bad_request"
    status = 400
    title = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: Mapping[str, Sequence[str]] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = {k: list(v) for k, v in (errors or {}).items()}
        self.retry_after = retry_after


class ValidationFailed(ReachError):
    code = "validation_error"
    status = 422
    title = "Validation failed"


class Unauthorized(ReachError):
    code = "unauthorized"
    status = 401
    title = "Authentication required"


class Forbidden(ReachError):
    code = "forbidden"
    status = 403
    title = "Forbidden"


class NotFound(ReachError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(ReachError):
    code = "conflict"
    status = 409
    title = "Conflict"


class RateLimited(ReachError):
    code = "rate_limited"
    status = 429
    title = "Too many requests"


def invalid(field: str, message: str) -> ValidationFailed:
    """A 422 naming one field."""
    return ValidationFailed(message, errors={field: [message]})


def of_an_ended_pairing(what: str) -> Conflict:
    """A 409 for a write the phone made in a couple (its `couple_id`) that has ended since: the
    caller is paired again, and it would reach the new partner."""
    return Conflict(
        f"This {what} was written for a pairing that has ended: drop it, it would reach your "
        "new partner."
    )
