"""Reach: the app factory."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from service.config import Settings


def create_app(settings: Settings | None = None, **overrides: Any) -> Flask:
    """Build the app: read settings, bind extensions, register endpoints and socket handlers."""
    from service.config import check_metrics_directory, from_environment

    settings = (settings or from_environment()).with_overrides(**overrides)
    # Before service.metrics is imported: prometheus-client writes there as it makes a metric.
    check_metrics_directory(settings)

    from flask import Flask
    from flask_socketio import SocketIO

    from service import api as rest
    from service import dashboard, logs, metrics, realtime, wire_json
    from service.allowed_origins import check_allowed_origins
    from service.bodies import AsciiIntegerConverter, ReachRequest, read_first
    from service.config import (
        check_choices,
        check_database_url,
        check_database_waits,
        check_migration_waits,
        check_push_batch,
        check_push_lease,
        check_rate_limits,
        check_redis_url,
        check_secret_key,
        worker_metrics_address,
    )
    from service.dashboard.live import same_origin_or
    from service.errors import register_error_handlers
    from service.extensions import db, limiter
    from service.mail import mailer
    from service.mail.relay import check_mail_settings
    from service.push.backends import backend_named
    from service.security.tokens import TokenIssuer
    from service.services.members import RecentMembers
    from service.setting_bounds import check_least_values

    check_database_url(settings)
    check_redis_url(settings)
    worker_metrics_address(settings)  # a malformed one stops every command, as others do
    check_choices(settings)
    check_least_values(settings)
    backend_named(settings.PUSH_BACKEND)
    check_mail_settings(settings)
    check_allowed_origins(settings)
    check_rate_limits(settings)
    if not settings.is_sqlite and not settings.TESTING:
        check_secret_key(settings.SECRET_KEY)
    check_push_lease(settings.PUSH_LEASE_SECONDS, settings.PUSH_TIMEOUT_SECONDS)
    check_push_batch(settings.PUSH_BATCH)
    check_database_waits(settings)
    check_migration_waits(settings)
    logs.configure(settings.LOG_LEVEL, settings.LOG_FORMAT)

    app = Flask(__name__, instance_relative_config=True)
    app.request_class = ReachRequest
    app.url_map.converters["int"] = AsciiIntegerConverter  # before any route is declared
    app.config.from_mapping(_flask_config(settings))
    app.json = wire_json.JSONProvider(app)
    app.extensions["reach.settings"] = settings
    app.extensions["reach.tokens"] = TokenIssuer(
        settings.secret_key,
        settings.JWT_ISSUER,
        settings.JWT_AUDIENCE,
        settings.ACCESS_TOKEN_SECONDS,
    )
    app.extensions["reach.recent_members"] = RecentMembers()
    queue = _message_queue(app, settings) if settings.REDIS_URL else None

    db.init_app(
        app,
        settings.database_url,
        pool_size=settings.DATABASE_POOL_SIZE,
        max_overflow=settings.DATABASE_MAX_OVERFLOW,
        bounds=_database_bounds(settings),
    )
    limiter.init_app(app)
    # One Socket.IO server per app (tests build several apps in one process).
    socketio = SocketIO(
        app,
        async_mode=_async_mode(settings),
        client_manager=queue,
        # The configured browser origins, and the service's own (the /ops dashboard).
        cors_allowed_origins=same_origin_or(settings.ALLOWED_ORIGINS),
        json=None,
        serializer=wire_json.Packet,
        ping_interval=settings.SOCKET_PING_INTERVAL,
        ping_timeout=settings.SOCKET_PING_TIMEOUT,
        max_http_buffer_size=settings.MAX_CONTENT_LENGTH,
    )
    if settings.SOCKET_TRANSPORT == "lean":
        from service.realtime import transport

        transport.install(socketio.server.eio, settings.GUNICORN_WORKER_CONNECTIONS)
    if settings.TRUSTED_PROXIES:
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.TRUSTED_PROXIES
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    register_error_handlers(app)
    rest.register(app)
    realtime.register(socketio, settings)
    dashboard.register(app, socketio)
    metrics.init_app(app)
    mailer.init_app(app, settings, socketio.start_background_task, socketio.sleep)
    app.before_request(read_first)
    if settings.worker_inline:
        app.extensions["reach.start_inline_worker"] = lambda: _start_inline_worker(app)
    elif settings.REDIS_URL:
        _wake_separate_workers(app)
    return app


def _message_queue(app: Flask, settings: Settings) -> Any:
    """Redis for this process's messages to the others: the Socket.IO message queue and the
    push workers' wake-ups, both published off the request path (service/pubsub.py)."""
    import atexit

    import redis

    from service.pubsub import Publications, connection_pool, database_channel
    from service.realtime.queue import CHANNEL, QueueManager

    pool = connection_pool(settings.REDIS_URL, settings.REDIS_TIMEOUT_MS / 1000)
    client = redis.Redis(connection_pool=pool)
    publications = Publications(client)
    app.extensions["reach.redis"] = client
    app.extensions["reach.publications"] = publications
    # What is queued when the process exits still goes out (a worker's last events).
    atexit.register(publications.flush, 1.0)
    return QueueManager(
        settings.REDIS_URL,
        publications,
        database_channel(CHANNEL, client),
        check_seconds=settings.REDIS_RECEIVE_CHECK_SECONDS,
    )


def _wake_separate_workers(app: Flask) -> None:
    from service.services import push_outbox
    from service.worker import wakeups

    push_outbox.on_enqueued(wakeups.publish_queued)


def _database_bounds(settings: Settings) -> Any:
    """The waits on PostgreSQL (service/db_bounds.py)."""
    from service.db import Bounds

    return Bounds(
        pool_seconds=settings.DATABASE_POOL_TIMEOUT,
        connect_seconds=settings.DATABASE_CONNECT_TIMEOUT,
        statement_ms=settings.DATABASE_STATEMENT_TIMEOUT_MS,
    )


def _start_inline_worker(app: Flask) -> None:
    from service.worker.runner import start_inline

    start_inline(app)


def _async_mode(settings: Settings) -> str:
    if settings.SOCKETIO_ASYNC_MODE:
        return settings.SOCKETIO_ASYNC_MODE
    try:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            return "gevent"
    except ImportError:  # pragma: no cover - gevent is a dependency
        pass
    return "threading"


def _flask_config(settings: Settings) -> dict[str, Any]:
    from service.pubsub import connection_pool
    from service.security.rate_counters import storage_uri

    return {
        "SECRET_KEY": settings.secret_key,
        "TESTING": settings.TESTING,
        "MAX_CONTENT_LENGTH": settings.MAX_CONTENT_LENGTH,
        "API_TITLE": "Reach",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.1.0",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": None,
        "RATELIMIT_ENABLED": settings.RATELIMIT_ENABLED,
        "RATELIMIT_STORAGE_URI": storage_uri(settings.REDIS_URL),
        "RATELIMIT_STORAGE_OPTIONS": {
            "connection_pool": connection_pool(settings.REDIS_URL, settings.REDIS_TIMEOUT_MS / 1000)
        }
        if settings.REDIS_URL
        else {},
        "RATELIMIT_HEADERS_ENABLED": True,
        # If Redis goes away, limit per process rather than fail the request. The requests that
        # were already waiting on Redis when the first of them moved the process to counting in
        # memory go through uncounted (flask-limiter logs each), as socket writes do.
        "RATELIMIT_IN_MEMORY_FALLBACK_ENABLED": bool(settings.REDIS_URL),
        "RATELIMIT_SWALLOW_ERRORS": True,
        "INVITE_TTL_MINUTES": settings.INVITE_TTL_MINUTES,
        "REFRESH_TOKEN_DAYS": settings.REFRESH_TOKEN_DAYS,
        "BID_TTL_SECONDS": settings.BID_TTL_SECONDS,
    }
