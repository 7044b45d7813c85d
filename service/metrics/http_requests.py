"""Every HTTP request timed: the latency histogram's labels and this process's last hour."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, g, request

from service.metrics.counted import REQUEST_LATENCY
from service.metrics.exposition import scrape


@dataclass
class RequestWindow:
    """This process's HTTP requests over the last hour: counts per minute, and the latencies
    of the latest 2000 of them (none older than the hour)."""

    minutes: int = 60
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _buckets: deque[list[int]] = field(default_factory=deque)  # [minute, total, 5xx]
    # (minute, seconds)
    _latencies: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=2000))

    def record(self, status: int, seconds: float, now: float | None = None) -> None:
        minute = int((now if now is not None else time.time()) // 60)
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != minute:
                self._buckets.append([minute, 0, 0])
            bucket = self._buckets[-1]
            bucket[1] += 1
            bucket[2] += 1 if status >= 500 else 0
            self._latencies.append((minute, seconds))
            self._trim(minute)

    def _trim(self, minute: int) -> None:
        while self._buckets and self._buckets[0][0] <= minute - self.minutes:
            self._buckets.popleft()
        while self._latencies and self._latencies[0][0] <= minute - self.minutes:
            self._latencies.popleft()

    def summary(self, now: float | None = None) -> dict[str, Any]:
        minute = int((now if now is not None else time.time()) // 60)
        with self._lock:
            self._trim(minute)
            total = sum(b[1] for b in self._buckets)
            errors = sum(b[2] for b in self._buckets)
            latencies = sorted(seconds for _, seconds in self._latencies)
        return {
            "requests": total,
            "errors": errors,
            "error_rate": (errors / total) if total else None,
            "latency_p50_ms": _rank(latencies, 0.5),
            "latency_p90_ms": _rank(latencies, 0.9),
            "window_seconds": self.minutes * 60,
        }


def _rank(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return round(ordered[index] * 1000, 1)


requests_window = RequestWindow()


def init_app(app: Flask) -> None:
    """Time every request; serve GET /metrics when the METRICS setting is on."""
    app.before_request(_start_timer)
    app.after_request(_observe)
    if app.extensions["reach.settings"].METRICS:
        app.add_url_rule("/metrics", "metrics", scrape, methods=["GET"])


# Label values come from the client: any other method (gunicorn takes any uppercase token)
# counts as "other", or each one made up would add a histogram of series.
HTTP_METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


def request_labels() -> tuple[str, str]:
    """The current request's endpoint (its URL rule, never the path with its ids) and method,
    as the metrics label them (and the logs name them)."""
    rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
    return rule, request.method if request.method in HTTP_METHODS else "other"


def _start_timer() -> None:
    g._reach_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started = g.pop("_reach_started", None)
    if started is None:
        return response
    seconds = time.perf_counter() - started
    rule, method = request_labels()
    REQUEST_LATENCY.labels(rule, method, str(response.status_code)).observe(seconds)
    requests_window.record(response.status_code, seconds)
    return response
