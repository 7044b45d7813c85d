"""Waking separate workers the moment pushes are queued, over Redis.

An inline worker is woken in-process after the commit. A separate `reach worker` would only
find new pushes on its next idle pass (every `--idle` seconds): instead, an API process that
commits queued pushes publishes on CHANNEL, and every worker subscribed to it starts a pass at
once. The message only wakes; the outbox in the database stays the truth, and the idle pass
remains the fallback when Redis is away.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from flask import current_app, has_app_context

log = logging.getLogger("reach.worker")

CHANNEL = "reach:push-queued"
EXTENSION = "reach.push_wake"
RETRY_SECONDS = 2.0


class Publisher:
    """The API side: one PUBLISH per transaction that queued pushes. After a failure it rests
    for RETRY_SECONDS: a request must not wait out Redis's timeout on every commit while Redis
    is away (the workers' idle passes find the pushes meanwhile)."""

    def __init__(self, redis: Any) -> None:
        self.redis = redis
        self._resting_until = 0.0
        self._warned_at = 0.0

    def __call__(self) -> None:
        if time.monotonic() < self._resting_until:
            return
        try:
            self.redis.publish(CHANNEL, b"")
        except Exception as exc:
            now = time.monotonic()
            self._resting_until = now + RETRY_SECONDS
            if now - self._warned_at > 60:  # once a minute while Redis is away
                self._warned_at = now
                log.warning(
                    "could not wake the workers; they find the pushes on their next pass",
                    extra={"error": str(exc)},
                )


def publish_queued() -> None:
    """After a commit that queued pushes: wake the separate workers, if this app has them."""
    if not has_app_context():
        return
    publisher: Publisher | None = current_app.extensions.get(EXTENSION)
    if publisher is not None:
        publisher()


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
                pubsub.subscribe(CHANNEL)
                log.info("listening for queued pushes", extra={"channel": CHANNEL})
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
