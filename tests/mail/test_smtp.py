"""Mails handed to a relay (the SMTP stand-in): headers, UTF-8 text, TLS, and failures."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from flask import Flask

from service.clock import clock
from service.mail import Mail
from tests.mail.conftest import SENDER, counted, deliver_from
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


@pytest.mark.parametrize(
    "answer", ["554 5.7.1 refused by the stand-in", "451 4.3.0 try again later"]
)
def test_a_mail_the_relay_refuses_is_logged_and_counted_failed(
    mail_app: Callable[..., Flask],
    smtp_standin: SmtpStandIn,
    kind: str,
    caplog: pytest.LogCaptureFixture,
    answer: str,
) -> None:
    smtp_standin.refuse(answer)
    app = mail_app(MAIL_BACKEND="smtp", SMTP_URL=smtp_standin.url, MAIL_FROM=SENDER)
    line = failure_of(app, kind, caplog)
    assert line.getMessage() == "mail not sent"
    assert line.__dict__["error"] == f"SMTPDataError: {answer}"
    assert line.__dict__["relay"] == f"127.0.0.1:{smtp_standin.port}"
    assert smtp_standin.refused == 1 and smtp_standin.received() == []
    assert counted(kind, "sent") == 0
    # What the mail says is never logged when it fails: not its code, not its subject.
    assert all("482913" not in str(vars(r)) and SUBJECT not in str(vars(r)) for r in caplog.records)


def test_a_relay_that_cannot_be_reached_fails_the_mail_not_the_caller(
    mail_app: Callable[..., Flask], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as unused:  # a port nothing listens on once it is closed
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    app = mail_app(MAIL_BACKEND="smtp", SMTP_URL=f"smtp://127.0.0.1:{port}", MAIL_FROM=SENDER)
    line = failure_of(app, kind, caplog)
    assert line.__dict__["error"].startswith("ConnectionRefusedError: ")


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
