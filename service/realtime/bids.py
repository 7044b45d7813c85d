"""Bid writes over the socket: `bid.send`, `bid.seen`, `bid.respond` (same code as REST)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from flask_socketio import SocketIO

from schemas.bids import BidCreateSchema, BidRefSchema, BidRespondMessageSchema
from service.extensions import SENDING_BIDS, db
from service.realtime.acks import check_rate, write
from service.services import bids
from service.services.members import Member, user_of


def register(socketio: SocketIO) -> None:
    socketio.on_event("bid.send", send_bid, namespace="/")
    socketio.on_event("bid.seen", see_bid, namespace="/")
    socketio.on_event("bid.respond", respond_to_bid, namespace="/")


@write(BidCreateSchema())
def send_bid(member: Member, data: dict[str, Any]) -> dict[str, Any]:
    check_rate(SENDING_BIDS, member, "RATELIMIT_BIDS")
    ttl = int(current_app.config["BID_TTL_SECONDS"])
    written = bids.send(db.session, member, ttl_seconds=ttl, **data)
    return written.wired or bids.wire(written.bid)


@write(BidRefSchema())
def see_bid(member: Member, data: dict[str, Any]) -> dict[str, Any]:
    user = user_of(db.session, member)
    return bids.wire(bids.acknowledge(db.session, user, data["bid_id"], "seen").bid)


@write(BidRespondMessageSchema())
def respond_to_bid(member: Member, data: dict[str, Any]) -> dict[str, Any]:
    user = user_of(db.session, member)
    bid_id = data.pop("bid_id")
    return bids.wire(bids.respond(db.session, user, bid_id, **data).bid)
