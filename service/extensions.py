"""Extensions, created unbound and bound to the app in create_app."""

from __future__ import annotations

from typing import Any

from flask import request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_smorest import Api
from werkzeug.exceptions import HTTPException

from schemas.errors import ProblemSchema
from service.db import Database
from service.errors import from_http_exception


class ReachApi(Api):
    """flask-smorest's Api, answering every HTTP error in the problem+json shape."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        """Error responses are documented as they are sent: application/problem+json."""
        self.DEFAULT_RESPONSE_CONTENT_TYPE = "application/problem+json"
        try:
            super()._register_responses()
        finally:
            del self.DEFAULT_RESPONSE_CONTENT_TYPE

    def handle_http_exception(self, error: HTTPException) -> Any:
        body, headers = from_http_exception(error)
        return body, body["status"], {**headers, "Content-Type": "application/problem+json"}


def rate_limit_key() -> str:
    """Signed-in callers are limited per account, others per address."""
    from flask import g

    member = g.get("current_member")
    if member is not None:
        return f"user:{member.user_id}"
    return f"ip:{get_remote_address()}"


def client_address() -> str:
    return request.remote_addr or "unknown"


db = Database()
limiter = Limiter(key_func=rate_limit_key, headers_enabled=True)
