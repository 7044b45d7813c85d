"""Socket.IO: the member namespace, the ops namespace and the after-commit emitter."""

from __future__ import annotations

from flask import Flask

from service.realtime import members
from service.realtime.emitter import SocketPublisher
from service.services import events


def register(app: Flask) -> None:
    members.register()
    events.set_publisher(SocketPublisher())
