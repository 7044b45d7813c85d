"""Waking separate workers the moment pushes are queued, over Redis.

An inline worker is woken in-process after the commit. A separate `reach worker` would only
find new pushes on its next idle pass (every `--idle` seconds): instead, an API process that
commits queued pushes publishes on CHANNEL (as its Redis database names it, `database_channel`),
and every worker subscribed to it starts a pass at once. The message only wakes; the outbox in
the database stays the truth, and the idle pass remains the fallback when Redis is away.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from flask import current_app, has_app_context

from service.pubsub import Publications, database_channel

log = logging.getLogger("reach.worker")

CHANNEL = "reach:push-queued"
RETRY_SECONDS = 2.0


def publish_queued() -> None:
    """After a commit that queued pushes: wake the separate workers, if this app has Redis.

    One wake-up covers every commit before it goes out (`Publications.notify`), and it goes
    out off the request path: a request never waits on Redis for it."""
    if not has_app_context():
        return
    publications: Publications | None = current_app.extensions.get("reach.publications")
    if publications is not None:
        publications.notify(database_channel(CHANNEL, publications.client))


class Listener:
    """The worker side: a thread that calls `wake` for every message on CHANNEL."""

    def __init__(self, redis: Any, wake: Callable[[], None]) -> None:
        self.redis, self.wake = redis, wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="push-wake", daemon=True)

    def start(self) -> Listener:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                channel = database_channel(CHANNEL, self.redis)
                pubsub.subscribe(channel)
                log.info("listening for queued pushes", extra={"channel": channel})
                failing = False
                self.wake()  # whatever was queued while nobody listened
                while not self._stop.is_set():
                    if pubsub.get_message(timeout=1.0) is not None:
                        self.wake()
            except Exception as exc:
                if not failing:  # once per outage, not every retry
                    log.warning(
                        "push wake-ups from Redis stopped; retrying (idle passes go on)",
                        extra={"error": str(exc)},
                    )
                failing = True
                self._stop.wait(RETRY_SECONDS)
            finally:
                with contextlib.suppress(Exception):  # closing a broken connection
                    pubsub.close()
