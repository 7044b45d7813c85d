"""The app's mailer: the backend MAIL_BACKEND names, sends off the request, failures counted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from service import metrics
from service.mail import MAILER, Mail
from service.mail.smtp import describe, passing

if TYPE_CHECKING:
    from flask import Flask

    from service.config import Settings

log = logging.getLogger("reach.mail")

# Starts `target(*args)` off the caller's request: Flask-SocketIO's start_background_task (a
# greenlet under gevent, a thread under threading).
StartTask = Callable[..., Any]
# Waits that many seconds without holding others: Flask-SocketIO's sleep (gevent's under gevent).
Sleep = Callable[[float], Any]

# How long a mail the relay failed for a passing reason waits before its next try: the second
# try 5 s after the first, the third 30 s after that, every later one 120 s (MAIL_ATTEMPTS in
# all). A mailed code (a forgotten password, a new email) is good for 30 minutes.
RETRY_AFTER_SECONDS = (5.0, 30.0, 120.0)


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
    network, tries it again while the relay fails it for a passing reason (`passing`: a 4xx
    answer, a connection refused or dropped, a timeout) up to `attempts` tries in all, and
    counts what became of it (`reach_mails_total{kind,outcome}`)."""

    def __init__(
        self,
        backend: MailBackend,
        start_task: StartTask,
        sleep: Sleep,
        attempts: int = 1,
        retry_after: Sequence[float] = RETRY_AFTER_SECONDS,
    ) -> None:
        self.backend = backend
        self.attempts = attempts
        self.retry_after = tuple(retry_after)
        self._start_task = start_task
        self._sleep = sleep

    def deliver(self, mail: Mail) -> None:
        if self.backend.in_background:
            self._start_task(self.send, mail)
        else:
            self.send(mail)

    def send(self, mail: Mail) -> None:
        """Send now, in this greenlet or thread, trying again after a passing failure (only a
        backend that sends in the background: the waits would hold a request); a failure is
        logged and counted, not raised."""
        attempt = 1
        while True:
            try:
                self.backend.send(mail)
            except Exception as error:
                wait = self._retry_after(attempt, error)
                if wait is None:
                    self._failed(mail, error, attempt)
                    return
                self._retrying(mail, error, attempt, wait)
                self._sleep(wait)
                attempt += 1
                continue
            metrics.mail_outcome(mail.kind, self.backend.outcome)
            return

    def _retry_after(self, attempt: int, error: Exception) -> float | None:
        """Seconds to wait before the next try, or None: no try is left or would help."""
        if attempt >= self.attempts or not self.backend.in_background or not passing(error):
            return None
        return self.retry_after[min(attempt, len(self.retry_after)) - 1]

    def _about(self, mail: Mail, error: Exception, attempt: int) -> dict[str, Any]:
        # The text (a code, a link) is never logged here, nor the address.
        return {
            "kind": mail.kind,
            "backend": self.backend.name,
            "relay": self.backend.where,
            "error": describe(error),
            "attempt": attempt,
        }

    def _retrying(self, mail: Mail, error: Exception, attempt: int, wait: float) -> None:
        log.info(
            "mail not sent yet, trying again",
            extra=self._about(mail, error, attempt) | {"retry_in_seconds": wait},
        )
        metrics.mail_outcome(mail.kind, "retried")

    def _failed(self, mail: Mail, error: Exception, attempt: int) -> None:
        log.warning("mail not sent", extra=self._about(mail, error, attempt))
        metrics.mail_outcome(mail.kind, "failed")


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


def init_app(app: Flask, settings: Settings, start_task: StartTask, sleep: Sleep) -> Mailer:
    """Give the app its mailer (app.extensions["reach.mailer"])."""
    mailer = Mailer(build_backend(settings), start_task, sleep, attempts=settings.MAIL_ATTEMPTS)
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
