"""The log backend: each mail, whole, becomes one log line instead of a message to a relay."""

from __future__ import annotations

import logging

from service.mail import Mail

log = logging.getLogger("reach.mail")


class LogBackend:
    """Writes every mail to "reach.mail" at INFO, text included, so that a developer can read
    the code in it. Nothing leaves the process: it is written at once, not in the background."""

    name = "log"
    outcome = "logged"
    in_background = False
    where = "the log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or log

    def send(self, mail: Mail) -> None:
        self._log.info(
            "mail logged, not sent",
            extra={"kind": mail.kind, "to": mail.to, "subject": mail.subject, "text": mail.text},
        )
