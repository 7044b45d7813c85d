"""The server side of one WebSocket connection: the handshake, reading, writing, closing."""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from engineio.socket import Socket
from gevent import get_hub, spawn_raw
from gevent.lock import Semaphore
from wsproto import ConnectionType
from wsproto.connection import Connection
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from service.realtime.transport.lingering import _linger, _lingerers
from service.realtime.transport.oversized import OVERSIZED_HEAD_BYTES, Oversized
from service.realtime.transport.upgrade import _handshake_response

log = logging.getLogger("reach.realtime")

RECEIVE_BYTES = 4096
# What a detached socket's stored WSGI environ no longer needs: the request's I/O objects.
_REQUEST_IO = ("wsgi.errors", "wsgi.file_wrapper", "gunicorn.socket", "eventlet.input")


def _lock_for(server: Any) -> Any:
    """A lock that suits the server's concurrency (a gevent semaphore or a thread lock)."""
    if server.async_mode == "gevent":
        return Semaphore()
    return threading.Lock()


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
