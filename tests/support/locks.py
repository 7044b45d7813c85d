"""PostgreSQL's lock queue, watched from a connection of its own (concurrency tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from sqlalchemy import Executable, event, text

from service.extensions import db
from tests.support.waiting import wait_until

_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock'"
)


@contextmanager
def lock_waiters(app: Flask) -> Iterator[Callable[[], int]]:
    """Yields `waiting()`: how many sessions of the database wait for a lock right now."""
    with app.app_context():
        watcher = db.engine.connect()

    def waiting() -> int:
        count = int(watcher.execute(_WAITING).scalar_one())
        watcher.rollback()
        return count

    try:
        yield waiting
    finally:
        watcher.close()


@contextmanager
def lock_queue(app: Flask) -> Iterator[Callable[[int], None]]:
    """Yields `queued(n)`, which waits until `n` sessions of the database wait for a lock."""
    with lock_waiters(app) as waiting:

        def queued(n: int) -> None:
            wait_until(lambda: waiting() >= n, what=f"{n} sessions waiting for a lock")

        yield queued


@contextmanager
def rows_held(app: Flask, locking: Executable) -> Iterator[None]:
    """Another transaction holds the rows that `locking` locks until the block ends: a SELECT
    ... FOR UPDATE, or an INSERT ... RETURNING whose unique key others' inserts wait for."""
    with app.app_context():
        holder = db.engine.connect()
    try:
        holder.begin()
        assert holder.execute(locking).first() is not None, "nothing to hold"
        yield
        holder.rollback()
    finally:
        holder.close()


@contextmanager
def first_statement_held(
    app: Flask, matches: Callable[[str], bool], until: Callable[[], bool] | None = None
) -> Iterator[threading.Event]:
    """The first statement of the app whose SQL `matches` is held once it has run (its locks
    taken), until another session of the database waits for a lock (or, if given, `until`
    holds). Yields an event set once it is held."""
    with app.app_context():
        engine = db.engine
    held = threading.Event()
    with lock_waiters(app) as waiting:

        def released() -> bool:
            return until() if until is not None else waiting() > 0

        def hold(*args: Any) -> None:
            if held.is_set() or not matches(args[2]):
                return
            held.set()
            wait_until(released, what="the statement's hold to end")

        event.listen(engine, "after_cursor_execute", hold)
        try:
            yield held
        finally:
            event.remove(engine, "after_cursor_execute", hold)
