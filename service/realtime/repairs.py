"""Repair writes over the socket: `repair.message` (same code as REST)."""

from __future__ import annotations

from typing import Any

from flask_socketio import SocketIO

from schemas.repairs import RepairMessageSendSchema
from service.extensions import WRITING_REPAIR_MESSAGES, db
from service.realtime.acks import check_rate, write
from service.services import repair_messages
from service.services.members import Member, user_of


def register(socketio: SocketIO) -> None:
    socketio.on_event("repair.message", send_message, namespace="/")


@write(RepairMessageSendSchema())
def send_message(member: Member, data: dict[str, Any]) -> dict[str, Any]:
    check_rate(WRITING_REPAIR_MESSAGES, member, "RATELIMIT_REPAIRS")
    repair_id = data.pop("repair_id")
    written = repair_messages.write(db.session, user_of(db.session, member), repair_id, **data)
    return repair_messages.wire(written.resource)
