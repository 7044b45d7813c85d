"""Counted in-process: request latency, sockets, bids, pushes, mails and Redis messages."""

from __future__ import annotations

import threading

from prometheus_client import Counter, Gauge, Histogram

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
MAILS = Counter(
    "reach_mails",
    "Mails by kind (password_reset...) and outcome: sent (handed to the relay), logged "
    "(MAIL_BACKEND=log), or failed (the relay refused it or could not be reached, on its last "
    "try); and retried, once per try that failed for a passing reason and is tried again",
    ["kind", "outcome"],
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


def mail_outcome(kind: str, outcome: str) -> None:
    MAILS.labels(kind=kind, outcome=outcome).inc()


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
