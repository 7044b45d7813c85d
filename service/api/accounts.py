"""Register, sign in, refresh, sign out, and reset a forgotten password."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask import Response, current_app, request
from flask.views import MethodView
from sqlalchemy import select
from werkzeug.exceptions import HTTPException

from schemas.accounts import (
    LoginSchema,
    PasswordResetRequestedSchema,
    PasswordResetRequestSchema,
    PasswordResetSchema,
    RefreshSchema,
    RegisterSchema,
    TokenPairSchema,
)
from service import mail
from service.api.auth import token_issuer
from service.api.blueprint import Blueprint
from service.clock import clock
from service.domain.errors import Unauthorized
from service.extensions import (
    Counted,
    auth_email_limit,
    auth_limit,
    client_address,
    count_as_route,
    db,
    email_limit_key,
    limit_setting,
    limiter,
    only_refusals_count,
    rate_limit_key,
    unread_requests_do_not_count,
)
from service.models import AuthSession, RefreshToken
from service.realtime import members
from service.security.tokens import hash_refresh_token
from service.services import accounts

PREFIX = "/auth"
blp = Blueprint("auth", __name__, description="Accounts and sessions")

_reset_limit = limit_setting("RATELIMIT_PASSWORD_RESET")


def _json_body() -> Any:
    """The body for a limit key, read before the view: None if it cannot be read (too large,
    nested too deeply to parse), which the view then refuses (413, 400)."""
    try:
        return request.get_json(silent=True)
    except (HTTPException, RecursionError):
        return None


def _submitted_email() -> str:
    """The limit key of the account a sign-in or sign-up names (malformed: the address)."""
    body = _json_body()
    email = body.get("email") if isinstance(body, dict) else None
    if isinstance(email, str) and email.strip():
        return email_limit_key("email", accounts.normalize_email(email)[:254])
    return f"email-less:{client_address()}"


def _refreshing_session() -> str:
    """The limit key of a refresh: the sign-in session of a token that can rotate (each
    rotation stores a token), a retry of a rotation within the grace window included
    (`accounts.rotating_session`). Only rotations count (`_rotated`), so any other token,
    unknown, reused or of an ended session, is under a key that nothing counts: it gets its
    401, and a reused one still reveals its reuse, however many rotations someone else made."""
    body = _json_body()
    token = body.get("refresh_token") if isinstance(body, dict) else None
    if isinstance(token, str) and token:
        live = accounts.rotating_session(db.session, token, clock.now(), _reuse_grace())
        if live is not None:
            return f"session:{live}"
    return f"refused:{client_address()}"


def _rotated(response: Response) -> bool:
    return response.status_code == 200


def _refresh_days() -> int:
    return int(current_app.config["REFRESH_TOKEN_DAYS"])


def _reuse_grace() -> timedelta:
    settings = current_app.extensions["reach.settings"]
    return timedelta(seconds=settings.REFRESH_REUSE_GRACE_SECONDS)


def _revoked_session(refresh_token: str) -> uuid.UUID | None:
    """The sign-in session of a refresh token, if that session has ended."""
    return db.session.scalar(
        select(AuthSession.id)
        .join(RefreshToken, RefreshToken.session_id == AuthSession.id)
        .where(
            RefreshToken.token_hash == hash_refresh_token(refresh_token),
            AuthSession.revoked_at.is_not(None),
        )
    )


@blp.route("/register")
class Register(MethodView):
    decorators = [
        # Only a sign-up read whole counts: one that could create an account, or say that the
        # email has one (409).
        unread_requests_do_not_count,
        limiter.limit(auth_limit, methods=["POST"]),
        limiter.limit(auth_email_limit, key_func=_submitted_email, methods=["POST"], scope="email"),
    ]

    @blp.doc(operationId="register")
    @blp.arguments(RegisterSchema)
    @blp.response(201, TokenPairSchema, description="Account made and signed in")
    @blp.alt_response(
        200,
        schema=TokenPairSchema,
        description="A sign-up sent again soon after it made the account: signed in to it",
    )
    @blp.problem(409, "The email is taken")
    @blp.problem(429)
    def post(self, body: dict[str, Any]) -> tuple[accounts.SignedIn, int]:
        """Create an account and sign in

        A sign-up sent again whose answer was lost (the same email and password, within
        10 minutes of the account's making) signs in to the account it made: 200, not 201,
        as any write sent again returns what the first made, and with a new sign-in session.
        The account is returned as stored: the retry's `display_name` and `timezone` are not
        read. It is a sign-in under the sign-in's limits, per address and per email, where a
        wrong password counts as a failed sign-in and is answered 409 as any taken email is.
        """
        try:
            return accounts.register(db.session, token_issuer(), _refresh_days(), **body), 201
        except accounts.EmailTaken:
            if not accounts.may_be_a_retry(db.session, body["email"]):
                raise
        email_counts = _count_as_a_sign_in()
        signed_in = accounts.sign_up_again(
            db.session,
            token_issuer(),
            _refresh_days(),
            email=body["email"],
            password=body["password"],
        )
        # As a sign-in that succeeds, it gives back its count against the account.
        for counted in email_counts:
            counted.give_back()
        return signed_in, 200


def _count_as_a_sign_in() -> list[Counted]:
    """Count this request as `Login` counts a sign-in: per address and per submitted email
    (429 once either is spent); its counts against the email."""
    login = f"{blp.name}.{Login.__name__}"
    count_as_route("RATELIMIT_AUTH", rate_limit_key(), login)
    return count_as_route("RATELIMIT_AUTH_EMAIL", _submitted_email(), f"{login}:email")


@blp.route("/login")
class Login(MethodView):
    decorators = [
        # Guessing one account's password from many addresses: only failures stay counted.
        only_refusals_count("email"),
        unread_requests_do_not_count,
        limiter.limit(auth_limit, methods=["POST"]),
        limiter.limit(auth_email_limit, key_func=_submitted_email, methods=["POST"], scope="email"),
    ]

    @blp.doc(operationId="login")
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenPairSchema)
    @blp.problem(401, "Wrong email or password, or the account is disabled")
    @blp.problem(429)
    def post(self, body: dict[str, Any]) -> accounts.SignedIn:
        """Sign in with email and password"""
        return accounts.login(db.session, token_issuer(), _refresh_days(), **body)


@blp.route("/refresh")
class Refresh(MethodView):
    decorators = [
        limiter.limit(
            limit_setting("RATELIMIT_REFRESH"),
            key_func=_refreshing_session,
            deduct_when=_rotated,
        ),
    ]

    @blp.doc(operationId="refreshTokens")
    @blp.arguments(RefreshSchema)
    @blp.response(200, TokenPairSchema)
    @blp.problem(401, "Unknown, used or expired refresh token")
    @blp.problem(429)
    def post(self, body: dict[str, Any]) -> accounts.SignedIn:
        """Trade a refresh token for a new pair; the old one stops working

        A token presented twice revokes its session, except a retry whose answer was lost:
        presented again within REFRESH_REUSE_GRACE_SECONDS (30 s by default) of its rotation,
        while the refresh token of that lost answer is unused, it gets a new pair, and the lost
        answer's refresh token stops working.
        """
        try:
            return accounts.refresh(
                db.session,
                token_issuer(),
                _refresh_days(),
                body["refresh_token"],
                grace=_reuse_grace(),
            )
        except Unauthorized:
            # A reused token revokes its session: its sockets close too (wherever they are).
            revoked = _revoked_session(body["refresh_token"])
            if revoked is not None:
                members.disconnect_session(revoked)
            raise


@blp.route("/logout")
class Logout(MethodView):
    @blp.doc(operationId="logout")
    @blp.arguments(RefreshSchema)
    @blp.response(204)
    def post(self, body: dict[str, Any]) -> None:
        """Sign out: revoke the session of this refresh token"""
        accounts.logout(db.session, body["refresh_token"])
        revoked = _revoked_session(body["refresh_token"])
        if revoked is not None:
            members.disconnect_session(revoked)


@blp.route("/password-reset")
class PasswordResetRequest(MethodView):
    decorators = [
        unread_requests_do_not_count,
        limiter.limit(auth_limit, methods=["POST"]),
        limiter.limit(_reset_limit, key_func=_submitted_email, methods=["POST"], scope="reset"),
    ]

    @blp.doc(operationId="requestPasswordReset")
    @blp.arguments(PasswordResetRequestSchema)
    @blp.response(
        202, PasswordResetRequestedSchema, description="Asked for; mailed if it has an account"
    )
    @blp.problem(429)
    def post(self, body: dict[str, Any]) -> dict[str, int]:
        """Forgot the password: mail a code to set a new one with

        The account of `email` is mailed a code (8 characters, `7KQ2-MX9D`), which works for
        30 minutes, for 5 tries, once, with `POST /auth/password-reset/confirm`. A new request
        replaces the code: only the one mailed last works. The answer is the same whether the
        address has an account or not (a disabled one gets no mail). Counts against
        RATELIMIT_PASSWORD_RESET per submitted email (3 an hour, 10 a day) and RATELIMIT_AUTH
        per address.
        """
        code = accounts.request_password_reset(db.session, token_issuer(), body["email"])
        if code is not None:
            mail.deliver(accounts.reset_mail(code))
        return {"expires_in": int(accounts.CODE_TTL.total_seconds())}


@blp.route("/password-reset/confirm")
class PasswordReset(MethodView):
    decorators = [
        unread_requests_do_not_count,
        limiter.limit(auth_limit, methods=["POST"]),
    ]

    @blp.doc(operationId="resetPassword")
    @blp.arguments(PasswordResetSchema)
    @blp.response(200, TokenPairSchema, description="Password set; this phone is signed in")
    @blp.problem(401, "The account is disabled")
    @blp.problem(429)
    def post(self, body: dict[str, Any]) -> accounts.SignedIn:
        """Set a new password with a mailed code, and sign in

        A code that is not the one mailed last for `email`, has expired, was used, or was
        tried 5 times is a 422 naming `code` (ask for a new one). Every phone signed in to the
        account is signed out (tokens stop working, sockets close, devices get no pushes until
        they sign in again); this phone gets a new sign-in, as `POST /auth/login` gives. The
        same reset sent again within 5 minutes (the same code and password: its answer was
        lost) signs in again.
        """
        reset = accounts.reset_password(db.session, token_issuer(), _refresh_days(), **body)
        for session_id in reset.ended:  # their open sockets close, in every process
            members.disconnect_session(session_id)
        return reset.signed_in
