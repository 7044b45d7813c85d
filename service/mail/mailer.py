"""The app's mailer: the backend MAIL_BACKEND names, sends off the request, failures counted."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from service import metrics
from service.mail import MAILER, Mail
from service.mail.smtp import describe

if TYPE_CHECKING:
    from flask import Flask

    from service.config import Settings

log = logging.getLogger("reach.mail")

# Starts `target(*args)` off the caller's request: Flask-SocketIO's start_background_task (a
# greenlet under gevent, a thread under threading).
StartTask = Callable[..., Any]


class MailBackend(Protocol):
    """Sends one mail or raises. `outcome` is what a send that returned is counted as;
    `in_background` says whether it waits on the network (then it runs off the request)."""

    name: str
    outcome: str
    in_background: bool

    @property
    def where(self) -> str: ...

    def send(self, mail: Mail) -> None: ...


class Mailer:
    """Hands each mail to its backend, in the background when the backend waits on the
    network, and counts what became of it (`reach_mails_total{kind,outcome}`)."""

    def __init__(self, backend: MailBackend, start_task: StartTask) -> None:
        self.backend = backend
        self._start_task = start_task

    def deliver(self, mail: Mail) -> None:
        if self.backend.in_background:
            self._start_task(self.send, mail)
        else:
            self.send(mail)

    def send(self, mail: Mail) -> None:
        """Send now, in this greenlet or thread; a failure is logged and counted, not raised."""
        try:
            self.backend.send(mail)
        except Exception as error:
            # The text (a code, a link) is never logged here, nor the address.
            log.warning(
                "mail not sent",
                extra={
                    "kind": mail.kind,
                    "backend": self.backend.name,
                    "relay": self.backend.where,
                    "error": describe(error),
                },
            )
            metrics.mail_outcome(mail.kind, "failed")
            return
        metrics.mail_outcome(mail.kind, self.backend.outcome)


def build_backend(settings: Settings) -> MailBackend:
    """The backend MAIL_BACKEND names, from settings check_mail_settings accepted."""
    if settings.MAIL_BACKEND == "smtp":
        from service.mail.relay import relay_from_url
        from service.mail.smtp import SmtpBackend

        return SmtpBackend(
            relay_from_url(settings.SMTP_URL),
            settings.MAIL_FROM,
            timeout_seconds=settings.MAIL_TIMEOUT_SECONDS,
        )
    from service.mail.log import LogBackend

    return LogBackend()


def init_app(app: Flask, settings: Settings, start_task: StartTask) -> Mailer:
    """Give the app its mailer (app.extensions["reach.mailer"])."""
    mailer = Mailer(build_backend(settings), start_task)
    app.extensions[MAILER] = mailer
    return mailer


def say_if_only_logged(mailer: Mailer | None, settings: Settings) -> None:
    """An API process on PostgreSQL (production) whose mails are only logged says so once, as
    it starts serving (service/server.py): the codes in them reach no one."""
    if mailer is not None and mailer.backend.name == "log" and not settings.is_sqlite:
        log.warning(
            "MAIL_BACKEND=log: mails, and the codes in them, are written to the log, not sent "
            "to anyone; set MAIL_BACKEND=smtp, SMTP_URL and MAIL_FROM to send them",
            extra={"backend": "log"},
        )
