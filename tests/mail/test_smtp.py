"""Mails handed to a relay (the SMTP stand-in): headers, UTF-8 text, TLS, and failures."""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
from flask import Flask

from service.clock import clock
from service.mail import MAILER, Mail
from service.mail.log import LogBackend
from service.mail.mailer import RETRY_AFTER_SECONDS, Mailer
from service.mail.relay import Relay
from service.mail.smtp import SmtpBackend, passing
from tests.mail.conftest import QUICK_RETRIES, SENDER, counted, deliver_from, sends_done
from tests.support.commands import child_result
from tests.support.smtp_standin import (
    Certificate,
    SmtpStandIn,
    self_signed_certificate,
)
from tests.support.waiting import wait_until

SUBJECT = "Dein Code für Reach: 482 913 ✓"
TEXT = "Hallo Ana,\n\ndein Code lautet 482913. Er gilt 15 Minuten.\n\nLiebe Grüße 💌\n"
# A password with every character a URL must percent-encode, and a user that is an address.
CREDENTIALS = ("mailer@reach.test", "p@ss:w/rd%?#")


def mail(kind: str, to: str = "ana@example.com") -> Mail:
    return Mail(to=to, subject=SUBJECT, text=TEXT, kind=kind)


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return self_signed_certificate(tmp_path)


@pytest.fixture
def standin_with() -> Iterator[Callable[..., SmtpStandIn]]:
    """Start a stand-in with TLS or credentials: `standin_with("starttls", creds, cert)`."""
    started: list[SmtpStandIn] = []

    def start(*args: object, **kwargs: object) -> SmtpStandIn:
        server = SmtpStandIn(*args, **kwargs).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def failures_logged(caplog: pytest.LogCaptureFixture, kind: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == "reach.mail" and r.levelno == logging.WARNING and r.__dict__["kind"] == kind
    ]


def failure_of(app: Flask, kind: str, caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """Deliver a mail of `kind` that fails: its one warning, once it is counted failed."""
    with caplog.at_level(logging.INFO, logger="reach.mail"):
        deliver_from(app, mail(kind))
        wait_until(lambda: counted(kind, "failed") == 1, what="the mail counted failed")
    [line] = failures_logged(caplog, kind)
    return line


def test_a_mail_reaches_the_relay_with_its_headers_and_utf8_text(
    mail_app: Callable[..., Flask], smtp_standin: SmtpStandIn, kind: str
) -> None:
    at = datetime(2031, 5, 4, 9, 30, 15, tzinfo=UTC)
    clock.freeze(at)
    app = mail_app(MAIL_BACKEND="smtp", SMTP_URL=smtp_standin.url, MAIL_FROM=SENDER)
    deliver_from(app, mail(kind))
    [received] = smtp_standin.wait_for(1)
    message = received.message
    assert received.mail_from == "no-reply@reach.test"
    assert received.rcpt_tos == ("ana@example.com",)
    assert (received.login, received.encrypted) == (None, False)  # a relay without credentials
    assert message["From"] == SENDER
    assert message["To"] == "ana@example.com"
    assert message["Subject"] == SUBJECT
    assert message["Date"] == format_datetime(at)
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith("@reach.test>")
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message.get_content() == TEXT
    wait_until(lambda: counted(kind, "sent") == 1, what="the mail counted sent")
    assert counted(kind, "failed") == 0


def test_every_mail_is_a_message_of_its_own(
    mail_app: Callable[..., Flask], smtp_standin: SmtpStandIn, kind: str
) -> None:
    app = mail_app(MAIL_BACKEND="smtp", SMTP_URL=smtp_standin.url, MAIL_FROM=SENDER)
    for to in ("ana@example.com", "ben@example.com", "cleo@example.com"):
        deliver_from(app, mail(kind, to))
    received = smtp_standin.wait_for(3)
    assert sorted(r.rcpt_tos[0] for r in received) == [
        "ana@example.com",
        "ben@example.com",
        "cleo@example.com",
    ]
    assert len({r.message["Message-ID"] for r in received}) == 3
    wait_until(lambda: counted(kind, "sent") == 3, what="three mails counted sent")


def test_a_mail_the_relay_refuses_for_good_is_tried_once_logged_and_counted_failed(
    mail_app: Callable[..., Flask],
    smtp_standin: SmtpStandIn,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer = "554 5.7.1 refused by the stand-in"
    smtp_standin.refuse(answer)
    app = mail_app(MAIL_BACKEND="smtp", SMTP_URL=smtp_standin.url, MAIL_FROM=SENDER)
    line = failure_of(app, kind, caplog)
    assert line.getMessage() == "mail not sent"
    assert line.__dict__["error"] == f"SMTPDataError: {answer}"
    assert line.__dict__["relay"] == f"127.0.0.1:{smtp_standin.port}"
    assert line.__dict__["attempt"] == 1
    sends_done(app)  # no try can come after
    assert smtp_standin.refused == 1 and smtp_standin.received() == []
    assert (counted(kind, "sent"), counted(kind, "retried")) == (0, 0)
    # What the mail says is never logged when it fails: not its code, not its subject.
    assert all("482913" not in str(vars(r)) and SUBJECT not in str(vars(r)) for r in caplog.records)


def test_a_mail_the_relay_turns_away_for_now_goes_through_on_a_later_try(
    mail_app: Callable[..., Flask],
    smtp_standin: SmtpStandIn,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Greylisting, a full queue: a 4xx answer is tried again, the mail arrives once, dated
    when it was written, not when the try that went through was made."""
    smtp_standin.refuse("451 4.7.1 greylisted, try again later", times=2)
    app = mail_app(MAIL_BACKEND="smtp", SMTP_URL=smtp_standin.url, MAIL_FROM=SENDER)
    written = datetime(2031, 5, 4, 9, 30, 15, tzinfo=UTC)
    clock.freeze(written)
    greylisted = mail(kind)
    with caplog.at_level(logging.INFO, logger="reach.mail"):
        deliver_from(app, greylisted)
        clock.freeze(written + timedelta(minutes=10))  # before the third try, 150 ms on
        [received] = smtp_standin.wait_for(1)
        wait_until(lambda: counted(kind, "sent") == 1, what="the mail counted sent")
    assert received.message.get_content() == TEXT
    assert received.message["Date"] == format_datetime(written)
    assert received.message["Message-ID"] == f"<{greylisted.id}@reach.test>"
    assert smtp_standin.refused == 2
    assert (counted(kind, "retried"), counted(kind, "failed")) == (2, 0)
    retries = [r for r in caplog.records if r.getMessage() == "mail not sent yet, trying again"]
    assert [(r.__dict__["attempt"], r.__dict__["retry_in_seconds"]) for r in retries] == [
        (1, QUICK_RETRIES[0]),
        (2, QUICK_RETRIES[1]),
    ]
    assert retries[0].__dict__["error"] == "SMTPDataError: 451 4.7.1 greylisted, try again later"
    assert failures_logged(caplog, kind) == []
    sends_done(app)
    assert len(smtp_standin.received()) == 1  # sent once, never again


def test_a_mail_turned_away_on_every_try_fails_after_mail_attempts(
    mail_app: Callable[..., Flask],
    smtp_standin: SmtpStandIn,
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    smtp_standin.refuse("451 4.3.0 try again later")
    app = mail_app(
        MAIL_BACKEND="smtp", SMTP_URL=smtp_standin.url, MAIL_FROM=SENDER, MAIL_ATTEMPTS=3
    )
    line = failure_of(app, kind, caplog)
    assert (line.__dict__["attempt"], line.__dict__["error"]) == (
        3,
        "SMTPDataError: 451 4.3.0 try again later",
    )
    sends_done(app)
    assert smtp_standin.refused == 3 and smtp_standin.received() == []
    assert (counted(kind, "retried"), counted(kind, "failed")) == (2, 1)


def test_a_relay_that_cannot_be_reached_fails_the_mail_not_the_caller(
    mail_app: Callable[..., Flask], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as unused:  # a port nothing listens on once it is closed
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    app = mail_app(
        MAIL_BACKEND="smtp", SMTP_URL=f"smtp://127.0.0.1:{port}", MAIL_FROM=SENDER, MAIL_ATTEMPTS=2
    )
    line = failure_of(app, kind, caplog)
    assert line.__dict__["error"].startswith("ConnectionRefusedError: ")
    assert (line.__dict__["attempt"], counted(kind, "retried")) == (2, 1)


@pytest.mark.parametrize(
    ("error", "tried_again"),
    [
        (smtplib.SMTPDataError(451, b"4.3.0 queue full"), True),
        (smtplib.SMTPSenderRefused(421, b"4.7.0 closing", "no-reply@reach.test"), True),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (450, b"4.2.0 mailbox busy")}), True),
        (smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), True),
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError("timed out"), True),
        (smtplib.SMTPDataError(554, b"5.7.1 rejected"), False),
        (smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"), False),
        (smtplib.SMTPRecipientsRefused({"a@example.com": (550, b"5.1.1 no such user")}), False),
        (smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."), False),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), False),
    ],
)
def test_only_a_passing_failure_is_tried_again(error: Exception, tried_again: bool) -> None:
    assert passing(error) is tried_again


def test_the_tries_of_a_mail_wait_longer_each_time_and_only_off_the_request(
    mail_app: Callable[..., Flask],
) -> None:
    smtp = Mailer(
        SmtpBackend(Relay("relay.test", 25, "none"), SENDER, 10), print, time.sleep, attempts=5
    )
    busy = smtplib.SMTPDataError(451, b"busy")
    assert [smtp._retry_after(attempt, busy) for attempt in range(1, 6)] == [
        *RETRY_AFTER_SECONDS,
        RETRY_AFTER_SECONDS[-1],
        None,  # the fifth try was the last
    ]
    assert (
        mail_app(MAIL_BACKEND="smtp", SMTP_URL="smtp://relay.test", MAIL_FROM=SENDER)
        .extensions[MAILER]
        .attempts
        == 4
    )  # MAIL_ATTEMPTS' default
    logged = Mailer(
        LogBackend(), print, time.sleep, attempts=5
    )  # it sends in the request: never waits
    assert logged._retry_after(1, busy) is None


def test_deliver_returns_at_once_and_a_silent_relay_times_out(
    mail_app: Callable[..., Flask], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A relay that takes the connection and never greets: deliver does not wait for it, the
    send gives up after MAIL_TIMEOUT_SECONDS."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # connections complete in the backlog; nothing ever answers them
        port = silent.getsockname()[1]
        app = mail_app(
            MAIL_BACKEND="smtp",
            SMTP_URL=f"smtp://127.0.0.1:{port}",
            MAIL_FROM=SENDER,
            MAIL_TIMEOUT_SECONDS=2,
            MAIL_ATTEMPTS=1,
        )
        with caplog.at_level(logging.INFO, logger="reach.mail"):
            began = time.monotonic()
            deliver_from(app, mail(kind))
            returned = time.monotonic() - began
            assert returned < 1.0, f"deliver waited {returned:.2f} s"
            assert counted(kind, "failed") == 0  # still waiting for the greeting
            wait_until(lambda: counted(kind, "failed") == 1, what="the send timed out")
            timed_out = time.monotonic() - began
    assert timed_out >= 2.0
    [line] = failures_logged(caplog, kind)
    assert "timed out" in line.__dict__["error"]


def test_credentials_over_smtp_go_only_after_starttls(
    mail_app: Callable[..., Flask],
    standin_with: Callable[..., SmtpStandIn],
    certificate: Certificate,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    """smtp://user:pass@... : STARTTLS, the relay's certificate checked (trusted here through
    SSL_CERT_FILE, as a private CA would be), then AUTH with the percent-decoded credentials."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    relay = standin_with("starttls", CREDENTIALS, certificate)
    assert relay.url.startswith("smtp://mailer%40reach.test:p%40ss%3Aw%2Frd%25%3F%23@")
    app = mail_app(MAIL_BACKEND="smtp", SMTP_URL=relay.url, MAIL_FROM=SENDER)
    deliver_from(app, mail(kind))
    [received] = relay.wait_for(1)
    assert (received.login, received.encrypted) == ("mailer@reach.test", True)
    assert received.message.get_content() == TEXT
    wait_until(lambda: counted(kind, "sent") == 1, what="the mail counted sent")


def test_smtps_is_tls_from_the_start(
    mail_app: Callable[..., Flask],
    standin_with: Callable[..., SmtpStandIn],
    certificate: Certificate,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    relay = standin_with("tls", CREDENTIALS, certificate)
    assert relay.url.startswith("smtps://")
    app = mail_app(MAIL_BACKEND="smtp", SMTP_URL=relay.url, MAIL_FROM=SENDER)
    deliver_from(app, mail(kind))
    [received] = relay.wait_for(1)
    assert (received.login, received.encrypted) == ("mailer@reach.test", True)
    wait_until(lambda: counted(kind, "sent") == 1, what="the mail counted sent")


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_relay_whose_certificate_is_not_trusted_gets_no_mail(
    mail_app: Callable[..., Flask],
    standin_with: Callable[..., SmtpStandIn],
    certificate: Certificate,
    kind: str,
    caplog: pytest.LogCaptureFixture,
    security: str,
) -> None:
    relay = standin_with(security, CREDENTIALS, certificate)
    app = mail_app(MAIL_BACKEND="smtp", SMTP_URL=relay.url, MAIL_FROM=SENDER)
    line = failure_of(app, kind, caplog)
    assert line.__dict__["error"].startswith("SSLCertVerificationError: ")
    assert relay.received() == []


def test_credentials_are_never_sent_to_a_relay_without_starttls(
    mail_app: Callable[..., Flask],
    standin_with: Callable[..., SmtpStandIn],
    kind: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    relay = standin_with("none", CREDENTIALS)
    app = mail_app(MAIL_BACKEND="smtp", SMTP_URL=relay.url, MAIL_FROM=SENDER)
    line = failure_of(app, kind, caplog)
    assert line.__dict__["error"].startswith("SMTPNotSupportedError: STARTTLS")
    assert relay.received() == []


def test_a_gevent_process_sends_in_greenlets_and_keeps_running_meanwhile(
    smtp_standin: SmtpStandIn,
) -> None:
    """As `reach serve` runs: smtplib on gevent's sockets, in a greenlet of its own, so that a
    relay that never answers holds neither the request nor the hub."""
    result = child_result("tests.support.mail_child", smtp_standin.url)
    assert result["async_mode"] == "gevent"
    assert result["returned"] < 0.5
    assert (result["sent"], result["failed"]) == (1, 1)
    assert result["ticks"] >= 50  # the hub ran while the silent relay's send waited 1 s
    [received] = smtp_standin.wait_for(1)
    assert received.rcpt_tos == ("ana@example.com",)
