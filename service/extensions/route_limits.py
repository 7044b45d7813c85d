"""Route limits read from the settings per request, and sign-ins of which only refusals count."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import Response, after_this_request, current_app, g, request
from limits import RateLimitItem, parse_many

from service.domain.errors import RateLimited
from service.errors import wait_for
from service.extensions.route_limiter import log
from service.extensions.unbound import limiter

F = TypeVar("F", bound=Callable[..., Any])


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


def only_refusals_count(scope: str, refused: int = 401) -> Callable[[F], F]:
    """For a sign-in under the limits of `scope`: only a refused one (`refused`, 401 unless
    told: a wrong invite code is a 422) stays counted.

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
                if response.status_code != refused:
                    give_back(scope)
                return response

            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


# The answers to a sign-up or sign-in whose body could not be read (not JSON, too large, sent
# as a form or text): it could neither create an account nor try a password. A body read and
# refused (422, a field missing or malformed) is an attempt like any other, and counts.
UNREAD = frozenset({400, 413, 415})


def unread_requests_do_not_count(view: F) -> F:
    """For a sign-up or sign-in: one refused before it was read (UNREAD) is given back under
    every limit it was counted by, so an app whose HTTP client sent its first tries as a form
    is not then told to wait with the right body. Inside the limits, as `only_refusals_count`."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        @after_this_request
        def settle(response: Response) -> Response:
            if response.status_code in UNREAD:
                give_back()
            return response

        return view(*args, **kwargs)

    return cast(F, wrapper)


def give_back(scope: str | None = None) -> None:
    """Undo this request's counts under the limits of `scope`, of every limit if None (a
    failure leaves them counted); each count is given back once, however often asked."""
    # flask-limiter scopes a route's limit by its endpoint too ("auth.Login:email").
    scopes = None if scope is None else {scope, f"{request.endpoint}:{scope}"}
    given: set[str] = g.setdefault("reach_given_back", set())
    for counted in limiter.current_limits:
        if scopes is not None and counted.request_args[-1] not in scopes:
            continue
        if counted.key in given:
            continue
        given.add(counted.key)
        Counted(counted.limit, tuple(counted.request_args)).give_back()


@dataclass(frozen=True)
class Counted:
    """One count a request made under another route's limit (`count_as_route`)."""

    item: RateLimitItem
    identifiers: tuple[str, ...]

    def give_back(self) -> None:
        """Undo the count (a failure leaves it counted)."""
        try:
            limiter.limiter.hit(self.item, *self.identifiers, cost=-1)
        except Exception:
            log.warning("could not give back a rate-limit count", exc_info=True)


def count_as_route(setting: str, key: str, scope: str) -> list[Counted]:
    """Count this request under the limits of `setting` as the route whose limit counts under
    `scope` ("auth.Login", "auth.Login:email") counts its own, `key` the limit key: a request
    of another route that does that route's work (a sign-up that signs in) is held to its
    limits. RateLimited (429) once one is spent; the counts made, to give back if need be."""
    if not current_app.config.get("RATELIMIT_ENABLED", True):
        return []
    counted = []
    for item in parse_many(configured_limit(setting)):  # "10 per minute;50 per hour": each
        allowed = limiter.hit_outside_a_route(item, key, scope)
        if allowed is None:
            # No store could count it: let the request through, as the routes do.
            log.warning("rate limit store unreachable; not limiting", extra={"scope": scope})
            continue
        if not allowed:
            reset, _ = limiter.limiter.get_window_stats(item, key, scope)
            retry = wait_for(reset)
            raise RateLimited(f"Too many requests; retry in {retry} seconds.", retry_after=retry)
        counted.append(Counted(item, (key, scope)))
    return counted
