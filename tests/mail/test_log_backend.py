"""The log backend (the embedded default): each mail, whole, in the log; a warning in production."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from flask import Flask

from service import create_app
from service.config import Settings
from service.demo import embedded_service
from service.logs import JsonFormatter, TextFormatter
from service.mail import MAILER, Mail
from service.mail.mailer import say_if_only_logged
from tests.mail.conftest import counted, deliver_from
from tests.support.commands import lines_until, reach
from tests.support.waiting import wait_until

CODE_MAIL = Mail(
    to="ana@example.com",
    subject="Dein Code für Reach",
    text="Dein Code lautet 482913.\nGrüße 💌",
    kind="password_reset",
)
PRODUCTION = {
    "DATABASE_URL": "postgresql://reach@127.0.0.1:1/none",
    "SECRET_KEY": "a-production-secret-key-long-enough-0123456789",
    "WORKER_MODE": "separate",
}
WARNED = "MAIL_BACKEND=log: mails, and the codes in them, are written to the log"


def test_the_log_backend_writes_the_whole_mail_to_the_log(
    mail_app: Callable[..., Flask], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = mail_app()  # MAIL_BACKEND's default
    assert app.extensions[MAILER].backend.name == "log"
    sent = Mail(CODE_MAIL.to, CODE_MAIL.subject, CODE_MAIL.text, kind)
    with caplog.at_level(logging.INFO, logger="reach.mail"):
        deliver_from(app, sent)  # written before deliver returns: nothing waits on a network
    [line] = [r for r in caplog.records if r.name == "reach.mail"]
    assert (line.levelno, line.getMessage()) == (logging.INFO, "mail logged, not sent")
    written = json.loads(JsonFormatter().format(line))
    assert {key: written[key] for key in ("kind", "to", "subject", "text")} == {
        "kind": kind,
        "to": "ana@example.com",
        "subject": "Dein Code für Reach",
        "text": "Dein Code lautet 482913.\nGrüße 💌",
    }
    assert (counted(kind, "logged"), counted(kind, "sent"), counted(kind, "failed")) == (1, 0, 0)


def warned(caplog: pytest.LogCaptureFixture, settings: Settings) -> list[str]:
    """What an API process with `settings` says about mail as it starts serving."""
    app = create_app(settings)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="reach.mail"):
        say_if_only_logged(app.extensions[MAILER], settings)
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "reach.mail" and r.levelno == logging.WARNING
    ]


def test_production_that_only_logs_mails_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """On PostgreSQL the log backend is a mistake unless meant: a member asking for a code
    waits for a mail that never comes."""
    [warning] = warned(caplog, Settings(**PRODUCTION))
    assert warning.startswith(WARNED)
    assert "set MAIL_BACKEND=smtp, SMTP_URL and MAIL_FROM" in warning


@pytest.mark.parametrize(
    "settings",
    [
        Settings(DATABASE_URL="sqlite://", WORKER_MODE="separate"),  # the embedded default
        Settings(
            **PRODUCTION,
            MAIL_BACKEND="smtp",
            SMTP_URL="smtp://127.0.0.1:1",
            MAIL_FROM="no-reply@reach.test",
        ),
    ],
    ids=["embedded", "production-smtp"],
)
def test_no_warning_where_mails_go_where_meant(
    caplog: pytest.LogCaptureFixture, settings: Settings
) -> None:
    assert warned(caplog, settings) == []


def test_a_starting_api_process_says_so_and_other_commands_do_not(tmp_path: Path) -> None:
    """Said once by each API process as it starts serving (post_worker_init), where mails
    are sent; not by every `reach` command run with the same settings (a migration Job)."""
    env = {
        **os.environ,
        **PRODUCTION,
        "REACH_INSTANCE_DIR": str(tmp_path),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
    }
    assert "MAIL_BACKEND" not in reach("routes", env=env, stderr=True)
    process = subprocess.Popen(
        [sys.executable, "-m", "service.entry", "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        lines = lines_until(process, WARNED, 30)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    told = [json.loads(line) for line in lines if WARNED in line]
    assert len(told) == 1, lines
    assert (told[0]["level"], told[0]["logger"]) == ("warning", "reach.mail")


def test_text_logs_show_the_mail_too_so_a_developer_can_reset_a_password(tmp_path: Path) -> None:
    """`LOG_FORMAT=text` writes a record's fields after its message (`key=value`, quoted with
    JSON's escapes): the embedded default's mailed code can be read there and used."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update({"REACH_INSTANCE_DIR": str(tmp_path), "LOG_FORMAT": "text", "LOG_LEVEL": "INFO"})
    with (
        (tmp_path / "stderr.log").open("wb") as stderr,
        embedded_service(env, stderr=stderr) as (url, _),
    ):
        base = f"{url}/api/v1"
        account = {"email": "ana@example.com", "password": "correct horse battery"}
        registered = requests.post(
            f"{base}/auth/register",
            json={**account, "display_name": "Ana", "timezone": "UTC"},
            timeout=10,
        )
        assert registered.status_code == 201, registered.text
        asked = requests.post(
            f"{base}/auth/password-reset", json={"email": account["email"]}, timeout=10
        )
        assert asked.status_code == 202, asked.text

        def logged_mail() -> str | None:
            lines = (tmp_path / "stderr.log").read_text().splitlines()
            return next((line for line in lines if "mail logged, not sent" in line), None)

        wait_until(lambda: logged_mail() is not None, what="the mail in the log")
        line = logged_mail()
        assert line is not None
        assert " INFO reach.mail: mail logged, not sent kind=password_reset " in line
        assert ' to=ana@example.com subject="Reset your Reach password" ' in line
        found = re.search(r"\\n\\nYour code: (\w{4}-\w{4})\\n\\n", line)
        assert found, line
        reset = requests.post(
            f"{base}/auth/password-reset/confirm",
            json={**account, "code": found[1], "password": "a brand new secret"},
            timeout=10,
        )
        assert reset.status_code == 200, reset.text


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("password_reset", "password_reset"),
        ("127.0.0.1:25", "127.0.0.1:25"),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("Grüße\n💌", '"Grüße\\n💌"'),
        ("", '""'),
        (3, "3"),
        (0.25, "0.25"),
        (None, "null"),
    ],
)
def test_a_text_log_line_is_one_line_with_each_field_shown_once(value: object, shown: str) -> None:
    record = logging.LogRecord("reach.mail", logging.INFO, __file__, 1, "said", None, None)
    record.__dict__.update({"kind": "k", "field": value})
    line = TextFormatter().format(record)
    assert line.endswith(f" INFO reach.mail: said kind=k field={shown}"), line
    assert "\n" not in line
