"""A message from the phone over the size limit, as the WebSocket hands it on."""

from __future__ import annotations

from dataclasses import dataclass

# How much of a message over the size limit is kept: enough for its Engine.IO and Socket.IO
# head (packet types, namespace, ack id, the event's name); the rest is read and discarded.
OVERSIZED_HEAD_BYTES = 256


@dataclass(frozen=True)
class Oversized:
    """A message from the phone over `max_http_buffer_size`: its first bytes and its size.

    It is handed on like a message, and the engineio server's `on_oversized(sid, message)`,
    if set, answers it (service/realtime/oversized.py); the socket stays open."""

    head: bytes
    size: int
    text: bool
