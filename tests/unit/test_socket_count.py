"""The socket gauge counts each socket once, however its disconnect is reported."""

from __future__ import annotations

from service import metrics


def gauge(namespace: str) -> float:
    """The gauge's value for this namespace, as a scrape reads it."""
    metrics.SOCKETS.labels(namespace=namespace)
    (family,) = metrics.SOCKETS.collect()
    return next(s.value for s in family.samples if s.labels.get("namespace") == namespace)


def test_a_socket_is_counted_once_and_uncounted_once() -> None:
    count, namespace = metrics.SocketCount(), "unit-test"
    before = gauge(namespace)
    count.connected(namespace, "a")
    count.connected(namespace, "a")  # a connect handler that ran twice
    count.connected(namespace, "b")
    assert (count.get(namespace), gauge(namespace)) == (2, before + 2)
    # The server cut "a" as the phone closed it: both report the disconnect.
    count.disconnected(namespace, "a")
    count.disconnected(namespace, "a")
    count.disconnected(namespace, "never-counted")
    assert (count.get(namespace), gauge(namespace)) == (1, before + 1)
    count.disconnected(namespace, "b")
    assert (count.get(namespace), gauge(namespace)) == (0, before)
