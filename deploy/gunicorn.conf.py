"""gunicorn settings for Reach: `gunicorn -c deploy/gunicorn.conf.py wsgi:app`.

One gevent worker per process (Flask-SocketIO); scale with more processes behind a load
balancer with sticky sessions, and REDIS_URL set so processes share the Socket.IO queue.
The settings themselves live in service/gunicorn_config.py (also used by `reach serve`).
"""

import os

from service.gunicorn_config import *  # noqa: F403

bind = os.environ.get("BIND", "0.0.0.0:8000")
