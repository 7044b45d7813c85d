"""gunicorn settings as a module: `gunicorn -c python:service.gunicorn_config ...`."""

from __future__ import annotations

import os
import sys

from service.config import SettingsError
from service.server import gunicorn_settings

try:
    _settings = gunicorn_settings()
except SettingsError as exc:  # an operator's mistake: what to set, not a traceback
    sys.exit(f"Error: {exc}")

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = 1
worker_class = _settings["worker_class"]
worker_connections = _settings["worker_connections"]
keepalive = _settings["keepalive"]
timeout = _settings["timeout"]
graceful_timeout = _settings["graceful_timeout"]
accesslog = _settings["accesslog"]
errorlog = _settings["errorlog"]
loglevel = _settings["loglevel"]
on_starting = _settings["on_starting"]
post_worker_init = _settings["post_worker_init"]
worker_exit = _settings["worker_exit"]
control_socket_disable = _settings["control_socket_disable"]
