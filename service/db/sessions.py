"""`Database`: one session per app context (request, socket event, job, command)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask, current_app, g, has_app_context
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from service.db.engines import Bounds, make_engine, readiness_engine
from service.db.transactions import AUTOCOMMIT_KEY, _drop_after_commit, _run_after_commit

log = logging.getLogger("reach.db")

# The readiness probe's query: the revisions the database was migrated to (an error before
# it was migrated at all).
_MIGRATED = text("SELECT version_num FROM alembic_version")


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

    def answers(self) -> list[str]:
        """The revisions the database was migrated to; raise unless it answers within a few
        seconds and has been migrated (its Alembic version table is there): on PostgreSQL
        over a connection of its own (`readiness_engine`), on SQLite through a session."""
        probe = self._state().probe
        if probe is None:
            with self.scope() as session:
                return sorted(session.scalars(_MIGRATED))
        with probe.connect() as connection:
            return sorted(connection.scalars(_MIGRATED))

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
