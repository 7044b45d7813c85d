"""Real concurrency on PostgreSQL: the worker's passes against the requests that withdraw the
pushes it takes."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select

from service.clock import clock
from service.extensions import db
from service.models import Bid, PushJob
from service.worker.runner import Worker
from tests.push.test_delivery import bid, device
from tests.support.client import ApiClient
from tests.support.locks import lock_queue

pytestmark = [pytest.mark.postgres, pytest.mark.committed]


def test_an_answer_as_the_worker_takes_the_expired_bids_push_is_no_deadlock(
    client: ApiClient, app: Flask, worker: Worker
) -> None:
    """Ben answers a bid past its `expires_at` (before the worker expired it) just as a pass
    claims its push. The answer holds the couple and waits for the claimed push to withdraw
    it; the pass, which finds the push expired, must not wait for the couple in turn (a
    deadlock: the answer or the pass aborted, the answer a 503)."""
    ana, ben = client.couple()
    device(client, ben, "ben-phone")
    sent = bid(client, ana)
    clock.freeze(clock.now() + timedelta(days=1, seconds=1))
    claimed = threading.Event()

    def hold_the_claim(*args: Any) -> None:
        statement = args[2]
        claim = statement.startswith("UPDATE push_jobs SET state") and "claimed_until" in statement
        if claim and not claimed.is_set():
            claimed.set()
            queued(1)  # the answer waits for the claimed push

    with app.app_context():
        engine = db.engine
    event.listen(engine, "after_cursor_execute", hold_the_claim)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool, lock_queue(app) as queued:
            passing = pool.submit(worker.run_once, False)
            answer = {"client_id": str(uuid.uuid4()), "kind": "toward"}
            claimed.wait(timeout=10)
            answered = ApiClient(client.base_url).post(
                f"/api/v1/bids/{sent['id']}/responses", as_=client.fresh(ben), json=answer
            )
            tick = passing.result(timeout=20)
    finally:
        event.remove(engine, "after_cursor_execute", hold_the_claim)
    assert answered.status_code == 201, answered.text
    assert tick.pushes == 0
    with app.app_context(), db.scope() as session:
        assert session.scalar(select(Bid.status)) == "answered"
        assert session.scalar(select(PushJob.state)) in ("cancelled", "expired")
