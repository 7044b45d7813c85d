"""A write that loses the race with the phone's closing frame ends as a closed socket.

In a threaded server the drain task can pass its `connected` check just before the reader
answers the phone's close frame; wsproto then refuses the write. That must surface as the
transport's "closed" error (which the drain task handles by dropping the connection), not as
wsproto's own exception escaping the task.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import CloseConnection

from service.realtime.transport import WebSocket


@pytest.fixture
def server_side() -> Iterator[tuple[WebSocket, socket.socket]]:
    ours, phone = socket.socketpair()
    ws = WebSocket(
        handler=None, server=SimpleNamespace(async_mode="threading", max_http_buffer_size=1_000_000)
    )
    ws.sock, ws.connected = ours, True
    yield ws, phone
    ours.close()
    phone.close()


def test_a_write_after_the_phone_closed_raises_the_closed_error(
    server_side: tuple[WebSocket, socket.socket],
) -> None:
    ws, phone = server_side
    closing = Connection(ConnectionType.CLIENT).send(CloseConnection(code=1000))
    ws._feed(closing)  # the reader answers the close frame
    assert ws._conn.state == ConnectionState.CLOSED
    ws.connected = True  # ...while the drain task already passed its check

    with pytest.raises(OSError, match="closed"):
        ws.send('42["bid.created",{}]')
    assert phone.recv(64)  # only the answer to the close frame went out
