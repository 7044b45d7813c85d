"""GET /metrics: this process's metrics (or every live process's) and the database's gauges."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

from flask import Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger("reach.metrics")


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
            "reach_push_backlog",
            "Push jobs due now and waiting for a worker (those a stopped worker held too, once "
            "its lease has run out)",
            push["backlog_due"],
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
    """Drop live gauges of processes that are gone (gunicorn restarts workers with new pids),
    as prometheus-client's `mark_process_dead` does; another process scraping at the same
    moment may have dropped a file first."""
    for name in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        found = _LIVE_FILE.search(os.path.basename(name))
        if found and not _alive(int(found.group(1))):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)


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
