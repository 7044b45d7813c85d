"""Closed WebSockets lingering until the phone has had the last frame, then closed."""

from __future__ import annotations

import contextlib
import socket
import time
from typing import Any

from gevent.pool import Group

LINGER_SECONDS = 2.0


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


# Closed WebSockets still lingering, their descriptors open: a stopping process waits for them.
_lingerers = Group()


def wait_lingering(timeout: float) -> bool:
    """Wait until every closed WebSocket has finished lingering; False if `timeout` passed."""
    return bool(_lingerers.join(timeout=timeout))
