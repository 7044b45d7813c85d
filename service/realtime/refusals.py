"""A client's event or connect refused: an event's answered with a problem when it asked for an
ack, a connect's with the problem in CONNECT_ERROR, as the connect handler's refusals are."""

from __future__ import annotations

import logging
from typing import Any

import socketio
from socketio import packet

from service.errors import problem_body

log = logging.getLogger("reach.realtime")

NAME_SHOWN = 64  # characters of a client's event name kept in a log line or a detail


def refuse(
    server: socketio.Server,
    eio_sid: str,
    namespace: str,
    id: int | None,
    name: Any,
    detail: str | None,
    status: int = 400,
    errors: dict[str, list[str]] | None = None,
) -> None:
    sid = server.manager.sid_from_eio_sid(eio_sid, namespace)
    if not server.manager.is_connected(sid, namespace):
        return  # as python-socketio does: nothing is answered outside a joined namespace
    # A flood's refusals are one debug line each, not a line of the process's log per packet.
    log.log(
        logging.DEBUG if status == 429 else logging.INFO,
        "client event refused",
        extra={
            "event": repr(name)[:NAME_SHOWN],
            "namespace": namespace,
            "acked": id is not None,
            "status": status,
        },
    )
    if id is None:
        return
    retry_after = 1 if status == 429 else None
    problem = problem_body(status, detail=detail, errors=errors, retry_after=retry_after)
    answer_call(server, eio_sid, namespace, id, problem)


def answer_call(
    server: socketio.Server, eio_sid: str, namespace: str, id: int, problem: dict[str, Any]
) -> None:
    """The problem as the answer (ACK) to the client's call `id`."""
    server._send_packet(
        eio_sid, server.packet_class(packet.ACK, namespace=namespace, id=id, data=[problem])
    )


def refuse_connect(
    server: socketio.Server, eio_sid: str, namespace: str, problem: dict[str, Any]
) -> None:
    """The client's `connect_error` gets `{message: detail, data: problem}`."""
    refusal = {"message": problem["detail"], "data": problem}
    server._send_packet(
        eio_sid, server.packet_class(packet.CONNECT_ERROR, data=refusal, namespace=namespace)
    )
