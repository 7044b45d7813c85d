"""A device deleted while its push is out: the pass still records every push it sent, so no
other phone gets the same push twice, and the deleted one is never tried again. An account
deleted as the pass records its push does not deadlock with it."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from flask import Flask

from service.clock import clock
from service.worker.runner import Tick, Worker
from tests.push.test_delivery import bid, device, jobs
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn
from tests.support.locks import first_statement_held
from tests.support.waiting import wait_until


@pytest.mark.committed
def test_a_device_deleted_while_its_push_is_out_leaves_the_pass_recorded(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    tablet = device(client, ben, "ben-tablet")
    standin.script("ben-tablet", fcm.Answer(delay=1.0))
    bid(client, ana)
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(fcm_worker.run_once)
        wait_until(lambda: len(standin.messages()) == 2, what="both pushes on their way to FCM")
        gone = client.delete(f"/api/v1/devices/{tablet['id']}", as_=ben)
        assert gone.status_code == 204
        assert sending.result(timeout=10).pushes == 2
    assert [job.state for job in jobs(fcm_worker)] == ["done"]
    # Long after any lease has run out, nothing goes out again.
    clock.advance(timedelta(hours=1))
    assert fcm_worker.run_once().pushes == 0
    assert sorted(m["token"] for m in standin.messages()) == ["ben-phone", "ben-tablet"]


@pytest.mark.postgres
@pytest.mark.committed
def test_an_account_deleted_as_a_push_to_it_is_recorded_does_not_deadlock(
    client: ApiClient, app: Flask, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """Ben deletes his account as the worker records the push to his phone: the deletion has
    cancelled his couple's jobs and is about to take his device and its delivery. Had the
    worker waited for the jobs, and the deletion then for the delivery the worker took, each
    would wait for the other until PostgreSQL aborts one: the whole pass, whose pushes go out
    again. The worker passes over the jobs the deletion holds: the deletion waits for nobody."""
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    standin.script("ben-phone", fcm.Answer(delay=1.0))
    bid(client, ana)
    api = ApiClient(client.base_url)
    passed = threading.Event()

    def one_pass() -> Tick:
        try:
            return fcm_worker.run_once()
        finally:
            passed.set()

    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        first_statement_held(
            app, lambda sql: sql.startswith("UPDATE push_jobs SET payload"), until=passed.is_set
        ) as held,
    ):
        sending = pool.submit(one_pass)
        wait_until(lambda: len(standin.messages()) == 1, what="the push on its way to FCM")
        deleting = pool.submit(api.delete, "/api/v1/me", as_=ben)
        deleted, tick = deleting.result(timeout=20), sending.result(timeout=20)
    assert held.is_set()  # the deletion held the jobs as the pass recorded
    assert deleted.status_code == 204, deleted.text
    assert tick.pushes == 1
    assert jobs(fcm_worker) == []  # Ben's went with his account


@pytest.mark.postgres
@pytest.mark.committed
def test_a_device_deleted_as_fcm_unregisters_it_does_not_deadlock(
    client: ApiClient, app: Flask, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """FCM answers that Ben's token is dead just as Ben removes that device: the deletion
    takes the device, then its deliveries. The worker switches the device off and records its
    delivery, and must take the device first too, or each waits for the other until
    PostgreSQL aborts one: the whole pass, or the phone's DELETE answered 503."""
    ana, ben = client.couple()
    phone = device(client, ben, "ben-phone")
    standin.script("ben-phone", fcm.UNREGISTERED)
    bid(client, ana)
    api = ApiClient(client.base_url)
    with (
        ThreadPoolExecutor(max_workers=2) as pool,
        first_statement_held(app, lambda sql: sql.startswith("UPDATE push_deliveries")) as held,
    ):
        sending = pool.submit(fcm_worker.run_once)
        wait_until(held.is_set, what="the pass to record the delivery")
        deleting = pool.submit(api.delete, f"/api/v1/devices/{phone['id']}", as_=ben)
        deleted, tick = deleting.result(timeout=20), sending.result(timeout=20)
    assert deleted.status_code == 204, deleted.text
    assert tick.pushes == 1
    assert [job.state for job in jobs(fcm_worker)] == ["done"]
