"""A TCP forwarder the tests can cut and restore, to make PostgreSQL or Redis unreachable."""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading


class TcpProxy:
    """Forwards 127.0.0.1:<port> to a target; `down()` refuses and cuts, `up()` restores;
    `stall()` keeps every connection open but forwards nothing (a service that hangs), until
    `flow()`; `black_hole()` does that for ever to the connections open now, while new ones flow
    (a dead network path). `accepted` counts the connections it took."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._links: set[socket.socket] = set()
        self._holes: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._flowing = threading.Event()
        self._flowing.set()
        self._down = threading.Event()
        self.accepted = 0

    def up(self) -> TcpProxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self._listener = listener
        self._down.clear()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def forwarding(self) -> TcpProxy:
        """Forward again, whatever the test left: listening, and passing bytes on."""
        self.flow()
        return self if self._listener is not None else self.up()

    def down(self) -> None:
        """Stop listening and cut every open connection (the service is gone)."""
        listener, self._listener = self._listener, None
        self._down.set()
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            links, self._links = self._links, set()
        for sock in links:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def stall(self) -> None:
        self._flowing.clear()

    def flow(self) -> None:
        self._flowing.set()

    def black_hole(self) -> None:
        """Forward nothing, ever again, on the connections open now, and keep them open: no FIN,
        no RST, as when a NAT entry is dropped or a failover leaves the old peer unreachable.
        Connections opened after this flow (unless stalled); `down()` closes the holes too."""
        with self._lock:
            self._holes.update(self._links)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._links.update((client, upstream))
                self.accepted += 1
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        try:
            # `down()` may have closed the pair already (registering a closed socket raises
            # ValueError: its descriptor is -1).
            selector.register(a, selectors.EVENT_READ, b)
            selector.register(b, selectors.EVENT_READ, a)
            while True:
                for key, _ in selector.select():
                    self._flowing.wait()
                    if key.fileobj in self._holes:
                        self._down.wait()  # what arrives stays unread, the sockets open
                        return
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            for sock in (a, b):
                with contextlib.suppress(OSError):
                    sock.close()
            with self._lock:
                self._links.difference_update((a, b))
                self._holes.difference_update((a, b))
