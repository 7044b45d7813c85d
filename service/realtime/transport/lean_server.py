"""LeanServer: engineio's server that turns its sockets into LeanSockets; `install` applies it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeGuard

from engineio import Server as EngineServer
from engineio.socket import Socket

from service.realtime.transport.lean_socket import LeanSocket, _pinger
from service.realtime.transport.oversized import Oversized
from service.realtime.transport.websocket import WebSocket


class _Sockets(dict[str, Any]):
    """engineio's sid -> socket map; each socket becomes a LeanSocket as it is registered."""

    def __setitem__(self, sid: str, sock: Any) -> None:
        if type(sock) is Socket:
            sock.__class__ = LeanSocket
            sock.adopt()
        super().__setitem__(sid, sock)


class LeanServer(EngineServer):
    """engineio's server whose socket map turns new sockets into LeanSockets."""

    max_sockets: int
    # Answers a message over max_http_buffer_size (socket sid, message); None: dropped.
    on_oversized: Callable[[str, Oversized], None] | None = None

    @property
    def sockets(self) -> _Sockets:
        return self.__dict__["_lean_sockets"]

    @sockets.setter
    def sockets(self, value: dict[str, Any]) -> None:
        self.__dict__["_lean_sockets"] = _Sockets(value)


def serves(eio: Any) -> TypeGuard[LeanServer]:
    """Whether `eio` is an engineio server this transport was installed on."""
    return isinstance(eio, LeanServer)


def hold_at_most(eio: LeanServer, max_sockets: int) -> None:
    """Cap `eio`'s open WebSockets at `max_sockets` (one more is refused with 1013)."""
    eio.max_sockets = max_sockets


def install(eio: EngineServer, max_sockets: int) -> None:
    """Serve `eio`'s WebSockets with WebSocket and LeanSocket (after the server is built).

    Upgraded sockets leave gunicorn's connection pool, so `max_sockets` caps them instead: one
    more is closed with 1013 (try again later) and the phone reconnects, elsewhere or later.
    """
    if type(eio) is not EngineServer:
        raise TypeError(f"expected engineio.Server, got {type(eio).__name__}")
    sockets = eio.__dict__.pop("sockets")
    eio.__class__ = LeanServer
    assert isinstance(eio, LeanServer)
    eio.sockets = sockets
    hold_at_most(eio, max_sockets)
    eio._async = {**eio._async, "websocket": WebSocket}
    _pinger(eio)
