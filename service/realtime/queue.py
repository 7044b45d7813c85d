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

import logging
import time
from collections.abc import Iterator
from typing import Any

import socketio

from service import metrics
from service.pubsub import Publications

log = logging.getLogger(__name__)

# Flask-SocketIO's channel, kept so that a rolling deploy's old and new processes still talk.
CHANNEL = "flask-socketio"
# Seconds between attempts to subscribe again while Redis is away: doubling from the first,
# never more than the last (python-socketio's own double up to 60 s).
RECEIVE_RETRY_FIRST, RECEIVE_RETRY_MAX = 0.5, 2.0


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

    def _redis_listen_with_retries(self) -> Iterator[Any]:
        """python-socketio's receiving loop (`RedisManager._redis_listen_with_retries`, 5.x),
        waiting at most `RECEIVE_RETRY_MAX` between attempts.

        Its own waits double up to a minute: after an outage of eight seconds a process
        received nothing from the others for eight more, while publishing had long recovered,
        so phones connected to it missed the socket events of writes handled elsewhere (they
        caught up at their next sync). One connection attempt every two seconds per process
        costs Redis nothing. Failures are counted (`reach_pubsub_receive_failures_total`) and
        the recovery is logged, so the runbook can tell when every process receives again.
        """
        retry_sleep, failed = RECEIVE_RETRY_FIRST, False
        while True:
            try:
                self._redis_connect()
                self.pubsub.subscribe(self.channel)
                if failed:
                    log.warning("receiving from redis again", extra={"channel": self.channel})
                retry_sleep, failed = RECEIVE_RETRY_FIRST, False
                yield from self.pubsub.listen()
            except Exception as exc:
                metrics.pubsub_receive_failure()
                self._get_logger().error(
                    f"Cannot receive from redis... retrying in {retry_sleep} secs",
                    extra={"redis_exception": str(exc)},
                )
                failed = True
                time.sleep(retry_sleep)
                retry_sleep = min(retry_sleep * 2, RECEIVE_RETRY_MAX)
