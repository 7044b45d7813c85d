"""Operator sign-in for /ops: a signed cookie that holds a random, server-side session id."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import unquote, urlsplit

from flask import (
    Flask,
    Request,
    current_app,
    flash,
    g,
    has_request_context,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from schemas.base import text_faults
from service.clock import clock
from service.config import Settings
from service.dashboard import csrf
from service.dashboard.blueprint import bp
from service.domain.errors import Unauthorized
from service.errors import problem_body, problem_response
from service.extensions import (
    auth_email_limit,
    auth_limit,
    client_address,
    db,
    email_limit_key,
    limiter,
    only_refusals_count,
)
from service.models import Operator
from service.services import ops_accounts

log = logging.getLogger("reach.ops")

COOKIE_NAME = "reach_ops"
SESSION_KEY = "ops_sid"
PUBLIC_ENDPOINTS = frozenset({"ops.login", "ops.static"})
DOES_NOTHING = "ops.wrong_method"  # a method no address takes: refused, no token to check


class OpsSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure in production and whenever the request is HTTPS.

    A request without the cookie (every phone's: they send bearer tokens) gets an empty
    session without the signer Flask builds to read one: opening the session took 2.1% of
    the API's samples under load, 1.4% without the signer (bench/RESULTS.md, "What changed"
    34)."""

    salt = "reach-ops-session"

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if app.secret_key and not request.cookies.get(self.get_cookie_name(app)):
            return self.session_class()
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        if app.config["SESSION_COOKIE_SECURE"]:
            return True
        return has_request_context() and request.is_secure


def configure(app: Flask, settings: Settings) -> None:
    app.session_interface = OpsSessionInterface()
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Production (PostgreSQL) always; the embedded default and tests only over HTTPS.
        SESSION_COOKIE_SECURE=not settings.TESTING and not settings.is_sqlite,
    )


def current_operator() -> Operator:
    operator: Operator | None = g.get("operator")
    if operator is None:
        raise Unauthorized("Sign in at /ops/login.")
    return operator


def session_token() -> str | None:
    value = session.get(SESSION_KEY)
    return value if isinstance(value, str) else None


@bp.before_request
def require_operator() -> ResponseReturnValue | None:
    """Every /ops page needs a live operator session; members' tokens count for nothing here."""
    if request.endpoint == "ops.static":
        return None
    g.operator = ops_accounts.session_operator(db.session, session_token())
    if g.operator is None and request.endpoint not in PUBLIC_ENDPOINTS:
        if request.path.startswith("/ops/api/"):
            body = problem_body(401, detail="Sign in at /ops/login.")
            return problem_response(body)
        if request.endpoint == "ops.logout":  # what it asked for is already so
            flash("You are signed out: your session had already ended.", "ok")
        elif request.method not in csrf.SAFE_METHODS:
            flash("Your session had ended, so that was not done: sign in, then try again.", "error")
        return redirect(url_for("ops.login", next=_return_to()))
    if request.endpoint != DOES_NOTHING:
        csrf.check()
    return None


@bp.context_processor
def template_context() -> dict[str, Any]:
    return {"operator": g.get("operator"), "csrf_token": csrf.token, "read_at": clock.now()}


def form_text(name: str) -> str:
    """A form field as text the database can compare: one with a NUL or a lone surrogate
    (PostgreSQL text cannot hold them, so no stored email has one) reads as empty."""
    value = request.form.get(name, "")
    return "" if text_faults(value) else value


def _return_to() -> str | None:
    """Where signing in leads back to: the page asked for, with its query (the audit log's
    older page); for a form sent (an action, whose address takes only forms), the page it was
    sent from, which the operator presses it on again (Referrer-Policy: same-origin). None for
    anything else: the overview."""
    if request.method in csrf.SAFE_METHODS:
        return _with_query(request.path, request.query_string.decode("latin-1"))
    referrer = urlsplit(request.referrer or "")
    if referrer.netloc != request.host or not referrer.path:
        return None
    return _with_query(referrer.path, referrer.query)


def _with_query(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


def _safe_next(target: str | None) -> str:
    """Only a page inside /ops (never another host, never an action's address: a GET of it is
    a 405) is a place to go back to; never a path with dot segments, which the browser
    resolves before it goes there (`/ops/../api/` is out of /ops)."""
    parts = urlsplit(target or "")
    path = parts.path
    dots = {".", ".."} & set(unquote(path).split("/"))
    if parts.scheme or parts.netloc or not path.startswith("/ops/") or "\\" in path or dots:
        return url_for("ops.overview")
    return _with_query(path, parts.query) if _is_page(path) else url_for("ops.overview")


def _is_page(path: str) -> bool:
    """Whether `path` is a page of /ops a browser opens (a GET of the dashboard's own, not the
    404 page of an address that is none)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    try:
        endpoint, _ = adapter.match(path, method="GET")
    except HTTPException:  # no such page, only forms (405), or a redirect of its own
        return False
    ours = isinstance(endpoint, str) and endpoint.startswith("ops.")
    return ours and endpoint not in PUBLIC_ENDPOINTS and endpoint != "ops.no_page"


def _submitted_email() -> str:
    """The limit key of the operator account a sign-in names (none: the address)."""
    email = ops_accounts.normalize_email(request.form.get("email", ""))
    return (
        email_limit_key("operator", email[:254]) if email else f"operator-less:{client_address()}"
    )


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(auth_limit, methods=["POST"])
@limiter.limit(auth_email_limit, key_func=_submitted_email, methods=["POST"], scope="ops-email")
# Guessing one operator's password from many addresses: only failures stay counted.
@only_refusals_count("ops-email")
def login() -> Any:
    """Sign in; the session id and the CSRF token are new afterwards (no fixation)."""
    if g.get("operator") is not None:  # already signed in: where the link leads
        return redirect(_safe_next(request.args.get("next")))
    error, status = None, 200
    if request.method == "POST":
        settings: Settings = current_app.extensions["reach.settings"]
        try:
            signed_in = ops_accounts.sign_in(
                db.session,
                form_text("email"),
                request.form.get("password", ""),
                settings.OPS_SESSION_HOURS,
            )
        except Unauthorized as exc:
            log.warning("operator sign-in refused", extra={"remote": request.remote_addr})
            error, status = exc.detail, 401
        else:
            session.clear()
            session[SESSION_KEY] = signed_in.session_token
            csrf.rotate()
            return redirect(_safe_next(request.form.get("next")))
    next_path = request.values.get("next", "")
    return render_template("ops/login.html", error=error, next=next_path), status


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out: the server forgets the session, so the old cookie opens nothing any more."""
    from service.dashboard import live

    token = session_token()
    if token:
        ops_accounts.sign_out(db.session, current_operator(), token)
        live.disconnect_operator_session(token)
    session.clear()
    return redirect(url_for("ops.login"))
