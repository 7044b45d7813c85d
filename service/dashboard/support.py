"""Support pages: find an account by email, see its state, act on it (every action audited)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from flask import current_app, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from service.dashboard.auth import current_operator, form_text
from service.dashboard.blueprint import bp
from service.domain.errors import ReachError
from service.extensions import db
from service.realtime import members
from service.services import ops_support


def _access_seconds() -> int:
    """How long a member's access token works: a session counts while its last one does."""
    return int(current_app.extensions["reach.settings"].ACCESS_TOKEN_SECONDS)


@bp.get("/support")
def support() -> str:
    """Search an account by email (the search is a POST: emails stay out of URLs and logs)."""
    return render_template("ops/support.html", account=None)


@bp.post("/support/search")
def support_search() -> Response | tuple[str, int]:
    typed = request.form.get("email", "").strip()
    if not typed:  # spaces pass the field's `required`
        return render_template("ops/support.html", account=None, no_email=True), 400
    email = form_text("email").strip()  # empty if no stored email could be it (a NUL)
    user_id = ops_support.find_user(db.session, current_operator(), email) if email else None
    if user_id is None:
        return render_template("ops/support.html", account=None, not_found=typed), 404
    return redirect(url_for("ops.support_account", user_id=user_id))


@bp.get("/support/users/<uuid:user_id>")
def support_account(user_id: uuid.UUID) -> str:
    """Account, couple and device state of one account."""
    account = ops_support.account(db.session, user_id, _access_seconds())
    return render_template("ops/support.html", account=account)


def _act(user_id: uuid.UUID, action: Callable[[], object], done: str) -> Response:
    try:
        action()
    except ReachError as exc:
        db.roll_back()
        flash(exc.detail, "error")
    else:
        flash(done, "ok")
    return redirect(url_for("ops.support_account", user_id=user_id))


@bp.post("/support/users/<uuid:user_id>/disable")
def disable_account(user_id: uuid.UUID) -> Response:
    """Disable the account: every session ends and its next API call is refused."""

    def disable() -> None:
        ops_support.disable_account(db.session, current_operator(), user_id, _access_seconds())
        members.disconnect_user(user_id)

    return _act(user_id, disable, "The account is disabled and signed out everywhere.")


@bp.post("/support/users/<uuid:user_id>/enable")
def enable_account(user_id: uuid.UUID) -> Response:
    return _act(
        user_id,
        lambda: ops_support.enable_account(db.session, current_operator(), user_id),
        "The account is enabled again; its owner signs in anew.",
    )


@bp.post("/support/users/<uuid:user_id>/revoke-sessions")
def revoke_sessions(user_id: uuid.UUID) -> Response:
    def revoke() -> None:
        ops_support.revoke_sessions(db.session, current_operator(), user_id, _access_seconds())
        members.disconnect_user(user_id)

    return _act(user_id, revoke, "Every session of the account has ended.")


@bp.post("/support/users/<uuid:user_id>/devices/<uuid:device_id>/disable")
def disable_device(user_id: uuid.UUID, device_id: uuid.UUID) -> Response:
    return _act(
        user_id,
        lambda: ops_support.disable_device(db.session, current_operator(), user_id, device_id),
        "The device gets no more pushes.",
    )
