"""What service/stopping.py relies on in gunicorn and engineio, pinned: each test fails loudly
when the library changes under it. tests/topology/test_graceful_stop.py tests the stop itself,
with a real process and real clients."""

from __future__ import annotations

import hashlib
import inspect
import socket

from engineio.socket import Socket
from gunicorn import util
from gunicorn.util import load_class
from gunicorn.workers.base import Worker
from gunicorn.workers.base_async import AsyncWorker
from gunicorn.workers.ggevent import GeventWorker

from service import stopping
from service.server import gunicorn_settings

# sha256 of gunicorn 27.0.1's GeventWorker.run, which stopping.Worker.run and _serve replace.
GEVENT_RUN = "50119854ef8be38caa6e96a5978978de9c42bc0b24ac22228101399e7ef3005d"


def test_the_configured_worker_is_gunicorns_gevent_worker_with_its_own_stop() -> None:
    worker_class = load_class(gunicorn_settings()["worker_class"])
    assert worker_class is stopping.Worker
    assert issubclass(worker_class, GeventWorker)


def test_gunicorns_gevent_worker_run_is_the_one_replaced() -> None:
    source = inspect.getsource(GeventWorker.run)
    assert hashlib.sha256(source.encode()).hexdigest() == GEVENT_RUN, (
        "gunicorn's GeventWorker.run changed: service/stopping.py's Worker.run and _serve "
        "replace it (each listener served by a StreamServer with a Pool, the loop while alive, "
        "the graceful wait); carry over what changed, then update GEVENT_RUN"
    )


def test_gunicorn_serves_each_request_of_a_connection_through_handle_request() -> None:
    # Worker.handle registers the connection's socket; Worker.handle_request marks it busy.
    source = inspect.getsource(AsyncWorker.handle)
    assert "self.handle_request(listener_name, req, client, addr)" in source
    assert "while True:" in source  # the keep-alive loop, which StopIteration ends


def test_gunicorn_answers_what_it_cannot_read_through_util_write_error() -> None:
    # service/unreadable.py puts write_problem in its place.
    assert list(inspect.signature(util.write_error).parameters) == [
        "sock",
        "status_int",
        "reason",
        "mesg",
    ]
    assert "util.write_error(client, status_int, reason, mesg)" in inspect.getsource(
        Worker.handle_error
    )


def test_an_engineio_socket_closes_with_a_reason_and_says_whether_it_is_upgraded() -> None:
    parameters = inspect.signature(Socket.close).parameters
    assert {"wait", "abort", "reason"} <= set(parameters)
    assert "self.upgraded = False" in inspect.getsource(Socket.__init__)


def test_unread_bytes_counts_what_the_peer_sent_and_nobody_read() -> None:
    ours, peer = socket.socketpair()
    try:
        assert stopping._unread_bytes(ours) == 0
        peer.sendall(b"GET / HTTP/1.1\r\n")
        assert stopping._unread_bytes(ours) == 16
        ours.recv(16)
        assert stopping._unread_bytes(ours) == 0
    finally:
        ours.close()
        peer.close()
    assert stopping._unread_bytes(ours) == 0  # closed: nothing to read, no error
