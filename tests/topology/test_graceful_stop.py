"""Stopping an API process as Kubernetes and rolling deploys do: SIGTERM to gunicorn's master.

`reach serve` runs in a subprocess with real clients connected: an idle keep-alive HTTP
connection (nginx always keeps some), WebSocket and long-polling Socket.IO clients, and a
request in flight. The process closes every connection, answers the request, runs its exit
hooks and exits, well before the graceful timeout (service/stopping.py). Before, it waited for
the whole timeout and was SIGKILLed, and the sockets were cut (a transport error).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from service.demo import embedded_service
from tests.support.client import ApiClient
from tests.support.phones import Phone
from tests.support.waiting import wait_until

GRACEFUL_TIMEOUT = 15
# Exiting takes well under a second here; the bound leaves room for a slow machine and is still
# far from the graceful timeout, which is what the process used to take.
STOPPED_WITHIN = 5.0
# A poll under way this long has been parked by the server: it had nothing to answer it with.
PARKED = 0.2


def held_request(url: str, path: str, token: str, body: bytes) -> socket.socket:
    """A request that stays in flight until the test sends its body: gunicorn has parsed its
    headers and is serving it (it answered 100 Continue); the app waits for the body."""
    host, port = url.removeprefix("http://").split(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Expect: 100-continue\r\n\r\n".encode()
    )
    assert conn.recv(64).startswith(b"HTTP/1.1 100 Continue"), "the request did not reach the app"
    return conn


class InFlight:
    """The HTTP requests a long-polling phone has under way, by method (its Engine.IO client
    sends each through `_send_request`), and when its current poll was sent."""

    def __init__(self, phone: Phone) -> None:
        self.requests: Counter[str] = Counter()
        self.poll_sent = 0.0
        self.lock = threading.Lock()
        eio = phone.client.eio
        send = eio._send_request

        def counted(method: str, *args: Any, **kwargs: Any) -> Any:
            with self.lock:
                self.requests[method] += 1
                if method == "GET":
                    self.poll_sent = time.monotonic()
            try:
                return send(method, *args, **kwargs)
            finally:
                with self.lock:
                    self.requests[method] -= 1

        eio._send_request = counted

    def at_rest(self) -> bool:
        """Its poll parked on the server: under way for PARKED seconds with nothing to answer
        it (a poll the server has packets for comes back within milliseconds), and no other
        request under way."""
        with self.lock:
            return (
                self.requests["GET"] == 1
                and self.requests["POST"] == 0
                and time.monotonic() - self.poll_sent >= PARKED
            )


def read_until_closed(conn: socket.socket) -> bytes:
    received = b""
    while chunk := conn.recv(65536):
        received += chunk
    return received


def log_lines(path: Path) -> list[dict[str, object]]:
    lines = []
    for raw in path.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


@pytest.mark.parametrize("transport", ["lean", "stock"])
def test_sigterm_closes_every_connection_answers_requests_in_flight_and_exits_at_once(
    tmp_path: Path, transport: str
) -> None:
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(
        REACH_INSTANCE_DIR=str(tmp_path / "instance"),
        LOG_LEVEL="INFO",
        LOG_FORMAT="json",
        GUNICORN_LOG_LEVEL="info",
        GUNICORN_GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT),
        SOCKET_TRANSPORT=transport,
        SOCKET_CLOSE_SPREAD_SECONDS="0",  # all at once: tests/realtime/test_stopping.py spreads
    )
    log = tmp_path / "serve.log"
    phones: list[Phone] = []
    with log.open("wb") as stderr, embedded_service(env, stderr=stderr) as (url, server):
        api = ApiClient(url)
        ana, ben = api.couple()
        # One idle keep-alive connection, as nginx's upstream `keepalive` holds.
        port = int(url.rsplit(":", 1)[1])
        idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        idle.request("GET", "/healthz")
        assert idle.getresponse().read()
        # Socket.IO clients over both transports.
        for person, transports in [
            (ana, ("websocket",)),
            (ben, ("websocket",)),
            (ana, ("polling",)),
            (ben, ("polling",)),
        ]:
            phones.append(Phone(url, person.access_token).connect(transports))
        # Each client at rest: a long-polling one has its next poll waiting on the server,
        # which is what the stop answers with the CLOSE. (One caught between two polls, the
        # answer to its last on the way, finds its session gone and reconnects as after a
        # transport error: Engine.IO keeps no CLOSE for a poll that is not there yet.)
        polls = [InFlight(phone) for phone in phones if phone.client.transport() == "polling"]
        for phone in phones:
            assert phone.call("at.rest", {})["status"] == 404
        assert len(polls) == 2
        wait_until(lambda: all(p.at_rest() for p in polls), 5, "the polling clients at rest")
        body = json.dumps({"client_id": str(uuid.uuid4()), "kind": "connect"}).encode()
        in_flight = held_request(url, "/api/v1/bids", ana.access_token, body)

        stopped_at = time.monotonic()
        server.send_signal(signal.SIGTERM)

        # The idle connection is closed at once: the server's end of the stream, no response.
        assert idle.sock is not None
        assert idle.sock.recv(1) == b""
        # Every Socket.IO client saw the server close it (an Engine.IO CLOSE, not a transport
        # error), long-polling ones included: their pending request was answered with it.
        for phone in phones:
            assert phone.wait_for("disconnect", timeout=STOPPED_WITHIN) == "server disconnect"
        # The process stopped accepting before it closed them: a phone reconnecting at once
        # is refused here, and a balancer sends it to another process.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=10).close()
        # The request in flight holds the process up, and is answered; its keep-alive
        # connection is then closed.
        assert server.poll() is None
        in_flight.sendall(body)
        answer = read_until_closed(in_flight)
        in_flight.close()
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]

        assert server.wait(timeout=GRACEFUL_TIMEOUT + 5) == 0
        took = time.monotonic() - stopped_at
        assert took < STOPPED_WITHIN, f"stopping took {took:.1f}s"

    messages = [line["msg"] for line in log_lines(log)]
    # gunicorn's worker_exit ran, then the interpreter's atexit hooks, the service's included
    # (the flush of pending messages): the last of them, registered first, logs this.
    assert "API process exited: its exit hooks ran" in messages
    text = log.read_text()
    assert "Worker exiting" in text
    assert "graceful timeout" not in text and "SIGKILL" not in text
    assert "Traceback" not in text
