"""Engine.IO's WebSocket transport without a greenlet per idle connection.

engineio's stock path (simple-websocket) keeps four greenlets alive for every idle phone: the
request's handler waiting on an event, simple-websocket's reader, engineio's writer waiting on
the socket's queue, and a ping task asleep for 25 s. Each holds its saved C stack and frames,
and the handler also holds the whole HTTP request it was started by: about 67 KB per socket
(bench/RESULTS.md). Here, under gunicorn's gevent worker:

- once upgraded, the socket leaves the request: gunicorn's handler returns, and a watcher on
  the event loop starts a short-lived greenlet when the phone sends something;
- packets for the phone are written by a drain task started when something is queued, gone
  when the queue is empty;
- one pinger per server sends every socket's Engine.IO PING when it is due;
- permessage-deflate is declined: Socket.IO packets are small, and a zlib stream pair would cost
  a few hundred KB per phone (OkHttp offers it by default);
- a message over `max_http_buffer_size` is read and discarded past its head, never held
  whole, and handed on as `Oversized` for the server's `on_oversized` to answer: the socket
  stays open (a bare close told the phone nothing, and it would send the same event again).

An idle phone costs its socket, its Engine.IO and Socket.IO state and nothing else. Under
werkzeug's threaded server (development and the tests) the request's thread reads the socket,
blocking, as before. The Engine.IO protocol (OPEN, the upgrade probe, PING/PONG, CLOSE, ping
timeouts) stays engineio's: LeanSocket overrides how packets reach the wire and when pings are
sent. `install(eio, max_sockets)` applies it to one engineio server.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import io
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from engineio import Server as EngineServer
from engineio import exceptions, packet
from engineio.socket import Socket
from gevent import get_hub, spawn_raw
from gevent.lock import Semaphore
from gevent.pool import Group
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError, generate_accept_token

from service.realtime.deadlines import Deadlines

log = logging.getLogger("reach.realtime")

RECEIVE_BYTES = 4096
LINGER_SECONDS = 2.0
# What a detached socket's stored WSGI environ no longer needs: the request's I/O objects.
_REQUEST_IO = ("wsgi.errors", "wsgi.file_wrapper", "gunicorn.socket", "eventlet.input")


def _lock_for(server: Any) -> Any:
    """A lock that suits the server's concurrency (a gevent semaphore or a thread lock)."""
    if server.async_mode == "gevent":
        return Semaphore()
    return threading.Lock()


def _handshake_response(environ: dict[str, Any]) -> bytes | None:
    """The 101 answer to a valid WebSocket upgrade request (RFC 6455 4.2), or None."""
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "")
    if environ.get("HTTP_SEC_WEBSOCKET_VERSION") != "13":
        return None
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    accept = generate_accept_token(key.encode("ascii"))
    # No Sec-WebSocket-Extensions: permessage-deflate is declined.
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )


def _linger(sock: Any) -> None:
    """Half-close, discard what the phone still sends until it closes (at most LINGER_SECONDS),
    then close: closing with unread data resets the connection, and the phone may lose the
    closing frame (a 1013 from a full process, say)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(LINGER_SECONDS)
        deadline = time.monotonic() + LINGER_SECONDS
        while time.monotonic() < deadline and sock.recv(65536):
            pass
    with contextlib.suppress(OSError):
        sock.close()


# How much of a message over the size limit is kept: enough for its Engine.IO and Socket.IO
# head (packet types, namespace, ack id, the event's name); the rest is read and discarded.
OVERSIZED_HEAD_BYTES = 256


@dataclass(frozen=True)
class Oversized:
    """A message from the phone over `max_http_buffer_size`: its first bytes and its size.

    It is handed on like a message, and the engineio server's `on_oversized(sid, message)`,
    if set, answers it (service/realtime/oversized.py); the socket stays open."""

    head: bytes
    size: int
    text: bool


# Closed WebSockets still lingering, their descriptors open: a stopping process waits for them.
_lingerers = Group()


def wait_lingering(timeout: float) -> bool:
    """Wait until every closed WebSocket has finished lingering; False if `timeout` passed."""
    return bool(_lingerers.join(timeout=timeout))


class WebSocket:
    """The server side of one WebSocket connection.

    engineio calls it as a WSGI app (`ws(environ, start_response)`); it answers the handshake
    and runs engineio's handler, which uses `wait`, `send`, `close` and (gevent) `detach`.
    """

    def __init__(self, handler: Any, server: Any) -> None:
        self.app = handler
        self.server = server
        self.connected = False
        self.environ: dict[str, Any] = {}
        self.sock: Any = None
        self._lock = _lock_for(server)
        self._messages: collections.deque[str | bytes | Oversized] = collections.deque()
        self._partial: bytearray | None = None
        self._partial_text = False
        self._partial_size = 0  # bytes of the message being read; past the limit, only counted
        self._conn = Connection(ConnectionType.SERVER)
        self._watcher: Any = None
        self._on_message: Callable[[str | bytes | Oversized], object] | None = None
        self._on_close: Callable[[], None] | None = None

    # -- the request ----------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        under_gunicorn = "gunicorn.socket" in environ
        sock = environ.get("gunicorn.socket") or environ.get("werkzeug.socket")
        if sock is None:
            raise RuntimeError("the WebSocket transport runs under gunicorn or werkzeug only")
        answer = _handshake_response(environ)
        if answer is None:
            owner = getattr(self.app, "__self__", None)  # the engineio socket being upgraded
            if isinstance(owner, Socket):
                owner.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
            start_response("400 Bad Request", [("Content-Type", "text/plain")])
            return [b"not a valid WebSocket upgrade request"]
        self.environ, self.sock = environ, sock
        sock.sendall(answer)
        self.connected = True
        self.app(self)
        if under_gunicorn:
            raise StopIteration  # gunicorn: this connection is not an HTTP connection any more
        raise ConnectionError  # werkzeug: close the connection instead of reading a new request

    @property
    def can_detach(self) -> bool:
        return self.server.async_mode == "gevent" and "gunicorn.socket" in self.environ

    # -- reading, blocking (in the request's thread or greenlet) ---------------------------

    def wait(self) -> str | bytes | Oversized | None:
        """The next message from the phone, or None once the connection is gone."""
        while not self._messages:
            if not self.connected:
                return None
            try:
                data = self.sock.recv(RECEIVE_BYTES)
            except OSError:  # reset, or silent for longer than the socket's timeout
                data = b""
            self._feed(data)
        return self._messages.popleft()

    def _feed(self, data: bytes) -> None:
        if not data:
            self.connected = False
            return
        try:
            self._conn.receive_data(data)
            self._read_events()
        except (LocalProtocolError, RemoteProtocolError, OSError):  # OSError: answering a ping
            self.abort()

    def _read_events(self) -> None:
        limit = self.server.max_http_buffer_size
        for event in self._conn.events():
            if isinstance(event, TextMessage | BytesMessage):
                text = isinstance(event, TextMessage)
                chunk = event.data.encode() if isinstance(event.data, str) else event.data
                if self._partial is None:
                    self._partial, self._partial_text, self._partial_size = bytearray(), text, 0
                self._partial_size += len(chunk)
                if len(self._partial) <= limit:  # past it, only the head is kept
                    self._partial += chunk
                    if len(self._partial) > limit:
                        del self._partial[OVERSIZED_HEAD_BYTES:]
                if event.message_finished:
                    whole, self._partial = bytes(self._partial), None
                    if self._partial_size > limit:
                        oversized = Oversized(whole, self._partial_size, self._partial_text)
                        self._messages.append(oversized)
                    else:
                        self._messages.append(whole.decode() if self._partial_text else whole)
            elif isinstance(event, Ping):
                self._write(self._conn.send(event.response()))
            elif isinstance(event, CloseConnection):
                with contextlib.suppress(LocalProtocolError, OSError):
                    self._write(self._conn.send(event.response()))
                self.connected = False
                return

    # -- reading, detached (gevent: a watcher on the event loop, no greenlet while idle) ----

    def detach(
        self, on_message: Callable[[str | bytes | Oversized], object], on_close: Callable[[], None]
    ) -> None:
        """Leave the request: gunicorn's handler returns; the socket lives on, watched."""
        self.sock = self.sock.dup()  # gunicorn closes its own descriptor when the handler ends
        self.sock.settimeout(self.server.ping_interval + self.server.ping_timeout)  # for writes
        for key in _REQUEST_IO:
            self.environ.pop(key, None)
        self.environ["wsgi.input"] = io.BytesIO()  # the request's body reader, replaced
        self._on_message, self._on_close = on_message, on_close
        self._watcher = get_hub().loop.io(self.sock.fileno(), 1)
        self._dispatch()  # what arrived with or right after the upgrade

    def _readable(self) -> None:
        """In the event loop: hand the work to a fresh greenlet (handlers may block)."""
        self._watcher.stop()
        spawn_raw(self._read_ready)

    def _read_ready(self) -> None:
        try:
            try:
                data = self.sock.recv(RECEIVE_BYTES)
            except BlockingIOError:
                data = None  # woken without data: watch again
            except OSError:
                data = b""
            if data is not None:
                self._feed(data)
            self._dispatch()
        except Exception:
            log.exception("socket: could not read from a phone, closing")
            self.abort()
            self._finish()

    def _dispatch(self) -> None:
        while self._messages and self._on_message is not None:
            if self._on_message(self._messages.popleft()) is False:
                self.abort()  # the engineio socket is closed or broken: end the connection
                break
        if self._watcher is None:
            return  # released meanwhile (the server closed the socket)
        if self.connected:
            self._watcher.start(self._readable)
        else:
            self._finish()

    def _finish(self) -> None:
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close()
        # Drop the references back to the engineio socket: no cycle outlives the connection.
        self._on_message, self.app = None, None
        self.release()

    def release(self) -> None:
        """Stop watching; close the descriptor once the phone has had the last frame."""
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher.close()
            self._watcher = None
            _lingerers.spawn(_linger, self.sock)

    # -- writing ---------------------------------------------------------------------------

    def send(self, message: str | bytes) -> None:
        if not self.connected:
            raise OSError("the WebSocket is closed")
        event = BytesMessage(data=message) if isinstance(message, bytes) else TextMessage(message)
        try:
            data = self._conn.send(event)
        except LocalProtocolError as exc:
            # The reader answered the phone's close frame after the check above (threads).
            raise OSError("the WebSocket is closed") from exc
        self._write(data)

    def close(self) -> None:
        if self.connected:
            self._close(CloseReason.NORMAL_CLOSURE, None)
        if self._watcher is not None:
            self._finish()

    def refuse(self) -> None:
        """Close at once with 1013 (try again later): this process holds all it may."""
        self._close(CloseReason.TRY_AGAIN_LATER, "server full, try again later")
        self.abort()

    def abort(self) -> None:
        """Drop the connection without a closing handshake (wakes a blocked reader)."""
        self.connected = False
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _close(self, code: int, reason: str | None) -> None:
        self.connected = False
        with contextlib.suppress(OSError, LocalProtocolError):
            self._write(self._conn.send(CloseConnection(code=code, reason=reason)))
        if self._watcher is None:
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RD)  # a blocked reader sees the end

    def _write(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)


class LeanSocket(Socket):
    """An engineio socket whose WebSocket has no reader, writer or ping task of its own."""

    last_ping: float | None
    connected: bool
    _ws: WebSocket | None
    _draining: bool
    _drain_lock: threading.Lock

    def adopt(self) -> None:
        self._ws = None
        self._draining = False
        self._drain_lock = threading.Lock()

    # -- sending: a drain task while there is something to write ---------------------------

    def send(self, pkt: packet.Packet) -> None:
        super().send(pkt)
        self._drain_soon()

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        super().close(wait=False, abort=abort, reason=reason)
        self._drain_soon()
        # Long-polling: the CLOSE waits for the phone's next GET, which may never come, so the
        # caller (the POST engineio refuses as too large, say) must not wait for it.
        if wait and self._ws is not None:
            self.queue.join()

    def _drain_soon(self) -> None:
        if self._ws is None:
            return  # long-polling: the phone's GET requests take the packets
        with self._drain_lock:
            if self._draining:
                return
            self._draining = True
        if self.server.async_mode == "gevent":
            spawn_raw(self._drain)  # a bare greenlet: no Greenlet bookkeeping per burst
        else:
            self.server.start_background_task(self._drain)

    def _drain(self) -> None:
        """Write what is queued, then end; only this task takes from the queue once upgraded."""
        ws = self._ws
        assert ws is not None
        while True:
            with self._drain_lock:
                if self.queue.empty():
                    self._draining = False
                    return
            pkt = self.queue.get(block=False)
            try:
                if pkt is None:
                    ws.close()
                elif ws.connected:
                    ws.send(pkt.encode())
            except OSError:
                ws.abort()  # the reader sees the connection end and closes the socket
            finally:
                self.queue.task_done()

    # -- pings: one pinger per server -------------------------------------------------------

    def schedule_ping(self) -> None:
        if self.last_ping:  # engineio's rule: one ping cycle at a time
            self.last_ping = None
            _pinger(self.server).add(self)

    def ping(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.send(packet.Packet(packet.PING))

    # -- the WebSocket's life ---------------------------------------------------------------

    def _websocket_handler(self, ws: Any) -> list[Any]:
        if not isinstance(ws, WebSocket):  # another transport: engineio's own handler
            return super()._websocket_handler(ws)
        ws.sock.settimeout(self.server.ping_interval + self.server.ping_timeout)
        if self.connected and not self._upgrade(ws):
            return []
        if len(self.server.sockets) > self.server.max_sockets:
            log.warning("socket %s refused: %d sockets open", self.sid, len(self.server.sockets))
            ws.refuse()
            self._on_close()
            return []
        self.connected = self.upgraded = True
        self._ws = ws
        with self._drain_lock:
            self._draining = True
        self._drain()  # what was queued before the WebSocket took over, from this greenlet
        if ws.can_detach:
            ws.detach(self._on_message, self._on_close)
            return []
        while (data := ws.wait()) is not None:
            if not self._on_message(data):
                break
        self._on_close()
        ws.abort()
        return []

    def _on_message(self, data: str | bytes | Oversized) -> bool:
        """Handle one packet from the phone; False when the socket should end."""
        if isinstance(data, Oversized):
            return self._on_oversized(data)
        try:
            received = packet.Packet(encoded_packet=data)
        except ValueError as exc:  # not Engine.IO (no packet type): a client bug, no traceback
            log.warning(
                "socket %s: a frame that is not an Engine.IO packet, closing",
                self.sid,
                extra={"error": str(exc)[:64], "characters": len(data)},
            )
            return False
        try:
            self.receive(received)
        except exceptions.UnknownPacketError:
            return True
        except exceptions.SocketIsClosedError:
            return False
        except Exception:
            log.exception("socket %s: could not handle a packet, closing", self.sid)
            return False
        return True

    def _on_oversized(self, message: Oversized) -> bool:
        """A message over the limit: answered by the server's `on_oversized`, not handled."""
        log.info(
            "socket %s: a message over the size limit, not handled",
            self.sid,
            extra={"bytes": message.size, "limit": self.server.max_http_buffer_size},
        )
        answer = getattr(self.server, "on_oversized", None)
        if answer is None:
            return True
        try:
            answer(self.sid, message)
        except Exception:
            log.exception("socket %s: could not answer a message over the limit", self.sid)
        return True

    def _on_close(self) -> None:
        self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        self.server.sockets.pop(self.sid, None)

    def _upgrade(self, ws: WebSocket) -> bool:
        """From long-polling to WebSocket: the PING probe, then UPGRADE (engineio's protocol)."""
        self.upgrading = True
        try:
            probe = ws.wait()
            if not isinstance(probe, str | bytes):  # gone, or a message over the limit
                return False
            if packet.Packet(encoded_packet=probe).packet_type != packet.PING:
                return False
            ws.send(packet.Packet(packet.PONG, data="probe").encode())
            self.queue.put(packet.Packet(packet.NOOP))  # ends the phone's pending poll
            confirm = ws.wait()
            if not isinstance(confirm, str | bytes):
                return False
            return packet.Packet(encoded_packet=confirm).packet_type == packet.UPGRADE
        finally:
            self.upgrading = False


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


def _pinger(server: Any) -> Deadlines[LeanSocket]:
    """Sends each socket's Engine.IO PING when its interval is up: one task per server.
    engineio schedules a ping when the previous PONG arrives, and the interval is the same for
    every socket."""
    pinger = getattr(server, "_reach_pinger", None)
    if pinger is None:
        pinger = Deadlines(server, server.ping_interval, LeanSocket.ping, "sending a ping")
        server._reach_pinger = pinger
    return pinger


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
