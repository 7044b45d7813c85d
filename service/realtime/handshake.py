"""Every socket that connected gets its disconnect handler, whatever ends it and whenever.

python-socketio loses a disconnect in two races, and the handler never runs: the account keeps
a phantom socket (SOCKETS_PER_USER then refuses its next connections), the socket gauge stays
up, and an operator's overview keeps being computed for nobody.

- **Closed while connecting.** While a namespace's connect handler runs (the member handler
  reads the database) the namespace is "pending", and an Engine.IO disconnect that arrives
  meanwhile (a ping timeout, a polling phone's CLOSE) is ignored; then the handler returns and
  the namespace is marked connected, on a socket that is gone. Here, once a connect has
  finished on a socket that is closing or gone, its disconnect runs. Either the transport's
  disconnect sees the namespace connected, or this check sees the socket closing (each side
  writes its own state before it reads the other's); a claim per socket and namespace keeps the
  two from running the handler twice.
- **Closed while the server disconnects it.** A sign-out cuts the session's sockets
  (`server.disconnect`) just as the phone closes its own: the transport's disconnect finds the
  namespace already disconnecting and skips it, then drops the socket's WSGI environ, and
  Flask-SocketIO, finding no environ, skips the handler of the server's disconnect too. Here the
  environ stays until the server's disconnects of that socket are done.

A connect handler that fails (the database is away, the socket closed under it) is answered
as a refusal with a problem, 503 while the database is away, else 500; python-socketio would
leave the namespace pending forever and the phone waiting for an answer.

A socket that joins no namespace within `connect_timeout` seconds of opening is closed: it
has not authenticated, and it would otherwise hold one of the process's socket slots for as
long as it answers pings. So is one that leaves its last namespace (the client's DISCONNECT
packet, or the server's cut at a sign-out) and stays open without joining again within as
long: its account no longer counts it (SOCKETS_PER_USER), so joining and leaving in turn held
as many of the process's slots as a client liked.

`install(server, connect_timeout)` applies all four to one python-socketio server.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import socketio

from service.errors import logged_server_problem, server_problem
from service.realtime.deadlines import Deadlines
from service.realtime.refusals import refuse_connect

log = logging.getLogger("reach.realtime")


def install(server: socketio.Server, connect_timeout: float) -> None:
    if getattr(server, "_reach_handshake", False):
        return
    eio_connect = server._handle_eio_connect
    deadlines: Deadlines[str] = Deadlines(
        server,
        connect_timeout,
        lambda eio_sid: _close_if_not_joined(server, eio_sid),
        "checking a socket's connect deadline",
    )
    connect, disconnect = server._handle_connect, server._handle_disconnect
    server_disconnect = server.disconnect
    lock = threading.Lock()
    claims: set[tuple[str, str]] = set()
    cutting: dict[str, int] = {}  # eio sid -> server-initiated disconnects under way
    gone_meanwhile: set[str] = set()  # eio sids whose environ waits for those to finish

    def handle_disconnect(eio_sid: str, namespace: str | None, reason: Any = None) -> None:
        key = (eio_sid, namespace or "/")
        with lock:
            if key in claims:
                return
            claims.add(key)
        try:
            disconnect(eio_sid, namespace, reason)
        finally:
            with lock:
                claims.discard(key)
        watch_if_left(eio_sid)

    def watch_if_left(eio_sid: str) -> None:
        """A socket still open in no namespace is closed unless it joins one in time."""
        if not _gone(server, eio_sid) and not _joined(server, eio_sid):
            deadlines.add(eio_sid)

    def handle_connect(eio_sid: str, namespace: str | None, data: Any) -> None:
        try:
            connect(eio_sid, namespace, data)
        except Exception as exc:
            where = namespace or "/"
            if _gone(server, eio_sid):  # the handler could not finish on a closed socket
                log.info("socket closed while connecting", extra={"namespace": where})
                problem = server_problem(exc)
            else:
                problem = logged_server_problem(exc, log, "socket connect failed", namespace=where)
            _refuse(server, eio_sid, where, problem)
            return
        if _gone(server, eio_sid):
            handle_disconnect(eio_sid, namespace, server.reason.TRANSPORT_CLOSE)

    def handle_eio_disconnect(eio_sid: str, reason: Any = None) -> None:
        """python-socketio's, except that the environ outlives the server's own disconnects."""
        for namespace in list(server.manager.get_namespaces()):
            server._handle_disconnect(eio_sid, namespace, reason)
        with lock:
            if eio_sid in cutting:
                gone_meanwhile.add(eio_sid)
                return
        server.environ.pop(eio_sid, None)

    def disconnect_sid(sid: str, namespace: str | None = None, ignore_queue: bool = False) -> None:
        eio_sid = server.manager.eio_sid_from_sid(sid, namespace or "/")
        if eio_sid is None:  # not a socket of this process (the message queue passes it on)
            server_disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
            return
        with lock:
            cutting[eio_sid] = cutting.get(eio_sid, 0) + 1
        try:
            server_disconnect(sid, namespace=namespace, ignore_queue=ignore_queue)
        finally:
            with lock:
                left = cutting.pop(eio_sid) - 1
                if left:
                    cutting[eio_sid] = left
                forget = not left and eio_sid in gone_meanwhile
                if forget:
                    gone_meanwhile.discard(eio_sid)
            if forget:
                server.environ.pop(eio_sid, None)
        watch_if_left(eio_sid)

    def handle_eio_connect(eio_sid: str, environ: Any) -> Any:
        accepted = eio_connect(eio_sid, environ)
        if accepted is not False:
            deadlines.add(eio_sid)
        return accepted

    server._handle_eio_connect = handle_eio_connect
    server.eio.on("connect", handle_eio_connect)
    server._handle_connect = handle_connect
    server._handle_disconnect = handle_disconnect
    server._handle_eio_disconnect = handle_eio_disconnect
    server.disconnect = disconnect_sid
    server.eio.on("disconnect", handle_eio_disconnect)
    server._reach_handshake = True


def _gone(server: socketio.Server, eio_sid: str) -> bool:
    sock = server.eio.sockets.get(eio_sid)
    return sock is None or bool(sock.closing or sock.closed)


def _refuse(server: socketio.Server, eio_sid: str, namespace: str, problem: dict[str, Any]) -> None:
    """What python-socketio does when a connect handler refuses, after one that failed."""
    refuse_connect(server, eio_sid, namespace, problem)
    sid = server.manager.sid_from_eio_sid(eio_sid, namespace)
    if sid is not None:
        server.manager.disconnect(sid, namespace, ignore_queue=True)


def _close_if_not_joined(server: socketio.Server, eio_sid: str) -> None:
    """The socket's deadline: closed unless it has joined (or is joining) a namespace."""
    if eio_sid not in server.eio.sockets or _joined(server, eio_sid):
        return  # closed already, or in a namespace
    log.info("socket closed: it joined no namespace in time")
    server.eio.disconnect(eio_sid)


def _joined(server: socketio.Server, eio_sid: str) -> bool:
    """Whether the socket is in a namespace, or joining one."""
    manager = server.manager
    return any(manager.sid_from_eio_sid(eio_sid, ns) for ns in list(manager.get_namespaces()))
