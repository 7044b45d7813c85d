"""Socket.IO: the member namespace, the ops namespace and the after-commit emitter."""

from __future__ import annotations

from flask_socketio import SocketIO

from service.config import Settings
from service.realtime import bids, handshake, inbound, members, oversized, repairs
from service.realtime.emitter import SocketPublisher, current_socketio
from service.services import events


def register(socketio: SocketIO, settings: Settings) -> None:
    handshake.install(socketio.server, connect_timeout=settings.SOCKET_CONNECT_TIMEOUT)
    # Every namespace's, /ops too.
    inbound.install(socketio.server, in_flight=settings.SOCKET_EVENTS_IN_FLIGHT)
    oversized.install(socketio.server)  # after transport.install (create_app)
    members.register(socketio)
    bids.register(socketio)
    repairs.register(socketio)
    inbound.register(socketio, members.NAMESPACE)  # events none of the above knows
    events.set_publisher(SocketPublisher())


__all__ = ["current_socketio", "register"]
