"""Which push jobs a worker's pass claims, and how much of the queue it reads to find them."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql

from service.clock import clock
from service.extensions import db
from service.models import PushJob
from service.worker.dispatch.statements import _statements
from service.worker.runner import Worker
from tests.support.client import ApiClient
from tests.support.plans import rows_read_after

NOW = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
PAYLOAD = {"data": {"type": "bid.created"}, "collapse_key": "bid"}


def add_job(session: Any, recipient: str, name: str, **columns: Any) -> None:
    session.add(
        PushJob(
            kind="bid.created",
            dedupe_key=f"claim-test:{name}",
            recipient_id=uuid.UUID(recipient),
            payload=PAYLOAD,
            created_at=NOW - timedelta(hours=1),
            **columns,
        )
    )


def claimed(due: datetime, by: str, *, until: datetime) -> dict[str, Any]:
    """The columns of a job a worker claimed, its lease running `until`."""
    return {"available_at": due, "state": "claimed", "claimed_by": by, "claimed_until": until}


def states(worker: Worker) -> dict[str, tuple[str, str | None]]:
    """Each job's state and who holds it, by the name it was added with."""
    with worker.app.app_context(), db.scope() as session:
        rows = session.execute(select(PushJob.dedupe_key, PushJob.state, PushJob.claimed_by))
        return {key.removeprefix("claim-test:"): (state, by) for key, state, by in rows}


def test_a_pass_takes_lapsed_leases_first_then_due_jobs_in_due_order_up_to_its_batch(
    client: ApiClient, worker: Worker
) -> None:
    _, ben = client.couple()
    clock.freeze(NOW)
    minute = timedelta(minutes=1)
    # Added out of due order, so that the claim's order is not the ids'. "lapsed": a worker died
    # holding it; "held": a worker is still busy with it.
    jobs = {
        "due-3": {"available_at": NOW - minute},
        "due-1": {"available_at": NOW - 3 * minute},
        "due-2": {"available_at": NOW - 2 * minute},
        "later": {"available_at": NOW + minute},
        "lapsed": claimed(NOW - 10 * minute, "gone-worker", until=NOW - timedelta(seconds=1)),
        "held": claimed(NOW - 20 * minute, "busy-worker", until=NOW + minute),
    }
    with worker.app.app_context(), db.scope() as session:
        for name, columns in jobs.items():
            add_job(session, ben.id, name, **columns)
    assert worker.dispatcher is not None
    three = dataclasses.replace(worker.dispatcher, batch=3)

    with worker.app.app_context(), db.scope() as session:
        assert three.run(session, worker.name) == 0  # nobody has a device: nothing to send
    assert three.last_claimed == 3
    assert states(worker) == {
        "lapsed": ("done", None),
        "due-1": ("done", None),
        "due-2": ("done", None),
        "due-3": ("pending", None),
        "later": ("pending", None),
        "held": ("claimed", "busy-worker"),
    }

    with worker.app.app_context(), db.scope() as session:
        three.run(session, worker.name)
    assert three.last_claimed == 1
    assert states(worker)["due-3"] == ("done", None)
    assert states(worker)["later"] == ("pending", None)


@pytest.mark.postgres
def test_a_pass_reads_about_as_many_jobs_as_it_takes_however_long_the_queue(
    client: ApiClient, worker: Worker
) -> None:
    """A worker that was stopped, or FCM away, while bids went on finds a long queue of due
    jobs. Each pass must find its batch without reading the whole queue, or the worker slows
    down as the queue grows, just when it has to catch up."""
    _, ben = client.couple()
    queued = 3000
    fill = (
        "INSERT INTO push_jobs (kind, dedupe_key, recipient_id, payload, urgent, state, "
        "available_at, attempts, created_at) SELECT 'bid.created', 'backlog:' || i, "
        ":recipient, CAST(:payload AS jsonb), true, 'pending', "
        "now() - interval '1 hour' + i * interval '1 ms', 0, now() "
        "FROM generate_series(1, :queued) AS i"
    )
    filled = {"recipient": ben.id, "payload": json.dumps(PAYLOAD), "queued": queued}
    pick = _statements(postgresql.psycopg.dialect(), 32).pick
    now = {"now": datetime.now(UTC)}
    read = rows_read_after(worker.app, fill, filled, pick, "push_jobs", now)

    assert 32 <= read <= 2 * 32, f"read {read} jobs of {queued} to claim 32"
