"""The /ops blueprint: server-rendered pages, their JSON twins, static files."""

from __future__ import annotations

from flask import Blueprint, Response, request

bp = Blueprint(
    "ops",
    __name__,
    url_prefix="/ops",
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

# Same-origin scripts, styles and sockets only; nothing inline runs, nothing frames the pages.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@bp.after_request
def harden(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "ops.static":
        response.headers["Cache-Control"] = "no-store"
    return response
