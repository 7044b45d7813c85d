"""Rate-limit counters: in Redis at one round trip per limited request, or in the process.

With Redis (every production process): flask-limiter counts a limited request with a script
(INCRBY, and EXPIRE when the window is new), then, for the `X-RateLimit-*` and `Retry-After`
headers every limited response carries, reads the counter (GET) and its time to live (TTL):
three round trips to Redis, one after the other, inside every POST /bids. Here the counting
script answers the count and the time to live together, and reads of a key that the same request
(app context) has just counted are answered from that answer. Everything else is limits' own
Redis storage: keys, windows, clearing, the health check flask-limiter's in-memory fallback uses.

Without Redis (the embedded default, one process): fixed windows in a dict. limits' own memory
storage starts a timer thread 10 ms after every count that finds none running, and that thread
looks at every key: 83 threads a second at 250 counts a second (bench/RESULTS.md, "What
changed" 22). Here a window ends when it is read after its end, and the windows that ended are
swept out at most once a minute, by the count that finds the sweep due.

`storage_uri(REDIS_URL)` names the storage for flask-limiter's `RATELIMIT_STORAGE_URI` (limits
finds storages by URI scheme; importing this module registers `reach+redis://` and
`reach+memory://`).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, cast

from flask import g, has_app_context
from limits.storage import RedisStorage, Storage

if TYPE_CHECKING:
    from redis import Redis

SCHEME_PREFIX = "reach+"
# What limits names a counter with, before the limit's key (`RateLimitItem.key_for`).
COUNTER_NAMESPACE = "LIMITER"
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


def storage_uri(redis_url: str | None) -> str:
    """flask-limiter's storage URI: counters in the Redis at `redis_url`, or in the process."""
    return SCHEME_PREFIX + (redis_url or "memory://")


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

    def clear_counted_under(self, limit_key: str) -> int:
        """Delete every counter of the limits counted under `limit_key` (`user:<id>`), whatever
        their scope and window; how many there were."""
        connection = cast("Redis", self.get_connection())
        pattern = self.prefixed_key(f"{COUNTER_NAMESPACE}/{_glob_escaped(limit_key)}/*")
        found = list(connection.scan_iter(match=pattern, count=1000))
        return int(connection.delete(*found)) if found else 0

    def get_expiry(self, key: str) -> float:
        taken = _taken(key)
        return taken[1] if taken else super().get_expiry(key)


def _glob_escaped(text: str) -> str:
    """`text` matched as itself in a Redis SCAN pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def _taken(key: str) -> tuple[int, float] | None:
    """What this request's own count of `key` answered, if it counted it."""
    if not has_app_context():
        return None
    taken: dict[str, tuple[int, float]] | None = g.get(_TAKEN)
    return taken.get(key) if taken else None


class MemoryRateCounters(Storage):
    """Fixed-window counters in this process's memory: (count, when the window ends) by key."""

    STORAGE_SCHEME = [SCHEME_PREFIX + "memory"]
    SWEEP_SECONDS = 60.0

    def __init__(
        self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.sweep_seconds = self.SWEEP_SECONDS
        self._windows: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()
        self._next_sweep = time.time() + self.sweep_seconds

    @property
    def base_exceptions(self) -> type[Exception]:
        return ValueError

    def held(self) -> int:
        """Windows held, ended ones not yet swept included. (Not `__len__`: flask-limiter
        asserts its storage is truthy, and an empty one would not be.)"""
        return len(self._windows)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                self._sweep(now)
            count, ends = self._windows.get(key, (0, 0.0))
            if ends <= now:
                count, ends = 0, now + expiry
            count += amount
            self._windows[key] = (count, ends)
            return count

    def get(self, key: str) -> int:
        count, ends = self._windows.get(key, (0, 0.0))
        return count if ends > time.time() else 0

    def get_expiry(self, key: str) -> float:
        now = time.time()
        _count, ends = self._windows.get(key, (0, 0.0))
        return ends if ends > now else now

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self._lock:
            cleared = len(self._windows)
            self._windows.clear()
        return cleared

    def clear(self, key: str) -> None:
        with self._lock:
            self._windows.pop(key, None)

    def clear_counted_under(self, limit_key: str) -> int:
        """As RedisRateCounters's, in this process (of no use to another)."""
        prefix = f"{COUNTER_NAMESPACE}/{limit_key}/"
        with self._lock:
            found = [key for key in self._windows if key.startswith(prefix)]
            for key in found:
                del self._windows[key]
        return len(found)

    def _sweep(self, now: float) -> None:
        self._windows = {key: w for key, w in self._windows.items() if w[1] > now}
        self._next_sweep = now + self.sweep_seconds
