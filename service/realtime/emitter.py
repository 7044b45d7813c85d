"""Emits committed changes to the partners' connected phones."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from service.extensions import socketio
from service.realtime.rooms import user_room


class SocketPublisher:
    """Event name = envelope type; sent to each partner's own room (rooms never go stale)."""

    def couple_event(self, user_ids: Sequence[uuid.UUID], envelope: dict[str, Any]) -> None:
        rooms = [user_room(uid) for uid in user_ids]
        if rooms:
            socketio.emit(envelope["type"], envelope, to=rooms, namespace="/")

    def user_event(self, user_id: uuid.UUID, name: str, payload: dict[str, Any]) -> None:
        socketio.emit(name, payload, to=user_room(user_id), namespace="/")
