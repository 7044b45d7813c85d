"""After a couple ends, or a push has nothing left to say, it does not go out again."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select

from service.clock import clock
from service.extensions import db
from service.models import PushJob
from service.worker.runner import Worker
from tests.dashboard.helpers import dead_letter
from tests.push.test_delivery import bid, device, jobs
from tests.support import fcm_standin as fcm
from tests.support.client import ApiClient
from tests.support.fcm_standin import FcmStandIn
from tests.support.repairs import start
from tests.support.waiting import wait_until

WORDS = "words-for-ben-only"


@pytest.mark.committed
def test_a_push_out_when_the_couple_ends_is_not_tried_again(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """FCM answers "try again later" after the unpair has cancelled the job: it stays
    cancelled, and the next passes leave it alone."""
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    standin.script("ben-phone", fcm.Answer(503, "UNAVAILABLE", delay=1.0))
    bid(client, ana)
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(fcm_worker.run_once)
        wait_until(lambda: len(standin.messages()) == 1, what="the push on its way to FCM")
        assert client.delete("/api/v1/couple", as_=ana).status_code == 204
        assert sending.result(timeout=10).pushes == 1
    (job,) = jobs(fcm_worker)
    assert (job.state, job.last_error) == ("cancelled", "couple ended")
    assert fcm_worker.run_once().pushes == 0
    assert len(standin.messages()) == 1


def test_an_ended_couples_pushes_keep_no_words_and_none_can_be_sent_again(
    client: ApiClient, app: Flask, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    client.patch("/api/v1/me", as_=ben, json={"notes_on_lock_screen": True})
    device(client, ben, "ben-phone")
    bid(client, ana, note=f"{WORDS}, sent")
    assert fcm_worker.run_once().pushes == 1
    dead = dead_letter(client, fcm_worker, standin, ana, "ben-phone", f"{WORDS}, dead-lettered")
    with app.app_context():
        payloads = list(db.session.scalars(select(PushJob.payload).order_by(PushJob.id)))
    assert all(WORDS in str(payload) for payload in payloads)

    assert client.delete("/api/v1/couple", as_=client.fresh(ben)).status_code == 204
    after = {job.id: job for job in jobs(fcm_worker)}
    # The dead letter is cancelled, so no operator's retry sends it to a former partner.
    assert after[dead].state == "cancelled"
    assert [job.state for job in after.values()] == ["done", "cancelled"]
    assert [job.payload for job in after.values()] == [{}, {}]


@pytest.mark.committed
def test_a_bid_answered_while_its_push_is_out_is_not_pushed_again(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    """FCM answers "try again later" after Ben turned toward the bid over the socket: the push
    has nothing left to say, so it is withdrawn rather than tried again."""
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    standin.script("ben-phone", fcm.Answer(503, "UNAVAILABLE", delay=1.0))
    sent = bid(client, ana)
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(fcm_worker.run_once)
        wait_until(lambda: len(standin.messages()) == 1, what="the push on its way to FCM")
        answer = {"client_id": str(uuid.uuid4()), "kind": "toward"}
        answered = client.post(f"/api/v1/bids/{sent['id']}/responses", as_=ben, json=answer)
        assert answered.status_code == 201, answered.text
        assert sending.result(timeout=10).pushes == 1
    (job,) = jobs(fcm_worker)
    assert job.state == "cancelled"
    clock.freeze(clock.now() + timedelta(minutes=10))
    assert fcm_worker.run_once().pushes == 0
    assert len(standin.messages()) == 1


@pytest.mark.committed
def test_a_message_read_while_its_push_is_out_is_not_pushed_again(
    client: ApiClient, fcm_worker: Worker, standin: FcmStandIn
) -> None:
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    standin.script("ben-phone", fcm.Answer(503, "UNAVAILABLE", delay=1.0))
    repair = start(client, ana)
    body = {"client_id": str(uuid.uuid4()), "body": "I am sorry"}
    wrote = client.post(f"/api/v1/repairs/{repair['id']}/messages", as_=ana, json=body)
    assert wrote.status_code == 201, wrote.text
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(fcm_worker.run_once)
        wait_until(lambda: len(standin.messages()) == 1, what="the push on its way to FCM")
        read = client.post(f"/api/v1/repairs/{repair['id']}/read", as_=ben, json={"seq": 1})
        assert read.status_code == 200, read.text
        assert sending.result(timeout=10).pushes == 1
    (job,) = jobs(fcm_worker)
    assert job.state == "cancelled"
    clock.freeze(clock.now() + timedelta(minutes=10))
    assert fcm_worker.run_once().pushes == 0
    assert len(standin.messages()) == 1
