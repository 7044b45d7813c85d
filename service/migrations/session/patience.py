"""How long a migration waits and for what, its session's name and timeouts, and its error."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event

from service.config import Settings, check_migration_waits


class MigrationError(RuntimeError):
    """A migration that cannot go on: the message says why and what to do (the `reach`
    command shows it in one line)."""


@dataclass(frozen=True)
class Patience:
    """How long a migration waits, and for what (docs/operations.md, "Migrate").

    - lock_wait_seconds: for another run holding MIGRATION_LOCK, then it gives up;
    - abandoned_seconds: a holder whose session has sat idle this long is a run that is gone
      (killed, its network lost): its session is ended and the lock taken over (0: never);
    - lock_timeout_ms: PostgreSQL's lock_timeout for the migration's statements: an ALTER
      TABLE waiting behind a long transaction gives way after it, rather than keeping every
      request on that table waiting behind it;
    - lock_retries: how many more times a step that gave way is tried, after backoff_seconds,
      doubled each time (up to BACKOFF_CAP_SECONDS), before the run gives up."""

    lock_wait_seconds: float = 300
    abandoned_seconds: float = 60
    lock_timeout_ms: int = 3000
    lock_retries: int = 4
    backoff_seconds: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Patience:
        check_migration_waits(settings)
        return cls(
            lock_wait_seconds=settings.MIGRATION_LOCK_WAIT_SECONDS,
            abandoned_seconds=settings.MIGRATION_ABANDONED_SECONDS,
            lock_timeout_ms=settings.MIGRATION_LOCK_TIMEOUT_MS,
            lock_retries=settings.MIGRATION_LOCK_RETRIES,
        )


def application_name() -> str:
    """What pg_stat_activity shows for the migration's session: the host (a pod's name) and
    process that run it."""
    return f"reach-migrate {socket.gethostname()} {os.getpid()}"[:63]


def prepare(engine: Engine, patience: Patience) -> None:
    """A migration's statements (a batch of a backfill, an index built on a big table) may run
    longer than any request may: the statement timeout set on the role or the database for the
    API (behind PgBouncer, docs/operations.md) does not apply to this session. Its lock waits
    are bounded by patience.lock_timeout_ms instead, except those of an index built or dropped
    CONCURRENTLY: it waits for the transactions already open without holding up any request,
    and one cut short leaves an INVALID index to build again."""
    if engine.dialect.name != "postgresql":
        return

    @event.listens_for(engine, "connect")
    def _session(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET statement_timeout = 0")
            cursor.execute(f"SET lock_timeout = {int(patience.lock_timeout_ms)}")
        dbapi_connection.commit()

    @event.listens_for(engine, "before_cursor_execute")
    def _before(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if _concurrently(statement):
            cursor.execute("SET lock_timeout = 0")

    @event.listens_for(engine, "after_cursor_execute")
    def _after(_conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if _concurrently(statement):
            cursor.execute(f"SET lock_timeout = {int(patience.lock_timeout_ms)}")


def _concurrently(statement: str) -> bool:
    words = statement.split(None, 4)
    return (
        len(words) > 2
        and words[0].upper() in ("CREATE", "DROP", "REINDEX")
        and any(word.upper() == "CONCURRENTLY" for word in words[1:4])
    )
