"""The member namespace: token auth on connect, rooms, typing, and cutting sockets off."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any, cast

from flask import current_app, request
from flask_socketio import ConnectionRefusedError, SocketIO, emit, join_room
from socketio import PubSubManager

from service import metrics
from service.api.auth import token_issuer
from service.clock import clock
from service.domain.errors import RateLimited, ReachError, Unauthorized
from service.errors import from_reach_error
from service.extensions import db
from service.realtime import sweep
from service.realtime.emitter import current_socketio
from service.realtime.rooms import session_room, user_room
from service.services import members, repairs

log = logging.getLogger("reach.realtime")

NAMESPACE = "/"
# An internal message between processes (never sent to a phone): close your sockets in `room`.
CUT = "reach.cut"


def register(socketio: SocketIO) -> None:
    socketio.on_event("connect", on_connect, namespace=NAMESPACE)
    socketio.on_event("disconnect", on_disconnect, namespace=NAMESPACE)
    socketio.on_event("typing", on_typing, namespace=NAMESPACE)
    _handle_cuts_from_the_queue(socketio)


class OpenSockets:
    """This process's open member sockets, per account (SOCKETS_PER_USER caps them).

    Each socket's account and sign-in session are kept here too: a socket is forgotten by its
    sid alone, even once its Engine.IO session (where the socket's user is kept) is gone, and
    the sessions are checked again by `realtime.sweep`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_user: dict[str, set[str]] = {}
        self._owner_of: dict[str, tuple[str, uuid.UUID]] = {}

    def add(self, user_id: str, session_id: uuid.UUID, sid: str, limit: int) -> bool:
        with self._lock:
            sids = self._by_user.setdefault(user_id, set())
            if sid not in sids and len(sids) >= limit:
                return False
            sids.add(sid)
            self._owner_of[sid] = (user_id, session_id)
            return True

    def remove(self, sid: str) -> None:
        with self._lock:
            owner = self._owner_of.pop(sid, None)
            if owner is None:
                return
            sids = self._by_user.get(owner[0], set())
            sids.discard(sid)
            if not sids:
                self._by_user.pop(owner[0], None)

    def count(self, user_id: str) -> int:
        with self._lock:
            return len(self._by_user.get(user_id, ()))

    def sessions(self) -> dict[str, uuid.UUID]:
        """Each open socket's sign-in session, by sid."""
        with self._lock:
            return {sid: session_id for sid, (_, session_id) in self._owner_of.items()}


def open_sockets() -> OpenSockets:
    """The open sockets of the current app's Socket.IO server."""
    return cast(OpenSockets, current_app.extensions.setdefault("reach.open_sockets", OpenSockets()))


def socket_session() -> dict[str, Any]:
    """What this connection knows about its user (kept by the Socket.IO server)."""
    server = current_socketio().server
    return server.get_session(request.sid, namespace="/")  # type: ignore[attr-defined]


def on_connect(auth: Any = None) -> None:
    token = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(token, str) or not token:
        refusal = Unauthorized("Connect with auth: {token: <access token>}.")
        raise ConnectionRefusedError(refusal.detail, from_reach_error(refusal))
    if token[:7].lower() == "bearer ":
        # The REST header's value, scheme and all: "not valid, sign in again" would send the
        # app refreshing and signing in for a token that was never at fault.
        refusal = Unauthorized("Send the access token alone as auth.token, without 'Bearer '.")
        raise ConnectionRefusedError(refusal.detail, from_reach_error(refusal))
    try:
        now = clock.now()
        claims = token_issuer().read_access_token(token, now)
        member = members.live_member(db.session, claims.user_id, claims.session_id, usable_at=now)
    except ReachError as exc:
        # The client's connect_error carries {message: detail, data: problem}.
        raise ConnectionRefusedError(exc.detail, from_reach_error(exc)) from exc
    session = socket_session()  # a KeyError if the socket closed meanwhile: nothing kept yet
    settings = current_app.extensions["reach.settings"]
    limit = settings.SOCKETS_PER_USER
    sockets = open_sockets()
    if not sockets.add(str(member.user_id), claims.session_id, request.sid, limit):  # type: ignore[attr-defined]
        # Worth trying again once a socket that died unseen (a phone that changed networks) is
        # dropped for a missed ping: at most this long.
        reaped = settings.SOCKET_PING_INTERVAL + settings.SOCKET_PING_TIMEOUT
        crowded = RateLimited(
            f"This account has {limit} connections open already: close one and connect again.",
            retry_after=reaped,
        )
        raise ConnectionRefusedError(crowded.detail, from_reach_error(crowded))
    session["user_id"] = str(member.user_id)
    session["auth_session_id"] = str(claims.session_id)
    join_room(user_room(member.user_id))
    join_room(session_room(claims.session_id))
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    sweep.ensure_running(app, current_socketio().server, sockets)
    log.info("socket connected", extra={"user_id": str(member.user_id)})
    metrics.sockets.connected("members", request.sid)  # type: ignore[attr-defined]


def on_disconnect(reason: Any = None) -> None:
    open_sockets().remove(request.sid)  # type: ignore[attr-defined]
    metrics.sockets.disconnected("members", request.sid)  # type: ignore[attr-defined]


def _repair_id(payload: Any) -> str | None:
    """The conversation a `typing` names, as a UUID's canonical text; None for anything else
    (passed on as sent, a lone surrogate reached the partner's phone, whose JSON decoder may
    refuse the whole message)."""
    named = payload.get("repair_id") if isinstance(payload, dict) else None
    if not isinstance(named, str) or len(named) > 64:
        return None
    try:
        return str(uuid.UUID(named))
    except ValueError:
        return None


def on_typing(*args: Any) -> None:
    """Tell the partner this phone is typing (not stored).

    The couple is looked up now, not remembered from connect: after an unpair nothing
    reaches the former partner, and a new partner hears it without a reconnect. A socket's
    typing is passed on at most once every SOCKET_TYPING_EVERY_MS; the rest are dropped before
    any lookup, so a phone that sends them without pause costs the database nothing more.
    A `repair_id` must be a conversation of the caller's live couple (one lookup by its key);
    a `typing` naming any other is dropped, as is one with more than one argument.
    """
    if len(args) > 1:
        return
    payload = args[0] if args else None
    session = socket_session()
    every = current_app.extensions["reach.settings"].SOCKET_TYPING_EVERY_MS / 1000
    now, last = time.monotonic(), session.get("typing_at")
    if last is not None and now - last < every:
        return
    session["typing_at"] = now
    try:
        member = members.live_member(
            db.session,
            uuid.UUID(session["user_id"]),
            uuid.UUID(session["auth_session_id"]),
            usable_at=clock.now(),
        )
    except (KeyError, ReachError):
        return
    if member.partner is None:
        return
    partner_id = member.partner.id
    data = {"user_id": str(member.user_id)}
    repair_id = _repair_id(payload)
    if repair_id is not None:
        if member.couple_id is None:
            return
        if not repairs.of_couple(db.session, uuid.UUID(repair_id), member.couple_id):
            return  # a former couple's conversation, another couple's, or none at all
        data["repair_id"] = repair_id
    emit("typing", data, to=user_room(partner_id), namespace="/")


def disconnect_user(user_id: uuid.UUID | str) -> None:
    """Close every member socket of the account, in every process (disabled, deleted)."""
    _cut(user_room(user_id))


def disconnect_session(session_id: uuid.UUID | str) -> None:
    """Close the member sockets of one sign-in session, in every process (signed out, revoked)."""
    _cut(session_room(session_id))


def _cut(room: str) -> None:
    """Sockets are only known to the process that holds them, so with a message queue every
    process is asked (an internal emit that `_handle_cuts_from_the_queue` intercepts)."""
    server = current_socketio().server
    if isinstance(server.manager, PubSubManager):
        server.emit(CUT, None, to=room, namespace=NAMESPACE)
    else:
        _close_here(server, room)


def _close_here(server: Any, room: Any) -> None:
    if not isinstance(room, str):
        return
    sids = [sid for sid, _ in server.manager.get_participants(NAMESPACE, room)]
    for sid in sids:
        # The server sends DISCONNECT and forgets the socket, whatever the client does next.
        server.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)


def _handle_cuts_from_the_queue(socketio: SocketIO) -> None:
    """Every emit through the message queue, this process's own included, passes the manager's
    `_handle_emit`; a CUT is answered there by closing this process's sockets in the room."""
    server = socketio.server
    manager = server.manager
    if not isinstance(manager, PubSubManager) or getattr(manager, "_reach_cuts", False):
        return
    deliver = manager._handle_emit

    def handle_emit(message: dict[str, Any]) -> None:
        if message.get("event") == CUT:
            _close_here(server, message.get("room"))
        else:
            deliver(message)

    manager._handle_emit = handle_emit
    manager._reach_cuts = True
