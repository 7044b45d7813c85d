"""Prometheus metrics and this process's request window: counted in-process, DB gauges at scrape."""

from service.metrics.counted import (
    BIDS_CREATED,
    PUBSUB_MESSAGES,
    PUBSUB_RECEIVE_FAILURES,
    PUSH_OUTCOMES,
    PUSHES_UNSENT,
    REQUEST_LATENCY,
    SOCKET_CAPACITY,
    SOCKETS,
    SocketCount,
    bid_created,
    pubsub_messages,
    pubsub_receive_failure,
    push_outcome,
    pushes_unsent,
    sockets,
)
from service.metrics.exposition import (
    DatabaseCollector,
    host_member_sockets,
    reap_dead_processes,
    scrape,
)
from service.metrics.http_requests import (
    HTTP_METHODS,
    RequestWindow,
    init_app,
    request_labels,
    requests_window,
)
from service.metrics.worker_server import serve_worker_endpoint, worker_endpoint

__all__ = [
    "BIDS_CREATED",
    "HTTP_METHODS",
    "PUBSUB_MESSAGES",
    "PUBSUB_RECEIVE_FAILURES",
    "PUSHES_UNSENT",
    "PUSH_OUTCOMES",
    "REQUEST_LATENCY",
    "SOCKETS",
    "SOCKET_CAPACITY",
    "DatabaseCollector",
    "RequestWindow",
    "SocketCount",
    "bid_created",
    "host_member_sockets",
    "init_app",
    "pubsub_messages",
    "pubsub_receive_failure",
    "push_outcome",
    "pushes_unsent",
    "reap_dead_processes",
    "request_labels",
    "requests_window",
    "scrape",
    "serve_worker_endpoint",
    "sockets",
    "worker_endpoint",
]
