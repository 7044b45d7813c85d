"""The SQL statements of a pass, built once per dialect and batch size."""

from __future__ import annotations

import functools
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Dialect,
    Executable,
    Select,
    Table,
    and_,
    bindparam,
    case,
    false,
    insert,
    literal,
    null,
    select,
    true,
    union_all,
    update,
)

from service.models import DeadPushToken, Device, PushAttempt, PushDelivery, PushJob, User
from service.services import scans

TERMINAL = ("sent", "unregistered", "invalid", "failed", "dead", "skipped")

JOBS = cast(Table, PushJob.__table__)
DELIVERIES = cast(Table, PushDelivery.__table__)
ATTEMPTS = cast(Table, PushAttempt.__table__)
DEVICES = cast(Table, Device.__table__)
DEAD_TOKENS = cast(Table, DeadPushToken.__table__)
USERS = cast(Table, User.__table__)


class _Statements:
    """A pass's statements, built once per dialect and batch size: built anew on every pass,
    they cost more CPU than running them does (the SQL is compiled once either way)."""

    def __init__(self, dialect: Dialect, batch: int) -> None:
        def param(name: str, column: ColumnElement[Any]) -> BindParameter[Any]:
            return bindparam(name, type_=column.type)

        ids: BindParameter[Any] = bindparam("ids", expanding=True)
        now = param("now", JOBS.c.available_at)
        self.pick = _pick(now, batch, lock=dialect.name == "postgresql")
        claimed = (
            JOBS.c.id,
            JOBS.c.recipient_id,
            JOBS.c.payload,
            JOBS.c.available_at,
            JOBS.c.expires_at,
            JOBS.c.attempts,
            JOBS.c.urgent,
        )
        lease = {
            "state": "claimed",
            "claimed_by": param("worker", JOBS.c.claimed_by),
            "claimed_until": param("until", JOBS.c.claimed_until),
        }
        self.claim = None
        if dialect.update_returning:
            claim = update(JOBS).where(JOBS.c.id.in_(self.pick)).values(lease)
            self.claim = claim.returning(*claimed)
        self.lease = update(JOBS).where(JOBS.c.id.in_(ids)).values(lease)
        self.claimed = select(*claimed).where(JOBS.c.id.in_(ids))
        # Still this pass's: claimed by its worker with its lease (not taken over since, by
        # another worker or by a later pass of the same one).
        held = and_(
            JOBS.c.state == "claimed",
            JOBS.c.claimed_by == param("worker", JOBS.c.claimed_by),
            JOBS.c.claimed_until == param("until", JOBS.c.claimed_until),
        )
        # Locks them as their UPDATE would (FOR NO KEY UPDATE), before anything is recorded;
        # one another transaction holds is passed over, not waited for (SKIP LOCKED).
        self.ours = select(JOBS.c.id).where(JOBS.c.id.in_(ids), held)
        self.holding = self.ours.with_for_update(key_share=True, skip_locked=True)
        # Only while this worker holds them: a job withdrawn meanwhile stays cancelled.
        self.expire = (
            update(JOBS)
            .where(JOBS.c.id.in_(ids), held)
            .values(
                state="expired",
                finished_at=now,
                last_error="expired",
                claimed_by=None,
                claimed_until=None,
            )
        )

        # Every (job, active device of its recipient) pair that has no delivery yet, the device
        # locked as its delivery's foreign key locks it (FOR KEY SHARE). One that another
        # transaction holds (FOR UPDATE: a registration or a deletion under way, or left open)
        # is left out rather than waited for: its job waits for a later pass (`held`).
        undelivered = (
            select(JOBS.c.id, DEVICES.c.id)
            .join_from(JOBS, DEVICES, DEVICES.c.user_id == JOBS.c.recipient_id)
            .where(
                JOBS.c.id.in_(ids),
                DEVICES.c.active.is_(True),
                ~select(DELIVERIES.c.id)
                .where(DELIVERIES.c.job_id == JOBS.c.id, DELIVERIES.c.device_id == DEVICES.c.id)
                .exists(),
            )
        )
        pairs = undelivered.add_columns(DEVICES.c.platform, now).with_for_update(
            read=True, key_share=True, of=DEVICES, skip_locked=True
        )
        self.add_missing = _insert_new(
            dialect,
            DELIVERIES,
            ["job_id", "device_id"],
            ["job_id", "device_id", "platform", "updated_at"],
            pairs,
        )
        # Every delivery of the jobs, and (with no id, state "held") the active devices of their
        # recipients still without one: held elsewhere as the deliveries were added. A pending
        # delivery's device is locked as a new one's is (FOR KEY SHARE, SKIP LOCKED): one that
        # another transaction holds (a registration that may move it to someone else, or a
        # deletion) is `held`, its push not sent in this pass. No statement more: one lookup
        # of the device by its key per pending delivery (a new one's lock is this pass's own).
        again = DEVICES.alias("device_again")
        device_free = (
            select(again.c.id)
            .where(again.c.id == DELIVERIES.c.device_id)
            .with_for_update(read=True, key_share=True, skip_locked=True)
            .exists()
        )
        device_held = case((DELIVERIES.c.state == "pending", ~device_free), else_=false())
        existing = (
            select(
                DELIVERIES.c.id,
                DELIVERIES.c.job_id,
                DELIVERIES.c.state,
                DELIVERIES.c.attempts,
                device_held.label("held"),
                DEVICES.c.id.label("device_id"),
                DEVICES.c.user_id,
                DEVICES.c.platform,
                DEVICES.c.push_token,
                DEVICES.c.active,
                USERS.c.notes_on_lock_screen,
                USERS.c.timezone,
                USERS.c.quiet_start,
                USERS.c.quiet_end,
            )
            .join_from(DELIVERIES, DEVICES, DEVICES.c.id == DELIVERIES.c.device_id)
            .join(USERS, USERS.c.id == DEVICES.c.user_id)
            .where(DELIVERIES.c.job_id.in_(ids))
        )
        held_devices = undelivered.with_only_columns(
            null().label("id"),
            JOBS.c.id.label("job_id"),
            literal("held", DELIVERIES.c.state.type).label("state"),
            literal(0, DELIVERIES.c.attempts.type).label("attempts"),
            true().label("held"),
            *existing.selected_columns[5:],
        ).join(USERS, USERS.c.id == DEVICES.c.user_id)
        both = union_all(existing, held_devices).subquery("deliveries")
        self.deliveries = select(both).order_by(both.c.id)

        self.skip = (
            update(DELIVERIES)
            .where(DELIVERIES.c.id.in_(ids))
            .values(state="skipped", last_error="device disabled or moved", updated_at=now)
        )
        self.delivered = update(DELIVERIES).where(DELIVERIES.c.id == bindparam("delivery_id"))
        # Only for the deliveries still there: a device deleted while its push was out takes
        # its deliveries with it, and the rest of the pass must still be recorded. The lock
        # makes a deletion under way either wait for this pass or be seen as done.
        delivery = param("delivery_id", ATTEMPTS.c.delivery_id)
        still_there = (
            select(DELIVERIES.c.id)
            .where(DELIVERIES.c.id == delivery)
            .with_for_update(read=True, key_share=True)
            .exists()
        )
        tried = ("worker", "outcome", "error", "retry_after", "started_at", "finished_at")
        self.attempts = insert(ATTEMPTS).from_select(
            ["delivery_id", *tried],
            select(delivery, *(param(name, ATTEMPTS.c[name]) for name in tried)).where(still_there),
        )
        self.bury = _insert_new(dialect, DEAD_TOKENS, ["token_sha256"])
        # Only the devices free now: one another transaction holds (a registration, a sign-out)
        # is not waited for, but stays on until a later push to it is refused again.
        free = select(DEVICES.c.id).where(DEVICES.c.id.in_(ids))
        free = free.with_for_update(key_share=True, skip_locked=True)
        self.unregister = (
            update(DEVICES)
            .where(DEVICES.c.id.in_(free))
            .values(
                active=False,
                disabled_reason=param("reason", DEVICES.c.disabled_reason),
                updated_at=now,
            )
        )
        finished = {"attempts": JOBS.c.attempts + 1, "claimed_by": None, "claimed_until": None}
        self.done = (
            update(JOBS)
            .where(JOBS.c.id.in_(ids), held)
            .values(state="done", finished_at=now, **finished)
        )
        self.dead = (
            update(JOBS)
            .where(JOBS.c.id.in_(ids), held)
            .values(state="dead", finished_at=now, last_error="gave up: see attempts", **finished)
        )
        self.again = (
            update(JOBS)
            .where(JOBS.c.id == bindparam("job_id"), held)
            .values(state="pending", last_error="retrying", **finished)
        )
        self.release = (
            update(JOBS)
            .where(JOBS.c.id.in_(ids), held)
            .values(state="pending", claimed_by=None, claimed_until=None)
        )
        # Not an attempt: the job waits for its recipient's quiet hours to end.
        self.defer = (
            update(JOBS)
            .where(JOBS.c.id == bindparam("job_id"), held)
            .values(state="pending", claimed_by=None, claimed_until=None)
        )


def _pick(now: BindParameter[Any], batch: int, lock: bool) -> Select[Any]:
    """The ids of up to `batch` jobs to claim: first those whose worker's lease ran out, then
    the pending ones whose time has come, in due order (`lock`: each row locked, the ones
    another worker holds skipped). Each kind is an ordered scan of `ix_push_jobs_due` that
    stops at `batch` (`scans.first_of_each`), however long the queue has grown."""
    kinds = (
        (JOBS.c.state == "claimed", JOBS.c.claimed_until < now),
        (JOBS.c.state == "pending", JOBS.c.available_at <= now),
    )
    each = [select(JOBS.c.id).where(*where).order_by(JOBS.c.available_at) for where in kinds]
    if lock:
        each = [scan.with_for_update(skip_locked=True) for scan in each]
    due = scans.first_of_each(each, batch, "due_jobs")
    return select(due.c.id).limit(scans.literal_limit(batch))


def _insert_new(
    dialect: Dialect,
    table: Table,
    keys: list[str],
    columns: list[str] | None = None,
    rows: Select[Any] | None = None,
) -> Executable:
    """INSERT (... SELECT `rows`, if given) that skips the rows whose unique `keys` are there."""
    if dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement: Any = postgresql.insert(table)
    elif dialect.name == "sqlite":
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(table)
    else:
        raise NotImplementedError(
            f"push dispatch supports PostgreSQL and SQLite, not {dialect.name}"
        )
    if rows is not None:
        statement = statement.from_select(columns, rows)
    return statement.on_conflict_do_nothing(index_elements=keys)


@functools.lru_cache(maxsize=16)
def _statements(dialect: Dialect, batch: int) -> _Statements:
    return _Statements(dialect, batch)
