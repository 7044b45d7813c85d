"""The Socket.IO message queue between API (and worker) processes, over Redis.

python-socketio's `RedisManager` delivers an emit to this process's sockets at once and then
publishes it for the other processes, waiting for Redis inside the request that emitted (with
redis-py's default of ten retries while Redis is away). Here the publishing goes to the
process's `Publications` (service/pubsub.py) instead, which sends it off the request path,
in order, pipelined with whatever else is going out. Receiving is python-socketio's own, on
the same channel and in the same format, so processes of either kind understand each other.

A process listens once its first socket connects (a worker, which holds none, only sends), and
then receives every emit of every other process. An emit, its own or one received, addressed
to rooms in which this process holds no socket (at scale, nearly every received one) is
dropped before python-socketio encodes its packet for sockets that are not here.
"""

from __future__ import annotations

from typing import Any

import socketio

from service.pubsub import Publications

# Flask-SocketIO's channel, kept so that a rolling deploy's old and new processes still talk.
CHANNEL = "flask-socketio"


class QueueManager(socketio.RedisManager):
    def __init__(self, url: str, publications: Publications, channel: str = CHANNEL) -> None:
        super().__init__(url, channel=channel)
        self.publications = publications

    def _publish(self, data: Any) -> None:
        self.publications.publish(self.channel, self.json.dumps(data))

    def _handle_emit(self, message: dict[str, Any]) -> None:
        if self.holds_any(message.get("namespace") or "/", message.get("room")):
            super()._handle_emit(message)

    def holds_any(self, namespace: str, room: Any) -> bool:
        """Whether a socket of this process is in `room` (a name, a list of names, or None:
        every socket of the namespace)."""
        return any(True for _ in self.get_participants(namespace, room))
