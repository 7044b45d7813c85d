"""What counting one limited request costs, by rate-limit storage, and what it waits.

Runs flask-limiter's work for one limited request as the service does it (fixed window: count
the request, then read the window for the `X-RateLimit-*` and `Retry-After` headers), in an app
context, in a gevent-patched process (as `reach serve` runs), at a fixed rate across 240 keys.
Storages, alternated rep by rep: limits' stock Redis storage and the service's
(`service/security/rate_counters.py`) against the Redis at BENCH_REDIS_URL, and limits' stock
memory storage and the service's. Reports per request the process's CPU (`time.process_time`,
every thread and greenlet of it: the stock memory storage's timer threads included), the wall
time of the limiter's work, and the commands sent to Redis (each a round trip; a script's own
calls inside Redis are not counted).

Usage: .venv/bin/python -m bench.probe_rate_limits [--requests 2000] [--rate 250] [--reps 3]
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Any  # noqa: E402

import redis  # noqa: E402
from flask import Flask  # noqa: E402
from limits import parse  # noqa: E402
from limits.storage import MemoryStorage, RedisStorage  # noqa: E402
from limits.strategies import FixedWindowRateLimiter  # noqa: E402

from bench import common  # noqa: E402
from bench.common import log, median  # noqa: E402

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


def storages() -> dict[str, Any]:
    from service.security.rate_counters import MemoryRateCounters, RedisRateCounters, storage_uri

    return {
        "Redis, limits' storage": RedisStorage(REDIS_URL),
        "Redis, the service's": RedisRateCounters(storage_uri(REDIS_URL)),
        "memory, limits' storage": MemoryStorage(),
        "memory, the service's": MemoryRateCounters(),
    }


class Counted:
    """Counts the commands a Redis client sends (a script call is one)."""

    def __init__(self, storage: Any) -> None:
        self.sent = 0
        if not hasattr(storage, "get_connection"):
            return
        client = storage.get_connection()
        send = client.execute_command

        def counted(*args: Any, **options: Any) -> Any:
            self.sent += 1
            return send(*args, **options)

        client.execute_command = counted


def one_rep(storage: Any, requests: int, rate: float) -> dict[str, float]:
    limiter = FixedWindowRateLimiter(storage)
    item = parse("1000000 per minute")
    app = Flask(__name__)
    keys = [f"user:{uuid.uuid4()}" for _ in range(240)]
    counted = Counted(storage)
    busy = 0.0
    cpu = time.process_time()
    start = time.perf_counter()
    for n in range(requests):
        pause = start + n / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)  # gevent's: the storage's own greenlets run meanwhile
        began = time.perf_counter()
        with app.app_context():
            key = keys[n % len(keys)]
            assert limiter.hit(item, "bench", key)
            reset, remaining = limiter.get_window_stats(item, "bench", key)
            assert reset > 0 and remaining >= 0
        busy += time.perf_counter() - began
    timer = getattr(storage, "timer", None)  # limits' memory storage: its last sweep, if any
    if timer is not None:
        timer.join(1.0)
    cpu = time.process_time() - cpu
    return {
        "cpu_us": cpu / requests * 1e6,
        "wall_us": busy / requests * 1e6,
        "commands": counted.sent / requests,
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=2000)
    p.add_argument("--rate", type=float, default=250.0)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    runs: dict[str, list[dict[str, float]]] = {}
    for rep in range(args.reps):
        order = list(storages().items())
        if rep % 2:
            order.reverse()
        for name, storage in order:
            common.wait_quiet()
            r = one_rep(storage, args.requests, args.rate)
            runs.setdefault(name, []).append(r)
            log(
                f"  rep {rep + 1} {name}: {r['cpu_us']:.1f} us CPU, {r['wall_us']:.1f} us wall, "
                f"{r['commands']:.2f} commands to Redis per request"
            )
    client.flushdb()
    summary = {
        name: {k: round(median([r[k] for r in rs]) or 0.0, 2) for k in rs[0]}
        for name, rs in runs.items()
    }
    print(f"\nPer request at {args.rate:g}/s, median of {args.reps}:")
    print("| storage | process CPU us | wall us | commands to Redis |")
    print("|---|---|---|---|")
    for name, s in summary.items():
        print(f"| {name} | {s['cpu_us']} | {s['wall_us']} | {s['commands']} |")
    common.write_result("probe_rate_limits", {"args": vars(args), "runs": runs, "median": summary})


if __name__ == "__main__":
    main()
