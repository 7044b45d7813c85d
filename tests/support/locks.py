"""PostgreSQL's lock queue, watched from a connection of its own (concurrency tests)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask
from sqlalchemy import Executable, text

from service.extensions import db
from tests.support.waiting import wait_until

_WAITING = text(
    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND wait_event_type = 'Lock'"
)


@contextmanager
def lock_queue(app: Flask) -> Iterator[Callable[[int], None]]:
    """Yields `queued(n)`, which waits until `n` sessions of the database wait for a lock."""
    with app.app_context():
        watcher = db.engine.connect()

    def waiting() -> int:
        count = int(watcher.execute(_WAITING).scalar_one())
        watcher.rollback()
        return count

    def queued(n: int) -> None:
        wait_until(lambda: waiting() >= n, what=f"{n} sessions waiting for a lock")

    try:
        yield queued
    finally:
        watcher.close()


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
