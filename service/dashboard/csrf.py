"""CSRF protection for /ops: a random token per session, required on every state change."""

from __future__ import annotations

import hmac
import secrets

from flask import abort, current_app, request, session

SESSION_KEY = "csrf"
FORM_FIELD = "csrf_token"
HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
INSECURE = (
    "The form came without its session: the dashboard's cookie is Secure, and browsers keep it"
    " only over HTTPS or on localhost. Open /ops over HTTPS (or through a tunnel to localhost)."
)


def token() -> str:
    """This session's token (made on first use); templates put it in every form."""
    current = session.get(SESSION_KEY)
    if not isinstance(current, str) or not current:
        current = secrets.token_urlsafe(32)
        session[SESSION_KEY] = current
    return current


def rotate() -> str:
    """A new token (at sign-in, with the new session)."""
    session[SESSION_KEY] = secrets.token_urlsafe(32)
    return str(session[SESSION_KEY])


def check() -> None:
    """Refuse (400) a state-changing request without this session's token, before the view runs."""
    if request.method in SAFE_METHODS:
        return
    expected = session.get(SESSION_KEY)
    sent = request.form.get(FORM_FIELD) or request.headers.get(HEADER) or ""
    if not isinstance(expected, str) or not expected or not sent:
        if current_app.config["SESSION_COOKIE_SECURE"] and not request.is_secure:
            # No session came back: a browser keeps a Secure cookie over HTTPS (or on localhost)
            # only, so reloading would never help.
            abort(400, description=INSECURE)
        abort(400, description="The form was missing its CSRF token: reload the page and retry.")
    if not hmac.compare_digest(expected.encode(), sent.encode()):
        abort(400, description="The form's CSRF token is wrong or stale: reload the page.")
