"""Pairing: invites, joining, the couple, unpairing."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask.views import MethodView

from schemas.couples import CoupleSchema, InviteSchema, JoinSchema, UnpairArgsSchema
from service.api.auth import auth_required, current_user, documented_member
from service.api.blueprint import Blueprint
from service.domain import invites
from service.extensions import (
    client_address,
    db,
    limit_setting,
    limiter,
    only_refusals_count,
)
from service.models import Invite
from service.services import pairing

PREFIX = "/couple"
blp = Blueprint("couple", __name__, description="Pairing two partners")
member = documented_member(blp)


# Invites created, and joins tried, per account (each counted apart); joins per address.
_pairing_limit = limit_setting("RATELIMIT_JOIN")
_join_address_limit = limit_setting("RATELIMIT_JOIN_ADDRESS")


def _address() -> str:
    return f"ip:{client_address()}"


@blp.route("/invites")
class Invites(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="createInvite")
    @blp.response(201, InviteSchema)
    @blp.problem(409, "The caller is already paired")
    @blp.problem(429)
    @limiter.limit(_pairing_limit)
    def post(self) -> dict[str, Any]:
        """Create an invite code for a partner (single use, expires)"""
        ttl = int(current_app.config["INVITE_TTL_MINUTES"])
        invite = pairing.create_invite(db.session, current_user(), ttl)
        return _shown(invite)

    @member
    @blp.doc(operationId="getInvite")
    @blp.response(200, InviteSchema)
    @blp.problem(404, "The caller has no code that still works")
    @blp.problem(409, "The caller is already paired")
    def get(self) -> dict[str, Any]:
        """The caller's own invite code that still works (shown to its maker alone)"""
        return _shown(pairing.live_invite(db.session, current_user()))

    @member
    @blp.doc(operationId="withdrawInvite")
    @blp.response(204)
    @blp.problem(409, "The caller is already paired (the code may just have paired them)")
    def delete(self) -> None:
        """Withdraw the caller's invite code: a join with it is refused as an expired one"""
        pairing.withdraw_invite(db.session, current_user())


def _shown(invite: Invite) -> dict[str, Any]:
    return {"code": invites.display(invite.code), "expires_at": invite.expires_at}


@blp.route("/join")
class Join(MethodView):
    # Per account, and per address over every account behind it (guessing codes with many
    # accounts). auth_required runs first: the per-account key needs the caller. Per address
    # only wrong codes (422) stay counted: couples pairing behind one NAT are not guessing.
    decorators = [
        only_refusals_count("address", refused=422),
        limiter.limit(_pairing_limit, methods=["POST"]),
        limiter.limit(_join_address_limit, key_func=_address, methods=["POST"], scope="address"),
        auth_required,
    ]

    @member
    @blp.doc(operationId="joinCouple")
    @blp.arguments(JoinSchema)
    @blp.response(201, CoupleSchema, description="Paired")
    @blp.alt_response(
        200, schema=CoupleSchema, description="The same code sent again by the person it paired"
    )
    @blp.problem(409, "The caller is already paired (a code whose maker has paired since is 422)")
    @blp.problem(429)
    def post(self, body: dict[str, Any]) -> tuple[pairing.CoupleView, int]:
        """Join a partner with their invite code"""
        joined = pairing.join(db.session, current_user(), body["code"])
        return joined.couple, 201 if joined.created else 200


@blp.route("")
class CoupleResource(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="getCouple")
    @blp.response(200, CoupleSchema)
    @blp.problem(404, "Not paired")
    def get(self) -> pairing.CoupleView:
        """The caller's couple, or 404 when unpaired"""
        return pairing.current_couple(db.session, current_user())

    @member
    @blp.doc(operationId="unpair")
    @blp.arguments(UnpairArgsSchema, location="query")
    @blp.response(204)
    @blp.problem(404, "Not paired, or no longer in the `couple_id` named")
    def delete(self, args: dict[str, Any]) -> None:
        """Unpair; both phones are told"""
        pairing.unpair(db.session, current_user(), args.get("couple_id"))
