"""One error shape everywhere: domain and HTTP errors -> RFC 9457 problem details."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, current_app, has_request_context
from marshmallow import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES

from service.domain.errors import ReachError
from service.metrics import request_labels

log = logging.getLogger("reach.errors")

PROBLEM_MIMETYPE = "application/problem+json"

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "validation_error",
    429: "rate_limited",
}

_DETAILS = {
    400: "The request could not be read. Send a JSON body with Content-Type: application/json.",
    401: "Sign in again: send a valid access token as 'Authorization: Bearer <token>'.",
    404: "There is nothing here you can see.",
    405: "This method is not allowed on this path; see /api/v1/openapi.json.",
    413: "The request body is too large.",
    415: "The body must be JSON: send it with Content-Type: application/json.",
    422: "Some fields are not valid; see `errors`.",
    429: "Too many requests; wait for Retry-After seconds and try again.",
    500: "Something went wrong on our side. Try again later.",
    503: "The service is briefly unavailable. Try again in a few seconds.",
}
# The challenge of every 401 of the API (RFC 6750): its access tokens are bearer tokens.
BEARER_CHALLENGE = 'Bearer realm="reach"'
# Seconds a client should wait before retrying when the database is away.
UNAVAILABLE_RETRY_AFTER = 5


def code_for(status: int) -> str:
    if status >= 500:
        return "server_error"
    return _CODES.get(status, "bad_request")


def problem_body(
    status: int,
    *,
    detail: str | None = None,
    code: str | None = None,
    errors: Mapping[str, list[str]] | None = None,
    retry_after: int | None = None,
) -> dict[str, Any]:
    """The problem object; `retry_after` (429, 503) repeats the Retry-After header in the body,
    where a socket ack, which has no headers, carries it too. Its type is about:blank, so its
    title is the status's phrase (RFC 9457 4.2.1), the same over REST and in a socket ack."""
    title = status_phrase(status)
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail or _DETAILS.get(status, title),
        "code": code or code_for(status),
    }
    if errors:
        body["errors"] = dict(errors)
    if retry_after is not None:
        body["retry_after"] = retry_after
    return body


def status_phrase(status: int) -> str:
    """The status's phrase ("Not Found" for 404), as werkzeug names its own errors."""
    return HTTP_STATUS_CODES.get(status, "Unknown Error")


def problem_response(body: dict[str, Any], headers: Mapping[str, str] | None = None) -> Response:
    response = Response(
        current_app.json.dumps(body), status=body["status"], mimetype=PROBLEM_MIMETYPE
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def from_reach_error(exc: ReachError) -> dict[str, Any]:
    return problem_body(
        exc.status,
        detail=exc.detail,
        code=exc.code,
        errors=exc.errors or None,
        retry_after=exc.retry_after,
    )


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """webargs/marshmallow nested messages -> {"field.sub": ["message", ...]}."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_messages(value, name))
    elif isinstance(messages, list | tuple):
        if all(isinstance(m, str) for m in messages):
            flat[prefix or "_schema"] = [str(m) for m in messages]
        else:
            for index, value in enumerate(messages):
                flat.update(flatten_messages(value, f"{prefix}.{index}" if prefix else str(index)))
    else:
        flat[prefix or "_schema"] = [str(messages)]
    return flat


def from_http_exception(exc: HTTPException) -> tuple[dict[str, Any], dict[str, str]]:
    status = exc.code or 500
    headers: dict[str, str] = {}
    data = getattr(exc, "data", None) or {}
    errors = None
    if status == 422 and "messages" in data:
        messages = data["messages"]
        # webargs nests by location ("json", "query"); one location is the usual case.
        if isinstance(messages, Mapping) and len(messages) == 1:
            messages = next(iter(messages.values()))
        errors = flatten_messages(messages)
    if data.get("headers"):
        headers.update(data["headers"])
    if status == 405:
        allowed = exc.get_headers()
        headers.update({k: v for k, v in allowed if k == "Allow"})
    detail = _DETAILS.get(status)
    if status == 400 and exc.description and "JSON" in str(exc.description):
        detail = "The body is not valid JSON."
    retry_after = _limit_resets_in() if status == 429 else None
    body = problem_body(status, detail=detail, errors=errors, retry_after=retry_after)
    return body, headers


def _limit_resets_in() -> int | None:
    """Seconds until the rate limit this request broke resets (`wait_for`); the limiter's
    Retry-After header is made to say the same (`RouteLimiter`)."""
    from service.extensions import limiter  # that module imports this one

    current = limiter.current_limit
    return None if current is None else wait_for(current.reset_at)


def wait_for(reset_at: float) -> int:
    """Whole seconds to wait for a rate limit's window that ends at `reset_at` (unix time):
    rounded up, and at least 1, so that a client that waits as long is let in. Rounded down,
    2.9 s left said 2, and the retry after 2 s was refused again, told to wait 0."""
    return max(1, math.ceil(reset_at - time.time()))


def database_said(exc: BaseException) -> str:
    """The first line of what the database driver said about `exc`."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def is_unmigrated(exc: BaseException) -> bool:
    """The database has no Reach tables (it was never migrated): SQLite's "no such table",
    PostgreSQL's "relation ... does not exist"."""
    said = database_said(exc)
    if isinstance(exc, OperationalError) and "no such table" in said:
        return True
    return isinstance(exc, ProgrammingError) and "relation" in said and "does not exist" in said


def is_unavailable(exc: BaseException) -> bool:
    """The database is away or overloaded (connection refused or lost, no pooled connection in
    time, a lock or deadlock timeout): the same request may well succeed a little later."""
    if isinstance(exc, OperationalError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def server_problem(exc: BaseException) -> dict[str, Any]:
    """The problem for an unexpected error: 503 while the database is away or not migrated yet
    (API processes started before `reach db upgrade` ran), else 500."""
    if is_unavailable(exc) or is_unmigrated(exc):
        return problem_body(503, retry_after=UNAVAILABLE_RETRY_AFTER)
    return problem_body(500)


def logged_server_problem(
    exc: BaseException, logger: logging.Logger, failure: str, **fields: Any
) -> dict[str, Any]:
    """`server_problem(exc)`, logged: a request or socket the database could not serve (503)
    is expected while it restarts or is overloaded, one warning line each with the driver's
    message (an outage would otherwise bury the log in tracebacks); anything else is logged
    as `failure` with its traceback."""
    body = server_problem(exc)
    if is_unmigrated(exc):
        logger.warning(
            "the database has no Reach tables: run `reach db upgrade`; answered 503",
            extra={**fields, "error_type": type(exc).__name__, "error": database_said(exc)},
        )
    elif body["status"] == 503:
        logger.warning(
            "database unavailable; answered 503",
            extra={**fields, "error_type": type(exc).__name__, "error": database_said(exc)},
        )
    else:
        logger.exception(failure, extra={**fields, "error_type": type(exc).__name__})
    return body


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ReachError)
    def _reach_error(exc: ReachError) -> Response:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        if exc.status == 401:
            # Every 401 names the scheme to authenticate with (RFC 9110 11.6.1): some HTTP
            # clients fail a 401 without it rather than hand the problem to the app.
            headers["WWW-Authenticate"] = BEARER_CHALLENGE
        return problem_response(from_reach_error(exc), headers)

    @app.errorhandler(ValidationError)
    def _validation_error(exc: ValidationError) -> Response:
        body = problem_body(422, errors=flatten_messages(exc.messages))
        return problem_response(body)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            return http_exception(exc)
        body = logged_server_problem(exc, log, "unhandled error", **_request_fields())
        retry = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)} if body["status"] == 503 else None
        return problem_response(body, retry)


def _request_fields() -> dict[str, str]:
    """The request a failure answered, as the metrics label it (endpoint, method)."""
    if not has_request_context():
        return {}
    endpoint, method = request_labels()
    return {"method": method, "endpoint": endpoint}


def http_exception(exc: HTTPException) -> Response:
    body, headers = from_http_exception(exc)
    if body["status"] >= 500:
        log.error("server error", extra={"status": body["status"]})
    return problem_response(body, headers)
