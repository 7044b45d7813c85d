"""A pass whose pushes are out records what became of them without waiting for a push job
another transaction holds (a request withdrawing it, slow, or a `psql` session left open): the
pushes sent are recorded at once, and the job finishes at a later pass, nothing sent twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from service import create_app
from service.clock import clock
from service.extensions import db
from service.models import PushAttempt, PushDelivery, PushJob
from service.worker.dispatch import RetryPolicy
from service.worker.runner import Worker
from tests.push.test_delivery import bid, device
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn
from tests.support.locks import rows_held
from tests.support.settings import make_settings
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.committed]

STATEMENT_MS = 1000
LEASE_SECONDS = 10


@pytest.fixture
def impatient_worker(database_url: str, fcm_worker_on: Callable[..., Worker]) -> Worker:
    """The real worker, sending to the stand-in, whose statements give up after a second."""
    app = create_app(make_settings(database_url, DATABASE_STATEMENT_TIMEOUT_MS=STATEMENT_MS))
    policy = RetryPolicy(max_attempts=4)
    return fcm_worker_on(
        app, timeout_seconds=1, policy=policy, lease_seconds=LEASE_SECONDS, name="impatient"
    )


def recorded(worker: Worker) -> tuple[str, str, int, list[str]]:
    """The only job's state, its delivery's state and attempts, and the attempts' outcomes."""
    with worker.app.app_context(), db.scope() as session:
        job = session.scalars(select(PushJob)).one()
        delivery = session.scalars(select(PushDelivery)).one()
        tried = list(session.scalars(select(PushAttempt.outcome)))
    return job.state, delivery.state, delivery.attempts, tried


def test_a_job_held_elsewhere_as_its_push_comes_back_is_recorded_at_once_and_sent_once(
    client: ApiClient, app: Flask, impatient_worker: Worker, standin: FcmStandIn
) -> None:
    t0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    clock.freeze(t0)
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone-token")
    standin.script("ben-phone-token", fcm.slow(0.3))
    bid(client, client.fresh(ana))

    def one_pass() -> tuple[int, float]:
        pushes = impatient_worker.run_once(housekeeping=False).pushes
        return pushes, time.monotonic()

    with ThreadPoolExecutor(max_workers=1) as pool:
        passing = pool.submit(one_pass)
        wait_until(lambda: standin.received() != [], what="Ben's push out to FCM")
        with rows_held(app, select(PushJob).with_for_update()):
            held_from = time.monotonic()
            pushes, ended = passing.result(timeout=3 * LEASE_SECONDS)
            # Not a statement timeout's wait, let alone the lease's: what went out is recorded.
            assert ended - held_from < STATEMENT_MS / 1000
            assert pushes == 1
            assert recorded(impatient_worker) == ("claimed", "sent", 1, ["sent"])
    # Once its lease has run out, a later pass finds its push sent: the job is done.
    clock.freeze(t0 + timedelta(seconds=LEASE_SECONDS + 1))
    assert impatient_worker.run_once(housekeeping=False).pushes == 0
    assert recorded(impatient_worker) == ("done", "sent", 1, ["sent"])
    assert [m["token"] for m in standin.messages()] == ["ben-phone-token"]
