"""Races between a phone and the server, made to happen on purpose.

Each holds one side at a known point (the database, a packet on its way out) while the other
side moves, then lets go.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from flask import Flask
from socketio import packet

from service.extensions import db
from tests.support.waiting import wait_until


def socket_closed(app: Flask, eio_sid: str) -> bool:
    """The server has closed this Engine.IO socket (or forgotten it)."""
    sock = app.extensions["socketio"].server.eio.sockets.get(eio_sid)
    return sock is None or bool(sock.closing or sock.closed)


def hang_up_while_connecting(
    app: Flask,
    url: str,
    namespace: str,
    auth: dict[str, Any] | None = None,
    cookies: dict[str, str] | None = None,
) -> None:
    """Over long-polling, ask to join `namespace`, then give up (Engine.IO CLOSE) while the
    server's connect handler still waits for the database (the test holds it), like a phone
    whose network drops mid-handshake (`cookies`: a browser's, for /ops). Returns once the
    connect handler has finished."""
    server = app.extensions["socketio"].server
    polling = f"{url}/socket.io/?EIO=4&transport=polling"
    http = requests.Session()
    http.cookies.update(cookies or {})
    opened = http.get(polling, timeout=5).text
    assert opened.startswith("0"), opened  # Engine.IO OPEN
    eio_sid = json.loads(opened[1:])["sid"]

    def connecting() -> bool:
        return bool(server.manager.pending_connect.get(namespace))

    prefix = "40" if namespace == "/" else f"40{namespace},"
    body = prefix + (json.dumps(auth) if auth is not None else "")
    asking = threading.Thread(
        target=lambda: http.post(f"{polling}&sid={eio_sid}", data=body, timeout=10)
    )
    with app.app_context(), db.scope():  # the connect handler waits for this
        asking.start()
        wait_until(connecting, timeout=5, what="the connect handler to start")
        requests.post(f"{polling}&sid={eio_sid}", data="1", timeout=5)
        wait_until(
            lambda: socket_closed(app, eio_sid),
            timeout=5,
            what="the server to see the socket close",
        )
        assert connecting(), "the connect handler finished while the database was held"
    asking.join(timeout=10)
    wait_until(lambda: not connecting(), timeout=5, what="the connect handler to finish")
    http.close()


@contextmanager
def server_disconnects_held(app: Flask) -> Iterator[threading.Event]:
    """Hold the server's Socket.IO DISCONNECT packets on their way out: a server-side cut
    (sign-out, disabled account) stops there, after it has begun and before its disconnect
    handler runs. Yields an event set once a cut is held; everything is let go on exit."""
    server = app.extensions["socketio"].server
    send = server._send_packet
    held, go = threading.Event(), threading.Event()

    def send_packet(eio_sid: str, pkt: Any) -> None:
        if pkt.packet_type == packet.DISCONNECT:
            held.set()
            go.wait(10)
        send(eio_sid, pkt)

    server._send_packet = send_packet
    try:
        yield held
    finally:
        go.set()
        server._send_packet = send
