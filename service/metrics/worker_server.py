"""`reach worker`'s own small server: GET /metrics and the liveness GET /healthz."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape (the worker logs JSON; a probe every 10 s is noise)."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def worker_endpoint(alive: Callable[[], str | None]) -> Callable[..., Iterable[bytes]]:
    """`reach worker`'s WSGI app: GET /metrics, this process's metrics (its push outcomes,
    what it left unsent, its Redis counters); GET /healthz, 200 while `alive()` says nothing
    is wrong, else 503 with what it said; anything else 404."""
    metrics_app = make_wsgi_app(REGISTRY)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            problem = alive()
            status = "200 OK" if problem is None else "503 Service Unavailable"
            body = json.dumps({"status": "ok" if problem is None else problem}).encode()
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"GET /metrics or /healthz\n"]

    return app


def serve_worker_endpoint(address: tuple[str, int], alive: Callable[[], str | None]) -> WSGIServer:
    """Serve `worker_endpoint` at `address` on a daemon thread (a greenlet once gevent has
    patched the process, as `reach worker` does); `.shutdown()` stops it."""
    # The family the host names (an IPv6 bind such as [::]:9102 too), as prometheus-client's
    # own server picks it.
    family, _, _, _, sockaddr = socket.getaddrinfo(
        address[0], address[1], type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]

    class _Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(
        str(sockaddr[0]), address[1], worker_endpoint(alive), _Server, _QuietHandler
    )
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server
