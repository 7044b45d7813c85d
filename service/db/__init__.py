"""The database: engine, a session per request or job, and after-commit hooks."""

from service.db.engines import Bounds, make_engine, readiness_engine
from service.db.sessions import Database
from service.db.statements import DriverStatement
from service.db.transactions import (
    Busy,
    after_commit,
    autocommits,
    end_read,
    finish,
    groups_held,
    lock_unless_busy,
    read_snapshot,
)

__all__ = [
    "Bounds",
    "Busy",
    "Database",
    "DriverStatement",
    "after_commit",
    "autocommits",
    "end_read",
    "finish",
    "groups_held",
    "lock_unless_busy",
    "make_engine",
    "read_snapshot",
    "readiness_engine",
]
