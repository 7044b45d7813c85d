"""Liveness and readiness probes."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app

from service.errors import is_unmigrated
from service.extensions import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> dict[str, Any]:
    """The process is up."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[dict[str, Any], int]:
    """The database (and Redis, when configured) answer, within a few seconds each."""
    checks: dict[str, str] = {}
    try:
        db.answers()
        checks["database"] = "ok"
    except Exception as exc:
        if is_unmigrated(exc):
            checks["database"] = "not migrated: run reach db upgrade"
        else:
            checks["database"] = f"unreachable: {type(exc).__name__}"
    redis_client = current_app.extensions.get("reach.redis")
    if redis_client is not None:
        try:
            redis_client.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unreachable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return {"status": "ready" if ready else "unavailable", "checks": checks}, 200 if ready else 503
