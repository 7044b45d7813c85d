"""FCM away for longer than a few retries: a push is tried again, at most a few minutes apart,
for as long as what it announces lasts, and goes out once FCM is back; only a push that
outlived its use is dead-lettered."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from service.clock import clock
from service.extensions import db
from service.models import PushAttempt, PushJob
from service.push.fcm import FcmBackend
from service.worker.dispatch import Dispatcher
from service.worker.runner import Worker
from tests.push.test_delivery import bid, device, jobs
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn

START = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
BACKOFF_CAP = timedelta(minutes=5)


@pytest.fixture
def default_worker(app: Flask, standin: FcmStandIn, credentials_file: Path) -> Iterator[Worker]:
    """The real worker with the retry policy it runs with in production."""
    backend = FcmBackend(str(credentials_file), standin.url, max_concurrency=8, timeout_seconds=5)
    yield Worker(app, name="outage-worker", dispatcher=Dispatcher(backend))
    backend.close()


def retry_until(worker: Worker, moment: datetime) -> PushJob:
    """Passes at each retry's time until `moment` or until the job is no longer pending; each
    retry comes within the backoff's cap. Returns the job."""
    while True:
        worker.run_once()
        (job,) = jobs(worker)
        if job.state != "pending":
            return job
        assert job.available_at - clock.now() <= BACKOFF_CAP
        if job.available_at >= moment:
            return job
        clock.freeze(job.available_at)


def test_a_push_queued_in_an_fcm_outage_longer_than_the_old_retries_reaches_the_phone_once(
    client: ApiClient, default_worker: Worker, standin: FcmStandIn
) -> None:
    """FCM answers 500 for 40 minutes (eight tries used to give up after about 8.5); the bid
    lives a day. Ben's phone gets the push once FCM is back."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone")
    standin.script("ben-phone", *[fcm.internal()] * 1000)
    clock.freeze(START)
    bid(client, client.fresh(ana))

    job = retry_until(default_worker, START + timedelta(minutes=40))
    assert job.state == "pending"
    failed = len(standin.messages())
    assert failed > 8
    assert job.attempts == failed

    standin.reset()  # FCM is back
    clock.freeze(job.available_at)
    assert default_worker.run_once().pushes == 1
    assert [(j.state, j.attempts) for j in jobs(default_worker)] == [("done", failed + 1)]
    assert [m["token"] for m in standin.messages()] == ["ben-phone"]
    clock.advance(timedelta(hours=1))
    assert default_worker.run_once().pushes == 0


def test_a_push_whose_bid_expires_during_the_outage_is_dead_lettered_then_not_before(
    client: ApiClient, default_worker: Worker, standin: FcmStandIn
) -> None:
    """The bid expires an hour in, FCM still away: the push is tried until its next try would
    come after the bid's expiry, then dead-lettered for operators to see."""
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "ben-phone")
    standin.script("ben-phone", *[fcm.unavailable()] * 1000)
    clock.freeze(START)
    bid(client, client.fresh(ana))
    expiry = START + timedelta(hours=1)
    with default_worker.app.app_context(), db.scope() as session:
        session.execute(select(PushJob)).scalar_one().expires_at = expiry

    job = retry_until(default_worker, expiry + timedelta(minutes=10))

    assert job.state == "dead"
    assert expiry - BACKOFF_CAP <= job.finished_at < expiry  # type: ignore[operator]
    with default_worker.app.app_context(), db.scope() as session:
        outcomes = list(session.scalars(select(PushAttempt.outcome)))
    assert outcomes == ["retry"] * len(standin.messages())
    assert len(outcomes) > 8
