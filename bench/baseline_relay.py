"""The bare relay: the floor Reach is measured against.

A minimal Flask-SocketIO app on the same server stack as Reach (service/gunicorn_config.py:
gunicorn, one gevent worker, the same WebSocket transport (SOCKET_TRANSPORT, lean by default:
service/realtime/transport/) and the same garbage-collection policy, service/gc_tuning.py),
with no database, no schemas, no auth beyond a room name:

- Socket.IO connect with auth {token}: the token is the user's id ("u<N>"); the socket joins
  the room "user:<token>".
- POST /api/v1/bids {client_id, kind, note?} with `Authorization: Bearer u<N>`: emits
  `bid.created` with the same envelope shape Reach uses ({cursor, couple_id, type, at, data})
  to both partners' rooms (partner of u<2k> is u<2k+1>), answers 201 with the bid.

Serve: .venv/bin/python -m gunicorn -c python:service.gunicorn_config --bind 127.0.0.1:7101 \
          --workers 1 'bench.baseline_relay:create_app()'

bench/relay_pg.py is the same app with one durable write per bid (`store`).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, jsonify, request
from flask_socketio import ConnectionRefusedError, SocketIO, join_room

from service.realtime import transport


def _partner(user: str) -> str:
    n = int(user[1:])
    return f"u{n ^ 1}"


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def create_app(store: Callable[[dict[str, Any]], None] | None = None) -> Flask:
    """The relay; `store`, when given, is called with each new bid before it is emitted."""
    app = Flask(__name__)
    socketio = SocketIO(
        app,
        async_mode="gevent",
        cors_allowed_origins=[],
        ping_interval=25,
        ping_timeout=20,
    )
    if os.environ.get("SOCKET_TRANSPORT", "lean") == "lean":  # the same transport as Reach's
        transport.install(
            socketio.server.eio, int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "10000"))
        )
    cursors: dict[str, itertools.count[int]] = {}

    @socketio.on("connect")
    def on_connect(auth: Any = None) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token.startswith("u"):
            raise ConnectionRefusedError("no token")
        join_room(f"user:{token}")

    @app.get("/healthz")
    def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/debug/stats")
    def stats() -> Any:
        """Where idle sockets' memory goes: greenlets alive and the depth of their frames."""
        import gc

        import greenlet

        # gc.get_objects() skips frozen objects (service/gc_tuning.py): thaw, count, refreeze.
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        try:
            live = [
                o
                for o in gc.get_objects()
                if issubclass(type(o), greenlet.greenlet) and not o.dead  # type(): no proxies
            ]
        finally:
            if frozen:
                gc.freeze()
        depths = []
        for g in live:
            depth, frame = 0, g.gr_frame
            while frame is not None and depth < 500:
                depth, frame = depth + 1, frame.f_back
            depths.append(depth)
        sockets = len(socketio.server.eio.sockets)
        return {
            "engineio_sockets": sockets,
            "greenlets": len(live),
            "greenlets_per_socket": round(len(live) / sockets, 2) if sockets else None,
            "mean_frames_per_greenlet": round(sum(depths) / len(depths), 1) if depths else None,
        }

    @app.post("/api/v1/bids")
    def post_bid() -> Any:
        sender = request.headers.get("Authorization", "").removeprefix("Bearer ")
        body = request.get_json()
        recipient = _partner(sender)
        now = datetime.now(UTC)
        couple = min(sender, recipient)
        counter = cursors.setdefault(couple, itertools.count(1))
        bid = {
            "id": str(uuid.uuid4()),
            "client_id": body["client_id"],
            "kind": body["kind"],
            "note": body.get("note"),
            "sender_id": sender,
            "recipient_id": recipient,
            "status": "sent",
            "created_at": _iso(now),
            "expires_at": _iso(now + timedelta(days=1)),
        }
        if store is not None:
            store(bid)
        envelope = {
            "cursor": next(counter),
            "couple_id": couple,
            "type": "bid.created",
            "at": _iso(now),
            "data": bid,
        }
        socketio.emit("bid.created", envelope, to=[f"user:{sender}", f"user:{recipient}"])
        return jsonify(bid), 201

    return app
