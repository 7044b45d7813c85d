"""Settings for apps under test."""

from __future__ import annotations

from service.config import Settings


def make_settings(database_url: str, **overrides: object) -> Settings:
    base = Settings(
        DATABASE_URL=database_url,
        SECRET_KEY="test-secret-key-for-reach-tests-only-0123456789",
        TESTING=True,
        SOCKETIO_ASYNC_MODE="threading",
        WORKER_MODE="separate",
        RATELIMIT_AUTH="1000 per minute",
        RATELIMIT_BIDS="1000 per minute",
        RATELIMIT_REPAIRS="1000 per minute",
        RATELIMIT_JOIN="1000 per minute",
        RATELIMIT_AUTH_EMAIL="1000 per minute",
        RATELIMIT_JOIN_ADDRESS="1000 per minute",
        RATELIMIT_DEVICES="1000 per minute",
        RATELIMIT_REFRESH="1000 per minute",
        RATELIMIT_EXPORT="1000 per minute",
        RATELIMIT_PROFILE="1000 per minute",
        RATELIMIT_PASSWORD="1000 per minute",
        RATELIMIT_PASSWORD_RESET="1000 per minute",
        RATELIMIT_EMAIL_CHANGE="1000 per minute",
        RATELIMIT_SESSIONS="1000 per minute",
        # Every `typing` is passed on (tests/realtime/test_connect.py tests the default's 1 s).
        SOCKET_TYPING_EVERY_MS=0,
        LOG_FORMAT="json",
    )
    return base.with_overrides(**overrides)
