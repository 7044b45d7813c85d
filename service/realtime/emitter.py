"""Emits committed changes to the partners' connected phones."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, cast

from flask import current_app
from flask_socketio import SocketIO

from service.realtime.rooms import user_room


def current_socketio() -> SocketIO:
    """The Socket.IO server of the current app."""
    return cast(SocketIO, current_app.extensions["socketio"])


class SocketPublisher:
    """Event name = envelope type; sent to each partner's own room (rooms never go stale)."""

    def couple_event(self, user_ids: Sequence[uuid.UUID], envelope: dict[str, Any]) -> None:
        rooms = [user_room(uid) for uid in user_ids]
        if rooms:
            current_socketio().emit(envelope["type"], envelope, to=rooms, namespace="/")

    def user_event(self, user_id: uuid.UUID, name: str, payload: dict[str, Any]) -> None:
        current_socketio().emit(name, payload, to=user_room(user_id), namespace="/")
