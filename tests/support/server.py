"""A live HTTP + Socket.IO server in a thread of the test process."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

from flask import Flask
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from service.realtime.queue import QueueManager


class _Handler(WSGIRequestHandler):
    """Closes the TCP connection once a websocket ends.

    Werkzeug would otherwise read the client's closing frame as a new HTTP request, and the
    client would wait out its close timeout.
    """

    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


class LiveServer:
    def __init__(self, app: Flask) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=_Handler
        )
        self.port = self._server.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> LiveServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        # A server on Redis stops receiving the other processes' messages too: its listener
        # would otherwise retry for the rest of the run once its Redis (a test's proxy) is gone,
        # logging into streams pytest has closed.
        manager = self.app.extensions["socketio"].server.manager
        if isinstance(manager, QueueManager):
            manager.stop_listening()
