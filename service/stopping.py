"""gunicorn's gevent worker with a stop that ends: `worker_class = "service.stopping.Worker"`.

gunicorn's GeventWorker, on SIGTERM, stops accepting and then waits until its connection pool
is empty, for at most `graceful_timeout`, after which the master SIGKILLs it. An idle keep-alive
connection (nginx keeps some to every upstream) or a long-polling Engine.IO request keeps that
pool from emptying, so every stop took the whole timeout and ended in SIGKILL: WebSockets were
cut without a close (phones saw a transport error), and neither `worker_exit` nor the atexit
hooks (the flush of pending messages) ran.

This worker, on SIGTERM:

1. stops accepting at once;
2. closes every Socket.IO connection with an Engine.IO CLOSE: the client sees the server close
   it and reconnects (behind a balancer, to another process); a pending long-polling request
   is answered with that CLOSE at once, the WebSockets are closed one after another, spread
   evenly over SOCKET_CLOSE_SPREAD_SECONDS (see close_window): closed together, every phone
   reconnected and synced against the remaining processes in the same instant;
3. closes idle keep-alive connections at once, and every other one right after its current
   response;
4. waits for the requests in flight, for `graceful_timeout` less `EXIT_SECONDS` at most, then
   cuts what is left;
5. returns: gunicorn runs `worker_exit`, then the interpreter its atexit hooks, before the
   master's SIGKILL would.

The only gunicorn internals used are the ones `tests/unit/test_stopping.py` pins: what
`GeventWorker.run` does (replaced here, with its listeners served the same way), and that
`AsyncWorker.handle` serves a connection's requests through `handle_request` with the same
socket.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import random
import socket
import struct
import termios
import time
from functools import partial
from typing import Any

import gevent
from gevent.event import Event
from gevent.pool import Group, Pool
from gevent.server import StreamServer
from gunicorn.sock import ssl_context
from gunicorn.workers.ggevent import GeventWorker

from service import unreadable

log = logging.getLogger("reach.server")

# Kept from graceful_timeout for what follows the wait: cutting the requests still running
# (gevent gives them 1 s) and the exit hooks (the message flush waits 1 s at most).
EXIT_SECONDS = 2.0
# Kept from graceful_timeout after the last WebSocket's close is sent, for its peer to take it
# (a closed WebSocket lingers LINGER_SECONDS at most, service/realtime/transport/lingering.py)
# and more.
LAST_CLOSE_SECONDS = 3.0


def close_window(spread_seconds: float, graceful_timeout: float) -> float:
    """Over how many seconds a stopping process spreads its WebSockets' closes: as configured,
    within the graceful timeout less the exit's and the last close's time."""
    room = graceful_timeout - EXIT_SECONDS - LAST_CLOSE_SECONDS
    return max(0.0, min(float(spread_seconds), room))


def _unread_bytes(sock: Any) -> int:
    """Bytes the peer has sent that nobody has read yet (0 once the socket is closed)."""
    try:
        answer = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", answer)[0])


class Worker(GeventWorker):
    """One gevent worker per process, as before, whose graceful stop ends when its work does."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Each open HTTP connection -> whether it is serving a request right now.
        self._connections: dict[Any, bool] = {}
        self._told_to_stop: Event | None = None

    def init_process(self) -> None:
        # Registered before the app registers its own, so it runs after them (last in, first out).
        atexit.register(log.info, "API process exited: its exit hooks ran")
        unreadable.install()
        super().init_process()

    # -- serving ---------------------------------------------------------------------------

    def run(self) -> None:
        self._told_to_stop = Event()
        servers = [self._serve(listener) for listener in self.sockets]
        while self.alive:
            self.notify()
            self._told_to_stop.wait(1.0)
        self._stop(servers)

    def _serve(self, listener: Any) -> StreamServer:
        """What GeventWorker.run does for each listener (worker_class "gevent")."""
        listener.setblocking(1)
        ssl_args = {"ssl_context": ssl_context(self.cfg)} if self.cfg.is_ssl else {}
        server = StreamServer(
            listener,
            handle=partial(self.handle, listener),
            spawn=Pool(self.worker_connections),
            **ssl_args,
        )
        if self.cfg.workers > 1:
            server.max_accept = 1
        server.start()
        return server

    def handle_exit(self, sig: Any, frame: Any) -> None:
        super().handle_exit(sig, frame)
        if self._told_to_stop is not None:
            self._told_to_stop.set()  # wake run() now rather than within a second

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        self._connections[client] = False
        try:
            super().handle(listener, client, addr)
        finally:
            self._connections.pop(client, None)

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        self._connections[sock] = True
        try:
            handled = super().handle_request(listener_name, req, sock, addr)
        finally:
            if sock in self._connections:
                self._connections[sock] = False
        if not self.alive:
            # Stopping: close the connection after this response instead of waiting for another
            # request on it (gunicorn marks responses that start after the stop itself).
            raise StopIteration
        return handled

    # -- stopping --------------------------------------------------------------------------

    def _stop(self, servers: list[StreamServer]) -> None:
        started = time.monotonic()
        deadline = started + max(0.0, self.cfg.graceful_timeout - EXIT_SECONDS)
        for server in servers:
            server.close()  # stop accepting
        gevent.idle()  # handlers of connections accepted just before have started
        closing, sockets = self._close_sockets()
        idle = self._close_idle_connections()
        finished = self._wait(servers, closing, deadline)
        cut = 0
        if not finished:
            cut = sum(len(server.pool) for server in servers)
            log.warning(
                "graceful timeout: cutting the requests still running",
                extra={"requests": cut, "graceful_timeout": self.cfg.graceful_timeout},
            )
            for server in servers:
                server.pool.kill(block=True, timeout=1)
            closing.kill(block=False)
        log.info(
            "API process stopped serving",
            extra={
                "sockets_closed": sockets,
                "idle_connections_closed": idle,
                "requests_cut": cut,
                "seconds": round(time.monotonic() - started, 3),
            },
        )

    def _close_sockets(self) -> tuple[Group, int]:
        """Close every Socket.IO connection the way the server closes one (an Engine.IO CLOSE),
        each in its own greenlet: a closing socket may wait for its queue to drain. Returns
        the greenlets and how many sockets there were."""
        closing = Group()
        eio = _engineio_of(self.wsgi)
        sids = list(eio.sockets) if eio is not None else []
        # Long-polling ones at once: their pending poll is answered with the CLOSE, whereas a
        # poll answered meanwhile would leave its client between two polls, on a connection
        # this process closes, and reconnecting as after a transport error.
        upgraded: list[str] = []
        polling: list[str] = []
        for sid in sids:
            websocket = getattr(eio.sockets.get(sid), "upgraded", False)
            (upgraded if websocket else polling).append(sid)
        random.shuffle(upgraded)
        window = close_window(self._spread_seconds(), self.cfg.graceful_timeout)
        for sid in polling:
            closing.spawn(_close_socket, eio, sid)
        for n, sid in enumerate(upgraded):
            closing.spawn(_close_socket, eio, sid, window * n / len(upgraded))
        if upgraded and window:
            log.info(
                "closing the sockets spread over the close window",
                extra={"websockets": len(upgraded), "window_seconds": round(window, 3)},
            )
        return closing, len(sids)

    def _spread_seconds(self) -> float:
        settings = getattr(self.wsgi, "extensions", {}).get("reach.settings")
        return float(getattr(settings, "SOCKET_CLOSE_SPREAD_SECONDS", 0))

    def _close_idle_connections(self) -> int:
        """Close the connections waiting for their next request; a request that is arriving
        (bytes unread) is served, and its connection closed after the response."""
        closed = 0
        for sock, serving in list(self._connections.items()):
            if serving or _unread_bytes(sock):
                continue
            # Through a twin descriptor: gevent's own shutdown would fail the handler's wait
            # with an error; this way the handler reads the end of the stream and closes.
            with contextlib.suppress(OSError), sock.dup() as twin:
                twin.shutdown(socket.SHUT_RDWR)
                closed += 1
        return closed

    def _wait(self, servers: list[StreamServer], closing: Group, deadline: float) -> bool:
        """Wait until every request is answered and every socket closed, its peer having had
        the last frame; False at the deadline. Tells the master the worker is alive meanwhile."""
        from service.realtime import transport

        for group in [*(server.pool for server in servers), closing]:
            while True:
                left = deadline - time.monotonic()
                if group.join(timeout=max(0.0, min(left, 1.0))):
                    break
                if left <= 1.0:
                    return False
                self.notify()
        # Each lingers at most LINGER_SECONDS (transport/lingering.py).
        return transport.wait_lingering(max(0.0, deadline - time.monotonic()))


def _engineio_of(app: Any) -> Any:
    """The Engine.IO server of a Flask-SocketIO app, if it has one."""
    socketio = getattr(app, "extensions", {}).get("socketio")
    return getattr(getattr(socketio, "server", None), "eio", None)


def _close_socket(eio: Any, sid: str, after: float = 0.0) -> None:
    """engineio's `disconnect(sid)`, `after` seconds from now, except that only a WebSocket's
    close waits for the CLOSE to be written: a long-polling one would wait for the client's
    next request, which need not come (its pending request is answered with the CLOSE)."""
    if after:
        gevent.sleep(after)
    sock = eio.sockets.get(sid)
    if sock is None:
        return
    try:
        sock.close(wait=bool(sock.upgraded), reason=eio.reason.SERVER_DISCONNECT)
    except Exception:
        log.exception("stopping: could not close a socket")
    eio.sockets.pop(sid, None)
