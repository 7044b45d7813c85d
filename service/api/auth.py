"""Who is calling: the bearer-token decorator shared by every member endpoint."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import current_app, g, request
from flask_smorest import Blueprint

from service.clock import clock
from service.domain.errors import Unauthorized
from service.extensions import db
from service.models import User
from service.security.tokens import AccessClaims, TokenIssuer
from service.services import members
from service.services.members import Member

F = TypeVar("F", bound=Callable[..., Any])

BEARER: list[dict[str, list[str]]] = [{"bearerAuth": []}]


def documented_member(blp: Blueprint) -> Callable[[F], F]:
    """Document an endpoint as needing the bearer token (security + 401 response)."""

    def decorate(view: F) -> F:
        view = blp.doc(security=BEARER)(view)
        return cast(F, blp.alt_response(401, response="UNAUTHORIZED")(view))

    return decorate


def token_issuer() -> TokenIssuer:
    return cast(TokenIssuer, current_app.extensions["reach.tokens"])


def bearer_token() -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send the access token as 'Authorization: Bearer <token>'.")
    return token.strip()


def access_claims() -> AccessClaims:
    """The caller's access token, checked (signature, times); its session is not looked up."""
    return token_issuer().read_access_token(bearer_token(), clock.now())


def current_member() -> Member:
    member: Member | None = g.get("current_member")
    if member is None:
        raise Unauthorized()
    return member


def current_user() -> User:
    """The caller's account row (loaded on first use; most reads need only `current_member`)."""
    user: User | None = g.get("current_user")
    if user is None:
        user = g.current_user = members.user_of(db.session, current_member())
    return user


def recent_members() -> members.RecentMembers:
    return cast(members.RecentMembers, current_app.extensions["reach.recent_members"])


def remembered_member_required(view: F) -> F:
    """`auth_required` for a write that proves its member in its own statement (POST /bids).

    The token is checked as always. A member this process looked up lately is then taken from
    memory, not from the database, and `member_recheck()` gives the write a way to look them
    up again when its proof fails; anyone else is looked up (and remembered) at once.
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        claims = access_claims()
        remembered = recent_members().get(claims.user_id, claims.session_id)
        if remembered is None:
            _look_up(claims)
        else:
            g.current_member = remembered
            g.member_recheck = functools.partial(_look_up, claims)
        return view(*args, **kwargs)

    return cast(F, wrapper)


def member_recheck() -> Callable[[], Member] | None:
    """How to look the caller up again, when `current_member()` came from memory."""
    recheck: Callable[[], Member] | None = g.get("member_recheck")
    return recheck


def _look_up(claims: AccessClaims) -> Member:
    g.pop("member_recheck", None)
    try:
        member = members.live_member(db.session, claims.user_id, claims.session_id)
    except Unauthorized:
        recent_members().forget_session(claims.user_id, claims.session_id)
        raise
    recent_members().remember(member)
    g.current_member = member
    return member


def auth_required(view: F) -> F:
    """Require a live access token; the caller is then `current_member()` / `current_user()`."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        g.current_member = members.authenticate(db.session, token_issuer(), bearer_token())
        return view(*args, **kwargs)

    return cast(F, wrapper)
