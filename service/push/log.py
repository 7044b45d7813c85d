"""The log backend: each push becomes one readable log line instead of a network call."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence

from service.push import PushMessage, PushResult
from service.push.timing import deadline_passed

log = logging.getLogger("reach.push")


class LogBackend:
    """Logs pushes to "reach.push" and reports them sent. The title (it names the sender), the
    body (it may carry a note) and the token (a secret) are never logged."""

    name = "log"
    longest_send = 0.0

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    def send_batch(
        self, messages: Sequence[PushMessage], deadline: float | None = None
    ) -> list[PushResult]:
        results = []
        for push in messages:
            if deadline_passed(deadline):
                results.append(PushResult(push.key, "unsent"))
                continue
            message_id = f"log-{uuid.uuid4().hex}"
            kind = "data-only" if push.title is None and push.body is None else "visible"
            self._log.info(
                "push %s %s to %s device %s collapse=%s data=%s",
                push.priority,
                kind,
                push.platform,
                push.device_id,
                push.collapse_key,
                push.data,
                extra={
                    "platform": push.platform,
                    "notification": kind,
                    "device_id": str(push.device_id),
                    "collapse_key": push.collapse_key,
                    "data": dict(push.data),
                    "push_key": push.key,
                    "message_id": message_id,
                },
            )
            results.append(PushResult(push.key, "sent", message_id=message_id))
        return results

    def close(self) -> None:
        """Nothing to release."""
