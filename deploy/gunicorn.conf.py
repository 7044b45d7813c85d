"""gunicorn settings for Reach: `gunicorn -c deploy/gunicorn.conf.py wsgi:app`.

One gevent worker per process (Flask-SocketIO); scale with more processes behind a load
balancer with sticky sessions, and REDIS_URL set so processes share the Socket.IO queue.
"""

import os

from service.server import gunicorn_settings

_settings = gunicorn_settings()

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = 1
worker_class = _settings["worker_class"]
worker_connections = _settings["worker_connections"]
keepalive = _settings["keepalive"]
timeout = _settings["timeout"]
graceful_timeout = _settings["graceful_timeout"]
accesslog = None
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "warning")
post_worker_init = _settings["post_worker_init"]
