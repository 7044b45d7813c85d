"""Alembic environment: runs against the engine the caller hands over, or DATABASE_URL."""

from __future__ import annotations

from typing import Any

from alembic import context
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from service.config import from_environment
from service.db import make_engine
from service.migrations import session
from service.migrations.session import MigrationError, Patience
from service.models import Base

config = context.config
target_metadata = Base.metadata


def run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration rebuilds a table: copy, drop the old one, rename. With foreign keys
        # enforced, dropping the old table would fire ON DELETE on every row pointing at it
        # (responses of bids deleted, a repair's bid_id nulled). So they are off while the
        # migrations run (the pragma only takes outside a transaction) and checked after.
        _foreign_keys(connection, "OFF")
    try:
        _known(connection)
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if sqlite:
            _foreign_keys(connection, "ON")
    if sqlite:
        broken = _driver(connection).execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            tables = sorted({row[0] for row in broken})
            raise RuntimeError(
                f"the migration left rows whose foreign keys point nowhere: {tables}"
            )


def _known(connection: Connection) -> None:
    """Refuse a database a newer release migrated: its revision is none of this release's."""
    script = context.script
    newest = ", ".join(script.get_heads())
    known = {revision.revision for revision in script.walk_revisions()}
    at = MigrationContext.configure(connection).get_current_heads()
    connection.commit()
    unknown = sorted(set(at) - known)
    if unknown:
        raise MigrationError(
            f"the database is at revision {', '.join(unknown)}, which this release does not "
            f"know (its newest is {newest}): a newer release migrated it. Migrate it with "
            f"that release; to run this one again, run its API and worker without migrating "
            f"(each migration keeps the schema usable by the release before it), or first "
            f"step the schema back with the newer release's `reach db downgrade --revision "
            f"{newest}`"
        )


def _foreign_keys(connection: Connection, state: str) -> None:
    _driver(connection).execute(f"PRAGMA foreign_keys={state}")


def _driver(connection: Connection) -> Any:
    """The sqlite3 connection itself: its statements run outside SQLAlchemy's transaction."""
    return connection.connection.driver_connection


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = config.get_main_option("sqlalchemy.url") or from_environment().database_url
    patience = config.attributes.get("patience") or Patience.from_settings(from_environment())
    named: dict[str, Any] = {"connect_args": {"application_name": session.application_name()}}
    engine = make_engine(url, pool_size=1, **({} if url.startswith("sqlite") else named))
    session.prepare(engine, patience)
    try:
        with engine.connect() as conn, session.one_at_a_time(conn, patience):
            session.with_lock_retries(conn, patience, lambda: run(conn))
    finally:
        engine.dispose()
