"""Fixtures for mail tests: apps with mail settings, and what the mail counter says."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from service import create_app
from service.mail import MAILER, Mail, deliver
from tests.support.settings import make_settings

SENDER = "Reach <no-reply@reach.test>"


# The waits between a mail's tries in these apps, instead of seconds (RETRY_AFTER_SECONDS).
QUICK_RETRIES = (0.05, 0.1)


@pytest.fixture
def mail_app(database_url: str) -> Callable[..., Flask]:
    """Make an app with other settings: `mail_app(MAIL_BACKEND="smtp", SMTP_URL=...)`; its
    mailer waits QUICK_RETRIES between the tries of a mail (MAIL_ATTEMPTS in all)."""

    def make(**overrides: object) -> Flask:
        app = create_app(make_settings(database_url, **overrides))
        app.extensions[MAILER].retry_after = QUICK_RETRIES
        return app

    return make


@pytest.fixture
def kind() -> str:
    """A kind of mail of this test alone, so that its counts are its own."""
    return f"test_{uuid.uuid4().hex[:12]}"


def deliver_from(app: Flask, mail: Mail) -> None:
    with app.app_context():
        deliver(mail)


def counted(kind: str, outcome: str) -> float:
    """`reach_mails_total{kind, outcome}` in this process."""
    labels = {"kind": kind, "outcome": outcome}
    return REGISTRY.get_sample_value("reach_mails_total", labels) or 0.0
