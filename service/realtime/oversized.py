"""Socket.IO messages over the size limit (MAX_CONTENT_LENGTH): answered, never handled.

The WebSocket transport (service/realtime/transport/) reads such a message without holding
it whole and hands on its head; the socket stays open. Closing it instead (1009) told the phone
nothing it could act on: Socket.IO libraries report a bare `transport close` and reconnect, and
an app following the guide sends an unacknowledged write again, with the same `client_id`:
the same message, the same close, for ever. What the head says decides the answer:

- an event sent with an acknowledgement gets it: a 413 problem (`bad_request`) saying the
  limit; the write was not done;
- so does a binary event waiting for an attachment that is over the limit;
- a connect whose `auth` is over the limit is refused with the same problem;
- anything else (an event without an acknowledgement, such as `typing`) is dropped.

A binary event's head over the limit is answered the same way; the attachments that follow it
find no event waiting and are dropped as unreadable packets (service/realtime/inbound.py).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import socketio
from socketio import packet

from service.errors import problem_body
from service.realtime import transport
from service.realtime.refusals import answer_call, refuse_connect
from service.realtime.transport import Oversized

log = logging.getLogger("reach.realtime")

# An Engine.IO MESSAGE ("4") holding a Socket.IO packet: its type, the attachments of a binary
# one, the namespace (up to the comma; python-socketio drops a "?query"), the ack id. Digits
# are ASCII ones (`\d` takes any script's: "\u0661" would answer the phone's call number 1);
# a packet written otherwise is not read as one (service/realtime/inbound.py).
HEAD = re.compile(
    r"4(?P<type>[0-6])(?:(?P<attachments>[0-9]+)-)?(?:(?P<namespace>/[^,]*),)?(?P<id>[0-9]{1,18})?"
)


def install(server: socketio.Server) -> None:
    """Answer the messages over the limit that `server`'s WebSocket transport hands on."""
    eio = server.eio
    if transport.serves(eio):
        eio.on_oversized = lambda eio_sid, message: answer(server, eio_sid, message)


def too_large(limit: int, size: int) -> dict[str, Any]:
    detail = (
        f"A socket message may have at most {limit} bytes; this one had {size}. "
        "It was not processed: don't send it again as it is."
    )
    return problem_body(413, detail=detail)


def answer(server: socketio.Server, eio_sid: str, message: Oversized) -> None:
    problem = too_large(server.eio.max_http_buffer_size, message.size)
    waiting = server._binary_packet.pop(eio_sid, None)  # the message was its attachment
    if waiting is not None:
        if waiting.packet_type == packet.BINARY_EVENT:
            _ack(server, eio_sid, waiting.namespace or "/", waiting.id, problem)
        return
    head = HEAD.match(message.head.decode("utf-8", "replace")) if message.text else None
    if head is None:
        return  # not a Socket.IO packet anyone waits for an answer to
    kind = int(head["type"])
    namespace = (head["namespace"] or "/").split("?", 1)[0]
    ack_id = int(head["id"]) if head["id"] is not None else None
    if kind in (packet.EVENT, packet.BINARY_EVENT):
        _ack(server, eio_sid, namespace, ack_id, problem)
    elif kind == packet.CONNECT:
        refuse_connect(server, eio_sid, namespace, problem)


def _ack(
    server: socketio.Server, eio_sid: str, namespace: str, ack_id: int | None, problem: Any
) -> None:
    if ack_id is None:
        return  # nobody waits for an answer
    sid = server.manager.sid_from_eio_sid(eio_sid, namespace)
    if sid is None or not server.manager.is_connected(sid, namespace):
        return  # as python-socketio does: nothing is answered outside a joined namespace
    answer_call(server, eio_sid, namespace, ack_id, problem)
