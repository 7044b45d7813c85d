"""`reach serve`: the API and sockets under gunicorn + gevent."""

from __future__ import annotations

import os

import click

from service.cli import _safe_url, main
from service.config import from_environment


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on")
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="gunicorn processes (more than 1 needs PostgreSQL and REDIS_URL)",
)
@click.option("--no-migrate", is_flag=True, help="Do not migrate the database first")
def serve(host: str, port: int, workers: int, no_migrate: bool) -> None:
    """Serve the API and sockets with gunicorn + gevent (migrates the embedded database first)."""
    from service.push.backends import check_backend
    from service.server import gunicorn_command

    settings = from_environment()
    if settings.worker_inline:  # this process will send the pushes: refuse now, not at boot
        check_backend(settings.PUSH_BACKEND, settings.FIREBASE_CREDENTIALS)
    if not no_migrate and settings.is_sqlite:
        from service import migrate

        click.echo(f"migrating {_safe_url(settings.database_url)} ...")
        migrate.upgrade(settings.database_url)
    if settings.is_sqlite and workers != 1:
        raise click.UsageError("the embedded default (SQLite) runs one process; use --workers 1")
    if workers > 1 and not settings.REDIS_URL:
        raise click.UsageError(
            "--workers 2 or more needs REDIS_URL: without it an event reaches only the sockets "
            "of the process that made it, and each process counts rate limits on its own"
        )
    click.echo(f"serving Reach on http://{host}:{port} (Ctrl-C stops)")
    command = gunicorn_command(f"{host}:{port}", workers)
    # A fresh process: gunicorn's gevent worker patches before anything imports ssl.
    os.execv(command[0], command)
