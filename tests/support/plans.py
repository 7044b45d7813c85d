"""What PostgreSQL's plans did: rows read, from `EXPLAIN (ANALYZE, FORMAT JSON)`."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import Connection, text
from sqlalchemy.sql import ClauseElement

from service.extensions import db


def rows_read_after(
    app: Flask,
    fill: str,
    fill_params: dict[str, Any],
    statement: ClauseElement,
    table: str,
    params: dict[str, Any],
) -> int:
    """How many rows of `table` PostgreSQL read to run `statement` with `params`, once `fill`
    (SQL that adds rows, with `fill_params`) has run in the same transaction: the test's, so
    the rows it adds may refer to what the test made through the API."""
    with app.app_context(), db.scope() as session:
        connection = session.connection()
        connection.execute(text(fill), fill_params)
        return rows_read(connection, statement, table, params)


def rows_read(
    connection: Connection, statement: ClauseElement, table: str, params: dict[str, Any]
) -> int:
    """How many rows of `table` PostgreSQL read to run `statement` with `params` (analyzed
    first: the table as autovacuum leaves it), every scan of it added up."""
    connection.exec_driver_sql(f"ANALYZE {table}")
    sql = statement.compile(dialect=connection.dialect, compile_kwargs={"render_postcompile": True})
    plan = connection.exec_driver_sql(
        "EXPLAIN (ANALYZE, FORMAT JSON) " + sql.string, sql.construct_params(params)
    ).scalar_one()
    return rows_read_from(plan[0]["Plan"], table)


def rows_read_from(node: dict[str, Any], table: str) -> int:
    """The rows every scan of `table` in this plan node and below returned, in all."""
    own = 0
    if node.get("Relation Name") == table:
        own = int(node["Actual Rows"]) * int(node.get("Actual Loops", 1))
    return own + sum(rows_read_from(child, table) for child in node.get("Plans", []))


def rows_examined(connection: Connection, sql: str, params: Any, table: str) -> int:
    """How many rows and index entries of `table` PostgreSQL looked at to run `sql` (as the
    driver was given it, with `params`), those its filters then threw away included: a page
    that finds nothing after reading a couple's whole history examined all of it."""
    connection.exec_driver_sql(f"ANALYZE {table}")
    indexes = set(
        connection.exec_driver_sql(
            "SELECT indexname FROM pg_indexes WHERE tablename = %(table)s", {"table": table}
        ).scalars()
    )
    plan = connection.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).scalar_one()
    return _examined(plan[0]["Plan"], table, indexes)


def _examined(node: dict[str, Any], table: str, indexes: set[str]) -> int:
    own = 0
    if node.get("Relation Name") == table or (
        node.get("Node Type") == "Bitmap Index Scan" and node.get("Index Name") in indexes
    ):
        seen = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        own = int(seen + node.get("Rows Removed by Index Recheck", 0)) * int(
            node.get("Actual Loops", 1)
        )
    return own + sum(_examined(child, table, indexes) for child in node.get("Plans", []))


def rows_fetched(connection: Connection, sql: str, params: Any, table: str) -> int:
    """How many rows of `table` PostgreSQL fetched from the table itself to run `sql` (as the
    driver was given it, with `params`), those its filters threw away included. An index-only
    scan counts none: its look-ups in the table (Heap Fetches) are visibility checks, as many
    as the pages a vacuum could not mark all-visible while another test's snapshot was open,
    whatever the statement."""
    plan = connection.exec_driver_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params).scalar_one()
    return _fetched(plan[0]["Plan"], table)


def _fetched(node: dict[str, Any], table: str) -> int:
    own = 0
    if node.get("Relation Name") == table and node["Node Type"] != "Index Only Scan":
        seen = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
        own = int(seen) * int(node.get("Actual Loops", 1))
    return own + sum(_fetched(child, table) for child in node.get("Plans", []))
