"""The PostgreSQL session `reach db upgrade` and `downgrade` migrate in: named, one run at a time,
and never holding up requests for long behind a table lock it waits for."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from service.config import Settings, check_migration_waits

log = logging.getLogger("reach.migrate")

# The session lock every `reach db upgrade` / `downgrade` of a PostgreSQL database takes first.
MIGRATION_LOCK = 0x7265616368  # "reach"
LOCK_RETRY_SECONDS = 0.5
LOCK_REPORT_SECONDS = 30.0
BACKOFF_CAP_SECONDS = 10.0
IDLE = ("idle", "idle in transaction", "idle in transaction (aborted)")
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out


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


@dataclass(frozen=True)
class Holder:
    """The session holding MIGRATION_LOCK, as pg_stat_activity shows it."""

    pid: int
    application_name: str
    client: str | None
    connected: datetime
    state: str | None
    for_seconds: float | None

    def __str__(self) -> str:
        where = f", client {self.client}" if self.client else ""
        if self.state is None:
            doing = "its state hidden from this role"
        else:
            doing = f"{self.state} for {self.for_seconds or 0:.0f} s"
        return (
            f"pid {self.pid} (application_name {self.application_name!r}{where}, connected "
            f"{self.connected:%Y-%m-%d %H:%M:%S %Z}, {doing})"
        )

    def abandoned(self, patience: Patience) -> bool:
        return (
            patience.abandoned_seconds > 0
            and self.state in IDLE
            and (self.for_seconds or 0) >= patience.abandoned_seconds
        )


_HOLDER = text(
    "SELECT a.pid, a.application_name, host(a.client_addr), a.backend_start, a.state, "
    "extract(epoch FROM now() - a.state_change)::float "
    "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND l.classid::bigint = :high AND l.objid::bigint = :low"
)


def holder(connection: Connection) -> Holder | None:
    row = connection.execute(
        _HOLDER, {"high": MIGRATION_LOCK >> 32, "low": MIGRATION_LOCK & 0xFFFFFFFF}
    ).first()
    connection.commit()
    return None if row is None else Holder(*row)


@contextlib.contextmanager
def one_at_a_time(connection: Connection, patience: Patience) -> Iterator[None]:
    """On PostgreSQL, migrate only while holding MIGRATION_LOCK: a second upgrade started
    meanwhile (two deploy jobs, a job retried) waits, then finds the schema current and does
    nothing, rather than failing on a table the first one created. A session lock, since some
    migrations commit on their way (indexes built CONCURRENTLY).

    A run that is gone keeps the lock until PostgreSQL notices its session is dead, which for
    a client whose network went away is TCP keepalive's two hours: the waiting run says which
    session holds it, ends it once it has sat idle patience.abandoned_seconds (a working run
    never does), and gives up after patience.lock_wait_seconds saying what to do."""
    if connection.dialect.name != "postgresql":
        yield
        return
    lock = {"key": MIGRATION_LOCK}
    # Tried, not waited for: a statement waiting for the lock would hold a snapshot, and the
    # holder's CREATE INDEX CONCURRENTLY waits for every older snapshot to go (a deadlock).
    started = time.monotonic()
    told: float | None = None
    ended: set[int] = set()
    while not connection.execute(text("SELECT pg_try_advisory_lock(:key)"), lock).scalar():
        connection.commit()
        waited = time.monotonic() - started
        held_by = holder(connection)
        if held_by is None:  # it has just let go
            continue
        if held_by.abandoned(patience) and held_by.pid not in ended:
            ended.add(held_by.pid)
            _take_over(connection, held_by)
            continue
        if waited >= patience.lock_wait_seconds:
            raise MigrationError(
                f"another migration of this database still holds its lock after "
                f"{waited:.0f} s (MIGRATION_LOCK_WAIT_SECONDS={patience.lock_wait_seconds:g}): "
                f"session {held_by}. If that run is still working, let it finish and run this "
                f"again; if it is gone (its pod or machine lost), end its session with SELECT "
                f"pg_terminate_backend({held_by.pid}); and run this again"
            )
        if told is None or waited - told >= LOCK_REPORT_SECONDS:
            told = waited
            log.warning(
                "another migration of this database is running: waiting for it to finish "
                "(%.0f s so far, up to %g s): its session is %s",
                waited,
                patience.lock_wait_seconds,
                held_by,
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


def _take_over(connection: Connection, held_by: Holder) -> None:
    log.warning(
        "the migration lock of this database is held by session %s, which has sat idle that "
        "long: its run is gone (killed, or its network lost). Ending that session and taking "
        "over; what it committed stays, and what it left half-done is done again",
        held_by,
    )
    try:
        connection.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": held_by.pid})
        connection.commit()
    except DBAPIError as exc:
        connection.rollback()
        log.warning(
            "could not end session pid %d (%s): waiting for it instead",
            held_by.pid,
            getattr(exc.orig, "sqlstate", exc),
        )


_OPEN_TRANSACTIONS = text(
    "SELECT pid, application_name, state, extract(epoch FROM now() - xact_start)::float, "
    "left(regexp_replace(query, '\\s+', ' ', 'g'), 80) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND xact_start < now() - make_interval(secs => :seconds) ORDER BY xact_start LIMIT 5"
)


def _open_transactions(connection: Connection, patience: Patience) -> str:
    """The transactions open longer than the lock timeout: those the step may have waited for."""
    rows = connection.execute(
        _OPEN_TRANSACTIONS, {"seconds": patience.lock_timeout_ms / 1000}
    ).all()
    connection.commit()
    if not rows:
        return "none open now"
    return "; ".join(
        f"pid {pid} ({name!r}, {state}, open {seconds:.0f} s: {query})"
        for pid, name, state, seconds, query in rows
    )


def with_lock_retries(connection: Connection, patience: Patience, run: Callable[[], None]) -> None:
    """Run the migrations; when a statement gives way to a lock (lock_timeout), roll back and
    try again after a backoff, patience.lock_retries times, then give up saying what to do.
    What the earlier migrations committed stays: a retry goes on from there."""
    if connection.dialect.name != "postgresql":
        run()
        return
    attempts = max(patience.lock_retries, 0) + 1
    for attempt in range(1, attempts + 1):
        try:
            run()
            return
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
                raise
            connection.rollback()
            statement = " ".join(str(exc.statement or "").split())[:120]
            holders = _open_transactions(connection, patience)
            if attempt == attempts:
                raise MigrationError(
                    f"a migration step gave way {_times(attempts)} after waiting "
                    f"{patience.lock_timeout_ms} ms (MIGRATION_LOCK_TIMEOUT_MS) for a lock, "
                    f"rather than hold up the requests queued behind it ({statement}). "
                    f"Transactions open longer than that: {holders}. Run this again when no "
                    f"long transaction is open (SELECT pid, xact_start, query FROM "
                    f"pg_stat_activity ORDER BY xact_start), or end the one in the way with "
                    f"SELECT pg_terminate_backend(pid); what the migrations before it did is "
                    f"kept"
                ) from None
            pause = min(patience.backoff_seconds * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS)
            log.warning(
                "a migration step gave way after waiting %d ms for a lock (%s); trying again "
                "in %.1f s (attempt %d of %d). Transactions open longer than that: %s",
                patience.lock_timeout_ms,
                statement,
                pause,
                attempt + 1,
                attempts,
                holders,
            )
            time.sleep(pause)


def _times(count: int) -> str:
    return "once" if count == 1 else f"{count} times"
