"""Mail settings: the relay SMTP_URL names, and what is refused at start."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from service import create_app
from service.config import SettingsError, from_environment
from service.mail.relay import Relay, check_mail_settings, relay_from_url, sender_domain
from tests.support.commands import reach_refuses
from tests.support.settings import make_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("url", "relay"),
    [
        ("smtp://user:secret@mail.example.com:587", ("mail.example.com", 587, "starttls")),
        ("smtp://user:secret@mail.example.com", ("mail.example.com", 587, "starttls")),
        ("smtp://user:secret@mail.example.com:2525", ("mail.example.com", 2525, "starttls")),
        ("smtps://user:secret@mail.example.com", ("mail.example.com", 465, "tls")),
        ("smtps://user:secret@mail.example.com:4650", ("mail.example.com", 4650, "tls")),
        ("smtp://127.0.0.1", ("127.0.0.1", 25, "none")),
        ("smtp://relay.internal:2525/", ("relay.internal", 2525, "none")),
        ("smtp://[::1]:25", ("::1", 25, "none")),
        ("SMTPS://user:secret@Mail.Example.com", ("mail.example.com", 465, "tls")),
    ],
)
def test_the_url_says_where_the_relay_is_and_how_to_talk_to_it(
    url: str, relay: tuple[str, int, str]
) -> None:
    read = relay_from_url(url)
    assert (read.host, read.port, read.security) == relay


def test_credentials_are_percent_decoded_and_never_shown() -> None:
    relay = relay_from_url("smtp://mailer%40reach.test:p%40ss%3Aw%2Frd%25%3F%23@h.example")
    assert (relay.username, relay.password) == ("mailer@reach.test", "p@ss:w/rd%?#")
    assert "p@ss" not in repr(relay) and str(relay) == "h.example:587"
    assert str(Relay("::1", 25, "none")) == "[::1]:25"


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("MAIL_BACKEND", "sendmail", "MAIL_BACKEND is one of log, smtp, not 'sendmail'"),
        ("SMTP_URL", "http://mail.example.com", "SMTP_URL starts with smtp:// or smtps://"),
        ("SMTP_URL", "mail.example.com:587", "SMTP_URL starts with smtp:// or smtps://"),
        ("SMTP_URL", "smtp://", "SMTP_URL names no host"),
        ("SMTP_URL", "smtp://user:pw@:587", "SMTP_URL names no host"),
        ("SMTP_URL", "smtp://mail.example.com:submission", "SMTP_URL's port is not a number"),
        ("SMTP_URL", "smtp://mail.example.com:70000", "port is not a number from 1 to 65535"),
        ("SMTP_URL", "smtp://mail.example.com:0", "SMTP_URL's port is not a number"),
        ("SMTP_URL", "smtp://user@mail.example.com", "SMTP_URL gives a user without a password"),
        ("SMTP_URL", "smtp://:pw@mail.example.com", "or a password without a user"),
        ("SMTP_URL", "smtp://u:pass/word@mail.example.com", "password with @ : / ? # % in it"),
        ("SMTP_URL", "smtp://u:pass#word@mail.example.com", "is percent-encoded: %40 %3A"),
        ("SMTP_URL", "smtp://u:gr%C3%BC%C3%9Fe@mail.example.com", "user and password are ASCII"),
        ("SMTP_URL", "smtp://mail.example.com/?tls=1", "SMTP_URL has a path, query or fragment"),
        ("MAIL_FROM", "Reach", "MAIL_FROM is one address"),
        ("MAIL_FROM", "Reach <no-reply>", "MAIL_FROM is one address"),
        ("MAIL_FROM", "a@example.com, b@example.com", "MAIL_FROM is one address"),
        ("MAIL_FROM", "no-reply@", "MAIL_FROM is one address"),
        ("MAIL_TIMEOUT_SECONDS", 0, "MAIL_TIMEOUT_SECONDS is 1 or more (seconds), not 0"),
        ("MAIL_ATTEMPTS", 0, "MAIL_ATTEMPTS is 1 or more (tries; 1: no second try), not 0"),
    ],
)
def test_a_mail_setting_the_service_cannot_send_with_is_refused_at_start(
    setting: str, value: object, says: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(says)):
        create_app(make_settings("sqlite://", **{setting: value}))


@pytest.mark.parametrize(
    ("missing", "says"),
    [
        ("SMTP_URL", "MAIL_BACKEND=smtp needs SMTP_URL, the relay mails are handed to"),
        ("MAIL_FROM", "MAIL_BACKEND=smtp needs MAIL_FROM, the sender of every mail"),
    ],
)
def test_smtp_without_its_relay_or_sender_is_refused_at_start(missing: str, says: str) -> None:
    given = {"SMTP_URL": "smtp://127.0.0.1:25", "MAIL_FROM": "no-reply@reach.test"}
    given[missing] = ""
    with pytest.raises(SettingsError, match=re.escape(says)):
        create_app(make_settings("sqlite://", MAIL_BACKEND="smtp", **given))


def test_a_refused_url_never_shows_its_password() -> None:
    with pytest.raises(SettingsError) as refused:
        create_app(make_settings("sqlite://", SMTP_URL="smtp://u:hunter2-pw@h.example/x"))
    assert "hunter2-pw" not in str(refused.value)


def test_mail_settings_come_from_the_environment() -> None:
    settings = from_environment(
        {
            "MAIL_BACKEND": "smtp",
            "SMTP_URL": "smtps://u:pw@mail.example.com",
            "MAIL_FROM": "Reach <no-reply@example.com>",
            "MAIL_TIMEOUT_SECONDS": "30",
            "MAIL_ATTEMPTS": "6",
        }
    )
    assert (settings.MAIL_TIMEOUT_SECONDS, settings.MAIL_ATTEMPTS) == (30, 6)
    assert sender_domain(settings.MAIL_FROM) == "example.com"
    create_app(settings.with_overrides(DATABASE_URL="sqlite://", WORKER_MODE="separate"))


def test_smtp_without_a_relay_stops_every_command(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'mail.sqlite3'}",
        "REACH_INSTANCE_DIR": str(tmp_path),
        "WORKER_MODE": "separate",
        "MAIL_BACKEND": "smtp",
        "MAIL_FROM": "no-reply@reach.test",
    }
    said = reach_refuses("db", "current", env=env)
    assert "Error: MAIL_BACKEND=smtp needs SMTP_URL" in said, said


def test_the_kubernetes_examples_send_mail_with_the_relay_in_the_secret() -> None:
    """The ConfigMap says smtp and who sends; the relay, with its password, is in the Secret:
    the pods, which read both, start with them."""
    documents = [
        document
        for name in ("configmap.yaml", "secret.example.yaml")
        for document in yaml.safe_load_all((ROOT / "deploy/k8s" / name).read_text())
        if document
    ]
    config = next(d["data"] for d in documents if d["kind"] == "ConfigMap")
    secret = next(d["stringData"] for d in documents if d["metadata"]["name"] == "reach-secrets")
    assert "SMTP_URL" not in config and config["MAIL_BACKEND"] == "smtp"
    settings = from_environment({**config, **secret})
    check_mail_settings(settings)
    assert relay_from_url(settings.SMTP_URL).security == "starttls"
