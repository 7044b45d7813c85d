"""The overview, push health and audit log pages, and their JSON twins under /ops/api/."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Response

from schemas.base import read_integer
from service.dashboard import live
from service.dashboard.auth import current_operator
from service.dashboard.blueprint import bp
from service.domain.errors import ReachError
from service.extensions import db
from service.services import ops_audit, ops_push

AUDIT_PAGE = 100
NO_DASHBOARD_METHODS = ["PUT", "PATCH", "DELETE"]  # no page or form of /ops takes them


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_jsonable(item) for item in value]
    return value


@bp.get("/")
def overview() -> str:
    """Live health and aggregates over all couples."""
    figures = live.overview_now(db.session)
    refresh = current_app.extensions["reach.settings"].OPS_REFRESH_SECONDS
    return render_template("ops/overview.html", figures=figures, refresh_seconds=refresh)


@bp.get("/api/overview")
def overview_json() -> Response:
    """The overview's figures: the same shape as the `ops.overview` socket event."""
    return jsonify(live.overview_now(db.session))


def _push_health() -> dict[str, Any]:
    """Push health with the page of dead letters that `before` (a cursor) asks for."""
    before = request.args.get("before")
    try:
        cursor = ops_push.dead_letter_cursor(before) if before is not None else None
    except ValueError:
        # A domain error, so /ops/api/ answers this detail too (an HTTP abort's is generic there).
        raise ReachError(
            "That page of dead letters does not exist: start from the newest."
        ) from None
    return ops_push.health(db.session, dead_before=cursor)


@bp.get("/push")
def push_health() -> str:
    """Push outcomes by platform and error; dead-lettered pushes with a retry action."""
    return render_template("ops/push.html", health=_push_health(), paged="before" in request.args)


@bp.get("/api/push")
def push_health_json() -> Response:
    return jsonify(_jsonable(_push_health()))


@bp.post("/push/jobs/<int:job_id>/retry")
def retry_push(job_id: int) -> Response:
    """Send a dead-lettered push again (recorded in the audit log)."""
    try:
        ops_push.retry(db.session, current_operator(), job_id)
    except ReachError as exc:
        db.roll_back()
        flash(exc.detail, "error")
    else:
        flash(f"Push job {job_id} is pending again.", "ok")
        inline = current_app.extensions.get("reach.inline_worker")
        if inline is not None:
            inline.wake()
    return redirect(url_for("ops.push_health"))


def _audit_page() -> tuple[list[Any], int | None]:
    """A page of entries and where the next (older) one starts: None when nothing is older."""
    before = request.args.get("before", type=read_integer)
    if before is None and "before" in request.args:
        # Not a bound at all: the same answer as push health's, not the newest page again.
        raise ReachError("That page of the audit log does not exist: start from the newest.")
    entries = ops_audit.recent(db.session, limit=AUDIT_PAGE + 1, before=before)
    if len(entries) <= AUDIT_PAGE:
        return entries, None
    return entries[:AUDIT_PAGE], entries[AUDIT_PAGE - 1].id


@bp.get("/audit")
def audit_log() -> str:
    """Who did what to which target, and when."""
    entries, older = _audit_page()
    paged = "before" in request.args
    return render_template("ops/audit.html", entries=entries, older=older, paged=paged)


@bp.get("/api/audit")
def audit_log_json() -> Response:
    entries, older = _audit_page()
    items = [
        {
            "id": e.id,
            "at": _jsonable(e.at),
            "operator": e.operator_email,
            "action": e.action,
            "target_type": e.target_type,
            "target_id": e.target_id,
            "detail": e.detail,
        }
        for e in entries
    ]
    return jsonify({"items": items, "next": older})


@bp.route("/<path:anything>", methods=["GET", "HEAD", "POST"])
def no_page(anything: str) -> Response:
    """Any other address under /ops (mistyped, or an action's opened as a page) is the
    dashboard's own 404 page, not the API's problem JSON (/ops/api/ still answers JSON)."""
    abort(404, description="There is no such page in the dashboard.")


@bp.route("/", methods=NO_DASHBOARD_METHODS, defaults={"anything": ""})
@bp.route("/<path:anything>", methods=NO_DASHBOARD_METHODS)
def wrong_method(anything: str) -> NoReturn:
    """PUT, PATCH or DELETE anywhere under /ops: the dashboard's own 405 page (routing's own
    would be the API's JSON, without the pages' headers), naming what the address takes; an
    address that is no page is the 404 page. It does nothing, so it asks for no CSRF token."""
    taken = _methods_taken(request.path)
    if not taken:
        abort(404, description="There is no such page in the dashboard.")
    raise MethodNotAllowed(valid_methods=taken)


def _methods_taken(path: str) -> list[str]:
    """The methods a dashboard address answers (GET brings HEAD), besides the 404 page's."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    taken: set[str] = set()
    for method in ("GET", "POST"):
        try:
            endpoint, _ = adapter.match(path, method=method)
        except HTTPException:  # not with this method, or a redirect of its own
            continue
        if endpoint != "ops.no_page":
            taken |= {method, "HEAD"} if method == "GET" else {method}
    return sorted(taken | {"OPTIONS"}) if taken else []
