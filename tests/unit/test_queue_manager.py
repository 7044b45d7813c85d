"""The message queue's receiving end (service/realtime/queue.py): an emit from another process
reaches this process's sockets in its rooms, and one for rooms with no socket here is dropped
before python-socketio encodes it. Delivery between real processes over Redis is
tests/realtime/test_message_queue.py and tests/topology."""

from __future__ import annotations

from typing import Any

import redis
import socketio

from service.pubsub import Publications
from service.realtime.queue import QueueManager

# Never connected to: these tests hand messages to the receiving end directly.
NOWHERE = "redis://127.0.0.1:1/0"


class Receiving:
    """A Socket.IO server on a QueueManager, with one socket in the room `user:a`; records the
    packets it encodes and those it sends to its sockets."""

    def __init__(self) -> None:
        self.manager = QueueManager(
            NOWHERE, Publications(redis.Redis.from_url(NOWHERE)), check_seconds=5
        )
        self.server = socketio.Server(client_manager=self.manager)
        self.encoded: list[Any] = []
        self.sent: list[tuple[str, Any]] = []
        encoded = self.encoded

        class Counted(self.server.packet_class):
            def encode(self) -> Any:
                encoded.append(self.data)
                return super().encode()

        self.server.packet_class = Counted
        self.server._send_eio_packet = lambda eio_sid, packet: self.sent.append(
            (eio_sid, packet.data)
        )
        sid = self.manager.connect("eio-ana", "/")
        self.manager.enter_room(sid, "/", "user:a", eio_sid="eio-ana")

    def receive(self, room: Any) -> None:
        self.manager._handle_emit(
            {
                "method": "emit",
                "event": "bid.created",
                "data": [{"type": "bid.created"}],
                "namespace": "/",
                "room": room,
                "host_id": "another-process",
            }
        )


def test_an_emit_for_rooms_without_a_socket_here_is_dropped_unencoded() -> None:
    here = Receiving()

    here.receive(["user:b", "user:c"])
    here.receive("user:b")

    assert here.encoded == []
    assert here.sent == []


def test_an_emit_for_a_room_with_a_socket_here_reaches_it() -> None:
    here = Receiving()

    here.receive(["user:b", "user:a"])
    here.receive("user:a")

    assert [eio_sid for eio_sid, _ in here.sent] == ["eio-ana", "eio-ana"]
    assert all("bid.created" in data for _, data in here.sent)


def test_an_emit_to_every_socket_reaches_the_sockets_here() -> None:
    here = Receiving()

    here.receive(None)

    assert [eio_sid for eio_sid, _ in here.sent] == ["eio-ana"]
