"""A greenlet that counts while the gevent hub runs (the gevent children of the tests)."""

from __future__ import annotations

from types import TracebackType

import gevent


class Ticker:
    """`with Ticker() as ticker:` a greenlet sleeps 10 ms and counts (`ticker.ticks`) until the
    block ends: a wait that held the hub shows as ticks missing."""

    def __init__(self) -> None:
        self.ticks = 0
        self._greenlet: gevent.Greenlet | None = None

    def __enter__(self) -> Ticker:
        self._greenlet = gevent.spawn(self._tick)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._greenlet is not None:
            self._greenlet.kill()

    def _tick(self) -> None:
        while True:
            gevent.sleep(0.01)
            self.ticks += 1
