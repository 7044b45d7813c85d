"""The `reach` command: the Flask CLI of the service plus db, serve and the operator tools."""

from __future__ import annotations

import logging
import os
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, routes_command, shell_command, with_appcontext

from service.config import Settings, SettingsError, from_environment


def _create_app() -> Flask:
    from service import create_app

    return create_app()


class ReachGroup(FlaskGroup):
    """The commands, telling an operator's mistake in one line rather than a traceback: a
    setting the service cannot run with, a database it cannot reach or that was never
    migrated, a migration revision that does not exist."""

    def invoke(self, ctx: click.Context) -> Any:
        from alembic.util import CommandError
        from sqlalchemy.exc import DBAPIError

        from service.migrations.session import MigrationError

        try:
            return super().invoke(ctx)
        except (SettingsError, MigrationError) as exc:
            raise click.ClickException(str(exc)) from None
        except CommandError as exc:  # a revision that does not exist, for one
            raise click.ClickException(
                f"{exc}: give heads, base, or a revision of service/migrations/versions "
                f"(its number will do, e.g. 0014)"
            ) from None
        except DBAPIError as exc:
            told = _database_unusable(exc)
            if told is None:
                raise
            raise click.ClickException(told) from None


@click.group(
    cls=ReachGroup,
    create_app=_create_app,
    add_version_option=False,
    add_default_commands=False,
)
def main() -> None:
    """Reach: bids, repair conversations and sync for couples' apps."""


main.add_command(shell_command)
main.add_command(routes_command)


@main.command("run", hidden=True, context_settings={"ignore_unknown_options": True})
@click.argument("ignored", nargs=-1, type=click.UNPROCESSED)
def run(ignored: tuple[str, ...]) -> None:
    """Flask's development server, which Reach does not offer."""
    raise click.ClickException(
        "`reach run` would start Flask's development server, without gevent, the worker or "
        "the socket limits: run `reach serve` (or `make run`)"
    )


@main.group()
def db() -> None:
    """Database schema migrations (Alembic)."""


@db.command("upgrade")
@click.option(
    "--revision", default="heads", show_default=True, help="Target revision, e.g. 0014 or +1"
)
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Migrate the database to the newest schema."""
    from service import migrate

    settings: Settings = current_app.extensions["reach.settings"]
    revision = _named(settings, revision)
    click.echo(f"migrating {_safe_url(settings.database_url)} to {revision} ...")
    patience = migrate.Patience.from_settings(settings)
    migrate.upgrade(settings.database_url, revision=revision, patience=patience)
    click.echo("database is up to date")


@db.command("downgrade")
@click.option("--revision", required=True, help="Target revision, e.g. base, 0001 or -1")
@with_appcontext
def db_downgrade(revision: str) -> None:
    """Step the schema back to an older revision."""
    from service import migrate

    settings: Settings = current_app.extensions["reach.settings"]
    revision = _named(settings, revision)
    click.echo(f"stepping {_safe_url(settings.database_url)} back to {revision} ...")
    patience = migrate.Patience.from_settings(settings)
    migrate.downgrade(settings.database_url, revision=revision, patience=patience)
    at = migrate.current(settings.database_url)
    click.echo(f"database is at {', '.join(at) or 'base'}")


def _named(settings: Settings, revision: str) -> str:
    """A relative --revision (-1, +2) as the revision it names from where the database is now,
    said before anything runs: a step tried again after a lock timeout goes to the same one."""
    from service import migrate

    if not migrate.RELATIVE.match(revision):
        return revision
    at = migrate.current(settings.database_url)
    named = migrate.resolve(revision, at)
    click.echo(f"--revision {revision} from {', '.join(at) or 'base'} is {named}")
    return named


@db.command("current")
@with_appcontext
def db_current() -> None:
    """Say which revision the database is at, and whether migrations are left to run."""
    from service import migrate

    settings: Settings = current_app.extensions["reach.settings"]
    at = migrate.current(settings.database_url)
    scripts = {script.revision: script for script in migrate.history()}
    newest = [revision for revision, script in scripts.items() if script.is_head]
    if not at:
        click.echo("base: no migration has run (run `reach db upgrade`)")
    for revision in at:
        if revision not in scripts:
            click.echo(f"{revision}: not a revision of this release (a newer one migrated it)")
        elif revision in newest:
            click.echo(f"{revision} (newest)")
        else:
            click.echo(f"{revision} (older than {', '.join(newest)}: run `reach db upgrade`)")


@db.command("history")
def db_history() -> None:
    """List the migrations, newest first."""
    from service import migrate

    for script in migrate.history():
        after = script.down_revision or "base"
        below = ", ".join(after) if isinstance(after, tuple) else after
        click.echo(f"{script.revision} (after {below}): {script.doc.splitlines()[0]}")


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int, help="gunicorn processes")
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


@main.command("worker")
@click.option("--idle", default=0.5, show_default=True, help="Seconds to rest when idle")
@with_appcontext
def worker(idle: float) -> None:
    """Run the worker: expire bids, send pushes from the outbox, fire reminders."""
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


@main.command("create-operator")
@click.argument("email")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The operator's password (asked for, twice, when not given)",
)
@with_appcontext
def create_operator(email: str, password: str) -> None:
    """Create an operator account for the /ops dashboard (not a member account)."""
    from service.domain.errors import ReachError
    from service.extensions import db as database
    from service.services import ops_accounts

    try:
        operator = ops_accounts.create_operator(database.session, email, password)
    except ReachError as exc:
        raise click.ClickException(exc.detail) from exc
    click.echo(f"operator {operator.email} created; sign in at /ops/login")


def _sessions_ended(count: int) -> str:
    noun = "session" if count == 1 else "sessions"
    return f"{count} signed-in {noun} ended (an open dashboard closes at its next refresh)"


@main.command("disable-operator")
@click.argument("email")
@with_appcontext
def disable_operator(email: str) -> None:
    """Disable an operator account (someone who leaves): /ops refuses its sign-in and ends
    every session of it now."""
    from service.domain.errors import ReachError
    from service.extensions import db as database
    from service.services import ops_accounts

    try:
        ended = ops_accounts.disable_operator(database.session, email)
    except ReachError as exc:
        raise click.ClickException(exc.detail) from exc
    email = ops_accounts.normalize_email(email)
    click.echo(f"operator {email} disabled; {_sessions_ended(ended)}")


@main.command("enable-operator")
@click.argument("email")
@with_appcontext
def enable_operator(email: str) -> None:
    """Let a disabled operator account sign in to /ops again."""
    from service.domain.errors import ReachError
    from service.extensions import db as database
    from service.services import ops_accounts

    try:
        ops_accounts.enable_operator(database.session, email)
    except ReachError as exc:
        raise click.ClickException(exc.detail) from exc
    click.echo(f"operator {ops_accounts.normalize_email(email)} enabled; it signs in anew")


@main.command("set-operator-password")
@click.argument("email")
@click.option(
    "--password",
    prompt="New password",
    hide_input=True,
    confirmation_prompt=True,
    help="The new password (asked for, twice, when not given)",
)
@with_appcontext
def set_operator_password(email: str, password: str) -> None:
    """Give an operator account a new password; every session signed in with the old one ends."""
    from service.domain.errors import ReachError
    from service.extensions import db as database
    from service.services import ops_accounts

    try:
        ended = ops_accounts.set_password(database.session, email, password)
    except ReachError as exc:
        raise click.ClickException(exc.detail) from exc
    email = ops_accounts.normalize_email(email)
    click.echo(f"operator {email} has a new password; {_sessions_ended(ended)}")


@main.command("demo")
def demo() -> None:
    """Start the embedded service and two simulated phones; print the story of one bid."""
    from service.demo import run_demo

    run_demo()


def _database_unusable(exc: Exception) -> str | None:
    """What to do about a database that refused a command, or None for a fault of the code."""
    from service.errors import database_said, is_unavailable, is_unmigrated

    said, where = database_said(exc), _safe_url(from_environment().database_url)
    if is_unmigrated(exc):
        return f"the database at {where} has no Reach tables ({said}): run `reach db upgrade`"
    if is_unavailable(exc):
        return (
            f"cannot use the database at {where}: {said}. Is it running and reachable from "
            f"here, and are DATABASE_URL's host, port, user and password right?"
        )
    return None


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("FLASK_APP", "wsgi:app")
    main()
