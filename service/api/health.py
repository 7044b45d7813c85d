"""Liveness and readiness probes."""

from __future__ import annotations

import functools
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
        checks["database"] = _schema_check(db.answers())
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


@functools.cache
def _revisions() -> tuple[frozenset[str], frozenset[str]]:
    """This release's migrations: every revision, and the newest (heads)."""
    from alembic.script import ScriptDirectory

    from service.migrate import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config())
    known = frozenset(script.revision for script in scripts.walk_revisions())
    return known, frozenset(scripts.get_heads())


def _schema_check(at: list[str]) -> str:
    """What the readiness probe says of the revisions the database is at: ok unless it is
    behind this release's migrations, when the requests using what they add would fail. A
    revision this release does not know is a newer release's, whose schema it serves on (a
    rollback needs no migration)."""
    known, newest = _revisions()
    if not at:
        return "not migrated: run reach db upgrade"
    if set(at) - known or set(at) == newest:
        return "ok"
    return (
        f"not migrated: at {', '.join(at)}, this release needs {', '.join(sorted(newest))}: "
        "run reach db upgrade"
    )
