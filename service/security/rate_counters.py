"""Rate-limit counters in Redis that cost a limited request one round trip.

flask-limiter counts a limited request with a script (INCRBY, and EXPIRE when the window is
new), then, for the `X-RateLimit-*` and `Retry-After` headers every limited response carries,
reads the counter (GET) and its time to live (TTL): three round trips to Redis, one after the
other, inside every POST /bids. Here the counting script answers the count and the time to live
together, and reads of a key that the same request (app context) has just counted are answered
from that answer. Everything else is limits' own Redis storage: keys, windows, clearing, the
health check flask-limiter's in-memory fallback uses.

`storage_uri(REDIS_URL)` names this storage for flask-limiter's `RATELIMIT_STORAGE_URI`
(limits finds storages by URI scheme; importing this module registers `reach+redis://`).
"""

from __future__ import annotations

import time
from typing import Any

from flask import g, has_app_context
from limits.storage import RedisStorage

SCHEME_PREFIX = "reach+"
# Counts the current request has taken, by key: (count, when its window ends, unix seconds).
_TAKEN = "_reach_rate_counts"

# KEYS[1]: the counter; ARGV[1]: the window in seconds; ARGV[2]: how much to add.
# limits' incr_expire.lua, also answering the counter's time to live in milliseconds.
COUNT_SCRIPT = b"""
local current = redis.call("incrby", KEYS[1], ARGV[2])
if tonumber(current) == tonumber(ARGV[2]) then
    redis.call("expire", KEYS[1], ARGV[1])
end
return {current, redis.call("pttl", KEYS[1])}
"""


def storage_uri(redis_url: str) -> str:
    """flask-limiter's storage URI for counters in the Redis at `redis_url`."""
    return SCHEME_PREFIX + redis_url


class RedisRateCounters(RedisStorage):
    """limits' Redis storage whose count also answers the response's rate-limit headers."""

    STORAGE_SCHEME = [SCHEME_PREFIX + scheme for scheme in ("redis", "rediss", "unix")]

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix(SCHEME_PREFIX), **options)

    def initialize_storage(self, _uri: str) -> None:
        super().initialize_storage(_uri)
        self.lua_count = self.get_connection().register_script(COUNT_SCRIPT)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        count, ttl_ms = self.lua_count([self.prefixed_key(key)], [expiry, amount])
        if has_app_context():
            taken: dict[str, tuple[int, float]] = g.setdefault(_TAKEN, {})
            taken[key] = (int(count), time.time() + max(int(ttl_ms), 0) / 1000)
        return int(count)

    def get(self, key: str) -> int:
        taken = _taken(key)
        return taken[0] if taken else super().get(key)

    def get_expiry(self, key: str) -> float:
        taken = _taken(key)
        return taken[1] if taken else super().get_expiry(key)


def _taken(key: str) -> tuple[int, float] | None:
    """What this request's own count of `key` answered, if it counted it."""
    if not has_app_context():
        return None
    taken: dict[str, tuple[int, float]] | None = g.get(_TAKEN)
    return taken.get(key) if taken else None
