"""Socket writes answer through the acknowledgement: the resource, or a problem object."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable
from typing import Any

from flask import current_app
from limits import parse_many
from marshmallow import Schema, ValidationError

from service.clock import clock
from service.domain.errors import RateLimited, ReachError, Unauthorized
from service.errors import (
    flatten_messages,
    from_reach_error,
    logged_server_problem,
    problem_body,
    wait_for,
)
from service.extensions import account_limit_key, configured_limit, db, limiter
from service.realtime.members import socket_session
from service.services import members
from service.services.members import Member

log = logging.getLogger("reach.realtime")

Handler = Callable[[Member, dict[str, Any]], dict[str, Any]]


def socket_member() -> Member:
    """The connection's member, checked again on every write (signed out, disabled, or its
    refresh tokens expired: refused)."""
    session = socket_session()
    if not session.get("user_id"):
        raise Unauthorized()
    return members.live_member(
        db.session,
        uuid.UUID(session["user_id"]),
        uuid.UUID(session["auth_session_id"]),
        usable_at=clock.now(),
    )


def check_rate(scope: str, member: Member, setting: str) -> None:
    """A write over the socket counts against the account's limit `setting` in the same
    window as the REST endpoint's shared limit of `scope`: the account's writes count once,
    whichever way each comes."""
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return
    key = account_limit_key(member.user_id)
    for item in parse_many(configured_limit(setting)):  # "30 per minute;500 per day": each
        allowed = limiter.hit_outside_a_route(item, key, scope)
        if allowed is None:
            # No store could count it: let the write through rather than fail it.
            log.warning("rate limit store unreachable; not limiting", extra={"scope": scope})
            return
        if allowed:
            continue
        reset, _ = limiter.limiter.get_window_stats(item, key, scope)
        retry = wait_for(reset)
        raise RateLimited(f"Too many requests; retry in {retry} seconds.", retry_after=retry)


ONE_OBJECT = "Send one JSON object: this event takes a single argument."


def write(schema: Schema) -> Callable[[Handler], Callable[..., dict[str, Any]]]:
    """Load the payload with `schema`, run the handler as the socket's user, ack the result.

    The payload is the event's one argument; an event with more is answered with a 400."""

    def decorate(handler: Handler) -> Callable[..., dict[str, Any]]:
        @functools.wraps(handler)
        def on_event(*args: Any) -> dict[str, Any]:
            if len(args) > 1:
                return problem_body(400, detail=ONE_OBJECT)
            payload = args[0] if args else None
            try:
                member = socket_member()
                if not isinstance(payload, dict):
                    raise ValidationError({"_schema": ["Send a JSON object."]})
                return handler(member, schema.load(payload))
            except ValidationError as exc:
                errors = flatten_messages(exc.messages)
                return problem_body(422, errors=errors)
            except ReachError as exc:
                db.roll_back()
                return from_reach_error(exc)
            except Exception as exc:
                problem = logged_server_problem(
                    exc, log, "socket write failed", event=handler.__name__
                )
                db.roll_back()
                return problem

        return on_event

    return decorate
