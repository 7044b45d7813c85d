"""Settings read from the environment, once, in one place."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from service.push.timing import LEASE_SPARE_SECONDS, longest_fcm_send, sending_window

INSTANCE_DIR = Path(os.environ.get("REACH_INSTANCE_DIR", Path.cwd() / "instance"))


SWITCH_ON = frozenset({"1", "true", "yes", "on"})
SWITCH_OFF = frozenset({"0", "false", "no", "off"})


def _bool(name: str, value: str) -> bool:
    """A switch: a word that is neither on nor off is refused (RATELIMIT_ENABLED=flase turned
    every limit off)."""
    word = value.strip().lower()
    if word not in SWITCH_ON | SWITCH_OFF:
        raise SettingsError(f"{name} is true or false, not {value!r}")
    return word in SWITCH_ON


def _list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


class SettingsError(ValueError):
    """A setting the service cannot run with. The message names it and says what to set
    instead: the `reach` command shows it without a traceback (an operator's mistake)."""


@dataclass(frozen=True)
class Settings:
    """Everything the service can be configured with. Names match the environment."""

    DATABASE_URL: str = ""
    # PostgreSQL connections each API or worker process keeps once opened, and how many more it
    # may open for a burst. Overflow connections are closed when returned, so under load they
    # cost a new PostgreSQL backend per request: by default there are none, a request waits.
    DATABASE_POOL_SIZE: int = 30
    DATABASE_MAX_OVERFLOW: int = 0
    # How long a request (or job) waits on PostgreSQL before it is answered 503: for one of the
    # pool's connections, to open a connection, and for a statement, which PostgreSQL cancels
    # (statement_timeout, lock waits included); a server that answers nothing, not even that,
    # is given up on 2 s later (service/db_bounds.py).
    DATABASE_POOL_TIMEOUT: int = 10
    DATABASE_CONNECT_TIMEOUT: int = 5
    DATABASE_STATEMENT_TIMEOUT_MS: int = 10_000
    # `reach db upgrade` / `downgrade` on PostgreSQL (service/migrations/session/): how long
    # a run waits for another one holding the migration lock; after how long idle that one's
    # session is taken for a run that is gone, ended, and the lock taken over (0: never); the
    # lock_timeout of its statements, and how many more times a step that gave way is tried.
    MIGRATION_LOCK_WAIT_SECONDS: int = 300
    MIGRATION_ABANDONED_SECONDS: int = 60
    MIGRATION_LOCK_TIMEOUT_MS: int = 3000
    MIGRATION_LOCK_RETRIES: int = 4
    REDIS_URL: str = ""
    # How long a process waits for Redis before treating it as away: rate limits then count
    # in the process, and messages to the other processes are dropped until it answers.
    REDIS_TIMEOUT_MS: int = 500
    # A process receiving the other processes' messages pings Redis after this many seconds
    # in which nothing arrived, and gives the connection up when the answer takes as long again:
    # a link that died without a word (no FIN, no RST) is found within twice this, and the
    # process subscribes again on a new one.
    REDIS_RECEIVE_CHECK_SECONDS: int = 5
    PUSH_BACKEND: str = "log"
    FIREBASE_CREDENTIALS: str = ""
    FCM_ENDPOINT: str = ""
    # Outgoing mail (service/mail/): "log" writes each mail, whole, to the log instead of
    # sending it; "smtp" hands it to the relay SMTP_URL names: smtp://user:pass@host:587 (STARTTLS,
    # which credentials over smtp:// always require), smtps://user:pass@host:465 (TLS from the
    # start), or smtp://host:25 without credentials for a relay on the host or its network (no
    # TLS); user and password percent-encoded. MAIL_FROM is the From of every mail, e.g.
    # "Reach <no-reply@example.com>"; MAIL_TIMEOUT_SECONDS bounds each wait on the relay.
    # MAIL_ATTEMPTS: tries of a mail in all while the relay fails it for a passing reason (a
    # 4xx answer, no connection, a timeout), 5 s, 30 s, then 120 s apart; 1: no second try.
    MAIL_BACKEND: str = "log"
    SMTP_URL: str = ""
    MAIL_FROM: str = ""
    MAIL_TIMEOUT_SECONDS: int = 10
    MAIL_ATTEMPTS: int = 4
    SECRET_KEY: str = ""
    ALLOWED_ORIGINS: tuple[str, ...] = ()
    # How many reverse proxies in front of the app set X-Forwarded-For/-Proto (nginx: 1).
    TRUSTED_PROXIES: int = 0
    # When the worker runs: "inline" (inside the API process) or "separate" (`reach worker`).
    WORKER_MODE: str = ""
    # Socket.IO async mode: "gevent" or "threading"; empty picks by whether gevent is patched.
    SOCKETIO_ASYNC_MODE: str = ""
    # WebSocket transport: "lean" (no greenlet per idle socket, service/realtime/transport/)
    # or "stock" (engineio + simple-websocket as shipped, four greenlets per socket).
    SOCKET_TRANSPORT: str = "lean"
    # Connections one API process holds: gunicorn's gevent worker_connections (requests in
    # flight), and the cap on open WebSockets, which leave gunicorn's pool once upgraded.
    GUNICORN_WORKER_CONNECTIONS: int = 10000
    # How long a stopping API process lets its requests and sockets finish, and gunicorn's own
    # log level (its errors; the service logs through LOG_LEVEL).
    GUNICORN_GRACEFUL_TIMEOUT: int = 20
    # A stopping API process closes its WebSockets spread over this many seconds rather than
    # all at once, so that their phones do not all reconnect and sync in the same instant
    # (within the graceful timeout, less what the exit and the last closes need; 0: at once).
    SOCKET_CLOSE_SPREAD_SECONDS: int = 5
    GUNICORN_LOG_LEVEL: str = "warning"
    # Engine.IO heartbeat: the server pings every SOCKET_PING_INTERVAL seconds and drops a
    # socket whose PONG is SOCKET_PING_TIMEOUT seconds late.
    SOCKET_PING_INTERVAL: int = 25
    SOCKET_PING_TIMEOUT: int = 20
    # A socket that has not joined a namespace (authenticated) this many seconds after it
    # opened is closed, so unauthenticated sockets cannot hold the process's socket slots.
    SOCKET_CONNECT_TIMEOUT: int = 10
    # A socket's `typing` is passed on to the partner at most this often; the rest are dropped
    # (a phone shows the indicator for about 5 s after each).
    SOCKET_TYPING_EVERY_MS: int = 1000
    # Events of one socket handled at once; more, sent before those are answered, are refused
    # (429 in the ack), so one socket cannot flood its process with work.
    SOCKET_EVENTS_IN_FLIGHT: int = 16
    JWT_ISSUER: str = "reach"
    JWT_AUDIENCE: str = "reach-mobile"
    ACCESS_TOKEN_SECONDS: int = 900
    REFRESH_TOKEN_DAYS: int = 30
    # A refresh token presented again this many seconds after it was rotated, while the token
    # that rotation issued is still unused, is a retry whose answer was lost: it gets a new pair
    # and that unused token stops working. Later, or once that token was used, it revokes the
    # session as any reuse does. 0 = every reuse revokes.
    REFRESH_REUSE_GRACE_SECONDS: int = 30
    INVITE_TTL_MINUTES: int = 60 * 24
    BID_TTL_SECONDS: int = 60 * 60 * 24
    # Push worker: jobs claimed per pass, their lease (a crashed worker's claims free up after
    # it), parallel sends per worker, and the per-request timeout towards FCM. A pass starts
    # sends only while its lease has room for their answers (check_push_lease).
    PUSH_BATCH: int = 32
    PUSH_LEASE_SECONDS: int = 120
    PUSH_CONCURRENCY: int = 16
    PUSH_TIMEOUT_SECONDS: int = 10
    # The least time between the starts of two passes that wake-ups begin: a wake-up after a
    # quiet spell passes at once, one sooner waits until then, and the pushes queued meanwhile
    # go out in the same pass (a pass's statements cost the same for one push or many).
    PUSH_GATHER_MS: int = 50
    # Finished pushes (sent, cancelled, expired, dead-lettered) are deleted with their
    # deliveries and attempts this many days after they finished (the worker looks hourly, and
    # keeps going between passes while more are due).
    PUSH_RETENTION_DAYS: int = 30
    # The SHA-256 of a push token FCM declared dead (`dead_push_tokens`) refuses its
    # registration again, its device deleted or not, for this many days after FCM said so; the
    # worker's hourly prune then deletes it. FCM never hands a dead token out again.
    DEAD_PUSH_TOKEN_RETENTION_DAYS: int = 365
    MAX_CONTENT_LENGTH: int = 64 * 1024
    RATELIMIT_ENABLED: bool = True
    RATELIMIT_AUTH: str = "10 per minute"
    RATELIMIT_BIDS: str = "30 per minute"
    RATELIMIT_REPAIRS: str = "60 per minute"
    RATELIMIT_JOIN: str = "10 per hour"
    # Per submitted email (besides RATELIMIT_AUTH per address): failed sign-ins, and sign-ups.
    RATELIMIT_AUTH_EMAIL: str = "10 per minute;50 per hour"
    # Invite-code guessing from one address, over every account behind it: wrong codes only
    # (RATELIMIT_JOIN is per account, every join).
    RATELIMIT_JOIN_ADDRESS: str = "30 per hour"
    # Push-token registrations per account (an app registers at every start and token change).
    RATELIMIT_DEVICES: str = "60 per hour"
    # Successful refreshes per sign-in session (an app refreshes about every
    # ACCESS_TOKEN_SECONDS); each stores a token, kept until it expires. A refresh that fails
    # (an unknown, used or ended token) is never limited.
    RATELIMIT_REFRESH: str = "30 per hour"
    # Data exports per account: each reads and encodes everything the account ever wrote.
    RATELIMIT_EXPORT: str = "10 per hour"
    # Profile changes (PATCH /me) per account: a name or time zone changed is an event the
    # couple's stream keeps and the partner's phones receive.
    RATELIMIT_PROFILE: str = "60 per hour"
    # Password changes per account, right or wrong (each checks one argon2 hash and makes
    # another): guessing the current password with a stolen access token is held to it.
    RATELIMIT_PASSWORD: str = "5 per hour"
    # Codes mailed for a forgotten password, per submitted email, whether it has an account or
    # not (besides RATELIMIT_AUTH per address): each is a mail to someone's inbox.
    RATELIMIT_PASSWORD_RESET: str = "3 per hour;10 per day"
    # Changes of the account's email asked for (each mails a code to the new address), per
    # account, right password or wrong: each checks one argon2 hash.
    RATELIMIT_EMAIL_CHANGE: str = "5 per hour;20 per day"
    # Lists of the account's sign-in sessions, and sessions ended one at a time, per account.
    RATELIMIT_SESSIONS: str = "60 per hour"
    # Live member sockets one account may hold in one process; more are refused.
    SOCKETS_PER_USER: int = 10
    # Active devices (push tokens) one account keeps; registering another switches off the one
    # registered least recently, so every push costs at most this many sends.
    DEVICES_PER_USER: int = 20
    # Each API process looks up its sockets' sign-in sessions this often and closes those that
    # ended, should the message that closes them at once have been lost (realtime/sweep.py).
    SOCKET_RECHECK_SECONDS: int = 60
    LOG_LEVEL: str = "INFO"
    LOG_FORMAT: str = "json"
    # GET /metrics (Prometheus). With several gunicorn processes, point PROMETHEUS_MULTIPROC_DIR
    # at an empty directory shared by them (prometheus-client reads the same variable).
    METRICS: bool = True
    PROMETHEUS_MULTIPROC_DIR: str = ""
    # `reach worker`'s own HTTP endpoint, HOST:PORT (unset: none): GET /metrics (the worker
    # process's counters) and GET /healthz (its loop made progress lately).
    WORKER_METRICS_BIND: str = ""
    # The operators' dashboard: how often live figures are pushed, how long a sign-in lasts.
    OPS_REFRESH_SECONDS: int = 2
    OPS_SESSION_HOURS: int = 12
    # Garbage collection in API processes (service/gc_tuning.py): freeze long-lived objects so
    # that collections never walk thousands of idle sockets; check every GC_CHECK_SECONDS,
    # re-freeze past GC_REFREEZE_OBJECTS, one full collection every GC_FULL_SECONDS (0 = never).
    GC_FREEZE: bool = True
    GC_CHECK_SECONDS: int = 5
    GC_REFREEZE_OBJECTS: int = 20_000
    GC_FULL_SECONDS: int = 3600
    GC_GEN0_THRESHOLD: int = 0
    # The test suite's own settings (tests/support/settings.py): they skip the SECRET_KEY check
    # and the /ops cookie's Secure flag. Never read from the environment (NOT_FROM_ENVIRONMENT).
    TESTING: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        if self.DATABASE_URL:
            url = self.DATABASE_URL
            if url.startswith("postgres://"):
                url = "postgresql://" + url.removeprefix("postgres://")
            if url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
            return url
        return f"sqlite:///{INSTANCE_DIR / 'reach.sqlite3'}"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def worker_inline(self) -> bool:
        if self.WORKER_MODE:
            return self.WORKER_MODE == "inline"
        return self.is_sqlite

    @property
    def secret_key(self) -> str:
        return self.SECRET_KEY or _development_secret()

    def with_overrides(self, **overrides: Any) -> Settings:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise KeyError(f"unknown settings: {', '.join(sorted(unknown))}")
        return replace(self, **overrides)


# Fields no environment sets: a server's environment cannot make it a test run.
NOT_FROM_ENVIRONMENT = frozenset({"TESTING", "extra"})


def from_environment(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the settings from the environment (or the given mapping)."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name in NOT_FROM_ENVIRONMENT or f.name not in env:
            continue
        raw = env[f.name]
        if f.type in ("bool", bool):
            values[f.name] = _bool(f.name, raw)
        elif f.type in ("int", int):
            values[f.name] = _int(f.name, raw)
        elif f.name == "ALLOWED_ORIGINS":
            values[f.name] = _list(raw)
        else:
            values[f.name] = raw
    return Settings(**values)


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None


_dev_secret: str | None = None


def _development_secret() -> str:
    """A per-instance secret for the embedded default, kept under instance/."""
    global _dev_secret
    if _dev_secret is None:
        path = INSTANCE_DIR / "secret_key"
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            _create_secret(path)
        _dev_secret = path.read_text().strip()
    return _dev_secret


def _create_secret(path: Path) -> None:
    """A new secret, readable by its owner only from its first byte, that appears whole: a
    process starting beside this one reads the same secret, never half of one or its own."""
    fd, written = tempfile.mkstemp(dir=path.parent, prefix=".secret-")  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(48))
        with contextlib.suppress(FileExistsError):  # another made it first: it is the one
            os.link(written, path)
    finally:
        os.unlink(written)


# The placeholder of deploy/env.example and deploy/k8s/secret.example.yaml.
PLACEHOLDER_SECRET = "change-me"
SECRET_KEY_MIN_LENGTH = 32


def check_secret_key(secret: str) -> None:
    """Production (PostgreSQL) refuses to start without a real SECRET_KEY: it signs every
    access token and the operators' session cookie."""
    make_one = "make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(48))'"
    if not secret:
        raise SettingsError(
            f"SECRET_KEY must be set when running on PostgreSQL (production): {make_one}"
        )
    if secret == PLACEHOLDER_SECRET or len(secret) < SECRET_KEY_MIN_LENGTH:
        raise SettingsError(
            f"SECRET_KEY is the example's placeholder or shorter than {SECRET_KEY_MIN_LENGTH} "
            f"characters: {make_one}"
        )


def check_database_waits(settings: Settings) -> None:
    """Refuse waits on PostgreSQL too short to serve with (service/db_bounds.py)."""
    least = {
        "DATABASE_CONNECT_TIMEOUT": (2, "seconds; libpq's least"),
        "DATABASE_STATEMENT_TIMEOUT_MS": (100, "milliseconds"),
        "DATABASE_POOL_TIMEOUT": (1, "seconds"),
    }
    for name, (at_least, unit) in least.items():
        if getattr(settings, name) < at_least:
            raise SettingsError(f"{name} is at least {at_least} ({unit}).")


MIGRATION_WAITS = {
    "MIGRATION_LOCK_WAIT_SECONDS": "seconds",
    "MIGRATION_ABANDONED_SECONDS": "seconds; 0: never take over",
    "MIGRATION_LOCK_TIMEOUT_MS": "milliseconds; 0: wait without bound",
    "MIGRATION_LOCK_RETRIES": "more tries; 0: none",
}


def check_migration_waits(settings: Settings) -> None:
    """Refuse a negative migration wait: PostgreSQL refused lock_timeout=-1 only once the
    migration had connected, and a negative wait or retry count ran as none at all."""
    for name, unit in MIGRATION_WAITS.items():
        value = getattr(settings, name)
        if value < 0:
            raise SettingsError(f"{name} is 0 or more ({unit}), not {value}.")


def check_push_batch(batch: int) -> None:
    """Refuse a batch that claims nothing: the worker took its empty claim for a whole batch,
    so more due at once, and passed again without a pause, spinning and sending nothing."""
    if batch < 1:
        raise SettingsError(f"PUSH_BATCH must be 1 or more, not {batch}")


def check_push_lease(lease_seconds: int, timeout_seconds: int) -> None:
    """Refuse a push lease too short for a send: a pass starts sends only while its lease has
    room for their answers and LEASE_SPARE_SECONDS more to record them (a later send could
    still be under way when another worker takes the job over and sends it again). It needs
    at least one PUSH_TIMEOUT_SECONDS to start sends in, or it would hardly send at all."""
    if timeout_seconds <= 0:
        raise SettingsError(f"PUSH_TIMEOUT_SECONDS must be 1 or more, not {timeout_seconds}")
    longest = longest_fcm_send(timeout_seconds)
    if sending_window(lease_seconds, longest) >= timeout_seconds:
        return
    least = math.ceil(longest + LEASE_SPARE_SECONDS + timeout_seconds)
    raise SettingsError(
        f"PUSH_LEASE_SECONDS={lease_seconds} is too short for PUSH_TIMEOUT_SECONDS="
        f"{timeout_seconds}: one push send may take {longest:g} s (two connection attempts and "
        f"the answer, {timeout_seconds} s each), a worker's pass keeps {LEASE_SPARE_SECONDS:g} s "
        f"of its lease to record what it sent, and needs PUSH_TIMEOUT_SECONDS more to start "
        f"sends in. Set PUSH_LEASE_SECONDS to {least} or more, or lower PUSH_TIMEOUT_SECONDS."
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # logging's others pass too
GUNICORN_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
CHOICES = {
    "WORKER_MODE": ("", "inline", "separate"),
    "LOG_FORMAT": ("json", "text"),
    "SOCKET_TRANSPORT": ("lean", "stock"),
    "SOCKETIO_ASYNC_MODE": ("", "gevent", "threading"),
    "MAIL_BACKEND": ("log", "smtp"),
}


def check_choices(settings: Settings) -> None:
    """Refuse a setting that names none of its choices: a typo would otherwise run the
    service differently than meant (WORKER_MODE=inlin runs no worker at all)."""
    for name, choices in CHOICES.items():
        value = getattr(settings, name)
        if value not in choices:
            named = ", ".join(choice for choice in choices if choice)
            raise SettingsError(f"{name} is one of {named}, not {value!r}")
    if settings.LOG_LEVEL.upper() not in logging.getLevelNamesMapping():
        named = ", ".join(LOG_LEVELS)
        raise SettingsError(f"LOG_LEVEL is one of {named}, not {settings.LOG_LEVEL!r}")
    if settings.GUNICORN_LOG_LEVEL.lower() not in GUNICORN_LOG_LEVELS:  # gunicorn: info then
        named = ", ".join(GUNICORN_LOG_LEVELS)
        raise SettingsError(
            f"GUNICORN_LOG_LEVEL is one of {named}, not {settings.GUNICORN_LOG_LEVEL!r}"
        )


def check_database_url(settings: Settings) -> None:
    """Refuse a DATABASE_URL the service cannot use, before anything reads it as PostgreSQL
    (which would ask for a SECRET_KEY first). The message never shows its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    usable = "postgresql://user:password@host:5432/database, or unset for the embedded SQLite"
    url = settings.database_url
    try:
        scheme = make_url(url).drivername
    except (ArgumentError, ValueError):
        raise SettingsError(f"DATABASE_URL is not a database URL: set it to {usable}") from None
    if not (scheme.startswith("sqlite") or scheme == "postgresql+psycopg"):
        raise SettingsError(f"DATABASE_URL names {scheme!r}, which Reach does not run on: {usable}")


def check_rate_limits(settings: Settings) -> None:
    """Refuse a RATELIMIT_* limit that flask-limiter cannot read: it reads a route's limit at
    each request, logs one it cannot parse and lets the request through unlimited, while a
    socket write under it fails."""
    from limits import parse_many

    for f in fields(settings):
        value = getattr(settings, f.name)
        if not f.name.startswith("RATELIMIT_") or not isinstance(value, str):
            continue
        try:
            parse_many(value)
        except ValueError:
            raise SettingsError(
                f"{f.name} is a limit such as '10 per minute' or '10 per minute;50 per hour', "
                f"not {value!r} (RATELIMIT_ENABLED=false turns every limit off)"
            ) from None


REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def worker_metrics_address(settings: Settings) -> tuple[str, int] | None:
    """Where `reach worker` serves its metrics (WORKER_METRICS_BIND), or None."""
    bind = settings.WORKER_METRICS_BIND.strip()
    if not bind:
        return None
    host, colon, port = bind.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(
            f"WORKER_METRICS_BIND is HOST:PORT, e.g. 0.0.0.0:9102, or unset, not {bind!r}"
        )
    return host.strip("[]") or "0.0.0.0", int(port)


def check_metrics_directory(settings: Settings) -> None:
    """Refuse a PROMETHEUS_MULTIPROC_DIR that is not a directory this process can write to:
    prometheus-client writes each metric there from the moment it is made (so that import
    would fail with its traceback), and /metrics reads it."""
    path = settings.PROMETHEUS_MULTIPROC_DIR
    if path and not (os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)):
        raise SettingsError(
            f"PROMETHEUS_MULTIPROC_DIR is {path}, which is not a directory this process can "
            f"write to: create it, empty, before the service starts, or unset it with one "
            f"process per host"
        )


def redis_address(url: str) -> str:
    """Where a Redis URL points, host:port (or its socket's path), never its password."""
    from urllib.parse import urlsplit

    if url.startswith("unix://"):
        return urlsplit(url).path
    parts = urlsplit(url)
    try:
        port = parts.port or 6379
    except ValueError:  # check_redis_url refuses it at start
        port = 6379
    host = parts.hostname or "localhost"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def check_redis_url(settings: Settings) -> None:
    """Refuse a REDIS_URL that redis-py (and the rate limiter's storage) cannot open, or whose
    database is not a number (redis-py would use database 0). The message never shows its
    password."""
    from urllib.parse import urlsplit

    from redis.connection import parse_url

    url = settings.REDIS_URL
    usable = "redis://host:6379/0, or unset with one process"
    if url and not url.startswith(REDIS_SCHEMES):
        raise SettingsError(f"REDIS_URL starts with {', '.join(REDIS_SCHEMES)}: {usable}")
    if not url:
        return
    try:
        parse_url(url)
    except ValueError as exc:
        raise SettingsError(f"REDIS_URL is not a Redis URL ({exc}): set it to {usable}") from None
    database = urlsplit(url).path.strip("/") if not url.startswith("unix://") else ""
    if database and not database.isdigit():
        raise SettingsError(
            f"REDIS_URL names the database {database!r}, which is not a number: {usable}"
        )
