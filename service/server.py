"""Running the service under gunicorn with one gevent worker per process."""

from __future__ import annotations

import sys
from typing import Any

from service.config import Settings, SettingsError, check_metrics_directory, from_environment


def gunicorn_settings() -> dict[str, Any]:
    """The settings every Reach process runs with (also read by deploy/gunicorn.conf.py)."""
    from service.setting_bounds import check_least_values

    settings = from_environment()
    # Before gunicorn loads its worker class, whose imports make the metrics.
    check_metrics_directory(settings)
    # Before gunicorn reads its own (worker_connections): it refuses -1 naming none of ours.
    check_least_values(settings)
    return {
        # Flask-SocketIO needs exactly one worker per process; scale with processes. gunicorn's
        # gevent worker, whose stop on SIGTERM ends when its work does (service/stopping.py).
        "worker_class": "service.stopping.Worker",
        "threads": 1,
        # The gevent worker accepts 1,000 connections by default; sockets are long-lived.
        "worker_connections": settings.GUNICORN_WORKER_CONNECTIONS,
        "keepalive": 75,
        "timeout": 60,
        "graceful_timeout": settings.GUNICORN_GRACEFUL_TIMEOUT,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.GUNICORN_LOG_LEVEL,
        "on_starting": on_starting,
        "post_worker_init": post_worker_init,
        "worker_exit": worker_exit,
        # gunicorn's control socket (`gunicornc`) is one path per user by default, so every
        # server of a host would bind the same one, the last started taking it over; processes
        # are managed by signals (Kubernetes, compose, systemd), so none is opened.
        "control_socket_disable": True,
    }


def on_starting(server: Any) -> None:
    """Before the master starts its workers, drop the live gauges (sockets) that processes no
    longer running left in PROMETHEUS_MULTIPROC_DIR. A container restarted with the same
    directory (an emptyDir outlives it) gives its new worker the pid of the old one, which
    would otherwise go on from the sockets the old one held when it died."""
    directory = from_environment().PROMETHEUS_MULTIPROC_DIR
    if directory:
        from service.metrics import reap_dead_processes

        reap_dead_processes(directory)


def post_worker_init(worker: Any) -> None:
    """Start the in-process worker when asked (embedded default, WORKER_MODE=inline); say if
    Redis does not answer, or if production's mails are only logged; fit the connections the
    process holds to its open-files limit (service/open_files.py); then tame the garbage
    collector (service/gc_tuning.py)."""
    from service import gc_tuning

    app = worker.wsgi
    extensions = getattr(app, "extensions", {})
    starter = extensions.get("reach.start_inline_worker")
    if starter is not None:
        try:
            starter()
        except SettingsError as exc:  # its push backend: what to set, once, as wsgi.py says
            print(f"Error: {exc}", file=sys.stderr)
            raise SystemExit(4) from None  # gunicorn's "App failed to load": it stops
    # Any app served with these settings gets both (the bench relay too).
    settings = extensions.get("reach.settings") or from_environment()
    if extensions.get("reach.redis") is not None:
        from service.redis_check import say_if_unreachable

        say_if_unreachable(extensions["reach.redis"], settings.REDIS_URL)
    from service.mail import MAILER
    from service.mail.mailer import say_if_only_logged

    say_if_only_logged(extensions.get(MAILER), settings)
    _fit_open_files(worker, extensions.get("socketio"), settings)
    gc_tuning.install(gc_tuning.policy_of(settings))


def _fit_open_files(worker: Any, socketio: Any, settings: Settings) -> None:
    """Raise the open-files limit for the connections the settings allow, or hold fewer within
    it (service/open_files.py): upgraded WebSockets on the lean transport, which leave
    gunicorn's pool, and the pool itself (`worker_connections`, read when the worker runs)."""
    from service import metrics, open_files
    from service.realtime import transport

    wanted = settings.GUNICORN_WORKER_CONNECTIONS
    eio = getattr(getattr(socketio, "server", None), "eio", None)
    database = settings.DATABASE_POOL_SIZE + settings.DATABASE_MAX_OVERFLOW
    if transport.serves(eio):
        least = min(wanted, open_files.IN_FLIGHT)
        budget = open_files.fit(wanted, wanted, database, in_flight_at_least=least)
        transport.hold_at_most(eio, budget.sockets)
        capacity = budget.sockets
    else:  # every socket stays one of gunicorn's connections
        budget = open_files.fit(0, wanted, database, in_flight_at_least=wanted)
        capacity = budget.in_flight
    worker.worker_connections = budget.in_flight
    metrics.SOCKET_CAPACITY.set(capacity)


def worker_exit(server: Any, worker: Any) -> None:
    """Let the in-process worker finish its pass and stop with the process."""
    app = getattr(worker, "wsgi", None)
    inline = getattr(app, "extensions", {}).get("reach.inline_worker")
    if inline is not None:
        inline.stop()


def gunicorn_command(bind: str, workers: int) -> list[str]:
    """The command line that serves Reach with the settings above."""
    import sys

    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:service.gunicorn_config",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "service:create_app()",
    ]
