"""flask-limiter's own work on one limited request, by part, without the storage's.

Builds the service's app (SQLite in memory, the service's memory storage, the rate limiter on)
and, inside a request context for POST /api/v1/bids, runs each part of what flask-limiter does
for that request many times over: its before_request check of app-wide limits (flask-limiter's
own `Limiter._check_request_limit`, and the service's `RouteLimiter`, which skips it), the
route decorator's check (find the route's limits, count the request), and the `X-RateLimit-*`
headers on the answer. The storage's count alone is reported too, so what is left is
flask-limiter's. CPU per request (`time.process_time`), median of the reps.

A hot loop: everything stays in the CPU's caches, so under load each part costs more (py-spy
puts flask-limiter at about a tenth of the API process's samples at 300 bids/s). Compare the
parts, not these figures with a request's.

Usage: .venv/bin/python -m bench.probe_limiter_work [--calls 5000] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import common
from bench.common import log


def _app() -> Any:
    return common.memory_app(RATELIMIT_ENABLED=True, **common.RATE_LIMITS)


def parts(app: Any) -> dict[str, Callable[[], Any]]:
    from flask_limiter import Limiter
    from limits import parse

    from service.extensions import limiter

    route = next(name for name in limiter._marked_for_limiting if name.endswith("Bids.post"))
    inject_headers = limiter._Limiter__inject_headers  # type: ignore[attr-defined]
    item = parse(common.RATE_LIMITS["RATELIMIT_BIDS"])

    def decorator_check() -> None:
        limiter._check_request_limit(in_middleware=False, callable_name=route)
        limiter.context.reset()

    def headers() -> None:
        inject_headers(app.response_class(""))

    return {
        "before_request, flask-limiter's": lambda: Limiter._check_request_limit(limiter),
        "before_request, the service's RouteLimiter": limiter._check_request_limit,
        "the route decorator's check (the count included)": decorator_check,
        "the headers (on a new empty answer)": headers,
        "a new empty answer alone": lambda: app.response_class(""),
        "the storage's count and read alone": lambda: (
            limiter.limiter.hit(item, "probe", "bids"),
            limiter.limiter.get_window_stats(item, "probe", "bids"),
        ),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--calls", type=int, default=5000)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    app = _app()
    results: dict[str, list[float]] = {}
    with app.test_request_context("/api/v1/bids", method="POST", json={}):
        from service.extensions import limiter

        limiter._check_request_limit(in_middleware=False, callable_name=None)
        measured = parts(app)
        for rep in range(args.reps):
            for label, call in measured.items():
                for _ in range(200):
                    call()
                started = time.process_time()
                for _ in range(args.calls):
                    call()
                per_call = (time.process_time() - started) / args.calls * 1e6
                results.setdefault(label, []).append(per_call)
            log(f"  rep {rep + 1}/{args.reps} done")
    rows = [
        {
            "part": label,
            "cpu_us_median": round(statistics.median(values), 1),
            "cpu_us": [round(v, 1) for v in values],
        }
        for label, values in results.items()
    ]
    print("| part of flask-limiter's work on one POST /bids | CPU µs (median) | reps |")
    print("|---|---|---|")
    for row in rows:
        print(f"| {row['part']} | {row['cpu_us_median']} | {row['cpu_us']} |")
    common.write_result("probe_limiter_work", {"calls": args.calls, "rows": rows})


if __name__ == "__main__":
    main()
