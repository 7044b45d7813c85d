"""What a client may send: events named with a string, never a life-cycle name; unknown
events are answered.

python-socketio hands a client's EVENT packet to whatever handler has the packet's name, and
`connect` and `disconnect` are names like any other there: a phone that emits `disconnect`
runs the namespace's disconnect handler on a socket that stays open (the member handler then
forgets it: SOCKETS_PER_USER stops counting it and the session sweep stops checking it), and
one that emits `connect` runs the connect handler again. Its packets pass one gate here first,
for every namespace: an event whose name is reserved, or is not a string (python-socketio
raises on an empty packet or a list as the name), never reaches a handler. It is dropped, and
answered with a 400 problem when the client asked for an acknowledgement.

The gate wraps `Server._handle_event` (python-socketio 5: the one path of EVENT and
BINARY_EVENT packets, before any handler is looked up), the way `handshake` wraps the connect
and disconnect paths; a guard inside each life-cycle handler could not tell a fake disconnect
from a real one that races it, and every new namespace would need its own.
tests/realtime/test_socket_hardening.py fails if python-socketio moves it.

Packets that cannot be read are dropped, or answered, in `realtime.packets`. An event to a
namespace the socket has not joined (another one, or before its connect is answered) and an
ACK of nothing the server waits for are dropped with a debug line: python-socketio logged a
warning for each, and a client could write the process's log full at its packets' pace. A
connect to a namespace the server does not have is refused with a 404 problem, one to a namespace
the socket is in already (joined, or joining) with a 409.

A socket has at most `in_flight` events handled at once (SOCKET_EVENTS_IN_FLIGHT): python-
socketio starts a greenlet for every event as it arrives, so one socket sending thousands
without waiting for their answers held its process's database and CPU for seconds (another
member's `GET /me` went from 18 to ~420 ms). An event past that is answered at once with a 429
problem (when the client asked for an acknowledgement) and not handled; a phone that waits for
each answer, as the guide's outbox does, never meets it.

An event whose payload gives a name twice (`{"note": "a", "note": "b"}`) is answered with the
422 problem a REST body gets (`wire_json.read`, which marks such packets as it decodes them, a
binary event's once its attachments are in place) and not handled: which value counts would
depend on the parser. A connect whose `auth` does is refused with that problem.

Events with no handler of their own reach `unknown_event`, the member namespace's catch-all
(Flask-SocketIO's "*" handler, looked up only after the event's own): acked with a 404
problem when the client asked for an acknowledgement, else dropped. /ops has none: its
browsers only listen.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import socketio
from flask_socketio import SocketIO

from service.errors import problem_body
from service.realtime import packets
from service.realtime.refusals import NAME_SHOWN, refuse, refuse_connect
from service.wire_json import AuthGivenTwice, GivenTwice, given_once

log = logging.getLogger("reach.realtime")

# The names python-socketio gives the connection's life cycle (Server.reserved_events), the
# ones Socket.IO clients reserve for their own (a client library refuses to emit them), and
# "*": python-socketio would hand an event named "*" to the catch-all with its arguments
# shifted by one.
RESERVED = frozenset(
    {"connect", "disconnect", "connect_error", "disconnecting", "newListener", "removeListener"}
    | {"*"}
)
GUIDE = "see the socket events in the mobile guide"


TOO_MANY = "Too many events at once on this socket: wait for their answers, then send again."


def install(server: socketio.Server, in_flight: int = 16) -> None:
    """Put the gate in front of every client event `server` receives: at most `in_flight` of
    one socket's events are handled at once."""
    if getattr(server, "_reach_inbound", False):
        return
    packets.drop_unreadable(server)
    _screen_connects(server)
    _drop_stray_acks(server)
    handle_event = server._handle_event
    handle_internal = server._handle_event_internal
    reserved = RESERVED | frozenset(server.reserved_events)
    busy: dict[str, int] = {}  # eio sid -> its events being handled
    lock = threading.Lock()

    def screened(eio_sid: str, namespace: str | None, id: int | None, data: Any) -> None:
        name = data[0] if isinstance(data, list) and data else None
        if not isinstance(name, str) or name in reserved:
            if isinstance(name, str):
                detail = f"{name!r} is the name of a connection event; a client may not send it."
            else:
                detail = 'Name the event with a string: ["<event>", <payload>].'
            refuse(server, eio_sid, namespace or "/", id, name, detail)
            return
        if isinstance(data, GivenTwice):
            # Refused as REST refuses such a body; named in the payload, not in the packet.
            twice = [n.removeprefix("1.") for n in data.twice]
            refuse(server, eio_sid, namespace or "/", id, name, None, 422, given_once(twice))
            return
        sid = server.manager.sid_from_eio_sid(eio_sid, namespace or "/")
        if not server.manager.is_connected(sid, namespace or "/"):
            # Not joined (yet): dropped, as python-socketio does, without its warning per packet.
            log.debug("client event outside a joined namespace dropped", extra=_where(namespace))
            return
        with lock:
            taken = busy.get(eio_sid, 0) < in_flight
            if taken:
                busy[eio_sid] = busy.get(eio_sid, 0) + 1
        if not taken:
            refuse(server, eio_sid, namespace or "/", id, name, TOO_MANY, status=429)
            return
        try:
            handle_event(eio_sid, namespace, id, data)  # starts `handled`, which gives it back
        except BaseException:
            _given_back(eio_sid)
            raise

    def handled(*args: Any) -> None:
        # (server, sid, eio_sid, data, namespace, id): as python-socketio calls it.
        try:
            handle_internal(*args)
        finally:
            _given_back(args[2])

    def _given_back(eio_sid: str) -> None:
        with lock:
            left = busy.get(eio_sid, 1) - 1
            if left > 0:
                busy[eio_sid] = left
            else:
                busy.pop(eio_sid, None)

    server._handle_event = screened
    server._handle_event_internal = handled
    server._reach_inbound = True


def _where(namespace: str | None) -> dict[str, str]:
    return {"namespace": (namespace or "/")[:NAME_SHOWN]}


def _drop_stray_acks(server: socketio.Server) -> None:
    """A client's ACK of nothing the server waits for is dropped with a debug line (python-
    socketio logged a warning for each; an ACK numbered 0 would call its id counter)."""
    handle_ack = server._handle_ack

    def screened(eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        sid = server.manager.sid_from_eio_sid(eio_sid, namespace or "/")
        if id and id in server.manager.callbacks.get(sid, {}):
            handle_ack(eio_sid, namespace, id, data)
        else:
            log.debug("client ack of nothing awaited dropped", extra=_where(namespace))

    server._handle_ack = screened


def _screen_connects(server: socketio.Server) -> None:
    """Connects refused before any handler reads them, with a problem in the shape of the
    connect handler's refusals: to a namespace the server does not have (404; python-socketio
    answered a bare "Unable to connect", as to a namespace the socket is in already: 409), or
    whose `auth` gives a name twice (422)."""
    handle_connect = server._handle_connect

    def screened(eio_sid: str, namespace: str | None, data: Any) -> None:
        where = namespace or "/"
        if not _served(server, where):
            log.info("socket connect refused: no such namespace", extra=_where(where))
            detail = f"There is no namespace {where[:NAME_SHOWN]!r}: connect to the namespace '/'."
            refuse_connect(server, eio_sid, where, problem_body(404, detail=detail))
        elif server.manager.sid_from_eio_sid(eio_sid, where) is not None:
            log.info("socket connect refused: already in the namespace", extra=_where(where))
            detail = (
                f"This socket is already connected to {where[:NAME_SHOWN]!r}: send events on it, "
                "or disconnect before connecting again."
            )
            refuse_connect(server, eio_sid, where, problem_body(409, detail=detail))
        elif isinstance(data, AuthGivenTwice):
            log.info("socket connect refused: a name given twice in auth")
            problem = problem_body(422, errors=given_once(data.twice))
            refuse_connect(server, eio_sid, where, problem)
        else:
            handle_connect(eio_sid, namespace, data)

    server._handle_connect = screened


def _served(server: socketio.Server, namespace: str) -> bool:
    """Whether python-socketio would take a connect to `namespace` (`Server._handle_connect`)."""
    return (
        namespace in server.handlers
        or namespace in server.namespace_handlers
        or server.namespaces == "*"
        or namespace in server.namespaces
    )


def register(socketio: SocketIO, namespace: str) -> None:
    """Answer the events of `namespace` that have no handler of their own."""
    socketio.on_event("*", unknown_event, namespace=namespace)


def unknown_event(event: str, *_args: Any) -> dict[str, Any]:
    """An event the server does not know: the problem is the ack, if one was asked for."""
    log.debug("unknown client event", extra={"event": event[:NAME_SHOWN]})
    detail = f"Unknown event {event[:NAME_SHOWN]!r}; {GUIDE}."
    return problem_body(404, detail=detail)
