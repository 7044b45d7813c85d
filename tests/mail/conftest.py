"""Fixtures for mail tests: apps with mail settings, and what the mail counter says."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from service import create_app
from service.mail import MAILER, Mail, deliver
from tests.support.settings import make_settings

SENDER = "Reach <no-reply@reach.test>"


# Where a `mail_app` keeps the sends (threads) its mailer started.
SENDS = "tests.mail_sends"
# The waits between a mail's tries in these apps, instead of seconds (RETRY_AFTER_SECONDS).
QUICK_RETRIES = (0.05, 0.1)


@pytest.fixture
def mail_app(database_url: str) -> Callable[..., Flask]:
    """Make an app with other settings: `mail_app(MAIL_BACKEND="smtp", SMTP_URL=...)`; its
    mailer waits QUICK_RETRIES between the tries of a mail (MAIL_ATTEMPTS in all)."""

    def make(**overrides: object) -> Flask:
        app = create_app(make_settings(database_url, **overrides))
        mailer = app.extensions[MAILER]
        mailer.retry_after = QUICK_RETRIES
        started: list[Any] = []
        start_task = mailer._start_task

        def recorded(*args: Any) -> Any:
            task = start_task(*args)
            started.append(task)
            return task

        mailer._start_task = recorded
        app.extensions[SENDS] = started
        return app

    return make


@pytest.fixture
def kind() -> str:
    """A kind of mail of this test alone, so that its counts are its own."""
    return f"test_{uuid.uuid4().hex[:12]}"


def sends_done(app: Flask, timeout: float = 10.0) -> None:
    """Wait until every send `app`'s mailer started has ended, its tries included: no try of
    its mails can come after this."""
    for task in app.extensions[SENDS]:
        task.join(timeout)
        assert not task.is_alive(), f"a send still trying after {timeout} s"


def deliver_from(app: Flask, mail: Mail) -> None:
    with app.app_context():
        deliver(mail)


def counted(kind: str, outcome: str) -> float:
    """`reach_mails_total{kind, outcome}` in this process."""
    labels = {"kind": kind, "outcome": outcome}
    return REGISTRY.get_sample_value("reach_mails_total", labels) or 0.0
