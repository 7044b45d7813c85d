"""A burst of limited requests, as `reach serve` takes it: every one is counted in Redis.

gunicorn's gevent worker takes every request of a burst at once, and each limited one holds a
connection of the rate-limit store's Redis pool while it waits for Redis's answer. redis-py's
pool refuses a connection past its 100th ("Too many connections"), which flask-limiter takes
for a Redis gone away: the process then counted in its own memory, alone, with Redis healthy.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from tests.support.redis_needed import require_redis
from tests.support.served import reach_serve

BURST = 400
REGISTER = (
    b"POST /api/v1/auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"
)


@pytest.fixture(scope="module")
def redis_url() -> str:
    return require_redis("the rate-limit burst test")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[str]:
    with reach_serve(
        Path(tmp_path_factory.mktemp("bursts")),
        REDIS_URL=redis_url,
        RATELIMIT_AUTH="100000 per minute",
        RATELIMIT_AUTH_EMAIL="100000 per minute",
    ) as url:
        yield url


def sign_ups_counted(redis_url: str) -> int:
    """Sign-ups counted in Redis against this machine's address, over every window."""
    shared = redis.Redis.from_url(redis_url, socket_timeout=5)
    keys = shared.keys("LIMITS:LIMITER/ip:127.0.0.1/auth.Register/*")
    return sum(int(shared.get(key) or 0) for key in keys)


def burst(url: str, request: bytes, count: int) -> list[str]:
    """`count` connections opened first, the same request sent on each at once; the statuses."""
    at = urlsplit(url)
    connections = [
        socket.create_connection((at.hostname, at.port), timeout=30) for _ in range(count)
    ]
    statuses = []
    try:
        for conn in connections:
            conn.sendall(request)
        for conn in connections:
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
            statuses.append(answer.split(b" ", 2)[1].decode() if answer else "none")
    finally:
        for conn in connections:
            conn.close()
    return statuses


def test_a_burst_of_limited_requests_is_counted_in_redis_every_one(
    served: str, redis_url: str
) -> None:
    before = sign_ups_counted(redis_url)
    statuses = burst(served, REGISTER, BURST)
    assert statuses == ["422"] * BURST
    assert sign_ups_counted(redis_url) - before == BURST
