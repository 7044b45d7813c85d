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

The listener never waits on Redis without a deadline. A network path that dies without a word
(a NAT entry dropped, a failover that leaves the old peer unreachable: no FIN, no RST) left
python-socketio's blocking read waiting for ever, and the process's phones missed every event
written elsewhere with nothing in the metrics or logs to show it. After `check_seconds` without
a message the listener pings Redis; an answer that takes as long again ends the connection, and
the process subscribes again on a new one (counted, logged), so a dead link is found within
twice `check_seconds` (`REDIS_RECEIVE_CHECK_SECONDS`) of the last thing Redis sent.

Events lost on the way (a process that could not publish, or could not receive) are in the
couple's stream, but a phone learns of them only at its next event, reconnect or foreground.
So the phones are told to sync (`sync.needed`, `{within_seconds}`: at a moment of their own
within that, so they do not all come at once): every process's, by a process whose events were
dropped once it publishes again; its own, by a process that receives again after failing to.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import redis
import socketio
from redis.backoff import NoBackoff
from redis.retry import Retry

from service import metrics
from service.pubsub import Publications

log = logging.getLogger(__name__)

# Flask-SocketIO's channel, kept so that a rolling deploy's old and new processes still talk.
CHANNEL = "flask-socketio"
# Seconds between attempts to subscribe again while Redis is away: doubling from the first,
# never more than the last (python-socketio's own double up to 60 s).
RECEIVE_RETRY_FIRST, RECEIVE_RETRY_MAX = 0.5, 2.0
# The event telling phones that socket events may have been lost: sync, at a moment of their
# own within SYNC_SPREAD_SECONDS.
SYNC_NEEDED = "sync.needed"
SYNC_SPREAD_SECONDS = 10


class _StopListening(BaseException):
    """Ends python-socketio's listening thread, which goes on through any Exception."""


def listener_options(check_seconds: float) -> dict[str, Any]:
    """Options for the listener's Redis client: connecting and writing give up after
    `check_seconds` (redis-py waits for ever by default, and a connection attempt to a host
    that does not answer would hold the listener for minutes), and redis-py retries nothing:
    it would reconnect and subscribe again silently, where the receiving loop does it counted
    and logged."""
    return {
        "socket_timeout": check_seconds,
        "socket_connect_timeout": check_seconds,
        "retry": Retry(NoBackoff(), 0, supported_errors=()),
    }


class QueueManager(socketio.RedisManager):
    def __init__(
        self,
        url: str,
        publications: Publications,
        channel: str = CHANNEL,
        *,
        check_seconds: float,
    ) -> None:
        super().__init__(url, channel=channel, redis_options=listener_options(check_seconds))
        self.publications = publications
        self.check_seconds = check_seconds
        self._stopping = threading.Event()
        publications.on_dropped(self.channel, self._sync_needed_everywhere)

    def stop_listening(self) -> None:
        """Stop receiving the other processes' messages: the listening thread ends within
        `check_seconds`, without a word (an app a process is done with: a test's server)."""
        self._stopping.set()

    def _thread(self) -> None:
        with contextlib.suppress(_StopListening):
            super()._thread()

    def _sync_needed_everywhere(self) -> str:
        """The message (python-socketio's emit, as `PubSubManager.emit` publishes it) telling
        every process's phones to sync."""
        message = {
            "method": "emit",
            "event": SYNC_NEEDED,
            "data": [{"within_seconds": SYNC_SPREAD_SECONDS}],
            "binary": False,
            "namespace": "/",
            "room": None,
            "skip_sid": None,
            "callback": None,
            "host_id": self.host_id,
        }
        return str(self.json.dumps(message))

    def _sync_needed_here(self) -> None:
        """Tell this process's phones to sync: what the others sent meanwhile never came."""
        data = {"within_seconds": SYNC_SPREAD_SECONDS}
        try:
            self.emit(SYNC_NEEDED, data, namespace="/", ignore_queue=True)
        except Exception:  # the receiving goes on: the phones still catch up at their next event
            log.exception("telling this process's phones to sync failed")

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
        A connection that stopped answering is one of them (`_listen_checked`), and the process
        receives again once Redis answers on the new one, not merely once it took the SUBSCRIBE
        (a hung Redis takes it and answers nothing).
        """
        retry_sleep, failed = RECEIVE_RETRY_FIRST, False
        while not self._stopping.is_set():
            try:
                self._redis_connect()
                self.pubsub.subscribe(self.channel)
                for message in self._listen_checked():
                    if failed:
                        log.warning("receiving from redis again", extra={"channel": self.channel})
                        retry_sleep, failed = RECEIVE_RETRY_FIRST, False
                        self._sync_needed_here()
                    if message["type"] != "pong":
                        yield message
            except Exception as exc:
                self._close_pubsub()
                if self._stopping.is_set():
                    break
                metrics.pubsub_receive_failure()
                self._get_logger().error(
                    f"Cannot receive from redis... retrying in {retry_sleep} secs",
                    extra={"redis_exception": str(exc)},
                )
                failed = True
                if self._stopping.wait(retry_sleep):
                    break
                retry_sleep = min(retry_sleep * 2, RECEIVE_RETRY_MAX)
        self._close_pubsub()
        raise _StopListening  # through python-socketio's loop, which would listen again

    def _listen_checked(self) -> Iterator[dict[str, Any]]:
        """What arrives on the subscription's connection (its messages, as `PubSub.listen`
        yields them, and the PONGs to the listener's PINGs), for as long as Redis answers.

        `PubSub.listen` reads without a timeout (redis-py sets none on that read, whatever
        `socket_timeout` says), and TCP keepalive does not help: it is off in older redis-py,
        takes most of a minute where it is on, and is answered by any proxy or frozen host that
        still holds the connection. So each read waits at most `check_seconds`, and after that
        much quiet the listener sends a PING; anything that arrives shows the connection works.
        No answer `check_seconds` after the PING raises, and the receiving loop subscribes
        again. The first PING goes out at once, so the first answer shows the subscription is
        in place. A quiet channel costs one PING per `check_seconds`, never a reconnect.
        """
        pubsub, check = self.pubsub, self.check_seconds
        pubsub.ping()
        deadline, pinged = time.monotonic() + check, True
        while pubsub.subscribed and not self._stopping.is_set():
            message = pubsub.get_message(timeout=max(deadline - time.monotonic(), 0.0))
            if message is not None:
                deadline, pinged = time.monotonic() + check, False
                yield message
            elif time.monotonic() >= deadline:
                if pinged:
                    raise redis.ConnectionError(
                        f"Redis at {peer(pubsub)} did not answer a PING within {check:g} s"
                    )
                pubsub.ping()
                deadline, pinged = time.monotonic() + check, True

    def _close_pubsub(self) -> None:
        """Close the connection given up on: each attempt opens a new one, and the old one
        would otherwise stay open until collected."""
        if self.pubsub is not None:
            with contextlib.suppress(Exception):  # given up on: nothing to do if it cannot close
                self.pubsub.close()


def peer(pubsub: Any) -> str:
    """host:port of the pub/sub connection's Redis, as redis-py's own errors name it (never the
    URL, which may hold a password)."""
    connection = pubsub.connection
    return f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"
