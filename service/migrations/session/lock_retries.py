"""A migration step that gave way to a table lock (lock_timeout), tried again after a backoff."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from service.migrations.session.patience import MigrationError, Patience

log = logging.getLogger("reach.migrate")

BACKOFF_CAP_SECONDS = 10.0
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out


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
