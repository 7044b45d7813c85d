"""Extensions, created unbound and bound to the app in create_app."""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Callable
from typing import Any, TypeVar, cast

from apispec.ext.marshmallow import MarshmallowPlugin
from apispec.ext.marshmallow.common import get_fields
from apispec.ext.marshmallow.openapi import OpenAPIConverter
from flask import Flask, Response, after_this_request, current_app, request
from flask_limiter import Limiter
from flask_limiter.constants import ConfigVars
from flask_smorest import Api
from flask_smorest.utils import prepare_response
from limits import RateLimitItem
from werkzeug.exceptions import HTTPException

from schemas.base import Variants
from schemas.errors import ProblemSchema
from service.db import Database
from service.errors import from_http_exception

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("reach.limits")


class ShapeConverter(OpenAPIConverter):
    """A schema of output fields only (a response's) lists every field as required: each is in
    every answer, null when it has no value, and models generated from the document need not
    treat `id` or `status` as optional. A field sent only sometimes says so in its metadata
    (`"optional": True`).

    Such a schema does not forbid other fields (`additionalProperties: false`, which the
    schemas' `unknown = RAISE` gives): answers may gain fields (docs/mobile.md), and a decoder
    generated from a closed shape (swift-openapi-generator's) fails on the first new one.
    Request bodies stay closed: the service refuses unknown fields in them."""

    def schema2jsonschema(self, schema: Any) -> dict[str, Any]:
        jsonschema: dict[str, Any] = super().schema2jsonschema(schema)
        fields = get_fields(schema)
        if fields and all(field.dump_only for field in fields.values()):
            jsonschema.pop("additionalProperties", None)
        return jsonschema

    def fields2jsonschema(self, fields: Any, *, partial: Any = None) -> dict[str, Any]:
        schema: dict[str, Any] = super().fields2jsonschema(fields, partial=partial)
        if fields and all(field.dump_only for field in fields.values()):
            schema["required"] = sorted(
                name
                for name, field in fields.items()
                if not field.metadata.get("optional") and name in schema["properties"]
            )
        return schema

    def field2property(self, field: Any) -> dict[str, Any]:
        """`Variants` as oneOf its shapes (an open set's `other` last), told apart by their
        discriminator; a nullable field's enum names null too (as apispec does for a OneOf
        validator, not for an enum given in metadata): else null, which the field is sent as,
        breaks it."""
        if isinstance(field, Variants):
            return self._variants(field)
        prop: dict[str, Any] = super().field2property(field)
        types = prop.get("type")
        nullable = isinstance(types, list) and "null" in types
        if nullable and "enum" in prop and None not in prop["enum"]:
            prop["enum"] = [*prop["enum"], None]
        return prop

    def _variants(self, field: Variants) -> dict[str, Any]:
        refs = {
            value: self.resolve_nested_schema(schema) for value, schema in field.variants.items()
        }
        shapes = list({ref["$ref"]: ref for ref in refs.values()}.values())
        mapping = {value: ref["$ref"] for value, ref in refs.items()}
        if field.other is not None:
            # Last: a decoder that tries the shapes in turn reaches it only for a value no
            # other shape takes; one that routes by the mapping finds no entry for it.
            shapes.append(self.resolve_nested_schema(field.other))
        prop: dict[str, Any] = {
            "oneOf": shapes,
            "discriminator": {"propertyName": field.discriminator, "mapping": mapping},
        }
        if field.dump_only:
            prop["readOnly"] = True
        return prop


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again (the body's `retry_after` too)",
        "schema": {"type": "integer", "minimum": 0},
    }
}
# The shared responses of the errors a client waits out, each with its Retry-After header.
WAITED_OUT = {429: "RATE_LIMITED", 503: "UNAVAILABLE"}
_WAITED_OUT_SAYS = {
    429: "Too many requests: wait Retry-After seconds, then try again",
    503: "Briefly unavailable (the database is away or overloaded): wait Retry-After seconds,"
    " then try again, a write with the same client_id",
}


class ShapePlugin(MarshmallowPlugin):
    """Also documents the errors any operation may answer: 503 while the database is away,
    413 for a body over MAX_CONTENT_LENGTH (every request's body is read first, one the
    operation takes none of too: `service.bodies.read_first`), and for an operation that takes
    a body, 400 (not JSON, or nested too deeply) and 415 (sent with a type other than JSON)."""

    Converter = ShapeConverter

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().operation_helper(path=path, operations=operations, **kwargs)
        for operation in (operations or {}).values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses.setdefault("400", "BAD_REQUEST")
                responses.setdefault("415", "UNSUPPORTED_MEDIA_TYPE")
            responses.setdefault("413", "REQUEST_ENTITY_TOO_LARGE")
            responses.setdefault("503", WAITED_OUT[503])


class ReachApi(Api):
    """flask-smorest's Api, answering every HTTP error in the problem+json shape."""

    ERROR_SCHEMA = ProblemSchema

    def __init__(self, app: Flask | None = None) -> None:
        super().__init__(app, spec_kwargs={"marshmallow_plugin": ShapePlugin()})

    def _register_responses(self) -> None:
        """Error responses are documented as they are sent: application/problem+json."""
        self.DEFAULT_RESPONSE_CONTENT_TYPE = "application/problem+json"
        try:
            super()._register_responses()
        finally:
            del self.DEFAULT_RESPONSE_CONTENT_TYPE
        for status, name in WAITED_OUT.items():
            response = {
                "description": _WAITED_OUT_SAYS[status],
                "schema": self.ERROR_SCHEMA,
                "headers": RETRY_AFTER,
            }
            prepare_response(response, self.spec, "application/problem+json")
            self.spec.components.response(name, response, lazy=True)

    def handle_http_exception(self, error: HTTPException) -> Any:
        body, headers = from_http_exception(error)
        return body, body["status"], {**headers, "Content-Type": "application/problem+json"}


class RouteLimiter(Limiter):
    """flask-limiter with limits declared on routes (and blueprints) only.

    flask-limiter checks the app-wide limits (default, application, meta and in-memory
    fallback limits) in a before_request hook on every request: it finds the view, resolves its
    exemptions and evaluates what it found, 41 µs of CPU in a hot loop on a request that has
    none, more under load (bench/RESULTS.md, "What changed" 23). Every limit of the service is
    on a route, where the route's decorator checks it, so this limiter refuses app-wide limits
    and skips that hook. Should a limit ever be put on a blueprint, which only the hook checks
    for the blueprint's undecorated routes, the hook runs as flask-limiter's.

    While Redis is away flask-limiter counts in memory, and a limited route's check also asks
    whether Redis is back; without the hook, only those routes ask.
    """

    APP_WIDE = ("default_limits", "application_limits", "meta_limits", "in_memory_fallback")
    APP_WIDE_CONFIG = (
        ConfigVars.DEFAULT_LIMITS,
        ConfigVars.APPLICATION_LIMITS,
        ConfigVars.META_LIMITS,
        ConfigVars.IN_MEMORY_FALLBACK,
    )

    def __init__(self, key_func: Any, **options: Any) -> None:
        declared = [name for name in self.APP_WIDE if options.get(name)]
        if declared:
            raise TypeError(f"RouteLimiter takes limits on routes only, not {declared}")
        super().__init__(key_func, **options)

    def init_app(self, app: Flask) -> None:
        declared = [name for name in self.APP_WIDE_CONFIG if app.config.get(name)]
        if declared:
            raise ValueError(f"RouteLimiter takes limits on routes only; remove {declared}")
        super().init_app(app)
        # init_app builds a new storage but keeps flask-limiter's verdict on the old one. A
        # process builds one app, but the tests build many: one whose Redis was cut would
        # leave the next counting in memory until a backed-off check (up to 32 s) found Redis.
        self._storage_dead = False

    def _check_request_limit(
        self, callable_name: str | None = None, in_middleware: bool = True
    ) -> None:
        if in_middleware and not self.limit_manager._blueprint_limits:
            return
        super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)

    def hit_outside_a_route(self, item: RateLimitItem, *identifiers: str) -> bool | None:
        """Count a hit of `item` as a route's check does (a socket write): once the store
        (Redis) fails, in memory, where the routes count too until one of them finds it back.
        Whether the hit is allowed; None if it could not be counted at all."""
        try:
            return self.limiter.hit(item, *identifiers)
        except Exception:
            if not self._in_memory_fallback_enabled or self._storage_dead:
                return None
        log.warning("rate limit store unreachable; counting in this process until it is back")
        self._storage_dead = True
        try:
            return self.limiter.hit(item, *identifiers)
        except Exception:
            return None


def configured_limit(name: str) -> str:
    """The limit that the setting `name` of the app serving the request names
    (`RATELIMIT_BIDS`: "30 per minute")."""
    return str(getattr(current_app.extensions["reach.settings"], name))


def limit_setting(name: str) -> Callable[[], str]:
    """`configured_limit(name)` as a route's limit: read per request, since each app (the tests
    build many) has its own settings."""
    return functools.partial(configured_limit, name)


# Sign-ins and sign-ups per address, and per submitted email (only refusals stay counted there).
auth_limit = limit_setting("RATELIMIT_AUTH")
auth_email_limit = limit_setting("RATELIMIT_AUTH_EMAIL")


def only_refusals_count(scope: str) -> Callable[[F], F]:
    """For a sign-in under the limits of `scope`: only a refused one (401) stays counted.

    The limits count every sign-in on arrival, one atomic count each, so sign-ins sent at once
    cannot all pass before any is counted (a limit that counted refusals once they were
    answered let every sign-in in flight through). This decorator, inside the limits, gives
    the count back once the answer is anything but 401.
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            @after_this_request
            def settle(response: Response) -> Response:
                if response.status_code != 401:
                    give_back(scope)
                return response

            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def give_back(scope: str) -> None:
    """Undo this request's counts under the limits of `scope` (a failure leaves them counted)."""
    # flask-limiter scopes a route's limit by its endpoint too ("auth.Login:email").
    scopes = {scope, f"{request.endpoint}:{scope}"}
    for counted in limiter.current_limits:
        if counted.request_args[-1] not in scopes:
            continue
        try:
            limiter.limiter.hit(counted.limit, *counted.request_args, cost=-1)
        except Exception:
            log.warning("could not give back a rate-limit count", exc_info=True)


# Writes a phone makes over REST or over its socket, counted once per account whichever way
# each comes: the scopes of their shared limits (`limiter.shared_limit`, `realtime.acks`).
SENDING_BIDS = "bids-sent"
WRITING_REPAIR_MESSAGES = "repair-messages-written"


def account_limit_key(user_id: Any) -> str:
    """The limit key of a member's account (REST and socket writes)."""
    return f"user:{user_id}"


def email_limit_key(scope: str, email: str) -> str:
    """The limit key of the account an (already normalised) email names: a keyed digest, never
    the address. flask-limiter logs the key of every limit it refuses, and Redis holds it: a
    password guesser's target would otherwise be written down once per try."""
    secret = str(current_app.config["SECRET_KEY"]).encode()
    # A lone surrogate (refused by the schemas, but read here before them) has no UTF-8.
    named = email.encode("utf-8", "backslashreplace")
    return f"{scope}:{hmac.new(secret, named, hashlib.sha256).hexdigest()[:32]}"


def rate_limit_key() -> str:
    """Signed-in callers are limited per account, others per address."""
    from flask import g

    member = g.get("current_member")
    if member is not None:
        return account_limit_key(member.user_id)
    return f"ip:{client_address()}"


def client_address() -> str:
    """The caller's address as per-address limits count it: an IPv4 address, or the /64 of an
    IPv6 one (one subscriber or host holds a whole /64, and would otherwise get a fresh limit
    for each of its 2^64 addresses)."""
    return address_key(request.remote_addr or "unknown")


def address_key(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


db = Database()
limiter = RouteLimiter(rate_limit_key, headers_enabled=True)
