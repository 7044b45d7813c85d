"""Taking the first few rows of a long queue without reading all of it.

A condition over several kinds of rows (`state = a AND ... OR state = b AND ...`,
`status IN (...)`) ordered by time is, for PostgreSQL, a bitmap of every matching row, sorted:
to take 32 jobs from a queue of 100,000 it read all 100,000 (bench/RESULTS.md, "What changed"
36). One ordered scan per kind, each stopping at the limit, reads about as many rows as it takes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, Subquery, literal_column, select, union_all


def literal_limit(n: int) -> ColumnElement[int]:
    """`n` for a LIMIT, written into the SQL rather than bound: the generic plan of a prepared
    statement would not know a bound LIMIT (PostgreSQL then plans for a tenth of the rows) and
    might read the whole queue again."""
    return literal_column(str(int(n)), Integer)


def first_of_each(scans: Iterable[Select[*tuple[Any, ...]]], most: int, name: str) -> Subquery:
    """The first `most` rows of each of `scans` (each ordered as an index reads it, and locked
    if it asks to be), together, in the order of `scans`; its columns are theirs."""
    limit = literal_limit(most)
    firsts = [select(*scan.limit(limit).subquery().c) for scan in scans]
    return union_all(*firsts).subquery(name)
