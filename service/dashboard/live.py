"""The /ops Socket.IO namespace: operators' browsers get `ops.overview` every few seconds, or
`ops.overview.failed` (a problem object: 503 while the database is away) when it can't be made."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import urlsplit

from flask import Flask, current_app, request, session
from flask_socketio import ConnectionRefusedError, SocketIO, join_room

from service import metrics
from service.errors import database_said, problem_body, server_problem
from service.extensions import db
from service.services import ops, ops_accounts

log = logging.getLogger("reach.ops")

NAMESPACE = "/ops"
EVENT = "ops.overview"
FAILED = "ops.overview.failed"
PROCESS = f"{socket.gethostname()}:{os.getpid()}"
# Watchers of this process; with a message queue every process streams its own figures.
ROOM = f"ops-watchers:{PROCESS}"


def session_room(token_hash: str) -> str:
    return f"ops-session:{token_hash}"


def same_origin_or(configured: tuple[str, ...]) -> Callable[[str | None, dict[str, Any]], bool]:
    """Socket.IO origin check: the configured browser origins, plus the service's own (/ops)."""

    def allowed(origin: str | None, environ: dict[str, Any] | None = None) -> bool:
        if origin is None or origin in configured:
            return True
        env = environ or {}
        own = f"{env.get('wsgi.url_scheme', 'http')}://{env.get('HTTP_HOST', '')}"
        return origin == own

    return allowed


def _from_dashboard(origin: str | None, environ: dict[str, Any]) -> bool:
    """Whether a page of this service's own host opened the socket (a TLS terminator may have
    made the scheme http here; the host is what a foreign page cannot share)."""
    return origin is None or urlsplit(origin).netloc == environ.get("HTTP_HOST", "")


class LiveFigures:
    """Computes the overview every `interval` seconds while someone in this process watches.

    Each time, it first closes the sockets whose operator session has ended meanwhile (run
    out, signed out in another process, account disabled): the figures go only to live ones.
    """

    def __init__(self, app: Flask, socketio: SocketIO, interval: float) -> None:
        self.app, self.socketio, self.interval = app, socketio, interval
        self._lock = threading.Lock()
        # Each watching socket's sid, with the hash of the operator session it opened under.
        self._watchers: dict[str, str] = {}
        self._running = False
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._failing = False  # the last overview could not be made (logged once per outage)

    def watch(self, sid: str, session_hash: str) -> None:
        with self._lock:
            self._watchers[sid] = session_hash
            if self._running:
                return
            self._running = True
            self._idle.clear()
        self.socketio.start_background_task(self._run)

    def unwatch(self, sid: str) -> None:
        with self._lock:
            self._watchers.pop(sid, None)
            if not self._watchers:
                self._wake.set()

    @property
    def watchers(self) -> int:
        with self._lock:
            return len(self._watchers)

    def wait_idle(self, timeout: float) -> bool:
        """True once the loop has stopped (nobody watches); tests wait on it before cleaning up."""
        return self._idle.wait(timeout)

    def _keep_going(self) -> bool:
        with self._lock:
            if self._watchers:
                return True
            self._running = False
            self._idle.set()
            return False

    def _run(self) -> None:
        try:
            while self._keep_going():
                try:
                    with self._lock:
                        watching = dict(self._watchers)
                    payload, live = self.compute(set(watching.values()))
                    for sid, session_hash in watching.items():
                        if session_hash not in live:
                            self.socketio.server.disconnect(sid, namespace=NAMESPACE)
                    self.socketio.emit(EVENT, payload, to=ROOM, namespace=NAMESPACE)
                    self._recovered()
                except Exception as exc:
                    self._failed(exc)
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            with self._lock:
                if self._running:  # left by an unexpected error: the next watcher restarts it
                    self._running = False
                    self._idle.set()

    def _failed(self, exc: Exception) -> None:
        """Tell the watchers the figures stopped and why (their page would otherwise keep
        showing the last ones as live); log it once, not every `interval`, until it recovers."""
        problem = server_problem(exc)
        if not self._failing:
            self._failing = True
            if problem["status"] == 503:
                log.warning(
                    "ops overview: database unavailable",
                    extra={"error_type": type(exc).__name__, "error": database_said(exc)},
                )
            else:
                log.exception("computing the ops overview failed")
        try:
            self.socketio.emit(FAILED, problem, to=ROOM, namespace=NAMESPACE)
        except Exception:
            log.exception("telling operators the ops overview failed")

    def _recovered(self) -> None:
        if self._failing:
            self._failing = False
            log.info("ops overview: figures again")

    def compute(self, session_hashes: set[str]) -> tuple[dict[str, Any], set[str]]:
        """The overview, and which of `session_hashes` are of live operator sessions."""
        with self.app.app_context(), db.scope() as scoped:
            live = ops_accounts.live_session_hashes(scoped, session_hashes)
            return overview_now(scoped), live


def overview_now(scoped: Any) -> dict[str, Any]:
    """The overview with this process's socket and request figures."""
    settings = current_app.extensions["reach.settings"]
    host_total = metrics.host_member_sockets(settings.PROMETHEUS_MULTIPROC_DIR)
    sockets = (
        {"members": host_total, "scope": "host"}
        if host_total is not None
        else {"members": metrics.sockets.get("members"), "scope": "process"}
    )
    http = {**metrics.requests_window.summary(), "scope": "process"}
    return ops.overview(scoped, sockets=sockets, http=http, process=PROCESS)


def figures() -> LiveFigures:
    return cast(LiveFigures, current_app.extensions["reach.ops_live"])


def on_connect(auth: Any = None) -> bool | None:
    """Only a browser with a live operator session cookie may listen; bearer tokens are ignored.
    The page must be the dashboard's own: the members' web apps (ALLOWED_ORIGINS) may open
    the members' namespace, not this one, though the cookie may reach them (SameSite=Lax)."""
    if not _from_dashboard(request.headers.get("Origin"), request.environ):
        refusal = problem_body(403, detail="The live overview opens only from /ops itself.")
        raise ConnectionRefusedError(refusal["detail"], refusal)
    token = session.get("ops_sid")
    operator = ops_accounts.session_operator(db.session, token if isinstance(token, str) else None)
    if operator is None or not isinstance(token, str):
        refusal = problem_body(401, detail="Sign in at /ops/login.")
        raise ConnectionRefusedError(refusal["detail"], refusal)
    if _gone(request.sid):  # type: ignore[attr-defined]
        # The browser went while its session was looked up (the tab closed): its disconnect
        # has come and gone, so nothing may be kept for it (no count, and no watcher that the
        # figures would be computed for every OPS_REFRESH_SECONDS for good).
        return False
    session_hash = ops_accounts.hash_session_token(token)
    join_room(ROOM)
    join_room(session_room(session_hash))
    metrics.sockets.connected("ops", request.sid)  # type: ignore[attr-defined]
    figures().watch(request.sid, session_hash)  # type: ignore[attr-defined]
    return None


def _gone(sid: str) -> bool:
    """Whether the socket `sid` has closed (the Socket.IO server no longer knows it)."""
    try:
        cast(SocketIO, current_app.extensions["socketio"]).server.get_session(sid, NAMESPACE)
    except KeyError:
        return True
    return False


def on_disconnect(reason: Any = None) -> None:
    metrics.sockets.disconnected("ops", request.sid)  # type: ignore[attr-defined]
    figures().unwatch(request.sid)  # type: ignore[attr-defined]


def register(app: Flask, socketio: SocketIO) -> None:
    settings = app.extensions["reach.settings"]
    app.extensions["reach.ops_live"] = LiveFigures(app, socketio, settings.OPS_REFRESH_SECONDS)
    socketio.on_event("connect", on_connect, namespace=NAMESPACE)
    socketio.on_event("disconnect", on_disconnect, namespace=NAMESPACE)


def disconnect_room(namespace: str, room: str) -> int:
    """Close this process's sockets in `room` (other processes' sockets end on their next check)."""
    server = cast(SocketIO, current_app.extensions["socketio"]).server
    sids = [sid for sid, _ in server.manager.get_participants(namespace, room)]
    for sid in sids:
        server.disconnect(sid, namespace=namespace)
    return len(sids)


def disconnect_operator_session(token: str) -> None:
    disconnect_room(NAMESPACE, session_room(ops_accounts.hash_session_token(token)))
