"""A phone that keeps its copy of the couple's stream as docs/mobile.md §7 tells an app to.

It follows the guide's pseudo-code step by step: socket events and sync pages go to one serial
queue (a thread here), `apply` ignores what it has, applies `last + 1`, and syncs on a gap;
`sync_now` runs one sync at a time, and runs once more when asked again meanwhile. Only bids
are kept (upserted by id); every applied cursor is recorded, so a test can see that each
event was applied once, in order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import socketio

from tests.support.client import ApiClient, Person
from tests.support.waiting import wait_until


class GuidedPhone:
    def __init__(self, api: ApiClient, person: Person, couple_id: str, page: int = 200) -> None:
        self.api, self.person, self.page = api, person, page
        self.couple_id, self.last = couple_id, 0  # "persisted"
        self.applied: list[int] = []
        self.bids: dict[str, dict[str, Any]] = {}
        self.received: list[int] = []  # cursors as the socket brought them
        # Test seam: called in a sync between reading a page and queueing its events.
        self.after_reading: Callable[[dict[str, Any]], None] | None = None
        self._lock = threading.Lock()
        self._syncing = self._sync_again = False
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._applier = threading.Thread(target=self._apply_queued, daemon=True)
        self._applier.start()
        self.socket = socketio.Client(reconnection=False)
        self.socket.on("*", self._on_socket_event)

    # -- the socket -------------------------------------------------------------------------

    def connect(self, url: str) -> GuidedPhone:
        self.socket.connect(url, auth={"token": self.person.access_token}, transports=["websocket"])
        self.sync_now()  # after every successful connect
        return self

    def close(self) -> None:
        if self.socket.connected:
            self.socket.disconnect()
        self._queue.put(None)
        self._applier.join(timeout=5)

    def _on_socket_event(self, name: str, data: Any = None) -> None:
        if isinstance(data, dict) and "cursor" in data:  # couple.*, bid.*, repair.*, checkin.*
            self.received.append(data["cursor"])
            self._queue.put(data)

    # -- sync: one at a time; asked again meanwhile, it runs once more --------------------------

    def sync_now(self) -> None:
        with self._lock:
            if self._syncing:
                self._sync_again = True
                return
            self._syncing = True
        while True:
            with self._lock:
                self._sync_again = False
            since = self.last
            while True:
                params = {"since": since, "couple_id": self.couple_id, "limit": self.page}
                response = self.api.get("/api/v1/sync", as_=self.person, params=params)
                assert response.status_code == 200, response.text
                body = response.json()
                if self.after_reading is not None:
                    self.after_reading(body)
                for event in body["events"]:
                    self._queue.put(event)
                since = body["next"]
                if not body["has_more"]:
                    break
            with self._lock:
                if not self._sync_again:
                    self._syncing = False
                    return

    # -- apply: one serial queue ------------------------------------------------------------

    def _apply_queued(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                self._apply(event)
            finally:
                self._queue.task_done()

    def idle(self) -> bool:
        """Nothing queued or being applied."""
        return self._queue.unfinished_tasks == 0

    def _apply(self, event: dict[str, Any]) -> None:
        assert event["couple_id"] == self.couple_id, event  # one couple in these tests
        if event["cursor"] <= self.last:
            return  # duplicate
        if event["cursor"] > self.last + 1:
            self.sync_now()  # gap: fetch what is missing
            return
        if event["type"].startswith("bid."):
            self.bids[event["data"]["id"]] = event["data"]
        self.applied.append(event["cursor"])
        self.last = event["cursor"]

    def wait_for_cursor(self, cursor: int, timeout: float = 10) -> None:
        wait_until(lambda: self.last >= cursor, timeout, f"the phone to apply cursor {cursor}")
