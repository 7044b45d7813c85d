"""The operators' dashboard at /ops: pages, the /ops socket namespace, operator sign-in."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, render_template, request
from flask_socketio import SocketIO
from werkzeug.exceptions import HTTPException

from service.dashboard import auth, filters, live, support, views
from service.dashboard.blueprint import bp
from service.domain.errors import ReachError
from service.errors import (
    UNAVAILABLE_RETRY_AFTER,
    from_http_exception,
    from_reach_error,
    logged_server_problem,
    problem_response,
)
from service.metrics import request_labels

log = logging.getLogger("reach.errors")
UNAVAILABLE = (
    "The database is unavailable, so this can't be shown or done now. "
    f"Try again in {UNAVAILABLE_RETRY_AFTER} seconds; the overview page recovers by itself."
)


def _error_page(status: int, title: str, detail: str) -> Any:
    if request.path.startswith("/ops/api/"):
        return None
    return render_template("ops/error.html", status=status, title=title, detail=detail), status


@bp.errorhandler(ReachError)
def _reach_error(exc: ReachError) -> Any:
    page = _error_page(exc.status, exc.title, exc.detail)
    return page if page is not None else problem_response(from_reach_error(exc))


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Any:
    body, headers = from_http_exception(exc)
    page = _error_page(body["status"], body["title"], _page_detail(exc, body))
    return (*page, headers) if page is not None else problem_response(body, headers)


def _page_detail(exc: HTTPException, body: dict[str, Any]) -> str:
    """What the page tells the operator: a refusal for too many tries says how long to wait
    (the limiter's own description is the limit, "5 per 1 minute")."""
    if body["status"] == 429 and body.get("retry_after") is not None:
        g.retry_after = body["retry_after"]  # the Retry-After header says the same
        return f"Too many attempts: try again in {body['retry_after']} s."
    return exc.description or str(body["detail"])


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Any:
    """An /ops page that failed (503 while the database is away) is a page too; /ops/api/
    answers with the API's problem."""
    endpoint, method = request_labels()
    body = logged_server_problem(exc, log, "unhandled error", method=method, endpoint=endpoint)
    headers = {"Retry-After": str(UNAVAILABLE_RETRY_AFTER)} if body["status"] == 503 else {}
    detail = UNAVAILABLE if body["status"] == 503 else body["detail"]
    page = _error_page(body["status"], body["title"], detail)
    if page is None:
        return problem_response(body, headers or None)
    return (*page, headers)


def register(app: Flask, socketio: SocketIO) -> None:
    """Mount /ops, its sign-in cookie and its live namespace on the app."""
    settings = app.extensions["reach.settings"]
    auth.configure(app, settings)
    filters.register(app)
    app.register_blueprint(bp)
    live.register(app, socketio)


# Imported for their routes: the views register themselves on the blueprint.
__all__ = ["register", "support", "views"]
