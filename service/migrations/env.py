"""Alembic environment: runs against the engine the caller hands over, or DATABASE_URL."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from alembic import context
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError

from service.config import from_environment
from service.db import make_engine
from service.models import Base

config = context.config
target_metadata = Base.metadata
# The session lock every `reach db upgrade` / `downgrade` of a PostgreSQL database takes first.
MIGRATION_LOCK = 0x7265616368  # "reach"
LOCK_RETRY_SECONDS = 0.5
LOCK_REPORT_SECONDS = 30.0
log = logging.getLogger("reach.migrate")


def run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        # A batch migration rebuilds a table: copy, drop the old one, rename. With foreign keys
        # enforced, dropping the old table would fire ON DELETE on every row pointing at it
        # (responses of bids deleted, a repair's bid_id nulled). So they are off while the
        # migrations run (the pragma only takes outside a transaction) and checked after.
        _foreign_keys(connection, "OFF")
    try:
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


@contextlib.contextmanager
def one_at_a_time(connection: Connection) -> Iterator[None]:
    """On PostgreSQL, migrate only while holding MIGRATION_LOCK: a second upgrade started
    meanwhile (two deploy jobs, a job retried) waits, then finds the schema current and does
    nothing, rather than failing on a table the first one created. A session lock, since some
    migrations commit on their way (indexes built CONCURRENTLY)."""
    if connection.dialect.name != "postgresql":
        yield
        return
    lock = {"key": MIGRATION_LOCK}
    # Tried, not waited for: a statement waiting for the lock would hold a snapshot, and the
    # holder's CREATE INDEX CONCURRENTLY waits for every older snapshot to go (a deadlock).
    started = time.monotonic()
    told = None
    while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), lock).scalar():
        connection.commit()
        waited = time.monotonic() - started
        if told is None or waited - told >= LOCK_REPORT_SECONDS:
            told = waited
            log.warning(
                "another migration of this database is running: waiting for it to finish"
                " (%.0f s so far; its session holds pg_locks' advisory lock %d)",
                waited,
                MIGRATION_LOCK,
            )
        time.sleep(LOCK_RETRY_SECONDS)
    connection.commit()
    try:
        yield
    finally:
        # On a broken connection this fails, and closing it lets the lock go anyway.
        with contextlib.suppress(SQLAlchemyError):
            connection.rollback()
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), lock)
            connection.commit()


def without_statement_timeout(connection: Connection) -> None:
    """A migration's statements (a batch of a backfill, an index built on a big table) may run
    longer than any request may: the statement timeout set on the role or the database for the
    API (behind PgBouncer, docs/operations.md) does not apply to this session."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SET statement_timeout = 0"))
        connection.commit()


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
    engine = make_engine(url)
    with engine.connect() as conn:
        without_statement_timeout(conn)
        with one_at_a_time(conn):
            run(conn)
    engine.dispose()
