"""A pass never waits for a device another transaction holds (a registration or a deletion of
that phone left open, or just slow): the other pushes go, the held device's waits for a later
pass, and the held device FCM declared dead is switched off at the next report."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from service import create_app
from service.clock import clock
from service.extensions import db
from service.models import Device, PushAttempt, PushDelivery, PushJob
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


@pytest.fixture
def impatient_worker(database_url: str, fcm_worker_on: Callable[..., Worker]) -> Worker:
    """The real worker, sending to the stand-in, whose statements give up after a second."""
    app = create_app(make_settings(database_url, DATABASE_STATEMENT_TIMEOUT_MS=STATEMENT_MS))
    return fcm_worker_on(app, name="impatient")


def held(token: str) -> object:
    return select(Device).where(Device.push_token == token).with_for_update()


def by_token(worker: Worker) -> dict[str, tuple[str, int, int]]:
    """Each push by its recipient's (only) device token: its state, deliveries and attempts."""
    with worker.app.app_context(), db.scope() as session:
        rows = session.execute(
            select(
                Device.push_token,
                PushJob.state,
                func.count(PushDelivery.id.distinct()),
                func.count(PushAttempt.id),
            )
            .join(PushJob, PushJob.recipient_id == Device.user_id)
            .outerjoin(PushDelivery, PushDelivery.job_id == PushJob.id)
            .outerjoin(PushAttempt, PushAttempt.delivery_id == PushDelivery.id)
            .group_by(Device.push_token, PushJob.id, PushJob.state)
        ).all()
    return {token: (state, deliveries, attempts) for token, state, deliveries, attempts in rows}


def passing(worker: Worker) -> int:
    """One pass of the pushes, which must not wait out a statement timeout."""
    started = time.monotonic()
    pushes = worker.run_once(housekeeping=False).pushes
    assert time.monotonic() - started < STATEMENT_MS / 1000
    return pushes


def test_a_device_held_elsewhere_holds_up_neither_the_pass_nor_the_other_pushes(
    client: ApiClient, app: Flask, impatient_worker: Worker, standin: FcmStandIn
) -> None:
    t0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    clock.freeze(t0)
    ana, ben = client.couple("Ana", "Ben")
    cat, dan = client.couple("Cat", "Dan")
    device(client, ben, "ben-phone-token")
    device(client, dan, "dan-phone-token")
    bid(client, client.fresh(ana))
    bid(client, client.fresh(cat))
    with rows_held(app, held("ben-phone-token")):
        assert passing(impatient_worker) == 1
        assert [m["token"] for m in standin.messages()] == ["dan-phone-token"]
        assert by_token(impatient_worker) == {
            "ben-phone-token": ("pending", 0, 0),  # left for a later pass, not an attempt
            "dan-phone-token": ("done", 1, 1),
        }
        with impatient_worker.app.app_context(), db.scope() as session:
            job = session.scalar(select(PushJob).where(PushJob.state == "pending"))
            assert job is not None
            # A moment later, behind the pushes queued meanwhile; not an attempt.
            assert (job.available_at, job.attempts) == (t0 + timedelta(seconds=1), 0)
        clock.freeze(t0 + timedelta(seconds=1))
        assert passing(impatient_worker) == 0  # still held: still left, still no wait
    clock.freeze(t0 + timedelta(seconds=2))
    assert passing(impatient_worker) == 1
    assert [m["token"] for m in standin.messages()] == ["dan-phone-token", "ben-phone-token"]
    assert by_token(impatient_worker) == {
        "ben-phone-token": ("done", 1, 1),
        "dan-phone-token": ("done", 1, 1),
    }


def test_a_dead_token_on_a_held_device_is_switched_off_at_its_next_report(
    client: ApiClient, app: Flask, impatient_worker: Worker, standin: FcmStandIn
) -> None:
    """FCM reports Ben's token dead after another transaction took hold of his device (while
    the push was out): switching it off would wait. The pass is recorded without it (the token
    is remembered dead at once); the device is switched off when a later push to it is refused
    again."""
    clock.freeze(datetime(2031, 5, 1, 12, 0, tzinfo=UTC))
    ana, ben = client.couple("Ana", "Ben")
    cat, dan = client.couple("Cat", "Dan")
    device(client, ben, "ben-phone-token")
    device(client, dan, "dan-phone-token")
    slowly_refused = dataclasses.replace(fcm.UNREGISTERED, delay=0.3)
    standin.script("ben-phone-token", slowly_refused, fcm.UNREGISTERED)
    standin.script("dan-phone-token", fcm.UNREGISTERED)
    bid(client, client.fresh(ana))
    bid(client, client.fresh(cat))

    def reasons() -> dict[str, tuple[bool, str | None]]:
        with impatient_worker.app.app_context(), db.scope() as session:
            rows = session.execute(select(Device.push_token, Device.active, Device.disabled_reason))
            return {token: (active, reason) for token, active, reason in rows}

    def out_to_ben() -> bool:
        return "ben-phone-token" in [m["token"] for m in standin.messages()]

    with ThreadPoolExecutor(max_workers=1) as pool:
        one_pass = pool.submit(passing, impatient_worker)
        wait_until(out_to_ben, what="Ben's push out to FCM")
        with rows_held(app, held("ben-phone-token")):
            assert one_pass.result(timeout=10) == 2
            assert by_token(impatient_worker) == {
                "ben-phone-token": ("done", 1, 1),
                "dan-phone-token": ("done", 1, 1),
            }
    assert reasons() == {
        "ben-phone-token": (True, None),
        "dan-phone-token": (False, "unregistered"),
    }
    again = client.post(
        "/api/v1/devices",
        as_=client.fresh(ben),
        json={"platform": "android", "push_token": "ben-phone-token"},
    )
    assert again.status_code == 422, again.text  # remembered dead already
    bid(client, client.fresh(ana))
    assert passing(impatient_worker) == 1
    assert reasons()["ben-phone-token"] == (False, "unregistered")


def test_a_retry_to_a_held_device_waits_for_it_as_a_first_push_does(
    client: ApiClient, app: Flask, impatient_worker: Worker, standin: FcmStandIn
) -> None:
    """Ben's tablet is to be tried again when a registration takes hold of it (Cat signing in
    on it, say): the retry is not sent to a phone that may be someone else's once that
    commits. It waits a moment, not an attempt, as a first push to a held device does."""
    t0 = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    clock.freeze(t0)
    ana, ben = client.couple("Ana", "Ben")
    device(client, ben, "shared-tablet-token")
    standin.script("shared-tablet-token", fcm.unavailable())
    bid(client, client.fresh(ana))
    assert passing(impatient_worker) == 1  # FCM could not take it: to be tried again
    with impatient_worker.app.app_context(), db.scope() as session:
        due = session.scalar(select(PushJob.available_at))
    assert due is not None
    clock.freeze(due)
    with rows_held(app, held("shared-tablet-token")):
        assert passing(impatient_worker) == 0
        assert len(standin.messages()) == 1  # the first try only
        assert by_token(impatient_worker) == {"shared-tablet-token": ("pending", 1, 1)}
        with impatient_worker.app.app_context(), db.scope() as session:
            job = session.scalars(select(PushJob)).one()
            assert (job.available_at, job.attempts) == (due + timedelta(seconds=1), 1)
    clock.freeze(due + timedelta(seconds=1))
    assert passing(impatient_worker) == 1
    assert by_token(impatient_worker) == {"shared-tablet-token": ("done", 1, 2)}
