"""A phone: a real python-socketio client that records every event it receives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import socketio


class Phone:
    def __init__(self, url: str, token: str | None, *, reconnection: bool = False) -> None:
        self.url = url
        self.token = token
        self.events: list[tuple[str, Any]] = []
        self._changed = threading.Condition()
        self.client = socketio.Client(
            reconnection=reconnection, reconnection_delay=0.2, reconnection_delay_max=1
        )
        self.client.on("*", self._record)
        self.client.on("disconnect", lambda reason=None: self._record("disconnect", reason))
        self.refusal: Any = None
        self.client.on("connect_error", self._refused)

    def _refused(self, data: Any = None) -> None:
        self.refusal = data

    def _record(self, name: str, data: Any = None) -> None:
        with self._changed:
            self.events.append((name, data))
            self._changed.notify_all()

    def connect(self, transports: tuple[str, ...] = ("websocket",), **kwargs: Any) -> Phone:
        auth = {"token": self.token} if self.token is not None else None
        self.client.connect(
            self.url, auth=auth, transports=list(transports), wait_timeout=5, **kwargs
        )
        return self

    def disconnect(self) -> None:
        if self.client.connected:
            self.client.disconnect()

    def wait_for(
        self, name: str, predicate: Callable[[Any], bool] | None = None, timeout: float = 5.0
    ) -> Any:
        """The first event `name` (matching `predicate`), waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event, data in self.events:
                    if event == name and (predicate is None or predicate(data)):
                        return data
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [event for event, _ in self.events]
                    raise AssertionError(f"no {name!r} within {timeout}s; got {seen}")
                self._changed.wait(remaining)

    def named(self, name: str) -> list[Any]:
        with self._changed:
            return [data for event, data in self.events if event == name]

    def call(self, event: str, data: Any, timeout: float = 5.0) -> Any:
        return self.client.call(event, data, timeout=timeout)
