"""A client's Socket.IO packets that cannot be read: dropped, or answered when they ask.

A packet that is not Socket.IO at all (an unknown packet type, an ack id or attachment count in
digits other than ASCII ones) is dropped with one log line; python-socketio raised on it, and
Engine.IO logged a traceback for every such packet a client cared to send. python-socketio reads
those numbers with `str.isdigit`, which takes any script's digits: `2\u0661[...]` was handled
and its answer sent as the ack of the phone's call number 1, which may be another event waiting
for its own answer.

An event whose head is readable but whose payload is not (JSON that does not parse, an integer
of more than 100 digits, which Engine.IO's JSON refuses, nesting deeper than Python's parser
goes) is answered, when its head asks for an ack, with the 400 problem REST gives such a body;
it was dropped, and the phone waited out its timeout to send the same again. A connect whose
`auth` is such is refused with that problem, as the connect handler's refusals are. So is a binary
event whose attachments do not fit its placeholders (one names an attachment that is not there,
or not by number): python-socketio raised while putting it together and kept waiting for its
attachments, taking every later packet of the socket for one, so the phone's writes got no ack
and did nothing while its socket stayed open.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import socketio
from socketio import packet

from schemas.base import MAX_NESTING
from service.errors import problem_body
from service.realtime.refusals import NAME_SHOWN, refuse, refuse_connect

log = logging.getLogger("reach.realtime")

UNFIT_ATTACHMENTS = "The binary attachments do not fit the event's placeholders."
NESTED_TOO_DEEP = (
    f"The payload is nested too deeply: at most {MAX_NESTING} levels of objects and arrays."
)
NUMBER_TOO_LONG = "The payload holds a number too long to read: at most 100 digits."

# The packet types a client sends: CONNECT, DISCONNECT, EVENT, ACK, BINARY_EVENT, BINARY_ACK.
CLIENT_PACKET_TYPES = frozenset("012356")
# A packet's head as python-socketio reads it: its attachment count and ack id in whatever
# digits `str.isdigit` takes ("\u0661" is an ack id 1 there), which must be ASCII ones.
HEAD_DIGITS = re.compile(r".(?:(?P<attachments>\d+)-)?(?:/[^,]*,)?(?P<id>\d*)")


class Unreadable(ValueError):
    """A Socket.IO packet that could not be decoded. `detail`, when set, is the 400 problem's
    for a connect or an event whose head was read: its namespace and ack id."""

    def __init__(
        self,
        error: str,
        *,
        detail: str | None = None,
        namespace: str | None = None,
        id: int | None = None,
        connect: bool = False,
    ) -> None:
        super().__init__(error)
        self.detail, self.namespace, self.id = detail, namespace, id
        self.connect = connect


class _UnreadablePayload(ValueError):
    """A packet's JSON payload that could not be read, and why, in REST's words."""

    def __init__(self, error: BaseException, detail: str) -> None:
        super().__init__(type(error).__name__)
        self.detail = detail


def _payload_fault(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return NESTED_TOO_DEEP
    if isinstance(exc, json.JSONDecodeError):
        return f"The payload is not valid JSON: {exc.msg} at column {exc.colno}."
    return NUMBER_TOO_LONG  # the one other ValueError: Engine.IO's JSON refusing an integer


def drop_unreadable(server: socketio.Server) -> None:
    """Decode a client's packets through a class whose decoding fails with `Unreadable`, and
    drop (and log, without a traceback) what fails, or has a type a client never sends."""
    base: Any = server.packet_class

    class PayloadJSON:
        """The packets' JSON, saying why a payload could not be read."""

        dumps = staticmethod(base.json.dumps)

        @staticmethod
        def loads(text: str) -> Any:
            try:
                return base.json.loads(text)
            except (ValueError, RecursionError) as exc:
                raise _UnreadablePayload(exc, _payload_fault(exc)) from None

    class Packet(base):
        json = PayloadJSON

        def decode(self, encoded_packet: Any) -> Any:
            if isinstance(encoded_packet, str):
                head = HEAD_DIGITS.match(encoded_packet)
                if head is not None and not all(d.isascii() for d in head.groups("")):
                    raise Unreadable("digits outside ASCII in the head")
            try:
                return super().decode(encoded_packet)
            except _UnreadablePayload as exc:
                # The head was read whole before the payload: its namespace and ack id hold.
                if self.packet_type not in (packet.CONNECT, packet.EVENT, packet.BINARY_EVENT):
                    raise Unreadable(str(exc)) from None
                raise Unreadable(
                    str(exc),
                    detail=exc.detail,
                    namespace=self.namespace,
                    id=self.id,
                    connect=self.packet_type == packet.CONNECT,
                ) from None
            except (ValueError, RecursionError) as exc:
                raise Unreadable(type(exc).__name__) from None

        def add_attachment(self, attachment: Any) -> bool:
            try:
                return bool(super().add_attachment(attachment))
            except (LookupError, TypeError, ValueError, RecursionError) as exc:
                raise Unreadable(f"binary attachments: {type(exc).__name__}") from None

    server.packet_class = Packet
    handle_message = server._handle_eio_message

    def readable(eio_sid: str, data: Any) -> None:
        try:
            if isinstance(data, str) and data[:1] not in CLIENT_PACKET_TYPES:
                raise Unreadable(f"packet type {data[:1]!r}")
            handle_message(eio_sid, data)
        except Unreadable as exc:
            log.info(
                "unreadable socket packet dropped",
                extra={"error": str(exc)[:NAME_SHOWN], "characters": len(data)},
            )
            if exc.detail is not None and exc.connect:
                problem = problem_body(400, detail=exc.detail)
                refuse_connect(server, eio_sid, exc.namespace or "/", problem)
            elif exc.detail is not None:
                refuse(server, eio_sid, exc.namespace or "/", exc.id, None, exc.detail)
            # A binary packet waiting for its attachments is dropped with them: the socket's
            # next packets are packets again.
            waiting = server._binary_packet.pop(eio_sid, None)
            if waiting is not None and waiting.packet_type == packet.BINARY_EVENT:
                name = waiting.data[0] if isinstance(waiting.data, list) and waiting.data else None
                namespace = waiting.namespace or "/"
                refuse(server, eio_sid, namespace, waiting.id, name, UNFIT_ATTACHMENTS)

    server._handle_eio_message = readable
    server.eio.on("message", readable)  # Engine.IO holds the method it was given at start
