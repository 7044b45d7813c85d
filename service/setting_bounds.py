"""The least value each number setting takes: below it the service would run, but wrongly."""

from __future__ import annotations

from service.config import Settings, SettingsError

# name: (least, what it counts; what its least means where that is not obvious). Settings with
# their own check (config.py: database waits, migration waits, the push lease and batch) are
# not repeated here.
LEAST = {
    "DATABASE_POOL_SIZE": (1, "connections"),
    "DATABASE_MAX_OVERFLOW": (0, "connections; SQLAlchemy takes -1 for no bound"),
    "REDIS_TIMEOUT_MS": (1, "milliseconds"),
    "REDIS_RECEIVE_CHECK_SECONDS": (1, "seconds"),
    "TRUSTED_PROXIES": (0, "proxy hops"),
    "GUNICORN_WORKER_CONNECTIONS": (1, "connections"),
    "GUNICORN_GRACEFUL_TIMEOUT": (0, "seconds"),
    "SOCKET_CLOSE_SPREAD_SECONDS": (0, "seconds; 0: all at once"),
    "SOCKET_PING_INTERVAL": (1, "seconds"),
    "SOCKET_PING_TIMEOUT": (1, "seconds"),
    "SOCKET_CONNECT_TIMEOUT": (1, "seconds"),
    "SOCKET_TYPING_EVERY_MS": (0, "milliseconds; 0: every one passed on"),
    "SOCKET_EVENTS_IN_FLIGHT": (1, "events"),
    "ACCESS_TOKEN_SECONDS": (1, "seconds"),
    "REFRESH_TOKEN_DAYS": (1, "days"),
    "REFRESH_REUSE_GRACE_SECONDS": (0, "seconds; 0: every reuse revokes"),
    "INVITE_TTL_MINUTES": (1, "minutes"),
    "BID_TTL_SECONDS": (1, "seconds"),
    "PUSH_CONCURRENCY": (1, "sends"),
    "PUSH_GATHER_MS": (0, "milliseconds"),
    "PUSH_RETENTION_DAYS": (0, "days"),
    "DEAD_PUSH_TOKEN_RETENTION_DAYS": (0, "days"),
    "MAIL_TIMEOUT_SECONDS": (1, "seconds"),
    "MAIL_ATTEMPTS": (1, "tries; 1: no second try"),
    "MAX_CONTENT_LENGTH": (1, "bytes"),
    "SOCKETS_PER_USER": (1, "sockets"),
    "DEVICES_PER_USER": (1, "devices"),
    "SOCKET_RECHECK_SECONDS": (1, "seconds"),
    "OPS_REFRESH_SECONDS": (1, "seconds"),
    "OPS_SESSION_HOURS": (1, "hours"),
    "GC_CHECK_SECONDS": (1, "seconds"),
    "GC_REFREEZE_OBJECTS": (0, "objects"),
    "GC_FULL_SECONDS": (0, "seconds; 0: never"),
    "GC_GEN0_THRESHOLD": (0, "objects; 0: CPython's 700"),
}


def check_least_values(settings: Settings) -> None:
    """Refuse a number setting below its least: ACCESS_TOKEN_SECONDS=-60 issued tokens expired
    when issued, DATABASE_MAX_OVERFLOW=-1 opened PostgreSQL connections without bound."""
    for name, (least, unit) in LEAST.items():
        value = getattr(settings, name)
        if value < least:
            raise SettingsError(f"{name} is {least} or more ({unit}), not {value}")
