"""Writing a new bid: the bid, the couple's next cursor, its event and its push job, atomically.

A bid is the hottest write there is, so on PostgreSQL the four rows are written by one
statement (data-modifying CTEs, one round trip); elsewhere (SQLite) step by step in the same
transaction. Either way a retry of a bid already sent writes nothing and gets `None`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    ARRAY,
    Connection,
    Dialect,
    Engine,
    Text,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

from service.db import DriverStatement, autocommits
from service.models import Bid, Couple, CoupleEvent, PushJob
from service.models.base import table
from service.services import events, members, push_outbox
from service.services.members import Member

_bids, _couples, _events, _jobs = table(Bid), table(Couple), table(CoupleEvent), table(PushJob)

# What a new bid has; the columns of its later life (seen, answered, expired...) start NULL.
BID_COLUMNS = (
    "id",
    "couple_id",
    "sender_id",
    "recipient_id",
    "client_id",
    "kind",
    "note",
    "status",
    "created_at",
    "reachable_at",
    "expires_at",
)
EVENT_COLUMNS = ("couple_id", "type", "at", "data")
JOB_COLUMNS = (
    "kind",
    "dedupe_key",
    "couple_id",
    "recipient_id",
    "urgent",
    "state",
    "attempts",
    "available_at",
    "expires_at",
    "created_at",
)

# INSERT ... ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING couple_id, per database.
_INSERT_NEW = {
    "postgresql": postgresql.insert(_bids)
    .on_conflict_do_nothing(index_elements=["sender_id", "client_id"])
    .returning(_bids.c.couple_id),
    "sqlite": sqlite.insert(_bids)
    .on_conflict_do_nothing(index_elements=["sender_id", "client_id"])
    .returning(_bids.c.couple_id),
}


def _one_statement(guarded: bool) -> ClauseElement:
    """WITH live_couple AS (SELECT ... FOR UPDATE), new_bid AS (INSERT ... ON CONFLICT DO
    NOTHING), next_cursor AS (UPDATE couples), appended AS (INSERT INTO couple_events) INSERT
    INTO push_jobs ... RETURNING cursor.

    Each step reads the previous one's RETURNING, so nothing follows a bid that was not new.
    The couple is locked first and only while it has not ended: a bid that waited on an
    unpair's lock finds it ended and writes nothing (the statement's snapshot, which the
    other checks read, still shows the couple live). `guarded`: the bid is inserted only if
    the sender is still the member it was computed for (`members.STILL_LIVE`), checked in the
    same statement.
    """
    params = {name: bindparam(f"bid_{name}", type_=_bids.c[name].type) for name in BID_COLUMNS}
    live_couple = (
        select(_couples.c.id)
        .where(_couples.c.id == params["couple_id"], _couples.c.ended_at.is_(None))
        .with_for_update()
        .cte("live_couple")
    )
    values = select(*params.values()).select_from(live_couple)
    if guarded:
        values = values.where(members.STILL_LIVE)
    new_bid = (
        postgresql.insert(_bids)
        .from_select(list(BID_COLUMNS), values)
        .on_conflict_do_nothing(index_elements=["sender_id", "client_id"])
        .returning(_bids.c.couple_id)
        .cte("new_bid")
    )
    next_cursor = (
        update(_couples)
        .where(_couples.c.id == new_bid.c.couple_id)
        .values(last_cursor=_couples.c.last_cursor + 1)
        .returning(_couples.c.last_cursor)
        .cte("next_cursor")
    )
    appended = (
        insert(_events)
        .from_select(
            ["cursor", *EVENT_COLUMNS],
            select(
                next_cursor.c.last_cursor,
                *(bindparam(f"event_{name}", type_=_events.c[name].type) for name in EVENT_COLUMNS),
            ),
            include_defaults=False,
        )
        .returning(_events.c.cursor)
        .cte("appended")
    )
    payload = func.jsonb_set(
        bindparam("job_payload", type_=_jobs.c.payload.type),
        cast(literal("{data,cursor}"), ARRAY(Text)),
        func.to_jsonb(cast(appended.c.cursor, Text)),
    )
    return (
        insert(_jobs)
        .from_select(
            ["cursor", "payload", *JOB_COLUMNS],
            select(
                appended.c.cursor,
                payload,
                *(bindparam(f"job_{name}", type_=_jobs.c[name].type) for name in JOB_COLUMNS),
            ),
            include_defaults=False,
        )
        .returning(_jobs.c.cursor)
    )


_ONE_STATEMENT = {guarded: _one_statement(guarded) for guarded in (False, True)}
# The same, compiled once per dialect class and guard (`db.DriverStatement`).
_COMPILED: dict[tuple[type, bool], DriverStatement] = {}
_STILL_LIVE = select(members.STILL_LIVE)


def write_new(
    session: Session,
    bid: dict[str, Any],
    event: dict[str, Any],
    job: dict[str, Any],
    *,
    proof: Member | None = None,
) -> int | None:
    """Write a new bid with its event and push job; its cursor, or None if nothing was written.

    `bid` has a value for each of BID_COLUMNS; `event` the event's type, at and data;
    `job` a row from `push_outbox.job` (its payload's data gets the cursor). With `proof`, the
    member the rows were computed from, not looked up in this transaction: nothing is written
    unless they are still live and unchanged. On PostgreSQL the write is one statement, so a
    session that has not begun its transaction runs it autocommitted (`db.autocommits`).
    """
    proof_params = {} if proof is None else members.still_live_params(proof)
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        cursor = _write_in_one_statement(session, bind, bid, event, job, proof_params)
        if cursor is not None:
            push_outbox.wake_after_commit(session)
        return cursor
    connection = session.connection()
    if proof is not None and not connection.execute(_STILL_LIVE, proof_params).scalar():
        return None
    if connection.execute(_INSERT_NEW[connection.dialect.name], bid).first() is None:
        return None
    cursor = events.next_cursor(session, bid["couple_id"])
    events.append(session, bid["couple_id"], cursor, event)
    push_outbox.queue(session, job, cursor)
    return cursor


def compiled_statement(dialect: Dialect, guarded: bool) -> DriverStatement:
    """The one-statement write compiled for `dialect` (once per dialect class and guard)."""
    key = (type(dialect), guarded)
    compiled = _COMPILED.get(key)
    if compiled is None:
        compiled = _COMPILED[key] = DriverStatement(_ONE_STATEMENT[guarded], dialect)
    return compiled


def _write_in_one_statement(
    session: Session,
    bind: Engine | Connection,
    bid: dict[str, Any],
    event: dict[str, Any],
    job: dict[str, Any],
    proof_params: dict[str, Any],
) -> int | None:
    compiled = compiled_statement(bind.dialect, guarded=bool(proof_params))
    params = statement_params(bid, event, job, proof_params)
    if autocommits(session) and isinstance(bind, Engine):
        row = compiled.first_row_alone(bind, params)
        cursor = None if row is None else row[0]
    else:
        cursor = compiled.execute(session.connection(), params).scalar()
    return None if cursor is None else int(cursor)


def statement_params(
    bid: dict[str, Any],
    event: dict[str, Any],
    job: dict[str, Any],
    proof_params: dict[str, Any],
) -> dict[str, Any]:
    """The bound parameters of the one-statement write (`_one_statement`) for these rows."""
    params: dict[str, Any] = {f"bid_{name}": bid[name] for name in BID_COLUMNS}
    params.update(proof_params)
    params.update({f"event_{name}": event[name] for name in EVENT_COLUMNS if name != "couple_id"})
    params["event_couple_id"] = bid["couple_id"]
    params.update({f"job_{name}": job[name] for name in JOB_COLUMNS})
    params["job_payload"] = job["payload"]
    return params
