"""One task per server that acts on each item a fixed delay after it was added."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger("reach.realtime")

T = TypeVar("T")


class Deadlines(Generic[T]):
    """Calls `act(item)` `delay` seconds after `add(item)`.

    The delay is the same for every item, so items fall due in the order they were added and a
    deque is the whole schedule. The task runs only while some item waits: the next `add`
    starts it again. `server` is an engineio or python-socketio server (its background tasks
    and sleep suit its async mode).
    """

    def __init__(self, server: Any, delay: float, act: Callable[[T], None], what: str) -> None:
        self.server, self.delay, self.act, self.what = server, delay, act, what
        self._due: collections.deque[tuple[float, T]] = collections.deque()
        self._running = False
        self._lock = threading.Lock()

    def add(self, item: T) -> None:
        self._due.append((time.monotonic() + self.delay, item))
        with self._lock:
            if self._running:
                return
            self._running = True
        self.server.start_background_task(self._run)

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                _, item = self._due.popleft()
                try:
                    self.act(item)
                except Exception:  # one item must not stop the others
                    log.exception("%s failed", self.what)
            with self._lock:
                if not self._due:
                    self._running = False  # started again by the next add()
                    return
                pause = self._due[0][0] - now
            self.server.sleep(max(pause, 0.01))
