"""Waiting until the Socket.IO message queue carries emits to a phone.

A process subscribes to the queue when its first socket connects, and Redis pub/sub drops what
is published before: a test that needs an emit to cross processes first sends probes until one
arrives (bounded by a deadline).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from service.realtime.rooms import user_room
from tests.support.phones import Phone
from tests.support.server import LiveServer
from tests.support.waiting import wait_until

Emit = Callable[[dict[str, Any]], None]


def carries(emit: Emit, phone: Phone, *, timeout: float = 20) -> None:
    """Emit probes with `emit` until one reaches `phone`, failing after `timeout` seconds."""

    def heard() -> bool:
        probe = uuid.uuid4().hex
        emit({"probe": probe})
        try:
            phone.wait_for("probe", lambda data: data.get("probe") == probe, timeout=0.5)
        except AssertionError:
            return False
        return True

    wait_until(heard, timeout, "an emit to reach the phone through the queue")


def from_server(here: LiveServer, user_id: Any) -> Emit:
    """Emits a probe from `here`'s Socket.IO server to the user's room."""

    def emit(data: dict[str, Any]) -> None:
        with here.app.app_context():
            here.app.extensions["socketio"].emit(
                "probe", data, to=user_room(user_id), namespace="/"
            )

    return emit


def listening(here: LiveServer, there: Phone, user_id: Any) -> None:
    """Wait until `there`'s server hears the queue: an emit from `here` reaches its phone."""
    carries(from_server(here, user_id), there)
