"""The member namespace: token auth on connect, rooms, typing."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import request
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room

from service.api.auth import token_issuer
from service.clock import clock
from service.domain.errors import ReachError, Unauthorized
from service.errors import from_reach_error
from service.extensions import db
from service.models import Couple
from service.realtime.emitter import current_socketio
from service.realtime.rooms import couple_room, user_room
from service.services import accounts

log = logging.getLogger("reach.realtime")


def register(socketio: SocketIO) -> None:
    socketio.on_event("connect", on_connect, namespace="/")
    socketio.on_event("typing", on_typing, namespace="/")


def socket_session() -> dict[str, Any]:
    """What this connection knows about its user (kept by the Socket.IO server)."""
    server = current_socketio().server
    return server.get_session(request.sid, namespace="/")  # type: ignore[attr-defined]


def on_connect(auth: Any = None) -> None:
    token = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(token, str) or not token:
        refusal = Unauthorized("Connect with auth: {token: <access token>}.")
        raise ConnectionRefusedError(refusal.detail, from_reach_error(refusal))
    try:
        claims = token_issuer().read_access_token(token, clock.now())
        user = accounts.live_user(db.session, claims.user_id, claims.session_id)
    except ReachError as exc:
        # The client's connect_error carries {message: detail, data: problem}.
        raise ConnectionRefusedError(exc.detail, from_reach_error(exc)) from exc
    session = socket_session()
    session["user_id"] = str(user.id)
    session["auth_session_id"] = str(claims.session_id)
    session["couple_id"] = str(user.couple_id) if user.couple_id else None
    join_room(user_room(user.id))
    if user.couple_id:
        join_room(couple_room(user.couple_id))
    log.info("socket connected", extra={"user_id": str(user.id)})


def on_typing(payload: Any = None) -> None:
    """Tell the partner this phone is typing (not stored).

    The couple is looked up now, not remembered from connect: after an unpair nothing
    reaches the former partner, and a new partner hears it without a reconnect.
    """
    session = socket_session()
    try:
        user = accounts.live_user(
            db.session, uuid.UUID(session["user_id"]), uuid.UUID(session["auth_session_id"])
        )
    except (KeyError, ReachError):
        return
    couple = db.session.get(Couple, user.couple_id) if user.couple_id else None
    partner_id = couple.partner_of(user.id) if couple and couple.ended_at is None else None
    if partner_id is None:
        return
    data = {"user_id": str(user.id)}
    if isinstance(payload, dict) and isinstance(payload.get("repair_id"), str):
        data["repair_id"] = payload["repair_id"][:64]
    emit("typing", data, to=user_room(partner_id), namespace="/")
