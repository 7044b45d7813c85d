"""`reach db`: migrate the schema up or back, say where it is, list the migrations."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext

from service.cli import _safe_url, main
from service.config import Settings


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
    _one_way(settings, revision, upgrading=True)
    click.echo(f"migrating {_safe_url(settings.database_url)} to {revision} ...")
    patience = migrate.Patience.from_settings(settings)
    migrate.upgrade(settings.database_url, revision=revision, patience=patience)
    at = migrate.current(settings.database_url)
    newest = {script.revision for script in migrate.history() if script.is_head}
    if set(at) == newest:
        click.echo("database is up to date")
    else:  # an older --revision
        click.echo(f"database is at {', '.join(at) or 'base'}")


@db.command("downgrade")
@click.option("--revision", required=True, help="Target revision, e.g. base, 0001 or -1")
@with_appcontext
def db_downgrade(revision: str) -> None:
    """Step the schema back to an older revision."""
    from service import migrate

    settings: Settings = current_app.extensions["reach.settings"]
    revision = _named(settings, revision)
    _one_way(settings, revision, upgrading=False)
    click.echo(f"stepping {_safe_url(settings.database_url)} back to {revision} ...")
    patience = migrate.Patience.from_settings(settings)
    migrate.downgrade(settings.database_url, revision=revision, patience=patience)
    at = migrate.current(settings.database_url)
    click.echo(f"database is at {', '.join(at) or 'base'}")


def _one_way(settings: Settings, revision: str, upgrading: bool) -> None:
    """Refuse an upgrade to a revision below where the database is (Alembic did nothing and
    said nothing) and a downgrade to one that is not below it, naming the command that goes
    there."""
    from service import migrate

    at = migrate.current(settings.database_url)
    found = migrate.below(revision, at)
    if found is None or found[1] != upgrading:
        return
    target, where = found[0], ", ".join(at) or "base"
    if upgrading:
        raise click.ClickException(
            f"{target} is below {where}, where the database is, and `reach db upgrade` only "
            f"goes on: `reach db downgrade --revision {target}` steps back"
        )
    raise click.ClickException(
        f"{target} is not below {where}, where the database is, and `reach db downgrade` only "
        f"steps back: `reach db upgrade --revision {target}` goes on"
    )


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
