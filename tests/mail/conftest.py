"""Fixtures for mail tests: apps with mail settings, and what the mail counter says."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from service import create_app
from service.mail import Mail, deliver
from tests.support.settings import make_settings

SENDER = "Reach <no-reply@reach.test>"


@pytest.fixture
def mail_app(database_url: str) -> Callable[..., Flask]:
    """Make an app with other settings: `mail_app(MAIL_BACKEND="smtp", SMTP_URL=...)`."""

    def make(**overrides: object) -> Flask:
        return create_app(make_settings(database_url, **overrides))

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
