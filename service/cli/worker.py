"""`reach worker`: the worker as a process of its own, with its metrics and liveness."""

from __future__ import annotations

import logging

import click
from flask import current_app
from flask.cli import with_appcontext

from service.cli import main


@main.command("worker")
@click.option(
    "--idle",
    default=0.5,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds to rest when idle (more than 0)",
)
@with_appcontext
def worker(idle: float) -> None:
    """Run the worker: send pushes from the outbox, expire bids, end repair breaks (their
    reminders go as pushes), and delete what is past its retention."""
    import signal

    from service import metrics
    from service.config import worker_metrics_address
    from service.worker import wakeups
    from service.worker.runner import Worker

    app = current_app._get_current_object()  # type: ignore[attr-defined]
    runner = Worker(app, idle_seconds=idle)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: runner.stop())
    redis = app.extensions.get("reach.redis")
    if redis is not None:
        from service.redis_check import say_if_unreachable

        say_if_unreachable(redis, app.extensions["reach.settings"].REDIS_URL)
    # With Redis, the API processes wake this worker as soon as they queue a push.
    listener = wakeups.Listener(redis, runner.wake).start() if redis is not None else None
    if redis is None:
        logging.getLogger("reach.worker").warning(
            "worker without REDIS_URL: the bids it expires and the breaks it ends reach phones "
            "through GET /sync only, not over their sockets, and it finds new pushes only on "
            "its idle pass; set REDIS_URL as the API processes have it",
            extra={"worker": runner.name, "idle_seconds": idle},
        )
    address = worker_metrics_address(app.extensions["reach.settings"])
    # Its own counters (push outcomes) are scraped here: no API process serves them.
    endpoint = metrics.serve_worker_endpoint(address, runner.stalled) if address else None
    click.echo(f"worker {runner.name} running (SIGTERM stops it after the current pass)")
    if address is not None and endpoint is not None:
        where = f"http://{address[0]}:{endpoint.server_port}"
        click.echo(f"worker metrics on {where}/metrics, liveness on {where}/healthz")
    try:
        runner.run_forever()
    finally:
        if listener is not None:
            listener.stop()
        if endpoint is not None:
            endpoint.shutdown()
            endpoint.server_close()
