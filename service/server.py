"""Running the service under gunicorn with one gevent worker per process."""

from __future__ import annotations

import os
from typing import Any

from gunicorn.app.base import BaseApplication


def gunicorn_settings() -> dict[str, Any]:
    """The settings every Reach process runs with (also read by deploy/gunicorn.conf.py)."""
    return {
        # Flask-SocketIO needs exactly one worker per process; scale with processes.
        "worker_class": "gevent",
        "threads": 1,
        # The gevent worker accepts 1,000 connections by default; sockets are long-lived.
        "worker_connections": int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "10000")),
        "keepalive": 75,
        "timeout": 60,
        "graceful_timeout": 20,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "post_worker_init": post_worker_init,
    }


def post_worker_init(worker: Any) -> None:
    """Start the in-process worker when the embedded default (or WORKER_MODE=inline) asks."""
    app = worker.wsgi
    starter = getattr(app, "extensions", {}).get("reach.start_inline_worker")
    if starter is not None:
        starter()


class _Gunicorn(BaseApplication):
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key.lower(), value)

    def load(self) -> Any:
        from service import create_app

        return create_app()


def run_gunicorn(bind: str, workers: int) -> None:
    _Gunicorn({**gunicorn_settings(), "bind": bind, "workers": workers}).run()
