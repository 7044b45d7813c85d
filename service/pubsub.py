"""Messages to the other processes over Redis pub/sub, published off the request path.

A process tells the others two things: Socket.IO events for the phones whose sockets they hold
(the message queue, service/realtime/queue.py) and "pushes were queued" for the push workers
(service/worker/wakeups.py). Requests and jobs hand their messages to the process's
`Publications` and go on; one background task publishes whatever has gathered, in one pipelined
round trip. So a request never waits on Redis for them, and a Redis that is slow, hung or gone
costs no request its time: while it does not answer, messages are dropped (counted in
`reach_pubsub_messages_total{outcome="dropped"}` and logged once a minute), as Redis drops a
message that nobody listens to anyway. What they announce is already committed: workers find the
pushes on their idle pass, and phones catch up through GET /sync, told to by the message a
channel's `on_dropped` names, published once Redis takes messages again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from service import metrics

log = logging.getLogger("reach.pubsub")

# Messages kept while Redis does not keep up; past this the oldest are dropped.
BACKLOG = 10_000
# After a failed publish, messages are dropped at once for this long (no wait per message).
RETRY_SECONDS = 2.0
WARN_EVERY_SECONDS = 60.0
# The connections one Redis client of the service holds at most. A burst of requests reaches
# gunicorn's gevent worker all at once, each limited one wanting a connection of the rate-limit
# store's client: redis-py's own pool refused the 101st ("Too many connections"), which
# flask-limiter took for Redis gone away, counting in the process's memory with Redis healthy.
# A round trip holds one well under a millisecond, but a holder waits its turn on the process's
# CPU before it takes Redis's answer and gives the connection back: behind a burst of a thousand
# requests, about a second. Past these, a request waits for one, up to POOL_WAIT_SECONDS.
POOL_SIZE = 50
POOL_WAIT_SECONDS = 5.0


def client_options(timeout_seconds: float) -> dict[str, Any]:
    """Options for every Redis client of the service: give up on a Redis that does not answer
    within `timeout_seconds`, and retry a broken connection once, at once (redis-py's default
    retries ten times with backoff, holding a request for seconds while Redis is away)."""
    return {
        "socket_timeout": timeout_seconds,
        "socket_connect_timeout": timeout_seconds,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    }


def connection_pool(url: str, timeout_seconds: float) -> redis.BlockingConnectionPool:
    """The connections of one Redis client of the service (`redis.Redis(connection_pool=...)`):
    at most POOL_SIZE, made with `client_options`; a caller waits for a free one at most
    POOL_WAIT_SECONDS, then fails as if Redis did not answer."""
    return redis.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=POOL_WAIT_SECONDS,
        **client_options(timeout_seconds),
    )


def database_channel(channel: str, client: Any) -> str:
    """`channel` as this deployment names it on its Redis server (`client`'s).

    Redis hands a published message to every subscriber on the server, whichever database each
    selected: two deployments on one server, each on a database of its own (staging beside
    production, a test run beside a topology), would hear each other's socket events,
    operators' figures and worker wake-ups. Database 0 keeps the bare names (Flask-SocketIO's
    own among them); another database's channels end in `:db<N>`."""
    number = int(client.connection_pool.connection_kwargs.get("db") or 0)
    return channel if number == 0 else f"{channel}:db{number}"


class Publications:
    """This process's messages to the other processes, published by one background task.

    `publish` queues a message; messages go out in the order they were queued. `notify` queues
    an empty message on a channel unless one is already waiting to go out: a wake-up queued
    after a commit and still waiting is published after that commit, so it covers the next.
    """

    def __init__(self, client: Any, *, backlog: int = BACKLOG) -> None:
        self.client = client
        self.backlog = backlog
        self._ready = threading.Condition()
        self._messages: deque[tuple[str, bytes | str]] = deque()
        self._notices: dict[str, None] = {}
        self._sending = False
        self._task_pid = 0
        self._resting_until = 0.0
        self._warned_at = -WARN_EVERY_SECONDS
        # Per channel, the message telling its listeners that some of its messages were dropped;
        # the channels whose message is owed (dropped since), until Redis takes it.
        self._recoveries: dict[str, Callable[[], bytes | str]] = {}
        self._owed: set[str] = set()
        self._owed_tries = 0  # sends that tried owed messages, published or not

    def on_dropped(self, channel: str, recovery: Callable[[], bytes | str]) -> None:
        """Once messages of `channel` have been dropped, publish `recovery()` on it as soon as
        Redis takes messages again: tried every RETRY_SECONDS, whether or not anything else is
        published meanwhile, until it goes out."""
        with self._ready:
            self._recoveries[channel] = recovery

    def publish(self, channel: str, message: bytes | str) -> None:
        with self._ready:
            if len(self._messages) >= self.backlog:
                dropped, _ = self._messages.popleft()
                metrics.pubsub_messages(dropped, "dropped")
            self._messages.append((channel, message))
            self._wake()

    def notify(self, channel: str) -> None:
        with self._ready:
            if channel not in self._notices:
                self._notices[channel] = None
                self._wake()

    def waiting(self) -> int:
        """Messages and wake-ups queued and not yet handed to Redis."""
        with self._ready:
            return len(self._messages) + len(self._notices)

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued so far has been published or dropped, and each
        recovery message owed has been tried once more, at once rather than after the rest
        between tries (a process stopping soon after Redis came back would otherwise leave it
        unsent, and the other processes' phones untold); False if that took longer than
        `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._ready:
            tries = self._owed_tries
            if self._owed:
                self._resting_until = 0.0
                self._wake()
            while (
                self._messages
                or self._notices
                or self._sending
                or (self._owed and self._owed_tries == tries)
            ):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ready.wait(left)
        return True

    def _wake(self) -> None:
        # Under the caller's lock. The task starts with the first message (and again in a
        # forked child, which has no threads of its parent's); it lives as long as the process.
        if self._task_pid != os.getpid():
            self._task_pid = os.getpid()
            threading.Thread(target=self._run, name="reach-pubsub", daemon=True).start()
        self._ready.notify_all()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not (self._messages or self._notices or self._owed_due()):
                    self._ready.wait(self._owed_wait())
                messages, self._messages = self._messages, deque()
                notices, self._notices = list(self._notices), {}
                owed = sorted(self._owed) if self._owed_due() else []
                self._sending = True
            try:
                self._send(messages, notices, owed)
            except Exception:  # the task must outlive any one batch
                log.exception("publishing to the other processes failed")
            finally:
                with self._ready:
                    self._sending = False
                    self._ready.notify_all()

    def _owed_due(self) -> bool:
        """Under the lock: whether a recovery message is owed and may be tried now."""
        return bool(self._owed) and time.monotonic() >= self._resting_until

    def _owed_wait(self) -> float | None:
        """Under the lock: how long the task may sleep before an owed message is due."""
        return max(self._resting_until - time.monotonic(), 0.0) if self._owed else None

    def _send(
        self, messages: deque[tuple[str, bytes | str]], notices: list[str], owed: list[str]
    ) -> None:
        channels = Counter(channel for channel, _ in messages)
        channels.update(notices)
        if time.monotonic() < self._resting_until:
            self._dropped(channels)
            return
        pipeline = self.client.pipeline(transaction=False)
        for channel, message in messages:
            pipeline.publish(channel, message)
        for channel in notices:
            pipeline.publish(channel, b"")
        for channel in owed:
            pipeline.publish(channel, self._recoveries[channel]())
        try:
            pipeline.execute()
        except Exception as exc:
            now = time.monotonic()
            self._resting_until = now + RETRY_SECONDS
            self._dropped(channels)
            self._tried(owed)
            if now - self._warned_at >= WARN_EVERY_SECONDS:
                self._warned_at = now
                log.warning(
                    "Redis did not take messages for the other processes; dropping them for "
                    f"{RETRY_SECONDS:g} s at a time until it answers (phones catch up by sync, "
                    "workers on their idle pass): check REDIS_URL and Redis's health",
                    extra={
                        "error": f"{type(exc).__name__}: {exc}",
                        "dropped": channels.total(),
                        "owed": owed,
                    },
                )
        else:
            self._count(channels, "sent")
            if owed:
                with self._ready:
                    self._owed.difference_update(owed)
                self._tried(owed)
                log.warning(
                    "Redis takes messages for the other processes again; told the listeners of "
                    "what was dropped to catch up",
                    extra={"channels": owed},
                )

    def _tried(self, owed: list[str]) -> None:
        if owed:
            with self._ready:
                self._owed_tries += 1

    def _dropped(self, channels: Counter[str]) -> None:
        self._count(channels, "dropped")
        with self._ready:
            self._owed.update(channel for channel in channels if channel in self._recoveries)

    @staticmethod
    def _count(channels: Counter[str], outcome: str) -> None:
        for channel, n in channels.items():
            metrics.pubsub_messages(channel, outcome, n)
