"""Indexes built CONCURRENTLY by the migrations, on PostgreSQL, outside their transaction."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from alembic import op
from sqlalchemy import text

_INVALID = text(
    "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
    "WHERE c.relname = :name AND c.relnamespace = current_schema()::regnamespace "
    "AND NOT i.indisvalid"
)


def build_concurrently(
    name: str, table: str, columns: Sequence[str], *, unique: bool = False, where: str | None = None
) -> None:
    """Build an index without blocking writes (call it in an autocommit block). A build that
    failed left it INVALID: never used, its uniqueness not to be trusted. A rerun (Kubernetes
    retries the Job by itself) drops it and builds it again rather than taking it as done."""
    if op.get_bind().scalar(_INVALID, {"name": name}):
        op.drop_index(name, table_name=table, postgresql_concurrently=True)
    op.create_index(
        name,
        table,
        list(columns),
        unique=unique,
        postgresql_concurrently=True,
        if_not_exists=True,
        postgresql_where=text(where) if where else None,
    )


def create_index(
    name: str,
    table: str,
    columns: Sequence[str],
    *,
    postgresql_where: str | None = None,
    sqlite_where: str | None = None,
) -> None:
    """An index (partial, of the rows `*_where` selects, if given): CONCURRENTLY on PostgreSQL,
    where requests go on writing the table meanwhile; plainly on SQLite."""
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            build_concurrently(name, table, columns, where=postgresql_where)
        return
    where = text(sqlite_where) if sqlite_where else None
    op.create_index(name, table, list(columns), sqlite_where=where)


def drop_index(name: str, table: str) -> None:
    """`create_index` undone: CONCURRENTLY on PostgreSQL, plainly on SQLite."""
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(name, table_name=table, postgresql_concurrently=True, if_exists=True)
        return
    op.drop_index(name, table_name=table)


def create_indexes(indexes: Mapping[str, tuple[str, str]]) -> None:
    """One-column indexes, name -> (table, column): CONCURRENTLY on PostgreSQL, where requests
    go on writing the tables meanwhile; plainly on SQLite."""
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            for name, (table, column) in indexes.items():
                build_concurrently(name, table, [column])
        return
    for name, (table, column) in indexes.items():
        op.create_index(name, table, [column])
