"""`DriverStatement`: a Core statement compiled once per dialect and run as driver SQL."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, CursorResult, Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


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
