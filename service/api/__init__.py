"""REST endpoints (flask-smorest blueprints), one module per resource."""

from __future__ import annotations

from flask import Flask, Response, request

from service.extensions import ReachApi

API_PREFIX = "/api/v1/"
# The description of the API is the same for everyone: a client may cache it.
_CACHEABLE = frozenset({f"{API_PREFIX}openapi.json"})


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
    return api


def _not_cached(response: Response) -> Response:
    """No answer of the API is kept: a phone's HTTP stack writes what it may cache to disk
    (iOS URLCache), and these answers hold a couple's words and their tokens."""
    if request.path.startswith(API_PREFIX) and request.path not in _CACHEABLE:
        response.headers.setdefault("Cache-Control", "no-store")
    return response
