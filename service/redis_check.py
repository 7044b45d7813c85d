"""A starting process's first word with Redis: when it does not answer, one line on what to
check (flask-limiter only says, at the first limited request, that its storage is away)."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import redis

from service.config import redis_address

log = logging.getLogger("reach.redis")


def say_if_unreachable(client: Any, url: str) -> bool:
    """Ping Redis (REDIS_URL) once; if it does not answer, log where it was looked for and what
    to check, never its password. Whether it answered."""
    try:
        client.ping()
    except redis.RedisError as exc:
        where = redis_address(url)
        said = str(exc).rstrip(".")
        password = urlsplit(url).password if not url.startswith("unix://") else None
        if password:
            said = said.replace(password, "***")
        log.warning(
            f"Redis at {where} (REDIS_URL) does not answer: {type(exc).__name__}: {said}. Until "
            f"it does, rate limits are counted in each process, socket events reach only the "
            f"sockets of the process that made them, and workers find new pushes on their idle "
            f"pass. Check: is Redis running, and reachable from this host at {where} (firewall, "
            f"DNS)? Are REDIS_URL's host, port, password and scheme (rediss:// for TLS) right?",
            extra={"setting": "REDIS_URL", "redis": where, "error": type(exc).__name__},
        )
        return False
    return True
