"""The `reach` command: the Flask CLI of the service plus db, serve and the operator tools."""

from __future__ import annotations

from typing import Any

import click
from flask import Flask
from flask.cli import FlaskGroup, routes_command, shell_command

from service.config import SettingsError, from_environment


def _create_app() -> Flask:
    from service import create_app

    return create_app()


class ReachGroup(FlaskGroup):
    """The commands, telling an operator's mistake in one line rather than a traceback: a
    setting the service cannot run with, a database it cannot reach or that was never
    migrated, a migration revision that does not exist.

    Only Reach's own commands and options: not those other packages add (flask-limiter's
    `limiter`, flask-smorest's `openapi`), nor Flask's -A/--app, -e/--env-file and --debug.
    Listing or finding a command builds no app, so `reach --help` shows with any settings."""

    FLASKS_OPTIONS = frozenset({"app", "env_file", "debug"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.params = [param for param in self.params if param.name not in self.FLASKS_OPTIONS]

    def _load_plugin_commands(self) -> None:
        """Commands other packages declare for Flask's CLI are not Reach's: none is loaded."""

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self.commands.get(name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands)

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
    # Settings come from the environment alone: a `.env` left where `reach` runs, or in a
    # directory above, is not read (Flask's CLI reads one when python-dotenv is installed).
    load_dotenv=False,
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


# The commands, each registered on `main` by its module.
from service.cli import db, demo, operators, rate_limits, serve, worker  # noqa: E402, F401

__all__ = ["ReachGroup", "main"]
