"""The Redis that the production path's tests use (`TEST_REDIS_URL`): required, never optional."""

from __future__ import annotations

import os

import pytest
import redis

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def require_redis(needed_for: str) -> str:
    """Fail (never skip) the test unless Redis answers within seconds; return its URL.

    A read timeout as well as a connect timeout: a Redis that takes the connection and never
    answers fails here, at once, instead of holding the test.
    """
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2).ping()
    except redis.RedisError as exc:  # CI always has Redis (.ci/run checks it first)
        pytest.fail(f"Redis at {REDIS_URL} is needed for {needed_for}: {exc}")
    return REDIS_URL
