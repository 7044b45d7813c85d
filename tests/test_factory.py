"""The app factory and configuration."""

from __future__ import annotations

import os
import re
from dataclasses import fields
from pathlib import Path

import pytest

from service import create_app
from service.config import (
    Settings,
    SettingsError,
    check_push_lease,
    from_environment,
    redis_address,
)
from tests.support.commands import reach_refuses


def test_settings_come_from_the_environment() -> None:
    settings = from_environment(
        {
            "DATABASE_URL": "postgres://u@db:5432/reach",
            "ALLOWED_ORIGINS": "https://a.example, https://b.example",
            "RATELIMIT_ENABLED": "false",
            "ACCESS_TOKEN_SECONDS": "60",
        }
    )
    assert settings.database_url == "postgresql+psycopg://u@db:5432/reach"
    assert settings.ALLOWED_ORIGINS == ("https://a.example", "https://b.example")
    assert settings.RATELIMIT_ENABLED is False
    assert settings.ACCESS_TOKEN_SECONDS == 60
    assert not settings.is_sqlite
    assert not settings.worker_inline


def test_embedded_default_is_sqlite_with_the_worker_inline() -> None:
    settings = from_environment({})
    assert settings.is_sqlite
    assert settings.database_url.endswith("instance/reach.sqlite3")
    assert settings.worker_inline
    assert settings.PUSH_BACKEND == "log"


def test_production_refuses_to_start_without_a_secret_key() -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY must be set"):
        create_app(Settings(DATABASE_URL="postgresql://u@127.0.0.1:1/none"))


@pytest.mark.parametrize("value", ["1", "true"])
def test_the_environment_cannot_turn_off_what_production_refuses(value: str) -> None:
    """TESTING is for the test suite's own settings: set in a server's environment (a CI
    variable, a copied .env) it would serve PostgreSQL with no SECRET_KEY, signing tokens with
    a key generated on the spot, and send the /ops cookie over plain HTTP."""
    settings = from_environment(
        {"DATABASE_URL": "postgresql://u@127.0.0.1:1/none", "TESTING": value}
    )
    assert settings.TESTING is False
    with pytest.raises(SettingsError, match="SECRET_KEY must be set"):
        create_app(settings)


@pytest.mark.parametrize("secret", ["change-me", "short-but-not-empty"])
def test_production_refuses_the_examples_placeholder_or_a_short_secret_key(secret: str) -> None:
    with pytest.raises(SettingsError, match="placeholder or shorter than 32"):
        create_app(Settings(DATABASE_URL="postgresql://u@127.0.0.1:1/none", SECRET_KEY=secret))


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("DATABASE_CONNECT_TIMEOUT", 1, "at least 2"),
        ("DATABASE_STATEMENT_TIMEOUT_MS", 50, "at least 100"),
        ("DATABASE_POOL_TIMEOUT", 0, "at least 1"),
    ],
)
def test_waits_on_postgresql_too_short_to_serve_are_refused(
    setting: str, value: int, says: str
) -> None:
    with pytest.raises(SettingsError, match=f"{setting} is {says}"):
        create_app(Settings(DATABASE_URL="sqlite://", **{setting: value}))


@pytest.mark.parametrize(
    ("lease", "timeout", "least"),
    [("44", "10", 45), ("8", "1", 9), ("119", "29", 121)],
)
def test_a_push_lease_too_short_for_a_send_is_refused_at_start(
    lease: str, timeout: str, least: int
) -> None:
    """A send may take three timeouts; a pass keeps 5 s to record and wants one timeout to
    start sends in: 4 x PUSH_TIMEOUT_SECONDS + 5 at least."""
    settings = from_environment({"PUSH_LEASE_SECONDS": lease, "PUSH_TIMEOUT_SECONDS": timeout})
    refused = rf"PUSH_LEASE_SECONDS={lease} is too short for PUSH_TIMEOUT_SECONDS={timeout}: "
    with pytest.raises(SettingsError, match=refused) as raised:
        create_app(settings)
    assert f"Set PUSH_LEASE_SECONDS to {least} or more" in str(raised.value)
    check_push_lease(least, int(timeout))  # one second more is enough


def test_a_push_timeout_of_zero_is_refused() -> None:
    with pytest.raises(SettingsError, match="PUSH_TIMEOUT_SECONDS must be 1 or more, not 0"):
        create_app(Settings(PUSH_TIMEOUT_SECONDS=0))


def test_unknown_override_is_an_error() -> None:
    with pytest.raises(KeyError):
        Settings().with_overrides(NOT_A_SETTING=1)


def test_factory_builds_an_app_with_the_contract_routes(app) -> None:  # type: ignore[no-untyped-def]
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    for path in (
        "/api/v1/auth/register",
        "/api/v1/auth/login",
        "/api/v1/auth/refresh",
        "/api/v1/auth/logout",
        "/api/v1/me",
        "/api/v1/couple",
        "/api/v1/couple/invites",
        "/api/v1/couple/join",
        "/api/v1/devices",
        "/api/v1/sync",
        "/api/v1/openapi.json",
        "/healthz",
        "/readyz",
    ):
        assert path in rules


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("WORKER_MODE", "Inline", "WORKER_MODE is one of inline, separate, not 'Inline'"),
        ("SOCKET_TRANSPORT", "fast", "SOCKET_TRANSPORT is one of lean, stock, not 'fast'"),
        ("SOCKETIO_ASYNC_MODE", "eventlet", "SOCKETIO_ASYNC_MODE is one of gevent, threading"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL is one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("GUNICORN_LOG_LEVEL", "warn", "GUNICORN_LOG_LEVEL is one of debug, info, warning"),
        ("DATABASE_URL", "postgresql://u@host:port/db", "DATABASE_URL is not a database URL"),
        ("REDIS_URL", "127.0.0.1:6379", "REDIS_URL starts with redis://, rediss://, unix://"),
    ],
)
def test_a_setting_that_names_none_of_its_choices_is_refused(
    setting: str, value: str, says: str
) -> None:
    with pytest.raises(SettingsError, match=says):
        create_app(Settings(**{setting: value}))


def test_a_setting_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(SettingsError, match="PUSH_BATCH must be a whole number, not 'many'"):
        from_environment({"PUSH_BATCH": "many"})


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("RATELIMIT_AUTH", "ten per minute"),
        ("RATELIMIT_AUTH_EMAIL", "10 per minute;50 an hour"),
        ("RATELIMIT_BIDS", ""),
    ],
)
def test_a_rate_limit_that_is_not_one_is_refused_at_start(setting: str, value: str) -> None:
    """flask-limiter reads a route's limit at each request: one it cannot parse was logged
    and skipped, so sign-ins went unlimited (guessing passwords), and a socket write under it
    failed. The service refuses to start instead, saying what a limit looks like."""
    says = rf"{setting} is a limit such as '10 per minute' or '10 per minute;50 per hour', not "
    with pytest.raises(SettingsError, match=says):
        create_app(Settings(**{setting: value}))


@pytest.mark.parametrize("value", ["flase", "enabled", ""])
def test_a_switch_that_is_neither_on_nor_off_is_refused(value: str) -> None:
    """RATELIMIT_ENABLED=flase (or any word but true's) read as false: a typo turned every
    rate limit off, REST and socket."""
    with pytest.raises(SettingsError, match=f"RATELIMIT_ENABLED is true or false, not '{value}'"):
        from_environment({"RATELIMIT_ENABLED": value})


@pytest.mark.parametrize(("value", "read"), [("0", False), ("Off", False), (" TRUE ", True)])
def test_a_switch_is_read_in_its_usual_spellings(value: str, read: bool) -> None:
    assert from_environment({"METRICS": value}).METRICS is read


@pytest.mark.parametrize("batch", [0, -1])
def test_a_push_batch_that_claims_nothing_is_refused(batch: int) -> None:
    """A worker with PUSH_BATCH=0 claimed no push, took its empty claim for a whole batch
    (more due at once) and passed again without a pause: it spun on a core and sent nothing."""
    with pytest.raises(SettingsError, match=f"PUSH_BATCH must be 1 or more, not {batch}"):
        create_app(Settings(PUSH_BATCH=batch))


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("redis://:hunter2-pw@redis.internal:6380/0", "redis.internal:6380"),
        ("rediss://user:hunter2-pw@redis.internal/1", "redis.internal:6379"),
        ("redis://[::1]:6379/0", "[::1]:6379"),
        ("unix:///run/redis.sock?password=hunter2-pw", "/run/redis.sock"),
    ],
)
def test_where_redis_is_said_without_its_password(url: str, where: str) -> None:
    assert redis_address(url) == where


WHOLE_NUMBERS = [f.name for f in fields(Settings) if f.type in ("int", int)]


@pytest.mark.parametrize("setting", WHOLE_NUMBERS)
def test_a_negative_number_setting_is_refused_naming_it(setting: str) -> None:
    """ACCESS_TOKEN_SECONDS=-60 issued tokens that had expired when issued, BID_TTL_SECONDS=-1
    bids expired when sent, DATABASE_MAX_OVERFLOW=-1 opened PostgreSQL connections without
    bound: no number setting of the service means anything below 0."""
    with pytest.raises(SettingsError, match=rf"^{setting} is (at least )?\d+ or more|^{setting}"):
        create_app(Settings(DATABASE_URL="sqlite://", **{setting: -1}))


@pytest.mark.parametrize(
    ("setting", "says"),
    [
        ("ACCESS_TOKEN_SECONDS", "ACCESS_TOKEN_SECONDS is 1 or more (seconds), not 0"),
        ("DATABASE_POOL_SIZE", "DATABASE_POOL_SIZE is 1 or more (connections), not 0"),
        ("SOCKET_PING_INTERVAL", "SOCKET_PING_INTERVAL is 1 or more (seconds), not 0"),
        ("REDIS_TIMEOUT_MS", "REDIS_TIMEOUT_MS is 1 or more (milliseconds), not 0"),
        ("DEVICES_PER_USER", "DEVICES_PER_USER is 1 or more (devices), not 0"),
        ("MAX_CONTENT_LENGTH", "MAX_CONTENT_LENGTH is 1 or more (bytes), not 0"),
    ],
)
def test_a_zero_where_nothing_would_work_is_refused(setting: str, says: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(says)):
        create_app(Settings(DATABASE_URL="sqlite://", **{setting: 0}))


@pytest.mark.parametrize(
    "setting",
    [
        "SOCKET_CLOSE_SPREAD_SECONDS",
        "REFRESH_REUSE_GRACE_SECONDS",
        "GC_FULL_SECONDS",
        "TRUSTED_PROXIES",
        "SOCKET_TYPING_EVERY_MS",
        "DATABASE_MAX_OVERFLOW",
    ],
)
def test_a_zero_with_a_documented_meaning_is_taken(setting: str) -> None:
    create_app(Settings(DATABASE_URL="sqlite://", **{setting: 0}))


@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "current"]])
def test_an_unknown_push_backend_stops_every_command(tmp_path: Path, command: list[str]) -> None:
    """PUSH_BACKEND=fmc was refused only by what sends pushes (`reach worker`): the migration
    Job and the API processes sharing its settings started with it, and the typo showed only
    as a worker that would not start. Every command names it (its credentials are still read
    only where pushes are sent: the file may be mounted there alone)."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'backend.sqlite3'}",
        "REACH_INSTANCE_DIR": str(tmp_path),
        "WORKER_MODE": "separate",
        "PUSH_BACKEND": "fmc",
    }
    said = reach_refuses(*command, env=env)
    assert "PUSH_BACKEND='fmc' is not known: set it to one of log, fcm" in said, said
    with pytest.raises(SettingsError, match="PUSH_BACKEND='FMC' is not known"):
        create_app(Settings(DATABASE_URL="sqlite://", WORKER_MODE="separate", PUSH_BACKEND="FMC"))
    fcm = Settings(DATABASE_URL="sqlite://", WORKER_MODE="separate", PUSH_BACKEND=" FCM ")
    create_app(fcm)  # no FIREBASE_CREDENTIALS here: the worker checks them


@pytest.mark.parametrize(
    ("origin", "written"),
    [
        ("https://app.example.com/", "https://app.example.com"),
        ("app.example.com", None),
        ("https://App.Example.com", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("*", None),
    ],
)
def test_an_allowed_origin_no_browser_sends_is_refused(origin: str, written: str | None) -> None:
    """A browser's Origin is scheme://host[:port], lowercase, without a default port or a
    path, and is compared as it comes: `https://app.example.com/` never matched, and the
    members' web app was refused CORS and its socket with nothing logged."""
    says = f"ALLOWED_ORIGINS holds {origin!r}, which no browser sends as an Origin"
    with pytest.raises(SettingsError, match=re.escape(says)) as raised:
        create_app(Settings(DATABASE_URL="sqlite://", ALLOWED_ORIGINS=("https://ok.test", origin)))
    if written:
        assert f"write it as {written}" in str(raised.value)


def test_allowed_origins_as_browsers_send_them_are_taken() -> None:
    origins = ("https://app.example.com", "http://localhost:5173", "https://[::1]:8443")
    create_app(Settings(DATABASE_URL="sqlite://", ALLOWED_ORIGINS=origins))
