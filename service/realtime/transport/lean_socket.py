"""LeanSocket: an engineio socket written by a drain task and pinged by one pinger per server."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from engineio import exceptions, packet
from engineio.socket import Socket
from gevent import spawn_raw

from service.realtime.deadlines import Deadlines
from service.realtime.transport.oversized import Oversized
from service.realtime.transport.websocket import WebSocket

log = logging.getLogger("reach.realtime")


class LeanSocket(Socket):
    """An engineio socket whose WebSocket has no reader, writer or ping task of its own."""

    last_ping: float | None
    connected: bool
    _ws: WebSocket | None
    _draining: bool
    _drain_lock: threading.Lock

    def adopt(self) -> None:
        self._ws = None
        self._draining = False
        self._drain_lock = threading.Lock()

    # -- sending: a drain task while there is something to write ---------------------------

    def send(self, pkt: packet.Packet) -> None:
        super().send(pkt)
        self._drain_soon()

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        super().close(wait=False, abort=abort, reason=reason)
        self._drain_soon()
        # Long-polling: the CLOSE waits for the phone's next GET, which may never come, so the
        # caller (the POST engineio refuses as too large, say) must not wait for it.
        if wait and self._ws is not None:
            self.queue.join()

    def _drain_soon(self) -> None:
        if self._ws is None:
            return  # long-polling: the phone's GET requests take the packets
        with self._drain_lock:
            if self._draining:
                return
            self._draining = True
        if self.server.async_mode == "gevent":
            spawn_raw(self._drain)  # a bare greenlet: no Greenlet bookkeeping per burst
        else:
            self.server.start_background_task(self._drain)

    def _drain(self) -> None:
        """Write what is queued, then end; only this task takes from the queue once upgraded."""
        ws = self._ws
        assert ws is not None
        while True:
            with self._drain_lock:
                if self.queue.empty():
                    self._draining = False
                    return
            pkt = self.queue.get(block=False)
            try:
                if pkt is None:
                    ws.close()
                elif ws.connected:
                    ws.send(pkt.encode())
            except OSError:
                ws.abort()  # the reader sees the connection end and closes the socket
            finally:
                self.queue.task_done()

    # -- pings: one pinger per server -------------------------------------------------------

    def schedule_ping(self) -> None:
        if self.last_ping:  # engineio's rule: one ping cycle at a time
            self.last_ping = None
            _pinger(self.server).add(self)

    def ping(self) -> None:
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.send(packet.Packet(packet.PING))

    # -- the WebSocket's life ---------------------------------------------------------------

    def _websocket_handler(self, ws: Any) -> list[Any]:
        if not isinstance(ws, WebSocket):  # another transport: engineio's own handler
            return super()._websocket_handler(ws)
        ws.sock.settimeout(self.server.ping_interval + self.server.ping_timeout)
        if self.connected and not self._upgrade(ws):
            return []
        if len(self.server.sockets) > self.server.max_sockets:
            log.warning("socket %s refused: %d sockets open", self.sid, len(self.server.sockets))
            ws.refuse()
            self._on_close()
            return []
        self.connected = self.upgraded = True
        self._ws = ws
        with self._drain_lock:
            self._draining = True
        self._drain()  # what was queued before the WebSocket took over, from this greenlet
        if ws.can_detach:
            ws.detach(self._on_message, self._on_close)
            return []
        while (data := ws.wait()) is not None:
            if not self._on_message(data):
                break
        self._on_close()
        ws.abort()
        return []

    def _on_message(self, data: str | bytes | Oversized) -> bool:
        """Handle one packet from the phone; False when the socket should end."""
        if isinstance(data, Oversized):
            return self._on_oversized(data)
        try:
            received = packet.Packet(encoded_packet=data)
        except ValueError as exc:  # not Engine.IO (no packet type): a client bug, no traceback
            log.warning(
                "socket %s: a frame that is not an Engine.IO packet, closing",
                self.sid,
                extra={"error": str(exc)[:64], "characters": len(data)},
            )
            return False
        try:
            self.receive(received)
        except exceptions.UnknownPacketError:
            return True
        except exceptions.SocketIsClosedError:
            return False
        except Exception:
            log.exception("socket %s: could not handle a packet, closing", self.sid)
            return False
        return True

    def _on_oversized(self, message: Oversized) -> bool:
        """A message over the limit: answered by the server's `on_oversized`, not handled."""
        log.info(
            "socket %s: a message over the size limit, not handled",
            self.sid,
            extra={"bytes": message.size, "limit": self.server.max_http_buffer_size},
        )
        answer = getattr(self.server, "on_oversized", None)
        if answer is None:
            return True
        try:
            answer(self.sid, message)
        except Exception:
            log.exception("socket %s: could not answer a message over the limit", self.sid)
        return True

    def _on_close(self) -> None:
        self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
        self.server.sockets.pop(self.sid, None)

    def _upgrade(self, ws: WebSocket) -> bool:
        """From long-polling to WebSocket: the PING probe, then UPGRADE (engineio's protocol)."""
        self.upgrading = True
        try:
            probe = ws.wait()
            if not isinstance(probe, str | bytes):  # gone, or a message over the limit
                return False
            if packet.Packet(encoded_packet=probe).packet_type != packet.PING:
                return False
            ws.send(packet.Packet(packet.PONG, data="probe").encode())
            self.queue.put(packet.Packet(packet.NOOP))  # ends the phone's pending poll
            confirm = ws.wait()
            if not isinstance(confirm, str | bytes):
                return False
            return packet.Packet(encoded_packet=confirm).packet_type == packet.UPGRADE
        finally:
            self.upgrading = False


def _pinger(server: Any) -> Deadlines[LeanSocket]:
    """Sends each socket's Engine.IO PING when its interval is up: one task per server.
    engineio schedules a ping when the previous PONG arrives, and the interval is the same for
    every socket."""
    pinger = getattr(server, "_reach_pinger", None)
    if pinger is None:
        pinger = Deadlines(server, server.ping_interval, LeanSocket.ping, "sending a ping")
        server._reach_pinger = pinger
    return pinger
