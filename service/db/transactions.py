"""A session's transaction: after-commit hooks, autocommitted writes, reads and snapshots."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection, Select
from sqlalchemy.orm import Session

T = TypeVar("T")

AFTER_COMMIT_KEY = "reach.after_commit"
# Set on sessions that may autocommit a transaction of one statement (PostgreSQL, own engine).
AUTOCOMMIT_KEY = "reach.autocommit"


def autocommits(session: Session) -> bool:
    """Whether the session's next statement may run autocommitted, a transaction of its own:
    on PostgreSQL through the service's own engine (not inside a test's outer transaction),
    while the session has not begun its transaction. psycopg then sends no BEGIN before the
    statement and no COMMIT after it, two round trips saved; `finish(session)` still runs
    the after-commit hooks."""
    return bool(session.info.get(AUTOCOMMIT_KEY)) and not session.in_transaction()


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


class Busy(Exception):
    """The row is locked by another transaction: a background job comes back to it later."""


def lock_unless_busy(session: Session, model: type[T], key: Any) -> T | None:
    """`session.get(model, key)` locked for update, read again; None if there is no such row.
    On PostgreSQL a row another transaction holds raises `Busy` at once instead of waiting:
    a worker's housekeeping must not wait out the statement timeout behind a transaction left
    open (a `psql` session), fail the pass and so hold up every push behind it."""
    if session.get_bind().dialect.name != "postgresql":
        return session.get(model, key, with_for_update=True, populate_existing=True)
    found = session.get(model, key, with_for_update={"skip_locked": True}, populate_existing=True)
    if found is None and session.get(model, key, populate_existing=True) is not None:
        raise Busy(f"{model.__name__} {key} is locked")
    return found


def groups_held(session: Session, rows: Select[Any, Any], of: Any = None) -> set[Any]:
    """Of `rows` (each a row's id and the group it is of: a job, a session), lock those no
    other transaction holds (SKIP LOCKED; of the table `of` when the select joins others), and
    return the groups some of whose rows another transaction holds. Locked first, then counted:
    a row added meanwhile would lock the group's own row, which the caller holds. A prune passes
    over such a group rather than wait for it until the statement timeout."""
    locked = Counter(
        group for _, group in session.execute(rows.with_for_update(of=of, skip_locked=True))
    )
    every = Counter(group for _, group in session.execute(rows))
    return {group for group, count in every.items() if locked[group] < count}
