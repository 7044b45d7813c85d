"""The rate limiter: flask-limiter with limits declared on routes only."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, g
from flask_limiter import Limiter
from flask_limiter.constants import ConfigVars
from limits import RateLimitItem

log = logging.getLogger("reach.limits")


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
        # Before flask-limiter's own after_request hook, so run after it (Flask runs them in
        # reverse): its Retry-After rounds down, a 429's says what the problem's does.
        app.after_request(_retry_after_as_the_problem_says)
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


def _retry_after_as_the_problem_says(response: Response) -> Response:
    """A 429's Retry-After header says what its problem's `retry_after` (or its /ops page) says:
    the seconds to wait rounded up (`service.errors.wait_for`). flask-limiter writes the header
    after the error handler, rounded down: 2.9 s left said 2, and a client that waited 2 s was
    refused again. On any other answer than a 429 or a 503 it is taken off: flask-limiter put it on
    every answer of a limited route, a 200 or a 201 too, where an HTTP client that honours
    Retry-After wherever it finds one waited before its next request for nothing."""
    if response.status_code == 429:
        said = (
            (response.get_json(silent=True) or {}).get("retry_after")
            if response.is_json
            else g.get("retry_after")  # a page's (/ops): it says the wait in its text
        )
        if isinstance(said, int):
            response.headers["Retry-After"] = str(said)
    elif response.status_code != 503 and "Retry-After" in response.headers:
        del response.headers["Retry-After"]
    return response
