"""REST endpoints (flask-smorest blueprints), one module per resource."""

from __future__ import annotations

from flask import Flask

from service.extensions import ReachApi


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
    return api
