"""Outgoing mail: what a mail is, and `deliver`, which hands one to the app's mailer."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from flask import current_app

from service.clock import clock

if TYPE_CHECKING:
    from service.mail.mailer import Mailer

# Where create_app keeps the app's mailer (service/mail/mailer.py).
MAILER = "reach.mailer"


@dataclass(frozen=True)
class Mail:
    """One plain-text mail to one address. `kind` says what it is, for logs and metrics
    (e.g. "password_reset"); the text is UTF-8. `written_at` (its Date) and `id` (its
    Message-ID's left part) stay the same on every try: a mail that arrives late after a retry
    sorts as written, and a relay that took a try whose answer was lost sees the same mail."""

    to: str
    subject: str
    text: str
    kind: str
    written_at: datetime = field(default_factory=clock.now)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)


def deliver(mail: Mail) -> None:
    """Inside a request or app context, after the data it speaks of committed: hand the mail
    to the app's mailer. Returns at once; sending happens in the background (a greenlet under
    gevent, a thread under SOCKETIO_ASYNC_MODE=threading). Never raises for a delivery failure:
    it is logged (WARNING, with kind and the error, never the text) and counted."""
    mailer: Mailer = current_app.extensions[MAILER]
    mailer.deliver(mail)
