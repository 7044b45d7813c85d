"""Sends cut off at their time, however slowly the answer trickles in.

requests' timeout bounds each wait for the next bytes, not the whole answer: a server (or
anything on the way) that answers a byte a second keeps a send going as long as it likes, and a
worker's pass past its lease, when another worker takes its jobs over and sends them again.
So every send is watched: when its time is up its connections are shut, which ends a read
blocked on them at once (in a thread or a greenlet alike), and no request goes out for it after
that. The send then fails as a lost connection would, and says it was cut off (`Send.cut`), and
whether the answer's status line had come (`Send.status`).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_current = threading.local()  # the send this thread (or greenlet) is making


class CutOff(ConnectionAbortedError):
    """A request not sent: the send it belongs to was cut off."""


@dataclass(eq=False)
class Send:
    """One send under watch: its cutoff (a `time.monotonic()` reading), the connections it
    used, whether it was cut off, and the status of its answer once the status line came."""

    cutoff: float
    watchdog: Watchdog
    sockets: list[socket.socket] = field(default_factory=list)
    cut: bool = False
    status: int | None = None


class Watchdog:
    """Cuts off each send watched (`watch`) at its cutoff, from a thread of its own."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._sends: set[Send] = set()
        self._thread: threading.Thread | None = None
        self._closed = False

    @contextlib.contextmanager
    def watch(self, seconds: float) -> Iterator[Send]:
        """Watch the requests this thread makes until the block ends: cut off after `seconds`."""
        send = Send(time.monotonic() + seconds, self)
        with self._changed:
            if self._closed:
                raise RuntimeError("the watchdog is closed")
            self._sends.add(send)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="push-watchdog", daemon=True)
                self._thread.start()
            self._changed.notify()
        _current.send = send
        try:
            yield send
        finally:
            _current.send = None
            with self._changed:
                self._sends.discard(send)

    def attach(self, send: Send, sock: socket.socket | None) -> None:
        """`sock` carries `send`'s request: shut when it is cut off. Raises `CutOff` (and sends
        nothing) once it is."""
        with self._changed:
            if send.cut:
                raise CutOff("the send's time is up: nothing more is sent for it")
            if sock is not None and sock not in send.sockets:
                send.sockets.append(sock)

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5)

    def _run(self) -> None:
        with self._changed:
            while not self._closed:
                now = time.monotonic()
                waiting: list[float] = []
                for send in self._sends:
                    if send.cut:
                        continue
                    if send.cutoff <= now:
                        _cut(send)
                    else:
                        waiting.append(send.cutoff)
                self._changed.wait(min(waiting) - now if waiting else None)


def _cut(send: Send) -> None:
    send.cut = True
    for sock in send.sockets:
        with contextlib.suppress(OSError):  # closed meanwhile: nothing left to end
            sock.shutdown(socket.SHUT_RDWR)


def _attach(sock: socket.socket | None) -> None:
    send: Send | None = getattr(_current, "send", None)
    if send is not None:
        send.watchdog.attach(send, sock)


class _Watched:
    """What a urllib3 connection does for the send that uses it (mixed in first)."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        _attach(None)  # cut off already: no connection is opened for it
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        _attach(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _attach(self.sock)  # a kept-alive connection carries this send now
        super().request(*args, **kwargs)  # type: ignore[misc]

    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        response = super().getresponse(*args, **kwargs)  # type: ignore[misc]
        send: Send | None = getattr(_current, "send", None)
        if send is not None:
            send.status = response.status
        return response


class _Connection(_Watched, HTTPConnection):
    pass


class _TlsConnection(_Watched, HTTPSConnection):
    pass


class _Pool(HTTPConnectionPool):
    ConnectionCls = _Connection


class _TlsPool(HTTPSConnectionPool):
    ConnectionCls = _TlsConnection


_POOLS = {"http": _Pool, "https": _TlsPool}


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter whose connections (direct or through a proxy) are watched."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
