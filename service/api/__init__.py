"""REST endpoints (flask-smorest blueprints), one module per resource."""

from __future__ import annotations

from flask import Flask, Response, current_app, request

from service.extensions import ReachApi

API_PREFIX = "/api/v1/"
# The description of the API is the same for everyone: a client may cache it.
_CACHEABLE = frozenset({f"{API_PREFIX}openapi.json"})
# What a web app reads of an answer besides the headers every browser shows it.
_EXPOSED = (
    "Retry-After, WWW-Authenticate, Content-Disposition, "
    "X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"
)
# A browser may reuse a preflight's answer for this long (seconds; Chromium caps it at 7200).
_PREFLIGHT_MAX_AGE = "600"


def register(app: Flask) -> ReachApi:
    """Create the app's API (OpenAPI document) and register every blueprint."""
    from service.api import accounts, bids, couple, devices, health, insights, me, repairs, sync

    api = ReachApi(app)

    api.spec.components.security_scheme(
        "bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    )
    for module in (accounts, me, couple, devices, bids, repairs, insights, sync):
        api.register_blueprint(module.blp, url_prefix=f"/api/v1{module.PREFIX}")
    app.register_blueprint(health.bp)
    app.after_request(_not_cached)
    app.after_request(_cross_origin)
    return api


def _not_cached(response: Response) -> Response:
    """No answer of the API is kept: a phone's HTTP stack writes what it may cache to disk
    (iOS URLCache), and these answers hold a couple's words and their tokens."""
    if request.path.startswith(API_PREFIX) and request.path not in _CACHEABLE:
        response.headers.setdefault("Cache-Control", "no-store")
    return response


def _cross_origin(response: Response) -> Response:
    """Let the members' web apps (ALLOWED_ORIGINS, the origins their sockets may open from)
    call the API from a browser (CORS): a preflight is answered with the methods of the path
    and the headers a call sends; every answer, errors included, may be read by the page.
    Access is by bearer token, never by cookie: no credentials are allowed."""
    origin = request.headers.get("Origin")
    if not request.path.startswith(API_PREFIX) or not origin:
        return response
    response.vary.add("Origin")
    if origin not in current_app.extensions["reach.settings"].ALLOWED_ORIGINS:
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        response.headers["Access-Control-Allow-Methods"] = response.headers.get("Allow", "")
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Max-Age"] = _PREFLIGHT_MAX_AGE
    else:
        response.headers["Access-Control-Expose-Headers"] = _EXPOSED
    return response
