"""Register, sign in, refresh and sign out."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView
from flask_smorest import Blueprint

from schemas.accounts import LoginSchema, RefreshSchema, RegisterSchema, TokenPairSchema
from service.api.auth import token_issuer
from service.extensions import db, limiter
from service.services import accounts

PREFIX = "/auth"
blp = Blueprint("auth", __name__, description="Accounts and sessions")


def _auth_limit() -> str:
    return str(current_app.config["RATELIMIT_AUTH"])


def _refresh_days() -> int:
    return int(current_app.config["REFRESH_TOKEN_DAYS"])


@blp.route("/register")
class Register(MethodView):
    decorators = [limiter.limit(_auth_limit, methods=["POST"])]

    @blp.arguments(RegisterSchema)
    @blp.response(201, TokenPairSchema)
    @blp.alt_response(409, description="The email is taken")
    def post(self, body: dict[str, Any]) -> accounts.SignedIn:
        """Create an account and sign in"""
        return accounts.register(db.session, token_issuer(), _refresh_days(), **body)


@blp.route("/login")
class Login(MethodView):
    decorators = [limiter.limit(_auth_limit, methods=["POST"])]

    @blp.arguments(LoginSchema)
    @blp.response(200, TokenPairSchema)
    @blp.alt_response(401, description="Wrong email or password")
    def post(self, body: dict[str, Any]) -> accounts.SignedIn:
        """Sign in with email and password"""
        return accounts.login(db.session, token_issuer(), _refresh_days(), **body)


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.arguments(RefreshSchema)
    @blp.response(200, TokenPairSchema)
    @blp.alt_response(401, description="Unknown, used or expired refresh token")
    def post(self, body: dict[str, Any]) -> accounts.SignedIn:
        """Trade a refresh token for a new pair; the old one stops working"""
        return accounts.refresh(db.session, token_issuer(), _refresh_days(), body["refresh_token"])


@blp.route("/logout")
class Logout(MethodView):
    @blp.arguments(RefreshSchema)
    @blp.response(204)
    def post(self, body: dict[str, Any]) -> None:
        """Sign out: revoke the session of this refresh token"""
        accounts.logout(db.session, body["refresh_token"])
