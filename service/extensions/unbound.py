"""The extension objects, created unbound: create_app binds them to its app."""

from __future__ import annotations

from service.db import Database
from service.extensions.limit_keys import rate_limit_key
from service.extensions.route_limiter import RouteLimiter

db = Database()
limiter = RouteLimiter(rate_limit_key, headers_enabled=True)
