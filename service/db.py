"""The database: engine, a session per request or job, and after-commit hooks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app, g, has_app_context
from sqlalchemy import Connection, CursorResult, Engine, create_engine, event, text
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool, StaticPool
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from service import db_bounds, green_waits

log = logging.getLogger("reach.db")

AFTER_COMMIT_KEY = "reach.after_commit"
# Set on sessions that may autocommit a transaction of one statement (PostgreSQL, own engine).
AUTOCOMMIT_KEY = "reach.autocommit"


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


# The readiness probe's query: answered once the database has been migrated at least once.
_MIGRATED = text("SELECT version_num FROM alembic_version LIMIT 1")

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


def _sessions(**kwargs: Any) -> sessionmaker[Session]:
    """A session factory whose sessions run their after-commit hooks (listeners set once here,
    not per session: registering them is a measurable share of a short request)."""
    factory = sessionmaker(expire_on_commit=False, **kwargs)
    event.listen(factory, "after_commit", _run_after_commit)
    event.listen(factory, "after_soft_rollback", _drop_after_commit)
    return factory


class _State:
    def __init__(self, engine: Engine, probe: Engine | None) -> None:
        self.engine = engine
        self.probe = probe
        self.factory = _sessions(bind=engine)
        self.test_lock: threading.RLock | None = None


class Database:
    """Hands out one session per app context (request, socket event, job, command).

    The engine lives with the app (`app.extensions`), so several apps can share this object.
    """

    def init_app(
        self,
        app: Flask,
        url: str,
        pool_size: int = 30,
        max_overflow: int = 0,
        bounds: Bounds | None = None,
    ) -> None:
        engine = make_engine(url, pool_size=pool_size, max_overflow=max_overflow, bounds=bounds)
        probe = readiness_engine(url) if engine.dialect.name == "postgresql" else None
        app.extensions["reach.db"] = _State(engine, probe)
        app.teardown_appcontext(self._teardown)

    @staticmethod
    def _state() -> _State:
        state: _State | None = current_app.extensions.get("reach.db")
        if state is None:
            raise RuntimeError("Database.init_app() has not been called for this app")
        return state

    @property
    def engine(self) -> Engine:
        return self._state().engine

    def answers(self) -> None:
        """Raise unless the database answers a query within a few seconds, and has been
        migrated (its Alembic version table is there): on PostgreSQL over a connection of its
        own (`readiness_engine`), on SQLite through a session."""
        probe = self._state().probe
        if probe is None:
            with self.scope() as session:
                session.execute(_MIGRATED)
            return
        with probe.connect() as connection:
            connection.execute(_MIGRATED)

    def bind_to_connection(self, connection: Connection) -> None:
        """Tests: every session joins the outer transaction of `connection` (rolled back later)."""
        state = self._state()
        state.factory = _sessions(bind=connection, join_transaction_mode="create_savepoint")
        # One lock per connection: every app bound to it (tests start several) takes turns.
        state.test_lock = connection.info.setdefault("reach.test_lock", threading.RLock())

    def unbind(self) -> None:
        state = self._state()
        state.factory = _sessions(bind=state.engine)
        state.test_lock = None

    def new_session(self) -> Session:
        state = self._state()
        session = state.factory()
        if state.test_lock is None and state.engine.dialect.name == "postgresql":
            session.info[AUTOCOMMIT_KEY] = True
        return session

    @property
    def session(self) -> Session:
        """The session of the current app context, created on first use."""
        if not has_app_context():
            raise RuntimeError("no app context: push one (app.app_context()) first")
        session: Session | None = g.get("_reach_session")
        if session is None:
            lock = self._state().test_lock
            if lock is not None:
                lock.acquire()
                g._reach_test_lock = lock
            session = self.new_session()
            g._reach_session = session
        return session

    @contextmanager
    def scope(self) -> Iterator[Session]:
        """A session of its own (worker jobs, probes): commit on success, else roll back."""
        lock = self._state().test_lock
        if lock is not None:
            lock.acquire()
        session = self.new_session()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
            if lock is not None:
                lock.release()

    def roll_back(self) -> None:
        """Undo the current app context's uncommitted work after a failed write, so the failure
        can still be answered (a socket's ack, an operator's flash message): if PostgreSQL
        dropped the connection meanwhile, the rollback cannot reach it, SQLAlchemy discards the
        connection, and that is logged, not raised."""
        _unless_connection_lost(self.session.rollback, "before a failed write was rolled back")

    def _teardown(self, _exc: BaseException | None) -> None:
        session: Session | None = g.pop("_reach_session", None)
        lock = g.pop("_reach_test_lock", None)
        try:
            if session is not None:
                _close_after_answer(session)
        finally:
            if lock is not None:
                lock.release()


def _close_after_answer(session: Session) -> None:
    """Close a request's session once its answer is made. What it committed is committed; the
    rest is rolled back. If PostgreSQL dropped the connection meanwhile (a restart), that
    rollback fails, SQLAlchemy discards the connection, and the answer stands: failing here
    would turn it into a bare 500."""
    _unless_connection_lost(session.close, "before the request's session closed")


def _unless_connection_lost(action: Callable[[], None], when: str) -> None:
    """Run `action` (a rollback or close); a connection PostgreSQL dropped meanwhile has been
    discarded by SQLAlchemy, and is logged instead of raised. Any other error raises."""
    try:
        action()
    except DBAPIError as exc:
        if not exc.connection_invalidated:
            raise
        log.warning("database connection lost %s; discarded", when, extra={"error": str(exc.orig)})


def autocommits(session: Session) -> bool:
    """Whether the session's next statement may run autocommitted, a transaction of its own:
    on PostgreSQL through the service's own engine (not inside a test's outer transaction),
    while the session has not begun its transaction. psycopg then sends no BEGIN before the
    statement and no COMMIT after it, two round trips saved; `finish(session)` still runs
    the after-commit hooks."""
    return bool(session.info.get(AUTOCOMMIT_KEY)) and not session.in_transaction()


class DriverStatement:
    """A Core statement compiled once for a dialect and run as driver SQL.

    `Connection.execute(statement)` computes the statement's cache key, looks its compiled form
    up and builds its parameters on every call: for the bid write, 38 parameters in one
    statement on the hottest path (28 without the sender's proof), that was a third of the
    statement's time in the request (bench/RESULTS.md, "What changed" 20). This does it once
    per dialect: the SQL, the literal values, and SQLAlchemy's own bind processor per
    parameter.

    `execute` runs it through `Connection.exec_driver_sql`, inside a session's transaction;
    `first_row_alone` autocommitted, straight on a pooled connection's driver ("What changed"
    34).
    """

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql = compiled.string
        self.literals: dict[str, Any] = {}
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for bind, name in compiled.bind_names.items():
            if not bind.required:
                self.literals[name] = bind.effective_value
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor

    def params(self, values: dict[str, Any]) -> dict[str, Any]:
        """The driver's parameters for these values (the statement's bind names)."""
        params = {**self.literals, **values}
        for name, processor in self.processors.items():
            params[name] = processor(params[name])
        return params

    def execute(self, connection: Connection, values: dict[str, Any]) -> CursorResult[Any]:
        return connection.exec_driver_sql(self.sql, self.params(values))

    def first_row_alone(self, engine: Engine, values: dict[str, Any]) -> Any | None:
        """Run it as a transaction of its own on a connection of `engine`'s pool, through the
        driver alone; its first row, or None.

        A `Connection` around one statement (its checkout, the isolation level set and reset,
        the execution context, the result) was a sixth of the bid write's client CPU (1.28
        against 1.06 ms per bid, "What changed" 34). The pool still hands the connection out
        (pinging one that sat idle) and takes it back. A driver error comes out as
        SQLAlchemy's (`DBAPIError.instance`, parameters hidden), and a connection PostgreSQL
        dropped is invalidated with every connection the pool opened before it, as
        `Connection` does (`Pool._invalidate`). Statement events
        (`before_cursor_execute`) do not see it.
        """
        params = self.params(values)
        dbapi = engine.dialect.loaded_dbapi
        pooled = None
        try:
            pooled = engine.raw_connection()  # PostgreSQL away: it cannot connect
            driver: Any = pooled.driver_connection
            driver.autocommit = True
            try:
                return driver.execute(self.sql, params).fetchone()
            finally:
                if not (driver.closed or driver.broken):
                    driver.autocommit = False  # as the pool's other users expect it
        except dbapi.Error as error:
            lost = pooled is not None and engine.dialect.is_disconnect(error, driver, None)
            if pooled is not None and lost:
                # As `Connection` does: the pool's other connections, opened before this one
                # was lost (a restart dropped them all), are replaced when next checked out.
                engine.pool._invalidate(pooled, error)
            raise DBAPIError.instance(
                self.sql,
                params,
                error,
                dbapi.Error,
                hide_parameters=True,
                dialect=engine.dialect,
                connection_invalidated=lost,
            ) from error
        finally:
            if pooled is not None:
                pooled.close()


def finish(session: Session) -> None:
    """Commit the session's transaction; if it has none, because its write ran autocommitted
    outside it (`DriverStatement.first_row_alone`), run its after-commit hooks alone. Begun
    and committed only to run them, an empty transaction cost 40 µs in a hot loop, the hooks
    alone 1 µs (bench/RESULTS.md, "What changed" 34)."""
    if session.in_transaction():
        session.commit()
    else:
        _run_after_commit(session)


def end_read(session: Session) -> None:
    """End the transaction a lookup began, before slow work that needs no database (hashing a
    password: ~150 ms, more while the process's hashing slots are taken). Held open
    meanwhile, it would keep a pooled connection (PostgreSQL), or the process's one writer
    lock (SQLite), from every other request and socket write. What it read stays loaded."""
    if session.in_transaction():
        session.commit()


def read_snapshot(session: Session) -> None:
    """From here to the end of the transaction that begins, every statement reads the same
    snapshot: a figure computed in several statements never counts a row that another of them
    missed. PostgreSQL's READ COMMITTED takes a snapshot per statement, so a new transaction
    at REPEATABLE READ (the pool resets the level when the connection goes back); SQLite's
    transaction reads one snapshot already. What was read before stays loaded. A session
    bound to a connection whose transaction its owner holds (`bind_to_connection`) keeps it."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql" or isinstance(bind, Connection):
        return
    end_read(session)
    session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's current transaction has committed."""
    session.info.setdefault(AFTER_COMMIT_KEY, []).append(callback)


def _run_after_commit(session: Session) -> None:
    callbacks: list[Callable[[], None]] = session.info.pop(AFTER_COMMIT_KEY, [])
    for callback in callbacks:
        callback()


def _drop_after_commit(session: Session, previous_transaction: Any) -> None:
    if previous_transaction.parent is None:
        session.info.pop(AFTER_COMMIT_KEY, None)
