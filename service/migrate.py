"""Running Alembic from code: `reach db upgrade`, the embedded start-up, the tests."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import Script, ScriptDirectory
from sqlalchemy import Connection

from service.migrations.session import MigrationError, Patience

MIGRATIONS = Path(__file__).parent / "migrations"

__all__ = ["MigrationError", "Patience", "current", "downgrade", "history", "upgrade"]


def alembic_config(
    url: str | None = None, connection: Connection | None = None, patience: Patience | None = None
) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    if patience is not None:
        config.attributes["patience"] = patience
    return config


def upgrade(
    url: str | None = None,
    connection: Connection | None = None,
    revision: str = "heads",
    patience: Patience | None = None,
) -> None:
    command.upgrade(alembic_config(url, connection, patience), revision)


def downgrade(
    url: str | None = None,
    connection: Connection | None = None,
    revision: str = "base",
    patience: Patience | None = None,
) -> None:
    if revision.startswith("-") and url:
        at = current(url)
        if len(at) > 1:
            raise MigrationError(
                f"the database is at {len(at)} revisions at once ({', '.join(at)}), so "
                f"--revision {revision} does not say which of them to step back from: give the "
                f"revision to go back to (`reach db history` lists them)"
            )
    command.downgrade(alembic_config(url, connection, patience), revision)


def current(url: str) -> list[str]:
    """The revisions the database is at: one, or several between 0002 and 0005's merge."""
    from service.db import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return sorted(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def history() -> list[Script]:
    """Every migration, newest first."""
    return list(ScriptDirectory.from_config(alembic_config()).walk_revisions())
