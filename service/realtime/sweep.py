"""Every socket's sign-in session looked up again, all at once, every SOCKET_RECHECK_SECONDS.

Signing out, a revoked session, a disabled or deleted account close their sockets at once: the
process that ends the session tells every process (`members.disconnect_session`,
`members.disconnect_user`, through the message queue). That message can be lost: while Redis
does not answer, the queue drops it (service/pubsub.py). And a session can end between a
socket's check on connect and its joining its rooms. So each API process also looks up the
sessions of the sockets it holds, a thousand to a query, and closes the sockets of those that
ended: no socket outlives its session by more than the interval.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from typing import Any, Protocol

from flask import Flask

from service.extensions import db
from service.services import members

log = logging.getLogger("reach.realtime")

CHUNK = 1000
NAMESPACE = "/"


class Sockets(Protocol):
    def sessions(self) -> dict[str, uuid.UUID]: ...


class SessionSweep:
    """The sweep of one app's sockets in this process: one background task, started with the
    first socket (in a forked worker too) and living as long as the process."""

    def __init__(self, app: Flask, server: Any, sockets: Sockets) -> None:
        self.app, self.server, self.sockets = app, server, sockets
        self.interval = float(app.extensions["reach.settings"].SOCKET_RECHECK_SECONDS)
        self._lock = threading.Lock()
        self._task_pid = 0

    def ensure_running(self) -> None:
        with self._lock:
            if self._task_pid == os.getpid():
                return
            self._task_pid = os.getpid()
        self.server.start_background_task(self._run)

    def _run(self) -> None:
        while True:
            self.server.sleep(self.interval)
            try:
                self.sweep()
            except Exception:  # the next sweep tries again
                log.exception("checking the sockets' sessions failed")

    def sweep(self) -> int:
        """Close the sockets whose session has ended; how many."""
        open_now = self.sockets.sessions()
        if not open_now:
            return 0
        live: set[uuid.UUID] = set()
        session_ids = sorted(set(open_now.values()))
        with self.app.app_context():
            for start in range(0, len(session_ids), CHUNK):
                chunk = session_ids[start : start + CHUNK]
                live |= members.live_sessions(db.session, chunk)
        ended = [sid for sid, session_id in open_now.items() if session_id not in live]
        for sid in ended:
            self.server.disconnect(sid, namespace=NAMESPACE, ignore_queue=True)
        if ended:
            log.info("sockets of ended sessions closed", extra={"sockets": len(ended)})
        return len(ended)


def ensure_running(app: Flask, server: Any, sockets: Sockets) -> None:
    """Start the app's sweep in this process unless it runs already."""
    found = app.extensions.get("reach.session_sweep")
    if found is None:
        found = app.extensions.setdefault("reach.session_sweep", SessionSweep(app, server, sockets))
    found.ensure_running()
