"""Outgoing mail: what a mail is, and `deliver`, which hands one to the app's mailer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import current_app

if TYPE_CHECKING:
    from service.mail.mailer import Mailer

# Where create_app keeps the app's mailer (service/mail/mailer.py).
MAILER = "reach.mailer"


@dataclass(frozen=True)
class Mail:
    """One plain-text mail to one address. `kind` says what it is, for logs and metrics
    (e.g. "password_reset"); the text is UTF-8."""

    to: str
    subject: str
    text: str
    kind: str


def deliver(mail: Mail) -> None:
    """Inside a request or app context, after the data it speaks of committed: hand the mail
    to the app's mailer. Returns at once; sending happens in the background (a greenlet under
    gevent, a thread under SOCKETIO_ASYNC_MODE=threading). Never raises for a delivery failure:
    it is logged (WARNING, with kind and the error, never the text) and counted."""
    mailer: Mailer = current_app.extensions[MAILER]
    mailer.deliver(mail)
