"""Route limits read from the settings per request, and sign-ins of which only refusals count."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Response, after_this_request, current_app, request

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
