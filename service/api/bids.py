"""Bids: reach for the partner, acknowledge, respond."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Response, current_app, jsonify
from flask.views import MethodView

from schemas.bids import (
    BidCreateSchema,
    BidListSchema,
    BidQueryArgsSchema,
    BidResponseCreateSchema,
    BidSchema,
)
from service.api.auth import (
    auth_required,
    current_member,
    current_user,
    documented_member,
    member_recheck,
    remembered_member_required,
)
from service.api.blueprint import Blueprint
from service.extensions import SENDING_BIDS, db, limit_setting, limiter
from service.services import bids

PREFIX = "/bids"
blp = Blueprint("bids", __name__, description="Reaching for the partner")
member = documented_member(blp)


_bid_limit = limit_setting("RATELIMIT_BIDS")


def _status(written: bids.Written) -> tuple[dict[str, Any], int]:
    return written.bid, 201 if written.created else 200


def _sent(written: bids.Written) -> tuple[Response | dict[str, Any], int]:
    """The bid as BidSchema dumps it; a new bid was dumped for its event already."""
    if written.wired is not None:
        return jsonify(written.wired), 201 if written.created else 200
    return _status(written)


@blp.route("")
class Bids(MethodView):
    @remembered_member_required
    @member
    @blp.doc(operationId="sendBid")
    @blp.arguments(BidCreateSchema)
    @blp.response(201, BidSchema, description="Sent")
    @blp.alt_response(200, schema=BidSchema, description="A retry of an earlier send")
    @blp.problem(404, "Not paired")
    @blp.problem(409, "The client_id was used for another bid, or couple_id is an ended one")
    @blp.problem(429)
    @limiter.shared_limit(_bid_limit, scope=SENDING_BIDS)
    def post(self, body: dict[str, Any]) -> tuple[Response | dict[str, Any], int]:
        """Reach for the partner"""
        ttl = int(current_app.config["BID_TTL_SECONDS"])
        sender, recheck = current_member(), member_recheck()
        return _sent(bids.send(db.session, sender, ttl_seconds=ttl, recheck=recheck, **body))

    @auth_required
    @member
    @blp.doc(operationId="listBids")
    @blp.arguments(BidQueryArgsSchema, location="query")
    @blp.response(200, BidListSchema)
    @blp.problem(404, "Not paired")
    def get(self, args: dict[str, Any]) -> dict[str, Any]:
        """The couple's bids, newest first"""
        return bids.list_for(db.session, current_user(), **args)


@blp.route("/<uuid:bid_id>")
class BidResource(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="getBid")
    @blp.response(200, BidSchema)
    @blp.problem(404, "No such bid the caller may see")
    def get(self, bid_id: uuid.UUID) -> dict[str, Any]:
        """One bid with its timeline"""
        return bids.get(db.session, current_user(), bid_id)


@blp.route("/<uuid:bid_id>/delivered")
class Delivered(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="markBidDelivered")
    @blp.response(200, BidSchema)
    @blp.problem(403, "The caller sent this bid: only its recipient acknowledges it")
    @blp.problem(404, "No such bid the caller may see")
    def post(self, bid_id: uuid.UUID) -> dict[str, Any]:
        """A device of the partner received the bid (idempotent)

        An expired bid (or one past its expires_at) is returned unchanged.
        """
        return bids.acknowledge(db.session, current_user(), bid_id, "delivered").bid


@blp.route("/<uuid:bid_id>/seen")
class Seen(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="markBidSeen")
    @blp.response(200, BidSchema)
    @blp.problem(403, "The caller sent this bid: only its recipient acknowledges it")
    @blp.problem(404, "No such bid the caller may see")
    def post(self, bid_id: uuid.UUID) -> dict[str, Any]:
        """The partner opened the bid (idempotent)

        An expired bid (or one past its expires_at) is returned unchanged.
        """
        return bids.acknowledge(db.session, current_user(), bid_id, "seen").bid


@blp.route("/<uuid:bid_id>/responses")
class Responses(MethodView):
    decorators = [auth_required]

    @member
    @blp.doc(operationId="respondToBid")
    @blp.arguments(BidResponseCreateSchema)
    @blp.response(201, BidSchema, description="The bid with the response")
    @blp.alt_response(200, schema=BidSchema, description="A retry of an earlier response")
    @blp.problem(403, "The caller sent this bid: only its recipient answers it")
    @blp.problem(404, "No such bid the caller may see")
    @blp.problem(
        409,
        "The bid expired, was turned toward already, has its `later` already, or the"
        " client_id was used for another response",
    )
    def post(self, body: dict[str, Any], bid_id: uuid.UUID) -> tuple[dict[str, Any], int]:
        """Turn toward the bid now, or say when you will be back (`later`)"""
        return _status(bids.respond(db.session, current_user(), bid_id, **body))
