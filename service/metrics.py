"""Prometheus metrics and this process's request window: counted in-process, DB gauges at scrape."""

from __future__ import annotations

import glob
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from flask import Flask, Response, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("reach.metrics")

REQUEST_LATENCY = Histogram(
    "reach_http_request_duration_seconds",
    "HTTP request latency by endpoint (URL rule), method and status",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SOCKETS = Gauge(
    "reach_socket_connections",
    "Connected Socket.IO clients by namespace (summed over live processes)",
    ["namespace"],
    multiprocess_mode="livesum",
)
SOCKET_CAPACITY = Gauge(
    "reach_socket_capacity",
    "WebSockets the live API processes may hold: GUNICORN_WORKER_CONNECTIONS each, or fewer "
    "where the open-files limit is lower (service/open_files.py)",
    multiprocess_mode="livesum",
)
BIDS_CREATED = Counter("reach_bids_created", "Bids created (REST and socket writes)")
PUSH_OUTCOMES = Counter(
    "reach_push_outcomes",
    "Push sends by outcome and platform, counted by the process that sent them",
    ["outcome", "platform"],
)
PUSHES_UNSENT = Counter(
    "reach_push_unsent",
    "Pushes a worker's pass left untried for its next pass: its lease had no time left for "
    "their answers (FCM slow, or PUSH_LEASE_SECONDS short for the batch)",
)
PUBSUB_MESSAGES = Counter(
    "reach_pubsub_messages",
    "Messages to the other processes over Redis (socket events, push wake-ups) by channel and "
    "outcome: sent, or dropped while Redis did not answer",
    ["channel", "outcome"],
)

PUBSUB_RECEIVE_FAILURES = Counter(
    "reach_pubsub_receive_failures",
    "Attempts to receive from the other processes over Redis that failed (a process holding "
    "sockets subscribes again every 0.5-2 s until Redis answers)",
)


def bid_created() -> None:
    BIDS_CREATED.inc()


def push_outcome(outcome: str, platform: str) -> None:
    PUSH_OUTCOMES.labels(outcome=outcome, platform=platform).inc()


def pushes_unsent(count: int) -> None:
    PUSHES_UNSENT.inc(count)


def pubsub_messages(channel: str, outcome: str, count: int = 1) -> None:
    PUBSUB_MESSAGES.labels(channel=channel, outcome=outcome).inc(count)


def pubsub_receive_failure() -> None:
    PUBSUB_RECEIVE_FAILURES.inc()


class SocketCount:
    """Sockets connected to this process, by namespace (the gauge sums them over processes).

    Counted by sid: a disconnect reported twice for one socket (a server-side cut racing the
    phone's own close) or for a socket never counted leaves the count and the gauge as they are.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sids: dict[str, set[str]] = {}

    def connected(self, namespace: str, sid: str) -> None:
        with self._lock:
            sids = self._sids.setdefault(namespace, set())
            if sid in sids:
                return
            sids.add(sid)
        SOCKETS.labels(namespace=namespace).inc()

    def disconnected(self, namespace: str, sid: str) -> None:
        with self._lock:
            sids = self._sids.get(namespace, set())
            if sid not in sids:
                return
            sids.discard(sid)
        SOCKETS.labels(namespace=namespace).dec()

    def get(self, namespace: str) -> int:
        with self._lock:
            return len(self._sids.get(namespace, ()))


sockets = SocketCount()


@dataclass
class RequestWindow:
    """This process's HTTP requests over the last hour: counts per minute, recent latencies."""

    minutes: int = 60
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _buckets: deque[list[int]] = field(default_factory=deque)  # [minute, total, 5xx]
    _latencies: deque[float] = field(default_factory=lambda: deque(maxlen=2000))

    def record(self, status: int, seconds: float, now: float | None = None) -> None:
        minute = int((now if now is not None else time.time()) // 60)
        with self._lock:
            if not self._buckets or self._buckets[-1][0] != minute:
                self._buckets.append([minute, 0, 0])
            bucket = self._buckets[-1]
            bucket[1] += 1
            bucket[2] += 1 if status >= 500 else 0
            self._latencies.append(seconds)
            self._trim(minute)

    def _trim(self, minute: int) -> None:
        while self._buckets and self._buckets[0][0] <= minute - self.minutes:
            self._buckets.popleft()

    def summary(self, now: float | None = None) -> dict[str, Any]:
        minute = int((now if now is not None else time.time()) // 60)
        with self._lock:
            self._trim(minute)
            total = sum(b[1] for b in self._buckets)
            errors = sum(b[2] for b in self._buckets)
            latencies = sorted(self._latencies)
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


class DatabaseCollector(Collector):
    """Gauges read from the database at scrape time, so any process reports the same truth;
    without figures (the database did not answer) only `reach_database_up` 0."""

    def __init__(self, figures: dict[str, Any] | None) -> None:
        self.figures = figures

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "reach_database_up",
            "1 when this scrape read the gauges from the database, 0 when the database did "
            "not answer or was never migrated (those gauges are then left out)",
            0 if self.figures is None else 1,
        )
        if self.figures is None:
            return
        push = self.figures["push"]
        yield GaugeMetricFamily(
            "reach_push_backlog", "Push jobs due now and waiting for a worker", push["backlog_due"]
        )
        yield GaugeMetricFamily(
            "reach_push_deferred",
            "Push jobs waiting on purpose (quiet hours, a break)",
            push["deferred"],
        )
        yield GaugeMetricFamily(
            "reach_push_retrying",
            "Push jobs waiting out their backoff to be tried again after a failure",
            push["retrying"],
        )
        yield GaugeMetricFamily(
            "reach_push_oldest_pending_age_seconds",
            "How long the oldest due push job has waited",
            push["oldest_due_seconds"] or 0.0,
        )
        yield GaugeMetricFamily(
            "reach_push_dead_letters", "Push jobs dead-lettered (retry from /ops)", push["dead"]
        )
        attempts = GaugeMetricFamily(
            "reach_push_attempts_last_hour",
            "Push attempts in the last hour by outcome, from the database (every worker)",
            labels=["outcome"],
        )
        for row in push["outcomes"]:
            attempts.add_metric([row["outcome"]], row["count"])
        yield attempts
        yield GaugeMetricFamily(
            "reach_bids_last_hour", "Bids created in the last hour", self.figures["bids_last_hour"]
        )


def scrape() -> Response:
    """Prometheus text format: this process (or all of them, in multiprocess mode) + DB gauges."""
    from service.errors import database_said, is_unavailable, is_unmigrated
    from service.extensions import db
    from service.services.ops import scrape_figures

    settings = current_app.extensions["reach.settings"]
    figures: dict[str, Any] | None
    try:
        with db.scope() as session:
            figures = scrape_figures(session)
    except SQLAlchemyError as exc:
        # The process's own figures (503s, sockets, Redis) matter most during an outage.
        if not (is_unavailable(exc) or is_unmigrated(exc)):
            raise
        log.warning(
            "metrics served without the gauges read from the database: it did not answer",
            extra={"error": database_said(exc)},
        )
        figures = None
    database = CollectorRegistry(auto_describe=True)
    database.register(DatabaseCollector(figures))
    body = _process_metrics(settings.PROMETHEUS_MULTIPROC_DIR) + generate_latest(database)
    return Response(body, content_type=CONTENT_TYPE_LATEST)


def _process_metrics(multiproc_dir: str) -> bytes:
    if not multiproc_dir:
        return generate_latest(REGISTRY)
    reap_dead_processes(multiproc_dir)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiproc_dir)
    return generate_latest(registry)


_LIVE_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db$")


def reap_dead_processes(path: str) -> None:
    """Drop live gauges of processes that are gone (gunicorn restarts workers with new pids)."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        found = _LIVE_FILE.search(os.path.basename(name))
        if found and not _alive(int(found.group(1))):
            mark_process_dead(int(found.group(1)), path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def host_member_sockets(multiproc_dir: str) -> int | None:
    """Member sockets of every live process sharing the multiprocess directory (or None)."""
    if not multiproc_dir:
        return None
    reap_dead_processes(multiproc_dir)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=multiproc_dir)
    value = registry.get_sample_value("reach_socket_connections", {"namespace": "members"})
    return int(value or 0)


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape (the worker logs JSON; a probe every 10 s is noise)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def worker_endpoint(alive: Callable[[], str | None]) -> Callable[..., Iterable[bytes]]:
    """`reach worker`'s WSGI app: GET /metrics, this process's metrics (its push outcomes,
    what it left unsent, its Redis counters); GET /healthz, 200 while `alive()` says nothing
    is wrong, else 503 with what it said; anything else 404."""
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            problem = alive()
            status = "200 OK" if problem is None else "503 Service Unavailable"
            body = json.dumps({"status": "ok" if problem is None else problem}).encode()
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"GET /metrics or /healthz\n"]

    return app


def serve_worker_endpoint(address: tuple[str, int], alive: Callable[[], str | None]) -> WSGIServer:
    """Serve `worker_endpoint` at `address` on a daemon thread (a greenlet once gevent has
    patched the process, as `reach worker` does); `.shutdown()` stops it."""
    # The family the host names (an IPv6 bind such as [::]:9102 too), as prometheus-client's
    # own server picks it.
    family, _, _, _, sockaddr = socket.getaddrinfo(
        address[0], address[1], type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class _Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(
        str(sockaddr[0]), address[1], worker_endpoint(alive), _Server, _QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server
