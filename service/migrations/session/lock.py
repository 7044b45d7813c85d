"""MIGRATION_LOCK: one run at a time, and a run that is gone found and taken over."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from service.migrations.session.patience import MigrationError, Patience

log = logging.getLogger("reach.migrate")

# The session lock every `reach db upgrade` / `downgrade` of a PostgreSQL database takes first.
MIGRATION_LOCK = 0x7265616368  # "reach"
LOCK_RETRY_SECONDS = 0.5
LOCK_REPORT_SECONDS = 30.0
IDLE = ("idle", "idle in transaction", "idle in transaction (aborted)")


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
