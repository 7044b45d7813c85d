"""A worker pass costs the same few statements whether it takes one push job or a full batch:
the devices, the deliveries and the results of all its jobs are read and written together."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select

from service.clock import clock
from service.extensions import db
from service.models import Device, PushAttempt, PushDelivery, PushJob
from service.worker.dispatch.statements import _statements
from service.worker.runner import Worker
from tests.push.test_delivery import bid, device
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient, Person
from tests.support.fcm_standin import FcmStandIn

# Claim; add the missing deliveries; read them; lock the jobs still held; results; attempts;
# dead tokens and their remembering; expired, done, dead-lettered and retried jobs (each of the
# last six only when there are any).
MOST = 12


@contextmanager
def statements(worker: Worker) -> Iterator[list[str]]:
    """The SELECT/INSERT/UPDATE/DELETE statements run meanwhile, as "VERB table"."""
    seen: list[str] = []

    def on(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        found = re.match(r"\s*(SELECT|INSERT INTO|UPDATE|DELETE FROM)\s+(\w+)", statement)
        if found:
            verb, name = found.groups()
            table = re.search(r"\bFROM\s+(\w+)", statement)
            if verb == "SELECT" and table:
                name = table.group(1)
            seen.append(f"{verb.split()[0]} {name}")

    with worker.app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", on)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on)


@pytest.fixture(params=["native", "select-then-update"], autouse=True)
def claim_style(request: pytest.FixtureRequest, app: Flask) -> Iterator[str]:
    """Every test here runs twice: with the database's own claim, and with the claim of
    SQLite before 3.35 (no UPDATE ... RETURNING), which picks, leases, then reads back."""
    with app.app_context():
        dialect = db.engine.dialect
    native = dialect.update_returning
    if request.param == "select-then-update":
        dialect.update_returning = False
    _statements.cache_clear()
    yield str(request.param)
    dialect.update_returning = native
    _statements.cache_clear()


def fallback(worker: Worker) -> int:
    """Without UPDATE ... RETURNING (SQLite before 3.35) the claim takes 3 statements, not 1."""
    with worker.app.app_context():
        return 0 if db.engine.dialect.update_returning else 2


def one_pass(worker: Worker) -> tuple[int, list[str]]:
    """One pass of the dispatcher alone (no bid expiry, no break resume)."""
    assert worker.dispatcher is not None
    with statements(worker) as seen, worker.app.app_context(), db.scope() as session:
        sent = worker.dispatcher.run(session, worker.name)
    return sent, seen


def partner_with_devices(client: ApiClient, tokens: list[str]) -> Person:
    """A new couple whose second partner has these devices; returns the first (the sender)."""
    ana, ben = client.couple()
    for token in tokens:
        device(client, ben, token)
    return ana


def test_a_pass_costs_the_same_statements_for_one_job_or_a_batch(
    client: ApiClient, worker: Worker
) -> None:
    sender = partner_with_devices(client, ["one-a-token", "one-b-token"])
    bid(client, sender)
    sent, one_job = one_pass(worker)
    assert sent == 2

    for n in range(4):
        sender = partner_with_devices(client, [f"many-{n}-a-token", f"many-{n}-b-token"])
        for _ in range(3):
            bid(client, sender)
    sent, twelve_jobs = one_pass(worker)
    assert sent == 24
    assert twelve_jobs == one_job
    assert len(one_job) <= 7 + fallback(worker), one_job
    claim = (
        ["UPDATE push_jobs"]
        if not fallback(worker)
        else ["SELECT push_jobs", "UPDATE push_jobs", "SELECT push_jobs"]
    )
    assert one_job[: len(claim)] == claim
    with worker.app.app_context(), db.scope() as session:
        states = list(session.scalars(select(PushJob.state)))
        delivered = list(session.scalars(select(PushDelivery.state)))
    assert states == ["done"] * 13
    assert delivered == ["sent"] * 26
    # Nothing left: an empty pass is a single statement (the claim).
    assert one_pass(worker) == (0, [one_job[0]])


def test_every_outcome_in_one_pass_is_recorded_in_a_bounded_number_of_statements(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    clock.freeze(datetime(2031, 5, 1, 12, 0, tzinfo=UTC))
    answers = {
        "sent-token": [fcm.SUCCESS],
        "dead-token": [fcm.UNREGISTERED],
        "invalid-token": [fcm.INVALID_ARGUMENT],
        "failed-token": [fcm.THIRD_PARTY_AUTH_ERROR],
        "busy-token": [fcm.unavailable("30")],
    }
    for token, answer in answers.items():
        standin.script(token, *answer)
        bid(client, partner_with_devices(client, [token]))
    bid(client, partner_with_devices(client, ["late-token"]))
    late = jobs_by_token(fcm_worker)["late-token"]
    with fcm_worker.app.app_context(), db.scope() as session:
        job = session.get(PushJob, late)
        assert job is not None
        job.expires_at = clock.now()  # what it announced is over: it is not sent any more

    sent, seen = one_pass(fcm_worker)

    assert sent == 5
    assert len(seen) <= MOST + fallback(fcm_worker), seen
    jobs = jobs_by_token(fcm_worker, state=True)
    assert jobs == {
        "sent-token": "done",
        "dead-token": "done",
        "invalid-token": "dead",
        "failed-token": "dead",
        "busy-token": "pending",
        "late-token": "expired",
    }
    busy_id = jobs_by_token(fcm_worker)["busy-token"]
    with fcm_worker.app.app_context(), db.scope() as session:
        busy = session.get(PushJob, busy_id)
        assert busy is not None
        assert busy.available_at >= clock.now() + timedelta(seconds=30)  # Retry-After wins
        assert (busy.attempts, busy.claimed_by, busy.last_error) == (1, None, "retrying")
        outcomes = sorted(session.scalars(select(PushAttempt.outcome)))
        assert outcomes == ["failed", "invalid", "retry", "sent", "unregistered"]
        dead = session.scalar(select(Device).where(Device.push_token == "dead-token"))
        assert dead is not None and (dead.active, dead.disabled_reason) == (False, "unregistered")
        deliveries = {
            d.state: (d.attempts, d.message_id is not None, d.sent_at is not None)
            for d in session.scalars(select(PushDelivery))
        }
    assert deliveries == {
        "sent": (1, True, True),
        "unregistered": (1, False, False),
        "invalid": (1, False, False),
        "failed": (1, False, False),
        "pending": (1, False, False),
    }


def jobs_by_token(worker: Worker, state: bool = False) -> dict[str, Any]:
    """Each job by its recipient's (only) device token: its id, or its state."""
    with worker.app.app_context(), db.scope() as session:
        rows = session.execute(
            select(Device.push_token, PushJob.id, PushJob.state).join(
                PushJob, PushJob.recipient_id == Device.user_id
            )
        ).all()
    return {token: (job_state if state else job_id) for token, job_id, job_state in rows}
