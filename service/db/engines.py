"""Engines tuned for SQLite and PostgreSQL, and the readiness probe's engine."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.pool import NullPool, StaticPool

from service import db_bounds, green_waits


def make_engine(
    url: str,
    *,
    pool_size: int = 30,
    max_overflow: int = 0,
    bounds: Bounds | None = None,
    **kwargs: Any,
) -> Engine:
    """An engine tuned for the backend: WAL and immediate transactions on SQLite; on
    PostgreSQL a pool of `pool_size` connections (+ `max_overflow` for bursts), and, given
    `bounds`, waits on the server that end (service/db_bounds.py).

    Overflow connections are closed as soon as they are returned, so a process that runs over
    its pool under load opens a PostgreSQL backend (a process) per request: the default keeps
    every connection it opens (up to `pool_size`) and lets a request wait for one instead.

    The pool hands out the connection returned last: a steady load keeps reusing the few it
    needs, whose backends stay warm, and the others sit idle, pinged before use. PostgreSQL
    spends 8% less CPU per bid than when the pool cycled through every connection it had opened
    (bench/RESULTS.md, "What changed" 25).

    A statement's error never shows its parameters (`hide_parameters`): they hold notes,
    message bodies and push tokens, and errors are logged with their text.

    In a process on gevent's patches, psycopg waits on gevent's loop (`green_waits`)."""
    kwargs.setdefault("hide_parameters", True)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:":
            from pathlib import Path

            Path(database).parent.mkdir(parents=True, exist_ok=True)
        in_memory = not database or database == ":memory:"
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=StaticPool if in_memory else None,
            **kwargs,
        )
        _tune_sqlite(engine)
        return engine
    green_waits.install()
    kwargs.setdefault("pool_recycle", 1800)
    kwargs.setdefault("pool_use_lifo", True)
    if bounds is not None:
        kwargs.setdefault("pool_timeout", bounds.pool_seconds)
    engine = create_engine(url, pool_size=pool_size, max_overflow=max_overflow, **kwargs)
    _sessions_in_utc(engine)
    if bounds is not None:
        db_bounds.bound(
            engine, connect_seconds=bounds.connect_seconds, statement_ms=bounds.statement_ms
        )
    _ping_idle_connections(engine)
    return engine


def _sessions_in_utc(engine: Engine) -> None:
    """Every PostgreSQL session in UTC, whatever the server or role gives it (the server's
    `timezone` follows its host's at initdb): psycopg reads a timestamp in the session's zone,
    and a `written_at` of 0001-01-01T00:00Z, in New York, is a date BC it refuses to read. Added
    after the URL's own options, so it wins."""

    @event.listens_for(engine, "do_connect")
    def _connect(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        cparams["options"] = f"{cparams.get('options', '')} -c timezone=UTC".strip()


@dataclass(frozen=True)
class Bounds:
    """How long a process waits on PostgreSQL: for one of its pool's connections, to connect,
    and for a statement (the server's `statement_timeout`; service/db_bounds.py)."""

    pool_seconds: float
    connect_seconds: int
    statement_ms: int


# The readiness probe's own bounds: with PostgreSQL hung it answers 503 in about 2 s (libpq's
# least connect timeout), within Kubernetes' probe timeout of 3 s (deploy/k8s).
READY_CONNECT_SECONDS, READY_STATEMENT_MS, READY_GRACE_SECONDS = 2, 500, 0.5


def readiness_engine(url: str) -> Engine:
    """An engine for the readiness probe: a connection of its own per probe, not one of the
    pool's, which a busy process may all have in use (or a hung server all hold)."""
    engine = create_engine(url, poolclass=NullPool, hide_parameters=True)
    db_bounds.bound(
        engine,
        connect_seconds=READY_CONNECT_SECONDS,
        statement_ms=READY_STATEMENT_MS,
        grace_seconds=READY_GRACE_SECONDS,
    )
    return engine


# A connection back in use within this many seconds is trusted; one idle longer is pinged
# first (a database restart or a dropped link then costs a reconnect, not a failed request).
IDLE_PING_SECONDS = 5.0


def _ping_idle_connections(engine: Engine) -> None:
    """`pool_pre_ping`, but only for connections that sat idle: a busy process pings nothing."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["reach.idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("reach.idle_since")
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # The pool throws this connection away and checks out (or opens) another.
            raise DisconnectionError("idle connection failed its ping") from exc


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (savepoints work).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # One transaction at a time per process, queued in Python: SQLite's own wait for its lock
    # is a blocking C call that would stall every greenlet of a gevent process, including the
    # one holding the lock (a deadlock until the busy timeout).
    writer = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        writer.acquire()
        conn.info["reach.writer"] = True
        # Take the write lock up front: a deferred transaction that later writes can fail
        # with "database is locked" no matter how long the busy timeout is.
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(conn)
            raise

    def _release(conn: Connection) -> None:
        if conn.info.pop("reach.writer", False):
            writer.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)
